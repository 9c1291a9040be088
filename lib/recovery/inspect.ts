/**
 * Read-only views of a store for the operator's tool (tools/cp-recover.ts): what its journal holds
 * record by record, and whether it is clean (who owns it is lib/lock.ts ownerStatus). Nothing here writes to the store; the
 * verdict on the journal's end (clean, torn tail, corruption) comes from recover({ dryRun: true }),
 * the very code openStore runs, so the tool and the library never disagree about it.
 */
import * as path from 'node:path';
import {
  LOCK_NAME, META_DIR, RECORD_HEADER_SIZE, RECORD_TYPE_NAMES, RecordType, SEGMENT_HEADER_AREA,
  decodePayload, isZero, readRecordHeader, type CatalogEntry, type ControlState,
} from '../format.js';
import { EpochOrder } from './epoch-order.js';
import { type IO, isENOENT } from '../io.js';
import { readControl } from '../journal/control.js';
import { walkLog, type ScannedRecord, type EndReason } from '../journal/reader.js';
import { listSegments, type SegmentInfo } from '../journal/segments.js';
import { SegmentFiles } from '../journal/segment-files.js';
import { recover, type RecoveryReport } from './index.js';
import { metaPaths } from '../journal/paths.js';
import { CpError, ioError, lostEpochsText } from '../errors.js';

// ---------------------------------------------------------------------------------------------
// the store directory (who owns it: lib/lock.ts ownerStatus)

export interface StorePaths {
  root: string;
  meta: string;
  control: string;
  journal: string;
  lock: string;
}

/**
 * Check that `dir` exists, is a directory and has a metadata directory, without creating anything.
 * Throws a CpError with a one-line message otherwise (ENOENT, EINVAL, EACCES, ...).
 */
export async function probeStore(io: IO, dir: string): Promise<StorePaths> {
  const root = path.resolve(dir);
  const p = metaPaths(root);
  let st;
  try {
    st = await io.stat(root);
  } catch (e) {
    if (isENOENT(e)) throw new CpError('ENOENT', `${root}: no such directory`, { cause: e });
    throw fsError(e, root);
  }
  if (!st.isDirectory) throw new CpError('EINVAL', `${root} is not a directory`);
  let meta;
  try {
    meta = await io.stat(p.meta);
  } catch (e) {
    if (isENOENT(e)) throw new CpError('ENOENT', `${root} is not a cpfile store (no ${META_DIR}/ directory)`, { cause: e });
    throw fsError(e, p.meta);
  }
  if (!meta.isDirectory) throw new CpError('ENOENT', `${root} is not a cpfile store (${META_DIR} is not a directory)`);
  // Readable? (readdir fails with EACCES before recovery would, with a clearer path.)
  try {
    await io.readdir(p.meta);
  } catch (e) {
    throw fsError(e, p.meta);
  }
  return { root, ...p };
}

