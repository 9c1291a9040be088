/**
 * The store's pending files: one overlay (lib/store/overlay.ts) per name with pending changes or an
 * open entry, and tombstones for names unlinked or renamed away, in the pending namespace
 * (lib/store/namespace.ts). It resolves a name to its overlay (opening the file on disk when nothing
 * is pending), and drops what the applier has made durable.
 */
import { CpError, ioError } from '../errors.js';
import { type IO } from '../io.js';
import { validateInside, openInStore } from '../names.js';
import type { Entry } from './host.js';
import { Namespace } from './namespace.js';
import { Overlay } from './overlay.js';

export interface PendingDeps {
  io: IO;
  dir: string;
  /** The open entries: their overlays stay while they are open. */
  open: ReadonlyMap<string, Entry>;
}

export class PendingFiles {
  readonly overlays = new Namespace();
  /** The name overlayOf() just found absent, having validated it with validateInside(). */
  private checkedAbsent: string | null = null;

  constructor(private deps: PendingDeps) {}

  get(name: string): Overlay | undefined {
    return this.overlays.get(name);
  }

  /** overlayOf() has just validated `name` on disk and found it absent (no need to validate it again). */
  foundAbsent(name: string): boolean {
    return this.checkedAbsent === name;
  }

  /** Whether `name`'s file is pending unlink or rename away (a tombstone): names under it may be created. */
  readonly unlinkedPending = (name: string): boolean => {
    const ov = this.overlays.get(name);
    return ov !== undefined && !ov.exists;
  };

  /** Refuse names through a symlink or under a file (names.ts validateInside); resolves whether `name` exists on disk. */
  validate(name: string): Promise<boolean> {
    return validateInside(this.deps.io, this.deps.dir, name, this.unlinkedPending);
  }

  closeFd(fd: number | null): void {
    if (fd !== null) this.deps.io.close(fd).catch(() => undefined);
  }

  /** The overlay of `name`, opening the on-disk file when nothing is pending; null when it does not exist. */
  async overlayOf(name: string): Promise<Overlay | null> {
    this.checkedAbsent = null;
    const ov = this.overlays.get(name);
    if (ov) return ov.exists ? ov : null;
    const { io, dir } = this.deps;
    if (!(await validateInside(io, dir, name, this.unlinkedPending))) {
      // lstat found no such file: no need to try opening it, nor for the caller to validate it again.
      this.checkedAbsent = name;
      return null;
    }
    let fd: number | null;
    try {
      // No symlink followed here either (one planted since validateInside: EPATH).
      fd = await openInStore(io, dir, name, 'read');
    } catch (e) {
      if (e instanceof CpError) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw ioError(e, `opening ${name}`);
    }
    if (fd === null) return null;
    const st = await io.fstat(fd);
    if (!st.isFile) {
      await io.close(fd);
      throw new CpError('EINVAL', `${JSON.stringify(name)} is ${st.isDirectory ? 'a directory' : 'not a regular file'}`);
    }
    const fresh = new Overlay(fd, st.size, true, true);
    this.overlays.set(name, fresh);
    return fresh;
  }

  /**
   * Drop an overlay nobody uses and nothing is pending on. One with pending changes stays, but not its
   * base fd while the file is at its name on disk (reads reopen it there, readPending): an epoch that
   * changes thousands of files holds no descriptor per file.
   */
  release(name: string): void {
    const ov = this.overlays.get(name);
    if (!ov || this.deps.open.has(name)) return;
    if (ov.lastPos >= 0) {
      if (ov.nsPos < 0 && ov.baseFd !== null) {
        this.closeFd(ov.baseFd);
        ov.baseFd = null;
      }
      return;
    }
    this.overlays.delete(name);
    this.closeFd(ov.baseFd);
  }

  /** Close the base fd of the overlay at `name`, if any: a new file is about to take the name. */
  closeBase(name: string): void {
    const old = this.overlays.get(name);
    if (old) this.closeFd(old.baseFd);
  }

  /** The overlay of a file created by the CREATE record at `p` (replacing any tombstone). */
  created(name: string, p: number): Overlay {
    const ov = new Overlay(null, 0, true, false);
    ov.truncate(0, p);
    ov.nsPos = p;
    ov.touch(p);
    this.overlays.set(name, ov);
    return ov;
  }

  /** `name` is unlinked or renamed away: a tombstone takes its place (the caller touches it with the record). */
  tombstone(name: string): Overlay {
    const tomb = new Overlay(null, 0, false, false);
    this.overlays.set(name, tomb);
    return tomb;
  }

  /**
   * Drop what the applier made durable (everything before `applied`) from every overlay; returns the
   * journal files that overlays still read from (the rest are free for reuse).
   */
  settle(applied: number): Set<number> {
    const pinned = new Set<number>();
    for (const [name, ov] of this.overlays) {
      if (!ov.exists) {
        if (ov.lastPos < applied) this.overlays.delete(name);
        continue;
      }
      if (ov.settle(applied)) this.release(name);
      for (const e of ov.extents) pinned.add(e.index);
    }
    return pinned;
  }

  /** Forget every overlay (after a rollback, when the disk is the whole truth again). */
  clear(): void {
    for (const ov of this.overlays.values()) this.closeFd(ov.baseFd);
    this.overlays.clear();
  }
}
