// postgresHooks with real stores on a real server (lib/postgres/hooks.ts): positions, states and
// user data after plain checks and after reopening; a coordinated step writes the positions in its
// deciding transaction instead of the store's update/commit hooks, and a rolled-back step leaves
// the rows as they were; keys, one hooks object per open store, user data that is not JSON, options.
import { expect } from 'chai';
import type { Pool } from 'pg';
import { postgresCoordinator, postgresHooks, type PostgresHooks } from '../lib/postgres/index.js';
import { usePgServer } from './helpers/pg-server.js';
import { expectCpError, Sandbox } from './helpers/sandbox.js';

interface Row { name: string; position: number; state: string; userdata: unknown }

describe('cpfile/postgres: hooks', function () {
  this.timeout(60_000);
  const pg = usePgServer();
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());
  let pool: Pool;
  before(() => { pool = pg.server.pool({ max: 10 }); });

  const rows = async (key: string): Promise<Row[]> =>
    (await pool.query('SELECT name, position, state, userdata FROM cpfile_positions WHERE store_key = $1 ORDER BY name', [key]))
      .rows.map((r: Row & { position: string }) => ({ ...r, position: Number(r.position) }));

  /** Count the hooks the store calls (and what query answers). */
  function spy(h: PostgresHooks): { calls: string[]; answers: unknown[] } {
    const out = { calls: [] as string[], answers: [] as unknown[] };
    for (const k of ['init', 'insert', 'update', 'query', 'commit', 'rollback', 'fini'] as const) {
      const f = (h[k] as (...a: unknown[]) => unknown).bind(h);
      (h as unknown as Record<string, unknown>)[k] = async (...a: unknown[]) => {
        out.calls.push(k);
        const r = await f(...a);
        if (k === 'query') out.answers.push(r);
        return r;
      };
    }
    return out;
  }

  it('keeps positions, states and user data of every entry, keyed by the store id, across checks and a reopen', async function () {
    const dir = await sb.dir();
    const ud = (name: string) => ({ owner: name.toUpperCase(), n: [1, 2] });
    const store = await sb.open(dir, { hooks: postgresHooks(pool, { userdata: ud }) });
    const a = await store.open('a.log', 'a+');
    const b = await store.open('dir/b.bin', 'w+');
    await a.write('0123456789');
    await b.write('xyz');
    await store.check();
    expect(await rows(store.id)).to.deep.equal([
      { name: 'a.log', position: 10, state: 'open', userdata: { owner: 'A.LOG', n: [1, 2] } },
      { name: 'dir/b.bin', position: 3, state: 'open', userdata: { owner: 'DIR/B.BIN', n: [1, 2] } },
    ]);
    b.seek(1);
    await a.close();
    await store.check();
    expect(await rows(store.id)).to.deep.equal([
      { name: 'a.log', position: 10, state: 'closed', userdata: { owner: 'A.LOG', n: [1, 2] } },
      { name: 'dir/b.bin', position: 1, state: 'open', userdata: { owner: 'DIR/B.BIN', n: [1, 2] } },
    ]);
    await store.rollback();   // nothing pending: the rows stay
    const id = store.id;
    await b.close();
    await store.close();
    // reopened: query answers the rows (no insert), and the user data survives
    const h2 = postgresHooks(pool, { userdata: () => 'not used: the entry exists' });
    const seen = spy(h2);
    const again = await sb.open(dir, { hooks: h2 });
    expect(again.id).to.equal(id);
    const a2 = await again.open('a.log', 'r+');
    expect(seen.calls).to.include('query').and.not.include('insert');
    expect(seen.answers).to.deep.equal([{ position: 10, userdata: { owner: 'A.LOG', n: [1, 2] } }]);
    a2.seek(4);
    await again.check();
    expect((await rows(id))[0]).to.deep.equal({ name: 'a.log', position: 4, state: 'open', userdata: { owner: 'A.LOG', n: [1, 2] } });
  });

  it('recovery passes the entries a crashed run left open again, and their rows keep their user data', async function () {
    const dir = await sb.dir();
    const store = await sb.open(dir, { hooks: postgresHooks(pool, { userdata: () => ({ kept: true }) }) });
    const f = await store.open('resume.dat', 'w');
    await f.write('abcdef');
    await store.check();
    // a crash: the store is dropped without close (discard keeps the last check, as a crash would)
    await store.close({ discard: true });
    await pool.query('UPDATE cpfile_positions SET position = 0 WHERE store_key = $1', [store.id]);   // a stale row
    const again = await sb.open(dir, { hooks: postgresHooks(pool) });
    expect(await rows(again.id)).to.deep.equal([{ name: 'resume.dat', position: 6, state: 'open', userdata: { kept: true } }]);
  });

  it("a coordinated step writes the positions in its deciding transaction: the store calls no update/commit hook, the rows are the epoch's", async function () {
    const coord = postgresCoordinator(pool);
    const h = postgresHooks(pool, { userdata: (n) => `ud:${n}` });
    const store = await sb.open(await sb.dir(), { hooks: h, resolveInDoubt: coord.resolve });
    const seen = spy(h);
    const f = await store.open('f', 'w+');
    await coord.check([store], async () => {
      await f.write('12345');
      const g = await store.open('g', 'w');
      await g.write('1');
      await g.close();
    });
    expect(seen.calls.filter((c) => c === 'update' || c === 'commit')).to.deep.equal([]);
    expect(await rows(store.id)).to.deep.equal([
      { name: 'f', position: 5, state: 'open', userdata: 'ud:f' },
      { name: 'g', position: 1, state: 'closed', userdata: 'ud:g' },
    ]);
    // a step rolled back leaves the rows as they were
    await expectCpError(() => coord.check([store], async () => {
      await f.write('678');
      throw new Error('no');
    }), 'EABORTED');
    expect((await rows(store.id))[0]!.position).to.equal(5);
    expect(f.tell()).to.equal(5);
    // and a plain check goes through the hooks again
    await f.write('6');
    await store.check();
    expect(seen.calls.filter((c) => c === 'update' || c === 'commit')).to.deep.equal(['update', 'commit']);
    expect((await rows(store.id))[0]!.position).to.equal(6);
  });

  it("a step's positions go in its decision's text as literals: names and user data with quotes, backslashes, semicolons and non-ASCII arrive as they are, also with standard_conforming_strings off", async function () {
    const names = ["it's", 'back\\slash', 'dé;jà vu', "'); DROP TABLE cpfile_positions; --", 'emoji 😀', '$cpfile$ $$ "q"'];
    for (const scs of ['on', 'off']) {
      const p = pg.server.pool({ max: 2, options: `-c standard_conforming_strings=${scs}` });
      const coord = postgresCoordinator(p);
      const h = postgresHooks(p, { key: `odd-${scs}`, userdata: (n) => ({ n, s: "a'b\\c\"d\u00e9\n" }) });
      const store = await sb.open(await sb.dir(), { hooks: h, resolveInDoubt: coord.resolve });
      await coord.check([store], async () => {
        for (const [i, n] of names.entries()) {
          const f = await store.open(n, 'w');
          await f.write('x'.repeat(i + 1));
          await f.close();
        }
      });
      const byName = (a: Row, b: Row): number => (a.name < b.name ? -1 : 1);
      expect((await rows(`odd-${scs}`)).sort(byName), `standard_conforming_strings ${scs}`).to.deep.equal(
        names.map((n, i) => ({ name: n, position: i + 1, state: 'closed', userdata: { n, s: "a'b\\c\"d\u00e9\n" } })).sort(byName));
      await store.close();
      await pg.server.release(p);
    }
  });

  it('takes a key of the app; one hooks object serves one open store; user data that is not JSON fails the open', async function () {
    const h = postgresHooks(pool, { key: 'ledger-store' });
    const store = await sb.open(await sb.dir(), { hooks: h });
    const f = await store.open('x', 'w');
    await f.write('ab');
    await store.check();
    expect(await rows('ledger-store')).to.deep.equal([{ name: 'x', position: 2, state: 'open', userdata: null }]);
    expect(await rows(store.id)).to.deep.equal([]);
    const second = await sb.dir();
    const twice = await expectCpError(() => sb.open(second, { hooks: h }), 'EHOOK');
    expect(twice.message).to.match(/one hooks object per store/);
    const bad = await sb.open(await sb.dir(), { hooks: postgresHooks(pool, { userdata: () => 10n }) });
    const err = await expectCpError(() => bad.open('y', 'w'), 'EHOOK');
    expect((err.cause as { code?: string }).code).to.equal('EINVAL');
    expect(await bad.exists('y')).to.equal(false);
  });

  it('refuses bad options (EINVAL)', async function () {
    for (const bad of [{ key: '' }, { key: 5 }, { key: 'k'.repeat(1001) }, { userdata: 'x' }]) {
      await expectCpError(() => postgresHooks(pool, bad as never), 'EINVAL');
    }
    await expectCpError(() => postgresHooks(undefined as never), 'EINVAL');
    await expectCpError(() => postgresHooks(pool, null as never), 'EINVAL');
    await expectCpError(() => postgresHooks(pool).key, 'EINVAL');   // no store yet
  });
});
