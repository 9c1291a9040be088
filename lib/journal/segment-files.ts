/**
 * The one cache of open segment files. Recovery, inspect and the applier read the log through it;
 * the journal writer reads journaled data back through it; the flusher writes segments through it
 * (in its worker thread, an instance of its own: descriptors do not cross threads).
 *
 * It keeps the most recently used SEGMENT_FDS files open, so a journal of any number of segments is
 * walked under a low `ulimit -n`, and gives descriptors back when the process runs out of them
 * (EMFILE, ENFILE). A pinned file (a read in progress) is never closed under its user.
 */
import { posOffset, posSeq } from '../format.js';
import { type IO, readFully } from '../io.js';
import { CpError } from '../errors.js';
import { READ_WINDOW, SegmentReader } from './segment-reader.js';

/**
 * Segment files kept open at most (while none is in use): a walk reads one segment at a time (and
 * the applier one more for data it re-reads), the flusher writes one or two.
 */
export const SEGMENT_FDS = 8;

/** What the cache needs to know of a segment: its file index (the key) and its path (paths.ts). */
export interface SegmentFile {
  index: number;
  file: string;
  /** The size its header gives (for readers). */
  size?: number;
  seq?: number;
  /** Its high-water mark (FORMAT.md R19), when known: readers read nothing past it. */
  mark?: number | null;
}

export class SegmentFiles {
  /** index -> fd, least recently used first. */
  private fds = new Map<number, number>();
  /** index -> how many callers of pin() hold it. */
  private pins = new Map<number, number>();
  /** The index last in `fds` (the most recently used), or -1 when not known. */
  private newest = -1;

  /**
   * `mode`: 'read' for the readers of the log, 'readwrite' for the flusher's writes. `limit`: files
   * kept open when none is in use (the flusher keeps its few write files open for the store's life).
   */
  constructor(
    readonly io: IO, private mode: 'read' | 'readwrite' = 'read', private limit = SEGMENT_FDS,
    /** Readers read their next window ahead (SegmentReader): recovery's walks, on the asynchronous IO. */
    private readAhead = false,
  ) {}

  /**
   * The descriptor of `seg`'s file, opened if need be; valid until the next call that may open one
   * (unless pinned). Its fast path awaits nothing: the flusher's order of I/O, and so the bytes on
   * disk at any moment of the deterministic tests, do not depend on this cache.
   */
  async fd(seg: SegmentFile): Promise<number> {
    let fd = this.cachedFd(seg.index);
    if (fd !== undefined) return fd;
    for (;;) {
      try {
        fd = await this.io.open(seg.file, this.mode);
        break;
      } catch (e) {
        // Out of descriptors: give one of ours back and try again.
        const code = (e as NodeJS.ErrnoException)?.code;
        if ((code !== 'EMFILE' && code !== 'ENFILE') || !this.evictable()) throw e;
        await this.evict();
      }
    }
    const other = this.fds.get(seg.index);
    if (other !== undefined) {
      // A concurrent caller opened it meanwhile: keep one descriptor.
      await this.io.close(fd);
      return other;
    }
    this.fds.set(seg.index, fd);
    this.newest = seg.index;
    while (this.fds.size > this.limit && this.evictable()) await this.evict();
    return fd;
  }

  /** The descriptor of `seg`'s file if it is open (it becomes the most recently used), else undefined. */
  cachedFd(index: number): number | undefined {
    const fd = this.fds.get(index);
    // (already the most recently used, as on every write of the flusher's one live segment: a delete
    // and set would only churn the map)
    if (fd !== undefined && index !== this.newest) {
      this.fds.delete(index);
      this.fds.set(index, fd);
      this.newest = index;
    }
    return fd;
  }

  /**
   * Take a descriptor the caller opened itself (the flusher creates segment files, a mode the cache
   * does not open with). It is closed like the others; past `limit`, at the next open.
   */
  adopt(seg: SegmentFile, fd: number): void {
    this.fds.delete(seg.index);
    this.fds.set(seg.index, fd);
    this.newest = seg.index;
  }

  /** Keep segment file `index` open (and its segment in use) until the matching unpin(). */
  pin(index: number): void {
    this.pins.set(index, (this.pins.get(index) ?? 0) + 1);
  }

  unpin(index: number): void {
    const n = (this.pins.get(index) ?? 1) - 1;
    if (n <= 0) this.pins.delete(index);
    else this.pins.set(index, n);
  }

  /** Whether a caller holds segment file `index` pinned now (a read of it is in progress). */
  inUse(index: number): boolean {
    return this.pins.has(index);
  }

  /**
   * Read `len` bytes at offset `at` of `seg`'s file into `buf` at `off`. The file stays pinned (open,
   * and its segment in use: see inUse()) until the read is done.
   */
  async readExactly(seg: SegmentFile, at: number, buf: Uint8Array, off: number, len: number): Promise<void> {
    this.pin(seg.index);
    try {
      const fd = this.cachedFd(seg.index) ?? await this.fd(seg);
      let done = 0;
      while (done < len) {
        const n = await this.io.read(fd, buf, off + done, len - done, at + done);
        if (n <= 0) throw new CpError('EIO', `journal segment ${seg.index} shorter than expected`);
        done += n;
      }
    } finally {
      this.unpin(seg.index);
    }
  }

  /**
   * Read up to `len` bytes at offset `at` of `seg`'s file into `buf` at `off`; fewer only at the end
   * of the file. The file stays pinned until the read is done, as in readExactly().
   */
  async readAt(seg: SegmentFile, buf: Uint8Array, off: number, len: number, at: number): Promise<number> {
    this.pin(seg.index);
    try {
      return await readFully(this.io, this.cachedFd(seg.index) ?? await this.fd(seg), buf, off, len, at);
    } finally {
      this.unpin(seg.index);
    }
  }

  /**
   * A reader of `seg`; with `endPos`, reads stop where that position falls in this segment; without,
   * at the segment's high-water mark (R19) when it is known: no record lies past it.
   * `readAhead` (default: this cache's) reads the next window while the caller works on this one.
   */
  async reader(seg: SegmentFile & { size: number; seq: number }, endPos?: number, readAhead = this.readAhead): Promise<SegmentReader> {
    const readEnd = endPos !== undefined && posSeq(endPos) === seg.seq ? posOffset(endPos) : Math.min(seg.size, seg.mark ?? seg.size);
    await this.fd(seg);
    return new SegmentReader((buf, off, len, at) => this.readAt(seg, buf, off, len, at), seg.size, READ_WINDOW, readEnd, readAhead);
  }

  /** Close every file; `ignoreErrors`: a failed close does not stop the others (the writer at close). */
  async closeAll(ignoreErrors = false): Promise<void> {
    for (const fd of this.fds.values()) {
      if (ignoreErrors) await this.io.close(fd).catch(() => undefined);
      else await this.io.close(fd);
    }
    this.fds.clear();
    this.newest = -1;
  }

  private evictable(): boolean {
    for (const index of this.fds.keys()) if (!this.pins.has(index)) return true;
    return false;
  }

  /** Close the least recently used file not pinned (there is one: see evictable()). */
  private async evict(): Promise<void> {
    for (const [index, fd] of this.fds) {
      if (this.pins.has(index)) continue;
      this.fds.delete(index);
      if (index === this.newest) this.newest = -1;
      await this.io.close(fd);
      return;
    }
  }
}
