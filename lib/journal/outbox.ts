/**
 * The actions laid out on the main thread and not yet handed to the flusher, with the buffers their
 * task hands over without a copy: an ArrayBuffer is transferred; a SharedArrayBuffer (a full-size
 * batch buffer, batch-buffers.ts) is shared, and this thread takes it back when the task ends. The
 * journal writer's batches and direct appends queue here; flush() takes everything as one task, in
 * order (FORMAT.md R4: tasks run in the order sent).
 */
import { type Action } from '../flusher/protocol.js';

export class Outbox {
  private actions: Action[] = [];
  private transfer: ArrayBuffer[] = [];
  private shared: SharedArrayBuffer[] = [];
  /** Bytes of the queued write and direct actions. */
  bytes = 0;

  get length(): number {
    return this.actions.length;
  }

  /** Queue an action that carries no bytes (a segment, a fence, a barrier). */
  push(a: Action): void {
    this.actions.push(a);
  }

  /** Queue a write or direct action; `buffer` (whose memory its bytes are) goes with the task. */
  pushBytes(a: Action & { bytes: Uint8Array }, buffer: ArrayBufferLike, n: number): void {
    this.actions.push(a);
    if (buffer instanceof SharedArrayBuffer) {
      if (!this.shared.includes(buffer)) this.shared.push(buffer);
    } else {
      this.transfer.push(buffer as ArrayBuffer);
    }
    this.bytes += n;
  }

  /** Everything queued, followed by `extra`, as the actions and transfer list of one task; the outbox is empty after. */
  take(extra: Action[]): { actions: Action[]; transfer: ArrayBuffer[]; shared: SharedArrayBuffer[]; bytes: number } {
    const actions = [...this.actions, ...extra];
    let bytes = 0;
    for (const a of this.actions) if (a.op === 'write' || a.op === 'direct') bytes += a.bytes.length;
    const { transfer, shared } = this;
    this.actions = [];
    this.transfer = [];
    this.shared = [];
    this.bytes = 0;
    return { actions, transfer, shared, bytes };
  }
}
