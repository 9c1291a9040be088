/**
 * The PostgreSQL kill loop (torture kind 'postgres'): files of 2-3 stores and rows of a real private
 * PostgreSQL server (tools/pg-server.ts), committed together by postgresCoordinator, and a process
 * killed at random moments. A lane owns its stores and goes round after round:
 *   1. a child (pg-child.ts) runs coordinated steps in a loop (pg-steps.ts: each writes files in
 *      every store and a row per store naming the step) and is SIGKILLed: by the parent at a random
 *      moment, by itself at one stage of a step (inside fn, prepared, COMMIT sent, COMMIT answered,
 *      during a store's commit, after the first store's commit), or the server is stopped
 *      (immediate: a crash) under it and restarted, and the child killed after, or while it is down;
 *      a few rounds end by themselves;
 *   2. sometimes 1-2 more children reopen the stores (resolveInDoubt: coord.resolve) and are killed
 *      while resolving: asked, the answer in hand, or just after handing it to recovery;
 *   3. the parent reopens every store with resolveInDoubt: coord.resolve and judges (pg-steps.ts
 *      judgeLane): every store's files hold exactly the steps whose rows are committed, and every step
 *      the child was told committed (ACK, settled 'commit') is in both. Then it closes the stores,
 *      which are the next round's.
 * A round's seed fixes its plan (kill kind, stage, delays, recovery kills); kill moments are real
 * time. `--kind postgres --seed S --cases N` replays the first N rounds of the lane of seed S.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from 'pg';
import { openStore } from '../../lib/index.js';
import { postgresCoordinator, postgresHooks, type PostgresCoordinator } from '../../lib/postgres/index.js';
import { PgServer, findBinaries, INSTALL_HINT } from '../../tools/pg-server.js';
import { Child, Rng, mixSeed, mkTmp, rmTmp } from '../helpers/model.js';
import { liveDirs } from './kill.js';
import { errText } from './driver.js';
import { sig, replayLine, type KindOptions, type KindResult, type Violation } from './common.js';
import {
  FILES, KILL_STAGES, STEPS_DDL, STEPS_TABLE, judgeLane, parseStepLines,
  type KillStage, type PgChildPlan, type ResolveKill, type StoreView,
} from './pg-steps.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PG_CHILD = path.join(here, 'pg-child.js');

/** Children running now (the torture CLI kills them when interrupted). */
export const pgChildren = new Set<Child>();

/** SIGKILL every child of the loop (synchronous: for a signal handler). */
export function killPgChildren(): void {
  for (const c of pgChildren) {
    try { c.proc.kill('SIGKILL'); } catch { /* gone */ }
  }
}

