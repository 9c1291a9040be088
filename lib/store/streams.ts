/**
 * Streams over a handle (CpFile.createReadStream / createWriteStream) and over a name
 * (Store.createReadStream / createWriteStream), shaped like node:fs's ReadStream and WriteStream.
 * They go through the handle's own read() and write(), so a read stream sees pending changes and a
 * write stream's data is pending until a check like any write; nothing is kept here but the one
 * buffer a read fills and the chunks node:stream queues (bounded by highWaterMark: backpressure).
 *
 * As FileHandle.createReadStream: without `start` a stream reads (writes) at the handle's position
 * and moves it; with `start` it reads (writes) from there and leaves the position alone; `end` is
 * inclusive; with `autoClose` (default true) ending, failing or destroying the stream closes the
 * handle. Bad options throw EINVAL at the call; what the reads, writes and the open of a name meet
 * (EBADF, ENOENT, EBUSY, ECLOSED, ...) is the stream's 'error', as fs does.
 */
import { Readable, Writable } from 'node:stream';
import { CpError } from '../errors.js';
import { describe } from '../names.js';
import type { CpFile, Mode } from './file.js';

export interface ReadStreamOptions {
  /** First byte to read; without it the stream reads from the handle's position and moves it. */
  start?: number;
  /** Last byte to read (inclusive, as fs); without `start`, the stream reads `end + 1` bytes. */
  end?: number;
  /** Bytes per read (default 64 KiB, as fs). */
  highWaterMark?: number;
  /** Emit strings in this encoding instead of Buffers. */
  encoding?: BufferEncoding | null;
  /** Close the handle when the stream ends, fails or is destroyed (default true, as FileHandle's). */
  autoClose?: boolean;
}

export interface WriteStreamOptions {
  /** Where to write; without it the stream writes at the handle's position and moves it. */
  start?: number;
  /** write() returns false once this many bytes are queued (default 16 KiB, as fs). */
  highWaterMark?: number;
  /** The encoding of strings written without one (default utf8). */
  encoding?: BufferEncoding | null;
  /** Close the handle when the stream finishes, fails or is destroyed (default true, as FileHandle's). */
  autoClose?: boolean;
}

/** Store.createReadStream's options: the stream's own handle is always closed at its end. */
export type StoreReadStreamOptions = Omit<ReadStreamOptions, 'autoClose'>;

/** Store.createWriteStream's options: flags is the open mode ('w' truncates, 'a' appends, 'r+' overwrites in place). */
export interface StoreWriteStreamOptions extends Omit<WriteStreamOptions, 'autoClose'> {
  flags?: 'w' | 'a' | 'r+';
}

/** What a stream of a name needs from its store: open() (Store implements it). */
export interface StreamOpener {
  open(name: string, mode: Mode): Promise<CpFile>;
}

const READ_HWM = 64 * 1024;
const WRITE_HWM = 16 * 1024;
const WRITE_FLAGS: readonly string[] = ['w', 'a', 'r+'];

function bad(what: string, v: unknown): CpError {
  return new CpError('EINVAL', `${what} got ${describe(v)}`);
}

/** An options argument: undefined/null (none), an encoding string, or an object. */
function optionsObject(options: unknown, call: string): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options === 'string') return { encoding: options };
  if (typeof options !== 'object') throw bad(`${call} options must be an object or an encoding,`, options);
  return options as Record<string, unknown>;
}

