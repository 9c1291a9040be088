/**
 * Applying committed epochs from the journal to the real files. One code path serves the flusher
 * (in the worker, in the background after commits) and recovery (openStore and cp-recover).
 *
 * Idempotence. Applying is redone from the control file's cursor after any crash, so every step must
 * give the same result whether or not it already happened:
 *   - WRITE and TRUNCATE: replaying a run of pwrite/ftruncate calls over a file that already holds any
 *     prefix of their effects yields the same bytes. A missing file is created (it can only be missing
 *     because a later UNLINK of this replay already ran).
 *   - CREATE makes an empty file (create + truncate to 0); UNLINK ignores a missing file. Replaying
 *     either one is harmless because everything after it up to the next RENAME is replayed too.
 *   - RENAME moves content that may have been written before the cursor, so it is fenced: data files
 *     and directories are synced, the cursor is set to the RENAME, the rename runs (skipped if the source
 *     is gone: it already ran), both directories are synced, and the cursor moves past it before any
 *     later operation runs.
 * The cursor only advances after the data files and directories it covers are synced.
 */
import * as path from 'node:path';
import { RecordType, decodePayload, pos, posOffset, posSeq, type CatalogEntry } from '../format.js';
import { type IO, writeFully, isENOENT } from '../io.js';
import { type ControlWriter } from '../journal/control.js';
import { type SegmentFiles, type SegmentInfo, type ScannedRecord, walkLog } from '../journal/reader.js';
import { CpError, ioError, corruptError } from '../errors.js';
import { storePath, openInStore, makeParents, inParent } from '../names.js';

export interface ApplyContext {
  io: IO;
  /** The store directory (user files live here). */
  root: string;
  segs: Map<number, SegmentInfo>;
  files: SegmentFiles;
  control: ControlWriter;
  sync: boolean;
  /** Bytes of write data kept in memory per epoch before falling back to re-reading the journal. */
  memoryBudget?: number;
  /**
   * Recovery: every record up to endPos was validated a moment ago and belongs to an epoch that
   * commits (no ABORT lies between the cursor and endPos). Records are then applied as they are
   * read, straight from the read window, instead of being held until their COMMIT; and their crc is
   * not computed a second time.
   */
  validated?: boolean;
  /**
   * Recovery: for each name that a record of the replayed range makes a directory (a record of a
   * name under it), the position of the last such record. A record of that name before it that
   * finds a directory there is a redo of a record whose file was unlinked later (a crash before the
   * cursor moved past them): it is skipped, instead of failing every reopen with EISDIR.
   */
  dirsAt?: Map<string, number>;
  onProgress?: (scannedBytes: number) => void;
}

export interface ApplyResult {
  epochs: number;
  records: number;
  bytes: number;
  names: Set<string>;
  appliedEpoch: number;
  cursorSeq: number;
  cursorOffset: number;
  /** Catalog changes of the applied commits, in order. */
  commits: { epoch: number; entries: CatalogEntry[] }[];
}

type Desc =
  | { type: RecordType.WRITE; name: string; offset: number; len: number; data: Buffer | null; seg: SegmentInfo; dataAt: number; pos: number }
  | { type: RecordType.TRUNCATE; name: string; length: number; pos: number }
  | { type: RecordType.CREATE | RecordType.UNLINK; name: string; pos: number }
  | { type: RecordType.RENAME; from: string; to: string; seq: number; offset: number; next: number };

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

class FileCache {
  /** name -> fd, least recently used first. */
  fds = new Map<string, number>();
  dirty = new Set<number>();
  dirtyDirs = new Set<string>();
  private last: string | null = null;
  constructor(private ctx: ApplyContext) {}

  full(name: string): string {
    return storePath(this.ctx.root, name);
  }

