/**
 * Kill loop on the real file system with the real flusher worker. Each lane owns one store directory
 * and goes round after round:
 *   1. a child (test/torture/kill-child.ts) runs a random workload and is SIGKILLed: by the parent
 *      after a random delay (sometimes while still opening the store), or by itself while a check is
 *      in flight, or while the worker applies an epoch that just resolved;
 *   2. sometimes 1-2 more children recover the crashed store and are SIGKILLed at their n-th
 *      mutating file-system call (a crash during recovery itself);
 *   3. the parent recovers the store (openStore), and checks it against the oracle it keeps from the
 *      child's acknowledged checks (model.ts replays the same workload): files on disk and as the
 *      store reads them, epoch number, and resumed entries with their positions. It then closes the
 *      store, which becomes the next round's starting state.
 * Kill moments are real time, so a round does not replay exactly; its seed fixes the workload and the
 * kill plan (and, for recovery kills, the exact call).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../lib/index.js';
import { Child, Rng, mixSeed, modelRun, readTree, describeOp, mkTmp, rmTmp, codeOf, NAMES, type Op } from '../helpers/model.js';
import { judge } from './oracle.js';
import { errText } from './driver.js';
import { replayLine, directAppendMinOf, unitSeed, sig, DEFAULT_EDGE, type KindOptions, type KindResult, type Violation } from './common.js';
import { runEdgeRounds } from './kill-edge.js';
import type { ChildPlan } from './kill-child.js';
import { mountReal, type RealFs } from '../helpers/realfs.js';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'kill-child.js');
const SEGMENT = 64 * 1024;

export interface LaneStats {
  rounds: number;
  kills: number;
  byPlan: Record<string, number>;
  recoveriesFinished: number;
  acks: number;
  laterEpoch: number;
  violations: Violation[];
}

class RoundFailure extends Error {}

/** Store directories of running lanes (the CLI removes them when interrupted). */
export const liveDirs = new Set<string>();

/** One lane: `kills` SIGKILLs on one store directory, starting from an empty store. */
export async function killLane(seed: number, kills: number, log: (s: string) => void, deadline = Infinity, live?: { kills: number }): Promise<LaneStats> {
  const st: LaneStats = { rounds: 0, kills: 0, byPlan: {}, recoveriesFinished: 0, acks: 0, laterEpoch: 0, violations: [] };
  const dir = await mkTmp('cpfile-torture-kill-');
  liveDirs.add(dir);
  const rng = new Rng(seed);
  let state = new Map<string, Buffer>();
  let epoch = 0;
  try {
    for (let round = 0; st.kills < kills && performance.now() < deadline; round++) {
      const rseed = mixSeed(seed, round + 1);
      st.rounds++;
      try {
        const before = st.kills;
        const r = await killRound(dir, rseed, rng, state, epoch, st).finally(() => {
          if (live) live.kills += st.kills - before;
        });
        state = r.state;
        epoch = r.epoch;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const v: Violation = { kind: 'kill', seed, cases: st.kills, what: sig(msg), detail: `round ${round} (round seed ${rseed}): ${msg}` };
        st.violations.push(v);
        log(`  VIOLATION kill (lane seed ${seed}, round ${round}): ${msg.split('\n').slice(0, 14).join('\n    ')}`);
        log(`    replay (same workloads and kill plans; kill moments are real time): ${replayLine({ ...v, cases: st.kills + 1 })} --lanes 1`);
        // whatever failed (the oracle or the harness), start over on a fresh store
        await rmTmp(dir);
        await import('node:fs/promises').then((f) => f.mkdir(dir, { recursive: true }));
        state = new Map();
        epoch = 0;
      }
    }
  } finally {
    await rmTmp(dir);
    liveDirs.delete(dir);
  }
  return st;
}

/** A real file system failed under a round's workload (realfsLane): a full disk or a read-only abort. */
type Fault = { fs: RealFs; type: 'enospc' | 'erofs' };
const FAULT_LABELS: Record<Fault['type'], string> = { enospc: 'real fs: the disk fills up (loop ext4)', erofs: 'real fs: read-only abort (ext4 errors)' };

