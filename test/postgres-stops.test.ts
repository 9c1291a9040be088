// cpfile/postgres with the server crashed (pg_ctl stop -m immediate) at each step of a coordinated
// step, then restarted: inside fn, every store prepared, the decision sent and not answered, after
// PostgreSQL's COMMIT and before the stores commit, during the stores' commit, and while the next
// open's resolve reads the decision. The oracle of every case: once the stores are settled (the
// step's own answer, retryInDoubt, or a reopen with resolveInDoubt: coord.resolve), the step's rows
// and its files come from the same decision, both or neither, and a step acknowledged is in both.
import { expect } from 'chai';
import type { Pool, PoolClient } from 'pg';
import { CpError, type PreparedEpoch } from '../lib/index.js';
import { postgresCoordinator, postgresHooks } from '../lib/postgres/index.js';
import { usePgServer } from './helpers/pg-server.js';
import { crash } from './helpers/journal.js';
import { Sandbox, type Store } from './helpers/sandbox.js';

type Stage = 'fn' | 'prepared' | 'decision-sent' | 'pg-committed' | 'store-commit' | 'resolve';
const STAGES: Record<Stage, string> = {
  'fn': 'inside fn (rows inserted, files written)',
  'prepared': 'every store prepared, before the decision',
  'decision-sent': 'the decision (its rows and COMMIT) sent, its answer not read',
  'pg-committed': "after PostgreSQL's COMMIT, before the stores commit",
  'store-commit': "while the stores commit",
  'resolve': "while the next open's resolve reads the decision (the app crashed after the COMMIT)",
};

