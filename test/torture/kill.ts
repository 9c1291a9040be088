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
import { openStore, CpError, type InDoubtEpoch } from '../../lib/index.js';
import { Child, Rng, mixSeed, modelRun, readTree, describeOp, mkTmp, rmTmp, codeOf, diffFiles, NAMES, type Op, type PrepareOp, type TwoPhaseOptions } from '../helpers/model.js';
import { judge } from './oracle.js';
import { errText } from './driver.js';
import { replayLine, directAppendMinOf, applySliceOf, unitSeed, sig, addCounts, DEFAULT_EDGE, type KindOptions, type KindResult, type Violation } from './common.js';
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
  /** two-phase rounds: what they covered */
  twoPhase?: Record<string, number>;
}

class RoundFailure extends Error {}

/**
 * Every file under `dir`, the store's own (.cpfile) included: name -> bytes. Except the lock and the
 * owner records (lib/lock.ts): they are the process's, not the store's, and an opener removes those of
 * a dead holder before recovery starts.
 */
async function wholeTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = (rel: string): void => {
    for (const d of fs.readdirSync(rel ? path.join(dir, rel) : dir, { withFileTypes: true })) {
      const name = rel ? `${rel}/${d.name}` : d.name;
      if (/^\.cpfile\/(lock$|owner\.)/.test(name)) continue;
      if (d.isDirectory()) {
        out.set(`${name}/`, Buffer.alloc(0));
        walk(name);
      } else out.set(name, fs.readFileSync(path.join(dir, name)));
    }
  };
  walk('');
  return out;
}

/** The two-phase shape of a kill round (its own stream of the round seed). */
function twoPhaseOf(seed: number, directAppendMin: number | false): TwoPhaseOptions {
  const r = new Rng(mixSeed(seed, 0x2bc7));
  return { rate: [0.4, 0.7, 1][r.int(3)], abortRate: [0.25, 0.5, 0.75][r.int(3)], noSyncRate: 0.35, vfoRate: 0.6, duringRate: 0.3, directMin: directAppendMin, keeper: r.chance(0.5) };
}

/** What a child's lines say about its prepares (PREPARING, PREPARED, DECIDE, ABORTING, DECIDED) and the window recovery may find in doubt (simfs.ts MarkState.open). */
function twoPhaseLines(lines: string[]): { decided: Map<string, number>; open: { id: string; k: number; decisionMade: boolean }[]; last: { id: string; k: number; stage: string } | null } {
  const decided = new Map<string, number>();
  const commitKs = new Set<number>();
  let open: { id: string; k: number; decisionMade: boolean }[] = [];
  let last: { id: string; k: number; stage: string } | null = null;
  for (const l of lines) {
    const [w, ks, id, x] = l.split(' ');
    const k = Number(ks);
    if (w === 'PREPARING') {
      open.push({ id, k, decisionMade: false });
      last = { id, k, stage: 'preparing' };
    } else if (w === 'PREPARED') {
      open = open.filter((p) => p.id === id);
      last!.stage = 'prepared, undecided';
    } else if (w === 'DECIDE' || w === 'ABORTING') {
      if (w === 'DECIDE') {
        decided.set(id, k);
        commitKs.add(k);
      }
      for (const p of open) if (p.id === id) p.decisionMade = true;
      last!.stage = w === 'DECIDE' ? 'commit decided, committing' : 'aborting';
    } else if (w === 'ABORTED') {
      last!.stage = 'aborted, no sync since';
    } else if (w === 'DECIDED') {
      if (x === 'sync') {
        open = [];
        last!.stage = 'settled';
      } else last!.stage = 'committed (sync: false), no sync since';
    } else if (w === 'ACK' && !commitKs.has(k)) {
      // a check's ACK (a commit prints one too, before DECIDED): durable, with all before it
      open = open.filter((p) => !(p.decisionMade && k >= p.k));
      if (last && open.length === 0) last.stage = 'settled';
    }
  }
  return { decided, open, last };
}

/** Store directories of running lanes (the CLI removes them when interrupted). */
export const liveDirs = new Set<string>();