async function killRound(dir: string, seed: number, rng: Rng, state: Map<string, Buffer>, epoch: number, st: LaneStats, fault?: Fault):
  Promise<{ state: Map<string, Buffer>; epoch: number }> {
  // 1. the workload child
  const x = rng.next();
  const plan: ChildPlan = { mode: 'run', dir, seed, segmentSize: SEGMENT, applyDelay: rng.chance(0.5) ? 0 : 25, directAppendMin: directAppendMinOf(seed) };
  let label: string;
  let timer: { afterBase: boolean; ms: number } | null = null;
  if (fault) {
    label = FAULT_LABELS[fault.type];
    plan.ioFaults = true;
  } else if (x < 0.15) {
    label = 'timer, during start-up/open';
    timer = { afterBase: false, ms: rng.range(5, 180) };
  } else if (x < 0.45) {
    label = 'timer, during the workload';
    timer = { afterBase: true, ms: rng.range(0, 300) };
  } else if (x < 0.75) {
    label = 'self, during check()';
    plan.kill = { type: 'check', j: rng.range(1, 6), spinUs: rng.int(2500) };
  } else {
    label = 'self, during apply';
    plan.kill = { type: 'apply', j: rng.range(1, 6), spinUs: rng.int(4000) };
    plan.applyThreshold = 0;
    plan.applyDelay = 0;
  }
  const child = new Child(CHILD, [JSON.stringify(plan)]);
  if (fault) {
    // Fail the file system at a random moment of the workload, let the child meet it (IOFAIL) or
    // finish, kill it if it does neither, then remove the cause before recovery.
    await child.waitFor('BASE', 30000).catch(() => undefined);
    await Promise.race([new Promise((r) => setTimeout(r, rng.range(0, 250))), child.exited]);
    let filler: string | null = null;
    if (fault.type === 'enospc') filler = fault.fs.fill(0, `filler-${seed}`);
    else fault.fs.abort();
    await Promise.race([new Promise((r) => setTimeout(r, 8000)), child.exited]);
    await child.kill();
    if (filler) {
      fs.rmSync(filler, { force: true });
      execFileSync('sync', ['-f', fault.fs.dir]);
    } else {
      fault.fs.remount();
    }
  } else if (timer) {
    if (timer.afterBase) await child.waitFor('BASE', 30000).catch(() => undefined);
    await Promise.race([new Promise((r) => setTimeout(r, timer!.ms)), child.exited]);
    await child.kill();
  } else {
    // the child kills itself; a safety timeout in case it never reaches check j
    const t = setTimeout(() => void child.kill(), 30000);
    await child.exited;
    clearTimeout(t);
  }
  const exit = child.exit!;
  const failLine = child.lines.find((l) => l.startsWith('FAIL') || l.startsWith('TIMEOUT'));
  if (failLine) throw new RoundFailure(`the child reported: ${failLine}\n${child.output()}`);
  const faultExit = fault !== undefined && (exit.code === 5 || exit.code === 0);
  if (exit.signal !== 'SIGKILL' && !faultExit) throw new RoundFailure(`the child was not killed but exited by itself (${JSON.stringify(exit)}), plan ${label}\n${child.output()}`);
  if (fault && child.lines.some((l) => l.startsWith('IOFAIL'))) st.byPlan[`${label}: a call failed with it`] = (st.byPlan[`${label}: a call failed with it`] ?? 0) + 1;
  st.kills++;
  st.byPlan[label] = (st.byPlan[label] ?? 0) + 1;
  let base: number | null = null;
  const ackEpoch = new Map<number, number>();
  let lastAck = 0;
  for (const l of child.lines) {
    const p = l.split(' ');
    if (p[0] === 'BASE') base = Number(p[1]);
    else if (p[0] === 'ACK') {
      const k = Number(p[1]);
      if (k !== lastAck + 1) throw new RoundFailure(`ACKs out of order: ${k} after ${lastAck}\n${child.output()}`);
      lastAck = k;
      ackEpoch.set(k, Number(p[2]));
    }
  }
  if (base !== null && base !== epoch) throw new RoundFailure(`the child opened the store at epoch ${base}, the last verified epoch is ${epoch}`);
  for (const [k, e] of ackEpoch) if (e !== epoch + k) throw new RoundFailure(`check ${k} resolved with epoch ${e}, expected ${epoch + k}`);
  st.acks += lastAck;

  // 2. crash recovery itself, sometimes twice
  const recoveryKills: string[] = [];
  if (!fault && rng.chance(0.35)) {
    const n = rng.chance(0.3) ? 2 : 1;
    for (let c = 0; c < n; c++) {
      const rp: ChildPlan = { mode: 'recover', dir, seed, segmentSize: SEGMENT, at: rng.range(1, 14), after: rng.chance(0.5) };
      const rc = new Child(CHILD, [JSON.stringify(rp)]);
      const t = setTimeout(() => void rc.kill(), 30000);
      const ex = await rc.exited;
      clearTimeout(t);
      if (ex.signal === 'SIGKILL') {
        st.kills++;
        st.byPlan['self, during recovery'] = (st.byPlan['self, during recovery'] ?? 0) + 1;
        recoveryKills.push(`killed at mutating call ${rp.at} (${rp.after ? 'after' : 'before'} it)`);
      } else if (ex.code === 0 && rc.lines.some((l) => l.startsWith('RECOVERED'))) {
        st.recoveriesFinished++;
        recoveryKills.push(`finished: ${rc.lines.find((l) => l.startsWith('RECOVERED'))}`);
        break;
      } else {
        throw new RoundFailure(`recovery child failed (${JSON.stringify(ex)}) on a store crashed by "${label}"\n${rc.output()}`);
      }
    }
  }

  // 3. recover and judge
  const run = modelRun(seed, state, lastAck + 1);
  const ops = run.ops;
  const snaps = new Map(run.snaps.map((s) => [s.k, s]));
  const context = (): string => {
    const from = ops.findIndex((o) => o.t === 'check' && o.k === lastAck - 1);
    return `kill: ${label}; recovery children: ${recoveryKills.join(', ') || 'none'}; child output:\n${child.lines.slice(-5).join('\n')}\n` +
      `ops since check ${lastAck - 1}:\n  ${ops.slice(from < 0 ? 0 : from + 1).slice(-40).map((o: Op) => describeOp(o)).join('\n  ')}`;
  };
  let store;
  try {
    store = await openStore(dir, { inline: true, segmentSize: SEGMENT });
  } catch (e) {
    throw new RoundFailure(`recovery rejected: ${errText(e)}\n${context()}`);
  }
  let next: Map<string, Buffer>;
  try {
    const files = await readTree(dir);
    const x = { snaps, lo: lastAck, hi: lastAck + 1, base: epoch };
    const bad = judge({ files, epoch: store.epoch, entries: store.recovery.entries }, x);
    if (bad) throw new RoundFailure(`${bad}\n${context()}`);
    const k = store.epoch - epoch;
    if (k > lastAck) st.laterEpoch++;
    const snap = snaps.get(k)!;
    // the store's own view agrees with the disk
    for (const name of NAMES) {
      let view: Buffer | null = null;
      try {
        view = Buffer.from(await store.readFile(name));
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
      const want = snap.files.get(name) ?? null;
      if ((view === null) !== (want === null) || (view && want && !view.equals(want))) {
        throw new RoundFailure(`store.readFile(${name}) after recovery: ${view ? view.length : 'ENOENT'} bytes, expected ${want ? want.length : 'ENOENT'}\n${context()}`);
      }
    }
    // entries open at the recovered check resume with their positions; close them for the next round
    for (const [name, position] of snap.open) {
      const f = await store.open(name, 'r+');
      if (!f.resumed || f.tell() !== position) {
        throw new RoundFailure(`open(${name}) after recovery: resumed ${f.resumed} tell ${f.tell()}, expected resumed at ${position}\n${context()}`);
      }
      await f.close();
    }
    next = snap.files;
  } finally {
    await store.close().catch((e) => {
      throw new RoundFailure(`closing the recovered store failed: ${errText(e)}`);
    });
  }
  return { state: next, epoch: store.epoch };
}

/**
 * Real-fs fault rounds: the kill loop's workload and oracle on a small loop-mounted ext4 that fills
 * up, or turns read-only (ext4's error abort), at a random moment; the cause is removed (the filler
 * deleted, the file system mounted again) and the store must recover an acknowledged epoch.
 * Needs root and loop mounts: otherwise the rounds are skipped and the log says why.
 */
export async function realfsLane(seed: number, rounds: number, log: (s: string) => void): Promise<LaneStats> {
  const st: LaneStats = { rounds: 0, kills: 0, byPlan: {}, recoveriesFinished: 0, acks: 0, laterEpoch: 0, violations: [] };
  if (rounds <= 0) return st;
  let real: RealFs;
  try {
    real = mountReal(null, 48);
  } catch (e) {
    log(`  real-fs rounds SKIPPED: ${errText(e)}`);
    st.byPlan['real fs: skipped (cannot mount)'] = rounds;
    return st;
  }
  const dir = path.join(real.dir, 'store');
  const rng = new Rng(seed);
  let state = new Map<string, Buffer>();
  let epoch = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      const rseed = mixSeed(seed, 0x5f5 + round);
      st.rounds++;
      const type: Fault['type'] = rng.chance(0.7) ? 'enospc' : 'erofs';
      try {
        const r = await killRound(dir, rseed, rng, state, epoch, st, { fs: real, type });
        state = r.state;
        epoch = r.epoch;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const v: Violation = { kind: 'kill', seed, cases: round + 1, what: sig(msg), detail: `real-fs round ${round} (${type}, round seed ${rseed}): ${msg}` };
        st.violations.push(v);
        log(`  VIOLATION kill (real-fs round ${round}, ${type}): ${msg.split('\n').slice(0, 14).join('\n    ')}`);
        fs.rmSync(dir, { recursive: true, force: true });
        state = new Map();
        epoch = 0;
      }
    }
  } finally {
    real.cleanup();
  }
  return st;
}

