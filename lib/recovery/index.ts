/**
 * Recovery: bring a store to the state of its last durable checkpoint. Run by openStore and by the
 * cp-recover tool; one code path.
 *
 *   1. Read the control file (the apply cursor) and the segment headers.
 *   2. Walk the log from the start of the cursor's segment: the CATALOG there plus every COMMIT after
 *      it give the entries (open files and positions); the last valid COMMIT is the recovered epoch.
 *   3. Classify the end of the log: clean, torn tail (normal after a crash), or corruption (damage to
 *      bytes that were once durable; see format.ts). Corruption stops recovery with ECORRUPT unless
 *      forced; forcing first copies the journal aside.
 *   4. Apply the committed epochs after the cursor (lib/store/applier.ts).
 *   5. Start a fresh segment whose first record is a CATALOG of the recovered entries, sync it, and
 *      move the cursor there. The uncommitted tail is now unreachable; every old segment is free.
 * Each step is safe to interrupt: a crash at any point followed by another recovery gives the same files.
 */
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import {
  DEFAULT_SEGMENT_SIZE, CONTROL_FILE, META_DIR, SEGMENT_HEADER_AREA, FORMAT_VERSION, READABLE_VERSIONS_TEXT, RecordType, decodePayload, encodeCatalog,
  entryListBytes, entryListOps, segmentSizeFor, MAX_PAYLOAD, MAX_SEGMENT_SIZE, RECORD_HEADER_SIZE, isZero as isAllZero, posSeq, posOffset,
  pos, type CatalogEntry, type ControlState,
} from '../format.js';
import { type IO, isENOENT, writeFully, readFully } from '../io.js';
import { readControl, createControl, ControlWriter } from '../journal/control.js';
import { walkLog, findLaterEpoch, type EndReason } from '../journal/reader.js';
import { SegmentFiles } from '../journal/segment-files.js';
import { listSegments, initSegment, randomSalt, type SegmentInfo } from '../journal/segments.js';
import { metaPaths, segmentPath, journalFilePath, type MetaPaths } from '../journal/paths.js';
import { applyCommitted } from '../store/applier.js';
import { EpochOrder } from './epoch-order.js';
import { CpError, ioError } from '../errors.js';
import { openInStore, inParent } from '../names.js';

