/**
 * Applying committed epochs from the journal to the real files. One code path serves the flusher
 * (in the worker, in the background after commits) and recovery (openStore and cp-recover).
 *
 * Idempotence and the order of durability barriers are FORMAT.md R12 ("Applying"). Applying is redone
 * from the control file's cursor after any crash, so every step must give the same result whether or
 * not it already happened:
 *   - WRITE and TRUNCATE: replaying a run of pwrite/ftruncate calls over a file that already holds any
 *     prefix of their effects yields the same bytes. A missing file is created (it can only be missing
 *     because a later UNLINK of this replay already ran).
 *   - CREATE makes an empty file (create + truncate to 0); UNLINK ignores a missing file. Replaying
 *     either one is harmless because everything after it up to the next RENAME is replayed too.
 *   - RENAME moves content that may have been written before the cursor, so it is fenced: data files
 *     and directories are synced, the cursor is set to the RENAME, the rename runs (skipped if the source
 *     is gone: it already ran), both directories are synced, and the cursor moves past it before any
 *     later operation runs (ApplyRun.rename).
 * The cursor only advances after the data files and directories it covers are synced (FileCache.barrier
 * in lib/store/apply-files.ts, then ApplyRun.finish).
 */
import * as path from 'node:path';
import { RecordType, decodePayload, pos, posOffset, posSeq, type Op } from '../format.js';
import { type IO, writeFully, isENOENT } from '../io.js';
import { type ControlWriter } from '../journal/control.js';
import { type ScannedRecord, walkLog } from '../journal/reader.js';
import type { SegmentInfo } from '../journal/segments.js';
import type { SegmentFiles } from '../journal/segment-files.js';
import { CpError, ioError, corruptError } from '../errors.js';
import { openInStore, inParent } from '../names.js';
import { FileCache } from './apply-files.js';

export { APPLY_MAX_FDS, EARLY_SYNC_BYTES } from './apply-files.js';

/** The most bytes of consecutive writes to one file the applier issues as one pwrite. */
export const APPLY_COALESCE_BYTES = 1024 * 1024;

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
  /**
   * Stop after the first COMMIT once this many journal bytes were walked (the cursor then rests at
   * that COMMIT's end, as after any apply): the background apply runs in slices between which the
   * flusher takes commits. Never splits an epoch; recovery passes none.
   */
  sliceBytes?: number;
  /**
   * Recovery (asynchronous IO): start a file's fdatasync, unawaited, after every this many bytes
   * written to it (EARLY_SYNC_BYTES), so that its write-back overlaps the rest of the replay
   * (apply-files.ts); the barrier waits for it. The flusher's IO is synchronous: an early sync there
   * would only stall it.
   */
  earlySync?: number;
}

export interface ApplyResult {
  epochs: number;
  records: number;
  bytes: number;
  names: Set<string>;
  appliedEpoch: number;
  cursorSeq: number;
  cursorOffset: number;
}

type Desc =
  | { type: RecordType.WRITE; name: string; offset: number; len: number; data: Buffer | null; seg: SegmentInfo; dataAt: number; pos: number }
  | { type: RecordType.TRUNCATE; name: string; length: number; pos: number }
  | { type: RecordType.CREATE | RecordType.UNLINK; name: string; pos: number }
  | { type: RecordType.RENAME; from: string; to: string; seq: number; offset: number; next: number };

/**
 * Apply every committed epoch between the control file's cursor and `endPos` (the position just after
 * the last COMMIT record to apply). Stops early at the log's end. Leaves the cursor at the end of the
 * last applied COMMIT, durably.
 *
 * (Timing note for the whole file: the inline flusher runs this on the main thread, interleaved at
 * every await with the store's calls, and the pinned determinism digests record that interleaving.
 * So a refactoring here keeps each chain of awaits where it is: helpers are plain (synchronous)
 * functions, or return the one promise they wrap, never an extra async layer.)
 */
