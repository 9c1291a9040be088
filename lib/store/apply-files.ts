/**
 * The applier's open data files: a bounded cache of descriptors (least recently used closed first)
 * and the set of files and directories written since the last durability barrier. barrier() is the
 * one place where applied changes are made durable (FORMAT.md R12): dirty data files are
 * fdatasynced, then dirty directories fsynced. A file evicted from the cache is fdatasynced first
 * when it was written (R12, A2).
 */
import * as path from 'node:path';
import { storePath, openInStore } from '../names.js';
import type { ApplyContext } from './applier.js';

/**
 * Descriptors the applier keeps open at most. An epoch may touch any number of files; past this many
 * the least recently used one is closed, fdatasynced first when it is dirty and sync is on. Syncing
 * at eviction rather than remembering the name and reopening it at the barrier is the simple correct
 * choice: the name may have been unlinked or renamed by a later record by then, and a write-back
 * error is only sure to reach a descriptor that was open when it happened. It costs no extra sync
 * (the barrier would have synced that file once anyway) unless the file is written again in the same
 * run after its eviction.
 */
export const APPLY_MAX_FDS = 64;

export class FileCache {
  /** name -> fd, least recently used first. */
  fds = new Map<string, number>();
  dirty = new Set<number>();
  dirtyDirs = new Set<string>();
  private last: string | null = null;
  constructor(private ctx: ApplyContext) {}

  full(name: string): string {
    return storePath(this.ctx.root, name);
  }

  async fd(name: string): Promise<number> {
    let fd = this.fds.get(name);
    if (fd !== undefined) {
      if (this.last !== name) {
        this.fds.delete(name);
        this.fds.set(name, fd);
        this.last = name;
      }
      return fd;
    }
    const { io, root } = this.ctx;
    fd = (await this.spare(() => openInStore(io, root, name, 'readwrite'))) ?? undefined;
    if (fd === undefined) {
      fd = (await this.spare(() => openInStore(io, root, name, 'create', (d) => this.dirtyDirs.add(d))))!;
      this.dirtyDirs.add(path.dirname(this.full(name)));
    }
    await this.admit(name, fd);
    return fd;
  }

  /**
   * Run `fn`, which needs a descriptor; when the process has none left (EMFILE, ENFILE: a low
   * `ulimit -n`, or descriptors the app holds), close the least recently used cached one and try
   * again, down to none cached. So the applier works under any limit that leaves it one descriptor.
   */
  async spare<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const code = (e as NodeJS.ErrnoException)?.code;
        if ((code !== 'EMFILE' && code !== 'ENFILE') || this.fds.size === 0) throw e;
        await this.drop(this.fds.keys().next().value as string);
      }
    }
  }

  /** Keep `fd` as the most recently used; close the least recently used beyond APPLY_MAX_FDS. */
  async admit(name: string, fd: number): Promise<void> {
    this.fds.set(name, fd);
    this.last = name;
    while (this.fds.size > APPLY_MAX_FDS) {
      const oldest = this.fds.keys().next().value as string;
      await this.drop(oldest);
    }
  }

  async drop(name: string): Promise<void> {
    const fd = this.fds.get(name);
    if (fd === undefined) return;
    this.fds.delete(name);
    if (this.last === name) this.last = null;
    if (this.dirty.has(fd)) {
      if (this.ctx.sync) await this.ctx.io.fdatasync(fd);
      this.dirty.delete(fd);
    }
    await this.ctx.io.close(fd);
  }

  /** Make everything applied so far durable. */
  async barrier(): Promise<void> {
    if (this.ctx.sync) {
      for (const fd of this.dirty) await this.ctx.io.fdatasync(fd);
      for (const d of this.dirtyDirs) await this.spare(() => this.ctx.io.fsyncDir(d));
    }
    this.dirty.clear();
    this.dirtyDirs.clear();
  }

  async closeAll(): Promise<void> {
    for (const fd of this.fds.values()) await this.ctx.io.close(fd);
    this.fds.clear();
    this.last = null;
  }
}