/** A byte position, as fs validates start and end: an integer in [0, 2^53-1] (undefined: none). */
function position(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be an integer from 0 to 2^53-1,`, v);
  return v;
}

function highWaterMark(v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad('highWaterMark must be a non-negative integer,', v);
  return v;
}

function encoding(v: unknown): BufferEncoding | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !Buffer.isEncoding(v)) throw bad('encoding must be a Buffer encoding,', v);
  return v;
}

/** As fs: any value but undefined counts by its truthiness. */
function autoClose(v: unknown): boolean {
  return v === undefined ? true : Boolean(v);
}

function validName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) throw bad('file name must be a non-empty string,', name);
  return name;
}

/** Where a stream's handle comes from: given (a handle's stream) or being opened (a name's). */
type Source = { file: CpFile } | { opening: Promise<CpFile> };

function sourceOf(src: Source): { file: CpFile | null; opening: Promise<CpFile> | null } {
  if ('file' in src) return { file: src.file, opening: null };
  // The open was called already (its place in call order); construct() takes its result.
  src.opening.catch(() => undefined);
  return { file: null, opening: src.opening };
}

/** Close the stream's handle unless it is closed already (by its owner, a rollback or store.close()). */
async function release(file: CpFile | null, close: boolean): Promise<void> {
  if (file && close) await file[Symbol.asyncDispose]();
}

/** A node:stream Readable over a CpFile, as fs.ReadStream. */
export class CpReadStream extends Readable {
  /** Bytes read so far. */
  bytesRead = 0;
  /** The store name, for a stream of a name; the handle's name once it is open. */
  readonly path: string | undefined;
  private file: CpFile | null;
  private opening: Promise<CpFile> | null;
  private pos: number | undefined;
  private readonly end: number;
  private readonly closeAtEnd: boolean;
  private reading: Promise<unknown> | null = null;

  /** @internal Options validated by the create functions below. */
  constructor(src: Source, o: { start?: number; end: number; hwm: number; encoding?: BufferEncoding; autoClose: boolean; path?: string }) {
    super({ highWaterMark: o.hwm, encoding: o.encoding });
    ({ file: this.file, opening: this.opening } = sourceOf(src));
    this.path = o.path ?? this.file?.name;
    this.pos = o.start;
    this.end = o.end;
    this.closeAtEnd = o.autoClose;
  }

  /** True until the handle of a name's stream is open (as fs.ReadStream's pending). */
  get pending(): boolean {
    return this.file === null;
  }

  override _construct(cb: (err?: Error | null) => void): void {
    if (!this.opening) return cb();
    this.opening.then((f) => { this.file = f; cb(); }, (e: Error) => cb(e));
  }

  override _read(n: number): void {
    // As fs.ReadStream: at most up to `end`, counted from `start`, or from the stream's first byte.
    const want = Math.min(Math.max(n, 1), this.pos !== undefined ? this.end - this.pos + 1 : this.end - this.bytesRead + 1);
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(want);
    this.reading = this.file!.read(buf, 0, want, this.pos ?? null).then(({ bytesRead }) => {
      this.reading = null;
      if (this.destroyed) return;
      if (bytesRead === 0) {
        this.push(null);
        return;
      }
      if (this.pos !== undefined) this.pos += bytesRead;
      this.bytesRead += bytesRead;
      // A short read (the end of the file) keeps only what it read, as fs does.
      this.push(bytesRead === want ? buf : Buffer.from(buf.subarray(0, bytesRead)));
    }, (e: Error) => {
      this.reading = null;
      this.destroy(e);
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // A read in flight finishes first (its close comes after it in call order anyway).
    const inFlight = this.reading ?? Promise.resolve();
    inFlight.catch(() => undefined).then(() => release(this.file, this.closeAtEnd)).then(() => cb(err), (e: Error) => cb(err ?? e));
  }
}

/** A node:stream Writable over a CpFile, as fs.WriteStream: backpressure by highWaterMark, batched writes. */
export class CpWriteStream extends Writable {
  /** Bytes whose write() was accepted so far (pending until a check, like any write). */
  bytesWritten = 0;
  readonly path: string | undefined;
  private file: CpFile | null;
  private opening: Promise<CpFile> | null;
  private pos: number | undefined;
  private readonly closeAtEnd: boolean;

  /** @internal Options validated by the create functions below. */
  constructor(src: Source, o: { start?: number; hwm: number; encoding?: BufferEncoding; autoClose: boolean; path?: string }) {
    super({ highWaterMark: o.hwm, defaultEncoding: o.encoding ?? 'utf8', decodeStrings: true });
    ({ file: this.file, opening: this.opening } = sourceOf(src));
    this.path = o.path ?? this.file?.name;
    this.pos = o.start;
    this.closeAtEnd = o.autoClose;
  }

  get pending(): boolean {
    return this.file === null;
  }

  // A chunk node:stream cannot take is EINVAL here, not its TypeError.
  override write(chunk: unknown, enc?: unknown, cb?: unknown): boolean {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) throw bad('a write stream takes a Buffer, Uint8Array or string,', chunk);
    return super.write(chunk, enc as BufferEncoding, cb as (e?: Error | null) => void);
  }

  override end(chunk?: unknown, enc?: unknown, cb?: unknown): this {
    if (chunk !== undefined && chunk !== null && typeof chunk !== 'function' && typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      throw bad('a write stream takes a Buffer, Uint8Array or string,', chunk);
    }
    return super.end(chunk as string, enc as BufferEncoding, cb as () => void);
  }

  override _construct(cb: (err?: Error | null) => void): void {
    if (!this.opening) return cb();
    this.opening.then((f) => { this.file = f; cb(); }, (e: Error) => cb(e));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeAll([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeAll(chunks.map((c) => c.chunk), cb);
  }

  /**
   * Every chunk is one handle write, all called now (they take effect in this order, awaited or
   * not); the callback, which lets node:stream hand over more, waits until they are accepted, so
   * the journal's own backpressure (a congested flusher) reaches the producer.
   */
  private writeAll(bufs: Buffer[], cb: (err?: Error | null) => void): void {
    const f = this.file!;
    const writes: Promise<unknown>[] = [];
    let bytes = 0;
    for (const b of bufs) {
      writes.push(f.write(b, 0, b.length, this.pos ?? null));
      if (this.pos !== undefined) this.pos += b.length;
      bytes += b.length;
    }
    const done = writes.length === 1 ? writes[0] : Promise.all(writes);
    done.then(() => { this.bytesWritten += bytes; cb(); }, (e: Error) => cb(e));
  }

  // _final: nothing to wait for: node:stream calls it once every write's callback ran, i.e. every
  // write was accepted. Durability is check()'s: the data is pending until then.

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Writes in flight were called before the close, so they complete first (call order).
    release(this.file, this.closeAtEnd).then(() => cb(err), (e: Error) => cb(err ?? e));
  }
}

function readOptions(options: unknown, call: string): { start?: number; end: number; hwm: number; encoding?: BufferEncoding; autoClose: boolean } {
  const o = optionsObject(options, call);
  const start = position(o.start, 'start');
  const end = o.end === Infinity ? Infinity : position(o.end, 'end') ?? Infinity;
  if (start !== undefined && start > end) throw new CpError('EINVAL', `start ${start} is past end ${end}`);
  return { start, end, hwm: highWaterMark(o.highWaterMark, READ_HWM), encoding: encoding(o.encoding), autoClose: autoClose(o.autoClose) };
}

function writeOptions(options: unknown, call: string): { start?: number; hwm: number; encoding?: BufferEncoding; autoClose: boolean } {
  const o = optionsObject(options, call);
  return { start: position(o.start, 'start'), hwm: highWaterMark(o.highWaterMark, WRITE_HWM), encoding: encoding(o.encoding), autoClose: autoClose(o.autoClose) };
}

/** CpFile.createReadStream (the handle was checked live by the caller). */
export function handleReadStream(f: CpFile, options: unknown): CpReadStream {
  return new CpReadStream({ file: f }, readOptions(options, 'createReadStream'));
}

/** CpFile.createWriteStream (the handle was checked live by the caller). */
export function handleWriteStream(f: CpFile, options: unknown): CpWriteStream {
  return new CpWriteStream({ file: f }, writeOptions(options, 'createWriteStream'));
}

/**
 * Store.createReadStream: `name` opened 'r' now (in call order), closed when the stream ends. As
 * fs.createReadStream of a path, it reads from 0 without `start`, also when the open resumes a name a
 * crashed run left open (whose handle starts at its checkpointed position).
 */
export function nameReadStream(store: StreamOpener, name: unknown, options: unknown): CpReadStream {
  const n = validName(name);
  const r = readOptions(options, 'createReadStream');
  const o = { ...r, start: r.start ?? 0, autoClose: true, path: n };
  return new CpReadStream({ opening: store.open(n, 'r') }, o);
}

/** Store.createWriteStream: `name` opened with `flags` ('w' by default) now, closed when the stream ends. */
export function nameWriteStream(store: StreamOpener, name: unknown, options: unknown): CpWriteStream {
  const n = validName(name);
  const o = optionsObject(options, 'createWriteStream');
  const flags = o.flags === undefined ? 'w' : o.flags;
  if (typeof flags !== 'string' || !WRITE_FLAGS.includes(flags)) throw bad(`flags must be one of ${WRITE_FLAGS.join(', ')},`, flags);
  const w = { ...writeOptions(o, 'createWriteStream'), autoClose: true, path: n };
  return new CpWriteStream({ opening: store.open(n, flags as Mode) }, w);
}