  /**
   * Make the parent directories of `name` (no symlink followed: names.ts openInStore). Each
   * directory on the way is synced at the barrier, existing ones too: an existing directory may come
   * from an earlier, killed run and not be durable yet (the barrier syncs each directory once).
   */
  async mkdirs(name: string): Promise<void> {
    await makeParents(this.ctx.io, this.ctx.root, name, (d) => this.dirtyDirs.add(d));
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

/**
 * Apply every committed epoch between the control file's cursor and `endPos` (the position just after
 * the last COMMIT record to apply). Stops early at the log's end. Leaves the cursor at the end of the
 * last applied COMMIT, durably.
 */
export async function applyCommitted(ctx: ApplyContext, endPos: number): Promise<ApplyResult> {
  const start = ctx.control.state;
  const res: ApplyResult = {
    epochs: 0, records: 0, bytes: 0, names: new Set(), appliedEpoch: start.appliedEpoch,
    cursorSeq: start.cursorSeq, cursorOffset: start.cursorOffset, commits: [],
  };
  if (pos(start.cursorSeq, start.cursorOffset) >= endPos) return res;
  const cache = new FileCache(ctx);
  const budget = ctx.memoryBudget ?? 32 * 1024 * 1024;
  let group: Desc[] = [];
  let held = 0;
  let lastCommitEnd = -1;
  let scanned = 0;

  const runGroup = async (): Promise<void> => {
    for (const d of group) {
      try {
      switch (d.type) {
        case RecordType.WRITE: {
          const fd = await cache.fd(d.name);
          let data = d.data;
          if (!data) {
            data = Buffer.allocUnsafe(d.len);
            const sfd = await ctx.files.fd(d.seg);
            await readAll(ctx.io, sfd, data, d.dataAt);
          }
          await writeFully(ctx.io, fd, data, 0, data.length, d.offset);
          cache.dirty.add(fd);
          res.bytes += data.length;
          res.names.add(d.name);
          break;
        }
        case RecordType.TRUNCATE: {
          const fd = await cache.fd(d.name);
          await ctx.io.ftruncate(fd, d.length);
          cache.dirty.add(fd);
          res.names.add(d.name);
          break;
        }
        case RecordType.CREATE: {
          await cache.drop(d.name);
          const full = cache.full(d.name);
          const fd = (await cache.spare(() => openInStore(ctx.io, ctx.root, d.name, 'create', (dir) => cache.dirtyDirs.add(dir))))!;
          await cache.admit(d.name, fd);
          await ctx.io.ftruncate(fd, 0);
          cache.dirty.add(fd);
          cache.dirtyDirs.add(path.dirname(full));
          res.names.add(d.name);
          break;
        }
        case RecordType.UNLINK: {
          await cache.drop(d.name);
          const full = cache.full(d.name);
          // The parent is reached without following a symlink (a missing one: nothing to unlink);
          // unlink never follows the last component (a symlink there is removed, not followed).
          await inParent(ctx.io, ctx.root, d.name, async (at) => {
            try {
              await ctx.io.unlink(at);
            } catch (e) {
              if (!isENOENT(e)) throw e;
            }
          });
          cache.dirtyDirs.add(path.dirname(full));
          res.names.add(d.name);
          break;
        }
        case RecordType.RENAME: {
          await cache.barrier();
          // Inside a committed epoch from here until its COMMIT is passed (R8: damage at the cursor is corruption).
          await ctx.control.write({ cursorSeq: d.seq, cursorOffset: d.offset, appliedEpoch: res.appliedEpoch, inEpoch: true });
          await cache.drop(d.from);
          await cache.drop(d.to);
          const from = cache.full(d.from);
          const to = cache.full(d.to);
          // No symlink followed in either parent chain: both are reached through their directories'
          // descriptors (names.ts inParent); rename never follows the last components.
          await inParent(ctx.io, ctx.root, d.from, async (src) => {
            try {
              await ctx.io.lstat(src);
            } catch (e) {
              if (isENOENT(e)) return; // gone: it already ran
              throw e;
            }
            await inParent(ctx.io, ctx.root, d.to, (dst) => ctx.io.rename(src, dst), { create: true, parent: (dir) => cache.dirtyDirs.add(dir) });
          });
          // Synced even when the source is gone: an earlier run (killed, or failed at this very
          // barrier) may have renamed without making it durable.
          cache.dirtyDirs.add(path.dirname(from));
          cache.dirtyDirs.add(path.dirname(to));
          await cache.barrier();
          await ctx.control.write({ cursorSeq: posSeq(d.next), cursorOffset: posOffset(d.next), appliedEpoch: res.appliedEpoch, inEpoch: true });
          res.names.add(d.from);
          res.names.add(d.to);
          break;
        }
      }
      } catch (e) {
        const superseded = d.type !== RecordType.RENAME && (e as NodeJS.ErrnoException)?.code === 'EISDIR' && (ctx.dirsAt?.get(d.name) ?? -1) > d.pos;
        if (!superseded) throw applyFailure(e, d, ctx.control.state.appliedEpoch);
      }
      res.records++;
    }
    group = [];
    held = 0;
  };

  const visit = async (r: ScannedRecord): Promise<boolean | void> => {
    if (r.pos >= endPos) return false;
    scanned += r.size;
    if (ctx.onProgress) ctx.onProgress(scanned);
    const t = r.header.type;
    if (t === RecordType.CATALOG || t === RecordType.SEGEND || t === RecordType.ENTRIES) return;
    if (t === RecordType.ABORT) {
      group = [];
      held = 0;
      return;
    }
    if (t === RecordType.COMMIT) {
      await runGroup();
      const op = decodePayload(t, r.payload);
      res.appliedEpoch = r.header.epoch;
      res.epochs++;
      if (op.type === RecordType.COMMIT) res.commits.push({ epoch: r.header.epoch, entries: op.entries });
      lastCommitEnd = r.pos + r.size;
      return;
    }
    let op;
    try {
      op = decodePayload(t, r.payload);
    } catch (e) {
      throw corruptError(`journal record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`,
        { kind: 'undecodable-at-apply', seq: r.seq, offset: r.offset, reason: 'payload' }, e);
    }
    switch (op.type) {
      case RecordType.WRITE: {
        const dataAt = r.offset + 24 + (r.payload.length - op.data.length);
        let data: Buffer | null = null;
        if (ctx.validated) {
          // Applied before the window moves on: no copy.
          group.push({ type: op.type, name: op.name, offset: op.offset, len: op.data.length, data: op.data, seg: ctx.segs.get(r.seq)!, dataAt, pos: r.pos });
          await runGroup();
          break;
        }
        if (held + op.data.length <= budget) {
          data = Buffer.from(op.data); // copy: the reader's window is reused
          held += data.length;
        }
        group.push({ type: op.type, name: op.name, offset: op.offset, len: op.data.length, data, seg: ctx.segs.get(r.seq)!, dataAt, pos: r.pos });
        break;
      }
      case RecordType.TRUNCATE:
        group.push({ type: op.type, name: op.name, length: op.length, pos: r.pos });
        break;
      case RecordType.CREATE:
      case RecordType.UNLINK:
        group.push({ type: op.type, name: op.name, pos: r.pos });
        break;
      case RecordType.RENAME:
        group.push({ type: op.type, from: op.from, to: op.to, seq: r.seq, offset: r.offset, next: r.pos + r.size });
        break;
    }
  };

  try {
    await walkLog(ctx.segs, ctx.files, start.cursorSeq, start.cursorOffset, visit, endPos, ctx.validated ? endPos : -1);
    if (lastCommitEnd >= 0) {
      await cache.barrier();
      await ctx.control.write({ cursorSeq: posSeq(lastCommitEnd), cursorOffset: posOffset(lastCommitEnd), appliedEpoch: res.appliedEpoch });
      res.cursorSeq = posSeq(lastCommitEnd);
      res.cursorOffset = posOffset(lastCommitEnd);
    }
  } catch (e) {
    throw ioError(e, 'applying committed epochs');
  } finally {
    await cache.closeAll().catch(() => undefined);
  }
  return res;
}

const OP_NAMES: Record<Desc['type'], string> = {
  [RecordType.WRITE]: 'write', [RecordType.TRUNCATE]: 'truncate', [RecordType.CREATE]: 'create',
  [RecordType.UNLINK]: 'unlink', [RecordType.RENAME]: 'rename',
};

/**
 * A store file the applier could not change (a file made immutable or read-only behind the store's
 * back, a full disk): the error names the file and the operation and keeps the cause's code. Nothing
 * after the last applied epoch is lost: the cursor stays before it, the journal keeps it, and the
 * next apply (or reopening) retries it.
 */
function applyFailure(e: unknown, d: Desc, appliedEpoch: number): CpError {
  if (e instanceof CpError) return e;
  const file = d.type === RecordType.RENAME ? d.from : d.name;
  const what = d.type === RecordType.RENAME ? `the rename of ${JSON.stringify(d.from)} to ${JSON.stringify(d.to)}` : `the ${OP_NAMES[d.type]} of ${JSON.stringify(file)}`;
  const err = ioError(e, `applying ${what} (epochs after ${appliedEpoch} stay in the journal until it can be applied)`);
  return new CpError(err.code, err.message, { cause: e, details: { file, op: OP_NAMES[d.type], ...(d.type === RecordType.RENAME ? { to: d.to } : {}) } });
}

async function readAll(io: IO, fd: number, buf: Buffer, at: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await io.read(fd, buf, off, buf.length - off, at + off);
    if (n <= 0) throw new CpError('EIO', 'journal segment shorter than a committed record');
    off += n;
  }
}
