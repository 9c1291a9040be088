/**
 * The epoch boundaries: check() commits the epoch being built (positions taken at the call, the
 * COMMIT laid out at its turn in the queue, durable when the flusher's sync resolves, then the
 * hooks), and rollback() drops it (an ABORT, then the disk is the whole truth again). Also what a
 * check or rollback called while an open is still queued does to the entry that open makes.
 */
import { CpError, ioError } from '../errors.js';
import { RecordType, type CatalogEntry } from '../format.js';
import { callHook } from '../hooks.js';
import type { CpFile } from './file.js';
import type { Entry } from './host.js';
import type { StoreParts } from './parts.js';

/**
 * An open called but not run yet. A check() called meanwhile must see the entry as the open leaves
 * it (`checks`: the call-time positions of each such check); a rollback() called meanwhile (with no
 * check between) closes it (`doomed`).
 */
export interface PendingOpen {
  checks: Map<Entry, number>[];
  doomed: Set<Entry> | null;
}

/** A COMMIT (or PREPARE) laid out: its sync task, the epoch it commits, its entry list, and where it ends. */
export interface LaidOut {
  p: Promise<{ ok: boolean }>;
  /** The epoch's records and bytes (for the 'checkpoint' event). */
  records: number;
  bytes: number;
  task: number;
  epoch: number;
  deltas: CatalogEntry[];
  end: number;
}

export class Checkpoint {
  /** The last durable checkpoint (0 for a new store). */
  epoch: number;
  /** Epochs committed since the store was opened. */
  epochsDone = 0;
  /** The last check() called, settled (rollback and close wait for it). */
  lastCheck: Promise<unknown> = Promise.resolve();
  private pendingOpens = new Set<PendingOpen>();
  /** The writer's records and bytes (journaled and direct) when the epoch being built began. */
  private since = { records: 0, bytes: 0 };

  constructor(private parts: StoreParts, epoch: number) {
    this.epoch = epoch;
    this.since = this.written();
  }

  private written(): { records: number; bytes: number } {
    const s = this.parts.writer.stats;
    return { records: s.records, bytes: s.bytes + s.directBytes };
  }

  /** An open was called: what checks and rollbacks called before it runs do to its entry. */
  openCalled(): PendingOpen {
    const po: PendingOpen = { checks: [], doomed: null };
    this.pendingOpens.add(po);
    return po;
  }

  /** The open `po` made `f`: apply the checks and the rollback called since the open was called. */
  openRan(po: PendingOpen, f: CpFile): CpFile {
    const e = f.entry;
    for (const positions of po.checks) positions.set(e, e.position);
    if (po.checks.length > 0) e.checked = { position: e.position, size: e.size };
    if (po.doomed) {
      po.doomed.add(e);
      f.closed = true;
    }
    return f;
  }

  /** The open `po` ran or was refused. */
  openDone(po: PendingOpen): void {
    this.pendingOpens.delete(po);
  }

  /** Commit the epoch being built (the call was admitted already); resolves with its number once durable. */
  check(guard: (() => void) | null = null): Promise<number> {
    const positions = this.callTimePositions();
    const t0 = performance.now();
    const queued = this.parts.queue.run(() => {
      // (A check called while an epoch is prepared: refused at its turn if that epoch was aborted.)
      guard?.();
      return this.layOut(positions);
    });
    const done = queued.then((c) => this.completed(c, t0));
    this.lastCheck = done.catch(() => undefined);
    return done;
  }

  /**
   * Positions move when a call is made (that is what makes unawaited calls line up), so the epoch
   * takes them as they are now, not when its turn in the queue comes; so does a rollback called
   * later. An entry whose open was called but has not run yet gets its position when it does.
   */
  callTimePositions(): Map<Entry, number> {
    const positions = new Map<Entry, number>();
    for (const e of this.parts.catalog.open.values()) {
      positions.set(e, e.position);
      e.checked = { position: e.position, size: e.size };
    }
    for (const po of this.pendingOpens) if (!po.doomed) po.checks.push(positions);
    return positions;
  }

  /**
   * At the check's turn: lay out the direct appends' datasync (FORMAT.md R16, C2), then the COMMIT
   * (C3; R6 for a long entry list), move the catalog to it, and hand the flusher the sync that makes
   * it durable (C4; R4: nothing of the next epoch is written before it).
   */
  layOut(positions: Map<Entry, number>, prepareId?: string): LaidOut {
    const { catalog, pending, writer, queue, schedule } = this.parts;
    const deltas = catalog.deltas(positions, (name) => pending.get(name));
    const epoch = catalog.building;
    try {
      // The apply cursor this thread knows is durable in the control file (FORMAT.md "Control file").
      if (prepareId === undefined) {
        writer.endDirect('commit');
        writer.append({ type: RecordType.COMMIT, entries: deltas, applied: schedule.cursor }, epoch);
      } else {
        // A PREPARE (R18): the catalog moves at its decision (two-phase.ts), not here.
        writer.endDirect('prepare');
        writer.append({ type: RecordType.PREPARE, id: prepareId, entries: deltas, applied: schedule.cursor }, epoch);
      }
    } catch (e) {
      // The epoch's direct appends were handed to their datasync, and part of a COMMIT may be laid
      // out: only recovery can tell what stands now. (Positions and sizes are validated when calls
      // are made, so this is a bug or an I/O failure, never bad input.)
      queue.fail(e instanceof CpError ? e : ioError(e, `laying out the commit of epoch ${epoch}`));
      throw queue.failure!;
    }
    if (prepareId === undefined) catalog.committed(deltas, epoch);
    const end = writer.position;
    const now = this.written();
    const counts = { records: now.records - this.since.records, bytes: now.bytes - this.since.bytes };
    this.since = now;
    return { p: writer.flush([{ op: 'sync' }]), ...counts, task: writer.tasksSent, epoch, deltas, end };
  }

