/**
 * When committed epochs are applied to the files: in the background after a commit (at once when the
 * lag is large, after an idle delay otherwise), and on demand (rollback, close). Holds the apply
 * cursor this thread knows to be durable, which every COMMIT records (FORMAT.md "Control file").
 */
import { CpError } from '../errors.js';
import { pos, posSeq, posOffset } from '../format.js';
import type { JournalWriter } from '../journal/writer.js';
import type { CallQueue } from './queue.js';
import type { PendingFiles } from './pending.js';

export interface ScheduleDeps {
  writer: JournalWriter;
  queue: CallQueue;
  pending: PendingFiles;
  applyThreshold: number;
  applyDelay: number;
  /** StoreOptions.applySlice: journal bytes per slice of a background apply. */
  applySlice: number;
  /** The most journal a write waits to see applied before it appends directly (ApplySchedule.mayWait). */
  waitBytes: number;
  /** The control file's cursor and applied epoch at open. */
  cursorPos: number;
  appliedEpoch: number;
  /**
   * How an apply is started: Store.applyNow, which runs ApplySchedule.applyNow. Every apply goes
   * through it (tests replace it on a store to keep committed epochs in the journal).
   */
  applyNow: (inQueue: boolean) => Promise<void>;
  /** Tell the store's listeners that epochs were applied (lib/store/events.ts; guarded, synchronous). */
  applied?: (e: { epoch: number; bytes: number }) => void;
}

export class ApplySchedule {
  /** The apply cursor (the position of the next record to apply), its segment, and the last epoch applied. */
  appliedPos: number;
  appliedEpoch: number;
  /** The end of the last COMMIT known durable, and its epoch. */
  durableEnd: number;
  durableEpoch: number;
  private applying: Promise<void> | null = null;
  /** The idle-delay timer of a background apply. */
  timer: NodeJS.Timeout | null = null;
  /** The durable end applySoon last started an apply for, and the one a write last waited for. */
  private soonFor = -1;
  private waitedFor = -1;

  /** The segment of the apply cursor (derived: appliedPos is the one fact). */
  get appliedSeq(): number {
    return posSeq(this.appliedPos);
  }

  constructor(private deps: ScheduleDeps) {
    this.appliedEpoch = deps.appliedEpoch;
    this.appliedPos = deps.cursorPos;
    this.durableEnd = deps.cursorPos;
    this.durableEpoch = deps.appliedEpoch;
  }

  /**
   * The apply cursor this thread knows is durable in the control file, for a COMMIT's trailer:
   * recovery never replays from before it, even when the control file's newest slot is lost (direct
   * appends made since are in no record, and a truncate replayed after them would destroy them).
   */
  get cursor(): { cursorSeq: number; cursorOffset: number; appliedEpoch: number } {
    return { cursorSeq: this.appliedSeq, cursorOffset: posOffset(this.appliedPos), appliedEpoch: this.appliedEpoch };
  }

  /** Journal bytes committed but not applied yet. */
  get lagBytes(): number {
    return Math.max(0, this.durableEnd - this.appliedPos);
  }

  /** A COMMIT ending at `end` is durable: schedule its apply. */
  committed(end: number, epoch: number): void {
    if (end > this.durableEnd) this.durableEnd = end;
    if (epoch > this.durableEpoch) this.durableEpoch = epoch;
  }

