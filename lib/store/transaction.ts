/**
 * store.transaction(fn): run fn, then check() once it resolves (resolving with fn's result), or
 * rollback() if it throws (rejecting with fn's error). The store has one epoch at a time, so a
 * transaction is that epoch: calls made elsewhere while fn runs are in it too. Transactions do not
 * nest (a transaction called from inside fn, in its async context, is EINVAL); one called while
 * another runs elsewhere starts when that one has checked or rolled back.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CpError } from '../errors.js';
import { describe } from '../names.js';
import { STORE_HOLD, withHolds, type AsHolder, type AsUser, type HoldView } from './hold.js';

export interface TransactionHost {
  assertCallable(): void;
  check(): Promise<number>;
  rollback(): Promise<void>;
  /** the store's hold: a transaction holds it from fn's start to its check or rollback (hold.ts) */
  readonly [STORE_HOLD]: HoldView;
}

export class Transactions {
  /** The transaction whose fn this async context descends from; it nests only while that fn runs. */
  private inside = new AsyncLocalStorage<{ running: boolean }>();
  /** The transaction running (or queued last), settled; null when none is. */
  private last: Promise<unknown> | null = null;

  run<T>(host: TransactionHost, fn: () => T | Promise<T>): Promise<Awaited<T>> {
    try {
      host.assertCallable();
      if (typeof fn !== 'function') throw new CpError('EINVAL', `transaction needs a function, got ${describe(fn)}`);
      if (this.inside.getStore()?.running) throw new CpError('EINVAL', 'transactions do not nest: this one was called inside another transaction\'s function');
    } catch (e) {
      return Promise.reject(e);
    }
    const prior = this.last;
    const go = (): Promise<Awaited<T>> => this.once(host, fn);
    // Nothing running: fn starts now, so its calls come right after those made before transaction().
    // (or once the store's close went ahead: a discard while the one before never ends; go is then ECLOSED)
    const p = prior ? host[STORE_HOLD].hold.orClosed(prior).then(go) : go();
    const settled = p.then(() => undefined, () => undefined);
    this.last = settled;
    void settled.then(() => {
      if (this.last === settled) this.last = null;
    });
    return p;
  }

  private once<T>(host: TransactionHost, fn: () => T | Promise<T>): Promise<Awaited<T>> {
    try {
      host.assertCallable();
    } catch (e) {
      return Promise.reject(e);
    }
    // The store is held while fn runs and until its check or rollback: a check(), rollback() or
    // close() made meanwhile would end part of this epoch (hold.ts). fn runs as the app's code.
    return withHolds([host[STORE_HOLD].hold], 'a transaction', (asHolder, asUser) => this.held(host, fn, asHolder, asUser));
  }

  private async held<T>(host: TransactionHost, fn: () => T | Promise<T>, asHolder: AsHolder, asUser: AsUser): Promise<Awaited<T>> {
    host.assertCallable();
    // fn's calls would wait for the decision of a prepared epoch, which nobody may make while this holds the store
    if (host[STORE_HOLD].preparing) throw host[STORE_HOLD].hold.undecided('a transaction');
    let result: Awaited<T>;
    // Only fn runs in the transaction's async context, and only while it runs: the check and the
    // rollback (and the 'checkpoint' listeners they call), and a timer fn left that fires later, are not inside it.
    const token = { running: true };
    try {
      result = await this.inside.run(token, () => asUser(fn));
    } catch (e) {
      token.running = false;
      await asHolder(() => host.rollback()).catch((rb: unknown) => {
        const first = (e instanceof Error ? e.message : String(e)).split('\n')[0];
        const code = rb instanceof CpError ? rb.code : 'EIO';
        throw new CpError(code, `the transaction's function failed (${first}) and its rollback failed too: ${rb instanceof Error ? rb.message : String(rb)}`, { cause: e });
      });
      throw e;
    }
    token.running = false;
    await asHolder(() => host.check());
    return result;
  }
}