/** A one-line CpError for a node:fs failure on `what`. */
export function fsError(e: unknown, what: string): CpError {
  if (e instanceof CpError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EPERM') return new CpError(code, `${what}: permission denied`, { cause: e });
  if (code === 'ENOENT') return new CpError('ENOENT', `${what}: no such file or directory`, { cause: e });
  return ioError(e, what);
}

// ---------------------------------------------------------------------------------------------
// verdict

/** Why a dry-run report is not clean (empty when it is). */
export function uncleanReasons(r: RecoveryReport): string[] {
  const out: string[] = [];
  if (r.corruption) {
    out.push(`journal damaged at segment ${r.corruption.seq} offset ${r.corruption.offset} (${r.corruption.reason}), not a torn tail: ` +
      `${r.corruption.evidence}; ${lostEpochsText(r.corruption)} would be lost`);
  }
  if (r.replayedEpochs > 0) {
    out.push(`${r.replayedEpochs} committed epoch${r.replayedEpochs === 1 ? '' : 's'} not yet applied to the files (${r.replayedRecords} records, ${r.replayedBytes} bytes)`);
  }
  const d = r.inDoubt;
  if (d && d.decision === null) {
    // The uncommitted records are the prepared epoch's (nothing follows its PREPARE): they wait for its decision.
    out.push(`epoch ${d.epoch} is in doubt: prepared as ${JSON.stringify(d.id)} (${r.discardedRecords} record${r.discardedRecords === 1 ? '' : 's'}, ` +
      `${r.discardedBytes} bytes), its decision is not in the journal; recovery needs it: --commit-prepared ${shellWord(d.id)} or --abort-prepared ${shellWord(d.id)}`);
  } else if (r.discardedRecords > 0) {
    out.push(`${r.discardedRecords} uncommitted record${r.discardedRecords === 1 ? '' : 's'} (${r.discardedBytes} bytes) after epoch ${r.epoch} would be discarded`);
  }
  if (r.staleControl) out.push('the control file lost its newest slot: the apply cursor would be taken from the last commit');
  if (r.cutBack.length) out.push(`${r.cutBack.length} file${r.cutBack.length === 1 ? '' : 's'} longer than committed (direct appends of an uncommitted epoch) would be cut back`);
  if (r.tornTail && !r.corruption) out.push(`the journal ends in a torn record (${r.endReason}), the normal trace of a crash`);
  if (out.length === 0 && !r.clean) out.push('recovery has work to do');
  return out;
}

/** `s` as one word of a POSIX shell command line (a prepared id may hold spaces and quotes). */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_.,:@%+=/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------------------------
// journal inspection

export interface InspectedRecord {
  /** Record number in log order, 0 = the first record of the cursor's segment. */
  n: number;
  seq: number;
  /** Segment file index (seg-NNNNNN.cpj). */
  index: number;
  offset: number;
  /** Payload length from the header (null when the header is zeros). */
  len: number | null;
  /** Bytes the record takes on disk, padding included (null for a failed record). */
  size: number | null;
  /** Type name ('write', 'commit', ...), 'type-<n>' for an unknown type, null for a zero header. */
  type: string | null;
  epoch: number | null;
  name?: string;
  from?: string;
  to?: string;
  /** Bytes of the file a WRITE covers [start, end); a TRUNCATE cuts or extends the file at start (end null). */
  range?: { start: number; end: number | null };
  /** COMMIT, PREPARE, CATALOG and ENTRIES: the entries carried. */
  entries?: CatalogEntry[];
  /** SEGEND: the seq of the segment the log continues in. */
  nextSeq?: number;
  /** PREPARE and COMMIT_PREPARED: the prepared epoch's id. */
  id?: string;
  /** 'ok', or why the record ends the log: zero, stale, length, type, crc, segment-end. */
  crc: string;
  /** Anything odd about a valid record (epoch out of place, undecodable payload, ...). */
  note?: string;
}

export interface InspectSummary {
  /** Valid records in the log. */
  records: number;
  /** Records shown (after --from/--limit). */
  shown: number;
  from: number;
  limit: number | null;
  byType: Record<string, number>;
  /** On-disk bytes of the valid records. */
  bytes: number;
  /** WRITE data bytes. */
  dataBytes: number;
  segmentsWalked: number[];
  /** COMMIT and COMMIT_PREPARED records: committed epochs. */
  commits: number;
  /** PREPARE records (two-phase epochs, FORMAT.md R18), decided or not. */
  prepares: number;
  firstEpoch: number | null;
  lastCommitEpoch: number | null;
  /** Valid records after the last COMMIT, COMMIT_PREPARED or ABORT: the uncommitted tail (a PREPARE waiting for its decision included). */
  uncommittedRecords: number;
  /** The PREPARE the walk ended after, its decision not in the journal: the epoch in doubt. */
  inDoubt: { id: string; epoch: number; seq: number; offset: number } | null;
  end: {
    seq: number;
    offset: number;
    reason: EndReason;
    explanation: string;
    /** The failed record's header as read (may be garbage), when it is not zeros. */
    record: InspectedRecord | null;
  };
  /** What recover() would do (its dry run), or the error it would stop with. */
  verdict:
    | { ok: true; report: RecoveryReport; problems: string[] }
    | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };
}

export interface InspectResult {
  dir: string;
  control: (ControlState & { slot: 0 | 1 }) | null;
  /** Why the control file could not be used (then the walk starts at the lowest valid segment). */
  controlProblem: string | null;
  segments: { index: number; file: string; seq: number; size: number; salt: number; storeId: string; version: number; mark: number | null }[];
  invalidSegments: { index: number; file: string; reason: string }[];
  start: { seq: number; offset: number } | null;
  summary: InspectSummary;
}

export interface InspectOptions {
  io: IO;
  dir: string;
  /** First record number to report (default 0). */
  from?: number;
  /** Records to report at most (default: all). */
  limit?: number;
  /** Called for each reported record, in order, as the walk goes (for streaming output). */
  onRecord?: (r: InspectedRecord) => void | Promise<void>;
}

export const END_EXPLANATIONS: Record<string, string> = {
  zero: 'zeros: the normal end of the log',
  stale: 'a record of an earlier life of this recycled segment (wrong salt): the normal end of the log',
  length: 'a header with an impossible length',
  type: 'a header with an unknown type or flags',
  crc: 'a checksum mismatch',
  'segment-end': 'the end of a segment without a SEGEND record',
  'missing-segment': 'the segment to continue in does not exist',
  stop: 'stopped',
  payload: 'a segment end record with a valid checksum whose payload is not the 8-byte seq of the next segment',
};

function typeName(t: number): string {
  return RECORD_TYPE_NAMES[t] ?? `type-${t}`;
}

