/**
 * Power-loss crash states. One unit = one workload (seeded) run against a store on the simulated file
 * system, recorded; then, at every point of its trace (sampled when the trace is long), crash states
 * are built (durable only, everything issued, random subsets with torn writes, ordered prefixes),
 * each recovered with openStore on the simulated I/O and judged by the oracle. A fraction of the
 * recoveries is itself crashed at a random point of its own trace and recovered again: the second
 * recovery must reach the same epoch as the first.
 */
import { openStore } from '../../lib/index.js';
import { Rng, mixSeed } from '../helpers/model.js';
import { SimFS, CrashModel, type ChoiceMode } from './simfs.js';
import { drive, errText } from './driver.js';
import { judge } from './oracle.js';
import { withSeededRandom } from './determinism.js';
import { guardUnit, recoverImage, directAppendMinOf, applySliceOf, markStepOf, unitSeed, sig, report, countDims, addCounts, STORE, SEGMENT, DEFAULT_EDGE, type KindOptions, type KindResult, type Violation, type DimCount } from './common.js';
import { edgeUnit, isEdgeUnit, DIMS, type Dim } from './edges.js';
import { twoPhaseUnit, twoPhaseReplay } from './twophase.js';
import { markBreach } from './marks.js';

export interface PowerlossUnitOptions {
  /** crash states to aim for in this unit (the unit's own plan; independent of the run's total) */
  budget: number;
  /** stop after this many states (replay) */
  limit?: number;
  /** fraction of recoveries crashed again */
  doubleRate?: number;
  /** fraction of points where the process is killed, recovers, and then the power fails */
  killRate?: number;
  /** override the unit's choice of how often checks are not awaited */
  unawaited?: number;
}

export interface UnitResult {
  states: number;
  doubles: number;
  kills: number;
  violations: Violation[];
  traceLen: number;
  checks: number;
  outcomes: Record<string, number>;
}

const MODES: ChoiceMode[] = ['durable', 'all', 'random', 'random', 'ordered', 'random', 'ordered', 'random'];

export async function powerlossUnit(seed: number, o: PowerlossUnitOptions): Promise<UnitResult> {
  return withSeededRandom(seed, () => powerlossUnitInner(seed, o));
}