export async function applyCommitted(ctx: ApplyContext, endPos: number): Promise<ApplyResult> {
  const start = ctx.control.state;
  const res: ApplyResult = {
    epochs: 0, records: 0, bytes: 0, names: new Set(), appliedEpoch: start.appliedEpoch,
    cursorSeq: start.cursorSeq, cursorOffset: start.cursorOffset,
  };
  if (pos(start.cursorSeq, start.cursorOffset) >= endPos) return res;
  const run = new ApplyRun(ctx, res, endPos);
  try {
    const walked = await walkLog(ctx.segs, ctx.files, start.cursorSeq, start.cursorOffset, (r) => run.visit(r), endPos, ctx.validated ? endPos : -1);
    if (walked.reason === 'payload' && walked.pos < endPos) {
      // A SEGEND with a valid checksum that is not a usable one (R14): the committed epochs after it cannot be reached.
      throw corruptError(`journal record at segment ${walked.seq} offset ${walked.offset} (a segment end) has a valid checksum but an undecodable payload`,
        { kind: 'undecodable-at-apply', seq: walked.seq, offset: walked.offset, reason: 'payload' });
    }
    await run.issue();
    const end = run.lastCommitEnd;
    if (end >= 0) {
      // The last barrier (FORMAT.md R12, A4): data files and touched directories synced, then the cursor
      // moves past the last applied COMMIT.
      await run.cache.barrier();
      await ctx.control.write({ cursorSeq: posSeq(end), cursorOffset: posOffset(end), appliedEpoch: res.appliedEpoch });
      res.cursorSeq = posSeq(end);
      res.cursorOffset = posOffset(end);
    }
  } catch (e) {
    throw ioError(e, 'applying committed epochs');
  } finally {
    await run.cache.closeAll().catch(() => undefined);
  }
  return res;
}

/** One applyCommitted call: the records of the epoch being gathered, and what has been applied. */
class ApplyRun {
  readonly cache: FileCache;
  /** The end of the last COMMIT visited (-1: none yet). */
  lastCommitEnd = -1;
  /** The current epoch's records, held until its COMMIT (FORMAT.md R12). */
  private group: Desc[] = [];
  /** Bytes of write data held in `group`. */
  private held = 0;
  private scanned = 0;
  private readonly budget: number;
  /** Where a coalesced run is joined for its pwrite (reused: one per apply). */
  private scratch: Buffer | null = null;
  /**
   * Writes run but not issued yet: consecutive WRITEs that continue one another in one file, across
   * epochs, go to the file as one pwrite (an applied stream of 4 KiB appends was one syscall each,
   * most of a background apply's time). Issued before any other operation, before every barrier
   * and at APPLY_COALESCE_BYTES, so the files see the same changes in the same order.
   */
  private run: { name: string; offset: number; end: number; bufs: Buffer[]; first: Desc & { type: RecordType.WRITE } } | null = null;

  constructor(private ctx: ApplyContext, private res: ApplyResult, private endPos: number) {
    this.cache = new FileCache(ctx);
    this.budget = ctx.memoryBudget ?? 32 * 1024 * 1024;
  }

  /** The log walk's visitor: gather each epoch's records, run them at its COMMIT, drop them at an ABORT (R12). */
  async visit(r: ScannedRecord): Promise<boolean | void> {
    if (r.pos >= this.endPos) return false;
    this.scanned += r.size;
    if (this.ctx.onProgress) this.ctx.onProgress(this.scanned);
    const t = r.header.type;
    // A PREPARE holds its epoch like ENTRIES before a COMMIT: its decision follows (R18).
    if (t === RecordType.CATALOG || t === RecordType.SEGEND || t === RecordType.ENTRIES || t === RecordType.PREPARE) return;
    if (t === RecordType.ABORT) {
      this.dropGroup();
      return;
    }
    if (t === RecordType.COMMIT || t === RecordType.COMMIT_PREPARED) {
      // Decoded first (for its validity only): an undecodable COMMIT (ECORRUPT) runs nothing of its epoch.
      decodeRecord(r);
      await this.runGroup();
      this.committed(r);
      if (this.ctx.sliceBytes !== undefined && this.scanned >= this.ctx.sliceBytes) return false;
      return;
    }
    if (this.gather(r)) await this.runGroup();
  }

  private committed(r: ScannedRecord): void {
    this.res.appliedEpoch = r.header.epoch;
    this.res.epochs++;
    this.lastCommitEnd = r.pos + r.size;
  }

