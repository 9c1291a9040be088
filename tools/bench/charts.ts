// The charts npm run bench draws from the run it reports (docs/BENCHMARKS.md shows them):
//   p1-latency.svg     P1's commit latency distribution, every subject on one chart (a CDF on a log
//                      time axis; each subject's percentiles averaged over its repetitions)
//   p7-event-loop.svg  the event-loop delay over a P2 run (each subject's median repetition by MB/s),
//                      with P7's targets
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { BenchResult, SubjectResult } from './run.js';
import { lineChart, type Series } from './svg.js';
import { LATENCY_QUANTILES } from './workloads.js';
import { fmtSize } from './util.js';

/** Each subject's percentiles averaged over its repetitions (quantile averaging), as [ms, percentile]. */
function latencyCdf(s: SubjectResult): [number, number][] {
  const reps = s.series.map((x) => x.q).filter((q): q is number[] => Array.isArray(q) && q.length === LATENCY_QUANTILES.length);
  if (!reps.length) return [];
  return LATENCY_QUANTILES.map((p, i) => [reps.reduce((a, q) => a + q[i]!, 0) / reps.length, p]);
}

export function p1Chart(r: BenchResult): string | null {
  const w = r.workloads.find((x) => x.id === 'P1');
  if (!w) return null;
  const series: Series[] = w.subjects.filter((s) => !s.na).map((s) => ({ name: s.name, points: latencyCdf(s), strong: s.id === 'cpfile' || s.id === 'raw' }))
    .filter((s) => s.points.length > 0);
  if (!series.length) return null;
  const xs = series.flatMap((s) => s.points.map((p) => p[0])).filter((v) => v > 0);
  return lineChart({
    title: `P1: commit latency, ${fmtSize(r.config.p1WriteSize)} write + durable commit`,
    subtitle: `${r.config.p1Commits} commits x ${w.reps} repetitions each; left is faster; the tail is where a line reaches 100`,
    xLabel: 'latency (ms, log scale)', yLabel: 'commits at or below (percentile)',
    xLog: true, x: [Math.min(...xs) * 0.9, Math.max(...xs) * 1.1], y: [0, 100], series,
  });
}

/** The repetition whose MB/s is the median of the subject's. */
function medianRep(s: SubjectResult): number {
  const idx = s.samples.map((m, i) => [m.mbps ?? NaN, i] as const).filter(([v]) => Number.isFinite(v)).sort((a, b) => a[0] - b[0]);
  return idx.length ? idx[Math.floor((idx.length - 1) / 2)]![1] : -1;
}

export function p7Chart(r: BenchResult): string | null {
  const w = r.workloads.find((x) => x.id === 'P2');
  if (!w) return null;
  const series: Series[] = [];
  for (const s of w.subjects) {
    if (s.na) continue;
    const rep = s.series[medianRep(s)];
    if (!rep?.elT || !rep.elD) continue;
    series.push({ name: s.name, points: rep.elT.map((t, i) => [t / 1000, rep.elD![i]!] as [number, number]), strong: s.id === 'cpfile' });
  }
  if (!series.length) return null;
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  // Capped at 3x the max target: the subjects that block the loop (SQLite's synchronous commits,
  // raw fs) would otherwise squash everything at or below the targets into the bottom edge.
  const top = Math.min(30, Math.max(12, Math.ceil(Math.max(...ys))));
  return lineChart({
    title: `P7: event-loop delay during P2 (${fmtSize(r.config.p2Total)} of ${fmtSize(r.config.p2WriteSize)} appends)`,
    subtitle: `how late a 10 ms timer ran (each subject's median P2 repetition); dashed: P7's targets${Math.max(...ys) > top ? `; over ${top} ms: top edge` : ''}`,
    xLabel: 'time into the run (s)', yLabel: 'delay (ms)',
    y: [0, top], series,
    hLines: [{ y: 2, label: 'p99 target 2 ms' }, { y: 10, label: 'max target 10 ms' }],
  });
}

/** Write the charts of `r` into `dir`; returns the files written. */
export async function writeCharts(r: BenchResult, dir: string): Promise<string[]> {
  await fsp.mkdir(dir, { recursive: true });
  const out: string[] = [];
  for (const [name, svg] of [['p1-latency.svg', p1Chart(r)], ['p7-event-loop.svg', p7Chart(r)]] as const) {
    if (!svg) continue;
    const file = path.join(dir, name);
    await fsp.writeFile(file, svg);
    out.push(file);
  }
  return out;
}
