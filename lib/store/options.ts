/**
 * openStore's options: what each one means (StoreOptions, public), and their validation into the
 * settings a store runs with (ranges and defaults; EINVAL messages name the option).
 */
import { availableParallelism } from 'node:os';
import { CpError } from '../errors.js';
import { DEFAULT_FLUSHER_POLL_US } from '../flusher/protocol.js';
import { DEFAULT_SEGMENT_SIZE, MARK_STEP_OPTION_MIN, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE } from '../format.js';
import { type IO, nodeIO } from '../io.js';
import type { Hooks } from '../hooks.js';
import type { ResolveInDoubt } from '../recovery/types.js';

export interface StoreOptions {
  /** The seed's cp_hooks: mirror entries to an external checkpoint store. */
  hooks?: Hooks;
  /** fsync at all (default true). false trades every durability guarantee for speed. */
  sync?: boolean;
  /** Journal segment size in bytes (default 64 MiB). */
  segmentSize?: number;
  /** An open store checks every lockStale/2 ms that its lock is still its own (default 10000, min 2000); no lock is taken over by age. */
  lockStale?: number;
  /** Run the flusher on the main thread instead of a worker (deterministic tests). */
  inline?: boolean;
  /** The I/O implementation (tests and the torture suite); implies inline. */
  io?: IO;
  /**
   * Tests: the URL of a module exporting `io` (an IO) that the flusher worker uses instead of its
   * synchronous node:fs implementation, to record or fail the worker's own calls.
   */
  workerIO?: string;
  /**
   * How long the flusher thread keeps polling for the next task after each one before it sleeps, in
   * microseconds (default 250; 0 on a machine with one CPU). A sleeping thread on a virtual machine
   * costs 50-150 us to wake, which a commit pays twice; polling saves one of them for a writer that
   * commits again within the window, at the price of up to this much CPU time per task. 0 turns it off.
   */
  flusherPoll?: number;
  /**
   * Journal batch buffer size (default 1 MiB). A store keeps up to two more buffers of this size on
   * the main thread, for batches of writes under 1 KiB (made when first needed).
   */
  batchBytes?: number;
  /** Bytes on their way to the flusher before write() waits (default 16 MiB). */
  maxInflight?: number;
  /**
   * Direct appends: once a file's appends in one epoch reach this many bytes, later appends to it in
   * that epoch go straight to the file instead of through the journal (written once, not twice), if
   * the last commit lists the file as open; recovery cuts them off (back to the committed size that
   * commit records) if the epoch does not commit. Default 1 MiB; false turns it off. A bulk append
   * that only the apply of committed epochs keeps in the journal (the file's creation, a truncate)
   * waits for that apply instead, when it is at most 4 x maxInflight of journal and applyThreshold
   * is not above that.
   */
  directAppendMin?: number | false;
  /** Committed but unapplied journal bytes that trigger an apply at once (default 8 MiB). */
  applyThreshold?: number;
  /** Idle delay before committed epochs are applied in the background, in ms (default 25). */
  applyDelay?: number;
  /**
   * A background apply runs in slices of about this many journal bytes, each ending at a COMMIT,
   * with the commits that come meanwhile between them (default 1 MiB): the most a commit waits
   * behind an apply. close() and rollback() apply in one go.
   */
  applySlice?: number;
  /**
   * How far ahead of the journal's end a segment's high-water mark is raised, in bytes (FORMAT.md
   * R19; default: an eighth of the segment size, from 2 MiB to 8 MiB). After a crash recovery reads
   * at most this much past the end of the journal; a run of more than half this many journal bytes
   * with no check in between pays one extra fdatasync per step.
   */
  markStep?: number;
  /** Proceed past journal corruption (copying the journal aside first). cp-recover --force uses it. */
  force?: boolean;
  /**
   * Two-phase epochs: the decision of an epoch that a crash left prepared and undecided (its PREPARE
   * is durable, its decision is not in the journal). Recovery calls it with the epoch's id, number
   * and store, and commits or aborts the epoch as told; without it, or when it throws or answers
   * anything but 'commit' or 'abort', openStore rejects with EINDOUBT and changes nothing.
   */
  resolveInDoubt?: ResolveInDoubt;
  /** Take no lock (only for tests that build crash states in memory). */
  noLock?: boolean;
}

/** StoreOptions validated, with their defaults. */
export interface StoreSettings {
  segmentSize: number;
  lockStale: number;
  /** flusherPoll, in microseconds. */
  flusherPoll: number;
  batchBytes: number;
  maxInflight: number;
  applyThreshold: number;
  applyDelay: number;
  applySlice: number;
  /** undefined: by segment size (FORMAT.md R19). */
  markStep: number | undefined;
  /** directAppendMin; Infinity when direct appends are off. */
  directMin: number;
  sync: boolean;
  io: IO;
}

/**
 * applySlice's default. Larger slices mean fewer barriers (each syncs the data files and the control
 * file), smaller ones a shorter wait for a commit behind the apply (docs/BENCHMARKS.md, P1).
 */
export const DEFAULT_APPLY_SLICE = 1024 * 1024;

function intOption(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new CpError('EINVAL', `option ${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

/** Validate the numeric options in this order (the first bad one is reported), and apply the defaults. */
export function parseOptions(options: StoreOptions): StoreSettings {
  const segmentSize = intOption(options.segmentSize, 'segmentSize', MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE);
  const lockStale = intOption(options.lockStale, 'lockStale', 2000, 24 * 3600 * 1000, 10000);
  const flusherPoll = intOption(options.flusherPoll, 'flusherPoll', 0, 100_000, availableParallelism() > 1 ? DEFAULT_FLUSHER_POLL_US : 0);
  const batchBytes = intOption(options.batchBytes, 'batchBytes', 4096, 64 * 1024 * 1024, 1024 * 1024);
  const maxInflight = intOption(options.maxInflight, 'maxInflight', batchBytes, 2 ** 31, 16 * 1024 * 1024);
  const applyThreshold = intOption(options.applyThreshold, 'applyThreshold', 0, 2 ** 40, 8 * 1024 * 1024);
  const applyDelay = intOption(options.applyDelay, 'applyDelay', 0, 3600 * 1000, 25);
  const applySlice = intOption(options.applySlice, 'applySlice', 1, 2 ** 40, DEFAULT_APPLY_SLICE);
  const markStep = options.markStep === undefined ? undefined : intOption(options.markStep, 'markStep', MARK_STEP_OPTION_MIN, MAX_SEGMENT_SIZE, 0);
  if (markStep !== undefined && markStep % MARK_STEP_OPTION_MIN !== 0) {
    throw new CpError('EINVAL', `option markStep must be a multiple of ${MARK_STEP_OPTION_MIN}, got ${markStep}`);
  }
  const directMin = options.directAppendMin === false ? Infinity
    : intOption(options.directAppendMin, 'directAppendMin', 1, Number.MAX_SAFE_INTEGER, 1024 * 1024);
  return { segmentSize, lockStale, flusherPoll, batchBytes, maxInflight, applyThreshold, applyDelay, applySlice, markStep, directMin, sync: options.sync !== false, io: options.io ?? nodeIO };
}
