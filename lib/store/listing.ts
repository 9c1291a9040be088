/**
 * readdir, stat and exists by name, when their turn comes in the call queue: the store's names as its
 * calls see them now, the files on disk merged with the pending namespace (lib/store/namespace.ts:
 * pending creates and renames are files, tombstones hide what they name, and names below pending
 * names are directories-to-be). No symlink is followed (lib/names.ts rules): a name through one
 * fails with EPATH, and listings leave out what the store cannot open (symlinks, FIFOs, sockets,
 * devices). The metadata directory is never listed.
 */
import * as path from 'node:path';
import { CpError, ioError } from '../errors.js';
import { META_DIR } from '../format.js';
import { isENOENT, type StatInfo } from '../io.js';
import { normalizeName, storePath, inParent, quote, describe } from '../names.js';
import type { StoreParts } from './parts.js';

export interface ReaddirOptions {
  recursive?: boolean;
  withFileTypes?: boolean;
  /** Only 'utf8' (names are strings). */
  encoding?: 'utf8' | 'utf-8' | null;
}

/** What readdir resolves with for options `O`. */
export type ReaddirResult<O> = O extends { withFileTypes: true } ? StoreDirent[] : string[];

type Kind = 'file' | 'dir';

/** One entry of readdir({ withFileTypes: true }), as fs.Dirent: parentPath is relative to the store directory ('' at its root). */
export class StoreDirent {
  constructor(readonly name: string, readonly parentPath: string, private readonly kind: Kind) {}
  isFile(): boolean { return this.kind === 'file'; }
  isDirectory(): boolean { return this.kind === 'dir'; }
  /** Never: listings hold only what the store can open. */
  isSymbolicLink(): boolean { return false; }
  isFIFO(): boolean { return false; }
  isSocket(): boolean { return false; }
  isBlockDevice(): boolean { return false; }
  isCharacterDevice(): boolean { return false; }
}

/** What store.stat() resolves with: the size as this store sees it (pending changes included; 0 for a directory). */
export class FileStat {
  constructor(readonly size: number, private readonly kind: Kind) {}
  isFile(): boolean { return this.kind === 'file'; }
  isDirectory(): boolean { return this.kind === 'dir'; }
}

/**
 * A name for readdir, stat or exists, which may name a directory: '.' (and, for readdir, '') is the
 * store directory itself (returned as ''), trailing '/' and '.' and '..' components resolve as paths
 * do; everything else as normalizeName (EINVAL, EPATH). `slash`: it ended in '/', so it must be a directory.
 */
export function normalizeDirName(v: unknown, storeDir: string, emptyIsRoot: boolean): { n: string; slash: boolean } {
  if (typeof v !== 'string' || (v === '' && !emptyIsRoot)) throw new CpError('EINVAL', `name must be a non-empty string, got ${describe(v)}`);
  if (v === '') return { n: '', slash: false };
  if (path.isAbsolute(v)) normalizeName(v, storeDir); // EPATH
  const out: string[] = [];
  for (const p of v.split('/')) {
    if (p === '' || p === '.') continue;
    if (p !== '..') out.push(p);
    else if (out.pop() === undefined) throw new CpError('EPATH', `name ${quote(v)} escapes the store directory`);
  }
  if (out.length === 0) return { n: '', slash: false };
  return { n: normalizeName(out.join('/'), storeDir), slash: /\/\.?$/.test(v) };
}

export function parseReaddirOptions(o: unknown): { recursive: boolean; withFileTypes: boolean } {
  if (o === undefined || o === null) return { recursive: false, withFileTypes: false };
  if (typeof o === 'string') {
    if (o === 'utf8' || o === 'utf-8') return { recursive: false, withFileTypes: false };
    throw new CpError('EINVAL', `readdir encoding must be 'utf8', got ${describe(o)}`);
  }
  if (typeof o !== 'object' || Array.isArray(o)) throw new CpError('EINVAL', `readdir options must be an object, got ${describe(o)}`);
  const { recursive = false, withFileTypes = false, encoding } = o as ReaddirOptions;
  for (const [k, v] of [['recursive', recursive], ['withFileTypes', withFileTypes]] as const) {
    if (typeof v !== 'boolean') throw new CpError('EINVAL', `readdir option ${k} must be a boolean, got ${describe(v)}`);
  }
  if (encoding !== undefined && encoding !== null && encoding !== 'utf8' && encoding !== 'utf-8') {
    throw new CpError('EINVAL', `readdir encoding must be 'utf8', got ${describe(encoding)}`);
  }
  return { recursive, withFileTypes };
}

/** A name as the store sees it: a file (with its size), a directory (`onDisk`: one exists there), or nothing. */
type Seen = { kind: 'file'; size: number } | { kind: 'dir'; onDisk: boolean } | { kind: 'none'; why: string };

function notDir(at: string): CpError {
  return new CpError('ENOTDIR', `${quote(at)} is a file, not a directory`);
}

