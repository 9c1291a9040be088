// postgresCoordinator on a real server with real stores (lib/postgres/coordinator.ts): resolve waits
// for a deciding transaction that holds a store's lock and then obeys its outcome; presumed abort;
// a step commits files of several stores and rows together, keeps one decision row per store, and
// rolls everything back when fn throws, a query fails, fn ends the transaction itself or a prepare
// fails; bad input changes nothing; steps sharing a store run one after another; steps do not nest.
import { expect } from 'chai';
import type { Pool, PoolClient } from 'pg';
import { CpError } from '../lib/index.js';
import { postgresCoordinator, postgresHooks } from '../lib/postgres/index.js';
import { STORE_LOCK_CLASS, hash32 } from '../lib/postgres/locks.js';
import { preparedId } from '../lib/postgres/decisions.js';
import { tableRef } from '../lib/postgres/schema.js';
import { usePgServer } from './helpers/pg-server.js';
import { expectCpError, Sandbox, sleep, type Store } from './helpers/sandbox.js';

describe('cpfile/postgres: coordinator', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  /** The file's one pool (the coordinators' and the tests' own queries). */
  let pool: Pool;
  before(() => { pool = pg.server.pool({ max: 10 }); });

  let ledger = 0;
  /** A fresh table for one test's rows. */
  const table = async (): Promise<string> => {
    const name = `ledger_${++ledger}`;
    await pool.query(`CREATE TABLE ${name} (id int PRIMARY KEY, note text)`);
    return name;
  };
  const ids = async (t: string): Promise<number[]> => (await pool.query(`SELECT id FROM ${t} ORDER BY id`)).rows.map((r: { id: number }) => r.id);
  const decisions = async (storeId: string): Promise<{ id: string; epoch: string }[]> =>
    (await pool.query('SELECT id, epoch FROM cpfile_decisions WHERE store_id = $1 ORDER BY epoch', [storeId])).rows;
  const read = async (s: Store, name: string): Promise<string | null> => ((await s.exists(name)) ? s.readFile(name, 'utf8') : null);

  describe('resolve', function () {
    /** An id as a coordinator of the default table makes them. */
    const idOf = (): string => preparedId(tableRef('decisions', {}));
    /** A raw deciding transaction: the store's lock (exclusive) and a decision row, not yet committed. */
    async function deciding(storeId: string, id: string, epoch: number): Promise<PoolClient> {
      const c = await pool.connect();
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [STORE_LOCK_CLASS, hash32(storeId)]);
      await c.query('INSERT INTO cpfile_decisions (id, store_id, epoch) VALUES ($1, $2, $3)', [id, storeId, epoch]);
      return c;
    }

    before(async () => {
      // the table, made by a first step
      const s = await sb.open(await sb.dir());
      await postgresCoordinator(pool).check([s], () => undefined);
      await sb.cleanup();
    });

    for (const outcome of ['commit', 'abort'] as const) {
      it(`waits while a deciding transaction holds the store's lock, then answers ${outcome} as it ${outcome === 'commit' ? 'committed' : 'rolled back'}`, async function () {
        const coord = postgresCoordinator(pool);
        const storeId = outcome === 'commit' ? 'aaaaaaaaaaaaaaa1' : 'aaaaaaaaaaaaaaa2';
        const id = idOf();
        const tx = await deciding(storeId, id, 5);
        let ended = false;
        try {
          let answer: string | null = null;
          const p = coord.resolve({ id, epoch: 5, storeId }).then((a) => { answer = a; return a; });
          await sleep(400);
          expect(answer, 'resolve answered while the deciding transaction was open').to.equal(null);
          // another store's lock is not this one's: its resolve answers at once
          expect(await coord.resolve({ id: idOf(), epoch: 1, storeId: 'bbbbbbbbbbbbbbbb' })).to.equal('abort');
          await tx.query(outcome === 'commit' ? 'COMMIT' : 'ROLLBACK');
          ended = true;
          expect(await p).to.equal(outcome);
        } finally {
          if (!ended) await tx.query('ROLLBACK').catch(() => undefined);
          tx.release();
        }
      });
    }

    it('presumes abort without a row, commits with one, and refuses a row of another epoch or store (EINDOUBT)', async function () {
        const coord = postgresCoordinator(pool);
      expect(await coord.resolve({ id: idOf(), epoch: 2, storeId: 'cccccccccccccccc' })).to.equal('abort');
      const decided = idOf();
      await pool.query("INSERT INTO cpfile_decisions (id, store_id, epoch) VALUES ($1, 'cccccccccccccccc', 2)", [decided]);
      expect(await coord.resolve({ id: decided, epoch: 2, storeId: 'cccccccccccccccc', dir: '/x' })).to.equal('commit');
      await expectCpError(() => coord.resolve({ id: decided, epoch: 3, storeId: 'cccccccccccccccc' }), 'EINDOUBT');
      await expectCpError(() => coord.resolve({ id: decided, epoch: 2, storeId: 'dddddddddddddddd' }), 'EINDOUBT');
      await expectCpError(() => coord.resolve({ id: 7, epoch: 2, storeId: 'x' } as never), 'EINVAL');
      await expectCpError(() => coord.resolve(null as never), 'EINVAL');
    });
  });

  it("resolve decides only epochs its own table's steps prepared: not the app's own prepare(), not another table's step", async function () {
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    await postgresCoordinator(pool, { table: 'other_decisions' }).check([a], async () => { await a.writeFile('f', '1'); });
    const theirs = (await pool.query('SELECT id, epoch FROM other_decisions')).rows[0] as { id: string; epoch: string };
    expect(theirs.id).to.match(/^[0-9a-f]{32}@public\.other_decisions$/);
    // that epoch is committed (its row is in other_decisions): this coordinator must not call it aborted
    const err = await expectCpError(() => coord.resolve({ id: theirs.id, epoch: 1, storeId: a.id }), 'EINDOUBT');
    expect(err.message).to.match(/not prepared by a coordinator of table public\.cpfile_decisions/);
    const own = await a.prepare();   // the app's own two-phase epoch, decided elsewhere
    await expectCpError(() => coord.resolve({ id: own.id, epoch: own.epoch, storeId: a.id }), 'EINDOUBT');
    await own.abort();
    expect(await coord.check([a], async () => undefined)).to.deep.equal([2]);
    expect((await decisions(a.id))[0]!.id).to.match(/^[0-9a-f]{32}@public\.cpfile_decisions$/);
  });

  it("commits two stores' files and fn's rows together; resolves with the epochs in the stores' order", async function () {
    const t = await table();
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    await b.writeFile('before', 'b0');
    await b.check();
    const epochs = await coord.check([b, a], async (client) => {
      await a.writeFile('invoice.txt', 'A1');
      await b.writeFile('index.json', '{"n":1}');
      await client.query(`INSERT INTO ${t} VALUES (1, 'one')`);
    });
    expect(epochs).to.deep.equal([2, 1]);
    expect([a.epoch, b.epoch]).to.deep.equal([1, 2]);
    expect(await ids(t)).to.deep.equal([1]);
    expect((await decisions(a.id)).map((d) => d.epoch)).to.deep.equal(['1']);
    expect((await decisions(b.id)).map((d) => d.epoch)).to.deep.equal(['2']);
    // durable: reopened (the journal decided, nothing to resolve)
    const [da, db] = [a.dir, b.dir];
    await a.close();
    await b.close();
    const a2 = await sb.open(da, { resolveInDoubt: coord.resolve });
    const b2 = await sb.open(db, { resolveInDoubt: coord.resolve });
    expect(await read(a2, 'invoice.txt')).to.equal('A1');
    expect(await read(b2, 'index.json')).to.equal('{"n":1}');
    expect([a2.epoch, b2.epoch]).to.deep.equal([2, 3]);   // close() made a final check
  });

  it("keeps one decision row per store: a store's next step deletes its older rows", async function () {
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    await coord.check([a, b], async () => { await a.writeFile('x', '1'); });
    await coord.check([a], async () => { await a.writeFile('x', '2'); });
    await a.check();   // a plain check between steps changes nothing there
    expect((await decisions(a.id)).map((d) => d.epoch)).to.deep.equal(['2']);
    expect((await decisions(b.id)).map((d) => d.epoch)).to.deep.equal(['1']);
    await coord.check([a, b], async () => undefined);
    expect((await decisions(a.id)).map((d) => d.epoch)).to.deep.equal(['4']);
    expect((await decisions(b.id)).map((d) => d.epoch)).to.deep.equal(['2']);
  });

  it("rolls everything back when fn throws: fn's rows, the files it changed in every store; EABORTED with fn's error as cause", async function () {
    const t = await table();
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    await coord.check([a, b], async (c) => { await a.writeFile('f', 'kept'); await c.query(`INSERT INTO ${t} VALUES (1, 'kept')`); });
    const boom = new Error('boom');
    const err = await expectCpError(() => coord.check([a, b], async (c) => {
      await a.writeFile('f', 'lost');
      await b.writeFile('g', 'lost');
      await c.query(`INSERT INTO ${t} VALUES (2, 'lost')`);
      throw boom;
    }), 'EABORTED');
    expect(err.cause).to.equal(boom);
    expect(err.details).to.deep.equal({ stage: 'fn' });
    expect(await ids(t)).to.deep.equal([1]);
    expect(await read(a, 'f')).to.equal('kept');
    expect(await read(b, 'g')).to.equal(null);
    expect([a.epoch, b.epoch]).to.deep.equal([1, 1]);
    // the stores go on: the next step is their epoch 2
    expect(await coord.check([a, b], async () => { await b.writeFile('g', 'now'); })).to.deep.equal([2, 2]);
    expect(await read(b, 'g')).to.equal('now');
  });

  it('a query of fn that failed (caught by fn) fails the step: EABORTED, nothing committed', async function () {
    const t = await table();
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    await coord.check([a], async (c) => { await c.query(`INSERT INTO ${t} VALUES (1, 'x')`); });
    const err = await expectCpError(() => coord.check([a], async (c) => {
      await a.writeFile('f', 'lost');
      await c.query(`INSERT INTO ${t} VALUES (2, 'x')`);
      await c.query(`INSERT INTO ${t} VALUES (1, 'duplicate')`).catch(() => undefined);
    }), 'EABORTED');
    expect(err.message).to.match(/current transaction is aborted/);
    expect(err.details).to.deep.equal({ stage: 'fn' });
    expect(await ids(t)).to.deep.equal([1]);
    expect(await read(a, 'f')).to.equal(null);
    expect(a.epoch).to.equal(1);
  });

  describe('fn may not end or leave the transaction', function () {
    const cases: [string, (c: PoolClient, t: string) => Promise<unknown>][] = [
      ['COMMIT', (c) => c.query('COMMIT')],
      ['commit after a comment', (c) => c.query('/* done */ -- now\n commit')],
      ['ROLLBACK in a config object', (c) => c.query({ text: 'ROLLBACK' })],
      ['BEGIN', (c) => c.query('BEGIN')],
      ['END', (c) => c.query('END')],
      ['an INSERT then a COMMIT in one string', (c, t) => c.query(`INSERT INTO ${t} VALUES (9, 'a;b'); COMMIT`)],
      ['release()', async (c) => c.release()],
      ['end()', (c) => c.end()],
      ['a COMMIT the guard does not see (its text changes after the check): the transaction id tells', (c) => {
        let reads = 0;
        return c.query({ get text() { return reads++ === 0 ? 'SELECT 1' : 'COMMIT'; } } as never);
      }],
    ];
    for (const [what, misuse] of cases) {
      it(`${what}: refused, the step rolled back (EABORTED), the files it changed too`, async function () {
        const t = await table();
        const coord = postgresCoordinator(pool);
        const a = await sb.open(await sb.dir());
        let inside: unknown = null;
        const err = await expectCpError(() => coord.check([a], async (c) => {
          await a.writeFile('f', 'lost');
          await c.query(`INSERT INTO ${t} VALUES (1, 'lost')`);
          try {
            await misuse(c, t);
          } catch (e) {
            inside = e;   // even when fn swallows the refusal, the step is rolled back
          }
        }), 'EABORTED');
        expect((err.cause as CpError).code).to.equal('EINVAL');
        const unseen = what.startsWith('a COMMIT the guard');
        if (!unseen) expect((inside as CpError)?.code, 'refused inside fn').to.equal('EINVAL');
        // a COMMIT the guard could not see did commit what fn wrote before it; the files are rolled back all the same
        expect(await ids(t)).to.deep.equal(unseen ? [1] : []);
        expect(await read(a, 'f')).to.equal(null);
        expect(a.epoch).to.equal(0);
      });
    }

    it('a COMMIT and a BEGIN the guard does not see: the decision finds another transaction and rolls it back (EABORTED, fn), what fn wrote after them too', async function () {
      const t = await table();
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      const err = await expectCpError(() => coord.check([a], async (c) => {
        await a.writeFile('f', 'lost');
        await c.query(`INSERT INTO ${t} VALUES (1, 'committed by fn')`);
        let reads = 0;
        await c.query({ get text() { return reads++ === 0 ? 'SELECT 1' : 'COMMIT; BEGIN'; } } as never);
        await c.query(`INSERT INTO ${t} VALUES (2, 'in the new transaction')`);
      }), 'EABORTED');
      expect(err.details).to.deep.equal({ stage: 'fn' });
      expect((err.cause as CpError).code).to.equal('EINVAL');
      expect(err.message).to.match(/fn ended the step's transaction/);
      expect(await ids(t)).to.deep.equal([1]);
      expect(await decisions(a.id)).to.deep.equal([]);
      expect(await read(a, 'f')).to.equal(null);
      expect(a.epoch).to.equal(0);
      expect(await coord.check([a], async (c) => { await c.query(`INSERT INTO ${t} VALUES (3, 'next')`); })).to.deep.equal([1]);
      expect(await ids(t)).to.deep.equal([1, 3]);
    });

    it('SAVEPOINT, ROLLBACK TO and RELEASE are fine; the client kept by fn is revoked after it', async function () {
      const t = await table();
      const coord = postgresCoordinator(pool);
      const a = await sb.open(await sb.dir());
      let kept: PoolClient | null = null;
      await coord.check([a], async (c) => {
        kept = c;
        await c.query(`INSERT INTO ${t} VALUES (1, 'x')`);
        await c.query('SAVEPOINT s1');
        await c.query(`INSERT INTO ${t} VALUES (2, 'x')`);
        await c.query('ROLLBACK TO SAVEPOINT s1');
        await c.query('RELEASE s1');
        expect(c.escapeLiteral("it's")).to.equal("'it''s'");
      });
      expect(await ids(t)).to.deep.equal([1]);
      expect(() => kept!.query('SELECT 1')).to.throw(TypeError, /revoked/);
    });
  });

  it('refuses bad input before anything happens: EINVAL, and ECLOSED for a closed store', async function () {
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const closed = await sb.open(await sb.dir());
    await closed.close();
    await a.writeFile('pending', 'p');
    const fn = async (): Promise<void> => undefined;
    await expectCpError(() => coord.check([], fn), 'EINVAL');
    await expectCpError(() => coord.check(a as never, fn), 'EINVAL');
    await expectCpError(() => coord.check([a], undefined as never), 'EINVAL');
    await expectCpError(() => coord.check([a, a], fn), 'EINVAL');
    await expectCpError(() => coord.check([a, {} as never], fn), 'EINVAL');
    await expectCpError(() => coord.check([a, closed], fn), 'ECLOSED');
    const other = postgresHooks(pg.server.pool({ max: 1 }));
    const hooked = await sb.open(await sb.dir(), { hooks: other });
    const err = await expectCpError(() => coord.check([hooked], fn), 'EINVAL');
    expect(err.message).to.match(/another pool/);
    expect(a.epoch).to.equal(0);
    expect(await read(a, 'pending')).to.equal('p');   // still pending, for the next check
  });

  it('steps sharing a store run one after another in call order; steps do not nest (EINVAL)', async function () {
    const t = await table();
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    const order: string[] = [];
    const step = (name: string, stores: Store[]) => coord.check(stores, async (c) => {
      order.push(`${name} in`);
      await sleep(50);
      await c.query(`INSERT INTO ${t} VALUES ($1, $2)`, [order.length, name]);
      order.push(`${name} out`);
    });
    const r = await Promise.all([step('1', [a]), step('2', [a, b]), step('3', [b])]);
    expect(r).to.deep.equal([[1], [2, 1], [2]]);
    expect(order).to.deep.equal(['1 in', '1 out', '2 in', '2 out', '3 in', '3 out']);
    let nested: unknown = null;
    await expectCpError(() => coord.check([a], async () => {
      nested = await coord.check([b], async () => undefined).catch((e) => e);
      throw nested;
    }), 'EABORTED');
    expect((nested as CpError).code).to.equal('EINVAL');
    expect(await coord.check([b], async () => undefined)).to.deep.equal([3]);
  });

  it("steps on one store through coordinators of two databases (whose locks do not meet) still run one after another", async function () {
    await pool.query('CREATE DATABASE second_db');
    const other = pg.server.pool({ database: 'second_db', max: 2 });
    const [c1, c2] = [postgresCoordinator(pool), postgresCoordinator(other)];
    const a = await sb.open(await sb.dir());
    const events: string[] = [];
    const step = (c: typeof c1, name: string) => c.check([a], async () => {
      events.push(`${name} fn`);
      await a.appendFile('log', `${name}\n`);
      await sleep(150);
    }).then((e) => { events.push(`${name} done`); return e; });
    expect(await Promise.all([step(c1, 'one'), step(c2, 'two')])).to.deep.equal([[1], [2]]);
    // otherwise both fns write into epoch 1, and its decision is one database's alone
    expect(events).to.deep.equal(['one fn', 'one done', 'two fn', 'two done']);
    await pg.server.release(other);
  });

  it('the deciding transaction commits synchronously: synchronous_commit off is raised to on for it, a stronger setting stays', async function () {
    const a = await sb.open(await sb.dir());
    for (const [session, inStep] of [['off', 'on'], ['local', 'local'], ['remote_apply', 'remote_apply']]) {
      const p = pg.server.pool({ max: 1, options: `-c synchronous_commit=${session}` });
      let seen = '';
      await postgresCoordinator(p).check([a], async (c) => { seen = (await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit; });
      expect(seen, `session ${session}`).to.equal(inStep);
      expect((await p.query('SHOW synchronous_commit')).rows[0].synchronous_commit, 'only for the step').to.equal(session);
      await pg.server.release(p);
    }
  });

  it('a prepare that fails rolls the step back: the stores that prepared are aborted, EABORTED (prepare)', async function () {
    const t = await table();
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    const injected = new CpError('EIO', 'injected prepare failure');
    b.prepare = () => Promise.reject(injected);
    const err = await expectCpError(() => coord.check([a, b], async (c) => {
      await a.writeFile('f', 'lost');
      await b.writeFile('g', 'lost');
      await c.query(`INSERT INTO ${t} VALUES (1, 'lost')`);
    }), 'EABORTED');
    expect(err.cause).to.equal(injected);
    expect(err.details).to.deep.equal({ stage: 'prepare' });
    expect(await ids(t)).to.deep.equal([]);
    expect(await decisions(a.id)).to.deep.equal([]);
    expect(await read(a, 'f')).to.equal(null);
    expect(await read(b, 'g')).to.equal(null);
    expect(a.epoch).to.equal(0);
    // a's abort was recorded: it goes on at epoch 1
    expect(await a.check()).to.equal(1);
  });
});
