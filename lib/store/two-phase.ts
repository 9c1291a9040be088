/**
 * Two-phase epochs (FORMAT.md R18): prepare() makes the epoch's records and a PREPARE durable and
 * leaves the decision to the caller (a coordinator whose database holds it); commit() and abort()
 * record it. The PREPARE's task holds the store's call queue until the decision: calls made
 * meanwhile are accepted and run after it, in call order (they belong to the next epoch). A check()
 * or prepare() called meanwhile takes its positions at the call, like any other; since what it
 * would commit was built on the prepared epoch, it rejects at its turn when that epoch was aborted.
 * So the log never holds anything between a PREPARE and its decision, and recovery of a crash in
 * between has one question to ask: commit or abort?
 */
import { randomBytes } from 'node:crypto';
import { CpError, ioError } from '../errors.js';
import { RecordType, validPrepareId, MAX_PREPARE_ID_BYTES, type CatalogEntry } from '../format.js';
import type { Checkpoint, LaidOut } from './checkpoint.js';
import type { Entry } from './host.js';
import type { StoreParts } from './parts.js';
import type { StoreHold } from './hold.js';

/** The epoch a prepare() made durable, waiting for its decision. */
export interface PreparedEpoch {
  /** The epoch's number: what check() would have resolved with. */
  readonly epoch: number;
  /** Unique across stores and time (given to prepare(), or 32 random hex digits). */
  readonly id: string;
  /** The store's id (Store.id). */
  readonly storeId: string;
  /** The entries whose position, size or state the epoch changes (the COMMIT entries it would carry). */
  readonly entries: readonly CatalogEntry[];
  /** 'commit' or 'abort' once decided; null until then. */
  readonly decision: 'commit' | 'abort' | null;
  /**
   * Commit the epoch; resolves with its number. `sync: false` resolves once the decision record is
   * written, before it is fsynced: only safe when the decision is durable elsewhere (a coordinator's
   * database), since a crash before the next sync leaves the epoch in doubt. `hooks: false` skips the
   * checkpoint-store hooks for this epoch (the caller wrote them, in its own transaction).
   */
  commit(opts?: { sync?: boolean; hooks?: boolean }): Promise<number>;
  /** Discard the epoch and, like rollback(), every call made since the last check() or prepare(). */
  abort(): Promise<void>;
}

type Decision = { kind: 'commit'; sync: boolean } | { kind: 'abort' };

/** A prepare() laid out and durable: its decision, to be made once. */
class Prepared implements PreparedEpoch {
  decision: 'commit' | 'abort' | null = null;
  private decide!: (d: Decision) => void;
  readonly decided = new Promise<Decision>((resolve) => { this.decide = resolve; });
  private layOutDone!: (c: LaidOut | null) => void;
  private layOutFailed!: (e: unknown) => void;
  /** What the decision laid out (a commit's flush; null for an abort), once its turn came. */
  readonly laidOut = new Promise<LaidOut | null>((resolve, reject) => { this.layOutDone = resolve; this.layOutFailed = reject; });
  private outcome: Promise<unknown> | null = null;

  constructor(
    private owner: TwoPhase, private pend: Pending, readonly epoch: number, readonly id: string, readonly storeId: string, readonly entries: readonly CatalogEntry[],
    /** Every open entry's checked state before the prepare() call (abort restores it). */
    readonly before: Map<Entry, Entry['checked']>,
  ) {
    this.laidOut.catch(() => undefined);
  }

  /** The decision's turn came: settle laidOut with what `layOut` lays out. */
  settle(layOut: () => LaidOut | null): void {
    try {
      this.layOutDone(layOut());
    } catch (e) {
      this.layOutFailed(e);
    }
  }