/** One lane: `kills` SIGKILLs on one store directory, starting from an empty store. */
export async function killLane(seed: number, kills: number, log: (s: string) => void, deadline = Infinity, live?: { kills: number }, twoPhase = false): Promise<LaneStats> {
  const st: LaneStats = { rounds: 0, kills: 0, byPlan: {}, recoveriesFinished: 0, acks: 0, laterEpoch: 0, violations: [], ...(twoPhase ? { twoPhase: {} } : {}) };
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
        const r = await killRound(dir, rseed, rng, state, epoch, st, undefined, twoPhase).finally(() => {
          if (live) live.kills += st.kills - before;
        });
        state = r.state;
        epoch = r.epoch;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const v: Violation = { kind: 'kill', seed, cases: st.kills, what: sig(twoPhase ? `two-phase: ${msg}` : msg), detail: `${twoPhase ? 'two-phase ' : ''}round ${round} (round seed ${rseed}): ${msg}` };
        if (twoPhase) v.replay = `--kind kill --twophase 1 --seed ${seed} --cases ${st.kills + 1} --ulimit-rounds 0 --contend-rounds 0 --realfs-rounds 0`;
        st.violations.push(v);
        log(`  VIOLATION kill (${twoPhase ? 'two-phase ' : ''}lane seed ${seed}, round ${round}): ${msg.split('\n').slice(0, 14).join('\n    ')}`);
        log(`    replay (same workloads and kill plans; kill moments are real time): ${replayLine({ ...v, cases: st.kills + 1 })}${twoPhase ? '' : ' --lanes 1'}`);
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

async function killRound(dir: string, seed: number, rng: Rng, state: Map<string, Buffer>, epoch: number, st: LaneStats, fault?: Fault, twoPhase = false):
  Promise<{ state: Map<string, Buffer>; epoch: number }> {
  // 1. the workload child
  const x = rng.next();
  const plan: ChildPlan = { mode: 'run', dir, seed, segmentSize: SEGMENT, applyDelay: rng.chance(0.5) ? 0 : 25, directAppendMin: directAppendMinOf(seed), applySlice: applySliceOf(seed) };
  let label: string;
  let timer: { afterBase: boolean; ms: number } | null = null;
  const tp = twoPhase ? twoPhaseOf(seed, plan.directAppendMin!) : undefined;
  const tc = st.twoPhase ?? {};
  if (tp) {
    // the prepares of this round's workload (the model knows them in advance): kill at one of them
    plan.twoPhase = tp;
    const preps = modelRun(seed, state, 40, tp).ops.filter((o): o is PrepareOp => o.t === 'prepare').slice(0, 8);
    const unsynced = preps.filter((o) => o.decision === 'abort' || !o.sync);
    const types = ['prepare', 'prepared', 'decision', 'nosync'] as const;
    let type: (typeof types)[number] | 'timer' = x < 0.16 || preps.length === 0 ? 'timer' : types[Math.floor(((x - 0.16) / 0.84) * 4)];
    if (type === 'nosync' && unsynced.length === 0) type = 'decision';
    if (type === 'timer') {
      label = 'two-phase: timer, during the workload';
      timer = { afterBase: true, ms: rng.range(0, 300) };
    } else {
      const target = rng.pick(type === 'nosync' ? unsynced : preps);
      plan.kill = { type, j: target.n, spinUs: rng.int(3000) };
      label = `two-phase: self, ${({ prepare: 'while the PREPARE is written', prepared: 'prepared, before the decision', decision: `while the decision (${target.decision}${target.decision === 'commit' && !target.sync ? ', sync: false' : ''}) is written`, nosync: `after ${target.decision === 'abort' ? 'an abort' : 'a commit({ sync: false })'} resolved, before any sync` } as const)[type]}`;
      for (const [c, v] of Object.entries(target.vfo)) if (v) tc[`rounds killed at a prepared epoch with ${c.toUpperCase()}`] = (tc[`rounds killed at a prepared epoch with ${c.toUpperCase()}`] ?? 0) + 1;
    }
  } else if (fault) {
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

  // two-phase: what the coordinator recorded, and which prepares recovery may find in doubt
  const tpl = twoPhaseLines(child.lines);
  let lo = lastAck;
  for (const k of tpl.decided.values()) lo = Math.max(lo, k);
  const bump = (k: string): void => {
    tc[k] = (tc[k] ?? 0) + 1;
  };
  if (tp) bump(`rounds killed: ${tpl.last ? tpl.last.stage : 'before any prepare'}`);

  // 2. crash recovery itself, sometimes twice
  const recoveryKills: string[] = [];
  if (!fault && rng.chance(tp ? 0.6 : 0.35)) {
    const n = rng.chance(0.3) ? 2 : 1;
    for (let c = 0; c < n; c++) {
      const rp: ChildPlan = { mode: 'recover', dir, seed, segmentSize: SEGMENT, at: rng.range(1, 14), after: rng.chance(0.5), ...(tp ? { decided: [...tpl.decided.keys()] } : {}) };
      const rc = new Child(CHILD, [JSON.stringify(rp)]);
      const t = setTimeout(() => void rc.kill(), 30000);
      const ex = await rc.exited;
      clearTimeout(t);
      const asked = rc.lines.filter((l) => l.startsWith('INDOUBT'));
      if (tp && asked.length) {
        bump(`recovery children asked the resolver (in doubt): ${ex.signal === 'SIGKILL' ? 'killed after' : 'finished'}`);
        const id = asked[0].split(' ')[1];
        if (asked.length > 1 || !tpl.open.some((p) => p.id === id)) {
          throw new RoundFailure(`a recovery child asked the resolver ${asked.join(', ')}; only ${tpl.open.map((p) => p.id).join(', ') || 'none'} can be in doubt\n${rc.output()}`);
        }
      }
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
  const run = modelRun(seed, state, lo + 1, tp);
  const ops = run.ops;
  const snaps = new Map(run.snaps.map((s) => [s.k, s]));
  const context = (): string => {
    const from = ops.findIndex((o) => (o.t === 'check' || o.t === 'prepare') && o.k === lo - 1);
    return `kill: ${label}; recovery children: ${recoveryKills.join(', ') || 'none'}; child output:\n${child.lines.slice(-5).join('\n')}\n` +
      `${tp ? `coordinator's commits: ${[...tpl.decided.keys()].join(' ') || 'none'}; may be in doubt: ${tpl.open.map((p) => p.id).join(' ') || 'none'}\n` : ''}` +
      `ops since check ${lo - 1}:\n  ${ops.slice(from < 0 ? 0 : from + 1).slice(-40).map((o: Op) => describeOp(o)).join('\n  ')}`;
  };
  // the epoch after the last acknowledged one may be durable already; not when it is a prepared
  // epoch the coordinator did not record (then the resolver says abort)
  const nextOp = ops.find((o) => (o.t === 'check' || (o.t === 'prepare' && o.decision === 'commit')) && o.k === lo + 1);
  const hi = nextOp?.t === 'prepare' ? lo : lo + 1;
  let store;
  const calls: InDoubtEpoch[] = [];
  const resolveInDoubt = (q: InDoubtEpoch): 'commit' | 'abort' => {
    calls.push(q);
    return tpl.decided.has(q.id) ? 'commit' : 'abort';
  };
  if (tp && rng.chance(0.5)) {
    // without a resolver first: in doubt, it must reject with EINDOUBT and change nothing
    const before = await wholeTree(dir);
    try {
      store = await openStore(dir, { inline: true, segmentSize: SEGMENT });
      bump(tpl.open.length ? 'recovered without a resolver: not in doubt (in a window)' : 'recovered without a resolver: not in doubt (outside any window)');
    } catch (e) {
      if (!(e instanceof CpError) || e.code !== 'EINDOUBT') throw new RoundFailure(`recovery without a resolver rejected: ${errText(e)}\n${context()}`);
      const id = (e.details as { id?: string } | undefined)?.id;
      if (!tpl.open.some((p) => p.id === id)) throw new RoundFailure(`recovery without a resolver: EINDOUBT for ${id}; only ${tpl.open.map((p) => p.id).join(', ') || 'none'} can be in doubt\n${context()}`);
      const after = await wholeTree(dir);
      const d = diffFiles(after, before);
      if (d.length) throw new RoundFailure(`recovery without a resolver rejected with EINDOUBT but changed the store: ${d.slice(0, 4).join('; ')}\n${context()}`);
      bump('in doubt without a resolver: EINDOUBT, nothing changed');
    }
  }
  try {
    store ??= await openStore(dir, { inline: true, segmentSize: SEGMENT, ...(tp ? { resolveInDoubt } : {}) });
  } catch (e) {
    throw new RoundFailure(`recovery rejected: ${errText(e)}\n${context()}`);
  }
  if (tp && calls.length) {
    const q = calls[0];
    if (calls.length > 1 || !tpl.open.some((p) => p.id === q.id)) {
      throw new RoundFailure(`the resolver was asked ${calls.map((c) => c.id).join(', ')}; only ${tpl.open.map((p) => p.id).join(', ') || 'none'} can be in doubt\n${context()}`);
    }
    bump(`in-doubt recoveries: resolver answered ${tpl.decided.has(q.id) ? 'commit' : 'abort'}`);
  }
  let next: Map<string, Buffer>;
  try {
    const files = await readTree(dir);
    const x = { snaps, lo, hi, base: epoch };
    const bad = judge({ files, epoch: store.epoch, entries: store.recovery.entries }, x);
    if (bad) throw new RoundFailure(`${bad}\n${context()}`);
    const k = store.epoch - epoch;
    if (k > lo) st.laterEpoch++;
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
  // a two-phase lane (prepare, commit or abort, in-doubt recovery) beside the others takes its share of the kills
  const share = Math.min(1, Math.max(0, o.twoPhase ?? 0));
  const tpKills = share >= 1 ? o.cases : Math.round(o.cases * share);
  const laneKills = o.cases - tpKills;
  const per = Math.ceil(laneKills / lanes);
  const out: KindResult = { kind: 'kill', cases: 0, violations: [], ms: 0, stats: {} };
  const live = { kills: 0 };
  const progress = setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    o.log(`  kill: ${live.kills} kills in ${s.toFixed(0)} s (${Math.round(live.kills / (s / 60))}/min)`);
  }, 30000);
  progress.unref();
  const edge = o.edge ?? DEFAULT_EDGE;
  // the edge rounds (kill-edge.ts: low ulimit, contending processes) run beside the lanes
  const [edgeStats, realfs, tpLane, ...results] = await Promise.all([
    runEdgeRounds(o.seed, edge.ulimitRounds, edge.contendRounds, o.log),
    realfsLane(mixSeed(o.seed, 0x5f5), edge.realfsRounds ?? 0, o.log),
    tpKills > 0 ? killLane(share >= 1 ? o.seed : mixSeed(o.seed, 0x2bc), tpKills, o.log, Infinity, live, true) : null,
    ...Array.from({ length: laneKills > 0 ? lanes : 0 }, (_, i) =>
      killLane(unitSeed(o.seed, i), i === lanes - 1 ? laneKills - per * (lanes - 1) : per, o.log, Infinity, live)),
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
  if (tpLane) {
    const tp: Record<string, number> = { 'kill: rounds': tpLane.rounds, 'kill: kills': tpLane.kills, 'kill: violations': tpLane.violations.length, 'kill: acknowledged checks and commits': tpLane.acks };
    for (const [k, v] of Object.entries(tpLane.byPlan)) tp[`kill: kills: ${k}`] = v;
    addCounts(tp, Object.fromEntries(Object.entries(tpLane.twoPhase ?? {}).map(([k, v]) => [`kill: ${k}`, v])));
    out.twoPhase = tp;
    out.cases += tpLane.kills;
    out.violations.push(...tpLane.violations);
  }
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
