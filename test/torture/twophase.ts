/**
 * Two-phase epochs under power loss (store.prepare(), then commit() or abort(); recovery's
 * resolveInDoubt). One unit = one seeded workload whose epochs end with check() or with prepare()
 * and a decision (model.ts TwoPhaseOptions: commit with sync true or false, or abort; the VFO cases
 * FARE, FARW and FAD and an append past directAppendMin added to many prepared epochs), run on the
 * simulated file system and recorded; then crash states at every point of its trace, as in
 * powerloss.ts, and also at the moment the coordinator recorded a decision (before the store's
 * commit call).
 *
 * The oracle is a coordinator that records 'commit' durably when the workload calls commit (a mark
 * in the trace, before the store's call), and presumes abort otherwise. Recovery gets a resolver
 * answering from that record, and must then give exactly the prepared epoch when it was decided
 * commit, the previous committed epoch when not (plus, as everywhere, a later check already issued).
 * Moreover, for every state:
 *   - the resolver is called at most once, only inside a window where the log may end right after a
 *     PREPARE (from the prepare() call to the first durable point after its decision), and with the
 *     id, epoch, store id and directory of the prepare of that window;
 *   - an in-doubt state (the resolver was called) recovered without a resolver rejects with
 *     EINDOUBT naming that epoch and changes nothing on disk (no mutating call, the same bytes);
 *   - after an in-doubt recovery, reopening without a resolver is not in doubt and finds the same;
 *   - a sample of in-doubt states has its recovery crashed at each of its mutating I/O calls (the
 *     decision write among them) and recovered again with the same resolver: same epoch, same files;
 *   - a process crash (page cache kept), its recovery, then a power loss during or after it.
 */
import { openStore, CpError, type InDoubtEpoch } from '../../lib/index.js';
import { Rng, mixSeed, sameFiles, diffFiles, prepareId, type TwoPhaseOptions } from '../helpers/model.js';
import { SimFS, CrashModel, cloneImage, type ChoiceMode, type Choice, type Image, type TraceEv, type OpenPrepare } from './simfs.js';
import { drive, errText, type PrepareRecord } from './driver.js';
import { judge, type Expectation } from './oracle.js';
import { withSeededRandom } from './determinism.js';
import { recoverImage, sig, STORE, SEGMENT, type Violation } from './common.js';

export interface TwoPhaseUnitOptions {
  /** crash states to aim for */
  budget: number;
  /** stop after this many states (replay) */
  limit?: number;
  /** fraction of in-doubt states whose recovery is crashed at every one of its mutating calls */
  everyCallRate?: number;
  /** fraction of other states whose recovery is crashed once at a random point */
  doubleRate?: number;
  /** fraction of points where the process is killed, recovers, and then the power fails */
  killRate?: number;
}

export interface TwoPhaseUnitResult {
  states: number;
  violations: Violation[];
  traceLen: number;
  /** counters for the report (name -> count) */
  counts: Record<string, number>;
}

const MODES: ChoiceMode[] = ['durable', 'all', 'random', 'random', 'ordered', 'random', 'ordered', 'random'];
const MUTATING = new Set<TraceEv['t']>(['write', 'trunc', 'link', 'unlink', 'rename']);

/** The replay of a two-phase unit (all units two-phase, this seed first). */
export function twoPhaseReplay(seed: number, cases: number): string {
  return `--kind powerloss --twophase 1 --seed ${seed} --cases ${Math.max(1, cases)}`;
}

/** The workload's shape, drawn from the seed. */
export function twoPhasePlan(seed: number): { applyThreshold: number; unawaited: number; ops: number; directAppendMin: number | false; twoPhase: TwoPhaseOptions } {
  const rng = new Rng(mixSeed(seed, 0x2bc1));
  const applyThreshold = [0, 0, 12 * 1024, 2 ** 40][rng.int(4)];
  const unawaited = rng.chance(0.25) ? 0.4 : 0;
  const ops = rng.chance(0.25) ? rng.range(80, 160) : rng.range(25, 80);
  // mostly small, so that appends go straight to the files (and an abort must cut them back)
  const directAppendMin = ([1, 1, 2048, 2048, 16 * 1024, false] as const)[rng.int(6)];
  const twoPhase: TwoPhaseOptions = {
    rate: [0.4, 0.7, 1][rng.int(3)], abortRate: [0.25, 0.5, 0.75][rng.int(3)], noSyncRate: 0.35, vfoRate: 0.6, duringRate: 0.3, directMin: directAppendMin,
  };
  twoPhase.keeper = rng.chance(0.5);
  return { applyThreshold, unawaited, ops, directAppendMin, twoPhase };
}

