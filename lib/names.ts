/**
 * File names inside a store: relative, '/'-separated, never leaving the store directory and never
 * touching the reserved metadata directory.
 *
 * No symlink is followed at any component of a store name (like openat2's RESOLVE_NO_SYMLINKS): at
 * the call (validateInside) and again at write time, where the applier, recovery and the flusher open
 * store files through openInStore (each parent directory lstat'ed in turn, O_NOFOLLOW on the last
 * component), so a symlink planted after the call is refused too instead of written through.
 */
import * as path from 'node:path';
import { META_DIR, MAX_NAME_BYTES } from './format.js';
import { CpError } from './errors.js';
import { type IO, type OpenMode, type StatInfo, isENOENT } from './io.js';

/** Longest component of a name, in bytes (Linux NAME_MAX). */
export const NAME_MAX = 255;
/** Longest path the kernel takes, in bytes, its terminating NUL included (Linux PATH_MAX). */
export const PATH_MAX = 4096;

/** Where the store file `name` (a normalised name) lives under the store directory `dir`. */
export function storePath(dir: string, name: string): string {
  return path.join(dir, ...name.split('/'));
}

/** A name for a one-line message: JSON-quoted, long ones shortened. */
export function quote(name: string): string {
  const j = [...JSON.stringify(name)];
  return j.length <= 80 ? j.join('') : `${j.slice(0, 60).join('')}..." (${Buffer.byteLength(name)} bytes)`;
}

/** A lone (unpaired) UTF-16 surrogate: with the u flag a paired one is part of a code point above U+FFFF. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Normalise a user-supplied name; throws EINVAL or EPATH. With `dir` (the store directory), the
 * file's whole path must also fit in PATH_MAX.
 */
export function normalizeName(name: unknown, dir?: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new CpError('EINVAL', `file name must be a non-empty string, got ${describe(name)}`);
  if (name.includes('\0')) throw new CpError('EINVAL', 'file name contains a NUL byte');
  // A lone surrogate has no UTF-8 form: it would reach the file system as U+FFFD, so two such names
  // would be two files to the store and one on disk.
  const lone = LONE_SURROGATE.exec(name);
  if (lone) throw new CpError('EINVAL', `file name ${quote(name)} is not well-formed Unicode (a lone surrogate at index ${lone.index})`);
  if (name.startsWith('/') || path.isAbsolute(name)) throw new CpError('EPATH', `absolute name ${quote(name)}: names are relative to the store directory`);
  const raw = name.split('/');
  const parts: string[] = [];
  for (const p of raw) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) throw new CpError('EPATH', `name ${quote(name)} escapes the store directory`);
      parts.pop();
      continue;
    }
    parts.push(p);
  }
  if (parts.length === 0) throw new CpError('EINVAL', `name ${quote(name)} names the store directory itself`);
  if (parts[0] === META_DIR) throw new CpError('EPATH', `name ${quote(name)} is inside the reserved ${META_DIR} directory`);
  const last = raw[raw.length - 1];
  if (last === '' || last === '.' || last === '..') {
    throw new CpError('EINVAL', `name ${quote(name)} ends in ${last === '' ? "'/'" : `'/${last}'`}: a file name never names a directory`);
  }
  for (const p of parts) {
    const n = Buffer.byteLength(p);
    if (n > NAME_MAX) throw new CpError('EINVAL', `name ${quote(name)} has a component of ${n} bytes: the limit is ${NAME_MAX} (NAME_MAX)`);
  }
  const out = parts.join('/');
  if (Buffer.byteLength(out) > MAX_NAME_BYTES) throw new CpError('EINVAL', `name longer than ${MAX_NAME_BYTES} bytes`);
  if (dir !== undefined) {
    const full = Buffer.byteLength(storePath(dir, out)) + 1;
    if (full > PATH_MAX) throw new CpError('EINVAL', `the path of ${quote(name)} in store ${quote(dir)} is ${full} bytes with its NUL: the limit is ${PATH_MAX} (PATH_MAX)`);
  }
  return out;
}

/**
 * Refuse names with a symlink at any component (EPATH), and names whose parent is a file (ENOENT).
 * Resolves true when every component exists, false when one is missing (the name does not exist).
 * (Validates the name on disk; the commit is the only "check" in cpfile.)
 */
