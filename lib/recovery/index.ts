/**
 * Recovery: bring a store to the state of its last durable checkpoint. Run by openStore and by the
 * cp-recover tool; one code path. `recover()` is a short orchestrator over named phases, one file
 * each (docs/FORMAT.md "Reading and recovery" and the rules it cites):
 *
 *   1. load-control.ts   read the control file (the apply cursor), creating the store when asked.
 *   2. scan.ts           walk the log from the start of the cursor's segment (R2): the CATALOG there plus
 *                        every COMMIT after it give the entries; the last valid COMMIT is the recovered epoch.
 *   3. classify-end.ts   the verdicts on the end of the log (R8): clean, torn tail (normal after a crash), or
 *                        corruption (damage to bytes that were once durable). Corruption stops recovery
 *                        with ECORRUPT unless forced; forcing first copies the journal aside (journal-copy.ts).
 *   4. plan.ts           where the replay starts, what it covers, and the report.
 *   5. finish.ts         make what was read durable (R10), apply the committed epochs (R11, R12), cut open
 *                        files back to their committed sizes, end the log at the last COMMIT (R9); then
 *                        (here) start a fresh segment whose first record is a CATALOG of the recovered
 *                        entries, sync it, and move the cursor there. The uncommitted tail is now
 *                        unreachable; every old segment is free.
 * Each step is safe to interrupt: a crash at any point followed by another recovery gives the same files.
 */
import * as path from 'node:path';
import {
  DEFAULT_SEGMENT_SIZE, SEGMENT_HEADER_AREA, FORMAT_VERSION, RecordType, encodeCatalog,
  entryListBytes, entryListOps, segmentSizeFor, MAX_PAYLOAD, MAX_SEGMENT_SIZE, type CatalogEntry,
} from '../format.js';
import type { IO } from '../io.js';
import { ControlWriter } from '../journal/control.js';
import { SegmentFiles, SEGMENT_FDS } from '../journal/segment-files.js';
import { listSegments, initSegment, randomSalt, type SegmentInfo, type SegmentListing } from '../journal/segments.js';
import { metaPaths, segmentPath, type MetaPaths } from '../journal/paths.js';
import { CpError, ioError } from '../errors.js';
import { loadControl } from './load-control.js';
import { scanLog } from './scan.js';
import { validateLogStart, classifyEnd, corruptionError } from './classify-end.js';
import { planReplay, buildReport } from './plan.js';
import { previewCutBack, applyAndCutBack, endLogAt, syncLog } from './finish.js';
import { copyJournalAside } from './journal-copy.js';
import { decideInDoubt, writeDecision } from './resolve.js';
import type { RecoverOptions, RecoveryReport, RecoveredState } from './types.js';

export type { RecoverOptions, Corruption, RecoveryReport, RecoveredState, InDoubtEpoch, InDoubtReport, ResolveInDoubt } from './types.js';
export { PARTIAL_COPY } from './journal-copy.js';

// metaPaths is built in lib/journal/paths.ts; re-exported for the callers that take it from here.
export { metaPaths };

export async function recover(opts: RecoverOptions): Promise<RecoveredState> {
  const t0 = performance.now();
  const { io, dir } = opts;
  const sync = opts.sync !== false;
  const p = metaPaths(dir);
  const loaded = await loadControl(opts, p, sync);
  const { control, fresh } = loaded;
  const listing = await listSegments(io, p.journal, control.storeId);
  const segs = listing.bySeq;
  // Its walks read each next window while they check and apply this one (SegmentReader).
  const files = new SegmentFiles(io, 'read', SEGMENT_FDS, true);
  try {
    const scanned = await scanLog({ io, control, fresh, listing, files, onProgress: opts.onProgress });
    let epoch = validateLogStart(scanned, control, fresh);
    const verdict = await classifyEnd({ scanned, control, fresh, segs, files, epoch });
    if (verdict && !opts.force) throw corruptionError(verdict);
    const { log } = scanned;
    // An epoch left prepared: its decision is asked for before anything is planned (R18).
    const preparedAtEnd = log.prepared;
    const inDoubt = await decideInDoubt(log, opts, control.storeId);
    if (inDoubt?.decision === 'commit') epoch = Math.max(epoch, inDoubt.epoch);
    const plan = planReplay(log, control);
    const report = buildReport({ created: loaded.created, control, epoch, endReason: scanned.end.reason, log, plan, corruption: verdict?.corruption ?? null });
    report.inDoubt = inDoubt;
    if (opts.dryRun) {
      await previewCutBack(io, dir, report, plan);
      report.durationMs = performance.now() - t0;
      return { report, control, controlSlot: loaded.slot, segment: scanned.cursorSeg!, writeOffset: 0, sparseFrom: null, free: [], nextIndex: 0, maxSeq: listing.maxSeq };
    }

    if (verdict) report.brokenCopy = await copyJournalAside(io, p.journal, p.meta, sync);
    // After a process crash the page cache can hold journal records, segment files, a control file
    // and directory entries that never reached the disk. Recovery is about to act on what it read
    // (apply it to the data files, move the cursor past it), so make all of that durable first (R10):
    // otherwise a power loss after recovery loses records whose effects it already made durable.
    if (sync) await syncLog(io, dir, p, segs, control.cursorSeq);

    // (V2b) The decision is durable before recovery acts on it (applies or cuts back anything).
    if (inDoubt?.decision) await writeDecision(io, segs, preparedAtEnd!, inDoubt.decision, sync);
    const writer = await ControlWriter.open(io, p.control, sync, control, loaded.slot);
    try {
      await applyAndCutBack({ io, dir, sync, segs, files, writer, log, plan, report });
      // The log ends at the last COMMIT from now on, durably (R9): a segment of the uncommitted
      // tail may then be reused for the fresh one (it holds allocated blocks: a full disk needs
      // them), because if the cursor move below is lost, the next recovery's walk ends where this
      // one kept, instead of at a SEGEND naming a segment that is no longer there.
      await endLogAt(io, segs, files, Math.max(log.lastCommitEnd, log.catalogEnd), sync);
      const state = await startFreshSegment({ io, dir, p, sync, listing, writer, report, epoch, size: opts.segmentSize ?? scanned.cursorSeg?.size ?? DEFAULT_SEGMENT_SIZE, markStep: opts.markStep });
      report.durationMs = performance.now() - t0;
      return { report, ...state };
    } finally {
      await writer.close();
    }
  } finally {
    await files.closeAll();
  }
}

