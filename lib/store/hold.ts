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
 * Which code runs inside a holder (its fn) is known from the async context; the holder's own calls
 * are admitted only while they run synchronously (withHolds' asHolder), never by async context.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CpError } from '../errors.js';

/** One holder's tenure of a hold (a context that outlives it, a timer fn left, holds nothing). */
interface Tenure {
  what: string;
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

export class StoreHold {
  private tenure: Tenure | null = null;
  private waiting: { tenure: Tenure; go: () => void }[] = [];
  private idleWaiters: (() => void)[] = [];
  /** @internal the tenure whose holder's call runs now (withHolds' asHolder) */
  admitted: Tenure | null = null;

  constructor(private dir: string) {}

  /** What holds the store now ('a transaction', 'a coordinated step'), or null. */
  get by(): string | null {
    return this.tenure?.what ?? null;
  }

  /** The hold is the caller's: the holder's own call (asHolder) runs now. */
  get mine(): boolean {
    return this.tenure !== null && this.admitted === this.tenure;
  }

  /** The caller runs inside the holder's context (its own code or its fn). */
  get inside(): boolean {
    return this.tenure !== null && !!context.getStore()?.tenures.has(this.tenure);
  }

  /** EBUSY for `call` made now, unless the store is free or the caller is the holder. */
  refusal(call: string): CpError | null {
    if (this.tenure === null || this.mine) return null;
    const where = this.inside ? ' (called inside its function: it ends the epoch itself when the function resolves)' : '';
    const by = this.tenure.what;
    return new CpError('EBUSY', `${this.dir}: ${call} was called while ${by} runs on this store${where}; the epoch is that of ${by} until it ends`);
  }

  /** Resolves once nobody holds the store (at once when nobody does). */
  idle(): Promise<void> {
    if (this.tenure === null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Take the hold for `tenure` now when free (null), or a promise of it, in the order asked. */
  take(tenure: Tenure): Promise<void> | null {
    if (this.tenure === null) {
      this.tenure = tenure;
      return null;
    }
    return new Promise((go) => this.waiting.push({ tenure, go }));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) {
      this.tenure = next.tenure;
      next.go();
      return;
    }
    this.tenure = null;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

/**
 * Take every hold (in the order given, each waiting for its holder), run `body` as their holder,
 * release them. When every hold is free, body starts synchronously (its calls come right after
 * those made before).
 */
export async function withHolds<T>(holds: readonly StoreHold[], what: string, body: (asHolder: AsHolder) => Promise<T>): Promise<T> {
  const outer = context.getStore();
  assertNotInside(holds, what);
  const tenure: Tenure = { what };
  const taken: StoreHold[] = [];
  try {
    for (const h of holds) {
      const wait = h.take(tenure);
      taken.push(h);
      if (wait) await wait;
    }
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
    return await context.run(ctx, () => body(asHolder));
  } finally {
    for (const h of taken.reverse()) h.release();
  }
}

/** Run the app's `fn` inside the holder's context (it never has the holder's right: see AsHolder). */
export function asUser<T>(fn: () => T): T {
  return fn();
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
