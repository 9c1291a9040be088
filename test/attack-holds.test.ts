// Attacks on the holds of lib/store/hold.ts (transactions and coordinated steps): code that ends up
// in the holder's privileged async context, close() while held, dual builds. Each case is a finding:
// the oracle is the goal of the holds (a transaction is one epoch, all or nothing; a step's rows and
// files come from the same decision; nothing acknowledged is lost; no hang).
import { createRequire } from 'node:module';
import { expect } from 'chai';
import type { Pool, PoolClient } from 'pg';
import { postgresCoordinator } from '../lib/postgres/index.js';
import { usePgServer } from './helpers/pg-server.js';
import { Sandbox, expectCpError, sleep, type Store } from './helpers/sandbox.js';

const requireCjs = createRequire(import.meta.url);

const durableOf = (sb: Sandbox) => async (dir: string, name: string): Promise<string | null> => {
  const s = await sb.open(dir);
  try {
    return (await s.exists(name)) ? await s.readFile(name, 'utf8') : null;
  } finally {
    await s.close();
  }
};

/** Settles within ms, or 'pending'. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending' | { rejected: unknown }> {
  return Promise.race([p.then((v) => v, (e: unknown) => ({ rejected: e })), sleep(ms).then(() => 'pending' as const)]);
}

describe('attack: holds (core)', function () {
  this.timeout(60_000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  const durable = durableOf(sb);

  it("a transaction on another store inside fn: its 'checkpoint' listener runs as the outer holder and can check() half of the outer transaction", async () => {
    const t = await sb.open(await sb.dir());
    const c = await sb.open(await sb.dir());
    let listenerCheck: unknown = 'not called';
    c.once('checkpoint', () => {
      listenerCheck = t.check().then((e) => `committed epoch ${e}`, (e: unknown) => (e as { code?: string }).code);
    });
    const boom = new Error('boom');
    const tx = t.transaction(async () => {
      await t.writeFile('half', 'first half');
      await c.transaction(async () => { await c.writeFile('x', 'x'); });
      await sleep(20);
      throw boom; // the transaction is all or nothing: 'half' must not be durable
    });
    await tx.catch(() => undefined);
    await t.close();
    expect(await durable(t.dir, 'half'), 'half of a failed transaction is durable').to.equal(null);
    expect(await listenerCheck).to.equal('EBUSY');
  });

  it("a transaction on another store inside fn: that store's hooks.commit runs as the outer holder and can rollback() the outer transaction's first half", async () => {
    const t = await sb.open(await sb.dir());
    let hookRollback: unknown = 'not called';
    const c = await sb.open(await sb.dir(), { hooks: { commit: () => { hookRollback = t.rollback().then(() => 'rolled back', (e: unknown) => (e as { code?: string }).code); } } });
    const r = await t.transaction(async () => {
      await t.writeFile('a', 'first');
      await c.transaction(async () => { await c.writeFile('x', 'x'); });
      await sleep(20);
      await t.writeFile('b', 'second');
      return 'ok';
    });
    expect(r).to.equal('ok');
    await t.close();
    // the transaction resolved: both of its writes are acknowledged and must be durable
    expect(await durable(t.dir, 'a'), 'a write of a resolved transaction is lost').to.equal('first');
    expect(await durable(t.dir, 'b')).to.equal('second');
    expect(await hookRollback).to.equal('EBUSY');
  });

  it('fn returning a thenable: its then() runs as the holder and can check() half of the transaction', async () => {
    const t = await sb.open(await sb.dir());
    let inner: unknown = 'not called';
    const boom = new Error('boom');
    const tx = t.transaction(() => ({
      then(_res: (v: unknown) => void, rej: (e: unknown) => void) {
        void t.writeFile('half', 'h').then(() => {
          inner = t.check().then((e) => `committed epoch ${e}`, (e: unknown) => (e as { code?: string }).code);
          return inner;
        }).then(() => rej(boom));
      },
    }) as unknown as Promise<void>);
    await tx.catch(() => undefined);
    await t.close();
    expect(await durable(t.dir, 'half'), 'half of a failed transaction is durable').to.equal(null);
    expect(await inner).to.equal('EBUSY');
  });

  it('close() waiting for a transaction, then close({ discard: true }): the discard happens at once (it does not wait for fn)', async () => {
    const t = await sb.open(await sb.dir());
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const tx = t.transaction(async () => {
      await t.writeFile('f', 'x');
      await gate;
    });
    tx.catch(() => undefined);
    await sleep(10);
    const c1 = t.close();
    c1.catch(() => undefined);
    const c2 = t.close({ discard: true });
    const r = await within(c2, 1000);
    release();
    expect(r, 'close({ discard: true }) after a waiting close() waits for fn (forever if fn never settles)').to.not.equal('pending');
    await c1; // the waiting close() ends with it
    await expectCpError(() => tx, 'ECLOSED');
    expect(await durable(t.dir, 'f')).to.equal(null);
  });
});

describe('attack: holds (cpfile/postgres)', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  const durable = durableOf(sb);
  let admin: Pool;
  before(async () => {
    admin = pg.server.pool({ max: 3 });
    await admin.query('CREATE TABLE atk (id int PRIMARY KEY)');
  });
  let next = 0;
  const rowId = (): number => ++next;
  const hasRow = async (id: number): Promise<boolean> => ((await admin.query('SELECT 1 FROM atk WHERE id = $1', [id])).rowCount ?? 0) > 0;

  it("a pool 'acquire' listener's timer runs as the step's holder: its check() commits fn's files, then fn fails and the rows roll back", async function () {
    const pool = pg.server.pool({ max: 2 });
    try {
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      await coord.check([a], () => undefined); // tables made
      let timerCheck: Promise<unknown> | null = null;
      pool.on('acquire', () => {
        // an app's pool instrumentation: a periodic flush of its stores, say
        setTimeout(() => { timerCheck ??= a.check().then((e) => `committed epoch ${e}`, (e: unknown) => (e as { code?: string }).code); }, 20);
      });
      const id = rowId();
      const step = coord.check([a], async (c) => {
        await a.writeFile('f', 'step');
        await c.query('INSERT INTO atk VALUES ($1)', [id]);
        await sleep(80);
        throw new Error('app failure');
      });
      await expectCpError(() => step, 'EABORTED');
      expect(await hasRow(id)).to.equal(false);
      await a.close();
      expect(await durable(a.dir, 'f'), "the step's files committed while its rows rolled back").to.equal(null);
      expect(await timerCheck).to.equal('EBUSY');
    } finally {
      await pool.end();
    }
  });

  it('cpfile by require (dist/cjs) and cpfile/postgres by import: a step works, or is refused with nothing changed', async function () {
    const cjs = requireCjs('../cjs/index.js') as typeof import('../lib/index.js');
    const pool = pg.server.pool({ max: 2 });
    try {
      const coord = postgresCoordinator(pool);
      const dir = await sb.dir();
      const a = sb.track(await cjs.openStore(dir));
      const id = rowId();
      let outcome: unknown = 'resolved';
      await coord.check([a], async (c) => {
        await a.writeFile('f', 'step');
        await c.query('INSERT INTO atk VALUES ($1)', [id]);
      }).catch((e: unknown) => { outcome = e; });
      // whatever the step answered, the files and the rows agree, now and after a later check
      await a.check().catch(() => undefined);
      await a.close();
      const row = await hasRow(id);
      const file = await durable(dir, 'f');
      expect({ row, file }, `step outcome: ${(outcome as Error)?.message ?? outcome}`).to.deep.equal(row ? { row, file: 'step' } : { row, file: null });
      expect(outcome, 'a step that should just work').to.equal('resolved');
    } finally {
      await pool.end();
    }
  });

  it('a step left in doubt: close(), close({ discard: true }) and a decision of store.prepared are EINDOUBT (the epoch is the step\'s to decide); retryInDoubt commits it as PostgreSQL did', async function () {
    const pool = pg.server.pool({ max: 3 });
    try {
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      await coord.check([a], () => undefined);
      // the decision commits on the server, its answer is lost, and the server cannot be reached for a while
      let down = false;
      const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
      (pool as { connect: unknown }).connect = async () => {
        if (down) throw new Error('connect ECONNREFUSED (simulated)');
        const c = await connect();
        const query = c.query.bind(c) as (...a: unknown[]) => Promise<unknown>;
        (c as { query: unknown }).query = async (...args: unknown[]) => {
          if (typeof args[0] === 'string' && args[0].endsWith('\nCOMMIT')) {
            await query(...args);
            down = true;
            throw new Error('Connection terminated unexpectedly (simulated)');
          }
          return query(...args);
        };
        return c;
      };
      const id = rowId();
      const step = coord.check([a], async (c) => {
        await a.writeFile('f', 'step');
        await c.query('INSERT INTO atk VALUES ($1)', [id]);
      });
      await expectCpError(() => step, 'EINDOUBT');
      down = false;
      expect(await hasRow(id)).to.equal(true); // PostgreSQL committed the step
      // before: the discard aborted the epoch PostgreSQL had committed (the row without the file)
      for (const discard of [true, false]) await expectCpError(() => a.close({ discard }), 'EINDOUBT');
      for (const d of ['commit', 'abort'] as const) await expectCpError(() => a.prepared![d](), 'EINDOUBT');
      const retried = await coord.retryInDoubt();
      expect(retried.committed).to.have.length(1);
      expect(a.prepared).to.equal(null);
      expect(await a.readFile('f', 'utf8')).to.equal('step');
      await a.close();
      expect(await durable(a.dir, 'f')).to.equal('step');
    } finally {
      await pool.end();
    }
  });

  it('a step on [a, b] while a transaction on b runs, whose fn then makes a transaction on a: no hang (the step holds a while it waits for b)', async function () {
    const pool = pg.server.pool({ max: 2 });
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    await coord.check([a, b], () => undefined); // tables made
    const txB = b.transaction(async () => {
      await b.writeFile('g', 'tx b');
      await sleep(50); // meanwhile the step takes a's hold and waits for b's
      await a.transaction(async () => { await a.writeFile('f', 'tx a inside tx b'); });
    });
    await sleep(10);
    const step = coord.check([a, b], async () => { await a.writeFile('s', 'step'); });
    const r = await within(Promise.all([txB, step]), 3000);
    expect(r, 'the transactions and the step wait for each other').to.not.equal('pending');
  });
});