  /** When the COMMIT's sync settles: the epoch is durable (or the store failed), then the hooks hear of it. */
  async completed(c: LaidOut, t0: number, hooksToo = true): Promise<number> {
    const { writer, queue, schedule, hooks, catalog } = this.parts;
    // The flusher runs its tasks in order and this one ends with the sync (FORMAT.md R4, R16 C4).
    const res = await c.p;
    // An earlier batch that failed leaves a hole before this COMMIT: the flusher refuses every task
    // after a failure, and the check does not count on that alone. A task after this one (a
    // background apply) that failed does not undo it: the COMMIT is durable, the store fails later.
    if (!res.ok || writer.failedBy(c.task)) {
      const err = writer.failure ?? new CpError('EIO', 'check failed');
      queue.fail(err);
      await callHook(hooks, 'rollback').catch(() => undefined);
      throw new CpError(err.code, `check of epoch ${c.epoch} failed: ${err.message}; the store stays at epoch ${this.epoch}`, { cause: err });
    }
    if (c.epoch > this.epoch) this.epoch = c.epoch;
    schedule.committed(c.end, c.epoch);
    this.epochsDone++;
    schedule.schedule();
    this.parts.checkpointed?.({ epoch: c.epoch, records: c.records, bytes: c.bytes, ms: performance.now() - t0 });
    if (hooks && hooksToo) {
      try {
        for (const d of c.deltas) await callHook(hooks, 'update', d.name, d.position, catalog.userdata.get(d.name), d.state);
        await callHook(hooks, 'commit');
      } catch (e) {
        // The epoch is durable whatever the hooks say (the journal is the source of truth): say so,
        // so that the caller does not take the check for failed. Recovery passes every entry to
        // the hooks again.
        const err = e as CpError;
        throw new CpError('EHOOK', `epoch ${c.epoch} is durable, but ${err.message}`, { cause: err.cause ?? err, details: { epoch: c.epoch, durable: true } });
      }
    }
    return c.epoch;
  }

  /**
   * Discard every change since the last check (the call was admitted already). In call order, at
   * once: positions and sizes go back to those of the last check() called, and handles opened since
   * it are closed.
   */
  rollback(): Promise<void> {
    const doomed = new Set<Entry>();
    for (const e of this.parts.catalog.open.values()) {
      if (e.checked) {
        e.position = e.checked.position;
        e.size = e.checked.size;
      } else {
        doomed.add(e);
        for (const h of e.handles) h.closed = true;
      }
    }
    for (const po of this.pendingOpens) if (!po.doomed && po.checks.length === 0) po.doomed = doomed;
    // The checks called before this rollback (not one called after it: that one waits for this).
    const priorCheck = this.lastCheck;
    return this.parts.queue.run(async () => {
      this.appendAbort();
      await priorCheck;
      this.parts.queue.assertUsable();
      await this.resetToDisk(doomed);
      await callHook(this.parts.hooks, 'rollback');
    });
  }

  /** Drop the epoch being built: an ABORT record, and its direct appends cut back (FORMAT.md "Direct appends"). */
  appendAbort(): void {
    this.parts.writer.append({ type: RecordType.ABORT }, this.parts.catalog.building);
    this.parts.writer.endDirect('abort');
    this.since = this.written();
  }

  /**
   * After an ABORT: apply all that is committed, then let the disk be the whole truth again. The
   * positions were reset when rollback() was called; the entries in `doomed` (opened since the last
   * check) are dropped.
   */
  private async resetToDisk(doomed: Set<Entry>): Promise<void> {
    const { writer, queue, schedule, pending, catalog } = this.parts;
    const flushed = await writer.flush();
    if (!flushed.ok) throw queue.fail(writer.failure ?? new CpError('EIO', 'flush failed'));
    await this.parts.applyNow(true);
    queue.assertUsable();
    if (schedule.durableEnd > schedule.appliedPos) throw new CpError('EIO', 'committed epochs could not be applied');
    pending.clear();
    catalog.closedSince.clear();
    for (const [name, e] of [...catalog.open]) {
      const ov = doomed.has(e) || !catalog.logged.has(name) ? null : await pending.overlayOf(name);
      if (!ov) {
        for (const h of e.handles) h.closed = true;
        catalog.open.delete(name);
        continue;
      }
      e.overlay = ov;
    }
    catalog.resetUnfinished();
  }
}
