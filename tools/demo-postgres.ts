// cpfile + PostgreSQL demo (npm run demo:postgres): an upload service keeps each upload's bytes in a
// file of a cpfile store and its row in PostgreSQL, and commits both as one step through
// postgresCoordinator. The writer process is killed in the worst place there is: after PostgreSQL's
// COMMIT (the row is there) and before the store's own commit (the file's epoch is only prepared).
// Reopening the store asks the coordinator, which finds the decision row, and recovery completes the
// file: rows and files agree, both or neither, at every step.
//
// It starts a private PostgreSQL server of its own (a temporary data directory and Unix socket, as the
// tests do; PostgreSQL server binaries must be installed), or uses $DATABASE_URL when it is set.
//
//   node dist/tools/demo-postgres.js                   run the demo
//   node dist/tools/demo-postgres.js writer DIR CONN   (internal) the writer child

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openStore, type Store } from '../lib/index.js';
import { postgresCoordinator } from '../lib/postgres/index.js';
import { PgServer } from './pg-server.js';

const UPLOADS = 5; // the writer commits uploads 1..4; upload 5 is killed after PostgreSQL's COMMIT
const TABLE = 'demo_uploads';

/** Upload n's bytes: deterministic, a few KiB. */
function upload(n: number): Buffer {
  const b = Buffer.alloc(2048 + n * 1000);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + n * 7) & 0xff;
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex').slice(0, 16);

function poolFor(conn: string): pg.Pool {
  const pool = conn.startsWith('postgres') ? new pg.Pool({ connectionString: conn }) : new pg.Pool(JSON.parse(conn) as pg.PoolConfig);
  pool.on('error', () => undefined);
  return pool;
}

/** The child: one step per upload; the last one dies between PostgreSQL's COMMIT and the store's commit. */
async function writer(dir: string, conn: string): Promise<void> {
  const say = (s: string): void => { process.stdout.write(`${s}\n`); };
  const pool = poolFor(conn);
  const coord = postgresCoordinator(pool);
  const store = await openStore(dir, { resolveInDoubt: coord.resolve });
  for (let n = 1; n <= UPLOADS; n++) {
    const data = upload(n);
    const name = `photo-${n}.jpg`;
    if (n === UPLOADS) {
      // The decision is durable in PostgreSQL once its COMMIT returns; the coordinator commits the
      // store after that. Die right there: the worst moment for a hand-written "write file, insert row".
      const prepare = store.prepare.bind(store);
      store.prepare = async (...a: Parameters<Store['prepare']>) => {
        const p = await prepare(...a);
        p.commit = () => {
          say(`upload ${n}: PostgreSQL committed its row; killing the writer before the store commits ${name}`);
          process.kill(process.pid, 'SIGKILL');
          return new Promise<number>(() => undefined);
        };
        return p;
      };
    }
    const [epoch] = await coord.check([store], async (client) => {
      await store.writeFile(name, data);
      await client.query(`INSERT INTO ${TABLE} (name, size, sha) VALUES ($1, $2, $3)`, [name, data.length, sha(data)]);
    });
    say(`upload ${n}: ${name} (${data.length} bytes) and its row committed together as epoch ${epoch}`);
  }
}

async function demo(): Promise<number> {
  const log = (s = ''): void => { console.log(s); };
  let server: PgServer | null = null;
  let conn = process.env.DATABASE_URL ?? '';
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpfile-demo-pg-'));
  let pool: pg.Pool | null = null;
  try {
    if (!conn) {
      log('starting a private PostgreSQL server (temporary data directory, Unix socket only, fsync on)...');
      server = await PgServer.create();
      conn = JSON.stringify(server.config());
    } else {
      log('using the PostgreSQL server of $DATABASE_URL');
    }
    pool = poolFor(conn);
    await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await pool.query(`CREATE TABLE ${TABLE} (name text PRIMARY KEY, size int NOT NULL, sha text NOT NULL)`);
    log(`store: ${dir}`);
    log('');

    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'writer', dir, conn], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d: Buffer) => process.stdout.write(`  writer| ${d.toString()}`));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    log(`writer ended by ${signal ?? 'exit'}`);
    log('');

    const rows = (await pool.query<{ name: string; size: number; sha: string }>(`SELECT name, size, sha FROM ${TABLE} ORDER BY name`)).rows;
    log(`PostgreSQL has ${rows.length} rows: ${rows.map((r) => r.name).join(', ')}`);
    const onDisk = (await fsp.readdir(dir)).filter((n) => n.endsWith('.jpg')).sort();
    log(`the store directory has ${onDisk.length} applied files so far: ${onDisk.join(', ') || 'none'} (committed epochs reach the files in the background; the last one is only prepared, its decision is in PostgreSQL)`);
    log('');

    log('opening the store: recovery finds the epoch in doubt and asks the coordinator (resolveInDoubt: coord.resolve)...');
    const coord = postgresCoordinator(pool);
    const store = await openStore(dir, { resolveInDoubt: coord.resolve });
    const d = store.recovery.inDoubt;
    log(`  epoch ${d?.epoch} (id ${d?.id}) was in doubt; the coordinator said ${d?.decision}; the store is at epoch ${store.epoch}`);
    let ok = rows.length === UPLOADS && d?.decision === 'commit';
    for (const r of rows) {
      const data = await store.readFile(r.name).catch(() => null);
      const same = data !== null && data.length === r.size && sha(data) === r.sha;
      log(`  ${r.name}: row ${r.size} bytes ${r.sha}, file ${data ? `${data.length} bytes ${sha(data)}` : 'missing'}  ${same ? 'ok' : 'MISMATCH'}`);
      ok &&= same;
    }
    const files = (await store.readdir('')).filter((n) => n.endsWith('.jpg'));
    ok &&= files.length === rows.length;
    await store.close();
    log('');
    log(ok ? `every row has its file and every file its row: ${rows.length} uploads, none half-done` : 'FAILED: rows and files disagree');
    return ok ? 0 : 1;
  } finally {
    await pool?.end().catch(() => undefined);
    await server?.destroy().catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'writer') {
  await writer(process.argv[3]!, process.argv[4]!);
  process.exit(0);
} else {
  process.exitCode = await demo();
}
