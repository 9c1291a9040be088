/**
 * The hold of a store by a transaction (store.transaction) or a coordinated step (cpfile/postgres).
 * While a holder runs, the store's epoch is the holder's: only the holder's own code ends it.
 *
 *   - check(), prepare(), rollback() and the decision of a prepared epoch, called by anyone else
 *     (the holder's fn included), are refused with EBUSY: they would commit or discard part of
 *     the holder's epoch behind its back (a file committed while the step's rows roll back);
 *   - close() waits for the holder to finish, then closes as usual; close({ discard: true })
 *     discards at once (the holder then fails with ECLOSED, nothing of it committed) unless the
 *     holder has prepared the epoch, whose decision is the holder's: then it waits too;
 *   - holders of one store run one after another, in the order they asked; asking for a hold that
 *     the caller's own async context has (a step inside the fn of a transaction on the same store)
 *     is EINVAL, since it would wait for itself.
 *
 * Which code runs inside a holder's fn is known from the async context (asUser runs fn in it; the
 * holder's own code, and the listeners its calls notify, are not in it); the holder's own calls are
 * admitted only while they run synchronously (withHolds' asHolder), never by async context.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CpError } from '../errors.js';

/** One holder's tenure of a hold (a context that outlives it, a timer fn left, holds nothing). */
interface Tenure {
  what: string;
  /** the holder holds its stores now (from its take to its release) */
  live?: boolean;
}

interface HoldContext {
  tenures: ReadonlySet<Tenure>;
}

// One context for every copy of this module (the ES and the CommonJS builds, loaded side by side
// when an app requires cpfile and imports cpfile/postgres): a store of one build, held by the other.
const CONTEXT_KEY = Symbol.for('cpfile.holdContext');
const context: AsyncLocalStorage<HoldContext> = ((globalThis as Record<symbol, unknown>)[CONTEXT_KEY] ??= new AsyncLocalStorage<HoldContext>()) as AsyncLocalStorage<HoldContext>;

/**
 * Run `call` (a check, rollback, prepare or decision of the held stores) as their holder. The right
 * lasts only while `call` runs synchronously (the calls are admitted or refused at call time), so
 * nothing that merely descends from the holder's async context (a listener, a hook, a timer or a
 * promise callback made there, a pool's event) has it.
 */
export type AsHolder = <R>(call: () => R) => R;

/** Run the app's `fn` inside the holder (what it calls knows it is inside: assertNotInside, insideHolder). */
export type AsUser = <R>(fn: () => R) => R;

export class StoreHold {
  private tenure: Tenure | null = null;
  private idleWaiters: (() => void)[] = [];
  /**
   * An epoch prepared by a holder that ended with it undecided (a coordinated step in doubt): its
   * decision is still that holder's, so no one else may decide it or close the store meanwhile.
   */
  private reservedFor: string | null = null;
  /** the close() calls waiting for the holder (closeLater) */
  private closeWait: { discard: boolean; done: Promise<void>; settle: (p: Promise<void>) => void } | null = null;
  /** @internal the tenure whose holder's call runs now (withHolds' asHolder) */
  admitted: Tenure | null = null;
  private shut = false;
  /** orClosed's waits, ended by closedNow */
  private onShut = new Set<() => void>();

  constructor(private dir: string) {}

  /** What holds the store now ('a transaction', 'a coordinated step'), or null. */
  get by(): string | null {
    return this.tenure?.what ?? null;
  }

  /** The hold is the caller's: the holder's own call (asHolder) runs now. */
  get mine(): boolean {
    return this.tenure !== null && this.admitted === this.tenure;
  }

  /** The caller runs inside the holder's fn (asUser's async context). */
  get inside(): boolean {
    return this.tenure !== null && !!context.getStore()?.tenures.has(this.tenure);
  }

  /** Keep the undecided epoch a holder prepared for that holder (`what` names it), or give it back (null). */
  reserve(what: string | null): void {
    this.reservedFor = what;
  }

  /**
   * EBUSY for `call` made now, unless the store is free or the caller is the holder; for the
   * `decision` of a prepared epoch, also EINDOUBT while it is reserved for a holder.
   */
  refusal(call: string, decision = false): CpError | null {
    if (decision && this.reservedFor !== null && !this.mine) return this.reservedError(call);
    if (this.tenure === null || this.mine) return null;
    const where = this.inside ? ' (called inside its function: it ends the epoch itself when the function resolves)' : '';
    const by = this.tenure.what;
    return new CpError('EBUSY', `${this.dir}: ${call} was called while ${by} runs on this store${where}; the epoch is that of ${by} until it ends`);
  }

  /**
   * For close(): null to close now; else, while a holder other than the caller holds the store, the
   * close waits for it, unless it discards an epoch the holder has not prepared (that close goes
   * ahead, closedNow, and the waiting ones end with it). Closes that wait share one wait, which
   * discards if any of them asked to; then `again` closes. Inside the holder's fn it is EBUSY, since
   * it would wait for itself.
   */
  closeLater(discard: boolean, prepared: boolean, again: (discard: boolean) => Promise<void>): Promise<void> | null {
    if (this.reservedFor !== null && !this.mine) return Promise.reject(this.reservedError('close()'));
    if (this.tenure === null || this.mine || (discard && !prepared)) return null;
    if (this.inside) {
      return Promise.reject(new CpError('EBUSY', `${this.dir}: close() was called inside the function of ${this.tenure.what}, which it would wait for: close the store after that resolves`));
    }
    if (this.closeWait) {
      this.closeWait.discard ||= discard;
      return this.closeWait.done;
    }
    let settle!: (p: Promise<void>) => void;
    const w = { discard, done: new Promise<void>((resolve) => { settle = resolve as (p: Promise<void>) => void; }), settle: (p: Promise<void>) => settle(p) };
    this.closeWait = w;
    void this.idle().then(() => {
      if (this.closeWait !== w) return;
      this.closeWait = null;
      w.settle(again(w.discard));
    });
    return w.done;
  }