async function powerlossUnitInner(seed: number, o: PowerlossUnitOptions): Promise<UnitResult> {
  const rng = new Rng(seed);
  const pick = new Rng(mixSeed(seed, 0x9a11));
  const res: UnitResult = { states: 0, doubles: 0, kills: 0, violations: [], traceLen: 0, checks: 0, outcomes: {} };
  const applyThreshold = [0, 0, 12 * 1024, 2 ** 40][rng.int(4)];
  const drawn = rng.chance(0.35) ? 0.4 : 0;
  const unawaited = o.unawaited ?? drawn;
  const ops = rng.chance(0.25) ? rng.range(70, 160) : rng.range(15, 70);
  // Drawn from a stream of its own, so that the other draws of a seed stay what they were.
  const directAppendMin = directAppendMinOf(seed);
  const applySlice = applySliceOf(seed);
  const markStep = markStepOf(seed);
  const variant = `applyThreshold ${applyThreshold}, unawaited ${unawaited}, ops ${ops}, directAppendMin ${directAppendMin}, applySlice ${applySlice ?? 'default'}, markStep ${markStep ?? 'default'}`;
  const fail = (cases: number, what: string, where = ''): void => {
    res.violations.push({ kind: 'powerloss', seed, cases, what: sig(what), detail: `${variant}\n${what}${where ? `\n${where}` : ''}` });
  };

  // 1. run and record
  const sim = new SimFS();
  sim.mkdirSync(STORE);
  const base = sim.image();
  sim.allowedRoot = STORE;
  const store = await openStore(STORE, { io: sim, noLock: true, segmentSize: SEGMENT, applyThreshold, applyDelay: 3600_000, directAppendMin, applySlice, markStep });
  const run = await drive(store, {
    seed, ops, unawaited,
    onIssue: (k) => sim.mark({ kind: 'issue', k }),
    onAck: (k, epoch) => {
      sim.mark({ kind: 'ack', k });
      if (epoch !== k) fail(0, `check ${k} resolved with epoch ${epoch}`);
    },
  });
  if (run.error) fail(0, `the workload failed without any fault: op ${run.error.i} ${run.error.op}: ${errText(run.error.err)}`);
  await store.close({ discard: true }).catch((e) => fail(0, `close failed: ${errText(e)}`));
  if (sim.violations.length) fail(0, `I/O outside the store: ${sim.violations.join('; ')}`);
  res.traceLen = sim.trace.length;
  res.checks = run.acked;
  if (res.violations.length) return res;

  // 2. crash states along the trace
  const model = new CrashModel(base, sim.trace);
  const points = sim.trace.filter((e) => e.t !== 'mark').length + 1;
  const perPoint = Math.max(2, Math.min(MODES.length, Math.ceil(o.budget / points)));
  const sample = Math.min(1, o.budget / (points * perPoint));
  const seen = new Set<string>();
  const limit = o.limit ?? Infinity;
  const doubleRate = o.doubleRate ?? 0.06;
  const killRate = o.killRate ?? 0.08;

  for (;;) {
    // a process crash here (the page cache survives), recovery, then a power loss during or after it
    if (pick.chance(killRate * sample) && res.states < limit) {
      const where = `process killed at trace point ${model.pos}/${sim.trace.length} (acked ${model.acked}, issued ${model.issued})`;
      const x = { snaps: run.snaps, lo: model.acked, hi: model.issued };
      const pc = model.processCrash();
      pc.sim.allowedRoot = STORE;
      const pending = pc.sim.trace.length;
      let first: number | null = null;
      res.states++;
      res.kills++;
      try {
        const s1 = await openStore(STORE, { io: pc.sim, noLock: true, segmentSize: SEGMENT, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
        first = s1.epoch;
        const bad = judge({ files: pc.sim.tree(STORE), epoch: s1.epoch, entries: s1.recovery.entries }, x);
        if (bad) fail(res.states, `recovery after a process crash: ${bad}`, where);
      } catch (e) {
        fail(res.states, `recovery after a process crash rejected: ${errText(e)}`, where);
      }
      // (a replay that stops at the first recovery's case skips the power loss after it)
      if (first !== null && res.states < limit) {
        const done = pc.sim.trace.length;
        const m = new CrashModel(pc.base, pc.sim.trace, { acked: model.acked, issued: model.issued });
        const stop = pending + pick.int(done - pending + 1);
        while (m.pos < stop) m.step();
        const c = m.randomChoice(pick, (['durable', 'random', 'ordered'] as ChoiceMode[])[pick.int(3)]);
        const img2 = m.materialize(c);
        const breach2 = markBreach(img2, STORE);
        const r = await recoverImage(img2);
        res.states++;
        const where2 = `${where}; its recovery reached epoch ${first}; then the power failed at its trace point ${stop - pending}/${done - pending}` +
          `${stop === done ? ' (after it finished)' : ''}; ${m.explain(c)}`;
        if (breach2) fail(res.states, `a record past its segment's high-water mark (R19): ${breach2}`, where2);
        // once that recovery finished, the store was open at its epoch: nothing below may come back
        const x2 = { ...x, lo: stop === done ? first : x.lo };
        if (r.epoch === null) fail(res.states, `recovery after a process crash, recovery and a power loss rejected: ${errText(r.error)}`, where2);
        else {
          const bad = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, x2);
          if (bad) fail(res.states, `after a process crash, recovery and a power loss: ${bad}`, where2);
        }
      }
    }
    if (pick.chance(sample) || model.done) {
      for (let j = 0; j < perPoint && res.states < limit; j++) {
        const mode = j === 0 ? 'durable' : j === 1 ? 'all' : MODES[2 + pick.int(MODES.length - 2)];
        const choice = model.randomChoice(pick, mode);
        if (seen.has(choice.key)) continue;
        seen.add(choice.key);
        const img = model.materialize(choice);
        res.states++;
        const where = `crash at trace point ${model.pos}/${sim.trace.length} (acked ${model.acked}, issued ${model.issued}, mode ${mode}); ${model.explain(choice)}`;
        const x = { snaps: run.snaps, lo: model.acked, hi: model.issued };
        const breach = markBreach(img, STORE);
        if (breach) fail(res.states, `a record past its segment's high-water mark (R19): ${breach}`, where);
        const r = await recoverImage(img, true, { keepOpen: false });
        if (r.epoch === null) {
          fail(res.states, `recovery rejected: ${errText(r.error)}`, where);
          continue;
        }
        if (r.sim.violations.length) fail(res.states, `I/O outside the store: ${r.sim.violations.join('; ')}`, where);
        const bad = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, x);
        const outcome = r.epoch === model.acked ? 'acked' : 'later';
        res.outcomes[outcome] = (res.outcomes[outcome] ?? 0) + 1;
        if (bad) {
          fail(res.states, bad, where);
          continue;
        }
        // crash the recovery itself, recover again
        if (pick.chance(doubleRate) && res.states < limit) {
          const first = r.epoch;
          const rec = r.sim.trace.slice(0, r.traceLen);
          // img was adopted (and changed) by the first recovery: build the crashed state again
          const again = model.materialize(choice);
          const m3 = new CrashModel(again, rec);
          const stop = pick.int(rec.length + 1);
          while (m3.pos < stop) m3.step();
          const c2 = m3.randomChoice(pick, (['durable', 'random', 'ordered'] as ChoiceMode[])[pick.int(3)]);
          const img3 = m3.materialize(c2);
          const breach3 = markBreach(img3, STORE);
          const r2 = await recoverImage(img3, true);
          res.states++;
          res.doubles++;
          const where2 = `${where}\nthen recovery crashed at its trace point ${stop}/${rec.length}; ${m3.explain(c2)}`;
          if (breach3) fail(res.states, `a record past its segment's high-water mark (R19): ${breach3}`, where2);
          if (r2.epoch === null) {
            fail(res.states, `after a crash during recovery, recovery rejected: ${errText(r2.error)}`, where2);
            continue;
          }
          if (r2.epoch !== first) fail(res.states, `after a crash during recovery, the second recovery reached epoch ${r2.epoch}, the first ${first}`, where2);
          const bad2 = judge({ files: r2.files, epoch: r2.epoch, entries: r2.entries }, x);
          if (bad2) fail(res.states, `after a crash during recovery: ${bad2}`, where2);
        }
      }
    }
    if (model.done || res.states >= limit) break;
    // advance to the next point (past marks)
    while (!model.done && model.step().t === 'mark') { /* marks only move acked/issued */ }
  }
  return res;
}