async function lstatOrNull(parts: StoreParts, name: string): Promise<StatInfo | null> {
  try {
    return await parts.io.lstat(storePath(parts.dir, name));
  } catch (e) {
    if (isENOENT(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw ioError(e, `looking up ${quote(name)}`);
  }
}

/** What `n` ('' for the store directory) is, as this store sees it; ENOTDIR when a parent is a file, EPATH through a symlink. */
export async function resolveName(parts: StoreParts, n: string): Promise<Seen> {
  if (n === '') return { kind: 'dir', onDisk: true };
  const ns = parts.pending.overlays;
  const comps = n.split('/');
  let onDisk = true;
  let seen: Seen = { kind: 'dir', onDisk: true };
  for (let i = 0; i < comps.length; i++) {
    if (seen.kind === 'file') throw notDir(comps.slice(0, i).join('/'));
    if (seen.kind === 'none') return seen;
    const p = comps.slice(0, i + 1).join('/');
    const ov = ns.get(p);
    const below = ns.hasUnder(p);
    if (ov?.exists) {
      seen = { kind: 'file', size: ov.size };
      continue;
    }
    // A tombstone: what is on disk there is a file that is going away, so nothing below it is on disk.
    if (ov) onDisk = false;
    const st = onDisk ? await lstatOrNull(parts, p) : null;
    if (st === null) onDisk = false;
    if (st?.isSymbolicLink) {
      throw new CpError('EPATH', `name ${quote(n)} goes through the symlink ${quote(p)}: cpfile follows no symlink inside a store`, { details: { file: n, path: p } });
    }
    if (st?.isDirectory || below) seen = { kind: 'dir', onDisk: st?.isDirectory === true };
    else if (st?.isFile) seen = { kind: 'file', size: st.size };
    else if (st) throw new CpError('EINVAL', `${quote(p)} is not a regular file or a directory: a store holds only those`);
    else seen = { kind: 'none', why: `no such file or directory ${quote(n)} in store ${parts.dir}` };
  }
  return seen;
}

/** store.stat(): ENOENT when absent; ENOTDIR for a file named with a trailing '/'. */
export async function statNow(parts: StoreParts, n: string, slash: boolean): Promise<FileStat> {
  const seen = await resolveName(parts, n);
  if (seen.kind === 'none') throw new CpError('ENOENT', seen.why);
  if (seen.kind === 'file') {
    if (slash) throw notDir(n);
    return new FileStat(seen.size, 'file');
  }
  return new FileStat(0, 'dir');
}

/** store.exists(): false for an absent name or one below a file; other failures (EPATH, EINVAL) reject. */
export async function existsNow(parts: StoreParts, n: string, slash: boolean): Promise<boolean> {
  try {
    await statNow(parts, n, slash);
    return true;
  } catch (e) {
    if (e instanceof CpError && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return false;
    throw e;
  }
}

/** dir -> child -> what the pending namespace makes of it ('gone': a tombstone, unless also a directory). */
type PendingIndex = Map<string, Map<string, Kind | 'gone'>>;

function pendingIndex(parts: StoreParts): PendingIndex {
  const index: PendingIndex = new Map();
  const put = (dir: string, child: string, k: Kind | 'gone'): void => {
    let m = index.get(dir);
    if (!m) index.set(dir, (m = new Map()));
    const had = m.get(child);
    if (had === undefined || had === 'gone' || k === 'dir') m.set(child, k);
  };
  for (const [name, ov] of parts.pending.overlays) {
    const comps = name.split('/');
    for (let i = 0; i < comps.length - 1; i++) put(comps.slice(0, i).join('/'), comps[i], 'dir');
    put(comps.slice(0, -1).join('/'), comps[comps.length - 1], ov.exists ? 'file' : 'gone');
  }
  return index;
}

/** The regular files and directories in the directory `d` on disk, reached without following a symlink. */
async function diskEntries(parts: StoreParts, d: string): Promise<Map<string, Kind>> {
  const { io, dir } = parts;
  const out = new Map<string, Kind>();
  const read = async (at: string): Promise<void> => {
    let fd: number;
    try {
      fd = await io.open(at, 'read', { directory: true, noFollow: d !== '' });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw new CpError('EPATH', `directory ${quote(d)} was replaced while it was listed (cpfile follows no symlink inside a store)`);
      if (isENOENT(e)) return;
      throw ioError(e, `listing ${quote(d)}`);
    }
    try {
      const base = io.dirRef ? await io.dirRef(fd) : at;
      for (const child of await io.readdir(base)) {
        if (d === '' && child === META_DIR) continue;
        const st = await io.lstat(path.join(base, child)).catch((e) => {
          if (isENOENT(e)) return null;
          throw ioError(e, `listing ${quote(d)}`);
        });
        if (st?.isFile) out.set(child, 'file');
        else if (st?.isDirectory) out.set(child, 'dir');
      }
    } finally {
      await io.close(fd).catch(() => undefined);
    }
  };
  if (d === '') await read(dir);
  else await inParent(io, dir, d, (at) => read(at), { verb: 'read' });
  return out;
}

/** store.readdir(): the names under `d` ('' for the store directory), sorted; with types as StoreDirents. */
export async function listNow(parts: StoreParts, d: string, opts: { recursive: boolean; withFileTypes: boolean }): Promise<string[] | StoreDirent[]> {
  const seen = await resolveName(parts, d);
  if (seen.kind === 'none') throw new CpError('ENOENT', seen.why);
  if (seen.kind === 'file') throw notDir(d);
  const index = pendingIndex(parts);
  const found: { rel: string; parent: string; name: string; kind: Kind }[] = [];
  const walk = async (sub: string, onDisk: boolean): Promise<void> => {
    const here = onDisk ? await diskEntries(parts, sub) : new Map<string, Kind>();
    const diskDirs = new Set([...here].filter(([, k]) => k === 'dir').map(([c]) => c));
    for (const [child, k] of index.get(sub) ?? []) {
      if (k === 'gone') here.delete(child);
      else here.set(child, k);
    }
    const relDir = d === '' ? sub : sub.slice(d.length + 1);
    for (const [child, kind] of here) {
      found.push({ rel: relDir === '' ? child : `${relDir}/${child}`, parent: sub, name: child, kind });
      if (opts.recursive && kind === 'dir') await walk(sub === '' ? child : `${sub}/${child}`, diskDirs.has(child));
    }
  };
  await walk(d, seen.onDisk);
  found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return opts.withFileTypes ? found.map((f) => new StoreDirent(f.name, f.parent, f.kind)) : found.map((f) => f.rel);
}
