// P9 (issue #14): one 4 KiB file write plus one row, committed atomically through postgresCoordinator,
// against the same row committed alone, the usual non-atomic way (write and fdatasync the file, then
// insert the row), and one raw 4 KiB append + fdatasync. Target: P9's median at most the row alone
// plus one raw fdatasync. The four subjects run interleaved, commit by commit, on one private
// PostgreSQL server (fsync on, synchronous_commit on) and one file system, so they meet the same disk.
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openStore } from '../../lib/index.js';
import { postgresCoordinator } from '../../lib/postgres/index.js';
import { PgServer } from '../pg-server.js';

export interface P9Options {
  /** Commits per subject per repetition. */
  commits: number;
  reps: number;
  log?: (msg: string) => void;
}

export type P9Subject = 'cpfile+pg' | 'row-alone' | 'file-then-row' | 'raw-fdatasync';
export const P9_SUBJECTS: readonly P9Subject[] = ['cpfile+pg', 'row-alone', 'file-then-row', 'raw-fdatasync'];

export interface P9Result {
  /** Latencies in ms, every repetition's, per subject. */
  samples: Record<P9Subject, number[]>;
  /** Per repetition: the median of each subject. */
  repMedians: Record<P9Subject, number>[];
  server: string;
  skipped?: string;
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]! : NaN;
};

