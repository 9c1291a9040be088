/**
 * I/O faults. A fault-injecting IO wrapper fails one call (ENOSPC, EIO or EACCES) at each call site
 * in turn: one unit = one workload (seeded) on the simulated file system, first run clean to count
 * its calls, then rerun once per (call, code) with that call failing. Each run checks:
 *   - every rejection any store call gives is a CpError, and the first one carries the injected code
 *     (directly, or as the cause of EREOPEN);
 *   - the store stays at the last acknowledged epoch (store.epoch);
 *   - with faults off, reopening (recovery) loses nothing acknowledged: on the files as the process
 *     left them, and on the durable state a power loss right after the failure would leave.
 * Then the same for recovery itself: a crashed store with committed, unapplied epochs and an
 * uncommitted tail is recovered with a fault at each of recovery's calls; recovery must reject with a
 * CpError (or, for a read of the journal, which it may read again or never have needed, recover
 * every acked epoch), and a recovery with faults off (again also after a power loss) must find
 * every acked epoch.
 */
import { openStore, CpError } from '../../lib/index.js';
import type { IO } from '../../lib/io.js';
import { Rng } from '../helpers/model.js';
import { SimFS, CrashModel, type Image } from './simfs.js';
import { drive, errText } from './driver.js';
import { judge } from './oracle.js';
import { withSeededRandom } from './determinism.js';
import { guardUnit, recoverImage, directAppendMinOf, applySliceOf, markStepOf, unitSeed, sig, report, countDims, STORE, SEGMENT, DEFAULT_EDGE, type KindOptions, type KindResult, type Violation, type DimCount } from './common.js';
import { edgeUnit, isEdgeUnit, DIMS, type Dim } from './edges.js';

export const FAULT_CODES = ['ENOSPC', 'EIO', 'EACCES'] as const;
export type FaultCode = (typeof FAULT_CODES)[number];

const MUTATING = new Set(['write', 'fsync', 'fdatasync', 'ftruncate', 'rename', 'unlink', 'mkdir', 'fsyncDir']);
const SKIP = new Set(['close', 'maxFileSize']);

export interface CallInfo {
  method: string;
  site: string;
}

/** Wraps an IO: counts calls, labels each with its call site, and fails call number `at` with `code`. */
export class FaultIO {
  calls: CallInfo[] = [];
  hit: CallInfo | null = null;
  phase = 'open';
  private paths = new Map<number, string>();
  readonly io: IO;

  constructor(inner: IO, private at = -1, private code: FaultCode = 'EIO') {
    const self = this;
    const wrap = (method: string) => async (...args: unknown[]): Promise<unknown> => {
      const f = (inner as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method];
      if (SKIP.has(method)) {
        if (method === 'close') self.paths.delete(args[0] as number);
        return f.apply(inner, args);
      }
      const p = typeof args[0] === 'number' ? self.paths.get(args[0] as number) ?? '?' : String(args[0]);
      const info = { method, site: `${self.phase}: ${method} ${classify(p)}` };
      const n = self.calls.length;
      self.calls.push(info);
      if (n === self.at) {
        self.hit = info;
        throw Object.assign(new Error(`${self.code}: injected fault in ${method} '${p}'`), { code: self.code, syscall: method, path: p });
      }
      const r = await f.apply(inner, args);
      if (method === 'open') self.paths.set(r as number, String(args[0]));
      return r;
    };
    const o: Record<string, unknown> = {};
    for (const m of ['open', 'close', 'read', 'write', 'fsync', 'fdatasync', 'ftruncate', 'fstat', 'stat', 'lstat', 'rename', 'unlink', 'mkdir', 'readdir', 'fsyncDir', 'realpath', 'access', 'rmdir', 'maxFileSize']) {
      o[m] = wrap(m);
    }
    this.io = o as unknown as IO;
  }
}

function classify(p: string): string {
  if (p.includes('/.cpfile/journal/')) return 'journal segment';
  if (p.endsWith('/.cpfile/journal')) return 'journal dir';
  if (p.endsWith('/.cpfile/control')) return 'control file';
  if (p.endsWith('/.cpfile')) return 'meta dir';
  if (p === STORE) return 'store dir';
  if (p.startsWith(STORE + '/')) {
    const rel = p.slice(STORE.length + 1);
    return rel.includes('/') || rel === 'sub' ? 'data file/subdir' : 'data file';
  }
  return p;
}

