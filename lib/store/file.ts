/**
 * CpFile: a handle on one entry of a store, with fopen modes and fs/promises-style read and write.
 * Handles made by dup() share the entry and its position. A handle knows its store only as a
 * FileHost (lib/store/host.ts): it does not import store.ts.
 */
import { CpError } from '../errors.js';
import { LAID_OUT, type FileHost, type Entry } from './host.js';
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

function validatePosition(v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') v = Number(v);
  return validateCount(v, 'position');
}

/** offset and length of a call on `size` bytes of buffer or data, as fs/promises (ERR_OUT_OF_RANGE there). */
function validateSpan(offset: unknown, length: unknown, size: number, what: string): { off: number; len: number } {
  const off = offset === undefined || offset === null ? 0 : validateCount(offset, 'offset');
  if (off > size) throw new CpError('EINVAL', `offset ${off} is past the ${what}'s ${size} bytes`);
  const len = length === undefined || length === null ? size - off : validateCount(length, 'length');
  if (off + len > size) throw new CpError('EINVAL', `offset ${off} + length ${len} exceeds the ${what}'s ${size} bytes`);
  return { off, len };
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

  /** Read into buffer[offset, offset+length) from `position`, or from the handle's position (which then advances). */
  async read<T extends Uint8Array>(buffer: T, offset?: number | null, length?: number | null, position?: number | bigint | null): Promise<{ bytesRead: number; buffer: T }> {
    this.live('read');
    if (!this.readable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened '${this.mode}': not readable`);
    if (!(buffer instanceof Uint8Array)) throw new CpError('EINVAL', 'read needs a Buffer or Uint8Array');
    const { off, len } = validateSpan(offset, length, buffer.byteLength, 'buffer');
    const at = validatePosition(position);
    const e = this.entry;
    const start = at ?? e.position;
    // (No end check: as in fs/promises, a read past the end of the file, even at 2^53-1, reads 0 bytes.)
    // The size as of call order says how much this read gets: the position moves there now.
    const want = Math.max(0, Math.min(len, e.size - start));
    if (at === null) e.position = start + want;
    const n = await this.store.readEntry(this, start, buffer, off, want);
    return { bytesRead: n, buffer };
  }

  /** Write data (utf8 for strings) at `position`, or at the handle's position (which then advances); appends in 'a' modes. */
  write<T extends Uint8Array | string>(data: T, offset?: number | null, length?: number | null, position?: number | bigint | null): Promise<{ bytesWritten: number; buffer: T }> {
    // Not an async function: the hot path (a write laid out at once) costs one promise, not three.
    try {
      const r = this.writeStart(data, offset, length, position);
      const result = { bytesWritten: r.len, buffer: data };
      return r.done === LAID_OUT ? Promise.resolve(result) : r.done.then(() => result);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private writeStart(data: Uint8Array | string, offset?: number | null, length?: number | null, position?: number | bigint | null): { len: number; done: Promise<void> } {
    this.live('write');
    if (!this.writable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened 'r': not writable`);
    let bytes: Uint8Array;
    if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
    else if (data instanceof Uint8Array) bytes = data;
    else throw new CpError('EINVAL', 'write needs a Buffer, Uint8Array or string');
    const { off, len } = validateSpan(offset, length, bytes.byteLength, 'data');
    const at = validatePosition(position);
    const e = this.entry;
    // Where the write goes, the size and the position it leaves are decided now, in call order,
    // whether the store's queue is idle or not: everything is checked before anything moves.
    const start = this.appending ? e.size : at ?? e.position;
    // Past the largest file the store's file system takes (probed at open): EFBIG now, not at the
    // apply; that limit is the one a caller can act on, so it is checked before 2^53-1's (EINVAL).
    if (len > 0 && start + len > this.store.maxFileSize) throw this.store.tooLarge(e.name, 'write', start + len);
    validateEnd(start, len);
    if (len > 0 && start + len > e.size) e.size = start + len;
    if (at === null) e.position = start + len;
    // As with fs/promises, the caller must not modify the data until the promise settles.
    const chunk = off === 0 && len === bytes.byteLength ? bytes : bytes.subarray(off, off + len);
    return { len, done: this.store.writeEntry(this, start, chunk) };
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
