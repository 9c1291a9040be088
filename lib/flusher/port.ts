/**
 * How the main thread reaches the flusher: through a piscina worker thread (production), or inline on
 * the main thread with any I/O implementation (deterministic tests, the torture suite's simulated disk).
 * Both run tasks strictly in submission order.
 */
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import workerPath from './worker-path.cjs';
import { FlusherCore } from './core.js';
import { type Task, type TaskResult, failedResult, NOT_STARTED } from './protocol.js';
import { type IO } from '../io.js';
import { errorToPlain } from '../errors.js';

export interface FlusherPort {
  run(task: Task, transfer?: ArrayBuffer[]): Promise<TaskResult>;
  destroy(): Promise<void>;
}

export class InlinePort implements FlusherPort {
  private core: FlusherCore | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  constructor(private io: IO) {}

  run(task: Task): Promise<TaskResult> {
    const p = this.tail.then(async (): Promise<TaskResult> => {
      try {
        if (task.init) this.core = await FlusherCore.create(this.io, task.init);
        if (!this.core) return failedResult(NOT_STARTED);
        const res = await this.core.run(task.actions);
        if (task.close) {
          await this.core.close();
          this.core = null;
        }
        return res;
      } catch (e) {
        return failedResult(errorToPlain(e));
      }
    });
    this.tail = p;
    return p;
  }

  async destroy(): Promise<void> {
    await this.tail.catch(() => undefined);
    if (this.core) await this.core.close().catch(() => undefined);
    this.core = null;
  }
}

const WORKER_URL = pathToFileURL(workerPath);

/**
 * Runs the flusher in a piscina worker thread. Tasks are handed over one at a time (order is part of
 * the durability argument, so it is enforced here rather than left to the pool's queue); tasks that
 * arrive while one is running are merged into the next hand-over, which also batches their fsyncs.
 */
export class WorkerPort implements FlusherPort {
  private pool: Piscina;
  private busy = false;
  private waiting: { task: Task; transfer: ArrayBuffer[]; resolve: (r: TaskResult) => void }[] = [];

  constructor() {
    this.pool = new Piscina({
      filename: WORKER_URL.href,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      // Every task awaits all of its I/O; keep the worker's event loop awake between tasks anyway.
      atomics: 'disabled',
    });
  }

  run(task: Task, transfer: ArrayBuffer[] = []): Promise<TaskResult> {
    return new Promise((resolve) => {
      this.waiting.push({ task, transfer, resolve });
      if (!this.busy) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.busy = true;
    while (this.waiting.length) {
      // Merge consecutive tasks, but never past one that carries init or close.
      const batch = [this.waiting.shift()!];
      while (this.waiting.length && !batch[0].task.init && !batch[0].task.close && !this.waiting[0].task.init && !this.waiting[0].task.close) {
        batch.push(this.waiting.shift()!);
      }
      const task: Task = batch.length === 1 ? batch[0].task : { actions: batch.flatMap((b) => b.task.actions) };
      const transfer = batch.flatMap((b) => b.transfer);
      let res: TaskResult;
      try {
        res = (await this.pool.run(task, transfer.length ? { transferList: transfer } : undefined)) as TaskResult;
      } catch (e) {
        res = failedResult(errorToPlain(e));
      }
      batch.forEach((b, i) => b.resolve(i === batch.length - 1 ? res : { ...res, fsyncs: 0, recycled: undefined }));
    }
    this.busy = false;
  }

  async destroy(): Promise<void> {
    while (this.busy) await new Promise((r) => setTimeout(r, 1));
    await this.pool.destroy();
  }
}
