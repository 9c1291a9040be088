/**
 * How the main thread reaches the flusher: through a piscina worker thread (production), or inline on
 * the main thread with any I/O implementation (deterministic tests, the torture suite's simulated disk).
 * Both run tasks strictly in submission order.
 */
import { Piscina } from 'piscina';
import { FlusherCore, type Task, type TaskResult } from './flusher.js';
import { type IO } from './io.js';
import { errorToPlain } from './errors.js';

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
        if (!this.core) return { ok: false, fsyncs: 0, error: { code: 'EIO', message: 'flusher used before init' } };
        const res = await this.core.run(task.actions);
        if (task.close) {
          await this.core.close();
          this.core = null;
        }
        return res;
      } catch (e) {
        return { ok: false, fsyncs: 0, error: errorToPlain(e) };
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

const WORKER_URL = new URL('../workers/flusher.js', import.meta.url);

export class WorkerPort implements FlusherPort {
  private pool: Piscina;
  constructor() {
    this.pool = new Piscina({
      filename: WORKER_URL.href,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      // The worker's tasks are awaited to completion; keep its event loop awake between them.
      atomics: 'disabled',
    });
  }

  async run(task: Task, transfer?: ArrayBuffer[]): Promise<TaskResult> {
    try {
      return (await this.pool.run(task, transfer && transfer.length ? { transferList: transfer } : undefined)) as TaskResult;
    } catch (e) {
      return { ok: false, fsyncs: 0, error: errorToPlain(e) };
    }
  }

  async destroy(): Promise<void> {
    await this.pool.destroy();
  }
}
