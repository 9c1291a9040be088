/**
 * The store's fs/promises-shaped calls by name (Store.readdir, stat, exists, readFile, writeFile,
 * appendFile, copyFile): each validated at the call (EINVAL, EPATH, ECLOSED: nothing queued), then
 * run in call order through the call queue by its part (listing.ts, whole-files.ts, copy-file.ts).
 */
import { normalizeName } from '../names.js';
import { listNow, statNow, existsNow, normalizeDirName, parseReaddirOptions, type FileStat, type StoreDirent } from './listing.js';
import { readWhole, writeWhole, appendWhole } from './whole-files.js';
import { copyNow } from './copy-file.js';
import { encodingOf, bytesOf, copyModeExcl } from './whole-args.js';
import type { StoreParts } from './parts.js';

/** Validate at the call, then queue what `prepare` returns; a bad argument rejects without queueing. */
function gated<T>(parts: StoreParts, prepare: () => () => Promise<T>): Promise<T> {
  try {
    parts.queue.assertCallable();
    return parts.queue.run(prepare());
  } catch (e) {
    return Promise.reject(e);
  }
}

export function readdir(parts: StoreParts, dir: unknown, options: unknown): Promise<string[] | StoreDirent[]> {
  return gated(parts, () => {
    const { n } = normalizeDirName(dir, parts.dir, true);
    const opts = parseReaddirOptions(options);
    return () => listNow(parts, n, opts);
  });
}

export function stat(parts: StoreParts, name: unknown): Promise<FileStat> {
  return gated(parts, () => {
    const { n, slash } = normalizeDirName(name, parts.dir, false);
    return () => statNow(parts, n, slash);
  });
}

export function exists(parts: StoreParts, name: unknown): Promise<boolean> {
  return gated(parts, () => {
    const { n, slash } = normalizeDirName(name, parts.dir, false);
    return () => existsNow(parts, n, slash);
  });
}

/** readFile: without an encoding, the very promise the queue gives (no extra tick: the pinned digests see this path). */
export function readFile(parts: StoreParts, name: unknown, options: unknown): Promise<Buffer | string> {
  let enc: BufferEncoding | null = null;
  const read = gated(parts, () => {
    const n = normalizeName(name, parts.dir);
    enc = encodingOf(options, 'readFile', 'r');
    return () => readWhole(parts, n);
  });
  const e = enc as BufferEncoding | null;
  return e === null ? read : read.then((b) => b.toString(e));
}

export function writeFile(parts: StoreParts, name: unknown, data: unknown, options: unknown): Promise<void> {
  return gated(parts, () => {
    const n = normalizeName(name, parts.dir);
    const bytes = bytesOf(data, encodingOf(options, 'writeFile', 'w'), 'writeFile');
    return () => writeWhole(parts, n, bytes);
  });
}

export function appendFile(parts: StoreParts, name: unknown, data: unknown, options: unknown): Promise<void> {
  return gated(parts, () => {
    const n = normalizeName(name, parts.dir);
    const bytes = bytesOf(data, encodingOf(options, 'appendFile', 'a'), 'appendFile');
    return () => appendWhole(parts, n, bytes);
  });
}

export function copyFile(parts: StoreParts, from: unknown, to: unknown, mode: unknown): Promise<void> {
  return gated(parts, () => {
    const a = normalizeName(from, parts.dir);
    const b = normalizeName(to, parts.dir);
    const excl = copyModeExcl(mode);
    return () => copyNow(parts, a, b, excl);
  });
}
