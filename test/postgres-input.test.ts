// cpfile/postgres misuse on a real server (lib/postgres/coordinator.ts, lib/store/hold.ts): a store
// closed while a step's fn runs, a store in an epoch the app prepared itself, the app ending part of
// a step's epoch itself (check, rollback, prepare, a decision) from inside fn or elsewhere, steps and
// transactions of one store inside each other. The oracle of every case: the step's rows and its
// files come from the same decision (both or neither), and a refusal changes nothing.
import { expect } from 'chai';
import type { Pool } from 'pg';
import { CpError } from '../lib/index.js';
import { postgresCoordinator } from '../lib/postgres/index.js';
import { usePgServer } from './helpers/pg-server.js';
import { expectCpError, Sandbox, sleep, type Store } from './helpers/sandbox.js';

describe('cpfile/postgres: misuse of the stores of a step', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  let pool: Pool;
  before(async () => {
    pool = pg.server.pool({ max: 10 });
    await pool.query('CREATE TABLE rows_in (id int PRIMARY KEY)');
  });

  let next = 0;
  const rowId = (): number => ++next;
  const hasRow = async (id: number): Promise<boolean> => ((await pool.query('SELECT 1 FROM rows_in WHERE id = $1', [id])).rowCount ?? 0) > 0;
  const read = async (s: Store, name: string): Promise<string | null> => ((await s.exists(name)) ? s.readFile(name, 'utf8') : null);
  /** The file as the store's next open sees it (what is durable). */
  const durable = async (dir: string, name: string): Promise<string | null> => {
    const s = await sb.open(dir);
    try {
      return await read(s, name);
    } finally {
      await s.close();
    }
  };

  it('close() (from elsewhere) while fn runs waits for the step: rows and files commit together, then the store closes', async function () {
    const coord = postgresCoordinator(pool);
    const dir = await sb.dir();
    const a = await sb.open(dir);
    const id = rowId();
    const step = coord.check([a], async (c) => {
      await a.writeFile('f', 'one');
      await sleep(40);
      await a.appendFile('f', '+two'); // still the step's, after close() was called
      await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
    });
    await sleep(15);
    const closed = a.close(); // before: its final check committed 'f' while the step could still roll back
    const epochs = await step;
    await closed;
    expect(epochs).to.deep.equal([1]);
    expect(await hasRow(id)).to.equal(true);
    expect(await durable(dir, 'f')).to.equal('one+two');
  });

  it('close() (from elsewhere) while fn runs, and fn then fails: neither the rows nor the files', async function () {
    const coord = postgresCoordinator(pool);
    const dir = await sb.dir();
    const a = await sb.open(dir);
    await a.writeFile('base', 'b');
    await a.check();
    const id = rowId();
    const step = coord.check([a], async (c) => {
      await a.writeFile('f', 'one');
      await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
      await sleep(40);
      throw new Error('app failure');
    });
    await sleep(15);
    const closed = a.close();
    const err = await expectCpError(() => step, 'EABORTED');
    expect((err.cause as Error).message).to.equal('app failure');
    await closed;
    expect(await hasRow(id)).to.equal(false);
    expect(await durable(dir, 'f')).to.equal(null);
    expect(await durable(dir, 'base')).to.equal('b');
  });

  it('close() inside fn is EBUSY (it would wait for fn); the step goes on', async function () {
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const id = rowId();
    await coord.check([a], async (c) => {
      await a.writeFile('f', 'one');
      await expectCpError(() => a.close(), 'EBUSY');
      await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
    });
    expect(await hasRow(id)).to.equal(true);
    expect(await read(a, 'f')).to.equal('one');
  });

  it('close({ discard: true }) (from elsewhere) while fn runs: the step rolls back everywhere (EABORTED), the files are discarded', async function () {
    const coord = postgresCoordinator(pool);
    const dir = await sb.dir();
    const a = await sb.open(dir);
    const id = rowId();
    const step = coord.check([a], async (c) => {
      await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
      await a.writeFile('f', 'one');
      await sleep(40);
    });
    await sleep(15);
    const closed = a.close({ discard: true });
    const err = await expectCpError(() => step, 'EABORTED');
    expect(err.message).to.match(/prepare|closed/i);
    await closed;
    expect(await hasRow(id)).to.equal(false);
    expect(await durable(dir, 'f')).to.equal(null);
  });

  it("a store in an epoch the app prepared (or is preparing) itself: EPREPARED, fn not called, nothing changed; once decided, steps go on", async function () {
    const coord = postgresCoordinator(pool);
    for (const when of ['prepared', 'preparing'] as const) {
      const dir = await sb.dir();
      const a = await sb.open(dir);
      const b = await sb.open(await sb.dir());
      await a.writeFile('app', 'mine');
      const pending = a.prepare({ id: `app-${when}` });
      if (when === 'prepared') await pending;
      let called = false;
      const err = await expectCpError(() => coord.check([b, a], async () => { called = true; }), 'EPREPARED');
      expect(err.message).to.match(/prepared/);
      expect(called).to.equal(false);
      expect(b.epoch).to.equal(0);
      const p = await pending;
      expect(a.prepared).to.equal(p);
      await p.abort();
      expect(await read(a, 'app')).to.equal(null);
      const id = rowId();
      expect(await coord.check([b, a], async (c) => {
        await a.writeFile('f', 'step');
        await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
      })).to.deep.equal([1, 1]);
      expect(await hasRow(id)).to.equal(true);
      await a.close();
      await b.close();
      expect(await durable(dir, 'f')).to.equal('step');
    }
  });

  it("check(), rollback(), prepare() on a step's store, from fn or from elsewhere while it runs: EBUSY; the step stays whole", async function () {
    const coord = postgresCoordinator(pool);
    for (const from of ['fn', 'elsewhere'] as const) {
      for (const ending of ['commits', 'fails'] as const) {
        const dir = await sb.dir();
        const a = await sb.open(dir);
        const id = rowId();
        let release!: () => void;
        const gate = new Promise<void>((r) => { release = r; });
        const tryAll = async (): Promise<void> => {
          for (const call of ['check', 'rollback', 'prepare'] as const) {
            const e = await expectCpError(() => a[call](), 'EBUSY');
            expect(e.message).to.match(/a coordinated step runs on this store/);
          }
        };
        const step = coord.check([a], async (c) => {
          await a.writeFile('f', 'one');
          await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
          if (from === 'fn') await tryAll();
          else await gate;
          await a.appendFile('f', '+two');
          if (ending === 'fails') throw new Error('app failure');
        });
        if (from === 'elsewhere') {
          await sleep(30);
          await tryAll();
          release();
        }
        const out = await step.then(() => 'committed', (e: CpError) => e.code);
        expect(out, `${from} ${ending}`).to.equal(ending === 'commits' ? 'committed' : 'EABORTED');
        expect(await hasRow(id)).to.equal(ending === 'commits');
        expect(a.epoch).to.equal(ending === 'commits' ? 1 : 0);
        expect(await a.check()).to.equal(a.epoch); // free again
        await a.close();
        expect(await durable(dir, 'f')).to.equal(ending === 'commits' ? 'one+two' : null);
      }
    }
  });

  it("the decision of a step's prepared epoch is the step's: store.prepared.commit()/abort() by the app is EBUSY meanwhile", async function () {
    for (const outcome of ['commit', 'abort'] as const) {
      const own = pg.server.pool({ max: 2 });
      const coord = postgresCoordinator(own);
      const dir = await sb.dir();
      const a = await sb.open(dir);
      const id = rowId();
      const tried: string[] = [];
      // the app's code elsewhere (started outside the step, so not in its async context): it acts when signalled
      let signal!: () => void;
      let done!: () => void;
      const acted = new Promise<void>((r) => { done = r; });
      const go = new Promise<void>((r) => { signal = r; });
      void (async () => {
        await go;
        const p = a.prepared;
        tried.push(p ? 'prepared' : 'not prepared');
        for (const d of ['commit', 'abort'] as const) {
          tried.push(await p![d]().then(() => `${d} went through`, (x: CpError) => x.code));
        }
        done();
      })();
      // between the prepares and the decision: the decision's round trip (DO $cpfile$ ... COMMIT) is about to go
      const connect = own.connect.bind(own) as () => Promise<import('pg').PoolClient>;
      (own as { connect: unknown }).connect = async () => {
        const c = await connect();
        const query = c.query.bind(c) as (...q: unknown[]) => Promise<unknown>;
        (c as { query: unknown }).query = async (...q: unknown[]) => {
          if (typeof q[0] === 'string' && q[0].startsWith('DO $cpfile$')) {
            (c as { query: unknown }).query = query;
            signal();
            await acted;
            if (outcome === 'abort') throw Object.assign(new Error('refused'), { severity: 'ERROR' });
          }
          return query(...q);
        };
        return c;
      };
      const r = await coord.check([a], async (c) => {
        await a.writeFile('f', 'x');
        await c.query('INSERT INTO rows_in VALUES ($1)', [id]);
      }).then(() => 'committed', (e: CpError) => e.code);
      expect(tried).to.deep.equal(['prepared', 'EBUSY', 'EBUSY']);
      expect(r).to.equal(outcome === 'commit' ? 'committed' : 'EABORTED');
      expect(await hasRow(id)).to.equal(outcome === 'commit');
      expect(a.epoch).to.equal(outcome === 'commit' ? 1 : 0);
      await a.close();
      expect(await durable(dir, 'f')).to.equal(outcome === 'commit' ? 'x' : null);
      await own.end();
    }
  });

  it('a step inside the fn of a transaction on the same store, and a transaction inside a step\'s fn: EINVAL (each would wait for the other)', async function () {
    const coord = postgresCoordinator(pool);
    const a = await sb.open(await sb.dir());
    const b = await sb.open(await sb.dir());
    const id = rowId();
    const inner = await a.transaction(async () => {
      await a.writeFile('t', 'tx');
      const e = await expectCpError(() => coord.check([b, a], async () => undefined), 'EINVAL');
      // another store's step is fine inside it
      await coord.check([b], async (c) => { await c.query('INSERT INTO rows_in VALUES ($1)', [id]); await b.writeFile('s', 'step'); });
      return e.message;
    });
    expect(inner).to.match(/would wait/);
    expect(a.epoch).to.equal(1);
    expect(b.epoch).to.equal(1);
    expect(await hasRow(id)).to.equal(true);
    await coord.check([a], async () => {
      await expectCpError(() => a.transaction(async () => undefined), 'EINVAL');
      await a.writeFile('u', 'step');
    });
    expect(a.epoch).to.equal(2);
    expect(await read(a, 'u')).to.equal('step');
  });
});
