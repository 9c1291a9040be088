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
import { type AttachTask, type Task, type TaskResult, failedResult, NOT_STARTED } from '../lib/flusher/protocol.js';
import { syncNodeIO, type IO } from '../lib/io.js';
import { errorToPlain } from '../lib/errors.js';

let core: FlusherCore | null = null;

/** A task on the attached port: its number, echoed in the reply. */
interface PortTask {
  id: number;
  task: Task;
}

/** The next task already on `port`, polling for it up to `ns` nanoseconds; null when none came. */
function poll(port: MessagePort, ns: bigint): PortTask | null {
  if (ns <= 0n) return receiveMessageOnPort(port)?.message as PortTask ?? null;
  const until = process.hrtime.bigint() + ns;
  do {
    const got = receiveMessageOnPort(port);
    if (got) return got.message as PortTask;
  } while (process.hrtime.bigint() < until);
  return null;
}

/**
 * Take tasks from `port` from now on, one at a time in arrival order, each answered with
 * `{ id, res }` (its recycled buffers transferred). The port keeps this thread's event loop busy
 * while it is open; the main thread closes it when the store closes. After each task the port is
 * polled for a moment (StoreOptions.flusherPoll; see DEFAULT_FLUSHER_POLL_US): receiveMessageOnPort takes messages from the same queue, in the same
 * order, as the 'message' events.
 */
function attach(port: MessagePort, pollMicros: number): void {
  const ns = BigInt(Math.round(pollMicros * 1000));
  let tail: Promise<unknown> = Promise.resolve();
  const serve = async (first: PortTask): Promise<void> => {
    for (let msg: PortTask | null = first; msg; msg = poll(port, ns)) {
      const res = await runTask(msg.task);
      try {
        port.postMessage({ id: msg.id, res }, res.recycled?.length ? res.recycled : []);
      } catch (e) {
        port.postMessage({ id: msg.id, res: failedResult(errorToPlain(e)) });
      }
    }
  };
  port.on('message', (msg: PortTask) => {
    tail = tail.then(() => serve(msg));
  });
}

/** The piscina task: attach the port it carries. */
export default function run(task: AttachTask): Promise<boolean> {
  attach(task.attach, task.pollMicros);
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
