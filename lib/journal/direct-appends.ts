/**
 * Direct appends on the main thread (docs/FORMAT.md, "Direct appends"): bytes appended past a file's
 * committed size go to the data file instead of the journal. They are batched in a buffer of their
 * own and queued, in order with the records, as 'direct' actions after the file's 'fence' (its
 * committed size); the epoch's COMMIT is preceded by 'datasync', a rollback followed by 'undoDirect'.
 *
 * Which files are fenced in the epoch being built is decided here, on the main thread: this is the
 * source of truth. The flusher keeps its own copy of the fences with their sizes (FlusherCore.fences)
 * because it is the one that cuts the files back; it learns them only from the 'fence' actions queued
 * here, in order, so the two never disagree.
 */
import { STAGE_BELOW, type BatchBuffers } from './batch-buffers.js';
import { type Outbox } from './outbox.js';

/** What direct appends need of the writer they belong to. */
export interface DirectHost {
  /** Whether a flusher task failed (then nothing more is queued). */
  failed(): boolean;
  /** Hand queued actions to the flusher soon. */
  schedule(): void;
  /** Close the batch of records, so that what follows is queued after it. */
  closeRecords(): void;
  stats: { directBytes: number };
}

export class DirectAppends {
  /** Files with direct appends in the epoch being built. */
  private fenced = new Set<string>();
  /** The direct-append buffer being filled: bytes for [offset, offset+used) of `name`. */
  private direct: { name: string; offset: number; buf: Buffer; used: number } | null = null;
  /**
   * Counts appends; the flusher has written those up to TaskTracker.directDone. A store overlay
   * keeps the mark of its file's last append (Overlay.directMark) to wait for it before reading.
   */
  mark = 0;

  constructor(private batchBytes: number, private buffers: BatchBuffers, private outbox: Outbox, private host: DirectHost) {}

  /** Queue `data` for `offset` of `name`, whose committed size is `fence` (see JournalWriter.appendDirect). */
  append(name: string, fence: number, offset: number, data: Uint8Array): void {
    if (!this.fenced.has(name)) {
      // The flusher remembers the committed size, to cut the file back on rollback.
      this.close();
      this.outbox.push({ op: 'fence', name, size: fence });
      this.fenced.add(name);
    }
    if (this.continue(name, offset, data)) return;
    this.close();
    if (data.length >= this.batchBytes) {
      // Bigger than a buffer: a copy of its own.
      const own = Buffer.from(new ArrayBuffer(data.length));
      own.set(data);
      this.queue(name, offset, own);
      this.mark++;
      this.host.stats.directBytes += data.length;
      this.host.schedule();
      return;
    }
    // Its bytes are all overwritten before they are sent: a stage need not be zeroed.
    this.direct = { name, offset, buf: data.length < STAGE_BELOW ? this.buffers.takeStage(false) : this.buffers.takeFull(), used: 0 };
    this.continue(name, offset, data);
  }

  /** Fast path of append() for a write continuing the direct buffer; false when it does not. */
  continue(name: string, offset: number, data: Uint8Array): boolean {
    const d = this.direct;
    if (!d || d.name !== name || d.offset + d.used !== offset || d.used + data.length > d.buf.length || this.host.failed()) return false;
    d.buf.set(data, d.used);
    d.used += data.length;
    this.mark++;
    this.host.stats.directBytes += data.length;
    if (d.used === d.buf.length) this.close();
    this.host.schedule();
    return true;
  }

  /** Queue the direct buffer being filled, if any. */
  close(): void {
    const d = this.direct;
    if (!d) return;
    this.direct = null;
    if (d.used === 0) {
      this.buffers.giveBack(d.buf);
      return;
    }
    this.queue(d.name, d.offset, this.buffers.isStage(d.buf) ? this.buffers.sendStage(d.buf, d.used) : d.buf.subarray(0, d.used));
  }

  /**
   * End the epoch's direct appends: 'datasync' before its COMMIT is laid out (its direct bytes are
   * durable before the COMMIT is), 'undoDirect' after its ABORT (the files are cut back to their
   * fences, durably, before anything later is journaled).
   */
  end(op: 'datasync' | 'undoDirect', keep = false): void {
    if (this.fenced.size === 0) return;
    this.close();
    this.host.closeRecords();
    // `keep`: before a PREPARE, whose abort cuts the files back to the same fences (R18).
    this.outbox.push(keep ? { op, keep } : { op });
    if (!keep) this.fenced.clear();
  }

  private queue(name: string, offset: number, bytes: Buffer): void {
    this.outbox.pushBytes({ op: 'direct', name, offset, bytes }, bytes.buffer, bytes.length);
  }
}
