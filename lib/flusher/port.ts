/**
 * How the main thread reaches the flusher: through a piscina worker thread (production), or inline on
 * the main thread with any I/O implementation (deterministic tests, the torture suite's simulated disk).
 * Both run tasks strictly in submission order.
 */
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import workerPath from './worker-path.cjs';
import { FlusherCore } from './core.js';
import { type AttachTask, type PortReply, type PortTask, type Task, type TaskResult, type PlainError, failedResult, NOT_STARTED } from './protocol.js';
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
 * The process's polling slots (AttachTask.pollers: availableParallelism() - 1 of them, at least one)
 * and the next poller id, one for the whole process: kept on globalThis so that the ES module and
 * CommonJS builds, loaded side by side, share them.
 */
function pollingSlots(): { slots: Int32Array; next: number } {
  const key = Symbol.for('cpfile.flusherPollers');
  const g = globalThis as { [k: symbol]: { slots: Int32Array; next: number } | undefined };
  return (g[key] ??= { slots: new Int32Array(new SharedArrayBuffer(4 * Math.max(1, availableParallelism() - 1))), next: 1 });
}

/**
 * Runs the flusher in a piscina worker thread. Tasks are handed over one at a time (order is part of
 * the durability argument, so it is enforced here rather than left to the pool's queue); tasks that
 * arrive while one is running are merged into the next hand-over, which also batches their fsyncs.
 *
 * Piscina starts the thread and reports its death; the tasks themselves travel on a MessagePort of
 * their own, handed to the worker by piscina's one task (workers/flusher.ts): a piscina round trip
 * costs about three times a plain port's, and every commit waits for one. The port is referenced only
 * while a task is out, so an idle store keeps the process alive no more than the pool's idle thread does.
 */
export class WorkerPort implements FlusherPort {
  private pool: Piscina;
  private busy = false;
  private waiting: { task: Task; transfer: ArrayBuffer[]; resolve: (r: TaskResult) => void }[] = [];
  private channel = new MessageChannel();
  /** Resolves once the worker listens on the port; rejects when the thread could not start. */
  private attached: Promise<unknown>;
  private nextId = 0;
  /** The task out on the port (one at a time), waiting for its reply. */
  private out: { id: number; resolve: (r: TaskResult) => void } | null = null;
  /** Why the port can take no more tasks (the thread died or the store closed), once it cannot. */
  private gone: PlainError | null = null;
  /** The process's polling slots, and the id by which this store's thread holds one (pollingSlots). */
  private pollers: Int32Array;
  private pollerId: number;

  /** `pollMicros`: StoreOptions.flusherPoll. */
  constructor(pollMicros: number) {
    this.pool = new Piscina({
      filename: WORKER_URL.href,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      atomics: 'disabled',
    });
    const port = this.channel.port1;
    port.on('message', (msg: PortReply) => {
      const out = this.out;
      if (!out || out.id !== msg.id) return;
      this.out = null;
      port.unref();
      out.resolve(msg.res);
    });
    // The worker's end closes when its thread dies (or at destroy): nothing more will answer.
    port.on('close', () => this.fail({ code: 'EIO', message: 'the flusher thread exited' }));
    // An uncaught exception in the thread (or its running out of memory): piscina has no task out
    // to fail with it (the attach task resolved at once), so it emits 'error' on the pool, which
    // would crash the process unheard. It fails the store's flusher instead.
    this.pool.on('error', (e: unknown) => this.fail({ code: 'EIO', message: `the flusher thread failed: ${(e as Error)?.message ?? String(e)}` }));
    port.unref();
    const polling = pollingSlots();
    this.pollers = polling.slots;
    this.pollerId = polling.next++;
    const attach: AttachTask = { attach: this.channel.port2, pollMicros, pollers: this.pollers, pollerId: this.pollerId };
    this.attached = this.pool.run(attach, { transferList: [this.channel.port2] as unknown as ArrayBuffer[] });
    // A start that fails is reported by the first task (see call); never unhandled.
    this.attached.catch(() => undefined);
  }

  run(task: Task, transfer: ArrayBuffer[] = []): Promise<TaskResult> {
    return new Promise((resolve) => {
      this.waiting.push({ task, transfer, resolve });
      if (!this.busy) void this.pump();
    });
  }

  /** Free the polling slot of a thread that can no longer free it itself (it died, or was terminated while polling). */
  private freeSlot(): void {
    for (let i = 0; i < this.pollers.length; i++) Atomics.compareExchange(this.pollers, i, this.pollerId, 0);
  }

  private fail(err: PlainError): void {
    this.gone ??= err;
    this.freeSlot();
    const out = this.out;
    this.out = null;
    if (out) this.channel.port1.unref();
    out?.resolve(failedResult(this.gone));
  }

  /** Hand `task` to the worker on the port and wait for its result. */
  private async call(task: Task, transfer: ArrayBuffer[]): Promise<TaskResult> {
    try {
      await this.attached;
    } catch (e) {
      return failedResult(errorToPlain(e));
    }
    if (this.gone) return failedResult(this.gone);
    return new Promise((resolve) => {
      const id = ++this.nextId;
      this.out = { id, resolve };
      const port = this.channel.port1;
      port.ref();
      try {
        port.postMessage({ id, task, sentAt: process.hrtime.bigint() } satisfies PortTask, transfer);
      } catch (e) {
        this.out = null;
        port.unref();
        resolve(failedResult(errorToPlain(e)));
      }
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
      const res = await this.call(task, transfer);
      batch.forEach((b, i) => b.resolve(i === batch.length - 1 ? res : { ...res, fsyncs: 0, recycled: undefined }));
    }
    this.busy = false;
  }

  async destroy(): Promise<void> {
    while (this.busy) await new Promise((r) => setTimeout(r, 1));
    this.gone ??= { code: 'ECLOSED', message: 'the flusher was stopped' };
    this.channel.port1.close();
    await this.pool.destroy();
    this.freeSlot();
  }
}
