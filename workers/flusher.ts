/**
 * The flusher's worker-thread entry point, run by piscina (one thread per store). All logic lives in
 * lib/flusher/core.ts; this module only keeps the FlusherCore between tasks. Every task awaits all of its
 * I/O before returning, so nothing is left parked while piscina idles the thread.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { FlusherCore } from '../lib/flusher/core.js';
import { type Task, type TaskResult, failedResult, NOT_STARTED } from '../lib/flusher/protocol.js';
import { syncNodeIO, type IO } from '../lib/io.js';
import { errorToPlain } from '../lib/errors.js';

let core: FlusherCore | null = null;

/** The result, with its recycled buffers transferred back rather than copied. */
function reply(res: TaskResult): TaskResult {
  const buffers = res.recycled;
  if (!buffers || buffers.length === 0) return res;
  return move({
    get [transferableSymbol]() {
      return buffers;
    },
    get [valueSymbol]() {
      return res;
    },
  }) as unknown as TaskResult;
}

export default async function run(task: Task): Promise<TaskResult> {
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
    return reply(res);
  } catch (e) {
    return failedResult(errorToPlain(e));
  }
}