  /**
   * Why `what` (a transaction, a coordinated step) cannot start on the store while an epoch of it is
   * prepared and undecided: its calls would wait for that decision, which only its holder (one that
   * left it in doubt: EINDOUBT) or the app that prepared it (EPREPARED) may make, and nobody may make
   * while `what` holds the store.
   */
  undecided(what: string): CpError {
    if (this.reservedFor !== null) return this.reservedError(what);
    return new CpError('EPREPARED', `${this.dir}: an epoch of this store is prepared (or being prepared) and undecided: commit or abort it before ${what} on the store`);
  }

  private reservedError(call: string): CpError {
    return new CpError('EINDOUBT', `${this.dir}: ${call} was called while the store's prepared epoch waits for the decision of ${this.reservedFor}, ` +
      'which only it may carry out (retryInDoubt(), a next step on the store, or the next open with resolveInDoubt)');
  }

  /**
   * A close went ahead: the closes that waited for the holder end as it does, and whoever waits to
   * hold the store (a transaction queued, a step) stops waiting (ECLOSED), even if the holder never ends.
   */
  closedNow(closing: Promise<void>): void {
    this.shut = true;
    for (const done of [...this.onShut]) done();
    for (const w of this.idleWaiters.splice(0)) w();
    const w = this.closeWait;
    if (!w) return;
    this.closeWait = null;
    w.settle(closing);
  }

  /** Resolves once `p` settles, or once the store's close went ahead (closedNow), whichever comes first. */
  orClosed(p: Promise<unknown>): Promise<void> {
    if (this.shut) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => { this.onShut.delete(done); resolve(); };
      this.onShut.add(done);
      p.then(done, done);
    });
  }

  /** ECLOSED for `what`, which waited to hold the store when its close went ahead; null while it is open. */
  closedError(what: string): CpError | null {
    return this.shut ? new CpError('ECLOSED', `${this.dir}: the store was closed while ${what} waited to hold it`) : null;
  }

  /** Resolves once nobody holds the store (at once when nobody does), or once its close went ahead. */
  idle(): Promise<void> {
    if (this.tenure === null || this.shut) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Take every hold of `holds` for `tenure` if all are free (true), or none (false). */
  static takeAll(holds: readonly StoreHold[], tenure: Tenure): boolean {
    if (holds.some((h) => h.tenure !== null)) return false;
    for (const h of holds) h.tenure = tenure;
    return true;
  }

  release(): void {
    this.tenure = null;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

/**
 * Take every hold at once (waiting until all are free: a holder never keeps one store while it waits
 * for another, so holders never wait in a cycle), run `body` as their holder, release them. When
 * every hold is free, body starts synchronously (its calls come right after those made before).
 */
export async function withHolds<T>(holds: readonly StoreHold[], what: string, body: (asHolder: AsHolder, asUser: AsUser) => Promise<T>): Promise<T> {
  const outer = context.getStore();
  assertNotInside(holds, what);
  const tenure: Tenure = { what };
  let taken = false;
  try {
    while (!(taken = StoreHold.takeAll(holds, tenure))) {
      await holds.find((h) => h.by !== null)!.idle();
      for (const h of holds) { const e = h.closedError(what); if (e) throw e; }
    }
    tenure.live = true;
    const ctx: HoldContext = { tenures: new Set([...(outer?.tenures ?? []), tenure]) };
    const asHolder: AsHolder = (call) => {
      const before = holds.map((h) => h.admitted);
      for (const h of holds) h.admitted = tenure;
      try {
        return call();
      } finally {
        holds.forEach((h, i) => { h.admitted = before[i]!; });
      }
    };
    const asUser: AsUser = (fn) => context.run(ctx, fn);
    return await body(asHolder, asUser);
  } finally {
    tenure.live = false;
    if (taken) for (const h of holds) h.release();
  }
}

/**
 * The caller runs inside a holder that holds its stores now (in its fn, say): what it waits for must
 * not wait for that holder, such as a place in a call order behind one that waits for its stores.
 */
export function insideHolder(): boolean {
  for (const t of context.getStore()?.tenures ?? []) if (t.live) return true;
  return false;
}

/** EINVAL when the caller runs inside a holder of one of `holds` (taking it would wait for itself). */
export function assertNotInside(holds: readonly StoreHold[], what: string): void {
  for (const h of holds) {
    if (h.inside) throw new CpError('EINVAL', `${what} was called inside the function of ${h.by ?? 'a holder'} on the same store: it would wait for that function, which waits for it`);
  }
}

/** The key of a store's hold and two-phase state, for the coordinator (cpfile/postgres). */
export const STORE_HOLD = Symbol.for('cpfile.storeHold');

export interface HoldView {
  hold: StoreHold;
  /** a prepare() was called and its epoch is not decided */
  preparing: boolean;
}