export async function twoPhaseUnit(seed: number, o: TwoPhaseUnitOptions): Promise<TwoPhaseUnitResult> {
  return withSeededRandom(seed, () => unitInner(seed, o));
}

function countInto(c: Record<string, number>, k: string, n = 1): void {
  c[k] = (c[k] ?? 0) + n;
}

/** The store's whole tree (journal and control file included) as name -> bytes. */
function treeOf(img: Image): Map<string, Buffer> {
  return new SimFS(cloneImage(img)).tree(STORE, '\0');
}

async function unitInner(seed: number, o: TwoPhaseUnitOptions): Promise<TwoPhaseUnitResult> {
  const plan = twoPhasePlan(seed);
  const pick = new Rng(mixSeed(seed, 0x2bc9));
  const res: TwoPhaseUnitResult = { states: 0, violations: [], traceLen: 0, counts: {} };
  const counts = res.counts;
  const variant = `two-phase unit: applyThreshold ${plan.applyThreshold}, unawaited ${plan.unawaited}, ops ${plan.ops}, directAppendMin ${plan.directAppendMin}, ` +
    `prepare rate ${plan.twoPhase.rate}, abort rate ${plan.twoPhase.abortRate}, keeper ${plan.twoPhase.keeper}`;
  const fail = (cases: number, what: string, where = ''): void => {
    res.violations.push({ kind: 'powerloss', seed, cases, what: sig(`two-phase: ${what}`), detail: `${variant}\n${what}${where ? `\n${where}` : ''}`, replay: twoPhaseReplay(seed, cases) });
  };

  // 1. run and record
  const sim = new SimFS();
  sim.mkdirSync(STORE);
  const base = sim.image();
  sim.allowedRoot = STORE;
  const store = await openStore(STORE, { io: sim, noLock: true, segmentSize: SEGMENT, applyThreshold: plan.applyThreshold, applyDelay: 3600_000, directAppendMin: plan.directAppendMin });
  const storeId = store.id;
  const run = await drive(store, {
    seed, ops: plan.ops, unawaited: plan.unawaited, twoPhase: plan.twoPhase,
    onIssue: (k) => sim.mark({ kind: 'issue', k }),
    onAck: (k, epoch) => {
      sim.mark({ kind: 'ack', k });
      if (epoch !== k) fail(0, `check ${k} resolved with epoch ${epoch}`);
    },
    onPrepare: (op, id) => sim.mark({ kind: 'prepare', k: op.k, id }),
    onPrepared: (op, epoch) => {
      sim.mark({ kind: 'prepared', k: op.k, id: prepareId(seed, op.n) });
      if (epoch !== op.k) fail(0, `prepare() of check ${op.k} resolved with epoch ${epoch}`);
    },
    onDecide: (op, id) => sim.mark({ kind: 'decide', k: op.k, id }),
    onAbort: (op, id) => sim.mark({ kind: 'abort', k: op.k, id }),
    onDecided: (op, epoch) => {
      sim.mark({ kind: 'decided', k: op.k, id: prepareId(seed, op.n), sync: op.decision === 'commit' && op.sync });
      if (epoch !== op.k) fail(0, `the decision of check ${op.k} resolved with epoch ${epoch}`);
    },
  });
  if (run.error) fail(0, `the workload failed without any fault: op ${run.error.i} ${run.error.op}: ${errText(run.error.err)}`);
  await store.close({ discard: true }).catch((e) => fail(0, `close failed: ${errText(e)}`));
  if (sim.violations.length) fail(0, `I/O outside the store: ${sim.violations.join('; ')}`);
  res.traceLen = sim.trace.length;
  const byId = new Map<string, PrepareRecord>(run.prepares.map((p) => [p.id, p]));
  for (const p of run.prepares) {
    countInto(counts, `prepares: ${p.op.decision === 'abort' ? 'abort' : p.op.sync ? 'commit (sync)' : 'commit (sync: false)'}`);
    if (p.direct > 0) countInto(counts, `prepared epochs with direct appends: ${p.op.decision}`);
    if (p.op.during > 0) countInto(counts, 'prepares: commits with calls made while prepared');
    for (const [c, v] of Object.entries(p.op.vfo)) if (v) countInto(counts, `prepared epochs with ${c.toUpperCase()}: ${p.op.decision}`);
  }
  countInto(counts, 'acked checks and commits', run.acked);
  if (res.violations.length) return res;

  // 2. crash states along the trace
  const model = new CrashModel(base, sim.trace);
  const points = sim.trace.filter((e) => e.t !== 'mark' || e.m.kind === 'decide' || e.m.kind === 'prepared').length + 1;
  const perPoint = Math.max(2, Math.min(MODES.length, Math.ceil(o.budget / points)));
  const sample = Math.min(1, o.budget / (points * perPoint));
  const seen = new Set<string>();
  const limit = o.limit ?? Infinity;
  const everyCallRate = o.everyCallRate ?? 0.15;
  const doubleRate = o.doubleRate ?? 0.06;
  const killRate = o.killRate ?? 0.08;
  // the first in-doubt state of each prepare and each decision is crashed at every call of its recovery
  const everyCallDone = new Set<string>();

  /** The resolver of a state: the coordinator's record as of the marks so far. */
  const resolverFor = (decided: Set<string>, calls: InDoubtEpoch[]) => (q: InDoubtEpoch): 'commit' | 'abort' => {
    calls.push(q);
    return decided.has(q.id) ? 'commit' : 'abort';
  };
  /** What the resolver calls of one recovery say about the state's window; null when fine. */
  const checkCalls = (calls: InDoubtEpoch[], open: readonly OpenPrepare[]): string | null => {
    if (calls.length === 0) return null;
    if (calls.length > 1) return `the resolver was called ${calls.length} times in one recovery`;
    const q = calls[0];
    if (open.length === 0) return `the resolver was called for ${q.id} (epoch ${q.epoch}) on a state that cannot be in doubt (no prepare since the last durable decision)`;
    const p = byId.get(q.id);
    if (!open.some((o) => o.id === q.id) || !p) return `the resolver was asked about ${q.id}; only ${open.map((o) => o.id).join(', ')} can be in doubt here`;
    if (q.epoch !== p.epoch || q.storeId !== storeId || q.dir !== STORE) {
      return `the resolver was asked about epoch ${q.epoch} of store ${q.storeId} in ${q.dir}; the prepare was epoch ${p.epoch} of ${storeId} in ${STORE}`;
    }
    return null;
  };

  const stageLabel = (m: CrashModel, atDecide: boolean): string => {
    if (atDecide) return 'decision recorded, before the commit call';
    const p = m.prepId ? byId.get(m.prepId) : undefined;
    if (m.stage === 'committing' && p && !p.op.sync) return 'committing (sync: false)';
    return m.stage;
  };

  /** One crash state at the model's point: recover with the resolver, judge, and the in-doubt checks. */
  const oneState = async (choice: Choice, mode: string, atDecide: boolean): Promise<void> => {
    const stage = stageLabel(model, atDecide);
    const where = `crash at trace point ${model.pos}/${sim.trace.length} (acked ${model.acked}, issued ${model.issued}, mode ${mode}, ` +
      `two-phase stage: ${stage}${model.prepId ? ` of ${model.prepId}` : ''}, coordinator's commits: ${[...model.decided].join(' ') || 'none'}); ${model.explain(choice)}`;
    const x: Expectation = { snaps: run.snaps, lo: model.acked, hi: model.issued };
    const decided = new Set(model.decided);
    const calls: InDoubtEpoch[] = [];
    const r = await recoverImage(model.materialize(choice), true, { resolveInDoubt: resolverFor(decided, calls), keepOpen: true });
    res.states++;
    countInto(counts, `crash states: ${stage}`);
    const p = model.prepId && model.open.some((q) => q.id === model.prepId) ? byId.get(model.prepId) : undefined;
    if (p) {
      for (const [c, v] of Object.entries(p.op.vfo)) if (v) countInto(counts, `crash states in a prepared epoch's window with ${c.toUpperCase()}: decided ${decided.has(p.id) ? 'commit' : 'abort'}`);
      if (p.direct > 0) countInto(counts, `crash states in a prepared epoch's window with direct appends: decided ${decided.has(p.id) ? 'commit' : 'abort'}`);
    }
    if (r.epoch === null) {
      fail(res.states, `recovery with the resolver rejected: ${errText(r.error)}`, where);
      return;
    }
    if (r.sim.violations.length) fail(res.states, `I/O outside the store: ${r.sim.violations.join('; ')}`, where);
    const bad = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, x);
    if (bad) fail(res.states, bad, where);
    const badCalls = checkCalls(calls, model.open);
    if (badCalls) fail(res.states, badCalls, where);
    const report = r.store?.recovery.inDoubt ?? null;
    if (calls.length === 1 && (report?.id !== calls[0].id || report.decision !== (decided.has(calls[0].id) ? 'commit' : 'abort'))) {
      fail(res.states, `the recovery report's inDoubt is ${JSON.stringify(report)} after the resolver answered for ${calls[0].id}`, where);
    }
    if (calls.length === 0 && report !== null) fail(res.states, `the recovery report has inDoubt ${JSON.stringify(report)} but the resolver was not called`, where);
    if (calls.length === 0) {
      countInto(counts, (model.open.length > 0) ? 'recoveries in a window, not in doubt' : 'recoveries outside any window (resolver must not be called)');
    } else {
      countInto(counts, `in-doubt recoveries: resolver answered ${decided.has(calls[0].id) ? 'commit' : 'abort'}`);
    }
    if (bad || badCalls) return;
    const afterFirst = r.sim.image();
    const recTrace = r.sim.trace.slice(0, r.traceLen);

    if (calls.length === 1) {
      const q = calls[0];
      // the same state without a resolver: EINDOUBT, and nothing changed
      if (res.states < limit) {
        const img = model.materialize(choice);
        const before = treeOf(img);
        const r0 = await recoverImage(img, true);
        res.states++;
        countInto(counts, 'in-doubt states recovered without a resolver (EINDOUBT, nothing changed)');
        const w0 = `${where}\nrecovered without a resolver`;
        if (r0.epoch !== null) fail(res.states, `recovery of an in-doubt state without a resolver succeeded (epoch ${r0.epoch})`, w0);
        else {
          const err = r0.error;
          const det = err instanceof CpError ? (err.details as { id?: string; epoch?: number; storeId?: string } | undefined) : undefined;
          if (!(err instanceof CpError) || err.code !== 'EINDOUBT') fail(res.states, `recovery of an in-doubt state without a resolver rejected with ${errText(err)}, not EINDOUBT`, w0);
          else if (det?.id !== q.id || det.epoch !== q.epoch || det.storeId !== storeId) fail(res.states, `EINDOUBT details ${JSON.stringify(det)}, expected id ${q.id} epoch ${q.epoch} store ${storeId}`, w0);
          const muts = r0.sim.trace.filter((e) => MUTATING.has(e.t));
          if (muts.length) fail(res.states, `recovery that rejected with EINDOUBT made ${muts.length} mutating call(s), the first ${JSON.stringify(muts[0], (k, v) => (k === 'data' ? `${(v as Buffer).length} bytes` : v))}`, w0);
          const after = r0.sim.tree(STORE, '\0');
          if (!sameFiles(after, before)) fail(res.states, `recovery that rejected with EINDOUBT changed the store: ${diffFiles(after, before).slice(0, 4).join('; ')}`, w0);
        }
      }
      // decided: reopening is not in doubt any more, and finds the same
      if (res.states < limit) {
        const calls2: InDoubtEpoch[] = [];
        const again = await recoverImage(cloneImage(afterFirst), true, { resolveInDoubt: resolverFor(decided, calls2) });
        res.states++;
        countInto(counts, 'reopens after an in-doubt recovery');
        const w2 = `${where}\nreopened after its in-doubt recovery (epoch ${r.epoch})`;
        if (calls2.length) fail(res.states, `after an in-doubt recovery finished, reopening asked the resolver again (${calls2[0].id})`, w2);
        if (again.epoch !== r.epoch || !sameFiles(again.files, r.files)) {
          fail(res.states, `reopening after an in-doubt recovery gave epoch ${again.epoch} (${again.epoch === null ? errText(again.error) : diffFiles(again.files, r.files).slice(0, 3).join('; ') || 'same files'}), the recovery gave ${r.epoch}`, w2);
        }
      }
      // crash the recovery at every one of its mutating calls (the decision write among them)
      const key = `${q.id} ${decided.has(q.id)}`;
      const every = !everyCallDone.has(key) || pick.chance(everyCallRate);
      everyCallDone.add(key);
      const at: number[] = [];
      if (every) {
        for (let i = 0; i < recTrace.length; i++) if (MUTATING.has(recTrace[i].t)) at.push(i);
        at.push(recTrace.length);
        countInto(counts, 'in-doubt recoveries crashed at each of their mutating calls');
      } else if (pick.chance(0.3)) {
        at.push(pick.int(recTrace.length + 1));
      }
      for (const stop of at) {
        for (const cm of (every ? ['durable', 'random'] : [(['durable', 'random', 'ordered'] as ChoiceMode[])[pick.int(3)]]) as ChoiceMode[]) {
          if (res.states >= limit) return;
          // the crash after recovery's call `stop - 1`, before its call `stop`
          const m3 = new CrashModel(model.materialize(choice), recTrace);
          while (m3.pos < stop) m3.step();
          const c2 = m3.randomChoice(pick, cm);
          const calls3: InDoubtEpoch[] = [];
          const r2 = await recoverImage(m3.materialize(c2), true, { resolveInDoubt: resolverFor(decided, calls3) });
          res.states++;
          countInto(counts, `states of in-doubt recoveries crashed: decided ${decided.has(q.id) ? 'commit' : 'abort'}`);
          const w3 = `${where}\nits in-doubt recovery (decided ${decided.has(q.id) ? 'commit' : 'abort'}, epoch ${r.epoch}) crashed at its trace point ${stop}/${recTrace.length} (${stop < recTrace.length ? `before its ${recTrace[stop].t}` : 'after it finished'}); ${m3.explain(c2)}`;
          if (r2.epoch === null) {
            fail(res.states, `after a crash during an in-doubt recovery, recovery rejected: ${errText(r2.error)}`, w3);
            continue;
          }
          if (calls3.length > 1 || (calls3.length === 1 && calls3[0].id !== q.id)) fail(res.states, `after a crash during an in-doubt recovery, the resolver was asked ${calls3.map((c) => c.id).join(', ')}`, w3);
          if (r2.epoch !== r.epoch || !sameFiles(r2.files, r.files)) {
            fail(res.states, `after a crash during an in-doubt recovery, the second recovery reached epoch ${r2.epoch} (${diffFiles(r2.files, r.files).slice(0, 3).join('; ') || 'same files'}), the first ${r.epoch}`, w3);
            continue;
          }
          const bad2 = judge({ files: r2.files, epoch: r2.epoch, entries: r2.entries }, x);
          if (bad2) fail(res.states, `after a crash during an in-doubt recovery: ${bad2}`, w3);
        }
      }
    } else if (pick.chance(doubleRate) && res.states < limit) {
      // not in doubt: crash its recovery once, recover again (the resolver must not be called)
      const m3 = new CrashModel(model.materialize(choice), recTrace);
      const stop = pick.int(recTrace.length + 1);
      while (m3.pos < stop) m3.step();
      const c2 = m3.randomChoice(pick, (['durable', 'random', 'ordered'] as ChoiceMode[])[pick.int(3)]);
      const calls3: InDoubtEpoch[] = [];
      const r2 = await recoverImage(m3.materialize(c2), true, { resolveInDoubt: resolverFor(decided, calls3) });
      res.states++;
      countInto(counts, 'other recoveries crashed once');
      const w3 = `${where}\nthen recovery crashed at its trace point ${stop}/${recTrace.length}; ${m3.explain(c2)}`;
      if (r2.epoch === null) fail(res.states, `after a crash during recovery, recovery rejected: ${errText(r2.error)}`, w3);
      else {
        if (calls3.length) fail(res.states, `after a crash during a recovery that was not in doubt, the resolver was asked about ${calls3[0].id}`, w3);
        if (r2.epoch !== r.epoch) fail(res.states, `after a crash during recovery, the second recovery reached epoch ${r2.epoch}, the first ${r.epoch}`, w3);
        const bad2 = judge({ files: r2.files, epoch: r2.epoch, entries: r2.entries }, x);
        if (bad2) fail(res.states, `after a crash during recovery: ${bad2}`, w3);
      }
    }
  };

  /** A process crash at the model's point (page cache kept), its recovery, then a power loss during or after it. */
  const processKill = async (atDecide: boolean): Promise<void> => {
    const stage = stageLabel(model, atDecide);
    const where = `process killed at trace point ${model.pos}/${sim.trace.length} (acked ${model.acked}, issued ${model.issued}, two-phase stage: ${stage}${model.prepId ? ` of ${model.prepId}` : ''}, coordinator's commits: ${[...model.decided].join(' ') || 'none'})`;
    const x: Expectation = { snaps: run.snaps, lo: model.acked, hi: model.issued };
    const decided = new Set(model.decided);
    const marks = model.markState();
    const pc = model.processCrash();
    pc.sim.allowedRoot = STORE;
    const pending = pc.sim.trace.length;
    res.states++;
    countInto(counts, 'process kills followed by recovery and a power loss');
    const calls: InDoubtEpoch[] = [];
    let first: number | null = null;
    try {
      const s1 = await openStore(STORE, { io: pc.sim, noLock: true, segmentSize: SEGMENT, applyDelay: 3600_000, applyThreshold: 2 ** 40, resolveInDoubt: resolverFor(decided, calls) });
      first = s1.epoch;
      const bad = judge({ files: pc.sim.tree(STORE), epoch: s1.epoch, entries: s1.recovery.entries }, x) ?? checkCalls(calls, model.open);
      if (bad) fail(res.states, `recovery after a process crash: ${bad}`, where);
    } catch (e) {
      fail(res.states, `recovery after a process crash rejected: ${errText(e)}`, where);
    }
    if (first === null || res.states >= limit) return;
    const done = pc.sim.trace.length;
    const m = new CrashModel(pc.base, pc.sim.trace, marks);
    const stop = pending + pick.int(done - pending + 1);
    while (m.pos < stop) m.step();
    const c = m.randomChoice(pick, (['durable', 'random', 'ordered'] as ChoiceMode[])[pick.int(3)]);
    const calls2: InDoubtEpoch[] = [];
    const r = await recoverImage(m.materialize(c), true, { resolveInDoubt: resolverFor(decided, calls2) });
    res.states++;
    const where2 = `${where}; its recovery reached epoch ${first}${calls.length ? ` (in doubt: ${calls[0].id})` : ''}; then the power failed at its trace point ${stop - pending}/${done - pending}` +
      `${stop === done ? ' (after it finished)' : ''}; ${m.explain(c)}`;
    const x2 = { ...x, lo: stop === done ? first : x.lo };
    if (r.epoch === null) fail(res.states, `recovery after a process crash, recovery and a power loss rejected: ${errText(r.error)}`, where2);
    else {
      const bad = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, x2) ?? checkCalls(calls2, model.open);
      if (bad) fail(res.states, `after a process crash, recovery and a power loss: ${bad}`, where2);
    }
  };

  for (;;) {
    // right after a decide mark: the coordinator's record is there, the store's commit call not yet
    const last = model.pos > 0 ? sim.trace[model.pos - 1] : null;
    const atDecide = last?.t === 'mark' && last.m.kind === 'decide';
    if (pick.chance(killRate * sample) && res.states < limit) await processKill(atDecide);
    // the states of the decision's moment and of the two-phase windows are always taken
    const atPrepared = last?.t === 'mark' && last.m.kind === 'prepared';
    if (pick.chance(sample) || model.done || atDecide || atPrepared || ((model.open.length > 0) && pick.chance(Math.min(1, 3 * sample)))) {
      for (let j = 0; j < perPoint && res.states < limit; j++) {
        const mode = j === 0 ? 'durable' : j === 1 ? 'all' : MODES[2 + pick.int(MODES.length - 2)];
        const choice = model.randomChoice(pick, mode);
        const key = `${choice.key}|${[...model.decided].join(',')}|${(model.open.length > 0)}|${stageLabel(model, atDecide)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        await oneState(choice, mode, atDecide);
      }
    }
    if (model.done || res.states >= limit) break;
    // advance to the next point: past marks, but stop right after a prepared or decide mark too
    for (;;) {
      if (model.done) break;
      const ev = model.step();
      if (ev.t !== 'mark' || ev.m.kind === 'decide' || ev.m.kind === 'prepared') break;
    }
  }
  return res;
}
