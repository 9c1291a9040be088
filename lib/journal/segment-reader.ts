/**
 * A windowed reader over one segment file: few large reads instead of one per record. The log's
 * walks (reader.ts) read records through it.
 */
import { type IO, readFully } from '../io.js';

/**
 * Read window of SegmentReader: larger than the largest record (MAX_PAYLOAD plus its header), so a
 * record's header and payload come in the same read and a window holds several big records.
 */
export const READ_WINDOW = 4 * 1024 * 1024;

export class SegmentReader {
  private win: Buffer = Buffer.alloc(0);
  private winStart = 0;
  /** The window's memory, reused by the next read that fits: what get() returns is valid until the next get(). */
  private backing: Buffer | null = null;
  /** `readEnd`: nothing at or past it is wanted (reads stop there unless a request reaches beyond). */
  /** `fd` gives the segment's descriptor at each read (SegmentFiles may have closed and reopened it since). */
  constructor(private io: IO, private fd: number | (() => Promise<number>), readonly size: number, private chunk = READ_WINDOW, private readEnd = size) {}

  /** Bytes [off, off+len) of the segment (shorter if the file is shorter). */
  async get(off: number, len: number): Promise<Buffer> {
    if (off >= this.winStart && off + len <= this.winStart + this.win.length) {
      return this.win.subarray(off - this.winStart, off - this.winStart + len);
    }
    const want = Math.min(Math.max(this.chunk, len), Math.max(0, this.size - off), Math.max(len, this.readEnd - off));
    if (!this.backing || this.backing.length < want) this.backing = Buffer.allocUnsafe(want);
    const b = this.backing.subarray(0, want);
    const n = await readFully(this.io, typeof this.fd === 'number' ? this.fd : await this.fd(), b, 0, want, off);
    this.win = b.subarray(0, n);
    this.winStart = off;
    return this.win.subarray(0, Math.min(len, n));
  }
}
