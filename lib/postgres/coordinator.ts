/**
 * postgresCoordinator: files of several stores and rows of a PostgreSQL database change together.
 * check(stores, fn) is one step, all or nothing, decided by one PostgreSQL COMMIT (presumed abort,
 * decisions.ts):
 *
 *   1. validate (nothing changes on a refusal); settle an earlier in-doubt step on these stores;
 *      steps that share a store run one after another in this process, and hold their stores
 *      (store/hold.ts) from here to the end: nobody else ends part of their epochs;
 *   2. a pooled client, BEGIN (synchronous_commit raised to on when the session has it off), the
 *      stores' advisory locks (exclusive, in key order), the transaction id: one round trip;
 *   3. fn(client) inside that transaction, so that the file calls it makes belong to the step's
 *      epochs (fn runs before the prepares: a call made on a prepared store would wait for the
 *      decision, that is, for fn);
 *   4. every store prepares (in parallel): its epoch and a PREPARE are durable;
 *   5. one decision row per prepared epoch, the positions of the stores whose hooks are
 *      postgresHooks of the same pool, and the stores' older rows deleted;
 *   6. COMMIT: the decision. 5 and 6 are one round trip (decisionSql), whose first statement checks
 *      that fn kept to the step's transaction; a statement that fails skips COMMIT;
 *   7. every store commits (sync: false, the decision being durable in PostgreSQL; hooks: false for
 *      the stores whose positions step 5 wrote). Resolves with the epochs, in the stores' order.
 *
 * Before the decision, anything that fails (fn, a query, a prepare, the transaction) rolls back
 * everything: ROLLBACK, the prepared epochs aborted, the other stores rolled back (fn's file changes
 * go with the step), and check rejects with EABORTED (.cause: why). A decision (its round trip, and
 * so its COMMIT) that gets no answer is not guessed at: the decision is learnt as resolve() learns it, and obeyed; when it cannot be
 * learnt the stores stay prepared and check rejects with EINDOUBT (retryInDoubt() or the stores'
 * next open, with resolveInDoubt: coord.resolve, settle them).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Pool, PoolClient } from 'pg';
import { CpError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { PreparedEpoch } from '../store/two-phase.js';
import { STORE_HOLD, assertNotInside, withHolds, type AsHolder, type AsUser, type HoldView } from '../store/hold.js';
import { guardClient } from './guard.js';
import { ENTRIES_COMMITTED, ENTRIES_SQL, hooksOfStore, type PostgresHooks } from './hooks.js';
import { STEP_ENDED, beginStep, checkOwnId, decisionSql, learnDecision, preparedId, type PreparedRef } from './decisions.js';
import { ensureTable, tableRef, type TableOptions, type TableRef } from './schema.js';
import { exclusive, validateStep } from './step-input.js';

export type CoordinatorOptions = TableOptions;

/** What resolveInDoubt is asked (openStore passes `dir` too). */
export interface InDoubtQuery {
  id: string;
  epoch: number;
  storeId: string;
  dir?: string;
}

export interface PostgresCoordinator {
  /** One step: fn's queries and the stores' epochs commit together or not at all. Resolves with the stores' epochs. */
  check<T>(stores: readonly Store[], fn: (client: PoolClient) => T | Promise<T>): Promise<number[]>;
  /** The decision of a prepared epoch (openStore's resolveInDoubt): 'commit' when its row exists, 'abort' when not. */
  resolve(q: InDoubtQuery): Promise<'commit' | 'abort'>;
  /** Learn again the decisions of the steps this coordinator left in doubt (EINDOUBT) and carry them out. */
  retryInDoubt(): Promise<{ committed: string[]; aborted: string[]; inDoubt: string[] }>;
  /** The decisions table. */
  readonly table: TableRef;
}

/** A step whose COMMIT got no answer and whose decision could not be learnt yet. */
interface InDoubtStep {
  stores: Store[];
  prepared: PreparedEpoch[];
  hooks: (PostgresHooks | null)[];
}

