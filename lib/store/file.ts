/**
 * CpFile: a handle on one entry of a store, with fopen modes and fs/promises-style read and write.
 * Handles made by dup() share the entry and its position. A handle knows its store only as a
 * FileHost (lib/store/host.ts): it does not import store.ts.
 */
import { CpError } from '../errors.js';
import { LAID_OUT, type FileHost, type Entry } from './host.js';
import { parseBuffers, parsePosition, parseRead, parseWrite } from './call-forms.js';
import { linesOf, readRest, readvAt, writeRest, writevAt } from './handle-calls.js';
import type { Interface } from 'node:readline';

type Position = number | bigint | null;
/** read(buffer, { offset, length, position }) and write(buffer, { ... }), as fs/promises. */
export interface SpanOptions {
  offset?: number | null;
  length?: number | null;
  position?: Position;
}
/** read({ buffer, offset, length, position }): without a buffer, 16 KiB are allocated (as FileHandle.read). */
export interface ReadOptions<T extends ArrayBufferView = ArrayBufferView> extends SpanOptions {
  buffer?: T;
}
/** readFile/writeFile/appendFile options: an encoding, or { encoding, flag (ignored, as on a FileHandle), signal }. */
export type FileOptions = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string; signal?: AbortSignal } | null;
/** readLines options, as FileHandle.readLines' (createReadStream's): end is inclusive. */
export interface LinesOptions {
  start?: number;
  end?: number;
  highWaterMark?: number;
  encoding?: BufferEncoding | null;
  autoClose?: boolean;
}
import { handleReadStream, handleWriteStream, type CpReadStream, type CpWriteStream, type ReadStreamOptions, type WriteStreamOptions } from './streams.js';

export type Mode = 'r' | 'r+' | 'w' | 'w+' | 'a' | 'a+';
export const MODES: readonly Mode[] = ['r', 'r+', 'w', 'w+', 'a', 'a+'];
export type Whence = 'set' | 'cur' | 'end';

