/**
 * The flusher tasks the journal writer has handed over and not yet seen finish: how many bytes are on
 * their way (back-pressure), how far the journal and the direct appends are written, and the first
 * failure. Tasks run in order (FORMAT.md R4), so a failure of task n fails every later one too, and
 * "written up to position p" is the end of the last task that succeeded.
 */
import { CpError, type CpErrorCode } from '../errors.js';
import { type TaskResult } from '../flusher/protocol.js';
import { type BatchBuffers } from './batch-buffers.js';

export class TaskTracker {
  /** Tasks handed to the flusher so far (the number of the last one). */
  tasksSent = 0;
  /** The number of the first task that failed (Infinity while none has). */
  private failedTask = Infinity;
  /** The first failure: once set, the writer refuses every call (see throwIfFailed). */
  failure: CpError | null = null;
  /** Every record before this global position has been written to its segment. */
  writtenPos: number;
  /** The flusher has written every direct append up to this mark (DirectAppends.mark). */
  directDone = 0;
  private batches: { endPos: number; p: Promise<TaskResult> }[] = [];
  private inflightBytes = 0;
  private waiters: (() => void)[] = [];

  constructor(start: number, private buffers: BatchBuffers, private stats: { fsyncs: number }) {
    this.writtenPos = start;
  }

  /** Follow task `p`, which writes up to `endPos`, carries `bytes` and the direct appends up to `directMark`. */
  track(p: Promise<TaskResult>, endPos: number, bytes: number, directMark = 0, shared: SharedArrayBuffer[] = []): Promise<TaskResult> {
    const task = ++this.tasksSent;
    this.inflightBytes += bytes;
    const tracked = p.then((res) => {
      this.inflightBytes -= bytes;
      this.stats.fsyncs += res.fsyncs;
      if (res.recycled) {
        this.buffers.recycle(res.recycled);
        res.recycled = undefined;
      }
      // the task is over (written, or failed): the worker is done with the buffers it shared
      if (shared.length) this.buffers.recycle(shared);
      if (res.ok) {
        if (endPos > this.writtenPos) this.writtenPos = endPos;
        if (directMark > this.directDone) this.directDone = directMark;
      } else if (!this.failure) {
        this.failedTask = task;
        const err = res.error!;
        this.failure = new CpError((err.code as CpErrorCode) ?? 'EIO', err.message, { details: err.details });
      }
      this.batches = this.batches.filter((b) => b.p !== tracked);
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
      return res;
    });
    this.batches.push({ endPos, p: tracked });
    return tracked;
  }

  /** Whether the first failure came from task `task` or one before it (tasks run in order). */
  failedBy(task: number): boolean {
    return this.failedTask <= task;
  }

  /** Throw the first failure of a task, if any. */
  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** The last task still running, if any. */
  get lastTask(): Promise<TaskResult> | undefined {
    return this.batches[this.batches.length - 1]?.p;
  }

  /** The first running task that writes up to `p` (or the last one), if any. */
  taskReaching(p: number): Promise<TaskResult> | undefined {
    return (this.batches.find((x) => x.endPos >= p) ?? this.batches[this.batches.length - 1])?.p;
  }

  /** True when more than `maxInflight` bytes are on their way to the flusher. */
  congested(maxInflight: number): boolean {
    return this.inflightBytes > maxInflight && !this.failure;
  }

  /** Wait while more than `maxInflight` bytes are on their way to the flusher. */
  async drain(maxInflight: number): Promise<void> {
    while (this.inflightBytes > maxInflight && !this.failure) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    this.throwIfFailed();
  }
}
