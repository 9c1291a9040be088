/**
 * The store's events: 'checkpoint' once an epoch's commit is durable, 'applied' once committed epochs
 * are applied to the files. Listeners are called one by one, each guarded: a listener that throws
 * (or returns a promise that rejects) breaks neither the store nor the listeners after it; its error
 * goes to the store's 'listenerError' listeners, or to process.emitWarning when there are none. The
 * same events are published on the node:diagnostics_channel channels cpfile:checkpoint and
 * cpfile:applied (with the store directory), only while they have subscribers.
 */
import type { EventEmitter } from 'node:events';
import { channel } from 'node:diagnostics_channel';

export interface CheckpointEvent {
  /** The epoch made durable. */
  epoch: number;
  /** Journal records of the epoch (its COMMIT included), and its bytes: journaled plus appended directly. */
  records: number;
  bytes: number;
  /** From the check() call until its commit was durable, in milliseconds. */
  ms: number;
}

export interface AppliedEvent {
  /** The last epoch now applied to the files. */
  epoch: number;
  /** Journal payload bytes this apply executed. */
  bytes: number;
}

/** The event a guarded listener failed on, passed to 'listenerError' listeners with its error. */
export interface ListenerErrorInfo {
  event: 'checkpoint' | 'applied';
}

export interface StoreEventMap {
  checkpoint: [CheckpointEvent];
  applied: [AppliedEvent];
  listenerError: [unknown, ListenerErrorInfo];
}

const CHANNELS = { checkpoint: channel('cpfile:checkpoint'), applied: channel('cpfile:applied') };

type Listener = (...args: unknown[]) => unknown;

/** Call `fn` guarded; a throw or a rejection goes to `failed`. */
function guarded(emitter: EventEmitter, fn: Listener, args: unknown[], failed: (e: unknown) => void): void {
  try {
    const r = fn.apply(emitter, args) as { then?: unknown } | undefined;
    if (r && typeof r.then === 'function') (r as Promise<unknown>).then(undefined, failed);
  } catch (e) {
    failed(e);
  }
}

function warn(dir: string, event: string, err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err);
  process.emitWarning(`a '${event}' listener of store ${dir} threw: ${msg.split('\n')[0]}`, { type: 'CpfileListenerWarning', code: 'CPFILE_LISTENER' });
}

function reportFailure(emitter: EventEmitter, dir: string, event: ListenerErrorInfo['event'], err: unknown): void {
  const handlers = emitter.rawListeners('listenerError') as Listener[];
  if (handlers.length === 0) return warn(dir, event, err);
  for (const h of handlers) guarded(emitter, h, [err, { event }], (e) => warn(dir, 'listenerError', e));
}

/** Tell the store's listeners and the diagnostics channel of `event`. */
export function publish<E extends 'checkpoint' | 'applied'>(emitter: EventEmitter, dir: string, event: E, payload: StoreEventMap[E][0]): void {
  const ch = CHANNELS[event];
  if (ch.hasSubscribers) ch.publish({ dir, ...payload });
  // rawListeners: once() wrappers remove themselves when called, as emit() would.
  for (const l of emitter.rawListeners(event) as Listener[]) {
    guarded(emitter, l, [payload], (e) => reportFailure(emitter, dir, event, e));
  }
}
