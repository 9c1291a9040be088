/**
 * CpFile: a handle on one entry of a store, with fopen modes and fs/promises-style read and write.
 * Handles made by dup() share the entry and its position.
 */
import { CpError } from './errors.js';
import { LAID_OUT, type Store, type Entry } from './store.js';

export type Mode = 'r' | 'r+' | 'w' | 'w+' | 'a' | 'a+';
export const MODES: readonly Mode[] = ['r', 'r+', 'w', 'w+', 'a', 'a+'];
export type Whence = 'set' | 'cur' | 'end';

function checkCount(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new CpError('EINVAL', `${what} must be a non-negative integer, got ${String(v)}`);
  }
  return v;
}

function checkPosition(v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') v = Number(v);
  return checkCount(v, 'position');
}

export class CpFile {
  /** @internal */ closed = false;

  /** @internal */
  constructor(private store: Store, /** @internal */ readonly entry: Entry, readonly mode: Mode, readonly resumed: boolean) {}

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

  private live(call: string): void {
    if (this.closed) throw new CpError('EBADF', `${call} on closed file ${JSON.stringify(this.entry.name)}`);
    this.store.assertUsable();
  }

  /** Read into buffer[offset, offset+length) from `position`, or from the handle's position (which then advances). */
  async read<T extends Uint8Array>(buffer: T, offset?: number | null, length?: number | null, position?: number | bigint | null): Promise<{ bytesRead: number; buffer: T }> {
    this.live('read');
    if (!this.readable) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} was opened '${this.mode}': not readable`);
    if (!(buffer instanceof Uint8Array)) throw new CpError('EINVAL', 'read needs a Buffer or Uint8Array');
    const off = offset === undefined || offset === null ? 0 : checkCount(offset, 'offset');
    const len = length === undefined || length === null ? buffer.byteLength - off : checkCount(length, 'length');
    if (off + len > buffer.byteLength) throw new CpError('EINVAL', `offset ${off} + length ${len} exceeds the buffer's ${buffer.byteLength} bytes`);
    const at = checkPosition(position);
    const e = this.entry;
    let start: number;
    let gen = -1;
    if (at === null) {
      start = e.position;
      e.position += len;
      gen = ++e.posGen;
    } else {
      start = at;
    }
    const n = await this.store.readEntry(this, start, buffer, off, len);
    if (at === null && n < len && e.posGen === gen) e.position = start + n;
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
    const off = offset === undefined || offset === null ? 0 : checkCount(offset, 'offset');
    const len = length === undefined || length === null ? bytes.byteLength - off : checkCount(length, 'length');
    if (off + len > bytes.byteLength) throw new CpError('EINVAL', `offset ${off} + length ${len} exceeds the data's ${bytes.byteLength} bytes`);
    const at = checkPosition(position);
    const e = this.entry;
    let start: number | null = null;
    if (!this.appending) {
      if (at === null) {
        start = e.position;
        e.position += len;
        e.posGen++;
      } else {
        start = at;
      }
    }
    // As with fs/promises, the caller must not modify the data until the promise settles.
    const chunk = off === 0 && len === bytes.byteLength ? bytes : bytes.subarray(off, off + len);
    return { len, done: this.store.writeEntry(this, start, chunk, at === null) };
  }

  /** Move the position; returns the new position. Recorded in the epoch (restored on resume). */
  seek(offset: number, whence: Whence = 'set'): number {
    this.live('seek');
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset)) throw new CpError('EINVAL', `seek offset must be an integer, got ${String(offset)}`);
    let base: number;
    switch (whence) {
      case 'set': base = 0; break;
      case 'cur': base = this.entry.position; break;
      case 'end': base = this.entry.overlay.size; break;
      default: throw new CpError('EINVAL', `whence must be 'set', 'cur' or 'end', got ${String(whence)}`);
    }
    const next = base + offset;
    if (next < 0) throw new CpError('EINVAL', `seek to ${next}: negative position`);
    this.entry.position = next;
    this.entry.posGen++;
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
    checkCount(len, 'length');
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
    return this.store.check();
  }

  /** Close this handle; the entry is marked completed (durable with the next check) when its last handle closes. */
  async close(): Promise<void> {
    if (this.closed) throw new CpError('EBADF', `file ${JSON.stringify(this.entry.name)} is already closed`);
    await this.store.closeHandle(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.closed) await this.close();
  }
}