/** Does this rejection carry the injected code (directly, or as the cause of EREOPEN)? */
function carries(e: unknown, code: string): boolean {
  if (!(e instanceof CpError)) return false;
  if (e.code === code) return true;
  const cause = (e as { cause?: unknown }).cause;
  return e.code === 'EREOPEN' && cause instanceof CpError ? carries(cause, code) : (e.code === 'EREOPEN' && (cause as { code?: string })?.code === code);
}

interface Plan {
  ops: number;
  applyThreshold: number;
  applySlice: number | undefined;
  markStep: number | undefined;
  unawaited: number;
  directAppendMin: number | false;
}

function planOf(seed: number): Plan {
  const rng = new Rng(seed);
  return { ops: rng.range(12, 40), applyThreshold: [0, 12 * 1024, 2 ** 40][rng.int(3)], unawaited: rng.chance(0.3) ? 0.3 : 0, directAppendMin: directAppendMinOf(seed), applySlice: applySliceOf(seed), markStep: markStepOf(seed) };
}

interface RunOutcome {
  violation: string | null;
  hit: CallInfo | null;
  absorbed: boolean;
}

/** One run of the unit's workload with call `at` failing (at = -1: no fault). */
async function faultRun(seed: number, plan: Plan, at: number, code: FaultCode, calls?: CallInfo[]): Promise<RunOutcome> {
  const sim = new SimFS();
  sim.mkdirSync(STORE);
  const base = sim.image();
  sim.allowedRoot = STORE;
  const fio = new FaultIO(sim, at, code);
  const problems: string[] = [];
  let firstErr: unknown = null;
  let store: Awaited<ReturnType<typeof openStore>> | null = null;
  let acked = 0;
  let issued = 0;
  try {
    store = await openStore(STORE, { io: fio.io, noLock: true, segmentSize: SEGMENT, applyThreshold: plan.applyThreshold, applyDelay: 3600_000, directAppendMin: plan.directAppendMin, applySlice: plan.applySlice, markStep: plan.markStep });
  } catch (e) {
    firstErr = e;
  }
  if (store) {
    fio.phase = 'workload';
    const run = await drive(store, {
      seed, ops: plan.ops, unawaited: plan.unawaited,
      onIssue: (k) => { issued = k; sim.mark({ kind: 'issue', k }); },
      onAck: (k) => { acked = Math.max(acked, k); sim.mark({ kind: 'ack', k }); },
    });
    if (run.mismatches.length) problems.push(`the store answered differently from the model: ${run.mismatches[0]}`);
    if (run.error) firstErr = run.error.err;
    fio.phase = 'close';
    const epochNow = store.epoch;
    if (epochNow !== acked) problems.push(`store.epoch ${epochNow} after the failure, but the last acknowledged check is ${acked}`);
    try {
      await store.close({ discard: true });
    } catch (e) {
      firstErr ??= e;
      if (!(e instanceof CpError)) problems.push(`close rejected with a non-CpError: ${errText(e)}`);
    }
    if (store.epoch !== acked) problems.push(`store.epoch ${store.epoch} after close, but the last acknowledged check is ${acked}`);
    if (calls) calls.push(...fio.calls);
    // snapshots of this workload (independent of the store)
    const snaps = run.snaps;
    const hit = fio.hit;
    if (at >= 0 && hit) {
      if (firstErr === null) {
        // the fault was absorbed: fine only if nothing was lost (checked below)
      } else if (!(firstErr instanceof CpError)) {
        problems.push(`a store call rejected with a non-CpError: ${errText(firstErr)}`);
      } else if (!carries(firstErr, code)) {
        problems.push(`the first rejection does not carry the injected ${code}: ${errText(firstErr)}`);
      }
    } else if (at < 0 && firstErr) {
      problems.push(`the workload failed without any fault: ${errText(firstErr)}`);
    }
    if (sim.violations.length) problems.push(`I/O outside the store: ${sim.violations.join('; ')}`);
    // reopen with faults off: a power loss right after the failure; the process state as it was
    // (same file system, pending operations still pending); and a power loss during or after that
    const x = { snaps, lo: acked, hi: issued };
    await afterFailure(sim, base, x, seed ^ at, problems, 'after the failure');
    return { violation: problems.length ? problems.join('\n') : null, hit, absorbed: at >= 0 && !!hit && firstErr === null };
  }
  // openStore itself failed
  if (calls) calls.push(...fio.calls);
  if (!(firstErr instanceof CpError)) problems.push(`openStore rejected with a non-CpError: ${errText(firstErr)}`);
  else if (at >= 0 && !carries(firstErr, code)) problems.push(`openStore rejected without the injected ${code}: ${errText(firstErr)}`);
  if (at < 0) problems.push(`openStore failed without any fault: ${errText(firstErr)}`);
  const r = await recoverImage(sim.image());
  if (r.epoch === null) problems.push(`reopening a store whose creation failed rejected: ${errText(r.error)}`);
  else if (r.epoch !== 0 || r.files.size !== 0) problems.push(`reopening a store whose creation failed gave epoch ${r.epoch}, ${r.files.size} files`);
  return { violation: problems.length ? problems.join('\n') : null, hit: fio.hit, absorbed: false };
}

