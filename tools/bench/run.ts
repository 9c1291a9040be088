// The benchmark engine: every workload runs on every subject in one process, interleaved. For each
// workload all subjects are set up, then repetition r runs each subject once, in an order rotated by
// r (no subject is always first, or always right after the same neighbour), then all are torn down.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../lib/index.js';
import type { BenchConfig, SubjectId, WorkloadId } from './config.js';
import { describeMachine, type Machine } from './machine.js';
import { GUARANTEE, SUBJECT_NAMES } from './peers.js';
import { errorText, fmtNum, now, rmrf } from './util.js';
import { workloads, type Ctx, type MetricDef, type Sample, type SubjectRun, type Workload } from './workloads.js';

export interface SubjectResult {
  id: SubjectId;
  name: string;
  guarantee: string;
  how: string;
  na?: string;
  samples: Sample[];
  /** each repetition's series (RepResult.series), in repetition order */
  series: Record<string, number[]>[];
  infos: string[];
  errors: string[];
}

export interface WorkloadResult {
  id: WorkloadId;
  title: string;
  metrics: MetricDef[];
  reps: number;
  seconds: number;
  subjects: SubjectResult[];
}

export interface BenchResult {
  config: BenchConfig;
  machine: Machine;
  started: string;
  /** The run's temp root (removed when the run ends). */
  root: string;
  seconds: number;
  workloads: WorkloadResult[];
}

export async function runBench(config: BenchConfig, log: (msg: string) => void = () => undefined): Promise<BenchResult> {
  await fsp.mkdir(config.baseDir, { recursive: true });
  const root = await fsp.mkdtemp(path.join(config.baseDir, 'cpfile-bench-'));
  const machine = describeMachine(root, config.quick ? 16 * 1024 * 1024 : 256 * 1024 * 1024);
  const started = new Date().toISOString();
  const t0 = now();
  const ctx: Ctx = { config, root, log, cpfiles: [] };
  if (config.subjects.includes('cpfile')) ctx.cpfiles.push({ id: 'cpfile', open: openStore, lib: null });
  if (config.libB && config.subjects.includes('cpfile-b')) {
    const b = (await import(pathToFileURL(config.libB).href)) as { openStore: typeof openStore };
    ctx.cpfiles.push({ id: 'cpfile-b', open: b.openStore, lib: config.libB });
  }
  const defs = workloads(ctx);
  const ids = new Set(config.only);
  if (ids.has('P7')) ids.add('P2'); // P7 is measured during P2
  const out: WorkloadResult[] = [];
  try {
    for (const id of ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P8'] as WorkloadId[]) {
      if (!ids.has(id)) continue;
      out.push(await runWorkload(ctx, defs[id]!(), config.reps[id]));
    }
  } finally {
    await rmrf(root);
  }
  return { config, machine, started, root, seconds: (now() - t0) / 1000, workloads: out };
}

async function runWorkload(ctx: Ctx, w: Workload, reps: number): Promise<WorkloadResult> {
  const t0 = now();
  const subjects = w.subjects.filter((s) => ctx.config.subjects.includes(s.id));
  const results = new Map<SubjectId, SubjectResult>();
  for (const s of subjects) {
    results.set(s.id, { id: s.id, name: s.id === 'cpfile-b' ? `cpfile ${ctx.config.libBLabel}` : SUBJECT_NAMES[s.id], guarantee: GUARANTEE[s.id], how: s.how, na: s.na, samples: [], series: [], infos: [], errors: [] });
  }
  const live = subjects.filter((s) => !s.na && s.rep);
  ctx.log(`${w.title}`);
  const ready: SubjectRun[] = [];
  for (const s of live) {
    try {
      if (s.setup) await s.setup();
      ready.push(s);
    } catch (e) {
      results.get(s.id)!.errors.push(`setup: ${errorText(e)}`);
      ctx.log(`  ${s.id}: setup failed: ${errorText(e)}`);
    }
  }
  const broken = new Set<SubjectId>();
  for (let r = 0; r < reps; r++) {
    const order = ready.map((_, i) => ready[(i + r) % ready.length]!);
    for (const s of order) {
      const res = results.get(s.id)!;
      if (broken.has(s.id)) continue;
      const t = now();
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            broken.add(s.id);
            reject(new Error(`repetition timed out after ${ctx.config.repTimeoutS} s (later repetitions of this subject skipped)`));
          }, ctx.config.repTimeoutS * 1000);
        });
        const { m, info, series } = await Promise.race([s.rep!(r), timeout]);
        res.samples.push(m);
        if (series) res.series.push(series);
        if (info) res.infos.push(info);
        const shown = w.metrics.filter((d) => m[d.key] !== undefined).map((d) => `${fmtNum(m[d.key]!)} ${d.label}`).join(', ');
        ctx.log(`  rep ${r + 1}/${reps} ${s.id.padEnd(17)} ${shown}  (${((now() - t) / 1000).toFixed(1)} s)`);
      } catch (e) {
        res.errors.push(errorText(e));
        ctx.log(`  rep ${r + 1}/${reps} ${s.id.padEnd(17)} error: ${errorText(e)}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
  for (const s of ready) {
    if (broken.has(s.id)) continue; // its state is unknown: do not wait on it
    try {
      if (s.teardown) await s.teardown();
    } catch (e) {
      results.get(s.id)!.errors.push(`teardown: ${errorText(e)}`);
    }
  }
  return { id: w.id, title: w.title, metrics: w.metrics, reps, seconds: (now() - t0) / 1000, subjects: [...results.values()] };
}