interface FreshSegmentInput {
  io: IO;
  dir: string;
  p: MetaPaths;
  sync: boolean;
  listing: SegmentListing;
  writer: ControlWriter;
  report: RecoveryReport;
  /** The recovered epoch. */
  epoch: number;
  /** The store's segment size (the fresh segment is larger when its catalog needs it, R7). */
  size: number;
  markStep?: number;
}

/**
 * Start a fresh segment whose first record is a CATALOG of the recovered entries (in a free segment
 * file, or a new one), sync it, and move the cursor to it (R11). Every other segment is free then.
 */
async function startFreshSegment(a: FreshSegmentInput): Promise<Omit<RecoveredState, 'report'>> {
  const { io, listing, writer, epoch } = a;
  const segs = listing.bySeq;
  const keepSeq = writer.state.cursorSeq;
  const free: number[] = [];
  for (const idx of listing.indexes) {
    const s = [...segs.values()].find((x) => x.index === idx);
    if (!s || s.seq !== keepSeq) free.push(idx);
  }
  const nextIndex = listing.indexes.length ? listing.indexes[listing.indexes.length - 1] + 1 : 0;
  const seq = listing.maxSeq + 1;
  const index = free.length ? free.shift()! : nextIndex;
  const entries = a.report.entries;
  const segment: SegmentInfo = {
    version: FORMAT_VERSION, salt: randomSalt(), seq, storeId: a.report.storeId,
    // Large enough for the recovered catalog (FORMAT.md R7), which may be larger than a segment.
    size: segmentSizeFor(entryListBytes(entryListOps(RecordType.CATALOG, entries, MAX_PAYLOAD)), a.size),
    index, file: segmentPath(a.p.journal, index),
  };
  const { writeOffset, sparseFrom, mark } = await initSegment(io, segment, a.sync, entries, epoch, a.p.journal, undefined, a.markStep).catch(async (err) => {
    const code = (err as NodeJS.ErrnoException).code;
    const isNew = segment.index === nextIndex;
    // A new segment file that could not be written: remove it, so that it does not hold the
    // space the next attempt needs (reused segments already have their blocks).
    if (isNew) await io.unlink(segment.file).catch(() => undefined);
    if (code !== 'ENOSPC' || !isNew) throw ioError(err, `starting journal segment ${path.basename(segment.file)}`);
    const need = freshSegmentNeeds(entries, epoch);
    throw new CpError('ENOSPC', `recovering ${a.dir}: the file system is full; free at least ${need} bytes (${Math.ceil(need / 1024)} KiB) on it and open the store again: ` +
      `the journal has only the segment holding epoch ${epoch}, and a fresh one must be started before the uncommitted tail can be dropped. Epoch ${epoch} is applied and kept.`,
      { cause: err, details: { need, file: segment.file } });
  });
  // The flusher raises the mark from the one initSegment wrote and synced (R19).
  segment.mark = mark;
  await writer.write({ cursorSeq: seq, cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: epoch });
  // Every other segment is free now, including the one that held the cursor.
  const freeAfter = listing.indexes.filter((i) => i !== index);
  return {
    control: writer.state, controlSlot: writer.slot, segment, writeOffset, sparseFrom, free: freeAfter,
    nextIndex: Math.max(nextIndex, index + 1), maxSeq: seq,
  };
}

/**
 * The bytes a new segment file takes before the writer goes on: its header area and the catalog
 * record, in 4 KiB blocks, and one block more for the directory entry and the file's extent.
 */
function freshSegmentNeeds(entries: CatalogEntry[], epoch: number): number {
  const rec = encodeCatalog(entries, 0, epoch, SEGMENT_HEADER_AREA, MAX_SEGMENT_SIZE);
  const BLOCK = 4096;
  return (Math.ceil((SEGMENT_HEADER_AREA + rec.length) / BLOCK) + 1) * BLOCK;
}