/** Describe a valid record. */
export function describeRecord(n: number, r: ScannedRecord): InspectedRecord {
  const out: InspectedRecord = {
    n, seq: r.seq, index: r.index, offset: r.offset, len: r.header.len, size: r.size,
    type: typeName(r.header.type), epoch: r.header.epoch, crc: 'ok',
  };
  try {
    const op = decodePayload(r.header.type, r.payload);
    switch (op.type) {
      case RecordType.WRITE:
        out.name = op.name;
        out.range = { start: op.offset, end: op.offset + op.data.length };
        break;
      case RecordType.TRUNCATE:
        out.name = op.name;
        out.range = { start: op.length, end: null };
        break;
      case RecordType.CREATE:
      case RecordType.UNLINK:
        out.name = op.name;
        break;
      case RecordType.RENAME:
        out.from = op.from;
        out.to = op.to;
        break;
      case RecordType.PREPARE:
        out.id = op.id;
        out.entries = op.entries;
        break;
      case RecordType.COMMIT_PREPARED:
        out.id = op.id;
        break;
      case RecordType.COMMIT:
      case RecordType.CATALOG:
      case RecordType.ENTRIES:
        out.entries = op.entries;
        break;
      case RecordType.SEGEND:
        out.nextSeq = op.nextSeq;
        break;
      default:
        break;
    }
  } catch (e) {
    out.note = `valid checksum but undecodable payload (${(e as Error).message})`;
  }
  return out;
}

/** The header of a record that ends the log, as read from the file (the fields may be garbage). */
async function describeFailed(io: IO, seg: SegmentInfo, n: number, offset: number, reason: string): Promise<InspectedRecord | null> {
  if (reason === 'zero' || reason === 'missing-segment') return null;
  const b = Buffer.alloc(RECORD_HEADER_SIZE);
  let got = 0;
  const fd = await io.open(seg.file, 'read');
  try {
    got = await io.read(fd, b, 0, b.length, offset);
  } finally {
    await io.close(fd);
  }
  if (got < RECORD_HEADER_SIZE || isZero(b)) {
    return { n, seq: seg.seq, index: seg.index, offset, len: null, size: null, type: null, epoch: null, crc: reason };
  }
  const h = readRecordHeader(b);
  return {
    n, seq: seg.seq, index: seg.index, offset, len: h.len, size: null, type: typeName(h.type),
    epoch: h.epoch, crc: reason === 'payload' ? 'ok' : reason,
    note: reason === 'stale' ? 'left from an earlier life of the segment' : reason === 'payload' ? `valid checksum, but a ${h.len}-byte segment end payload (not 8)` : 'damaged: header fields as read',
  };
}

/** The control file as inspection sees it: usable, or why not (then the walk starts at the lowest valid segment). */
async function inspectControl(io: IO, file: string): Promise<{ control: InspectResult['control']; problem: string | null; exists: boolean }> {
  try {
    await io.lstat(file);
  } catch (e) {
    if (!isENOENT(e)) throw fsError(e, file);
    return { control: null, problem: `${file} is missing`, exists: false };
  }
  const ctl = await readControl(io, file).catch((e) => { throw fsError(e, file); });
  if (ctl.kind === 'ok') return { control: { ...ctl.state, slot: ctl.slot }, problem: null, exists: true };
  if (ctl.kind === 'empty') return { control: null, problem: `${file} holds no valid slot (zero or short: the store's creation never finished)`, exists: true };
  return { control: null, problem: `${file}: no valid slot (${ctl.reasons.join(', ')})`, exists: true };
}

/**
 * Walk the log from `startSeq` as recovery does and describe every record into `summary`, the
 * order rules checked by the one checker (lib/recovery/epoch-order.ts); then describe the end.
 */