/** Start a child on `plan`, tracked until it exits. */
export function pgChild(plan: PgChildPlan): Child {
  const c = new Child(PG_CHILD, [JSON.stringify(plan)]);
  pgChildren.add(c);
  void c.exited.then(() => pgChildren.delete(c));
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const STAGE_LABELS: Record<KillStage, string> = {
  'fn': 'inside fn (files written, rows inserted)',
  'prepared': 'every store prepared, before the decision rows',
  'commit-sent': 'the COMMIT sent, its answer not awaited',
  'pg-committed': 'after the PostgreSQL COMMIT, before the stores commit',
  'store-commit': "during the last store's commit (at its next file-system write)",
  'store-committed': "after the first store's commit resolved",
};

/** Reopen every store of a lane (resolveInDoubt: coord.resolve) and read it as the oracle needs; closes them. */
export async function reopenLane(pool: Pool, coord: PostgresCoordinator, dirs: readonly string[], hooks: readonly boolean[]):
  Promise<{ views: StoreView[]; inDoubt: ('commit' | 'abort' | null)[]; epochs: number[] }> {
  const views: StoreView[] = [];
  const inDoubt: ('commit' | 'abort' | null)[] = [];
  const epochs: number[] = [];
  for (const [i, dir] of dirs.entries()) {
    const store = await openStore(dir, { inline: true, resolveInDoubt: coord.resolve, ...(hooks[i] ? { hooks: postgresHooks(pool) } : {}) });
    try {
      inDoubt.push(store.recovery.inDoubt?.decision ?? null);
      epochs.push(store.epoch);
      const read = async (name: string): Promise<Buffer | null> => ((await store.exists(name)) ? Buffer.from(await store.readFile(name)) : null);
      const files = new Map<string, Buffer | null>();
      for (let k = 0; k < FILES; k++) files.set(`f-${k}`, await read(`f-${k}`));
      const view: StoreView = { log: (await read('log'))?.toString() ?? null, files };
      if (hooks[i]) {
        const r = await pool.query("SELECT position FROM cpfile_positions WHERE store_key = $1 AND name = 'log'", [store.id]);
        view.position = r.rows[0] ? Number((r.rows[0] as { position: string }).position) : null;
      }
      views.push(view);
    } finally {
      await store.close();
    }
  }
  return { views, inDoubt, epochs };
}

/** The committed rows of a lane: store -> steps. */
export async function laneRows(pool: Pool, lane: number): Promise<Map<number, Set<number>>> {
  const out = new Map<number, Set<number>>();
  const r = await pool.query(`SELECT n, store FROM ${STEPS_TABLE} WHERE lane = $1`, [lane]);
  for (const row of r.rows as { n: number; store: number }[]) {
    let s = out.get(row.store);
    if (!s) out.set(row.store, (s = new Set()));
    s.add(row.n);
  }
  return out;
}

interface Lane {
  id: number;
  seed: number;
  dirs: string[];
  hooks: boolean[];
  failRate: number;
  /** the last step begun in the rounds so far */
  last: number;
}

class RoundFailure extends Error {}

export interface PgLoopOptions {
  server: PgServer;
  seed: number;
  rounds: number;
  log: (s: string) => void;
  /** rounds done so far, for progress lines */
  live?: { rounds: number };
}

export interface PgLoopResult {
  rounds: number;
  violations: Violation[];
  stats: Record<string, number>;
}

let laneIds = 0;

async function newLane(seed: number): Promise<Lane> {
  const r = new Rng(mixSeed(seed, 0x1a9e));
  const n = r.chance(0.5) ? 2 : 3;
  const dirs: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = await mkTmp('cpfile-torture-pg-');
    liveDirs.add(d);
    dirs.push(d);
  }
  return { id: ++laneIds, seed, dirs, hooks: dirs.map(() => r.chance(0.4)), failRate: [0, 0.05, 0.15][r.int(3)]!, last: 0 };
}

async function dropLane(l: Lane): Promise<void> {
  for (const d of l.dirs) {
    await rmTmp(d);
    liveDirs.delete(d);
  }
}

/** The kill loop on `o.server`: o.rounds rounds, lane after lane (a violation starts a fresh lane). */
export async function pgKillLoop(o: PgLoopOptions): Promise<PgLoopResult> {
  const st: Record<string, number> = {};
  const out: PgLoopResult = { rounds: 0, violations: [], stats: st };
  const pool = o.server.pool({ max: 4 });
  await pool.query(STEPS_DDL);
  const coord = postgresCoordinator(pool);
  let laneNo = 0;
  let lane = await newLane(o.seed);
  let inLane = 0;
  try {
    while (out.rounds < o.rounds) {
      out.rounds++;
      if (o.live) o.live.rounds = out.rounds;
      const r = inLane++;
      try {
        await round(o.server, pool, coord, lane, mixSeed(lane.seed, r + 1), st);
      } catch (e) {
        const msg = e instanceof RoundFailure ? e.message : `the round threw: ${errText(e)}`;
        const v: Violation = { kind: 'postgres', seed: lane.seed, cases: r + 1, what: sig(msg), detail: `lane ${lane.id} round ${r} (round seed ${mixSeed(lane.seed, r + 1)}): ${msg}` };
        out.violations.push(v);
        o.log(`  VIOLATION postgres (lane seed ${lane.seed}, round ${r}): ${msg.split('\n').slice(0, 16).join('\n    ')}`);
        o.log(`    replay (same plans; kill moments are real time): ${replayLine(v)}`);
        if (!o.server.running) await o.server.start();
        await dropLane(lane);
        lane = await newLane(mixSeed(o.seed, ++laneNo));
        inLane = 0;
      }
    }
  } finally {
    killPgChildren();
    await dropLane(lane);
    await o.server.release(pool);
  }
  return out;
}

