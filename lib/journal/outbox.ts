/**
 * The actions laid out on the main thread and not yet handed to the flusher, with the buffers their
 * task transfers (not copies) to the worker. The journal writer's batches and direct appends queue
 * here; flush() takes everything as one task, in order (FORMAT.md R4: tasks run in the order sent).
 */
import { type Action } from '../flusher/protocol.js';

export class Outbox {
  private actions: Action[] = [];
  private transfer: ArrayBuffer[] = [];
  /** Bytes of the queued write and direct actions. */
  bytes = 0;

  get length(): number {
    return this.actions.length;
  }

  /** Queue an action that carries no bytes (a segment, a fence, a barrier). */
  push(a: Action): void {
    this.actions.push(a);
  }

  /** Queue a write or direct action; `buffer` (whose memory its bytes are) is transferred with the task. */
  pushBytes(a: Action & { bytes: Uint8Array }, buffer: ArrayBuffer, n: number): void {
    this.actions.push(a);
    this.transfer.push(buffer);
    this.bytes += n;
  }

  /** Everything queued, followed by `extra`, as the actions and transfer list of one task; the outbox is empty after. */
  take(extra: Action[]): { actions: Action[]; transfer: ArrayBuffer[]; bytes: number } {
    const actions = [...this.actions, ...extra];
    let bytes = 0;
    for (const a of this.actions) if (a.op === 'write' || a.op === 'direct') bytes += a.bytes.length;
    const transfer = this.transfer;
    this.actions = [];
    this.transfer = [];
    this.bytes = 0;
    return { actions, transfer, bytes };
  }
}
