/**
 * Closing a store (Store.close): what was called before close() completes first — its final check,
 * or an abort of the epoch when discarding — then the journal is flushed and applied, the `fini`
 * hook runs, and everything the store holds is given back (the flusher, descriptors, handles, the
 * lock) whatever failed. The first error is the one close() rejects with.
 */
import { CpError, ioError } from '../errors.js';
import type { IO } from '../io.js';
import type { JournalWriter } from '../journal/writer.js';
import type { FlusherPort } from '../flusher/port.js';
import type { Lock } from '../lock.js';
import { callHook, type Hooks } from '../hooks.js';
import type { CallQueue } from './queue.js';
import type { Catalog } from './catalog.js';
import type { PendingFiles } from './pending.js';
import type { ApplySchedule } from './apply-schedule.js';
import type { Checkpoint } from './checkpoint.js';
import type { TwoPhase } from './two-phase.js';

/** What closing needs of a store (its parts, as Store holds them). */
export interface ClosingParts {
  dir: string;
  io: IO;
  writer: JournalWriter;
  port: FlusherPort;
  lock: Lock | null;
  hooks: Hooks | undefined;
  queue: CallQueue;
  catalog: Catalog;
  pending: PendingFiles;
  schedule: ApplySchedule;
  checkpoint: Checkpoint;
  /** The store's own applyNow (tests replace it on the store). */
  applyNow: (inQueue: boolean) => Promise<void>;
}

/**
 * close() once nothing holds the store: a prepared epoch is decided by its caller (EPREPARED), or
 * aborted first by close({ discard: true }); then shutDown, called at once so that close() takes its
 * place in call order (calls made after it are refused).
 */
export function startClose(s: ClosingParts, twoPhase: TwoPhase, dir: string, discard: boolean): Promise<void> {
  if (twoPhase.busy && !discard) {
    return Promise.reject(new CpError('EPREPARED', `${dir}: an epoch is prepared and undecided: commit or abort it before close(), or close({ discard: true }) to abort it`));
  }
  const abortFirst = twoPhase.busy ? twoPhase.abortCurrent() : null;
  s.queue.closeCalled = true;
  return abortFirst
    ? abortFirst.then(() => shutDown(s, true), (e) => shutDown(s, true).then(() => { throw e; }))
    : shutDown(s, discard);
}

export async function shutDown(s: ClosingParts, discard: boolean): Promise<void> {
  let firstErr: unknown = null;
  try {
    if (s.queue.failure) throw s.queue.failure;
    if (discard) {
      await s.queue.run(() => s.checkpoint.appendAbort());
    } else {
      await s.checkpoint.check();
    }
    await s.queue.settled;
    await s.checkpoint.lastCheck;
    await s.queue.run(async () => {
      const r = await s.writer.flush();
      if (!r.ok) throw s.writer.failure ?? new CpError('EIO', 'flush failed');
      await s.applyNow(true);
    });
    if (s.queue.failure) throw s.queue.failure;
    await callHook(s.hooks, 'fini');
  } catch (e) {
    firstErr = e;
  } finally {
    s.schedule.stopTimer();
    s.queue.closed = true;
    await s.port.run({ actions: [], close: true }).catch(() => undefined);
    await s.port.destroy().catch(() => undefined);
    await s.writer.closeReads();
    for (const ov of s.pending.overlays.values()) if (ov.baseFd !== null) await s.io.close(ov.baseFd).catch(() => undefined);
    s.pending.overlays.clear();
    for (const e of s.catalog.open.values()) for (const h of e.handles) h.closed = true;
    s.catalog.open.clear();
    // A lock that cannot be removed (a read-only file system) must not hide the first error.
    if (s.lock) await s.lock.release().catch((e) => { firstErr ??= ioError(e, `releasing the lock of store ${s.dir}`); });
  }
  if (firstErr) throw firstErr;
}
