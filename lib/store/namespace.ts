/**
 * The store's pending namespace: every name with an overlay (a pending view of a file, or the
 * tombstone of one unlinked or renamed away), plus the directories those names imply.
 *
 * Applying the journal creates the parent directories of every name it creates and never removes a
 * directory, so a name that some pending name lives under is a directory-to-be, and a pending file
 * can never gain children. Checking this before a CREATE or RENAME is journaled keeps a file and a
 * directory of the same name from both being committed (apply could then never finish).
 */
import { CpError } from '../errors.js';
import type { Overlay } from './overlay.js';

export class Namespace extends Map<string, Overlay> {
  /** directory -> how many names with an overlay live somewhere below it */
  private dirs = new Map<string, number>();

  override set(name: string, ov: Overlay): this {
    if (!super.has(name)) this.count(name, 1);
    return super.set(name, ov);
  }

  override delete(name: string): boolean {
    if (!super.delete(name)) return false;
    this.count(name, -1);
    return true;
  }

  override clear(): void {
    super.clear();
    this.dirs.clear();
  }

  /** Whether names with an overlay (files or tombstones) live below `dir`: it is, or is to be, a directory. */
  hasUnder(dir: string): boolean {
    return this.dirs.has(dir);
  }

  private count(name: string, d: number): void {
    for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
      const dir = name.slice(0, i);
      const n = (this.dirs.get(dir) ?? 0) + d;
      if (n > 0) this.dirs.set(dir, n);
      else this.dirs.delete(dir);
    }
  }

  /**
   * Throw when `name` cannot become a file: a pending file sits where one of its parent directories
   * must be, or pending names live below it (it is to be a directory). What is on disk already is
   * validated when the name is resolved (names.ts validateInside, PendingFiles.overlayOf in lib/store/pending.ts).
   */
  assertCanCreate(name: string): void {
    if (this.dirs.has(name)) {
      throw new CpError('EINVAL', `${JSON.stringify(name)} is a directory (of pending names such as ${JSON.stringify(this.firstUnder(name))})`);
    }
    for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
      const dir = name.slice(0, i);
      if (super.get(dir)?.exists) throw new CpError('ENOENT', `${dir} is a file, not a directory (pending in this store)`);
    }
  }

  private firstUnder(dir: string): string {
    for (const k of this.keys()) if (k.startsWith(`${dir}/`)) return k;
    return `${dir}/…`;
  }
}