  /**
   * Add the data record `r` to the group held for its epoch's COMMIT. True when the group must run at
   * once: a validated recovery applies records as it reads them (the write straight from the window).
   */
  private gather(r: ScannedRecord): boolean {
    const op = decodeRecord(r);
    switch (op.type) {
      case RecordType.WRITE: {
        const dataAt = r.offset + 24 + (r.payload.length - op.data.length);
        const seg = this.ctx.segs.get(r.seq)!;
        if (this.ctx.validated) {
          // Applied before the window moves on: no copy.
          this.group.push({ type: op.type, name: op.name, offset: op.offset, len: op.data.length, data: op.data, seg, dataAt, pos: r.pos });
          return true;
        }
        let data: Buffer | null = null;
        if (this.held + op.data.length <= this.budget) {
          data = Buffer.from(op.data); // copy: the reader's window is reused
          this.held += data.length;
        }
        this.group.push({ type: op.type, name: op.name, offset: op.offset, len: op.data.length, data, seg, dataAt, pos: r.pos });
        break;
      }
      case RecordType.TRUNCATE:
        this.group.push({ type: op.type, name: op.name, length: op.length, pos: r.pos });
        break;
      case RecordType.CREATE:
      case RecordType.UNLINK:
        this.group.push({ type: op.type, name: op.name, pos: r.pos });
        break;
      case RecordType.RENAME:
        this.group.push({ type: op.type, from: op.from, to: op.to, seq: r.seq, offset: r.offset, next: r.pos + r.size });
        break;
    }
    return false;
  }

  /** Add a run write to the pending one when it continues it in the same file (true), within APPLY_COALESCE_BYTES. */
  private extend(d: Desc & { type: RecordType.WRITE }, data: Buffer): boolean {
    const r = this.run;
    if (!r || r.name !== d.name || r.end !== d.offset || r.end - r.offset + data.length > APPLY_COALESCE_BYTES) return false;
    r.bufs.push(data);
    r.end += data.length;
    return true;
  }

  /** Issue the pending writes (one pwrite); a failure names the file and its first record. */
  async issue(): Promise<void> {
    const r = this.run;
    if (!r) return;
    this.run = null;
    const { ctx, cache } = this;
    try {
      const fd = await cache.fd(r.name);
      // (joined in one buffer kept for the run: a fresh one per pwrite was 1 MiB of garbage each, and
      // applying 2 GiB at close peaked 28 MiB higher)
      const data = r.bufs.length === 1 ? r.bufs[0] : this.join(r.bufs, r.end - r.offset);
      await writeFully(ctx.io, fd, data, 0, data.length, r.offset);
      cache.wrote(fd, data.length);
    } catch (e) {
      if (!superseded(ctx, e, r.name, r.first.pos)) throw applyFailure(e, r.first, ctx.control.state.appliedEpoch);
    }
  }

  /** `bufs` copied end to end into the run's scratch buffer (valid until the next join). */
  private join(bufs: Buffer[], len: number): Buffer {
    const out = (this.scratch ??= Buffer.allocUnsafe(APPLY_COALESCE_BYTES)).subarray(0, len);
    let at = 0;
    for (const b of bufs) at += b.copy(out, at);
    return out;
  }

  private dropGroup(): void {
    this.group = [];
    this.held = 0;
  }

