/**
 * The arguments of the whole-file calls (store.readFile, writeFile, appendFile, copyFile) as
 * fs/promises takes them, validated at the call: an encoding string or an options object, data as a
 * string or any ArrayBufferView, copyFile's mode bits. Bad ones are EINVAL, never a crash.
 */
import { constants } from 'node:fs';
import { CpError } from '../errors.js';
import { describe } from '../names.js';

/** readFile's options: an encoding, or { encoding, flag: 'r' }. */
export type ReadFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string } | null;
/** writeFile's and appendFile's options: an encoding (for string data), or { encoding, flag }. */
export type WriteFileOptions = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string } | null;
/** What readFile resolves with for options `O`: a string when an encoding is given. */
export type ReadFileResult<O> = O extends BufferEncoding | { encoding: BufferEncoding } ? string : Buffer;

/**
 * The encoding an options argument gives (null: none). `flag`: the only flag the call takes (fs's
 * default for it); `signal` and `mode` are refused rather than ignored.
 */
export function encodingOf(options: unknown, call: string, flag: string): BufferEncoding | null {
  if (options === undefined || options === null) return null;
  let enc: unknown = options;
  if (typeof options === 'object' && !Array.isArray(options)) {
    const o = options as { encoding?: unknown; flag?: unknown; signal?: unknown; mode?: unknown };
    if (o.flag !== undefined && o.flag !== flag) throw new CpError('EINVAL', `${call} takes flag '${flag}' only, got ${describe(o.flag)}`);
    if (o.signal !== undefined) throw new CpError('EINVAL', `${call} does not take a signal: a store call cannot be aborted once made`);
    if (o.mode !== undefined) throw new CpError('EINVAL', `${call} does not take a mode: store files are created with the default mode`);
    enc = o.encoding;
    if (enc === undefined || enc === null) return null;
  }
  if (typeof enc !== 'string' || !Buffer.isEncoding(enc)) {
    throw new CpError('EINVAL', `${call} options must be an encoding or an object, got ${typeof options === 'string' ? `unknown encoding ${describe(enc)}` : describe(enc)}`);
  }
  return enc;
}

/** The bytes of `data` (a string in `enc`, default utf8, or any ArrayBufferView: not copied). */
export function bytesOf(data: unknown, enc: BufferEncoding | null, call: string): Buffer {
  if (typeof data === 'string') return Buffer.from(data, enc ?? 'utf8');
  if (ArrayBuffer.isView(data)) {
    try {
      return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    } catch {
      // A view of a detached (transferred) ArrayBuffer: Buffer.from's TypeError.
      throw new CpError('EINVAL', `${call} cannot use a view of a detached ArrayBuffer`);
    }
  }
  throw new CpError('EINVAL', `${call} needs a string, Buffer, TypedArray or DataView, got ${describe(data)}`);
}

/** copyFile's mode: 0 or COPYFILE_EXCL, with COPYFILE_FICLONE as a hint (no store file is a clone); true when EXCL. */
export function copyModeExcl(mode: unknown): boolean {
  const known = constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE;
  if (mode === undefined) return false;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || (mode & ~known) !== 0) {
    throw new CpError('EINVAL', `copyFile mode must be 0, COPYFILE_EXCL or COPYFILE_FICLONE (COPYFILE_FICLONE_FORCE is not supported), got ${describe(mode)}`);
  }
  return (mode & constants.COPYFILE_EXCL) !== 0;
}