  /** Start an apply now or after the idle delay, if there is anything to apply. */
  schedule(): void {
    const { queue, writer } = this.deps;
    if (queue.failure || writer.failure || queue.closed) return; // only reopening is safe now
    const lag = this.durableEnd - this.appliedPos;
    if (lag <= 0) return;
    const bigLag = posSeq(this.durableEnd) !== posSeq(this.appliedPos) || lag >= this.deps.applyThreshold;
    if (bigLag) {
      void this.deps.applyNow(false).catch(() => undefined);
      return;
    }
    // an idle delay: each commit pushes the apply back, so that it does not take the flusher from
    // commits that follow one another (the lag stays bounded: applyThreshold, or a segment change,
    // applies at once)
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!queue.closed && !queue.failure) void this.deps.applyNow(false).catch(() => undefined);
    }, this.deps.applyDelay);
    this.timer.unref();
  }

  /**
   * Whether an apply may start before the schedule's own time, for a bulk append (applySoon,
   * mayWait): not in a store that holds its epochs, with an applyThreshold above waitBytes (the
   * benchmark's recovery writer, tests that keep epochs unapplied).
   */
  private get early(): boolean {
    return this.deps.applyThreshold <= this.deps.waitBytes;
  }

  /**
   * Start the apply of the durable epochs now instead of after the idle delay (a bulk append waits
   * for it: WritePath.directStart). Nothing when an apply runs (its settle is what the append waits
   * for) or nothing durable is unapplied: at most one apply per commit comes of it.
   */
  applySoon(): void {
    // Once per durable end: an apply that stops short (at an in-doubt PREPARE, R18) is not retried
    // on every write.
    if (!this.early || this.applying || this.durableEnd <= this.appliedPos || this.soonFor === this.durableEnd) return;
    const { queue, writer } = this.deps;
    if (queue.failure || writer.failure || queue.closed) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.soonFor = this.durableEnd;
    void this.deps.applyNow(false).catch(() => undefined);
  }

  /**
   * Whether a write may wait for the apply of the durable epochs (WritePath.waitsForApply): something
   * is unapplied, at most `waitBytes` of journal, and no write waited for this durable end already
   * (an apply that stops short, at an in-doubt PREPARE, is not waited for by every write).
   */
  mayWait(): boolean {
    const lag = this.durableEnd - this.appliedPos;
    return this.early && lag > 0 && lag <= this.deps.waitBytes && this.waitedFor !== this.durableEnd && !this.deps.queue.failure && !this.deps.writer.failure;
  }

  /**
   * Apply the durable epochs now, for a write inside the call queue that waits for it (Store.writeEntry),
   * and settle the overlays before it goes on: a background apply it waited for settles them only in
   * a later call.
   */
  async applyForWrite(): Promise<void> {
    this.waitedFor = this.durableEnd;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    await this.deps.applyNow(true);
    this.settleAll();
  }

  /**
   * Apply every durable epoch to the files now; resolves when done. The overlays are settled inside
   * the call queue, never in the middle of another call: `inQueue` says the caller already is in it.
   */
  async applyNow(inQueue: boolean): Promise<void> {
    while (this.applying) await this.applying;
    const end = this.durableEnd;
    if (end <= this.appliedPos) return;
    const { writer, queue } = this.deps;
    // In the background, in slices: the flusher runs one task at a time, and a commit sent while
    // it applies waits for the slice, not for the whole lag (an 8 MiB apply held one commit for
    // 50-150 ms). On demand (close, rollback) nothing else can be waiting: all at once.
    const sliceBytes = inQueue ? undefined : this.deps.applySlice;
    this.applying = (async () => {
      for (;;) {
        const res = await writer.flush([{ op: 'apply', endPos: end, sliceBytes }]);
        if (!res.ok) {
          queue.fail(writer.failure ?? new CpError('EIO', 'apply failed'));
          return;
        }
        if (!res.applied) return;
        this.appliedPos = pos(res.applied.cursorSeq, res.applied.cursorOffset);
        this.appliedEpoch = res.applied.appliedEpoch;
        if (inQueue) this.settleAll();
        else void queue.run(() => this.settleAll()).catch(() => undefined);
        if (res.applied.epochs > 0) this.deps.applied?.({ epoch: this.appliedEpoch, bytes: res.applied.bytes });
        if (res.applied.epochs === 0 || this.appliedPos >= end) return;
        if (queue.closed || queue.failure || writer.failure) return;
      }
    })();
    try {
      await this.applying;
    } finally {
      this.applying = null;
    }
  }

  /** Drop what the applier made durable from every overlay; free journal segments nothing points into (FORMAT.md R12, A5). */
  private settleAll(): void {
    const pinned = this.deps.pending.settle(this.appliedPos);
    this.deps.writer.applied(this.appliedSeq, pinned);
  }

  stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