describe('cpfile/postgres: the server crashed (stop -m immediate) at each step, then restarted', function () {
  this.timeout(120_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  let admin: Pool;
  before(async () => {
    admin = pg.server.pool({ max: 2 });
    await admin.query('CREATE TABLE stop_rows (id int PRIMARY KEY)');
  });
  afterEach(async () => {
    if (!pg.server.running) await pg.server.start();
    await sb.cleanup();
  });

  const crashServer = async (): Promise<void> => {
    await pg.server.stop('immediate');
    await pg.server.start();
  };
  const hasRow = async (id: number): Promise<boolean> => ((await admin.query('SELECT 1 FROM stop_rows WHERE id = $1', [id])).rowCount ?? 0) > 0;
  const read = async (s: Store, name: string): Promise<string | null> => ((await s.exists(name)) ? s.readFile(name, 'utf8') : null);

  /** After `p` of every store of the step resolves, `then` runs on each prepared epoch (the step's code calls store.prepare). */
  function onPrepared(stores: Store[], then: (p: PreparedEpoch, i: number) => Promise<void> | void): void {
    for (const [i, s] of stores.entries()) {
      const prepare = s.prepare.bind(s);
      (s as { prepare: unknown }).prepare = async (o?: { id?: string }) => {
        (s as { prepare: unknown }).prepare = prepare;
        const p = await prepare(o);
        await then(p, i);
        return p;
      };
    }
  }

  let rowIds = 0;
  for (const stage of Object.keys(STAGES) as Stage[]) {
    it(`${STAGES[stage]}: rows and files from one decision`, async function () {
      const pool = pg.server.pool({ max: 3 });
      const coord = postgresCoordinator(pool);
      const dirs = [await sb.dir(), await sb.dir()];
      // (noLock: the 'resolve' case crashes the stores in this process, and reopens them in it)
      // (and a store crashed in this process keeps its postgresHooks registered: its reopen goes without)
      let hooked = true;
      const open = (i: number): Promise<Store> => sb.open(dirs[i]!, { noLock: true, hooks: i === 1 && hooked ? postgresHooks(pool) : undefined, resolveInDoubt: coord.resolve });
      let stores = [await open(0), await open(1)];
      // a first step, committed: the base the second one builds on
      const first = ++rowIds;
      await coord.check(stores, async (c) => {
        for (const s of stores) await s.writeFile('f', 'first');
        await c.query('INSERT INTO stop_rows VALUES ($1)', [first]);
      });
      const id = ++rowIds;
      let crashed = false;
      let restarted: Promise<void> = Promise.resolve();
      if (stage === 'prepared') {
        let n = 0;
        onPrepared(stores, async () => { if (++n === stores.length) { await crashServer(); crashed = true; } });
      } else if (stage === 'pg-committed') {
        // the decision answered (COMMIT), then the crash, then the stores commit
        const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
        (pool as { connect: unknown }).connect = async () => {
          const c = await connect();
          const query = c.query.bind(c) as (...q: unknown[]) => Promise<unknown>;
          (c as { query: unknown }).query = async (...q: unknown[]) => {
            if (typeof q[0] !== 'string' || !q[0].startsWith('DO $cpfile$')) return query(...q);
            (c as { query: unknown }).query = query;
            (pool as { connect: unknown }).connect = connect;
            const answer = await query(...q);
            await crashServer();
            crashed = true;
            return answer;
          };
          return c;
        };
      } else if (stage === 'store-commit' || stage === 'resolve') {
        onPrepared(stores, (p, i) => {
          const commit = p.commit.bind(p);
          (p as { commit: unknown }).commit = async (o?: { sync?: boolean; hooks?: boolean }) => {
            if (stage === 'store-commit') {
              const done = commit(o);
              if (i === 0) { await crashServer(); crashed = true; }
              return done;
            }
            // 'resolve': the app dies here, every store with its epoch prepared and undecided
            await crash(stores[i]!);
            crashed = true;
            throw new CpError('EIO', 'the app crashed');
          };
        });
      } else if (stage === 'decision-sent') {
        const connect = pool.connect.bind(pool) as () => Promise<PoolClient>;
        (pool as { connect: unknown }).connect = async () => {
          const c = await connect();
          const query = c.query.bind(c) as (...q: unknown[]) => Promise<unknown>;
          (c as { query: unknown }).query = (...q: unknown[]) => {
            if (typeof q[0] !== 'string' || !q[0].startsWith('DO $cpfile$')) return query(...q);
            (c as { query: unknown }).query = query;
            (pool as { connect: unknown }).connect = connect;
            const answer = query(...q);
            // the crash races the COMMIT: it may land before or after it
            restarted = pg.server.stop('immediate').then(() => { crashed = true; return pg.server.start(); });
            return answer;
          };
          return c;
        };
      }
      const outcome = await coord.check(stores, async (c) => {
        for (const s of stores) await s.writeFile('f', `second ${stage}`);
        await c.query('INSERT INTO stop_rows VALUES ($1)', [id]);
        if (stage === 'fn') { await crashServer(); crashed = true; }
        await c.query('SELECT 1'); // a query after the crash (inside fn) fails the step
      }).then(() => 'acknowledged', (e: CpError) => e.code);
      await restarted;
      if (!pg.server.running) await pg.server.start();
      expect(crashed, 'the server was crashed at the stage').to.equal(true);
      // settle: retryInDoubt for a step in doubt, then every store reopened as the next run would
      if (outcome === 'EINDOUBT') await coord.retryInDoubt();
      for (const s of stores) await (stage === 'resolve' ? Promise.resolve() : s.close());
      if (stage === 'resolve') {
        // the server crashes while the reopen asks for the decision: EINDOUBT, nothing changed; then it decides
        let asked = 0;
        const resolveInDoubt = async (q: { id: string; epoch: number; storeId: string }): Promise<'commit' | 'abort'> => {
          if (asked++ === 0) await pg.server.stop('immediate');
          return coord.resolve(q);
        };
        const err = await sb.open(dirs[0]!, { noLock: true, resolveInDoubt }).then(() => null, (e: CpError) => e);
        expect(err?.code, 'a reopen while the server is down').to.equal('EINDOUBT');
        await pg.server.start();
        hooked = false;
      }
      stores = [await open(0), await open(1)];
      const committed = await hasRow(id);
      const files = await Promise.all(stores.map((s) => read(s, 'f')));
      const want = committed ? `second ${stage}` : 'first';
      expect(files, `row ${committed ? 'committed' : 'absent'}, step ${outcome}`).to.deep.equal([want, want]);
      if (outcome === 'acknowledged') expect(committed, 'an acknowledged step is committed').to.equal(true);
      if (stage === 'fn' || stage === 'prepared') expect(committed, 'nothing decided it').to.equal(false);
      if (stage === 'pg-committed' || stage === 'store-commit' || stage === 'resolve') expect(committed).to.equal(true);
      // the positions PostgreSQL keeps for the hooked store are those of its epoch
      const pos = await admin.query("SELECT position FROM cpfile_positions WHERE store_key = $1", [stores[1]!.id]);
      expect(pos.rows.length).to.be.at.most(1);
      // and the stores go on: a next step commits
      const next = ++rowIds;
      expect(await coord.check(stores, async (c) => { await c.query('INSERT INTO stop_rows VALUES ($1)', [next]); })).to.have.length(2);
      expect(await hasRow(next)).to.equal(true);
      for (const s of stores) await s.close();
      await pool.end().catch(() => undefined);
    });
  }
});