/** One round on `lane` (see the file comment); throws a RoundFailure when the oracle does not hold. */
async function round(server: PgServer, pool: Pool, coord: PostgresCoordinator, lane: Lane, seed: number, st: Record<string, number>): Promise<void> {
  const bump = (k: string, by = 1): void => { st[k] = (st[k] ?? 0) + by; };
  const rng = new Rng(seed);
  // the plan, drawn in a fixed order
  const x = rng.next();
  const inline = rng.chance(0.75);
  const timerMs = rng.range(0, 300);
  const stage = rng.pick(KILL_STAGES);
  const j = rng.range(0, 3);
  const delayMs = rng.range(0, 3);
  const after = rng.chance(0.5);
  const stop = { beforeMs: rng.range(0, 300), downMs: rng.range(0, 200), whileDown: rng.chance(0.3), afterMs: rng.range(100, 300) };
  const finishCount = rng.range(1, 5);
  const reopens = rng.chance(0.3) ? (rng.chance(0.3) ? 2 : 1) : 0;
  const resolveKills = [0, 1].map(() => ({ kill: rng.pick<ResolveKill>(['ask', 'answered', 'recovering']), delayMs: rng.range(0, 3) }));
  const type = x < 0.3 ? 'timer' : x < 0.65 ? 'self' : x < 0.9 ? 'stop' : 'finish';

  const from = lane.last + 1;
  const base = { conn: { host: server.socketDir, port: server.port, user: server.user, database: server.database }, dirs: lane.dirs, hooks: lane.hooks, lane: lane.id, seed: lane.seed, failRate: lane.failRate, inline };
  const plan: PgChildPlan = { ...base, mode: 'steps', from, count: type === 'finish' ? finishCount : type === 'self' ? j + 3 : 100_000 };
  if (type === 'self') plan.kill = { stage, step: from + j, delayMs, after };
  let label = type === 'timer' ? 'timer (a random moment)' : type === 'self' ? `self: ${STAGE_LABELS[stage]}` : type === 'finish' ? 'none: the child ran its steps to the end' : '';
  const child = pgChild(plan);
  const guard = setTimeout(() => void child.kill(), 60_000);
  try {
    await child.waitFor('READY', 30_000).catch((e: Error) => {
      throw new RoundFailure(`the child did not get its stores open: ${e.message}`);
    });
    if (type === 'timer') {
      await Promise.race([sleep(timerMs), child.exited]);
      await child.kill();
    } else if (type === 'stop') {
      await Promise.race([sleep(stop.beforeMs), child.exited]);
      await server.stop('immediate');
      bump('server stops (immediate, a crash) under a running step loop');
      if (stop.whileDown) {
        await sleep(stop.downMs);
        await child.kill();
        label = 'server stopped (immediate), the child killed while it was down, then the server restarted';
        await server.start();
      } else {
        await sleep(stop.downMs);
        await server.start();
        await Promise.race([sleep(stop.afterMs), child.exited]);
        await child.kill();
        label = 'server stopped (immediate) and restarted, then the child killed';
      }
    } else {
      await child.exited;
    }
  } finally {
    clearTimeout(guard);
    if (!server.running) await server.start();
  }
  const exit = await child.exited;
  const lines = parseStepLines(child.lines);
  const bad = child.lines.find((l) => /^(FAIL|ERROR|TIMEOUT)/.test(l));
  if (bad) throw new RoundFailure(`the child reported: ${bad}\n${child.output()}`);
  const done = exit.code === 0 && child.lines.includes('DONE');
  if (exit.signal !== 'SIGKILL' && !done) throw new RoundFailure(`the child exited by itself (${JSON.stringify(exit)}), plan ${label}\n${child.output()}`);
  if (type === 'self' && done) label = `self: ${STAGE_LABELS[stage]}: not reached (the step was rolled back before it)`;
  if (type !== 'finish' && type !== 'self' && done) throw new RoundFailure(`the child ran out of steps (${plan.count})`);
  bump(`kills: ${label}`);
  bump('steps begun', lines.begun.length);
  bump('steps acknowledged (check resolved)', lines.acked.length);
  bump('steps rolled back (EABORTED), the app errors among them', lines.aborted.length);
  bump('steps in doubt for the app (EINDOUBT)', lines.inDoubt.length);
  for (const d of lines.settled.values()) bump(`in-doubt steps settled by retryInDoubt: ${d}`);
  lane.last = Math.max(lane.last, ...lines.begun);

  // 2. reopening children, killed while resolving
  const asked: string[] = [];
  for (let c = 0; c < reopens; c++) {
    const rk = resolveKills[c]!;
    const rc = pgChild({ ...base, mode: 'reopen', from: 0, count: 0, resolveKill: rk.kill, resolveDelayMs: rk.delayMs });
    const t = setTimeout(() => void rc.kill(), 30_000);
    const ex = await rc.exited;
    clearTimeout(t);
    const fail = rc.lines.find((l) => /^(FAIL|TIMEOUT)/.test(l));
    if (fail) throw new RoundFailure(`a reopening child reported: ${fail}\n${rc.output()}`);
    const asks = rc.lines.filter((l) => l.startsWith('ASK '));
    if (ex.signal === 'SIGKILL') {
      bump(`reopening children killed while resolving: ${rk.kill === 'ask' ? 'when asked' : rk.kill === 'answered' ? 'with the answer in hand' : 'just after answering'}`);
      asked.push(`killed (${rk.kill}) after ${asks.length} question(s)`);
    } else if (ex.code === 0 && rc.lines.includes('ALL-REOPENED')) {
      bump(`reopening children that finished: ${asks.length ? 'after resolving' : 'nothing was in doubt'}`);
      asked.push(`finished, ${asks.length} question(s)`);
      break;
    } else {
      throw new RoundFailure(`a reopening child failed (${JSON.stringify(ex)})\n${rc.output()}`);
    }
  }

  // 3. reopen, read, judge. The rows are read after the reopen: a child killed right after sending
  // COMMIT leaves its deciding transaction running on the server for a while, and only resolve()
  // (which waits on the stores' locks) has waited for it to end. Read before, they can miss a step
  // that commits a moment later (seen: seeds 20261203 rounds 223 and 245).
  let reopened;
  try {
    reopened = await reopenLane(pool, coord, lane.dirs, lane.hooks);
  } catch (e) {
    throw new RoundFailure(`reopening the stores failed: ${errText(e)}\nkill: ${label}\n${child.output()}`);
  }
  const rows = await laneRows(pool, lane.id);
  for (const d of reopened.inDoubt) if (d) bump(`in-doubt epochs the final reopen decided: ${d}`);
  const verdict = judgeLane({ seed: lane.seed, failRate: lane.failRate, before: from - 1, rows, stores: reopened.views, lines });
  if (verdict) {
    throw new RoundFailure(`${verdict}\nkill: ${label}; stores ${lane.dirs.length} (hooks ${lane.hooks.join(',')}); reopening children: ${asked.join('; ') || 'none'}; ` +
      `final reopen decided ${reopened.inDoubt.join(',')}; epochs ${reopened.epochs.join(',')}\n${child.output()}`);
  }
  bump(`rounds with ${lane.dirs.length} stores`);
}

