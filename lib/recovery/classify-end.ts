/**
 * Recovery phase 3: the verdicts on how the log ended (FORMAT.md R8). 'zero' and 'stale' are the
 * normal end of a log, a damaged record after the last synced COMMIT is a torn tail (normal after a
 * crash), and damage to bytes that were once durable is corruption, proved in the ways R8 lists.
 * Corruption with nothing to keep stops recovery here whatever `force` says; corruption that a
 * forced recovery can cut the log at is returned, for the orchestrator to refuse or force past.
 */
import { SEGMENT_HEADER_AREA, RecordType, decodePayload, pos, type ControlState } from '../format.js';
import { findLaterEpoch, type ScannedRecord } from '../journal/reader.js';
import type { SegmentInfo } from '../journal/segments.js';
import type { SegmentFiles } from '../journal/segment-files.js';
import { corruptError, lostEpochsText, type ForceableKind, type CpError } from '../errors.js';
import type { Corruption } from './types.js';
import type { Scanned } from './scan.js';

/** Corruption a forced recovery cuts the log at, and its kind (CorruptionDetails). */
export interface CorruptionVerdict {
  kind: ForceableKind;
  corruption: Corruption;
  /** What else a forced recovery gives up (the open entries), for the error's message. */
  note?: string;
}

/**
 * Refuse a walk that leaves nothing to keep (the catalog opening the cursor's segment is not there,
 * damaged, undecodable or cut short: R3, R5, R8); otherwise return the recovered epoch: the last
 * COMMIT walked, or the catalog's epoch, or the control file's applied epoch.
 */
export function validateLogStart(s: Scanned, control: ControlState, fresh: boolean): number {
  const { log, end } = s;
  if (log.corruptEarly && !log.corruptAt) throw corruptError(log.corruptEarly, { kind: 'cursor-catalog', ...log.earlyAt });
  if (log.order.firstCatalogIncomplete && !fresh) {
    // The catalog opening the cursor's segment was synced whole before the cursor moved there (R5).
    throw corruptError(`the catalog at the start of segment ${control.cursorSeq} ends before its last part (at offset ${end.offset}: ${end.reason})`, {
      kind: 'cursor-catalog', seq: end.seq, offset: end.offset, reason: 'catalog',
    });
  }
  if (log.catalogEpoch < 0 && s.cursorSeg && control.cursorOffset > SEGMENT_HEADER_AREA) {
    throw corruptError(`the catalog record at the start of segment ${control.cursorSeq} is damaged`, {
      kind: 'cursor-catalog', seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA,
    });
  }
  return Math.max(log.lastCommitEpoch, log.catalogEpoch < 0 ? control.appliedEpoch : log.catalogEpoch);
}

export interface ClassifyInput {
  scanned: Scanned;
  control: ControlState;
  fresh: boolean;
  segs: Map<number, SegmentInfo>;
  files: SegmentFiles;
  /** The recovered epoch (validateLogStart). */
  epoch: number;
}

/** Torn tail or corruption? null for a clean end or a torn tail. */
export async function classifyEnd(a: ClassifyInput): Promise<CorruptionVerdict | null> {
  const { log, end } = a.scanned;
  const cur = a.epoch + 1;
  const misplaced = log.corruptAt;
  if (misplaced) {
    // The walk stopped at a valid record that cannot belong where it is: everything from it on is
    // suspect, and it was durable (it validates), so this is corruption, never a torn tail (R3, R5, R6).
    const later = await findLaterEpoch(a.segs, a.files, misplaced.seq, misplaced.offset, cur);
    return {
      kind: misplaced.reason === 'payload' ? 'undecodable-record' : 'epoch-order',
      corruption: {
        seq: misplaced.seq, offset: misplaced.offset, reason: misplaced.reason, lostFrom: cur,
        lostTo: Math.max(cur, later ? later.epoch : cur), evidence: log.corruptEarly!,
      },
      note: entriesNote(log.walkedEpoch, cur - 1),
    };
  }
  if (end.reason === 'stop') return null;
  return classifyFailedRecord(a, cur);
}