/**
 * After a failure: (1) a power loss right then must lose nothing acknowledged; (2) reopening on the
 * process's own file system (what a process crash leaves: pending operations still pending) must
 * not either; (3) nor a power loss during or after that reopening's recovery, where the epoch the
 * reopened store reported becomes the floor once its recovery finished.
 */
async function afterFailure(sim: SimFS, base: Image, x: { snaps: Map<number, import('./driver.js').Snapshot>; lo: number; hi: number }, seed: number, problems: string[], what: string): Promise<void> {
  const failEnd = sim.trace.length;
  const rng = new Rng(seed);
  let first: number | null = null;
  try {
    const s = await openStore(STORE, { io: sim, noLock: true, segmentSize: SEGMENT, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    first = s.epoch;
    const bad = judge({ files: sim.tree(STORE), epoch: s.epoch, entries: s.recovery.entries }, x);
    if (bad) problems.push(`reopened ${what} (process state): ${bad}`);
  } catch (e) {
    problems.push(`reopening ${what} rejected: ${errText(e)}`);
  }
  const recEnd = sim.trace.length;
  const model = new CrashModel(base, sim.trace);
  while (model.pos < failEnd) model.step();
  const r1 = await recoverImage(model.materialize(model.randomChoice(rng, 'durable')));
  if (r1.epoch === null) problems.push(`recovery ${what} and a power loss rejected: ${errText(r1.error)}`);
  else {
    const bad = judge({ files: r1.files, epoch: r1.epoch, entries: r1.entries }, x);
    if (bad) problems.push(`recovered ${what} and a power loss: ${bad}`);
  }
  if (first === null) return;
  const stop = failEnd + rng.int(recEnd - failEnd + 1);
  while (model.pos < stop) model.step();
  const c = model.randomChoice(rng, rng.chance(0.5) ? 'durable' : 'random');
  const r2 = await recoverImage(model.materialize(c));
  const where = `power loss at trace point ${stop - failEnd}/${recEnd - failEnd} of the reopening's recovery (it reached epoch ${first}); ${model.explain(c)}`;
  if (r2.epoch === null) problems.push(`reopened ${what}, then a power loss: recovery rejected: ${errText(r2.error)}\n${where}`);
  else {
    const bad = judge({ files: r2.files, epoch: r2.epoch, entries: r2.entries }, { ...x, lo: stop === recEnd ? first : x.lo });
    if (bad) problems.push(`reopened ${what}, then a power loss: ${bad}\n${where}`);
  }
}

/** A crashed store with committed, unapplied epochs and an uncommitted tail. */
async function crashedStore(seed: number): Promise<{ img: Image; snaps: Map<number, import('./driver.js').Snapshot>; acked: number }> {
  const sim = new SimFS();
  sim.mkdirSync(STORE);
  const store = await openStore(STORE, { io: sim, noLock: true, segmentSize: SEGMENT, applyThreshold: 2 ** 40, applyDelay: 3600_000 });
  const run = await drive(store, { seed: seed ^ 0x5eed, ops: 30 });
  if (run.error) throw new Error(`recovery-fault base workload failed: ${errText(run.error.err)}`);
  await (store as unknown as { writer: { flush(): Promise<unknown> } }).writer.flush();
  return { img: sim.image(), snaps: run.snaps, acked: run.acked };
}

async function recoveryFaultRun(base: { img: Image; snaps: Map<number, import('./driver.js').Snapshot>; acked: number }, at: number, code: FaultCode, calls?: CallInfo[]): Promise<RunOutcome> {
  const sim = new SimFS(base.img);
  sim.allowedRoot = STORE;
  const start = sim.image();
  const fio = new FaultIO(sim, at, code);
  fio.phase = 'recovery';
  const problems: string[] = [];
  let err: unknown = null;
  let recovered = -1;
  try {
    const s = await openStore(STORE, { io: fio.io, noLock: true, segmentSize: SEGMENT, applyThreshold: 2 ** 40, applyDelay: 3600_000 });
    recovered = s.recovery.epoch;
    fio.phase = 'after recovery';
    await s.close({ discard: true }).catch((e) => { err ??= e; });
  } catch (e) {
    err = e;
  }
  if (calls) calls.push(...fio.calls);
  if (at >= 0 && fio.hit && fio.hit.site.startsWith('recovery')) {
    // A failed read of the journal may be absorbed: recovery reads ahead (a read whose bytes it never
    // needs) and reads a failed window again for the bytes it needs. Then it must have recovered
    // every acknowledged epoch (and the checks after the failure below hold as for any run). Any
    // other call's fault fails recovery.
    if (err === null) {
      if (fio.hit.method !== 'read' || recovered !== base.acked) {
        problems.push(`recovery absorbed the injected ${code} in ${fio.hit.site}${fio.hit.method === 'read' ? ` and recovered epoch ${recovered}, not ${base.acked}` : ''}`);
      }
    } else if (!(err instanceof CpError)) problems.push(`recovery rejected with a non-CpError: ${errText(err)}`);
    else if (!carries(err, code)) problems.push(`recovery rejected without the injected ${code}: ${errText(err)}`);
  }
  if (at < 0 && err) problems.push(`recovery failed without any fault: ${errText(err)}`);
  if (sim.violations.length) problems.push(`I/O outside the store: ${sim.violations.join('; ')}`);
  await afterFailure(sim, start, { snaps: base.snaps, lo: base.acked, hi: base.acked }, at, problems, 'after the failed recovery');
  return { violation: problems.length ? problems.join('\n') : null, hit: fio.hit, absorbed: at >= 0 && !!fio.hit && err === null };
}

export interface FaultUnitResult {
  cases: number;
  violations: Violation[];
  sites: Record<string, number>;
  absorbed: number;
}

/** Codes to inject at call `i`: all three at mutating and sync calls, one (rotating) elsewhere. */
function codesAt(c: CallInfo, i: number): FaultCode[] {
  return MUTATING.has(c.method) ? [...FAULT_CODES] : [FAULT_CODES[i % 3]];
}

export async function faultUnit(seed: number, limit = Infinity): Promise<FaultUnitResult> {
  return withSeededRandom(seed, async () => {
    const res: FaultUnitResult = { cases: 0, violations: [], sites: {}, absorbed: 0 };
    const plan = planOf(seed);
    const desc = `ops ${plan.ops}, applyThreshold ${plan.applyThreshold}, unawaited ${plan.unawaited}, directAppendMin ${plan.directAppendMin}, applySlice ${plan.applySlice ?? 'default'}`;
    const record = (o: RunOutcome, what: string): void => {
      res.cases++;
      if (o.hit) res.sites[o.hit.site] = (res.sites[o.hit.site] ?? 0) + 1;
      if (o.absorbed) res.absorbed++;
      if (o.violation) res.violations.push({ kind: 'faults', seed, cases: res.cases, what: `${sig(o.violation)} (${o.hit ? o.hit.site : what})`, detail: `${desc}\n${what}\n${o.violation}` });
    };
    // 1. the workload
    const calls: CallInfo[] = [];
    const clean = await faultRun(seed, plan, -1, 'EIO', calls);
    if (clean.violation) {
      record(clean, 'clean run');
      return res;
    }
    // Store creation is the same few calls in every unit: inject there in one unit of four only.
    const creation = new Rng(seed).chance(0.25);
    for (let i = 0; i < calls.length && res.cases < limit; i++) {
      if (!creation && calls[i].site.startsWith('open:')) continue;
      for (const code of codesAt(calls[i], i)) {
        if (res.cases >= limit) break;
        record(await faultRun(seed, plan, i, code), `${code} at call ${i} (${calls[i].site})`);
      }
    }
    // 2. recovery
    const crashed = await crashedStore(seed);
    const rcalls: CallInfo[] = [];
    const rclean = await recoveryFaultRun(crashed, -1, 'EIO', rcalls);
    if (rclean.violation) {
      record(rclean, 'clean recovery');
      return res;
    }
    for (let i = 0; i < rcalls.length && res.cases < limit; i++) {
      if (!rcalls[i].site.startsWith('recovery')) continue;
      for (const code of codesAt(rcalls[i], i)) {
        if (res.cases >= limit) break;
        record(await recoveryFaultRun(crashed, i, code), `${code} at recovery call ${i} (${rcalls[i].site})`);
      }
    }
    return res;
  });
}

export async function runFaults(o: KindOptions): Promise<KindResult> {
  const t0 = performance.now();
  const out: KindResult = { kind: 'faults', cases: 0, violations: [], ms: 0, stats: {} };
  const sites: Record<string, number> = {};
  let absorbed = 0;
  let units = 0;
  let lastLog = t0;
  const edge = o.edge ?? DEFAULT_EDGE;
  const dims: Record<string, DimCount> = {};
  let edgeUnits = 0;
  for (let i = 0; out.cases < o.cases; i++) {
    const seed = unitSeed(o.seed, i);
    if (isEdgeUnit(seed, edge.rate)) {
      // an edge unit with one injected fault (edges.ts)
      const before = out.violations.length;
      const e = await guardUnit(o, out, seed, () => edgeUnit('faults', seed, { manyMax: edge.manyMax, states: 0, dimRate: edge.dimRate as Partial<Record<Dim, number>> }, o.cases - out.cases, true));
      if (e) {
        edgeUnits++;
        out.cases += e.cases;
        for (const v of e.violations) report(o, out, v);
        countDims(dims, e.dims.map((d) => DIMS[d]), e.violations.length);
      } else countDims(dims, ['edge units that threw'], out.violations.length - before);
      continue;
    }
    const r = await guardUnit(o, out, seed, () => faultUnit(seed, o.cases - out.cases));
    if (!r) continue;
    units++;
    out.cases += r.cases;
    absorbed += r.absorbed;
    for (const [k, v] of Object.entries(r.sites)) sites[k] = (sites[k] ?? 0) + v;
    for (const v of r.violations) report(o, out, v);
    if (performance.now() - lastLog > 15000) {
      lastLog = performance.now();
      o.log(`  faults: ${out.cases} injections in ${units} workloads, ${out.violations.length} violations, ${((lastLog - t0) / 1000).toFixed(0)} s`);
    }
  }
  out.ms = performance.now() - t0;
  const bySite = Object.entries(sites).sort((a, b) => b[1] - a[1]);
  const groups: Record<string, number> = {};
  const group = (site: string): string => {
    const [phase, rest] = site.split(': ');
    if (phase === 'recovery') return 'recovery (any call)';
    if (phase === 'open') return 'openStore (creation)';
    if (/^(write|ftruncate) journal segment/.test(rest)) return 'journal append';
    if (/^(fsync|fdatasync) journal segment/.test(rest)) return 'journal fsync';
    if (/^fsyncDir/.test(rest)) return 'directory fsync';
    if (/control file/.test(rest)) return 'control file (apply cursor)';
    if (/data file/.test(rest)) return 'apply (data files)';
    return 'other (reads, opens, stats)';
  };
  for (const [k, v] of bySite) groups[group(k)] = (groups[group(k)] ?? 0) + v;
  out.dims = dims;
  out.stats = {
    'edge units with one fault (edges.ts)': edgeUnits, workloads: units, 'faults absorbed (no call failed, nothing lost)': absorbed, 'distinct call sites hit': bySite.length,
    'injections by site': Object.entries(groups).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', '),
  };
  return out;
}