async function walkAndDescribe(opts: InspectOptions, segs: Map<number, SegmentInfo>, startSeq: number, summary: InspectSummary): Promise<void> {
  const { io } = opts;
  const inPage = (n: number): boolean => n >= summary.from && (summary.limit === null || n < summary.from + summary.limit);
  const byType = summary.byType;
  const files = new SegmentFiles(io);
  try {
    let n = 0;
    const order = new EpochOrder();
    const end = await walkLog(segs, files, startSeq, SEGMENT_HEADER_AREA, async (r) => {
      const d = describeRecord(n, r);
      const t = r.header.type;
      if (!summary.segmentsWalked.includes(r.seq)) summary.segmentsWalked.push(r.seq);
      const v = order.next(t, r.header.epoch, r.header.flags);
      if (!v.ok) d.note = appendNote(d.note, v.reason === 'epoch' ? `epoch out of place: ${v.message}` : v.message);
      summary.records++;
      summary.bytes += r.size;
      byType[d.type!] = (byType[d.type!] ?? 0) + 1;
      if (d.range && d.range.end !== null) summary.dataBytes += d.range.end - d.range.start;
      if (summary.firstEpoch === null) summary.firstEpoch = r.header.epoch;
      // A PREPARE is uncommitted until its decision, the next record (R18).
      if (t === RecordType.PREPARE) summary.prepares++;
      summary.inDoubt = t === RecordType.PREPARE && d.id !== undefined ? { id: d.id, epoch: r.header.epoch, seq: r.seq, offset: r.offset } : null;
      if (t === RecordType.COMMIT || t === RecordType.COMMIT_PREPARED) {
        summary.commits++;
        summary.lastCommitEpoch = r.header.epoch;
        summary.uncommittedRecords = 0;
      } else if (t === RecordType.ABORT) {
        summary.uncommittedRecords = 0;
      } else if (t !== RecordType.CATALOG && t !== RecordType.SEGEND && !(t === RecordType.ENTRIES && v.ok && v.role === 'catalog-part')) {
        summary.uncommittedRecords++;
      }
      if (inPage(n)) {
        summary.shown++;
        if (opts.onRecord) await opts.onRecord(d);
      }
      n++;
    });
    const seg = segs.get(end.seq);
    const failed = seg ? await describeFailed(io, seg, n, end.offset, end.reason) : null;
    summary.end = { seq: end.seq, offset: end.offset, reason: end.reason, explanation: END_EXPLANATIONS[end.reason] ?? end.reason, record: failed };
    if (failed && inPage(n)) {
      summary.shown++;
      if (opts.onRecord) await opts.onRecord(failed);
    }
  } finally {
    await files.closeAll();
  }
}

/** What recover() would do (its dry run, forced so that corruption is reported, not thrown), or the error it stops with. */
async function recoveryVerdict(io: IO, root: string): Promise<InspectSummary['verdict']> {
  try {
    const rec = await recover({ io, dir: root, create: false, dryRun: true, force: true });
    return { ok: true, report: rec.report, problems: uncleanReasons(rec.report) };
  } catch (e) {
    const err = e instanceof CpError ? e : fsError(e, root);
    return { ok: false, error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } };
  }
}

/**
 * Walk the journal the way recovery does (from the start of the cursor's segment, following SEGEND
 * records) and describe every record; then ask recover({ dryRun: true, force: true }) for its verdict.
 * Changes nothing. Throws a CpError when `dir` holds no store; a damaged control file is reported in
 * the result (the walk then starts at the lowest valid segment).
 */
export async function inspectJournal(opts: InspectOptions): Promise<InspectResult> {
  const { io } = opts;
  const paths = await probeStore(io, opts.dir);
  const root = paths.root;
  const { control, problem: controlProblem, exists: ctlExists } = await inspectControl(io, paths.control);
  const listing = await listSegments(io, paths.journal, control ? control.storeId : null).catch((e) => { throw fsError(e, paths.journal); });
  if (!control && listing.indexes.length === 0 && !ctlExists) {
    throw new CpError('ENOENT', `${root} is not a cpfile store (no ${META_DIR}/control)`);
  }
  const segs = listing.bySeq;
  const segments = [...segs.values()].sort((a, b) => a.seq - b.seq)
    .map((s) => ({ index: s.index, file: s.file, seq: s.seq, size: s.size, salt: s.salt, storeId: s.storeId, version: s.version, mark: s.mark ?? null }));

  const startSeq: number | null = control ? control.cursorSeq : (segments.length ? segments[0].seq : null);
  const summary: InspectSummary = {
    records: 0, shown: 0, from: opts.from ?? 0, limit: opts.limit ?? null, byType: {}, bytes: 0, dataBytes: 0, segmentsWalked: [], commits: 0,
    prepares: 0, firstEpoch: null, lastCommitEpoch: null, uncommittedRecords: 0, inDoubt: null,
    end: { seq: startSeq ?? 0, offset: SEGMENT_HEADER_AREA, reason: 'missing-segment', explanation: '', record: null },
    verdict: { ok: false, error: { code: 'EINVAL', message: 'not run' } },
  };
  if (startSeq !== null) await walkAndDescribe(opts, segs, startSeq, summary);
  else summary.end.explanation = 'the journal has no usable segment';
  if (startSeq !== null && !segs.has(startSeq)) {
    summary.end.explanation = control && control.counter === 1
      ? 'the store has never been written: its first segment does not exist yet'
      : 'the segment holding the apply cursor is missing or its header is unusable';
  }
  summary.verdict = await recoveryVerdict(io, root);
  return {
    dir: root, control, controlProblem, segments, invalidSegments: listing.invalid,
    start: startSeq === null ? null : { seq: startSeq, offset: SEGMENT_HEADER_AREA }, summary,
  };
}

function appendNote(a: string | undefined, b: string): string {
  return a ? `${a}; ${b}` : b;
}