  commit(opts: { sync?: boolean; hooks?: boolean } = {}): Promise<number> {
    if (opts === null || typeof opts !== 'object') return Promise.reject(new CpError('EINVAL', 'commit options must be an object'));
    const refused = this.decision === null ? this.owner.refusal(`commit() of prepared epoch ${this.epoch}`) : null;
    if (refused) return Promise.reject(refused);
    if (this.decision === 'abort') return Promise.reject(new CpError('EPREPARED', `epoch ${this.epoch} (prepared as ${this.id}) was aborted; it cannot be committed`));
    if (this.decision === 'commit') return this.outcome as Promise<number>;
    this.decision = 'commit';
    this.owner.decided(this.pend, 'commit');
    this.decide({ kind: 'commit', sync: opts.sync !== false });
    this.outcome = this.owner.committed(this, opts.hooks !== false);
    return this.outcome as Promise<number>;
  }

  abort(): Promise<void> {
    const refused = this.decision === null ? this.owner.refusal(`abort() of prepared epoch ${this.epoch}`) : null;
    if (refused) return Promise.reject(refused);
    if (this.decision === 'commit') return Promise.reject(new CpError('EPREPARED', `epoch ${this.epoch} (prepared as ${this.id}) was committed; it cannot be aborted`));
    if (this.decision === 'abort') return this.outcome as Promise<void>;
    this.decision = 'abort';
    this.owner.decided(this.pend, 'abort');
    this.outcome = this.owner.aborted(this, () => this.decide({ kind: 'abort' }));
    return this.outcome as Promise<void>;
  }
}

/** A prepare() called: its decision, once made (or 'abort' when it never prepared), and its epoch once it did. */
interface Pending {
  decision: 'commit' | 'abort' | null;
  made: Promise<Prepared>;
  epoch: number | null;
  /** The prepared epoch, once its PREPARE is durable. */
  prepared: Prepared | null;
}

export class TwoPhase {
  /** The prepare() calls not decided yet, in call order. */
  private open = new Set<Pending>();
  /** The last prepare() called: what calls made after it build on. */
  private last: Pending | null = null;

  constructor(private parts: StoreParts, private cp: Checkpoint, private storeId: string, private hold: StoreHold) {}

  /** EBUSY for a decision made while a holder (a coordinated step) other than the caller holds the store. */
  refusal(call: string): CpError | null {
    return this.hold.refusal(call, true);
  }

  /** A prepare() was called and its epoch is not decided yet. */
  get busy(): boolean {
    return this.open.size > 0;
  }

  /** The first epoch prepared (durably) and not decided yet, if any. */
  get prepared(): PreparedEpoch | null {
    for (const pend of this.open) if (pend.prepared) return pend.prepared;
    return null;
  }

  /**
   * For a check() or prepare() called now: they take their positions at the call and run in call
   * order, after the decision of an epoch prepared before them. If that epoch is aborted, what they
   * would commit was built on it: at their turn they reject (the guard throws) and commit nothing.
   */
  guard(what: string): (() => void) | null {
    const base = this.last;
    if (!base || base.decision !== null) return null;
    return () => {
      if (base.decision !== 'abort') return;
      throw new CpError('EPREPARED', `${what} was called while epoch ${base.epoch ?? '?'} was prepared, and that epoch was aborted: the changes it would commit were built on it and are discarded`);
    };
  }

  /** close({ discard: true }) while prepared: abort every undecided prepared epoch, in order. */
  async abortCurrent(): Promise<void> {
    for (const pend of [...this.open]) {
      const p = await pend.made.catch(() => null);
      if (p && p.decision === null) await p.abort();
    }
  }

  /** The decision of `pend` is made (or it will never prepare): it no longer holds anything open. */
  decided(pend: Pending, decision: 'commit' | 'abort'): void {
    pend.decision = decision;
    this.open.delete(pend);
  }