/** The step under way in this async context (steps do not nest). */
const inStep = new AsyncLocalStorage<true>();

/** How long a step whose COMMIT got no answer waits, in all, for the decision before EINDOUBT. */
const LEARN_DELAYS_MS = [0, 100, 400, 1000];
const LEARN_LOCK_TIMEOUT_MS = 30_000;

function message(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

/** A connection failure, or a FATAL from the server: what the server did with the last statement is not known. */
function outcomeUnknown(e: unknown): boolean {
  return (e as { severity?: unknown })?.severity !== 'ERROR';
}

class Coordinator {
  private inDoubt = new Set<InDoubtStep>();

  constructor(private pool: Pool, readonly table: TableRef) {}

  async check<T>(stores: readonly Store[], fn: (client: PoolClient) => T | Promise<T>): Promise<number[]> {
    if (inStep.getStore()) throw new CpError('EINVAL', 'coordinated steps do not nest: check() was called inside the fn of another');
    const list = validateStep(stores, fn);
    const hooks = list.map((s) => this.hooksOf(s));
    // the step holds its stores from its start to its end (store/hold.ts): no check(), rollback(),
    // prepare() or decision of anyone else, its fn included, ends part of its epochs; close() waits
    assertNotInside(list.map(holdOf).map((v) => v.hold), 'a coordinated step');
    // an earlier step left in doubt on one of these stores is settled first, under its own stores' holds
    await this.settleFirst(list);
    return exclusive(list, () => withHolds(list.map((s) => holdOf(s).hold), 'a coordinated step', (asHolder, asUser) => this.step(list, hooks, fn, asHolder, asUser)));
  }

  /** The postgresHooks of `store` when they share the coordinator's pool (then the step writes its positions); EINVAL for another pool. */
  private hooksOf(store: Store): PostgresHooks | null {
    const h = hooksOfStore(store.id);
    if (!h) return null;
    if (h.pool !== this.pool) {
      throw new CpError('EINVAL', `the postgresHooks of store ${store.dir} use another pool than the coordinator: pass both the same pg.Pool (the step writes the positions in its own transaction)`);
    }
    return h;
  }

  private async step<T>(list: Store[], hooks: (PostgresHooks | null)[], fn: (client: PoolClient) => T | Promise<T>, asHolder: AsHolder, asUser: AsUser): Promise<number[]> {
    // (one that went in doubt since settleFirst, while this step waited for its stores)
    const late = [...this.inDoubt].find((d) => d.stores.some((x) => list.includes(x)));
    if (late) throw stillInDoubt(late);
    for (const s of list) {
      s.assertCallable();
      // an epoch the app prepared itself is the app's to decide: a step on it would build on an epoch it cannot decide
      // (EINDOUBT when another coordinator left it in doubt)
      if (holdOf(s).preparing) throw holdOf(s).hold.undecided('a coordinated step');
    }
    let stage = 'begin';
    let client: PoolClient | null = null;
    let decision = '';
    const prepared: (PreparedEpoch | null)[] = list.map(() => null);
    try {
      await ensureTable(this.pool, this.table);
      for (const h of hooks) if (h) await ensureTable(this.pool, h.table);
      client = await this.connect();
      // BEGIN, synchronous_commit, the locks and the transaction id: one round trip
      const xid = await beginStep(client, list.map((s) => s.id));
      stage = 'fn';
      await runGuarded(client, fn, asUser);
      // (that fn kept to the step's transaction is checked by the decision's first statement: decisionSql)
      stage = 'prepare';
      await prepareAll(list, prepared, this.table, asHolder);
      stage = 'record';
      const positions: string[] = [];
      for (const [i, h] of hooks.entries()) {
        const sql = h ? await h[ENTRIES_SQL](prepared[i]!.entries) : null;
        if (sql) positions.push(sql);
      }
      decision = decisionSql(this.table, xid, prepared as PreparedEpoch[], positions);
    } catch (e) {
      await this.undo(client, e, list, prepared, stage !== 'begin', asHolder);
      // before fn, nothing ran: a CpError (EFORMAT: the tables are of another version) is the answer itself
      if (stage === 'begin' && e instanceof CpError) throw e;
      throw new CpError('EABORTED', `coordinated step rolled back (${stage}): ${message(e)}`, { cause: e, details: { stage } });
    }
    const all = prepared as PreparedEpoch[];
    const d = await this.decide(client!, decision, all);
    if (d.outcome === 'abort') {
      await abortAll(all, asHolder);
      const at = d.stage ?? 'commit';
      throw new CpError('EABORTED', `coordinated step rolled back (${at}): ${message(d.cause)}${d.learnt ? ' (the decision was read back: no row)' : ''}`,
        { cause: d.cause, details: { stage: at } });
    }
    if (d.outcome === 'unknown') {
      // the epochs stay this step's to decide: nobody else may decide them or close their stores
      const what = `an in-doubt coordinated step (ids ${all.map((p) => p.id).join(', ')})`;
      for (const s of list) holdOf(s).hold.reserve(what);
      this.inDoubt.add({ stores: list, prepared: all, hooks });
      throw inDoubtError(all, d.cause);
    }
    return commitAll(all, hooks, asHolder);
  }

  /**
   * A step left in doubt keeps its stores prepared: a new step on one of them would wait for that
   * decision inside its fn. Settle those steps first; EINDOUBT (nothing done) while one stays in doubt.
   */
  private async settleFirst(list: Store[]): Promise<void> {
    for (const s of [...this.inDoubt]) {
      if (!s.stores.some((x) => list.includes(x))) continue;
      if ((await this.settleHeld(s)) === null) throw stillInDoubt(s);
    }
  }

  /** settle(s) under the holds of all of its stores (taken at once); 'settled' when another did it meanwhile. */
  private settleHeld(s: InDoubtStep): Promise<'commit' | 'abort' | null | 'settled'> {
    return exclusive(s.stores, () => withHolds(s.stores.map((x) => holdOf(x).hold), 'a coordinated step',
      (asHolder) => (this.inDoubt.has(s) ? this.settle(s, asHolder) : Promise.resolve('settled' as const))));
  }

  /** Learn an in-doubt step's decision and carry it out; null while it cannot be learnt. */
  private async settle(s: InDoubtStep, asHolder: AsHolder): Promise<'commit' | 'abort' | null> {
    const d = await this.learn(s.prepared);
    if (!d) return null;
    this.inDoubt.delete(s);
    try {
      if (d === 'commit') await commitAll(s.prepared, s.hooks, asHolder).catch(() => undefined);
      else await abortAll(s.prepared, asHolder);
    } finally {
      for (const x of s.stores) holdOf(x).hold.reserve(null);
    }
    return d;
  }

  private async connect(): Promise<PoolClient> {
    const c = await this.pool.connect();
    // while the step holds it: a dropped connection rejects the query under way, and is not an uncaught 'error'
    c.on('error', ignore);
    return c;
  }

  /** Before the decision: ROLLBACK, abort what was prepared, roll back the other stores once fn ran (its file changes go with the step). */
  private async undo(client: PoolClient | null, cause: unknown, list: Store[], prepared: (PreparedEpoch | null)[], fnRan: boolean, asHolder: AsHolder): Promise<void> {
    if (client) {
      const ok = await client.query('ROLLBACK').then(() => true, () => false);
      release(client, ok ? undefined : cause);
    }
    if (!fnRan) return;
    await Promise.all(list.map((s, i) => asHolder(() => (prepared[i] ? prepared[i]!.abort() : s.rollback())).catch(() => undefined)));
  }

  /**
   * The decision's round trip (decisionSql: the rows, then COMMIT), and what it decided: COMMIT
   * answered is a commit; a server ERROR is a rollback (the statement that failed and all after it,
   * COMMIT too, did not run, or COMMIT itself failed); no answer is learnt from the table.
   */
  private async decide(client: PoolClient, sql: string, prepared: PreparedEpoch[]):
  Promise<{ outcome: 'commit' | 'abort' | 'unknown'; cause?: unknown; learnt?: boolean; stage?: 'fn' | 'commit' }> {
    try {
      const results = (await client.query(sql)) as unknown as { command: string }[];
      release(client);
      // COMMIT of a transaction that had failed answers ROLLBACK
      const last = results[results.length - 1]?.command;
      if (last !== 'COMMIT') return { outcome: 'abort', cause: new Error(`COMMIT answered ${last}`) };
      return { outcome: 'commit' };
    } catch (e) {
      if (!outcomeUnknown(e)) {
        // a statement before COMMIT failed and left the transaction open (failed): it ends here
        const ended = await client.query('ROLLBACK').then(() => true, () => false);
        release(client, ended ? undefined : e);
        const code = (e as { code?: unknown }).code;
        if (code === STEP_ENDED) {
          return { outcome: 'abort', stage: 'fn', cause: new CpError('EINVAL', "fn ended the step's transaction itself (a COMMIT or ROLLBACK on its client)", { cause: e }) };
        }
        // only fn's queries ran between the step's BEGIN and this: one of them failed the transaction
        if (code === '25P02') return { outcome: 'abort', stage: 'fn', cause: e };
        return { outcome: 'abort', cause: e };
      }
      // the connection goes, so that the server ends (commits or aborts) the transaction if it still runs
      release(client, e);
      const learnt = await this.learn(prepared);
      return { outcome: learnt ?? 'unknown', cause: e, learnt: learnt !== null };
    }
  }

  /** The decision, from the table (a few tries: the server may be restarting); null when it cannot be had. */
  private async learn(prepared: readonly PreparedRef[]): Promise<'commit' | 'abort' | null> {
    for (const ms of LEARN_DELAYS_MS) {
      if (ms) await new Promise((r) => setTimeout(r, ms));
      try {
        return await learnDecision(this.pool, this.table, prepared, LEARN_LOCK_TIMEOUT_MS);
      } catch { /* try again */ }
    }
    return null;
  }

  async resolve(q: InDoubtQuery): Promise<'commit' | 'abort'> {
    if (!q || typeof q.id !== 'string' || typeof q.storeId !== 'string' || !Number.isSafeInteger(q.epoch)) {
      throw new CpError('EINVAL', 'resolve needs { id, epoch, storeId } of a prepared epoch');
    }
    const ref = { id: q.id, storeId: q.storeId, epoch: q.epoch };
    checkOwnId(this.table, ref);
    try {
      return await learnDecision(this.pool, this.table, [ref], 0);
    } catch (e) {
      if (e instanceof CpError) throw e;
      throw new CpError('EINDOUBT', `the decision of epoch ${q.epoch} (id ${q.id}) of store ${q.storeId} could not be read: ${message(e)}`,
        { cause: e, details: { id: q.id, epoch: q.epoch, storeId: q.storeId } });
    }
  }

  async retryInDoubt(): Promise<{ committed: string[]; aborted: string[]; inDoubt: string[] }> {
    const out = { committed: [] as string[], aborted: [] as string[], inDoubt: [] as string[] };
    for (const s of [...this.inDoubt]) {
      const d = await this.settleHeld(s);
      if (d === 'settled') continue;
      out[d === 'commit' ? 'committed' : d === 'abort' ? 'aborted' : 'inDoubt'].push(...s.prepared.map((p) => p.id));
    }
    return out;
  }
}

function ignore(): void {}

function stillInDoubt(s: InDoubtStep): CpError {
  const ids = s.prepared.map((p) => p.id);
  return new CpError('EINDOUBT', `an earlier step on these stores is still in doubt (ids ${ids.join(', ')}): its decision cannot be read yet`,
    { details: { ids, epochs: s.prepared.map((p) => p.epoch), storeIds: s.prepared.map((p) => p.storeId) } });
}

function holdOf(s: Store): HoldView {
  return (s as unknown as Record<typeof STORE_HOLD, HoldView>)[STORE_HOLD];
}

/** Give the client back to the pool; with an error, the pool ends its connection instead. */
function release(c: PoolClient, err?: unknown): void {
  c.removeListener('error', ignore);
  c.release(err === undefined ? undefined : err instanceof Error ? err : new Error(String(err)));
}

/** fn with the guarded client, inside the step's async context; the proxy is revoked when fn settles. */
async function runGuarded<T>(client: PoolClient, fn: (client: PoolClient) => T | Promise<T>, asUser: AsUser): Promise<void> {
  const g = guardClient(client);
  try {
    await inStep.run(true, () => asUser(() => fn(g.client)));
  } finally {
    g.revoke();
  }
  if (g.misuse) throw new CpError('EINVAL', `fn used ${g.misuse} on the step's client`);
}

/** Prepare every store at once; every one that prepared is in `prepared` (for undo) when one fails. */
async function prepareAll(list: Store[], prepared: (PreparedEpoch | null)[], t: TableRef, asHolder: AsHolder): Promise<void> {
  const settled = await Promise.allSettled(list.map((s) => asHolder(() => s.prepare({ id: preparedId(t) }))));
  let failure: unknown = null;
  settled.forEach((r, i) => {
    if (r.status === 'fulfilled') prepared[i] = r.value;
    else failure ??= r.reason;
  });
  if (failure !== null) throw failure;
}

async function abortAll(prepared: readonly PreparedEpoch[], asHolder: AsHolder): Promise<void> {
  await Promise.all(prepared.map((p) => asHolder(() => p.abort()).catch(() => undefined)));
}

/** After COMMIT: every store commits. A store that fails to is committed at its next open (its row says so). */
async function commitAll(prepared: PreparedEpoch[], hooks: (PostgresHooks | null)[], asHolder: AsHolder): Promise<number[]> {
  // (hooks: false where the deciding transaction wrote the positions)
  const settled = await Promise.allSettled(prepared.map((p, i) => asHolder(() => p.commit({ sync: false, hooks: !hooks[i] }))));
  prepared.forEach((p, i) => hooks[i]?.[ENTRIES_COMMITTED](p.entries));
  const failed = settled.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) {
    const err = (settled[failed] as PromiseRejectedResult).reason as CpError;
    const p = prepared[failed]!;
    throw new CpError(err instanceof CpError ? err.code : 'EIO',
      `the step committed in PostgreSQL, but store ${p.storeId} failed to commit epoch ${p.epoch}: ${message(err)}; its next open commits it (resolveInDoubt)`,
      { cause: err, details: { decision: 'commit', id: p.id, epoch: p.epoch, storeId: p.storeId } });
  }
  return settled.map((r) => (r as PromiseFulfilledResult<number>).value);
}

function inDoubtError(prepared: readonly PreparedEpoch[], cause: unknown): CpError {
  const ids = prepared.map((p) => p.id);
  return new CpError('EINDOUBT',
    `the COMMIT of a coordinated step got no answer (${message(cause)}) and its decision could not be read; the stores stay prepared ` +
    `(ids ${ids.join(', ')}): retryInDoubt(), or their next open with resolveInDoubt, decides them`,
    { cause, details: { ids, epochs: prepared.map((p) => p.epoch), storeIds: prepared.map((p) => p.storeId) } });
}

/** The coordinator of steps over files and PostgreSQL rows; the tables are made on first use. */
export function postgresCoordinator(pool: Pool, options?: CoordinatorOptions): PostgresCoordinator {
  if (!pool || typeof (pool as { connect?: unknown }).connect !== 'function') throw new CpError('EINVAL', 'postgresCoordinator needs a pg.Pool');
  const c = new Coordinator(pool, tableRef('decisions', options));
  return {
    check: (stores, fn) => c.check(stores, fn),
    resolve: (q) => c.resolve(q),
    retryInDoubt: () => c.retryInDoubt(),
    table: c.table,
  };
}