/** Run P9; resolves with `skipped` set when no PostgreSQL server can be started. */
export async function runP9(o: P9Options): Promise<P9Result> {
  const log = o.log ?? ((): void => undefined);
  const samples = Object.fromEntries(P9_SUBJECTS.map((s) => [s, [] as number[]])) as Record<P9Subject, number[]>;
  const result: P9Result = { samples, repMedians: [], server: '' };
  let server: PgServer | null = null;
  const url = process.env.DATABASE_URL;
  try {
    // (create() starts it)
    if (!url) server = await PgServer.create();
  } catch (e) {
    return { ...result, skipped: `no PostgreSQL server: ${(e as Error).message}` };
  }
  const pool = url ? new pg.Pool({ connectionString: url }) : server!.pool();
  pool.on('error', () => undefined);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpfile-bench-p9-'));
  try {
    const v = await pool.query<{ v: string; f: string; s: string }>("SELECT version() AS v, current_setting('fsync') AS f, current_setting('synchronous_commit') AS s");
    result.server = `${v.rows[0]!.v.split(',')[0]} (fsync ${v.rows[0]!.f}, synchronous_commit ${v.rows[0]!.s})${url ? ' at $DATABASE_URL' : ', private, Unix socket'}`;
    await pool.query('DROP TABLE IF EXISTS bench_p9');
    await pool.query('CREATE TABLE bench_p9 (id bigserial PRIMARY KEY, name text NOT NULL, size int NOT NULL)');
    const coord = postgresCoordinator(pool);
    const store = await openStore(path.join(dir, 'store'), { resolveInDoubt: coord.resolve });
    const cf = await store.open('uploads.bin', 'a');
    const plain = fs.openSync(path.join(dir, 'plain.bin'), 'a');
    const raw = fs.openSync(path.join(dir, 'raw.bin'), 'a');
    const block = Buffer.alloc(4096, 0x5a);
    const client = await pool.connect();
    const insert = (c: pg.PoolClient, name: string): Promise<unknown> => c.query('INSERT INTO bench_p9 (name, size) VALUES ($1, $2)', [name, 4096]);
    const run: Record<P9Subject, (i: number) => Promise<void>> = {
      'cpfile+pg': async (i) => {
        await coord.check([store], async (c) => {
          await cf.write(block);
          await insert(c, `cpfile-${i}`);
        });
      },
      'row-alone': async (i) => { await insert(client, `row-${i}`); },
      'file-then-row': async (i) => {
        fs.writeSync(plain, block);
        fs.fdatasyncSync(plain);
        await insert(client, `plain-${i}`);
      },
      'raw-fdatasync': async () => {
        fs.writeSync(raw, block);
        fs.fdatasyncSync(raw);
      },
    };
    try {
      // warm-up: every subject's first commits (connections, the coordinator's table, the worker)
      for (let i = 0; i < 5; i++) for (const s of P9_SUBJECTS) await run[s](-1 - i);
      for (let rep = 0; rep < o.reps; rep++) {
        const mine = Object.fromEntries(P9_SUBJECTS.map((s) => [s, [] as number[]])) as Record<P9Subject, number[]>;
        for (let i = 0; i < o.commits; i++) {
          // interleaved, in an order rotated every commit, so that no subject always follows another
          for (let k = 0; k < P9_SUBJECTS.length; k++) {
            const s = P9_SUBJECTS[(i + k) % P9_SUBJECTS.length]!;
            const t0 = performance.now();
            await run[s](rep * o.commits + i);
            mine[s].push(performance.now() - t0);
          }
        }
        for (const s of P9_SUBJECTS) samples[s].push(...mine[s]);
        result.repMedians.push(Object.fromEntries(P9_SUBJECTS.map((s) => [s, quantile(mine[s], 0.5)])) as Record<P9Subject, number>);
        log(`P9 rep ${rep + 1}/${o.reps}: ${P9_SUBJECTS.map((s) => `${s} ${quantile(mine[s], 0.5).toFixed(3)} ms`).join(', ')}`);
      }
    } finally {
      client.release();
      fs.closeSync(plain);
      fs.closeSync(raw);
      await store.close();
    }
    return result;
  } finally {
    await pool.end().catch(() => undefined);
    await server?.destroy().catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** The P9 section of the report: median, p99 and spread per subject, the target and whether it is met. */
export function renderP9(r: P9Result): string {
  const out: string[] = ['## P9: a file write and a row, committed together through PostgreSQL', ''];
  if (r.skipped) return [...out, `Skipped: ${r.skipped}.`, ''].join('\n');
  out.push(`Server: ${r.server}. ${r.samples['cpfile+pg'].length} commits per subject, ${r.repMedians.length} repetitions, interleaved commit by commit.`, '');
  out.push('| subject | what one commit is | median ms | p99 ms | max ms | rep medians (min-max) ms |', '| --- | --- | ---: | ---: | ---: | --- |');
  const what: Record<P9Subject, string> = {
    'cpfile+pg': '4 KiB append + one INSERT, atomic (coord.check)',
    'row-alone': 'one INSERT, autocommit',
    'file-then-row': '4 KiB write + fdatasync, then one INSERT (not atomic)',
    'raw-fdatasync': '4 KiB append + fdatasync, no database',
  };
  for (const s of P9_SUBJECTS) {
    const xs = r.samples[s];
    const reps = r.repMedians.map((m) => m[s]);
    out.push(`| ${s} | ${what[s]} | ${quantile(xs, 0.5).toFixed(3)} | ${quantile(xs, 0.99).toFixed(3)} | ${Math.max(...xs).toFixed(3)} | ${Math.min(...reps).toFixed(3)}-${Math.max(...reps).toFixed(3)} |`);
  }
  const med = (s: P9Subject): number => quantile(r.samples[s], 0.5);
  const budget = med('row-alone') + med('raw-fdatasync');
  const ratio = med('cpfile+pg') / budget;
  out.push('', `Target: cpfile+pg median at most row-alone + raw-fdatasync = ${budget.toFixed(3)} ms. Measured ${med('cpfile+pg').toFixed(3)} ms: ${ratio.toFixed(2)}x the budget, ${ratio <= 1 ? 'met' : 'MISSED'}.` +
    ` Against the non-atomic file-then-row: ${(med('cpfile+pg') / med('file-then-row')).toFixed(2)}x.`, '');
  return out.join('\n');
}