export interface RecoverOptions {
  io: IO;
  dir: string;
  sync?: boolean;
  /** Analyse only: change nothing. */
  dryRun?: boolean;
  /** Proceed past corruption (after copying the journal aside). */
  force?: boolean;
  /** Create the store when `dir` holds none (openStore does; cp-recover does not). */
  create?: boolean;
  /** Size of the fresh segment recovery starts (default: the size of the segment holding the cursor, else 64 MiB). */
  segmentSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface Corruption {
  seq: number;
  offset: number;
  reason: string;
  /** First epoch that would be lost, and the highest epoch seen after the damage. */
  lostFrom: number;
  lostTo: number;
  evidence: string;
}

export interface RecoveryReport {
  /** True when no store existed and one was created. */
  created: boolean;
  storeId: string;
  /** The recovered (last durable) epoch. */
  epoch: number;
  /** Epochs committed but not yet applied when recovery started (replayed now, or to replay in a dry run). */
  replayedEpochs: number;
  replayedRecords: number;
  /** Payload bytes of the replayed records (the data and names they carry, without record headers). */
  replayedBytes: number;
  /** Valid records after the last commit, discarded. */
  discardedRecords: number;
  /** Journal bytes of the discarded records (headers and padding included). */
  discardedBytes: number;
  /**
   * The control file's newest slot was lost (damage: a crash never causes this): a COMMIT records a
   * later apply cursor, and recovery continued from that one, repairing the control file.
   */
  staleControl: boolean;
  /** The log ended in a damaged record that is a normal crash artifact. */
  tornTail: boolean;
  endReason: EndReason;
  /** The store needed no work: nothing to replay and nothing to discard. */
  clean: boolean;
  corruption: Corruption | null;
  /** Where the damaged journal was copied when forcing past corruption. */
  brokenCopy: string | null;
  filesTouched: string[];
  /**
   * Open entries whose file was longer than its committed size (the size in its entry): direct
   * appends of an epoch that never committed, cut off (`from` is the length before). A dry run lists
   * the files it would cut.
   */
  cutBack: { name: string; size: number; from: number }[];
  /** Open (unfinished) entries with their checkpointed positions. */
  entries: CatalogEntry[];
  durationMs: number;
}

/** What openStore needs besides the report to continue writing. */
export interface RecoveredState {
  report: RecoveryReport;
  control: ControlState;
  /** The control file slot holding `control`. */
  controlSlot: 0 | 1;
  /** The fresh segment the writer continues in, and where. */
  segment: SegmentInfo;
  writeOffset: number;
  /**
   * Where the fresh segment's file has no blocks yet (it was created or grown by ftruncate), or null
   * when every block of it was written before (a recycled segment).
   */
  sparseFrom: number | null;
  /** Indexes of segment files free for reuse. */
  free: number[];
  nextIndex: number;
  maxSeq: number;
}

const storeIdNew = (): string => crypto.randomBytes(8).toString('hex');
// metaPaths is built in lib/journal/paths.ts; re-exported for the callers that take it from here.
export { metaPaths };

async function exists(io: IO, p: string): Promise<boolean> {
  try {
    await io.lstat(p);
    return true;
  } catch (e) {
    if (isENOENT(e)) return false;
    throw e;
  }
}

/** Create the metadata of a new store, durably. */
async function createStore(io: IO, dir: string, sync: boolean): Promise<void> {
  const p = metaPaths(dir);
  const madeMeta = await io.mkdir(p.meta);
  await io.mkdir(p.journal);
  // The journal directory must be durable before the control file can be: a control file without
  // its journal directory is a store that can never be opened.
  if (sync) await io.fsyncDir(p.meta);
  const state: ControlState = { counter: 1, storeId: storeIdNew(), cursorSeq: 1, cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: 0 };
  await createControl(io, p.control, state, sync);
  if (sync) {
    await io.fsyncDir(p.journal);
    await io.fsyncDir(p.meta);
    if (madeMeta) await io.fsyncDir(dir);
  }
}

export async function recover(opts: RecoverOptions): Promise<RecoveredState> {
  const t0 = performance.now();
  const { io, dir } = opts;
  const sync = opts.sync !== false;
  const p = metaPaths(dir);
  let created = false;

  try {
    const st = await io.stat(dir);
    if (!st.isDirectory) throw new CpError('EINVAL', `${dir} is not a directory`);
  } catch (e) {
    if (isENOENT(e)) throw new CpError('ENOENT', `store directory ${dir} does not exist`);
    throw ioError(e, `reading ${dir}`);
  }

  if (!(await exists(io, p.control))) {
    const hasSegments = (await listSegments(io, p.journal, null)).indexes.length > 0;
    if (hasSegments) throw new CpError('ECORRUPT', `${p.control} is missing but the journal has segments: refusing to guess the apply cursor`, { details: { file: p.control, reason: 'missing' } });
    if (!opts.create) throw new CpError('ENOENT', `${dir} is not a cpfile store (no ${META_DIR}/${CONTROL_FILE})`);
    if (opts.dryRun) throw new CpError('ENOENT', `${dir} is not a cpfile store yet`);
    await createStore(io, dir, sync);
    created = true;
  }

  let ctl = await readControl(io, p.control);
  if (ctl.kind === 'empty') {
    // The creation of the store never finished: nothing was ever written to it.
    const hasSegments = (await listSegments(io, p.journal, null)).indexes.length > 0;
    if (hasSegments || !opts.create || opts.dryRun) {
      throw new CpError('ECORRUPT', `${p.control} holds no valid slot${hasSegments ? ' but the journal has segments' : ''}`, { details: { file: p.control, reason: 'empty' } });
    }
    await io.unlink(p.control);
    await createStore(io, dir, sync);
    created = true;
    ctl = await readControl(io, p.control);
  }
  if (ctl.kind === 'bad') {
    const versionOrMagic = ctl.reasons.some((r) => r === 'version' || r === 'magic');
    throw new CpError(versionOrMagic ? 'EFORMAT' : 'ECORRUPT',
      `${p.control}: no valid slot (${ctl.reasons.join(', ')})${versionOrMagic ? `; this cpfile reads ${READABLE_VERSIONS_TEXT}` : ''}`,
      { details: { file: p.control, reason: ctl.reasons.join(', ') } });
  }
  if (ctl.kind !== 'ok') throw new CpError('ECORRUPT', 'unreadable control file', { details: { file: p.control, reason: 'unreadable' } });
  const control = ctl.state;
  const cursorPos = pos(control.cursorSeq, control.cursorOffset);
  // A store created before its journal directory was durable (older createStore): re-create it.
  if (!opts.dryRun && (await io.mkdir(p.journal)) && sync) await io.fsyncDir(p.meta);
  // Counter 1: the control file as createStore wrote it; the cursor has never moved, so segment 1 and
  // its catalog may never have been written. Every later cursor points into a segment that was sized,
  // written and synced (header and catalog) before the cursor moved there.
  const fresh = control.counter === 1;

  const listing = await listSegments(io, p.journal, control.storeId);
  const segs = listing.bySeq;
  const files = new SegmentFiles(io);
  try {
    // ---- 2. walk the log from the start of the cursor's segment
    let catalog = new Map<string, CatalogEntry>();
    let catalogEpoch = -1;
    let lastCommitEpoch = control.appliedEpoch;
    let lastCommitEnd = cursorPos;
    let pendingRecords = 0;
    let pendingBytes = 0;
    // Committed epochs after the cursor, one entry per COMMIT; which of them are replayed is settled
    // after the walk (see `startPos` below).
    const replayGroups: { end: number; records: number; bytes: number; names: string[]; reshaped: string[]; dirs: [string, number][] }[] = [];
    // The latest apply cursor a COMMIT records (it was durable in the control file when that COMMIT
    // was laid out). Direct appends made since are in no record: the replay must not start before it.
    let appliedHint: { pos: number; cursorSeq: number; cursorOffset: number; appliedEpoch: number } | null = null;
    let groupRecords = 0;
    let groupBytes = 0;
    const order = new EpochOrder();
    /** The end of the cursor segment's catalog (its last part): the log kept is never cut before it. */
    let catalogEnd = -1;
    /** The last SEGEND walked: where a 'missing-segment' end came from. */
    let lastSegend: { seq: number; offset: number; version: number } | null = null;
    /** The entries of the current epoch's COMMIT carried by ENTRIES records before it. */
    let commitParts: CatalogEntry[] = [];
    /** Positions of ABORT records after the cursor: the replay streams records only where there are none. */
    const aborts: number[] = [];
    // The log is epoch-continuous (lib/recovery/epoch-order.ts): after a CATALOG of epoch c every record
    // carries c+1 up to the COMMIT of c+1, then c+2, ... A record with a valid checksum that breaks
    // the order was copied or misdirected: a torn write never makes one.
    let corruptEarly: string | null = null;
    // Where corruption with nothing to keep (see corruptAt) was found, for the error's details.
    let earlyAt: { seq: number; offset: number; reason: string } = { seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA, reason: 'catalog' };
    // Where a valid but misplaced (or undecodable) record stopped the walk: corruption that --force can
    // cut the log at. (A segment that does not begin with a catalog leaves it null: nothing to keep.)
    let corruptAt: { seq: number; offset: number; reason: string } | null = null;
    const touched = new Set<string>();
    /** Names that replayed records make directories, and where the last such record is (ApplyContext.dirsAt). */
    const dirsAt = new Map<string, number>();
    let groupNames: string[] = [];
    /** Directories the records of the current group make, with their positions (only replayed groups count). */
    let groupDirs: [string, number][] = [];
    // Names a replayed record truncates, creates, unlinks or renames: their size after the replay is
    // the replay's business (a dry run cannot tell what would be cut from them, and nothing is: a file
    // with such a record pending takes no direct appends).
    const reshaped = new Set<string>();
    let groupReshaped: string[] = [];
    const totalBytes = [...segs.values()].reduce((a, s) => a + s.size, 0);
    let scanned = 0;

    const cursorSeg = segs.get(control.cursorSeq);
    let end: { seq: number; offset: number; pos: number; reason: EndReason };
    if (!cursorSeg) {
      if (control.cursorOffset !== SEGMENT_HEADER_AREA || !fresh) {
        // A segment whose header is intact but of another format version is not damage: say so.
        const other = listing.invalid.filter((x) => x.reason === 'version');
        if (other.length) {
          throw new CpError('EFORMAT', `${other.map((x) => x.file).join(', ')}: journal segment of another format version; this cpfile reads ${READABLE_VERSIONS_TEXT}`, {
            details: { seq: control.cursorSeq, invalid: listing.invalid },
          });
        }
        const bad = listing.invalid.map((x) => `${path.basename(x.file)}: ${x.reason}`).join(', ');
        throw new CpError('ECORRUPT', `the segment holding the apply cursor (seq ${control.cursorSeq}) is missing${bad ? ` (segment files with unusable headers: ${bad})` : ''}`, {
          details: { seq: control.cursorSeq, offset: control.cursorOffset, invalid: listing.invalid },
        });
      }
      end = { seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA, pos: cursorPos, reason: 'missing-segment' };
      catalogEpoch = control.appliedEpoch;
    } else {
      if (!fresh) {
        const st = await io.fstat(await files.fd(cursorSeg));
        if (st.size < cursorSeg.size) {
          throw new CpError('ECORRUPT', `the segment holding the apply cursor (seq ${control.cursorSeq}, ${path.basename(cursorSeg.file)}) is ${st.size} bytes, its header says ${cursorSeg.size}`, {
            details: { seq: control.cursorSeq, size: st.size, expected: cursorSeg.size },
          });
        }
      }
      end = await walkLog(segs, files, control.cursorSeq, SEGMENT_HEADER_AREA, (r) => {
        scanned += r.size;
        if (opts.onProgress) opts.onProgress(scanned, totalBytes);
        const t = r.header.type;
        const v = order.next(t, r.header.epoch, r.header.flags);
        if (!v.ok) {
          if (v.reason === 'catalog') {
            corruptEarly = `segment ${r.seq} does not begin with a catalog record`;
            earlyAt = { seq: r.seq, offset: r.offset, reason: 'catalog' };
          } else {
            corruptEarly = `the record at segment ${r.seq} offset ${r.offset} (type ${t}, epoch ${r.header.epoch}) is out of place: ${v.message}`;
            corruptAt = { seq: r.seq, offset: r.offset, reason: v.reason };
          }
          return false;
        }
        if (v.role === 'catalog' || v.role === 'catalog-part') {
          let op;
          try {
            op = decodePayload(t, r.payload);
          } catch {
            corruptEarly = `record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`;
            if (v.first) earlyAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
            else corruptAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
            return false;
          }
          // The cursor segment's catalog gives the entries; a later one repeats what the walk knows.
          if (v.first && (op.type === RecordType.CATALOG || op.type === RecordType.ENTRIES)) for (const e of op.entries) catalog.set(e.name, e);
          if (v.first && v.role === 'catalog') catalogEpoch = r.header.epoch;
          if (v.first) catalogEnd = r.pos + r.size;
          return;
        }
        const after = r.pos >= cursorPos;
        if (t !== RecordType.COMMIT && t !== RecordType.ABORT && t !== RecordType.SEGEND && t !== RecordType.CATALOG) {
          try {
            decodePayload(t, r.payload);
          } catch {
            corruptEarly = `record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`;
            corruptAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
            return false;
          }
        }
        switch (t) {
          case RecordType.ENTRIES: {
            // Part of the COMMIT that follows (a catalog's parts were handled above).
            const op = decodePayload(t, r.payload);
            if (op.type === RecordType.ENTRIES) for (const e of op.entries) commitParts.push(e);
            pendingRecords++;
            pendingBytes += r.size;
            break;
          }
          case RecordType.COMMIT: {
            const op = decodePayload(t, r.payload);
            if (op.type === RecordType.COMMIT) {
              const entries = commitParts.length ? [...commitParts, ...op.entries] : op.entries;
              commitParts = [];
              for (const e of entries) {
                if (e.state === 'open') catalog.set(e.name, e);
                else catalog.delete(e.name);
              }
              const a = op.applied;
              if (a && pos(a.cursorSeq, a.cursorOffset) <= r.pos && (!appliedHint || pos(a.cursorSeq, a.cursorOffset) > appliedHint.pos)) {
                appliedHint = { pos: pos(a.cursorSeq, a.cursorOffset), ...a };
              }
            }
            if (after && r.header.epoch > control.appliedEpoch) {
              replayGroups.push({ end: r.pos + r.size, records: groupRecords, bytes: groupBytes, names: groupNames, reshaped: groupReshaped, dirs: groupDirs });
            }
            groupRecords = 0;
            groupBytes = 0;
            groupNames = [];
            groupDirs = [];
            groupReshaped = [];
            lastCommitEpoch = Math.max(lastCommitEpoch, r.header.epoch);
            if (r.pos + r.size > lastCommitEnd) {
              lastCommitEnd = r.pos + r.size;
            }
            pendingRecords = 0;
            pendingBytes = 0;
            break;
          }
          case RecordType.ABORT:
            commitParts = [];
            if (after) aborts.push(r.pos);
            groupRecords = 0;
            groupBytes = 0;
            groupNames = [];
            groupDirs = [];
            groupReshaped = [];
            pendingRecords = 0;
            pendingBytes = 0;
            break;
          case RecordType.SEGEND:
            lastSegend = { seq: r.seq, offset: r.offset, version: segs.get(r.seq)?.version ?? 0 };
            break;
          case RecordType.CATALOG:
            break;
          default: {
            pendingRecords++;
            pendingBytes += r.size;
            if (after) {
              groupRecords++;
              groupBytes += r.payload.length;
              try {
                const op = decodePayload(t, r.payload);
                if ('name' in op) groupNames.push(op.name);
                const made = op.type === RecordType.RENAME ? op.to : 'name' in op && op.type !== RecordType.UNLINK ? op.name : null;
                if (made !== null) for (let i = made.indexOf('/'); i > 0; i = made.indexOf('/', i + 1)) groupDirs.push([made.slice(0, i), r.pos]);
                if (op.type === RecordType.RENAME) groupNames.push(op.from, op.to);
                if (op.type === RecordType.RENAME) groupReshaped.push(op.from, op.to);
                else if (op.type !== RecordType.WRITE && 'name' in op) groupReshaped.push(op.name);
              } catch {
                corruptEarly = `record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`;
                earlyAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
                return false;
              }
            }
          }
        }
      });
    }
    if (corruptEarly && !corruptAt) throw new CpError('ECORRUPT', corruptEarly, { details: { ...earlyAt } });
    if (order.firstCatalogIncomplete && !fresh) {
      // The catalog opening the cursor's segment was synced whole before the cursor moved there.
      throw new CpError('ECORRUPT', `the catalog at the start of segment ${control.cursorSeq} ends before its last part (at offset ${end.offset}: ${end.reason})`, {
        details: { seq: end.seq, offset: end.offset, reason: 'catalog' },
      });
    }
    if (catalogEpoch < 0 && cursorSeg && control.cursorOffset > SEGMENT_HEADER_AREA) {
      throw new CpError('ECORRUPT', `the catalog record at the start of segment ${control.cursorSeq} is damaged`, {
        details: { seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA },
      });
    }
    if (catalogEpoch < 0) catalogEpoch = control.appliedEpoch;
    if (lastCommitEpoch < catalogEpoch) lastCommitEpoch = catalogEpoch;

    // ---- 3. torn tail or corruption?
    // 'zero' and 'stale' (bytes of an earlier life of a recycled segment) are the normal end of a log.
    const damaged = end.reason === 'crc' || end.reason === 'length' || end.reason === 'type';
    let corruption: Corruption | null = null;
    const cur = lastCommitEpoch + 1;
    const misplaced = corruptAt as { seq: number; offset: number; reason: string } | null;
    if (misplaced) {
      // The walk stopped at a valid record that cannot belong where it is: everything from it on is
      // suspect, and it was durable (it validates), so this is corruption, never a torn tail.
      const later = await findLaterEpoch(segs, files, misplaced.seq, misplaced.offset, cur);
      corruption = {
        seq: misplaced.seq, offset: misplaced.offset, reason: misplaced.reason, lostFrom: cur,
        lostTo: Math.max(cur, later ? later.epoch : cur), evidence: corruptEarly!,
      };
    } else if (end.reason !== 'stop') {
      let evidence: string | null = null;
      let lostTo = cur;
      if (end.pos < cursorPos) evidence = `the apply cursor (segment ${control.cursorSeq} offset ${control.cursorOffset}) lies beyond it`;
      // A cursor inside a committed epoch (a rename fence) points at a record that was durable.
      else if (control.inEpoch && end.pos === cursorPos) evidence = `the apply cursor points at it, inside a committed epoch (a rename was being applied)`;
      const from = lastSegend as { seq: number; offset: number; version: number } | null;
      if (!evidence && end.reason === 'missing-segment' && from && from.version >= 3) {
        // Rule 9: from version 3 on, a segment is durable before the SEGEND naming it is written.
        evidence = `segment ${end.seq}, named by the segment end record at segment ${from.seq} offset ${from.offset}, is missing, and a segment is made durable before the record naming it is written`;
      }
      else if (control.appliedEpoch >= cur) evidence = `the control file says epoch ${control.appliedEpoch} was applied`;
      // The catalog opening the cursor's segment was synced before the cursor moved there: if it is
      // damaged while anything valid follows it, that is corruption whatever the epochs say.
      const catalogDamaged = !fresh && cursorSeg !== undefined && end.seq === control.cursorSeq && end.offset === SEGMENT_HEADER_AREA;
      {
        // A valid COMMIT past the end of the log that records an apply cursor past it too: the
        // cursor had moved beyond where this walk ends, so the control file is older than the
        // journal (it lost its newest slot after a recovery moved the log to a new segment, say).
        let beyond: { seq: number; offset: number; epoch: number; at: string } | null = null;
        const later = await findLaterEpoch(segs, files, end.seq, end.offset, catalogDamaged ? -1 : cur, (rec) => {
          if (beyond || rec.header.type !== RecordType.COMMIT) return;
          try {
            const op = decodePayload(rec.header.type, rec.payload);
            if (op.type === RecordType.COMMIT && op.applied && pos(op.applied.cursorSeq, op.applied.cursorOffset) > end.pos) {
              beyond = { seq: rec.seq, offset: rec.offset, epoch: rec.header.epoch, at: `segment ${op.applied.cursorSeq} offset ${op.applied.cursorOffset}` };
            }
          } catch {
            // undecodable: not evidence of anything
          }
        });
        const b = beyond as { seq: number; offset: number; epoch: number; at: string } | null;
        if (b) {
          evidence ??= `the commit of epoch ${b.epoch} at segment ${b.seq} offset ${b.offset} records an apply cursor (${b.at}) beyond the end of the log: the control file is older than the journal`;
          lostTo = Math.max(lostTo, b.epoch);
        }
        if (later) {
          evidence ??= catalogDamaged
            ? `the catalog record opening segment ${end.seq} is damaged but valid records follow it`
            : `a valid record of epoch ${later.epoch} follows at segment ${later.seq} offset ${later.offset}, and epoch ${later.epoch} is only written after epoch ${cur} was durable`;
          lostTo = Math.max(lostTo, later.epoch);
        }
      }
      if (evidence) {
        corruption = { seq: end.seq, offset: end.offset, reason: end.reason, lostFrom: cur, lostTo, evidence };
      }
    }
    if (corruption && !opts.force) {
      throw new CpError('ECORRUPT',
        `journal damaged at segment ${corruption.seq} offset ${corruption.offset} (${corruption.reason}), not a torn tail: ` +
        `${corruption.evidence}. Epochs ${corruption.lostFrom}..${corruption.lostTo} would be lost; cp-recover --force keeps a copy and proceeds.`,
        { details: { ...corruption } });
    }

    // Where the replay starts: the control file's cursor, or a later one a COMMIT records. A later
    // one means the control file lost its newest slot (a torn write of it is never followed by a
    // COMMIT recording its cursor: the cursor is only reported once it is durable), so the epochs
    // up to it were applied, and replaying them over direct appends made since would destroy those.
    const hint = appliedHint as { pos: number; cursorSeq: number; cursorOffset: number; appliedEpoch: number } | null;
    const staleControl = hint !== null && hint.pos > cursorPos && hint.pos <= lastCommitEnd;
    const startPos = staleControl ? hint!.pos : cursorPos;
    let replayEpochs = 0;
    let replayRecords = 0;
    let replayBytes = 0;
    for (const g of replayGroups) {
      if (g.end <= startPos) continue;
      replayEpochs++;
      replayRecords += g.records;
      replayBytes += g.bytes;
      for (const n of g.names) touched.add(n);
      for (const n of g.reshaped) reshaped.add(n);
      for (const [d, at] of g.dirs) dirsAt.set(d, at);
    }

    // A damaged record is a torn tail only when it is not corruption (RecoveryReport.tornTail's contract).
    const tornTail = damaged && !corruption;
    const clean = replayEpochs === 0 && pendingRecords === 0 && !damaged && !corruption && !staleControl;
    const report: RecoveryReport = {
      created, storeId: control.storeId, epoch: lastCommitEpoch, replayedEpochs: replayEpochs,
      replayedRecords: replayRecords, replayedBytes: replayBytes, discardedRecords: pendingRecords,
      discardedBytes: pendingBytes, tornTail, endReason: end.reason, clean, corruption, brokenCopy: null, staleControl,
      filesTouched: [...touched].sort(), cutBack: [], entries: [...catalog.values()].filter((e) => e.state === 'open'),
      durationMs: 0,
    };
    if (opts.dryRun) {
      for (const e of report.entries) {
        if (e.size === null || reshaped.has(e.name)) continue;
        const len = await fileLength(io, dir, e.name);
        if (len !== null && len > e.size) report.cutBack.push({ name: e.name, size: e.size, from: len });
      }
      if (report.cutBack.length) {
        report.clean = false;
        for (const c of report.cutBack) touched.add(c.name);
        report.filesTouched = [...touched].sort();
      }
      report.durationMs = performance.now() - t0;
      return { report, control, controlSlot: ctl.slot, segment: cursorSeg!, writeOffset: 0, sparseFrom: null, free: [], nextIndex: 0, maxSeq: listing.maxSeq };
    }

    if (corruption) report.brokenCopy = await copyJournalAside(io, p.journal, p.meta, sync);

    // After a process crash the page cache can hold journal records, segment files, a control file
    // and directory entries that never reached the disk. Recovery is about to act on what it read
    // (apply it to the data files, move the cursor past it), so make all of that durable first:
    // otherwise a power loss after recovery loses records whose effects it already made durable.
    if (sync) await syncLog(io, dir, p, segs, control.cursorSeq);

    // ---- 4. apply committed epochs
    const writer = await ControlWriter.open(io, p.control, sync, control, ctl.slot);
    try {
      if (staleControl) {
        await writer.write({ cursorSeq: hint!.cursorSeq, cursorOffset: hint!.cursorOffset, appliedEpoch: hint!.appliedEpoch });
      }
      if (lastCommitEnd > startPos) {
        // Everything up to lastCommitEnd was validated by the walk above; without an ABORT in the
        // range, every record there belongs to an epoch that commits.
        const validated = !aborts.some((a) => a >= startPos && a < lastCommitEnd);
        const applied = await applyCommitted({ io, root: dir, segs, files, control: writer, sync, validated, dirsAt }, lastCommitEnd)
          .catch((err) => { throw applyNeeds(err, replayBytes, touched.size); });
        for (const n of applied.names) touched.add(n);
      }
      // Direct appends of an epoch that did not commit lie past the committed size of an open
      // entry: cut every such file back, durably, before the cursor moves on. (Without direct
      // appends the applied file has exactly its committed size and nothing is cut.) A version 1
      // entry carries no size: its file is measured instead, for the catalog written below.
      for (const e of report.entries) {
        if (e.size === null) {
          e.size = (await fileLength(io, dir, e.name)) ?? null;
          continue;
        }
        const from = await cutBack(io, dir, e.name, e.size, sync).catch((err) => {
          const c = ioError(err, `cutting ${JSON.stringify(e.name)} back to its committed size ${e.size} (uncommitted direct appends past it); the committed epochs stay in the journal until it can be done`);
          throw new CpError(c.code, c.message, { cause: err, details: { file: e.name, op: 'truncate' } });
        });
        if (from !== null) {
          report.cutBack.push({ name: e.name, size: e.size, from });
          touched.add(e.name);
          report.clean = false;
        }
      }
      report.filesTouched = [...touched].sort();

      // ---- 5. fresh segment with the recovered catalog; move the cursor to it
      // The log ends at the last COMMIT from now on, durably (R9): a segment of the uncommitted
      // tail may then be reused for the fresh one (it holds allocated blocks: a full disk needs
      // them), because if the cursor move below is lost, the next recovery's walk ends where this
      // one kept, instead of at a SEGEND naming a segment that is no longer there.
      await endLogAt(io, segs, files, Math.max(lastCommitEnd, catalogEnd), sync);
      const keepSeq = writer.state.cursorSeq;
      const free: number[] = [];
      for (const idx of listing.indexes) {
        const s = [...segs.values()].find((x) => x.index === idx);
        if (!s || s.seq !== keepSeq) free.push(idx);
      }
      const nextIndex = listing.indexes.length ? listing.indexes[listing.indexes.length - 1] + 1 : 0;
      const seq = listing.maxSeq + 1;
      const index = free.length ? free.shift()! : nextIndex;
      const segment: SegmentInfo = {
        version: FORMAT_VERSION, salt: randomSalt(), seq, storeId: control.storeId,
        // Large enough for the recovered catalog (rule 7), which may be larger than a segment.
        size: segmentSizeFor(entryListBytes(entryListOps(RecordType.CATALOG, report.entries, MAX_PAYLOAD)), opts.segmentSize ?? cursorSeg?.size ?? DEFAULT_SEGMENT_SIZE),
        index, file: segmentPath(p.journal, index),
      };
      const entries = report.entries;
      const { writeOffset, sparseFrom } = await initSegment(io, segment, sync, entries, lastCommitEpoch, p.journal).catch(async (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        const isNew = segment.index === nextIndex;
        // A new segment file that could not be written: remove it, so that it does not hold the
        // space the next attempt needs (reused segments already have their blocks).
        if (isNew) await io.unlink(segment.file).catch(() => undefined);
        if (code !== 'ENOSPC' || !isNew) throw ioError(err, `starting journal segment ${path.basename(segment.file)}`);
        const need = freshSegmentNeeds(entries, lastCommitEpoch);
        throw new CpError('ENOSPC', `recovering ${dir}: the file system is full; free at least ${need} bytes (${Math.ceil(need / 1024)} KiB) on it and open the store again: ` +
          `the journal has only the segment holding epoch ${lastCommitEpoch}, and a fresh one must be started before the uncommitted tail can be dropped. Epoch ${lastCommitEpoch} is applied and kept.`,
          { cause: err, details: { need, file: segment.file } });
      });
      await writer.write({ cursorSeq: seq, cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: lastCommitEpoch });
      // Every other segment is free now, including the one that held the cursor.
      const freeAfter = listing.indexes.filter((i) => i !== index);
      report.durationMs = performance.now() - t0;
      return {
        report, control: writer.state, controlSlot: writer.slot, segment, writeOffset, sparseFrom, free: freeAfter,
        nextIndex: Math.max(nextIndex, index + 1), maxSeq: seq,
      };
    } finally {
      await writer.close();
    }
  } finally {
    await files.closeAll();
  }
}

/**
 * The length of the store file `name`, or null when it is missing or not a regular file. No symlink
 * is followed (names.ts): one in a parent directory is refused with EPATH, one at the name is no file.
 */
async function fileLength(io: IO, dir: string, name: string): Promise<number | null> {
  try {
    const st = await inParent(io, dir, name, (at) => io.lstat(at));
    return st !== null && st.isFile ? st.size : null;
  } catch (e) {
    if (e instanceof CpError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (isENOENT(e) || code === 'ENOTDIR') return null;
    throw ioError(e, `reading the size of ${name}`);
  }
}

/**
 * Truncate the store file `name` to `size` if it is longer; returns the length before, or null. The
 * file is opened as the applier opens it (names.ts openInStore: no symlink followed, one link), so a
 * symlink planted above it makes recovery fail with EPATH instead of cutting another file (a symlink
 * at the name is no file to cut).
 */
async function cutBack(io: IO, dir: string, name: string, size: number, sync: boolean): Promise<number | null> {
  const len = await fileLength(io, dir, name);
  if (len === null || len <= size) return null;
  const fd = await openInStore(io, dir, name, 'readwrite');
  if (fd === null) return null;
  try {
    const st = await io.fstat(fd);
    if (st.size <= size) return null;
    await io.ftruncate(fd, size);
    if (sync) await io.fdatasync(fd);
    return st.size;
  } finally {
    await io.close(fd);
  }
}

/**
 * A full disk while applying: at most the replayed bytes (in 4 KiB blocks) and a block per file
 * more are needed; say so. Other failures pass as they are (they name the file and the operation).
 */
function applyNeeds(err: unknown, replayBytes: number, files: number): unknown {
  if (!(err instanceof CpError) || err.code !== 'ENOSPC') return err;
  const BLOCK = 4096;
  const need = (Math.ceil(replayBytes / BLOCK) + files + 1) * BLOCK;
  return new CpError('ENOSPC', `${err.message}; free up to ${need} bytes (${Math.ceil(need / 1024)} KiB) and open the store again`, {
    cause: err.cause ?? err, details: { ...err.details, need },
  });
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

/**
 * Make the log end at global position `at` (the end of the last COMMIT kept): an all-zero record
 * header there reads as the log's end (R2, reason 'zero'), so nothing after it is ever walked
 * again. Blocks that are already zero (a hole, or never written) are left alone.
 */
async function endLogAt(io: IO, segs: Map<number, SegmentInfo>, files: SegmentFiles, at: number, sync: boolean): Promise<void> {
  const seg = segs.get(posSeq(at));
  const offset = posOffset(at);
  if (!seg || offset + RECORD_HEADER_SIZE > seg.size) return;
  const head = Buffer.alloc(RECORD_HEADER_SIZE);
  await readFully(io, await files.fd(seg), head, 0, head.length, offset);
  if (isAllZero(head)) return;
  const fd = await io.open(seg.file, 'readwrite');
  try {
    await writeFully(io, fd, Buffer.alloc(RECORD_HEADER_SIZE), 0, RECORD_HEADER_SIZE, offset);
    if (sync) await io.fdatasync(fd);
  } finally {
    await io.close(fd);
  }
}

/** fdatasync the live log's segments and the control file, fsync the metadata directories. */
async function syncLog(io: IO, dir: string, p: MetaPaths, segs: Map<number, SegmentInfo>, fromSeq: number): Promise<void> {
  for (const s of [...segs.values()].sort((a, b) => a.seq - b.seq)) {
    if (s.seq < fromSeq) continue;
    const fd = await io.open(s.file, 'readwrite');
    try {
      // A segment the flusher had just started may have lost its (unsynced) sizing while writes into
      // it survived: give it its size back before the cursor can move into it.
      const st = await io.fstat(fd);
      if (st.size < s.size) {
        await io.ftruncate(fd, s.size);
        await io.fsync(fd);
      } else {
        await io.fdatasync(fd);
      }
    } finally {
      await io.close(fd);
    }
  }
  const fd = await io.open(p.control, 'readwrite');
  try {
    await io.fdatasync(fd);
  } finally {
    await io.close(fd);
  }
  await io.fsyncDir(p.journal);
  await io.fsyncDir(p.meta);
  await io.fsyncDir(dir);
}

/** Where copyJournalAside builds its copy before renaming it into place. */
export const PARTIAL_COPY = 'journal.broken-partial';

/**
 * Copy the journal to .cpfile/journal.broken-<time>/ before forcing past corruption. Sparse: only
 * the non-zero 4 KiB blocks are written and each copy is cut to its source's size, so a mostly
 * unwritten segment costs what it holds, not its size. Built under a temporary name, synced, then
 * renamed into place: a killed run leaves no copy that looks complete, and the next run removes
 * what it left.
 */
async function copyJournalAside(io: IO, journalDir: string, metaDir: string, sync: boolean): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dest = path.join(metaDir, `journal.broken-${stamp}`);
  const tmp = path.join(metaDir, PARTIAL_COPY);
  await removeTree(io, tmp);
  await io.mkdir(tmp);
  const BLOCK = 4096;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const name of await io.readdir(journalDir)) {
    const src = await io.open(journalFilePath(journalDir, name), 'read');
    try {
      const dst = await io.open(path.join(tmp, name), 'createExcl');
      try {
        const st = await io.fstat(src);
        for (let off = 0; off < st.size;) {
          const n = await io.read(src, buf, 0, Math.min(buf.length, st.size - off), off);
          if (n <= 0) break;
          // Write each run of blocks holding a non-zero byte; all-zero blocks stay holes.
          let run = -1;
          for (let b = 0; b < n; b += BLOCK) {
            const nonZero = !isZero(buf, b, Math.min(b + BLOCK, n));
            if (nonZero && run < 0) run = b;
            if (!nonZero && run >= 0) {
              await writeFully(io, dst, buf, run, b - run, off + run);
              run = -1;
            }
          }
          if (run >= 0) await writeFully(io, dst, buf, run, n - run, off + run);
          off += n;
        }
        await io.ftruncate(dst, st.size);
        if (sync) await io.fsync(dst);
      } finally {
        await io.close(dst);
      }
    } finally {
      await io.close(src);
    }
  }
  if (sync) await io.fsyncDir(tmp);
  await io.rename(tmp, dest);
  if (sync) await io.fsyncDir(metaDir);
  return dest;
}

const ZERO_BLOCK = Buffer.alloc(4096);
function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.compare(ZERO_BLOCK, 0, end - start, start, end) === 0;
}

/** Remove a directory of files (a partial copy a killed run left), if it exists. */
async function removeTree(io: IO, dir: string): Promise<void> {
  let names: string[];
  try {
    names = await io.readdir(dir);
  } catch (e) {
    if (isENOENT(e)) return;
    throw e;
  }
  for (const n of names) await io.unlink(path.join(dir, n));
  await io.rmdir(dir);
}
