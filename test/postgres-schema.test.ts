// cpfile/postgres's tables on a real server (lib/postgres/schema.ts): made on first use with their
// version record, once, also when several pools race at first use; a table of another version, a
// table cpfile did not make, and a recorded table that was dropped are EFORMAT and left alone;
// schema and table options (quoted names), and bad ones (EINVAL); resolve never makes a table.
import { expect } from 'chai';
import type { Pool } from 'pg';
import { postgresCoordinator, postgresHooks } from '../lib/postgres/index.js';
import { ensureTable, tableRef, SCHEMA_VERSION } from '../lib/postgres/schema.js';
import { preparedId } from '../lib/postgres/decisions.js';
import { usePgServer } from './helpers/pg-server.js';
import { expectCpError, Sandbox } from './helpers/sandbox.js';

describe('cpfile/postgres: tables', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  let admin: Pool;
  before(() => { admin = pg.server.pool({ max: 2 }); });

  const tablesIn = async (schema: string): Promise<string[]> => {
    const r = await admin.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema]);
    return r.rows.map((x: { table_name: string }) => x.table_name);
  };

  it('makes the decisions table and its version record at the first step, in the public schema by default', async function () {
    const pool = pg.server.pool();
    expect(await tablesIn('public')).to.deep.equal([]);
    const coord = postgresCoordinator(pool);
    const store = await sb.open(await sb.dir());
    expect(await coord.check([store], async () => undefined)).to.deep.equal([1]);
    expect(await tablesIn('public')).to.deep.equal(['cpfile_decisions', 'cpfile_schema']);
    const rec = await pool.query('SELECT table_name, kind, version FROM cpfile_schema');
    expect(rec.rows).to.deep.equal([{ table_name: 'cpfile_decisions', kind: 'decisions', version: SCHEMA_VERSION }]);
    const cols = await pool.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'cpfile_decisions' ORDER BY ordinal_position");
    expect(cols.rows.map((c: { column_name: string }) => c.column_name)).to.deep.equal(['id', 'store_id', 'epoch', 'created_at']);
    // a second coordinator on another pool finds it made
    expect(await postgresCoordinator(pg.server.pool()).check([store], async () => undefined)).to.deep.equal([2]);
  });

  it('several pools racing at first use make each table once, without errors', async function () {
    const pools = [0, 1, 2, 3, 4, 5].map(() => pg.server.pool({ max: 2 }));
    for (let round = 0; round < 3; round++) {
      const schema = `race_${round}`;
      const results = await Promise.allSettled(pools.flatMap((p) => [
        ensureTable(p, tableRef('decisions', { schema })), ensureTable(p, tableRef('positions', { schema })),
      ]));
      const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed).to.deep.equal([]);
      expect(await tablesIn(schema)).to.deep.equal(['cpfile_decisions', 'cpfile_positions', 'cpfile_schema']);
    }
  });

  it('a table of another schema version is EFORMAT, for the coordinator and for the hooks, and is left as it is', async function () {
    await ensureTable(admin, tableRef('decisions', { schema: 'v2' }));
    await ensureTable(admin, tableRef('positions', { schema: 'v2' }));
    await admin.query('UPDATE v2.cpfile_schema SET version = 2');
    const pool = pg.server.pool();   // a new pool: nothing cached
    const store = await sb.open(await sb.dir());
    const err = await expectCpError(() => postgresCoordinator(pool, { schema: 'v2' }).check([store], async () => undefined), 'EFORMAT');
    expect(err.message).to.match(/v2\.cpfile_decisions holds cpfile decisions of schema version 2; this cpfile uses decisions of version 1/);
    expect(store.epoch).to.equal(0);
    const dir2 = await sb.dir();
    const hookErr = await expectCpError(() => sb.open(dir2, { hooks: postgresHooks(pool, { schema: 'v2' }) }), 'EHOOK');
    expect((hookErr.cause as { code?: string }).code).to.equal('EFORMAT');
    const id = preparedId(tableRef('decisions', { schema: 'v2' }));
    await expectCpError(() => postgresCoordinator(pool, { schema: 'v2' }).resolve({ id, epoch: 1, storeId: store.id }), 'EFORMAT');
    expect((await admin.query('SELECT version FROM v2.cpfile_schema')).rows).to.deep.equal([{ version: 2 }, { version: 2 }]);
  });

  it('a table of that name that cpfile did not make, and a recorded table that was dropped, are EFORMAT', async function () {
    const pool = pg.server.pool();
    await pool.query('CREATE SCHEMA foreign_t');
    await pool.query('CREATE TABLE foreign_t.cpfile_decisions (x int)');
    const store = await sb.open(await sb.dir());
    const err = await expectCpError(() => postgresCoordinator(pool, { schema: 'foreign_t' }).check([store], async () => undefined), 'EFORMAT');
    expect(err.message).to.match(/exists but was not made by cpfile/);
    await postgresCoordinator(pool, { schema: 'dropped' }).check([store], async () => undefined);
    await pool.query('DROP TABLE dropped.cpfile_decisions');
    const again = pg.server.pool();
    const gone = await expectCpError(() => postgresCoordinator(again, { schema: 'dropped' }).check([store], async () => undefined), 'EFORMAT');
    expect(gone.message).to.match(/is gone \(dropped\?\)/);
    expect(await tablesIn('dropped')).to.deep.equal(['cpfile_schema']);
  });

  it('takes any schema and table names (quoted), and refuses bad ones with EINVAL', async function () {
    const pool = pg.server.pool();
    const coord = postgresCoordinator(pool, { schema: 'my "odd" schema', table: 'dé;cisions' });
    const store = await sb.open(await sb.dir());
    await coord.check([store], async () => undefined);
    const r = await pool.query('SELECT store_id, epoch FROM "my ""odd"" schema"."dé;cisions"');
    expect(r.rows).to.deep.equal([{ store_id: store.id, epoch: '1' }]);
    for (const bad of [{ table: '' }, { schema: 'x'.repeat(64) }, { table: 'cpfile_schema' }, { schema: 7 }, { table: 'a\0b' }, { schema: 'a\nb' }]) {
      await expectCpError(() => postgresCoordinator(pool, bad as never), 'EINVAL');
      await expectCpError(() => postgresHooks(pool, bad as never), 'EINVAL');
    }
    await expectCpError(() => postgresCoordinator(pool, 'public' as never), 'EINVAL');
    await expectCpError(() => postgresCoordinator({} as never), 'EINVAL');
  });

  it('resolve does not make the table: a missing one is EINDOUBT (wrong options?), never a presumed abort', async function () {
    const pool = pg.server.pool();
    const id = preparedId(tableRef('decisions', { schema: 'nowhere' }));
    const err = await expectCpError(() => postgresCoordinator(pool, { schema: 'nowhere' }).resolve({ id, epoch: 3, storeId: '0123456789abcdef' }), 'EINDOUBT');
    expect(err.message).to.match(/no cpfile decisions table nowhere\.cpfile_decisions/);
    expect(await tablesIn('nowhere')).to.deep.equal([]);
  });
});
