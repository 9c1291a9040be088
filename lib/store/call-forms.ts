/**
 * The fs/promises call forms of a handle's read and write, parsed into one shape: read() with no
 * arguments, read({ buffer, offset, length, position }), read(buffer, { offset, length, position }),
 * read(buffer, offset?, length?, position?); write(buffer, { ... }), write(buffer, offset?, length?,
 * position?), write(string, position?, encoding?); the buffer lists of readv/writev; the encoding
 * options of readFile/writeFile. Any ArrayBufferView is a buffer; offsets and lengths count bytes.
 * Where fs/promises silently coerces a bad argument (a position that is not an integer writes at
 * the current position there, an unknown encoding is utf8), this refuses it with EINVAL.
 */
import { CpError } from '../errors.js';

/** fs/promises allocates this much for read() without a buffer (FileHandle.read). */
export const DEFAULT_READ_SIZE = 16384;

/** A parsed read or write: the caller's view, its bytes, the span of those bytes, and the position (null: the handle's). */
export interface SpanCall<V> {
  view: V;
  bytes: Uint8Array;
  off: number;
  len: number;
  at: number | null;
}

function bad(message: string): CpError {
  return new CpError('EINVAL', message);
}

function validateCount(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a non-negative integer, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v !== null && typeof v === 'object') return Array.isArray(v) ? 'an array' : `an instance of ${v.constructor?.name ?? 'Object'}`;
  return String(v);
}

/** The bytes a view covers (a Uint16Array, a DataView...), as a Uint8Array over the same memory. */
export function bytesOf(v: ArrayBufferView): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** null, undefined and -1 (as fs documents): the handle's position; else a non-negative integer or bigint below 2^53. */
export function parsePosition(v: unknown): number | null {
  if (v === undefined || v === null || v === -1 || v === -1n) return null;
  if (typeof v === 'bigint') {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`position must be -1, null or a non-negative integer below 2^53, got ${v}n`);
    return Number(v);
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`position must be -1, null or a non-negative integer, got ${describe(v)}`);
  return v;
}

/** offset and length on `size` bytes, as fs/promises (its ERR_OUT_OF_RANGE / ERR_INVALID_ARG_TYPE). */
export function parseSpan(offset: unknown, length: unknown, size: number, what: string): { off: number; len: number } {
  const off = offset === undefined || offset === null ? 0 : validateCount(offset, 'offset');
  if (off > size) throw bad(`offset ${off} is past the ${what}'s ${size} bytes`);
  const len = length === undefined || length === null ? size - off : validateCount(length, 'length');
  if (off + len > size) throw bad(`offset ${off} + length ${len} exceeds the ${what}'s ${size} bytes`);
  return { off, len };
}

function isOptions(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !ArrayBuffer.isView(v);
}