/** The torture kind: its own private server (started here, destroyed at the end), o.cases rounds. */
export async function runPostgres(o: KindOptions): Promise<KindResult> {
  const t0 = performance.now();
  const bins = findBinaries();
  if (!bins) {
    o.log(`  postgres SKIPPED: no PostgreSQL server binaries: ${INSTALL_HINT}`);
    return { kind: 'postgres', cases: 0, violations: [], ms: performance.now() - t0, stats: { skipped: 'no PostgreSQL server binaries' } };
  }
  const server = await PgServer.create(bins);
  o.log(`  private PostgreSQL server (${bins.source}) at ${server.socketDir}, started in ${server.timings.start.toFixed(0)} ms`);
  const live = { rounds: 0 };
  const progress = setInterval(() => o.log(`  postgres: ${live.rounds} rounds in ${((performance.now() - t0) / 1000).toFixed(0)} s`), 30_000);
  progress.unref();
  try {
    const r = await pgKillLoop({ server, seed: o.seed, rounds: o.cases, log: o.log, live });
    const ms = performance.now() - t0;
    return { kind: 'postgres', cases: r.rounds, violations: r.violations, ms, stats: { 'rounds/min': Math.round(r.rounds / (ms / 60_000)), ...sorted(r.stats) } };
  } finally {
    clearInterval(progress);
    await server.destroy();
  }
}

function sorted(s: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(s).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
