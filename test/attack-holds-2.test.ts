// Second adversarial review of the holds (lib/store/hold.ts): transactions and coordinated steps, from
// outside, as a hostile user. Each case is a finding (see test/attack-holds.test.ts for the first
// review's). The oracle: a transaction is one epoch (all or nothing); a step's rows and files come from
// the same decision; nothing acknowledged is lost; no hang; clear CpError codes.
import { expect } from 'chai';
import type { Pool, PoolClient } from 'pg';
import { postgresCoordinator } from '../lib/postgres/index.js';
import { usePgServer } from './helpers/pg-server.js';
import { Sandbox, expectCpError, sleep } from './helpers/sandbox.js';

/** Settles within ms, or 'pending'. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'pending' | { rejected: unknown }> {
  return Promise.race([p.then((v) => v, (e: unknown) => ({ rejected: e })), sleep(ms).then(() => 'pending' as const)]);
}

const codeOf = (r: unknown): unknown => (r && typeof r === 'object' && 'rejected' in r ? (r.rejected as { code?: string }).code : r);

describe('attack 2: holds (core)', function () {
  this.timeout(60_000);
  const sb = new Sandbox();
  afterEach(() => within(sb.cleanup(), 3000));

  it('a transaction on a store whose epoch the app prepared: fn\'s calls wait for the decision, which the app cannot make while the transaction holds the store', async () => {
    const a = await sb.open(await sb.dir());
    await a.writeFile('p', 'prepared');
    const p = await a.prepare();
    const tx = a.transaction(async () => { await a.writeFile('t', 'tx'); });
    tx.catch(() => undefined);
    await sleep(20);
    // the app decides its prepared epoch: refused (EBUSY) since the transaction holds the store...
    const decided = await within(p.commit(), 500);
    // ...and the transaction waits for that decision forever
    const r = await within(tx, 1000);
    expect({ decided: codeOf(decided), tx: codeOf(r) }, 'the prepared epoch and the transaction wait for each other')
      .to.not.deep.equal({ decided: 'EBUSY', tx: 'pending' });
    expect(codeOf(r), 'a transaction on a store prepared by the app').to.equal('EPREPARED');
    expect(decided).to.equal(p.epoch);
  });

  it('close({ discard: true }) of a store whose transaction never settles: a transaction queued behind it never settles either (not ECLOSED)', async () => {
    const a = await sb.open(await sb.dir());
    const tx1 = a.transaction(() => new Promise<void>(() => undefined)); // fn never settles
    tx1.catch(() => undefined);
    await sleep(10);
    const tx2 = a.transaction(async () => { await a.writeFile('f', 'tx2'); });
    tx2.catch(() => undefined);
    await a.close({ discard: true });
    const r = await within(tx2, 1000);
    expect(codeOf(r), 'a transaction queued on a closed store hangs').to.equal('ECLOSED');
  });

  it("close() from the 'checkpoint' listener of a transaction's own check: EBUSY \"called inside the function\" though fn has resolved (it could wait for the transaction's end)", async () => {
    const a = await sb.open(await sb.dir());
    let closed: Promise<unknown> = Promise.resolve('not called');
    a.once('checkpoint', () => { closed = a.close().then(() => 'closed', (e: unknown) => (e as { code?: string }).code); });
    await a.transaction(async () => { await a.writeFile('f', 'x'); });
    expect(await closed, 'a close after the transaction\'s checkpoint').to.equal('closed');
  });
});

describe('attack 2: holds (cpfile/postgres)', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  // (a bounded cleanup: a case that hangs leaves its stores open rather than hang the suite)
  afterEach(() => within(sb.cleanup(), 3000));
  let admin: Pool;
  before(async () => {
    admin = pg.server.pool({ max: 3 });
    await admin.query('CREATE TABLE atk2 (id int PRIMARY KEY)');
  });
  let next = 0;
  const rowId = (): number => ++next;
  const hasRow = async (id: number): Promise<boolean> => ((await admin.query('SELECT 1 FROM atk2 WHERE id = $1', [id])).rowCount ?? 0) > 0;

  /** The pool's decision COMMIT commits on the server, its answer is lost, and the server is unreachable while `down.on`. */
  function loseCommitAnswer(pool: Pool): { on: boolean; armed: boolean } {
    const down = { on: false, armed: true };
    const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
    (pool as { connect: unknown }).connect = async () => {
      if (down.on) throw new Error('connect ECONNREFUSED (simulated)');
      const c = await connect();
      const query = c.query.bind(c) as (...a: unknown[]) => Promise<unknown>;
      (c as { query: unknown }).query = async (...args: unknown[]) => {
        if (down.armed && typeof args[0] === 'string' && args[0].endsWith('\nCOMMIT')) {
          await query(...args);
          down.on = true;
          down.armed = false;
          throw new Error('Connection terminated unexpectedly (simulated)');
        }
        return query(...args);
      };
      return c;
    };
    return down;
  }

  it('a step on [a, b] waiting for a transaction on a that never settles, then a.close({ discard: true }): the step, and every later step on b, hang', async function () {
    const pool = pg.server.pool({ max: 2 });
    try {
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      const b = await sb.open(await sb.dir());
      await coord.check([a, b], () => undefined);
      a.transaction(() => new Promise<void>(() => undefined)).catch(() => undefined);
      await sleep(10);
      const step = coord.check([a, b], async () => { await b.writeFile('s', 'step'); });
      step.catch(() => undefined);
      await sleep(10);
      await a.close({ discard: true });
      const later = coord.check([b], async () => { await b.writeFile('l', 'later'); });
      later.catch(() => undefined);
      const r = await within(Promise.allSettled([step, later]), 2000);
      expect(r, 'steps behind a closed store wait forever').to.not.equal('pending');
      expect(codeOf(await within(step, 10))).to.equal('ECLOSED');
      expect(await within(later, 10)).to.deep.equal([1 + 1]);
    } finally {
      await pool.end();
    }
  });

  it('a step on [a, x] waiting for a transaction on a, whose fn makes a step on x: the inner step waits in call order behind the outer one (a hang)', async function () {
    const pool = pg.server.pool({ max: 3 });
    try {
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      const x = await sb.open(await sb.dir());
      await coord.check([a, x], () => undefined);
      const tx = a.transaction(async () => {
        await a.writeFile('t', 'tx');
        await sleep(50); // meanwhile a step on [a, x] is called: it waits for a
        await coord.check([x], async () => { await x.writeFile('i', 'inner step'); });
      });
      tx.catch(() => undefined);
      await sleep(10);
      const step = coord.check([a, x], async () => { await a.writeFile('s', 'step'); });
      step.catch(() => undefined);
      const r = await within(Promise.all([tx, step]), 3000);
      expect(r, 'the transaction, its inner step and the outer step wait for each other').to.not.equal('pending');
    } finally {
      await pool.end();
    }
  });

  it('a transaction on a store left in doubt: its fn waits for the decision, and retryInDoubt waits for the transaction (a hang)', async function () {
    const pool = pg.server.pool({ max: 3 });
    try {
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      await coord.check([a], () => undefined);
      const down = loseCommitAnswer(pool);
      const id = rowId();
      const step = coord.check([a], async (c) => {
        await a.writeFile('f', 'step');
        await c.query('INSERT INTO atk2 VALUES ($1)', [id]);
      });
      await expectCpError(() => step, 'EINDOUBT');
      down.on = false;
      const tx = a.transaction(async () => { await a.writeFile('t', 'tx'); });
      tx.catch(() => undefined);
      await sleep(20);
      const retried = await within(coord.retryInDoubt(), 3000);
      const txr = await within(tx, 1000);
      expect({ retried: retried === 'pending' ? 'pending' : 'settled', tx: txr === 'pending' ? 'pending' : 'settled' },
        'the transaction and retryInDoubt wait for each other').to.deep.equal({ retried: 'settled', tx: 'settled' });
      expect(codeOf(txr), 'the transaction on a store in doubt').to.equal('EINDOUBT');
      expect(await hasRow(id)).to.equal(true);
      expect(await a.readFile('f', 'utf8')).to.equal('step');
    } finally {
      await pool.end();
    }
  });

  it('a step of a second coordinator (another pool) on a store the first left in doubt: EINDOUBT, not EPREPARED ("an epoch the app prepared itself")', async function () {
    const pool1 = pg.server.pool({ max: 3 });
    const pool2 = pg.server.pool({ max: 2 });
    try {
      const coord1 = postgresCoordinator(pool1);
      const coord2 = postgresCoordinator(pool2);
      const a = await sb.open(await sb.dir());
      await coord1.check([a], () => undefined);
      const down = loseCommitAnswer(pool1);
      const step = coord1.check([a], async () => { await a.writeFile('f', 'step'); });
      await expectCpError(() => step, 'EINDOUBT');
      down.on = false;
      const err = await coord2.check([a], async () => { await a.writeFile('g', 'other'); }).then(() => null, (e: unknown) => e as { code?: string; message: string });
      expect(err?.code, err?.message).to.equal('EINDOUBT');
      await coord1.retryInDoubt();
    } finally {
      await pool1.end();
      await pool2.end();
    }
  });
});
