/**
 * File names inside a store: relative, '/'-separated, never leaving the store directory and never
 * touching the reserved metadata directory.
 */
import * as path from 'node:path';
import { META_DIR, MAX_NAME_BYTES } from './format.js';
import { CpError } from './errors.js';
import { type IO, isENOENT } from './io.js';

/** Where the store file `name` (a normalised name) lives under the store directory `dir`. */
export function storePath(dir: string, name: string): string {
  return path.join(dir, ...name.split('/'));
}

/** Normalise a user-supplied name; throws EINVAL or EPATH. */
export function normalizeName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) throw new CpError('EINVAL', `file name must be a non-empty string, got ${describe(name)}`);
  if (name.includes('\0')) throw new CpError('EINVAL', 'file name contains a NUL byte');
  if (name.startsWith('/') || path.isAbsolute(name)) throw new CpError('EPATH', `absolute name ${JSON.stringify(name)}: names are relative to the store directory`);
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) throw new CpError('EPATH', `name ${JSON.stringify(name)} escapes the store directory`);
      parts.pop();
      continue;
    }
    parts.push(p);
  }
  if (parts.length === 0) throw new CpError('EINVAL', `name ${JSON.stringify(name)} names the store directory itself`);
  if (parts[0] === META_DIR) throw new CpError('EPATH', `name ${JSON.stringify(name)} is inside the reserved ${META_DIR} directory`);
  const out = parts.join('/');
  if (Buffer.byteLength(out) > MAX_NAME_BYTES) throw new CpError('EINVAL', `name longer than ${MAX_NAME_BYTES} bytes`);
  return out;
}

/**
 * Refuse names whose existing components are symlinks leading out of the store. Resolves true when
 * every component exists, false when one is missing (the name does not exist).
 */
export async function checkInside(io: IO, rootReal: string, root: string, name: string): Promise<boolean> {
  const parts = name.split('/');
  let cur = root;
  for (let i = 0; i < parts.length; i++) {
    cur = path.join(cur, parts[i]);
    let st;
    try {
      st = await io.lstat(cur);
    } catch (e) {
      if (isENOENT(e)) return false;
      throw e;
    }
    if (st.isSymbolicLink) {
      let real: string;
      try {
        real = await io.realpath(cur);
      } catch (e) {
        if (isENOENT(e)) throw new CpError('EPATH', `name ${JSON.stringify(name)} goes through a dangling symlink`);
        throw e;
      }
      if (real !== rootReal && !real.startsWith(rootReal + path.sep)) {
        throw new CpError('EPATH', `name ${JSON.stringify(name)} leaves the store through the symlink ${parts.slice(0, i + 1).join('/')}`);
      }
      if (real === path.join(rootReal, META_DIR) || real.startsWith(path.join(rootReal, META_DIR) + path.sep)) {
        throw new CpError('EPATH', `name ${JSON.stringify(name)} leads into the reserved ${META_DIR} directory`);
      }
    } else if (i < parts.length - 1 && !st.isDirectory) {
      throw new CpError('ENOENT', `${parts.slice(0, i + 1).join('/')} is not a directory`);
    }
  }
  return true;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v).slice(0, 40)}`;
}