/** The log ended at a record that is not valid (R1, R2), or at a missing segment: is that a torn tail? */
async function classifyFailedRecord(a: ClassifyInput, cur: number): Promise<CorruptionVerdict | null> {
  const { control } = a;
  const { log, end, cursorSeg } = a.scanned;
  const cursorPos = pos(control.cursorSeq, control.cursorOffset);
  let found: { kind: ForceableKind; evidence: string } | null = null;
  // The epochs at stake: from cur up to the highest epoch seen after the end (FORMAT.md R8). Every
  // epoch below cur is kept (committed in the walk, or applied to the files), so with nothing of a
  // later epoch seen the range is empty (lostTo = cur - 1): no epoch is lost.
  let lostTo = cur - 1;
  const past = (evidence: string): { kind: ForceableKind; evidence: string } => ({ kind: 'cursor-past-damage', evidence });
  // The control file's cursor lies beyond the failed record, or its applied epoch is not below it (FORMAT.md R8).
  if (end.pos < cursorPos) found = past(`the apply cursor (segment ${control.cursorSeq} offset ${control.cursorOffset}) lies beyond it`);
  // A cursor inside a committed epoch (a rename fence) points at a record that was durable.
  else if (control.inEpoch && end.pos === cursorPos) found = past(`the apply cursor points at it, inside a committed epoch (a rename was being applied)`);
  // A cursor inside an epoch (R12 A3) is inside epoch cur, which committed: it is at stake.
  if (control.inEpoch && end.pos <= cursorPos) lostTo = cur;
  const from = log.lastSegend;
  if (!found && end.reason === 'missing-segment' && from && from.version >= 3) {
    // FORMAT.md R9: from version 3 on, a segment is durable before the SEGEND naming it is written.
    // It held records of epoch cur (the walk went on into it there): cur is at stake.
    found = { kind: 'missing-segment', evidence: `segment ${end.seq}, named by the segment end record at segment ${from.seq} offset ${from.offset}, is missing, and a segment is made durable before the record naming it is written` };
    lostTo = cur;
  }
  else if (control.appliedEpoch >= cur) found = past(`the control file says epoch ${control.appliedEpoch} was applied`);
  // The catalog opening the cursor's segment was synced before the cursor moved there (R11 V6, R9,
  // R12), unless the store is new (counter 1): damaged, it is corruption whatever follows it (R8).
  const catalogDamaged = !a.fresh && cursorSeg !== undefined && end.seq === control.cursorSeq && end.offset === SEGMENT_HEADER_AREA;
  // A valid COMMIT past the end of the log that records an apply cursor past it too: the cursor had
  // moved beyond where this walk ends, so the control file is older than the journal (it lost its
  // newest slot after a recovery moved the log to a new segment, say).
  let beyond: { seq: number; offset: number; epoch: number; at: string } | null = null;
  const later = await findLaterEpoch(a.segs, a.files, end.seq, end.offset, catalogDamaged ? -1 : cur, (rec) => {
    if (!beyond) beyond = commitCursorBeyond(rec, end.pos);
    if (rec.header.type !== RecordType.SEGEND) lostTo = Math.max(lostTo, rec.header.epoch);
  });
  const b = beyond as { seq: number; offset: number; epoch: number; at: string } | null;
  if (b) {
    found ??= { kind: 'control-older-than-journal', evidence: `the commit of epoch ${b.epoch} at segment ${b.seq} offset ${b.offset} records an apply cursor (${b.at}) beyond the end of the log: the control file is older than the journal` };
    lostTo = Math.max(lostTo, b.epoch);
  }
  if (later) {
    // A valid record of a later epoch is only written after the failed record's epoch was synced (R4, R8).
    found ??= catalogDamaged
      ? { kind: 'damaged-cursor-catalog', evidence: `the catalog record opening segment ${end.seq} is damaged but valid records follow it` }
      : { kind: 'damaged-record-before-commits', evidence: `a valid record of epoch ${later.epoch} follows at segment ${later.seq} offset ${later.offset}, and epoch ${later.epoch} is only written after epoch ${cur} was durable` };
    lostTo = Math.max(lostTo, later.epoch);
  }
  if (catalogDamaged) {
    // Nothing valid after it: still not a torn tail (it was durable), and not to be dropped silently
    // with the open entries it lists.
    found ??= { kind: 'damaged-cursor-catalog', evidence: `the catalog record opening segment ${end.seq}, where the apply cursor is, is damaged, and it was made durable before the cursor moved there` };
  }
  if (!found) return null;
  const corruption = { seq: end.seq, offset: end.offset, reason: end.reason, lostFrom: cur, lostTo, evidence: found.evidence };
  return { kind: found.kind, corruption, note: entriesNote(log.walkedEpoch, cur - 1) };
}

/** What a forced recovery loses besides epochs: the open entries recorded after the last record it keeps. */
function entriesNote(walked: number, kept: number): string | undefined {
  if (walked < 0) return `--force keeps the applied files and opens the store with no open entries (the positions of the files that were open are lost)`;
  if (walked < kept) return `the open entries recorded after epoch ${walked} are lost (the store opens with those of epoch ${walked})`;
  return undefined;
}

/** A valid COMMIT that records an apply cursor past `endPos`, described; else null. */
function commitCursorBeyond(rec: ScannedRecord, endPos: number): { seq: number; offset: number; epoch: number; at: string } | null {
  if (rec.header.type !== RecordType.COMMIT) return null;
  try {
    const op = decodePayload(rec.header.type, rec.payload);
    if (op.type === RecordType.COMMIT && op.applied && pos(op.applied.cursorSeq, op.applied.cursorOffset) > endPos) {
      return { seq: rec.seq, offset: rec.offset, epoch: rec.header.epoch, at: `segment ${op.applied.cursorSeq} offset ${op.applied.cursorOffset}` };
    }
  } catch {
    // undecodable: not evidence of anything
  }
  return null;
}

/** The ECORRUPT that stops an unforced recovery at corruption (its details: the kind and the lost epochs). */
export function corruptionError(v: CorruptionVerdict): CpError {
  const c = v.corruption;
  const lost = c.lostTo >= c.lostFrom ? `E${lostEpochsText(c).slice(1)} would be lost` : `No epoch would be lost (every epoch up to ${c.lostFrom - 1} is kept)`;
  return corruptError(
    `journal damaged at segment ${c.seq} offset ${c.offset} (${c.reason}), not a torn tail: ` +
    `${c.evidence}. ${lost}${v.note ? `; ${v.note}` : ''}; cp-recover --force keeps a copy and proceeds.`,
    { kind: v.kind, ...c });
}