export async function runPowerloss(o: KindOptions): Promise<KindResult> {
  const t0 = performance.now();
  const out: KindResult = { kind: 'powerloss', cases: 0, violations: [], ms: 0, stats: {} };
  let units = 0;
  let doubles = 0;
  let kills = 0;
  let checks = 0;
  const outcomes: Record<string, number> = {};
  let lastLog = t0;
  const edge = o.edge ?? DEFAULT_EDGE;
  const dims: Record<string, DimCount> = {};
  let edgeUnits = 0;
  let edgeCases = 0;
  // Two-phase units (twophase.ts) take their share of the cases between the others, from seeds of
  // their own: the other units are the same as without them (unit 0 first, then in order).
  const share = Math.min(1, Math.max(0, o.twoPhase ?? 0));
  const tpBase = share >= 1 ? o.seed : mixSeed(o.seed, 0x2bc);
  const tp: Record<string, number> = {};
  let tpCases = 0;
  let tpUnits = 0;
  let tpViolations = 0;
  for (let i = 0, j = 0; out.cases < o.cases;) {
    if (share >= 1 || (share > 0 && out.cases > 0 && tpCases < share * out.cases)) {
      const seed = unitSeed(tpBase, j++);
      let r;
      try {
        r = await twoPhaseUnit(seed, { budget: 2500, limit: o.cases - out.cases });
      } catch (e) {
        const msg = `the two-phase unit threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
        out.cases++;
        tpCases++;
        tpViolations++;
        report(o, out, { kind: 'powerloss', seed, cases: 1, what: sig(msg), detail: msg, replay: twoPhaseReplay(seed, 1) });
        continue;
      }
      tpUnits++;
      tpCases += r.states;
      out.cases += r.states;
      tpViolations += r.violations.length;
      addCounts(tp, r.counts);
      for (const v of r.violations) report(o, out, v);
      if (performance.now() - lastLog > 15000) {
        lastLog = performance.now();
        o.log(`  powerloss: ${out.cases} states (${tpCases} in ${tpUnits} two-phase units), ${out.violations.length} violations, ${((lastLog - t0) / 1000).toFixed(0)} s`);
      }
      continue;
    }
    const seed = unitSeed(o.seed, i++);
    if (isEdgeUnit(seed, edge.rate)) {
      // an edge unit (edges.ts): its dimensions are counted, its violations reported like any other
      const before = out.violations.length;
      const e = await guardUnit(o, out, seed, () => edgeUnit('powerloss', seed, { manyMax: edge.manyMax, states: edge.states, dimRate: edge.dimRate as Partial<Record<Dim, number>> }, o.cases - out.cases));
      if (e) {
        edgeUnits++;
        edgeCases += e.cases;
        out.cases += e.cases;
        for (const v of e.violations) report(o, out, v);
        const ds: string[] = e.dims.map((d) => DIMS[d]);
        if (e.maxOpen >= 1000) ds.push('entries open at one check >= 1000');
        countDims(dims, ds, e.violations.length);
      } else countDims(dims, ['edge units that threw'], out.violations.length - before);
      continue;
    }
    const r = await guardUnit(o, out, seed, () => powerlossUnit(seed, { budget: 2500, limit: o.cases - out.cases }));
    if (!r) continue;
    units++;
    out.cases += r.states;
    doubles += r.doubles;
    kills += r.kills;
    checks += r.checks;
    for (const [k, v] of Object.entries(r.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
    for (const v of r.violations) report(o, out, v);
    if (performance.now() - lastLog > 15000) {
      lastLog = performance.now();
      o.log(`  powerloss: ${out.cases} states from ${units} workloads, ${out.violations.length} violations, ${((lastLog - t0) / 1000).toFixed(0)} s`);
    }
  }
  out.ms = performance.now() - t0;
  out.dims = dims;
  if (share > 0) out.twoPhase = { 'powerloss: units': tpUnits, 'powerloss: cases': tpCases, 'powerloss: violations': tpViolations, ...Object.fromEntries(Object.entries(tp).map(([k, v]) => [`powerloss: ${k}`, v])) };
  out.stats = { 'edge units (edges.ts)': edgeUnits, 'edge cases': edgeCases, workloads: units, 'acked checks': checks, 'crashes during recovery': doubles, 'process kills followed by recovery and a power loss': kills, 'recovered = acked': outcomes.acked ?? 0, 'recovered later epoch': outcomes.later ?? 0 };
  return out;
}