function validateOptions(v: unknown, call: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(`${call} options must be an object, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

/** read's four forms (FileHandle.read): the options objects' fields default as fs's destructuring does. */
export function parseRead(a: unknown, b: unknown, c: unknown, d: unknown): SpanCall<ArrayBufferView> {
  let view: unknown = a;
  let offset = b;
  let length = c;
  let position = d;
  if (!ArrayBuffer.isView(a)) {
    const o = validateOptions(a, 'read');
    view = o.buffer === undefined ? Buffer.alloc(DEFAULT_READ_SIZE) : o.buffer;
    if (!ArrayBuffer.isView(view)) throw bad(`read needs a buffer (a Buffer, TypedArray or DataView), got ${describe(view)}`);
    ({ offset, length, position } = o);
  } else if (isOptions(b)) {
    ({ offset, length, position } = b);
  }
  const v = view as ArrayBufferView;
  const bytes = bytesOf(v);
  const { off, len } = parseSpan(offset, length, bytes.byteLength, 'buffer');
  return { view: v, bytes, off, len, at: parsePosition(position) };
}

/** An encoding name Buffer knows, or utf8 for undefined/null. */
export function parseEncoding(v: unknown, call: string): BufferEncoding {
  if (v === undefined || v === null) return 'utf8';
  if (typeof v !== 'string' || !Buffer.isEncoding(v)) throw bad(`${call}: unknown encoding ${describe(v)}`);
  return v;
}

/** The bytes of a string in `enc`; odd-length hex is refused as fs does (ERR_INVALID_ARG_VALUE there). */
export function encodeString(s: string, enc: BufferEncoding, call: string): Buffer {
  if (enc === 'hex' && s.length % 2 !== 0) throw bad(`${call}: a hex string must have an even length, got ${s.length}`);
  return Buffer.from(s, enc);
}

/** write's forms (FileHandle.write): for a string the second argument is the position, the third the encoding. */
export function parseWrite<T>(data: T, b: unknown, c: unknown, d: unknown): SpanCall<T> {
  if (typeof data === 'string') {
    // A fourth argument is the buffer form's position: for a string it would be dropped silently.
    if (d !== undefined && d !== null) throw bad(`write(string, position, encoding) takes no fourth argument, got ${describe(d)}: the second argument is the position`);
    const at = parsePosition(b);
    const bytes = encodeString(data, parseEncoding(c, 'write'), 'write');
    return { view: data, bytes, off: 0, len: bytes.byteLength, at };
  }
  if (!ArrayBuffer.isView(data)) throw bad(`write needs a string, Buffer, TypedArray or DataView, got ${describe(data)}`);
  let offset = b;
  let length = c;
  let position = d;
  if (isOptions(b)) ({ offset, length, position } = b);
  const bytes = bytesOf(data);
  const { off, len } = parseSpan(offset, length, bytes.byteLength, 'data');
  return { view: data, bytes, off, len, at: parsePosition(position) };
}

/** readv/writev's buffer list: an array of ArrayBufferViews, as bytes. */
export function parseBuffers(v: unknown, call: string): Uint8Array[] {
  if (!Array.isArray(v)) throw bad(`${call} needs an array of buffers, got ${describe(v)}`);
  // Array.from, not map: a hole in a sparse array is a missing buffer (EINVAL), not skipped.
  return Array.from(v as unknown[], (b, i) => {
    if (!ArrayBuffer.isView(b)) throw bad(`${call}: buffers[${i}] is not a Buffer, TypedArray or DataView, got ${describe(b)}`);
    return bytesOf(b);
  });
}

/** readFile/writeFile options: an encoding string or { encoding, flag, signal } (flag is ignored on a handle, as fs). */
export function parseFileOptions(v: unknown, call: string): { encoding: BufferEncoding | null; signal: AbortSignal | undefined } {
  if (typeof v === 'string') return { encoding: parseEncoding(v, call), signal: undefined };
  const o = validateOptions(v, call);
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw bad(`${call}: signal must be an AbortSignal, got ${describe(signal)}`);
  return { encoding: o.encoding === undefined || o.encoding === null ? null : parseEncoding(o.encoding, call), signal };
}

/** The bytes writeFile/appendFile write: a string in the options' encoding, or any ArrayBufferView. */
export function fileData(data: unknown, encoding: BufferEncoding | null, call: string): Uint8Array {
  if (typeof data === 'string') return encodeString(data, encoding ?? 'utf8', call);
  if (data instanceof String) return encodeString(String(data), encoding ?? 'utf8', call);
  if (ArrayBuffer.isView(data)) return bytesOf(data);
  throw bad(`${call} needs a string, Buffer, TypedArray or DataView, got ${describe(data)} (for a stream or iterable, write it in parts)`);
}

/** What fs rejects with when a call's signal is already aborted. */
export function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/** readLines / a read stream's options, as fs.createReadStream's: start and end (inclusive) in bytes, highWaterMark, encoding, autoClose. */
export interface LinesOptions {
  start: number | null;
  end: number;
  highWaterMark: number;
  encoding: BufferEncoding | null;
  autoClose: boolean;
}

export function parseLinesOptions(v: unknown): LinesOptions {
  const o = typeof v === 'string' ? { encoding: v } : validateOptions(v, 'readLines');
  const start = o.start === undefined ? null : validateCount(o.start, 'start');
  const end = o.end === undefined || o.end === Infinity ? Number.MAX_SAFE_INTEGER : validateCount(o.end, 'end');
  if (start !== null && start > end) throw bad(`start ${start} is past end ${end}`);
  const hwm = o.highWaterMark === undefined ? 64 * 1024 : validateCount(o.highWaterMark, 'highWaterMark');
  if (hwm === 0 || hwm > 2 ** 30) throw bad(`highWaterMark must be from 1 to 2^30 bytes, got ${hwm}`);
  if (o.autoClose !== undefined && typeof o.autoClose !== 'boolean') throw bad(`autoClose must be a boolean, got ${describe(o.autoClose)}`);
  return { start, end, highWaterMark: hwm, encoding: o.encoding === undefined || o.encoding === null ? null : parseEncoding(o.encoding, 'readLines'), autoClose: o.autoClose !== false };
}