  /** Execute the gathered records in order (each case's awaits stay inline: see the timing note above). */
  private async runGroup(): Promise<void> {
    const { ctx, cache, res } = this;
    for (const d of this.group) {
      try {
        if (d.type !== RecordType.WRITE) await this.issue();
        switch (d.type) {
          case RecordType.WRITE: {
            let data = d.data;
            if (!data) {
              data = Buffer.allocUnsafe(d.len);
              // (pinned: a read-ahead of recovery's walk may open a segment file meanwhile)
              await ctx.files.readExactly(d.seg, d.dataAt, data, 0, d.len);
            }
            res.bytes += data.length;
            // (a validated recovery's data is a view of the read window: written at once)
            if (!ctx.validated && this.extend(d, data)) break;
            await this.issue();
            if (ctx.validated) {
              const fd = await cache.fd(d.name);
              await writeFully(ctx.io, fd, data, 0, data.length, d.offset);
              cache.wrote(fd, data.length);
            } else this.run = { name: d.name, offset: d.offset, end: d.offset + data.length, bufs: [data], first: d };
            break;
          }
          case RecordType.TRUNCATE: {
            const fd = await cache.fd(d.name);
            await ctx.io.ftruncate(fd, d.length);
            cache.dirty.add(fd);
            break;
          }
          case RecordType.CREATE: {
            await cache.drop(d.name);
            const fd = (await cache.spare(() => openInStore(ctx.io, ctx.root, d.name, 'create', (dir) => cache.dirtyDirs.add(dir))))!;
            await cache.admit(d.name, fd);
            await ctx.io.ftruncate(fd, 0);
            cache.dirty.add(fd);
            cache.dirtyDirs.add(path.dirname(cache.full(d.name)));
            break;
          }
          case RecordType.UNLINK:
            await cache.drop(d.name);
            await unlinkIfPresent(ctx, d.name);
            cache.dirtyDirs.add(path.dirname(cache.full(d.name)));
            break;
          case RecordType.RENAME:
            // The rename fence (FORMAT.md R12, A3): a barrier, the cursor at the RENAME, inside its epoch
            // until its COMMIT is passed (R8: damage at the cursor is corruption), the rename, a
            // barrier over both directories, the cursor past it.
            await cache.barrier();
            await ctx.control.write({ cursorSeq: d.seq, cursorOffset: d.offset, appliedEpoch: res.appliedEpoch, inEpoch: true });
            await cache.drop(d.from);
            await cache.drop(d.to);
            await renameIfPresent(ctx, cache, d);
            // Synced even when the source is gone: an earlier run (killed, or failed at this very
            // barrier) may have renamed without making it durable.
            cache.dirtyDirs.add(path.dirname(cache.full(d.from)));
            cache.dirtyDirs.add(path.dirname(cache.full(d.to)));
            await cache.barrier();
            await ctx.control.write({ cursorSeq: posSeq(d.next), cursorOffset: posOffset(d.next), appliedEpoch: res.appliedEpoch, inEpoch: true });
            break;
        }
        if (d.type === RecordType.RENAME) res.names.add(d.from).add(d.to);
        else res.names.add(d.name);
      } catch (e) {
        if (d.type === RecordType.RENAME || !superseded(ctx, e, d.name, d.pos)) throw applyFailure(e, d, ctx.control.state.appliedEpoch);
      }
      res.records++;
    }
    this.dropGroup();
  }
}

/**
 * Unlink `name`, ignoring a missing file. The parent is reached without following a symlink (a
 * missing one: nothing to unlink); unlink never follows the last component (a symlink there is
 * removed, not followed). Returns inParent's own promise (see the timing note above).
 */
function unlinkIfPresent(ctx: ApplyContext, name: string): Promise<void | null> {
  return inParent(ctx.io, ctx.root, name, async (at) => {
    try {
      await ctx.io.unlink(at);
    } catch (e) {
      if (!isENOENT(e)) throw e;
    }
  });
}

/**
 * Rename d.from to d.to, skipped when the source is gone (it already ran). No symlink is followed in
 * either parent chain: both are reached through their directories' descriptors (names.ts inParent);
 * rename never follows the last components.
 */
function renameIfPresent(ctx: ApplyContext, cache: FileCache, d: Desc & { type: RecordType.RENAME }): Promise<void | null> {
  return inParent(ctx.io, ctx.root, d.from, async (src) => {
    try {
      await ctx.io.lstat(src);
    } catch (e) {
      if (isENOENT(e)) return; // gone: it already ran
      throw e;
    }
    await inParent(ctx.io, ctx.root, d.to, (dst) => ctx.io.rename(src, dst), { create: true, parent: (dir) => cache.dirtyDirs.add(dir) });
  });
}

/**
 * A record at `at` of `name` that found a directory there, which a later record of the replayed
 * range makes (ApplyContext.dirsAt): the redo of a record whose file was unlinked later; skipped.
 */
function superseded(ctx: ApplyContext, e: unknown, name: string, at: number): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'EISDIR' && (ctx.dirsAt?.get(name) ?? -1) > at;
}

/** The operation of a data record or a COMMIT (a crc-valid one, R1, whose payload still does not decode: ECORRUPT). */
function decodeRecord(r: ScannedRecord): Op {
  try {
    return decodePayload(r.header.type, r.payload);
  } catch (e) {
    throw corruptError(`journal record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`,
      { kind: 'undecodable-at-apply', seq: r.seq, offset: r.offset, reason: 'payload' }, e);
  }
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