function validateCount(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new CpError('EINVAL', `${what} must be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

/** The file range [start, start+len) must end at or below 2^53-1, the largest position supported. */
function validateEnd(start: number, len: number): void {
  if (start + len > Number.MAX_SAFE_INTEGER) throw new CpError('EINVAL', `${start} + ${len} bytes is past the largest supported position (2^53-1)`);
}

export class CpFile {
  /** @internal */ closed = false;

  /** @internal */
  constructor(private store: FileHost, /** @internal */ readonly entry: Entry, readonly mode: Mode, readonly resumed: boolean) {}

  get name(): string {
    return this.entry.name;
  }

  private get readable(): boolean {
    return this.mode === 'r' || this.mode.endsWith('+');
  }
  private get writable(): boolean {
    return this.mode !== 'r';
  }
  private get appending(): boolean {
    return this.mode[0] === 'a';
  }

  /**
   * Every call is refused at once (at call time, never later) when the store's close() or this
   * handle's close() was called before it; what was called before those completes first.
   */
  private live(call: string): void {
    this.store.assertCallable();
    if (this.closed) throw new CpError('EBADF', `${call} on closed file ${JSON.stringify(this.entry.name)}`);
  }

  /**
   * Read into buffer[offset, offset+length) from `position`, or from the handle's position (which then
   * advances); the forms of FileHandle.read, with any ArrayBufferView (offsets and lengths in bytes).
   */
  read(): Promise<{ bytesRead: number; buffer: Buffer }>;
  read<T extends ArrayBufferView = Buffer>(options: ReadOptions<T>): Promise<{ bytesRead: number; buffer: T }>;
  read<T extends ArrayBufferView>(buffer: T, options?: SpanOptions | null): Promise<{ bytesRead: number; buffer: T }>;
  read<T extends ArrayBufferView>(buffer: T, offset?: number | null, length?: number | null, position?: Position): Promise<{ bytesRead: number; buffer: T }>;
  async read(a?: unknown, b?: unknown, c?: unknown, d?: unknown): Promise<{ bytesRead: number; buffer: ArrayBufferView }> {
    this.live('read');
    this.assertReadable();
    const r = parseRead(a, b, c, d);
    // (No end check: as in fs/promises, a read past the end of the file, even at 2^53-1, reads 0 bytes.)
    const { start, want } = this.claimRead(r.at, r.len);
    const n = await this.store.readEntry(this, start, r.bytes, r.off, want);
    return { bytesRead: n, buffer: r.view };
  }

  /**
   * Write at `position`, or at the handle's position (which then advances); appends in 'a' modes. The
   * forms of FileHandle.write: for a string the second argument is the position, the third its encoding.
   */
  write<T extends string | ArrayBufferView>(data: T): Promise<{ bytesWritten: number; buffer: T }>;
  write<T extends ArrayBufferView>(buffer: T, options?: SpanOptions | null): Promise<{ bytesWritten: number; buffer: T }>;
  write<T extends ArrayBufferView>(buffer: T, offset?: number | null, length?: number | null, position?: Position): Promise<{ bytesWritten: number; buffer: T }>;
  write(data: string, position?: Position, encoding?: BufferEncoding | null): Promise<{ bytesWritten: number; buffer: string }>;
  write(data: unknown, b?: unknown, c?: unknown, d?: unknown): Promise<{ bytesWritten: number; buffer: unknown }> {
    // Not an async function: the hot path (a write laid out at once) costs one promise, not three.
    try {
      this.live('write');
      this.assertWritable();
      let chunk: Uint8Array;
      let at: number | null;
      // (ArrayBuffer.isView: an object that only inherits from Uint8Array.prototype is no buffer: EINVAL, below.)
      if (b === undefined && c === undefined && d === undefined && data instanceof Uint8Array && ArrayBuffer.isView(data)) {
        // write(buffer), the hot path of small writes: the whole buffer at the handle's position.
        chunk = data;
        at = null;
      } else {
        const w = parseWrite(data, b, c, d);
        // As with fs/promises, the caller must not modify the data until the promise settles.
        chunk = w.off === 0 && w.len === w.bytes.byteLength ? w.bytes : w.bytes.subarray(w.off, w.off + w.len);
        at = w.at;
      }
      const start = this.claimWrite(at, chunk.byteLength);
      const done = this.store.writeEntry(this, start, chunk);
      const result = { bytesWritten: chunk.byteLength, buffer: data };
      return done === LAID_OUT ? Promise.resolve(result) : done.then(() => result);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private assertReadable(): void {
    if (!this.readable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened '${this.mode}': not readable`);
  }
  private assertWritable(): void {
    if (!this.writable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened 'r': not writable`);
  }

  /** @internal Where a read of up to `len` bytes at `at` (null: the handle's position) starts and how much the size as of call order gives it; moves the position now. */
  claimRead(at: number | null, len: number): { start: number; want: number } {
    const e = this.entry;
    const start = at ?? e.position;
    const want = Math.max(0, Math.min(len, e.size - start));
    if (at === null) e.position = start + want;
    return { start, want };
  }

  /** @internal Where a write of `len` bytes at `at` goes; checks its end, then moves size and position now. */
  claimWrite(at: number | null, len: number): number {
    const e = this.entry;
    // Where the write goes, the size and the position it leaves are decided now, in call order,
    // whether the store's queue is idle or not: everything is checked before anything moves.
    const start = this.appending ? e.size : at ?? e.position;
    // Past the largest file the store's file system takes (probed at open): EFBIG now, not at the
    // apply; that limit is the one a caller can act on, so it is checked before 2^53-1's (EINVAL).
    if (len > 0 && start + len > this.store.maxFileSize) throw this.store.tooLarge(e.name, 'write', start + len);
    validateEnd(start, len);
    if (len > 0 && start + len > e.size) e.size = start + len;
    // A zero-length write moves nothing, in 'a' modes too (fs/promises returns before the system call).
    if (at === null && len > 0) e.position = start + len;
    return start;
  }

  /** Move the position; returns the new position. Recorded in the epoch (restored on resume). */
  seek(offset: number, whence: Whence = 'set'): number {
    this.live('seek');
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset)) throw new CpError('EINVAL', `seek offset must be an integer, got ${String(offset)}`);
    let base: number;
    switch (whence) {
      case 'set': base = 0; break;
      case 'cur': base = this.entry.position; break;
      case 'end': base = this.entry.size; break;
      default: throw new CpError('EINVAL', `whence must be 'set', 'cur' or 'end', got ${String(whence)}`);
    }
    const next = base + offset;
    if (next < 0) throw new CpError('EINVAL', `seek to ${next}: negative position`);
    if (next > Number.MAX_SAFE_INTEGER) throw new CpError('EINVAL', `seek to ${next}: past the largest supported position (2^53-1)`);
    this.entry.position = next;
    return next;
  }

  tell(): number {
    this.live('tell');
    return this.entry.position;
  }

  async stat(): Promise<{ size: number }> {
    this.live('stat');
    return this.store.statEntry(this);
  }

  async truncate(len = 0): Promise<void> {
    this.live('truncate');
    if (!this.writable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened 'r': not writable`);
    validateCount(len, 'length');
    if (len > this.store.maxFileSize) throw this.store.tooLarge(this.entry.name, 'truncate', len);
    this.entry.size = len;
    await this.store.truncateEntry(this, len);
  }

  /** Another handle on the same entry, sharing its position (the paper's dup). */
  dup(): CpFile {
    this.live('dup');
    const f = new CpFile(this.store, this.entry, this.mode, this.resumed);
    this.entry.handles.add(f);
    return f;
  }

  check(): Promise<number> {
    try {
      this.live('check');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.store.check();
  }

  /** Close this handle; the entry is marked completed (durable with the next check) when its last handle closes. */
  async close(): Promise<void> {
    this.store.assertCallable();
    if (this.closed) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} is already closed`);
    await this.store.closeHandle(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // A store whose close() was called closes its handles itself.
    if (!this.closed && this.store.callable) await this.close();
  }

  // The fs/promises calls over many buffers or the rest of the file (lib/store/handle-calls.ts).

  /** Fill the buffers in turn from `position` (null: the handle's, which advances), as FileHandle.readv. */
  async readv<T extends readonly ArrayBufferView[]>(buffers: T, position?: Position): Promise<{ bytesRead: number; buffers: T }> {
    this.live('readv');
    this.assertReadable();
    const chunks = parseBuffers(buffers, 'readv');
    // As fs/promises (the system call's EINVAL there); writev of no buffers writes 0 bytes.
    if (chunks.length === 0) throw new CpError('EINVAL', 'readv needs at least one buffer');
    return { bytesRead: await readvAt(this, this.store, chunks, parsePosition(position)), buffers };
  }

  /** Write the buffers in turn at `position` (null: the handle's, which advances), as FileHandle.writev. */
  async writev<T extends readonly ArrayBufferView[]>(buffers: T, position?: Position): Promise<{ bytesWritten: number; buffers: T }> {
    this.live('writev');
    this.assertWritable();
    const chunks = parseBuffers(buffers, 'writev');
    return { bytesWritten: await writevAt(this, this.store, chunks, parsePosition(position)), buffers };
  }

  /** The file from the handle's position to its end (the position moves there), as FileHandle.readFile. */
  readFile(options?: { encoding?: null; flag?: string; signal?: AbortSignal } | null): Promise<Buffer>;
  readFile(options: BufferEncoding | { encoding: BufferEncoding; flag?: string; signal?: AbortSignal }): Promise<string>;
  async readFile(options?: FileOptions): Promise<Buffer | string> {
    this.live('readFile');
    this.assertReadable();
    return readRest(this, this.store, options);
  }

  /** Write data at the handle's position (the end in 'a' modes), as FileHandle.writeFile: it does not truncate. */
  async writeFile(data: string | ArrayBufferView, options?: FileOptions): Promise<void> {
    this.live('writeFile');
    this.assertWritable();
    await writeRest(this, this.store, data, options, 'writeFile');
  }

  /** As FileHandle.appendFile, an alias of writeFile: the handle's mode decides whether it appends. */
  async appendFile(data: string | ArrayBufferView, options?: FileOptions): Promise<void> {
    this.live('appendFile');
    this.assertWritable();
    await writeRest(this, this.store, data, options, 'appendFile');
  }

  /** A readline interface over the file from the handle's position (or `start`), as FileHandle.readLines; closes the handle at the end unless autoClose is false. */
  readLines(options?: LinesOptions | BufferEncoding): Interface {
    this.live('readLines');
    this.assertReadable();
    return linesOf(this, options);
  }

  // streams (lib/store/streams.ts): through this handle's read() and write(); autoClose closes it
  createReadStream(options?: ReadStreamOptions): CpReadStream {
    this.live('createReadStream');
    return handleReadStream(this, options);
  }

  createWriteStream(options?: WriteStreamOptions): CpWriteStream {
    this.live('createWriteStream');
    return handleWriteStream(this, options);
  }
}