export async function validateInside(io: IO, root: string, name: string, unlinked?: (prefix: string) => boolean): Promise<boolean> {
  const parts = name.split('/');
  let cur = root;
  for (let i = 0; i < parts.length; i++) {
    cur = path.join(cur, parts[i]);
    // A file on disk whose unlink (or rename away) is pending is gone as far as the store's calls
    // go: the name below it does not exist yet, and its directory is made when it is applied.
    if (i < parts.length - 1 && unlinked?.(parts.slice(0, i + 1).join('/'))) return false;
    let st;
    try {
      st = await io.lstat(cur);
    } catch (e) {
      if (isENOENT(e)) return false;
      throw e;
    }
    if (st.isSymbolicLink) {
      throw new CpError('EPATH', `name ${quote(name)} goes through the symlink ${quote(parts.slice(0, i + 1).join('/'))}: cpfile follows no symlink inside a store`, {
        details: { file: name, path: cur },
      });
    } else if (i < parts.length - 1 && !st.isDirectory) {
      throw new CpError('ENOENT', `${parts.slice(0, i + 1).join('/')} is not a directory`);
    }
  }
  return true;
}

const SYMLINK = 'a symbolic link';

/** EPATH for a store file whose path meets `at`, which is `what` (a symlink, not a directory, ...). */
export function refused(verb: 'read' | 'write', name: string, at: string, what: string): CpError {
  const rule = what === SYMLINK ? ', and cpfile follows no symlink inside a store' : '';
  const hint = verb === 'write' ? 'remove it, then reopen the store: its committed epochs are applied then' : 'remove it';
  return new CpError('EPATH', `refusing to ${verb} store file ${quote(name)}: ${at} is ${what}${rule} (${hint})`, {
    details: { file: name, path: at },
  });
}

/** A directory reached by walk(): `at` to build paths in it, `real` for messages and syncs. */
interface Reached {
  /** Where to look names up in the directory: its fd-relative path (IO.dirRef) or its path. */
  at: string;
  /** Its path below the store directory. */
  real: string;
  /** Close what the walk holds (the directory's fd). */
  close(): Promise<void>;
}

const HELD_NOTHING = async (): Promise<void> => undefined;

/**
 * Reach the directory holding the store file `name` (its first `count` components below root), in
 * order, following no symlink: EPATH for a symlink or a non-directory on the way. A missing one is
 * made with `create` (else: null). `parent(dir)` is called with each directory whose entries a
 * lookup or creation depended on.
 *
 * Where the IO names open directories by path (IO.dirRef: /proc/self/fd/N), each component is opened
 * with O_DIRECTORY | O_NOFOLLOW relative to the directory opened before it, as openat(2) would: a
 * directory swapped for a symlink at any moment is then never followed, because the lookup of the
 * next component happens in the directory already opened, not by path again. Elsewhere (the
 * simulator) each component is lstat'ed by path.
 */
async function walk(io: IO, root: string, name: string, parts: string[], count: number, create: boolean,
  parent: ((dir: string) => void) | undefined, verb: 'read' | 'write'): Promise<Reached | null> {
  if (!io.dirRef) {
    const dir = await walkByPath(io, root, name, parts, count, create, parent, verb);
    return dir === null ? null : { at: dir, real: dir, close: HELD_NOTHING };
  }
  let fd = await io.open(root, 'read', { directory: true });
  let real = root;
  try {
    for (let i = 0; i < count; i++) {
      const next = path.join(await io.dirRef(fd), parts[i]);
      const nextReal = path.join(real, parts[i]);
      let sub: number | null = null;
      for (let attempt = 0; sub === null; attempt++) {
        try {
          sub = await io.open(next, 'read', { directory: true, noFollow: true });
        } catch (e) {
          const code = (e as NodeJS.ErrnoException)?.code;
          if (code === 'ELOOP') throw refused(verb, name, nextReal, SYMLINK);
          if (code === 'ENOTDIR') throw refused(verb, name, nextReal, 'not a directory');
          if (!isENOENT(e) || attempt > 0) throw e;
          if (!create) return null;
          // false: it appeared meanwhile; the open says what it is.
          await io.mkdir(next);
        }
      }
      if (parent) parent(real);
      await io.close(fd);
      fd = sub;
      real = nextReal;
    }
  } catch (e) {
    await io.close(fd).catch(() => undefined);
    throw e;
  }
  const held = fd;
  return { at: await io.dirRef(held), real, close: () => io.close(held) };
}

