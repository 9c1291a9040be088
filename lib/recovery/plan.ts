/**
 * Recovery phase 4: plan the replay (where it starts, what it covers) and write the report. Pure:
 * it reads what the scan collected and touches no file.
 */
import { pos, type ControlState } from '../format.js';
import type { EndReason } from '../journal/reader.js';
import type { AppliedHint, LogCollector } from './scan.js';
import type { Corruption, RecoveryReport } from './types.js';

export interface ReplayPlan {
  /** The control file lost its newest slot: the replay starts at the cursor the last COMMIT records. */
  staleControl: boolean;
  hint: AppliedHint | null;
  /** Where the replay starts (global position). */
  startPos: number;
  epochs: number;
  records: number;
  /** Payload bytes of the replayed records. */
  bytes: number;
  /** Names the replayed records touch. */
  touched: Set<string>;
  /** Names a replayed record truncates, creates, unlinks or renames (a dry run cannot tell what would be cut from them). */
  reshaped: Set<string>;
  /** Names the replayed records make directories, and where the last such record is (ApplyContext.dirsAt). */
  dirsAt: Map<string, number>;
}

/**
 * Where the replay starts: the control file's cursor, or a later one a COMMIT records. A later one
 * means the control file lost its newest slot (a torn write of it is never followed by a COMMIT
 * recording its cursor: the cursor is only reported once it is durable), so the epochs up to it
 * were applied, and replaying them over direct appends made since would destroy those.
 */
export function planReplay(log: LogCollector, control: ControlState): ReplayPlan {
  const cursorPos = pos(control.cursorSeq, control.cursorOffset);
  const hint = log.appliedHint;
  const staleControl = hint !== null && hint.pos > cursorPos && hint.pos <= log.lastCommitEnd;
  const plan: ReplayPlan = {
    staleControl, hint, startPos: staleControl ? hint!.pos : cursorPos, epochs: 0, records: 0, bytes: 0,
    touched: new Set(), reshaped: new Set(), dirsAt: new Map(),
  };
  for (const g of log.replayGroups) {
    if (g.end <= plan.startPos) continue;
    plan.epochs++;
    plan.records += g.records;
    plan.bytes += g.bytes;
    for (const n of g.names) plan.touched.add(n);
    for (const n of g.reshaped) plan.reshaped.add(n);
    for (const [d, at] of g.dirs) plan.dirsAt.set(d, at);
  }
  return plan;
}

export interface ReportInput {
  created: boolean;
  control: ControlState;
  epoch: number;
  endReason: EndReason;
  log: LogCollector;
  plan: ReplayPlan;
  corruption: Corruption | null;
}

/** The report before the finish phase adds what it did (cut-backs, files touched, the journal copy, the time). */
export function buildReport(a: ReportInput): RecoveryReport {
  const { log, plan, corruption } = a;
  // 'zero' and 'stale' (bytes of an earlier life of a recycled segment) are the normal end of a log (R8).
  const damaged = a.endReason === 'crc' || a.endReason === 'length' || a.endReason === 'type';
  // A damaged record is a torn tail only when it is not corruption (RecoveryReport.tornTail's contract).
  const tornTail = damaged && !corruption;
  const clean = plan.epochs === 0 && log.pendingRecords === 0 && !damaged && !corruption && !plan.staleControl;
  return {
    created: a.created, storeId: a.control.storeId, epoch: a.epoch, replayedEpochs: plan.epochs,
    replayedRecords: plan.records, replayedBytes: plan.bytes, discardedRecords: log.pendingRecords,
    discardedBytes: log.pendingBytes, tornTail, endReason: a.endReason, clean, corruption, brokenCopy: null, staleControl: plan.staleControl,
    filesTouched: [...plan.touched].sort(), cutBack: [], entries: [...log.catalog.values()].filter((e) => e.state === 'open'),
    inDoubt: null, durationMs: 0,
  };
}
