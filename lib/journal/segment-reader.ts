/**
 * A windowed reader over one segment file: few large reads instead of one per record. The log's
 * walks (reader.ts) read records through it.
 *
 * When a request runs past the window, the part of it the window already holds is carried to the
 * front of the next window, so a walk reads every byte once (a record straddling a window's end is
 * not read again). With `readAhead` the next window is read while the caller works on this one
 * (recovery: its walks check crcs and write data files while the next read is in flight). A
 * read-ahead is speculative: its bytes are used only when the walk gets there, and when it failed
 * the read is made again then, so its error surfaces only if the bytes are needed.
 */
import { MAX_PAYLOAD, RECORD_HEADER_SIZE } from '../format.js';

/**
 * Read window of SegmentReader: larger than the largest record (MAX_PAYLOAD plus its header), so a
 * record's header and payload come in the same read and a window holds several big records.
 */
export const READ_WINDOW = 4 * 1024 * 1024;

/** Room kept in front of each window for the bytes carried over from the previous one: one whole record. */
const CARRY_ROOM = RECORD_HEADER_SIZE + MAX_PAYLOAD + 8;

/** Reads up to `len` bytes of the segment at `at` into `buf` at `off`; fewer only at its end. */
export type ReadAt = (buf: Buffer, off: number, len: number, at: number) => Promise<number>;

interface Ahead {
  /** Segment offset the read starts at (the window's end when it was started). */
  at: number;
  len: number;
  /** Bytes read, after the carry room of `buf`; rejects when the read failed. */
  done: Promise<number>;
  /** Settles (never rejects) once the read no longer writes into `buf`. */
  settled: Promise<unknown>;
}

export class SegmentReader {
  private win: Buffer = Buffer.alloc(0);
  private winStart = 0;
  /** The buffer holding the window, and (with readAhead) the other one, the next window's. */
  private cur: Buffer | null = null;
  private spare: Buffer | null = null;
  private ahead: Ahead | null = null;
  /** The last read came back short: the file ends at the window's end. */
  private atEof = false;

  /**
   * `readEnd`: nothing at or past it is wanted (reads stop there unless a request reaches beyond).
   * `read` pins the segment file for the time of each read (SegmentFiles.readAt), so that no read,
   * a read-ahead included, ever runs on a descriptor closed under it.
   */
  constructor(private read: ReadAt, readonly size: number, private chunk = READ_WINDOW, private readEnd = size, private readAhead = false) {
    this.maxRoom = Math.min(CARRY_ROOM, size);
    this.room = readAhead ? this.maxRoom : 0;
  }

  /** Room in front of a window for carried bytes: one whole record, or the whole segment if smaller. */
  private readonly maxRoom: number;
  /**
   * The room kept in the buffers now: from the start with readAhead (a read-ahead lands after it
   * before anyone knows what will be carried), else only once a request first straddles a window's
   * end (a reader of a short apply slice never does, and holds no more than it reads).
   */
  private room: number;

  /** Bytes [off, off+len) of the segment (shorter if the file is shorter); valid until the next get(). */
  async get(off: number, len: number): Promise<Buffer> {
    const winEnd = this.winStart + this.win.length;
    if (off >= this.winStart && off + len <= winEnd) {
      return this.win.subarray(off - this.winStart, off - this.winStart + len);
    }
    // What the window already holds of the request is carried over; the rest is read.
    const keep = off >= this.winStart && off < winEnd && winEnd - off <= this.maxRoom ? winEnd - off : 0;
    if (keep > this.room) this.room = this.maxRoom;
    const from = off + keep;
    const want = Math.min(Math.max(this.chunk, len), Math.max(0, this.size - off), Math.max(len, this.readEnd - off));
    const ahead = this.ahead;
    this.ahead = null;
    let n = -1;
    let asked = want - keep;
    if (ahead) {
      // The read-ahead is used when it starts where the request's missing part does and covers it.
      if (ahead.at === from && keep + ahead.len >= Math.min(len, want)) {
        n = await ahead.done.catch(() => -1);
        if (n >= 0) asked = ahead.len;
      } else {
        await ahead.settled;
      }
    }
    // Without a read-ahead the window's own buffer is reused: the carried bytes move to its front
    // (Buffer.copy moves overlapping bytes correctly) before the read overwrites the rest.
    const next = n >= 0 ? this.spare! : this.bufferFor(asked);
    if (keep) this.win.copy(next, this.room - keep, off - this.winStart);
    if (n < 0) n = await this.readWindow(next, asked, from, Math.max(0, Math.min(off + len, this.size) - from));
    this.atEof = n < asked;
    // (with readAhead, `next` is the spare buffer: the two trade places)
    if (this.readAhead) this.spare = this.cur;
    this.cur = next;
    this.win = next.subarray(this.room - keep, this.room + n);
    this.winStart = off;
    this.startAhead();
    return this.win.subarray(0, Math.min(len, this.win.length));
  }

  /** Wait for a read-ahead still in flight (its bytes are not wanted any more). */
  async release(): Promise<void> {
    const a = this.ahead;
    this.ahead = null;
    if (a) await a.settled;
  }

  /**
   * Read `asked` bytes at `from` into `buf` after the carry room. When that fails, the `needed` bytes
   * the request itself lacks are read alone: a bad block in the rest of the window fails only a
   * request that reaches it. Either way a failure forgets the window (the carried bytes and part of
   * the read may have overwritten it).
   */
  private async readWindow(buf: Buffer, asked: number, from: number, needed: number): Promise<number> {
    try {
      return await this.read(buf, this.room, asked, from);
    } catch (e) {
      if (needed < asked) {
        try {
          return await this.read(buf, this.room, needed, from);
        } catch {
          // (the first error is the one to report)
        }
      }
      this.win = Buffer.alloc(0);
      this.winStart = 0;
      throw e;
    }
  }

  /** A buffer with room for `len` bytes after the carry room: the spare one with readAhead, else the window's own. */
  private bufferFor(len: number): Buffer {
    const b = this.readAhead ? this.spare : this.cur;
    if (b && b.length >= this.room + len) return b;
    const fresh = Buffer.allocUnsafe(this.room + len);
    if (this.readAhead) this.spare = fresh;
    return fresh;
  }

  /** Read the next window into the spare buffer, unless the window reaches the end of what is wanted. */
  private startAhead(): void {
    if (!this.readAhead || this.atEof) return;
    const at = this.winStart + this.win.length;
    const limit = Math.min(this.size, this.readEnd);
    if (at >= limit) return;
    const len = Math.min(this.chunk, limit - at);
    const buf = this.bufferFor(len);
    const done = this.read(buf, this.room, len, at);
    this.ahead = { at, len, done, settled: done.catch(() => undefined) };
  }
}