export async function runKill(o: KindOptions): Promise<KindResult> {
  const t0 = performance.now();
  const lanes = Math.max(1, o.lanes ?? 2);
  const per = Math.ceil(o.cases / lanes);
  const out: KindResult = { kind: 'kill', cases: 0, violations: [], ms: 0, stats: {} };
  const live = { kills: 0 };
  const progress = setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    o.log(`  kill: ${live.kills} kills in ${s.toFixed(0)} s (${Math.round(live.kills / (s / 60))}/min)`);
  }, 30000);
  progress.unref();
  const edge = o.edge ?? DEFAULT_EDGE;
  // the edge rounds (kill-edge.ts: low ulimit, contending processes) run beside the lanes
  const [edgeStats, realfs, ...results] = await Promise.all([
    runEdgeRounds(o.seed, edge.ulimitRounds, edge.contendRounds, o.log),
    realfsLane(mixSeed(o.seed, 0x5f5), edge.realfsRounds ?? 0, o.log),
    ...Array.from({ length: lanes }, (_, i) =>
      killLane(unitSeed(o.seed, i), i === lanes - 1 ? o.cases - per * (lanes - 1) : per, o.log, Infinity, live)),
  ]);
  clearInterval(progress);
  out.violations.push(...edgeStats.violations);
  out.cases += edgeStats.ulimitRounds + edgeStats.contendRounds;
  const dv = edgeStats.dimViolations;
  out.dims = {
    'low-ulimit children (ulimit -n 128, 1000+ files)': { cases: edgeStats.ulimitRounds, violations: dv['low-ulimit children'] ?? 0 },
    'lock takeovers attempted (SIGSTOP past lockStale)': { cases: edgeStats.takeoversAttempted, violations: dv['lock takeovers attempted'] ?? 0 },
    'lock takeovers refused (ELOCKED)': { cases: edgeStats.takeoversRefused, violations: 0 },
    'same store opened twice in one process (symlink)': { cases: edgeStats.sameProcessOpens, violations: dv['same store opened twice in one process'] ?? 0 },
  };
  for (const t of ['enospc', 'erofs'] as const) {
    const label = FAULT_LABELS[t];
    out.dims[label] = { cases: realfs.byPlan[label] ?? 0, violations: realfs.violations.filter((v) => v.detail.includes(`(${t},`)).length };
  }
  out.violations.push(...realfs.violations);
  out.cases += realfs.kills;
  const byPlan: Record<string, number> = {};
  let rounds = 0;
  let acks = 0;
  let later = 0;
  let finished = 0;
  for (const r of results) {
    out.cases += r.kills;
    out.violations.push(...r.violations);
    rounds += r.rounds;
    acks += r.acks;
    later += r.laterEpoch;
    finished += r.recoveriesFinished;
    for (const [k, v] of Object.entries(r.byPlan)) byPlan[k] = (byPlan[k] ?? 0) + v;
  }
  for (const [k, v] of Object.entries(realfs.byPlan)) byPlan[k] = (byPlan[k] ?? 0) + v;
  acks += realfs.acks;
  later += realfs.laterEpoch;
  out.ms = performance.now() - t0;
  out.stats = {
    lanes, rounds, 'kills/min': Math.round(out.cases / (out.ms / 60000)), 'acknowledged checks': acks,
    'recovered a later (unacknowledged but durable) epoch': later, 'recovery children that finished before their kill': finished,
    ...Object.fromEntries(Object.entries(byPlan).map(([k, v]) => [`kills: ${k}`, v])),
  };
  return out;
}