  /**
   * Prepare the epoch being built (the call was admitted already). Like check(), it takes the
   * positions at the call; while an earlier epoch is prepared it runs after that one's decision.
   */
  prepare(opts: { id?: string } = {}): Promise<PreparedEpoch> {
    if (opts === null || typeof opts !== 'object') throw new CpError('EINVAL', 'prepare options must be an object');
    const id = opts.id ?? randomBytes(16).toString('hex');
    if (typeof id !== 'string' || !validPrepareId(id)) {
      throw new CpError('EINVAL', `prepare id must be 1 to ${MAX_PREPARE_ID_BYTES} bytes of UTF-8 without control characters, got ${JSON.stringify(String(id)).slice(0, 80)}`);
    }
    this.parts.queue.assertUsable();
    const guard = this.guard('prepare()');
    const before = new Map<Entry, Entry['checked']>();
    for (const e of this.parts.catalog.open.values()) before.set(e, e.checked ? { ...e.checked } : null);
    const positions = this.cp.callTimePositions();
    let ready!: (p: Prepared) => void;
    let fail!: (e: unknown) => void;
    const pend: Pending = { decision: null, epoch: null, prepared: null, made: new Promise<Prepared>((res, rej) => { ready = res; fail = rej; }) };
    this.open.add(pend);
    this.last = pend;
    pend.made.catch(() => this.decided(pend, 'abort'));
    // Failures reach the caller through `made`; the queue records them itself.
    this.parts.queue.run(() => {
      guard?.();
      return this.run(pend, id, positions, before, ready);
    }).catch(fail);
    return pend.made;
  }

  /** The PREPARE's turn in the queue: lay it out, sync it, and hold the queue until the decision. */
  private async run(pend: Pending, id: string, positions: Map<Entry, number>, before: Prepared['before'], ready: (p: Prepared) => void): Promise<void> {
    const { writer, queue } = this.parts;
    const c = this.cp.layOut(positions, id);
    const res = await c.p;
    if (!res.ok || writer.failedBy(c.task)) {
      const err = writer.failure ?? new CpError('EIO', 'prepare failed');
      queue.fail(err);
      throw new CpError(err.code, `prepare of epoch ${c.epoch} failed: ${err.message}; the store stays at epoch ${this.cp.epoch}`, { cause: err });
    }
    pend.epoch = c.epoch;
    const p = new Prepared(this, pend, c.epoch, id, this.storeId, c.deltas, before);
    pend.prepared = p;
    ready(p);
    const d = await p.decided;
    p.settle(() => this.layOutDecision(d, c, id));
    await p.laidOut;
  }

  /** At the decision's turn: the COMMIT_PREPARED (and the catalog moves to the epoch), or the ABORT. */
  private layOutDecision(d: Decision, c: LaidOut, id: string): LaidOut | null {
    const { catalog, writer, queue } = this.parts;
    try {
      if (d.kind === 'abort') {
        writer.append({ type: RecordType.ABORT }, c.epoch);
        writer.endDirect('abort');
        return null;
      }
      // The direct appends were made durable before the PREPARE; their fences go now.
      writer.endDirect('commit');
      writer.append({ type: RecordType.COMMIT_PREPARED, id }, c.epoch);
    } catch (e) {
      queue.fail(e instanceof CpError ? e : ioError(e, `laying out the decision of epoch ${c.epoch}`));
      throw queue.failure!;
    }
    catalog.committed(c.deltas, c.epoch);
    const end = writer.position;
    // The decision is synced before anything of the next epoch is written (R4, R18): with
    // `sync: false` the commit resolves once it is written, and its sync is a task of its own.
    const written = writer.flush();
    const wrote = writer.tasksSent;
    const synced = writer.flush([{ op: 'sync' }]);
    return d.sync ? { ...c, end, p: synced, task: writer.tasksSent } : { ...c, end, p: written, task: wrote };
  }

  /** After commit(): the decision's flush settles, then the epoch counts as a check's would. */
  async committed(p: Prepared, hooks: boolean): Promise<number> {
    const c = await p.laidOut;
    if (!c) throw new CpError('EIO', `the decision of epoch ${p.epoch} could not be laid out`);
    return this.cp.completed(c, performance.now(), hooks);
  }

  /**
   * After abort(): the positions return to those before the prepare() call, the decision (an ABORT)
   * is laid out, and a rollback drops whatever was called since and lets the disk be the truth again.
   */
  async aborted(p: Prepared, decide: () => void): Promise<void> {
    for (const e of this.parts.catalog.open.values()) e.checked = p.before.get(e) ?? null;
    decide();
    return this.cp.rollback();
  }
}
