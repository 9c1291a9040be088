/**
 * The protocol between the main thread (lib/journal/writer.ts) and the flusher (core.ts, run in the
 * worker of workers/flusher.ts or inline): the tasks it is handed and the results it gives back.
 * Types only, and the tiny constructors of a few of them. Everything here crosses a thread boundary
 * by structured clone, so it is plain data (buffers are transferred, not copied).
 *
 * Tasks run strictly one after another, in the order they were submitted (FORMAT.md R4): that order
 * is what lets the main thread decide the journal's layout while the flusher only executes it.
 */
import { type MessagePort } from 'node:worker_threads';
import { type ControlState } from '../format.js';
import { type SegmentInfo } from '../journal/segments.js';

/** A segment as the main thread describes it to the flusher: its header fields and file index (no path). */
export type PlainSegment = Omit<SegmentInfo, 'file'>;

/** A file written directly in the epoch, with its committed size (docs/FORMAT.md, "Direct appends"). */
export interface Fence {
  name: string;
  /** The size the last durable COMMIT (or CATALOG) lists for it: what a rollback cuts it back to. */
  size: number;
}

export type Action =
  // A new segment; `durable`: synced (file and journal directory) before the next action, which
  // writes the SEGEND naming it (FORMAT.md R9).
  | { op: 'segment'; seg: PlainSegment; durable?: boolean }
  | { op: 'write'; index: number; offset: number; bytes: Uint8Array }
  | { op: 'sync' }
  // `sliceBytes`: stop after the first COMMIT that ends this many journal bytes past the cursor
  // (ApplySchedule: a background apply in slices, so that commits wait for one slice, not all).
  | { op: 'apply'; endPos: number; sliceBytes?: number }
  // Direct appends (docs/FORMAT.md, "Direct appends"). The main thread queues, per file and epoch,
  // 'fence' (its committed size) then 'direct' writes; before the epoch's COMMIT, 'datasync'; on
  // rollback, 'undoDirect'. Before a PREPARE, 'datasync' with `keep`: the fences stay, for an abort
  // to cut back to, until the decision's 'datasync' or 'undoDirect' (R18).
  | ({ op: 'fence' } & Fence)
  | { op: 'direct'; name: string; offset: number; bytes: Uint8Array }
  | { op: 'datasync'; keep?: boolean }
  | { op: 'undoDirect' };

export interface FlusherInit {
  dir: string;
  sync: boolean;
  control: ControlState;
  controlSlot: 0 | 1;
  /** Segments of the live log, the current one included. */
  segments: PlainSegment[];
  /**
   * Worker only: the URL of a module whose `io` export the worker uses instead of syncNodeIO (tests
   * record or fail the worker's own calls with it). The inline flusher is given its IO directly.
   */
  ioModule?: string;
  /** Where the first of `segments` has no blocks yet (recovery created or grew it), if anywhere. */
  sparseFrom?: number | null;
  /** StoreOptions.markStep: the step of the segments' high-water marks (FORMAT.md R19); default by segment size. */
  markStep?: number;
}

export interface Task {
  init?: FlusherInit;
  actions: Action[];
  close?: boolean;
}

/** A failure as it crosses the thread boundary (errors.ts errorToPlain). */
export interface PlainError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * The apply cursor after an 'apply' action, as the flusher's control file holds it once durable.
 * The flusher's ControlWriter.state is the source of truth (it writes the control file); this is
 * the copy the main thread learns, never ahead of it.
 */
export interface AppliedReport {
  cursorSeq: number;
  cursorOffset: number;
  appliedEpoch: number;
  /** Epochs and payload bytes this apply executed. */
  epochs: number;
  bytes: number;
}

export interface TaskResult {
  ok: boolean;
  error?: PlainError;
  fsyncs: number;
  /**
   * The buffers of this task's write actions, handed back once written so the main thread can reuse
   * them for later batches (transferred back from the worker, not copied).
   */
  recycled?: ArrayBuffer[];
  applied?: AppliedReport;
}

/**
 * How long the flusher's worker keeps polling its port after a task before it parks in its event loop,
 * in microseconds, by default (StoreOptions.flusherPoll; the benchmark's thread floor,
 * tools/bench/raw-worker.ts, polls as long). On this machine kind a parked thread's virtual CPU halts,
 * and waking it costs the sender 40-60 us inside postMessage (an IPI through the hypervisor) plus the
 * wake-up itself; a thread still polling takes the next message in a few microseconds. A writer that
 * commits back to back (P1) sends its next task well within the window; the price is at most this
 * much CPU per task.
 */
export const DEFAULT_FLUSHER_POLL_US = 250;

/**
 * The worker's one piscina task (workers/flusher.ts): the port its tasks arrive on, its polling
 * window, and the process-wide polling slots shared by every store's worker: a thread polls only
 * while it holds one (`pollers[i]` is its `pollerId` then, 0 when free), so at most
 * `pollers.length` threads poll at once; many stores committing together would otherwise keep every
 * core spinning and slow each other down. Slots are owned by id, not counted, so that the main
 * thread can free the slot of a thread that was terminated or died while polling (WorkerPort).
 */
export interface AttachTask {
  attach: MessagePort;
  pollMicros: number;
  pollers: Int32Array;
  pollerId: number;
}

/** A task on the attached port: its number, and when it was sent (process.hrtime.bigint(), one clock for all threads). */
export interface PortTask {
  id: number;
  task: Task;
  sentAt: bigint;
}

/** The answer to the PortTask of the same `id` (its recycled buffers transferred). */
export interface PortReply {
  id: number;
  res: TaskResult;
}

/** The error of a task sent before the init task (a flusher with no state). */
export const NOT_STARTED: PlainError = { code: 'EIO', message: 'flusher used before init' };

/** A failed result that did not touch the disk. */
export const failedResult = (error: PlainError): TaskResult => ({ ok: false, fsyncs: 0, error });

/** The result of a task that had nothing to do. */
export const emptyResult = (ok = true): TaskResult => ({ ok, fsyncs: 0 });
