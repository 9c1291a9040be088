/**
 * The flusher's worker-thread entry point, run by piscina (one thread per store). All logic lives in
 * lib/flusher/core.ts; this module only keeps the FlusherCore between tasks. Every task awaits all of its
 * I/O before returning, so nothing is left parked while piscina idles the thread.
 *
 * Piscina starts and watches the thread; its one task hands over a MessagePort ("attach"), and the
 * flusher's tasks arrive on that port (lib/flusher/port.ts WorkerPort). A piscina task round trip costs
 * about 70 us on this machine kind, a message on a port of one's own 15-25 us, and P1 pays one round
 * trip per commit.
 */
import { type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { FlusherCore } from '../lib/flusher/core.js';
import { type AttachTask, type PortReply, type PortTask, type Task, type TaskResult, failedResult, NOT_STARTED } from '../lib/flusher/protocol.js';
import { syncNodeIO, type IO } from '../lib/io.js';
import { errorToPlain } from '../lib/errors.js';

let core: FlusherCore | null = null;

/**
 * The next task already on `port`, polling for it up to `ns` nanoseconds while this thread holds one
 * of the polling slots `pollers` (AttachTask; no slot free: no polling); null when none came.
 */
function poll(port: MessagePort, ns: bigint, pollers: Int32Array, id: number): PortTask | null {
  const now = receiveMessageOnPort(port);
  if (now || ns <= 0n) return (now?.message as PortTask | undefined) ?? null;
  let slot = 0;
  while (slot < pollers.length && Atomics.compareExchange(pollers, slot, 0, id) !== 0) slot++;
  if (slot === pollers.length) return null;
  try {
    const until = process.hrtime.bigint() + ns;
    // The clock is read every 16 turns: each reading allocates (a BigInt), and a loop that spins for
    // a window allocated enough to bring the worker's scavenges forward.
    for (let turn = 1; ; turn++) {
      const got = receiveMessageOnPort(port);
      if (got) return got.message as PortTask;
      if ((turn & 15) === 0 && process.hrtime.bigint() >= until) return null;
    }
  } finally {
    // (a thread terminated right here never gets this far: WorkerPort.destroy frees its slot)
    Atomics.compareExchange(pollers, slot, id, 0);
  }
}

/**
 * Take tasks from `port` from now on, one at a time in arrival order, each answered with a
 * PortReply. The port keeps this thread's event loop busy while it is open; the main thread closes
 * it when the store closes. After each task the port is polled for a moment (StoreOptions.flusherPoll,
 * DEFAULT_FLUSHER_POLL_US): receiveMessageOnPort takes messages from the same queue, in the same
 * order, as the 'message' events.
 */
function attach({ attach: port, pollMicros, pollers, pollerId }: AttachTask): void {
  const ns = BigInt(Math.round(pollMicros * 1000));
  let tail: Promise<unknown> = Promise.resolve();
  // Polling pays only for a writer that sends its next task within the window: it stops after a
  // window that brought nothing, and starts again when a task arrives within the window of the
  // last reply (so many stores committing in turn, or an occasional writer, do not keep a core busy).
  // "Arrived" is when the main thread sent it: the wake-up of this thread is what polling saves.
  let polling = false;
  let repliedAt = 0n;
  const reply = (r: PortReply, transfer: ArrayBuffer[] = []): void => port.postMessage(r, transfer);
  const serve = async (first: PortTask): Promise<void> => {
    polling = ns > 0n && first.sentAt - repliedAt < ns;
    for (let msg: PortTask | null = first; msg; ) {
      const res = await runTask(msg.task);
      try {
        reply({ id: msg.id, res }, res.recycled);
      } catch (e) {
        // (the result could not be cloned: say so; a port that cannot even take that is closed,
        // and the main thread learns it from the port's 'close')
        try {
          reply({ id: msg.id, res: failedResult(errorToPlain(e)) });
        } catch {
          port.close();
        }
      }
      repliedAt = process.hrtime.bigint();
      msg = poll(port, polling ? ns : 0n, pollers, pollerId);
      if (!msg) polling = false;
    }
  };
  port.on('message', (msg: PortTask) => {
    // serve() does not reject (runTask returns failures as results); the catch keeps the chain alive regardless.
    tail = tail.then(() => serve(msg)).catch(() => port.close());
  });
}

/** The piscina task: attach the port it carries. */
export default function run(task: AttachTask): Promise<boolean> {
  attach(task);
  return Promise.resolve(true);
}

async function runTask(task: Task): Promise<TaskResult> {
  try {
    if (task.init) {
      if (core) await core.close();
      const io = task.init.ioModule ? ((await import(task.init.ioModule)) as { io: IO }).io : syncNodeIO;
      core = await FlusherCore.create(io, task.init);
    }
    if (!core) return failedResult(NOT_STARTED);
    const res = await core.run(task.actions);
    if (task.close) {
      await core.close();
      core = null;
    }
    return res;
  } catch (e) {
    return failedResult(errorToPlain(e));
  }
}
