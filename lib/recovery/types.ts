/**
 * The shapes recovery takes and gives: its options, the report openStore and cp-recover show, and
 * the state openStore continues writing from. (lib/recovery/index.ts re-exports them.)
 */
import type { CatalogEntry, ControlState } from '../format.js';
import type { EndReason } from '../journal/reader.js';
import type { SegmentInfo } from '../journal/segments.js';
import type { LostEpochs } from '../errors.js';
import type { IO } from '../io.js';

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
  /** The step of the fresh segment's high-water mark (StoreOptions.markStep; FORMAT.md R19). */
  markStep?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * The decision of an epoch left prepared and undecided (FORMAT.md R18): 'commit' or 'abort'.
   * Without it, or when it throws or answers anything else, recovery stops with EINDOUBT.
   */
  resolveInDoubt?: ResolveInDoubt;
}

/** An epoch prepared and undecided at recovery: its id, its number, its store. */
export interface InDoubtEpoch {
  id: string;
  epoch: number;
  storeId: string;
  dir: string;
}

export type ResolveInDoubt = (q: InDoubtEpoch) => 'commit' | 'abort' | Promise<'commit' | 'abort'>;

/** What recovery did with an epoch it found prepared: the decision it was given (null in a dry run: undecided). */
export interface InDoubtReport extends InDoubtEpoch {
  decision: 'commit' | 'abort' | null;
}

/** Damage that is not a torn tail (FORMAT.md R8): where it is and the epochs `force` loses. */
export type Corruption = LostEpochs;

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
  /** The epoch the log left prepared and undecided (two-phase, R18), and the decision recovery was given; null when there was none. */
  inDoubt: InDoubtReport | null;
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