/** walk() where the IO cannot name open directories: lstat each component by path. */
async function walkByPath(io: IO, root: string, name: string, parts: string[], count: number, create: boolean,
  parent: ((dir: string) => void) | undefined, verb: 'read' | 'write'): Promise<string | null> {
  let dir = root;
  for (let i = 0; i < count; i++) {
    const next = path.join(dir, parts[i]);
    let st: StatInfo | null = null;
    try {
      st = await io.lstat(next);
    } catch (e) {
      if (!isENOENT(e)) throw e;
    }
    if (st === null) {
      if (!create) return null;
      // false: it appeared meanwhile; the lstat below says what it is.
      if (!(await io.mkdir(next))) st = await io.lstat(next);
    }
    if (st !== null) {
      if (st.isSymbolicLink) throw refused(verb, name, next, SYMLINK);
      if (!st.isDirectory) throw refused(verb, name, next, 'not a directory');
    }
    if (parent) parent(dir);
    dir = next;
  }
  return dir;
}

/** Make the parent directories of the store file `name` below root, following no symlink (EPATH as openInStore). */
export async function makeParents(io: IO, root: string, name: string, parent?: (dir: string) => void): Promise<void> {
  const parts = name.split('/');
  const d = await walk(io, root, name, parts, parts.length - 1, true, parent, 'write');
  await d?.close();
}

/**
 * Run `fn` with the path of `name`'s last component inside its parent directory, reached without
 * following a symlink (EPATH as openInStore): `fn(path, real)` gets a path to use for the call
 * (fd-relative where the IO allows it) and the real one for messages. Resolves null, without calling
 * `fn`, when a parent directory is missing; with `create`, missing parents are made.
 */
export async function inParent<T>(io: IO, root: string, name: string, fn: (at: string, real: string) => Promise<T>,
  opts: { create?: boolean; parent?: (dir: string) => void; verb?: 'read' | 'write' } = {}): Promise<T | null> {
  const parts = name.split('/');
  const d = await walk(io, root, name, parts, parts.length - 1, opts.create === true, opts.parent, opts.verb ?? 'write');
  if (d === null) return null;
  const last = parts[parts.length - 1];
  try {
    return await fn(path.join(d.at, last), path.join(d.real, last));
  } finally {
    await d.close().catch(() => undefined);
  }
}

/**
 * Open the store file `name` under `root` following no symlink: the parent directories are reached
 * one by one (walk(): a symlink or a non-directory there is refused with EPATH, naming the store file
 * and the offending path) and the last component is opened with O_NOFOLLOW (a symlink there: EPATH).
 * The applier, recovery and the flusher use it at write time, the store's reads too, so that nothing
 * planted after a call's own check is followed.
 *
 * 'read' and 'readwrite' resolve null when the file or a parent directory is missing. 'create'
 * makes the missing parent directories and the file; `parent(dir)` is called with the directory
 * whose entries each component's lookup or creation depends on (the caller syncs them: a directory
 * that exists may come from a killed run and not be durable yet). A file opened for writing must be
 * a regular file with one link (a hard link would carry the write to another name): else EPATH.
 */
export async function openInStore(io: IO, root: string, name: string, mode: OpenMode, parent?: (dir: string) => void): Promise<number | null> {
  const verb = mode === 'read' ? 'read' : 'write';
  const create = mode === 'create' || mode === 'createExcl';
  const r = await inParent(io, root, name, async (at, full) => {
    let fd: number;
    try {
      fd = await io.open(at, mode, { noFollow: true });
    } catch (e) {
      if (isENOENT(e) && (mode === 'read' || mode === 'readwrite')) return null;
      if ((e as NodeJS.ErrnoException)?.code === 'ELOOP') throw refused(verb, name, full, SYMLINK);
      throw e;
    }
    if (mode !== 'read') {
      let st: StatInfo;
      try {
        st = await io.fstat(fd);
      } catch (e) {
        await io.close(fd).catch(() => undefined);
        throw e;
      }
      if (!st.isFile || st.nlink > 1) {
        await io.close(fd).catch(() => undefined);
        if (!st.isFile) throw refused(verb, name, full, 'not a regular file');
        throw new CpError('EPATH', `refusing to write store file ${quote(name)}: ${full} has ${st.nlink} hard links (a write would change the other names too; cpfile writes only files with one link)`, {
          details: { file: name, path: full, nlink: st.nlink },
        });
      }
    }
    return fd;
  }, { create, parent, verb });
  return r ?? null;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v).slice(0, 40)}`;
}
