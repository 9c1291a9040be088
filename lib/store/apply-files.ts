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

/**
 * Recovery's ApplyContext.earlySync: after this many bytes written to one file since its last sync,
 * an fdatasync of it is started and not awaited, so that the disk writes the file back while the
 * applier goes on writing; the barrier then waits for it (and fails with its error) and syncs what
 * came after. Without it the whole replay waited for one fdatasync at the barrier: a kernel starts
 * writing back by itself only at a tenth of memory or so.
 */
export const EARLY_SYNC_BYTES = 32 * 1024 * 1024;

interface EarlySync {
  done: boolean;
  failed: unknown;
  settled: Promise<void>;
}

export class FileCache {
  /** name -> fd, least recently used first. */
  fds = new Map<string, number>();
  dirty = new Set<number>();
  dirtyDirs = new Set<string>();
  private last: string | null = null;
  /** fd -> bytes written since its last sync (earlySync only). */
  private unsynced = new Map<number, number>();
  /** fd -> its last early fdatasync: in flight, or done; a failure is kept for the barrier (settle()). */
  private early = new Map<number, EarlySync>();
  constructor(private ctx: ApplyContext) {}

  /** `fd` was written `bytes` bytes: dirty until the barrier (and, with earlySync, synced early now and then). */
  wrote(fd: number, bytes: number): void {
    this.dirty.add(fd);
    const every = this.ctx.earlySync ?? 0;
    if (every <= 0 || !this.ctx.sync) return;
    const n = (this.unsynced.get(fd) ?? 0) + bytes;
    // One at a time for the whole replay (each holds a thread of libuv's pool, which the replay's
    // writes and reads share); after a failure none: the barrier reports it.
    if (n < every || this.earlyBusy()) {
      this.unsynced.set(fd, n);
      return;
    }
    this.unsynced.delete(fd);
    const e: EarlySync = { done: false, failed: undefined, settled: Promise.resolve() };
    // (caught here so that it is never unhandled; settle() rethrows it)
    e.settled = this.ctx.io.fdatasync(fd).then(() => { e.done = true; }, (err: unknown) => { e.done = true; e.failed = err ?? new Error('fdatasync failed'); });
    this.early.set(fd, e);
  }

  private earlyBusy(): boolean {
    for (const e of this.early.values()) if (!e.done || e.failed !== undefined) return true;
    return false;
  }

  /**
   * Wait for the early syncs in flight (of `fd` only, when given); throws the first failure: a
   * write-back error is reported to one fdatasync only, so it must not be dropped here.
   */
  private async settle(fd?: number): Promise<void> {
    const fds = fd === undefined ? [...this.early.keys()] : this.early.has(fd) ? [fd] : [];
    let first: unknown;
    for (const f of fds) {
      const e = this.early.get(f)!;
      await e.settled;
      this.early.delete(f);
      if (e.failed !== undefined && first === undefined) first = e.failed;
    }
    if (first !== undefined) throw first;
  }

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
    try {
      // (no await when no early sync was started: see the timing note in applier.ts)
      if (this.early.has(fd)) await this.settle(fd);
      this.unsynced.delete(fd);
      if (this.dirty.has(fd) && this.ctx.sync) await this.ctx.io.fdatasync(fd);
    } finally {
      // Closed whatever the syncs said (their error goes on up): nothing holds it open otherwise.
      this.dirty.delete(fd);
      await this.ctx.io.close(fd);
    }
  }

  /** Make everything applied so far durable. */
  async barrier(): Promise<void> {
    if (this.early.size) await this.settle();
    this.unsynced.clear();
    if (this.ctx.sync) {
      for (const fd of this.dirty) await this.ctx.io.fdatasync(fd);
      for (const d of this.dirtyDirs) await this.spare(() => this.ctx.io.fsyncDir(d));
    }
    this.dirty.clear();
    this.dirtyDirs.clear();
  }

  async closeAll(): Promise<void> {
    // (after a failure: an early sync still running must not outlive its descriptor)
    if (this.early.size) await this.settle().catch(() => undefined);
    for (const fd of this.fds.values()) await this.ctx.io.close(fd);
    this.fds.clear();
    this.last = null;
  }
}
