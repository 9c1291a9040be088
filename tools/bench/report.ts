// Markdown report: the machine, one table per workload (median and min-max over the repetitions,
// the ratio to raw fs), P7 from P2's samples, and every target met or missed.
import { describeSizes, type SubjectId, type WorkloadId } from './config.js';
import { SAME_GUARANTEE, SUBJECT_NAMES } from './peers.js';
import type { BenchResult, SubjectResult, WorkloadResult } from './run.js';
import { GiB, fmtNum, median } from './util.js';
import { P7_METRICS, type MetricDef } from './workloads.js';

const values = (s: SubjectResult, key: string): number[] =>
  s.samples.map((m) => m[key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));

export function med(s: SubjectResult | undefined, key: string): number {
  return s ? median(values(s, key)) : NaN;
}

function cell(s: SubjectResult, key: string): string {
  const xs = values(s, key);
  if (xs.length === 0) return '—';
  const m = fmtNum(median(xs));
  if (xs.length === 1) return m;
  return `${m} (${fmtNum(Math.min(...xs))}–${fmtNum(Math.max(...xs))})`;
}

const esc = (s: string): string => s.replace(/\|/g, '\\|');

function table(w: { metrics: MetricDef[]; subjects: SubjectResult[] }, ratio: boolean): string[] {
  const raw = w.subjects.find((s) => s.id === 'raw');
  const primary = w.metrics[0]!;
  const head = ['subject', 'guarantee', ...w.metrics.map((m) => `${m.label} ${m.better === 'higher' ? '↑' : '↓'}`)];
  if (ratio) head.push(`${primary.label} ÷ raw`);
  head.push('notes');
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 || i === head.length - 1 ? '---' : '---:')).join('|')}|`];
  for (const s of w.subjects) {
    const row = [s.name, s.guarantee];
    if (s.na) {
      row.push(`n/a: ${s.na}`, ...w.metrics.slice(1).map(() => ''));
      if (ratio) row.push('');
      row.push('');
    } else {
      row.push(...w.metrics.map((m) => cell(s, m.key)));
      if (ratio) {
        const r = med(s, primary.key) / med(raw, primary.key);
        row.push(Number.isFinite(r) ? `${r.toFixed(2)}x` : '—');
      }
      const notes = [...s.errors.map((e) => `**error**: ${e}`)];
      if (s.infos.length) notes.push(s.infos[s.infos.length - 1]!);
      row.push(notes.join('; '));
    }
    lines.push(`| ${row.map(esc).join(' | ')} |`);
  }
  return lines;
}

interface Target {
  id: string;
  target: string;
  measured: string;
  met: boolean | null;
}

function targets(r: BenchResult, who: 'cpfile' | 'cpfile-b' = 'cpfile'): Target[] {
  const me = who === 'cpfile' ? 'cpfile' : `cpfile ${r.config.libBLabel}`;
  const w = (id: WorkloadId): WorkloadResult | undefined => r.workloads.find((x) => x.id === id);
  const subj = (id: WorkloadId, s: SubjectId): SubjectResult | undefined => w(id)?.subjects.find((x) => x.id === s);
  const out: Target[] = [];
  const ratioTarget = (
    id: WorkloadId, key: string, unit: string, bound: number, dir: 'atLeast' | 'atMost', text: string, also: SubjectId[] = [],
  ): void => {
    const cp = med(subj(id, who), key);
    const raw = med(subj(id, 'raw'), key);
    const ratio = cp / raw;
    const more = also
      .map((s) => [s, med(subj(id, s), key)] as const)
      .filter(([, v]) => Number.isFinite(v) && Number.isFinite(cp))
      .map(([s, v]) => `; against ${SUBJECT_NAMES[s]} ${fmtNum(v)} ${unit}: ${(cp / v).toFixed(2)}x`)
      .join('');
    out.push({
      id, target: text,
      measured: Number.isFinite(ratio) ? `${me} ${fmtNum(cp)} ${unit} / raw ${fmtNum(raw)} ${unit} = ${ratio.toFixed(2)}x${more}` : 'not measured',
      met: Number.isFinite(ratio) ? (dir === 'atLeast' ? ratio >= bound : ratio <= bound) : null,
    });
  };
  const aheadOfPeers = (id: WorkloadId, key: string, unit: string, better: 'higher' | 'lower', peers: SubjectId[], text: string): void => {
    const cp = med(subj(id, who), key);
    const parts: string[] = [];
    let met: boolean | null = Number.isFinite(cp) ? true : null;
    let any = false;
    for (const p of peers) {
      const v = med(subj(id, p), key);
      if (!Number.isFinite(v)) continue;
      any = true;
      const ahead = better === 'higher' ? cp > v : cp < v;
      if (!ahead && met !== null) met = false;
      parts.push(`${SUBJECT_NAMES[p]} ${fmtNum(v)} ${unit} (${me} ÷ it ${(cp / v).toFixed(2)}x: ${ahead ? 'ahead' : 'behind'})`);
    }
    out.push({ id, target: text, measured: any && Number.isFinite(cp) ? `${me} ${fmtNum(cp)} ${unit}; ${parts.join('; ')}` : 'not measured', met: any ? met : null });
  };

  ratioTarget('P1', 'median', 'ms', 1.0, 'atMost', 'P1 median commit latency at most 1.0x raw 4 KiB append + fdatasync', ['raw-async', 'raw-worker']);
  ratioTarget('P1', 'p99', 'ms', 2.0, 'atMost', "P1 p99 commit latency at most 2x raw's p99", ['raw-worker']);
  aheadOfPeers('P1', 'median', 'ms', 'lower', SAME_GUARANTEE, 'P1 ahead of every atomic + durable peer (median latency)');
  ratioTarget('P2', 'mbps', 'MB/s', 0.8, 'atLeast', 'P2 bulk append at least 0.8x raw (durable MB/s)', ['raw-2x', 'raw-worker']);
  {
    // The target holds "including a file created in the same epoch" (subject cpfile-new; this
    // build only: a --lib-b build has no such row, and its column says "not measured").
    const cp = who === 'cpfile' ? med(subj('P2', 'cpfile-new'), 'mbps') : NaN;
    const raw = med(subj('P2', 'raw'), 'mbps');
    const ratio = cp / raw;
    out.push({
      id: 'P2', target: 'P2 at least 0.8x raw with the file created in the first timed epoch',
      measured: Number.isFinite(ratio) ? `${SUBJECT_NAMES['cpfile-new']} ${fmtNum(cp)} MB/s / raw ${fmtNum(raw)} MB/s = ${ratio.toFixed(2)}x` : 'not measured',
      met: Number.isFinite(ratio) ? ratio >= 0.8 : null,
    });
  }
  aheadOfPeers('P2', 'mbps', 'MB/s', 'higher', SAME_GUARANTEE, 'P2 ahead of every atomic + durable peer');
  ratioTarget('P3', 'wps', 'writes/s', 0.6, 'atLeast', 'P3 random overwrite at least 0.6x raw (durable writes/s)', ['raw-2x']);
  aheadOfPeers('P3', 'wps', 'writes/s', 'higher', SAME_GUARANTEE, 'P3 ahead of every atomic + durable peer');
  ratioTarget('P4', 'ops', 'writes/s', 2.5, 'atLeast', 'P4 small writes at least 2.5x raw one-syscall-per-write');
  aheadOfPeers('P4', 'ops', 'writes/s', 'higher', ['lmdb'], 'P4 ahead of lmdb');
  aheadOfPeers('P4', 'ops', 'writes/s', 'higher', SAME_GUARANTEE, 'P4 ahead of every atomic + durable peer');
  ratioTarget('P5', 'mbps', 'MB/s', 0.5, 'atLeast', 'P5 recovery at least 0.5x raw read + write of the same bytes');
  {
    // in every repetition, against raw's fast ones too: cpfile's slowest against raw's fastest
    const cp = subj('P5', who);
    const raw = subj('P5', 'raw');
    const worst = cp ? Math.min(...values(cp, 'mbps')) : NaN;
    const best = raw ? Math.max(...values(raw, 'mbps')) : NaN;
    const x = worst / best;
    out.push({
      id: 'P5', target: "P5 at least 0.5x raw in every repetition (cpfile's slowest against raw's fastest)",
      measured: Number.isFinite(x) ? `${me} slowest ${fmtNum(worst)} MB/s / raw fastest ${fmtNum(best)} MB/s = ${x.toFixed(2)}x` : 'not measured',
      met: Number.isFinite(x) ? x >= 0.5 : null,
    });
  }
  {
    const peak = med(subj('P6', who), 'peakMiB');
    const closed = med(subj('P6', who), 'closedMiB');
    const bytes = r.config.p6Bytes;
    out.push({
      id: 'P6', target: 'P6 peak RSS under 200 MiB while writing 2 GiB between two checkpoints',
      measured: Number.isFinite(peak)
        ? `${me} ${fmtNum(peak)} MiB until the second check resolved (${fmtNum(closed)} MiB including the apply at close)${bytes !== 2 * GiB ? ` (this run wrote ${fmtNum(bytes / GiB)} GiB)` : ''}`
        : 'not measured',
      met: Number.isFinite(peak) ? peak < 200 : null,
    });
  }
  {
    const cp = subj('P2', who);
    const mx = med(cp, 'elMax');
    const p99 = med(cp, 'elP99');
    // The thread floor: the same loop handing its writes to a raw worker thread.
    const floor = subj('P2', 'raw-worker');
    const floorText = floor && Number.isFinite(med(floor, 'elMax'))
      ? `; ${SUBJECT_NAMES['raw-worker']} max ${fmtNum(med(floor, 'elMax'))} ms, p99 ${fmtNum(med(floor, 'elP99'))} ms`
      : '';
    out.push({
      id: 'P7', target: 'P7 event-loop delay during P2: max at most 10 ms, p99 at most 2 ms',
      measured: Number.isFinite(mx) ? `${me} max ${fmtNum(mx)} ms, p99 ${fmtNum(p99)} ms (medians over the P2 repetitions; worst max ${fmtNum(Math.max(...values(cp!, 'elMax')))} ms)${floorText}` : 'not measured',
      met: Number.isFinite(mx) ? mx <= 10 && p99 <= 2 : null,
    });
  }
  {
    const cp = med(subj('P8', who), 'ms');
    const wfa = med(subj('P8', 'write-file-atomic'), 'ms');
    const x = wfa / cp;
    out.push({
      id: 'P8', target: 'P8 at least 10x faster than write-file-atomic per file',
      measured: Number.isFinite(x) ? `${me} ${fmtNum(cp)} ms, write-file-atomic ${fmtNum(wfa)} ms: ${x.toFixed(1)}x faster` : 'not measured',
      met: Number.isFinite(x) ? x >= 10 : null,
    });
  }
  return out;
}

const verdict = (met: boolean | null): string => (met === null ? 'not measured' : met ? 'met' : '**missed**');

export function renderTargets(r: BenchResult): string[] {
  const withB = r.workloads.some((w) => w.subjects.some((s) => s.id === 'cpfile-b'));
  const b = withB ? targets(r, 'cpfile-b') : [];
  const lines = withB
    ? [`| # | target | measured (medians) | result | cpfile ${r.config.libBLabel} |`, '|---|---|---|---|---|']
    : ['| # | target | measured (medians) | result |', '|---|---|---|---|'];
  targets(r).forEach((t, i) => {
    const extra = withB ? ` ${b[i]!.met === null ? 'not measured' : `${esc(b[i]!.measured)}: ${verdict(b[i]!.met)}`} |` : '';
    lines.push(`| ${t.id} | ${esc(t.target)} | ${esc(t.measured)} | ${verdict(t.met)} |${extra}`);
  });
  return lines;
}

export function renderMachine(r: BenchResult): string[] {
  const m = r.machine;
  const gib = (n: number): string => `${(n / GiB).toFixed(1)} GiB`;
  return [
    `- date: ${r.started} (run took ${Math.round(r.seconds)} s)`,
    `- CPU: ${m.nproc} x ${m.cpu} (nproc ${m.nproc}); load average at start ${m.loadavg.map((x) => x.toFixed(2)).join(' ')}`,
    `- memory: ${gib(m.memTotal)} total, ${gib(m.memAvailable)} available at start`,
    ...(m.memory
      ? [`- new memory: filling ${Math.round(m.memory.bytes / 1048576)} MiB not touched before ran at ${fmtNum(Math.round(m.memory.firstTouchMBps))} MB/s, filling it again at ${fmtNum(Math.round(m.memory.retouchMBps))} MB/s${m.memory.pageReporting ? `; ${m.memory.pageReporting}` : ''}`]
      : []),
    `- node ${m.node}, ${m.kernel}`,
    '- file system of the benchmark directory (`df -T`):',
    '',
    '```',
    m.df,
    ...(m.mount ? [`# /proc/mounts: ${m.mount}`] : []),
    '```',
  ];
}

export function renderReport(r: BenchResult): string {
  const c = r.config;
  const lines: string[] = [];
  lines.push(`### Machine`, '', ...renderMachine(r), '');
  lines.push(`### Sizes${c.quick ? ' (--quick)' : ''}`, '');
  for (const s of describeSizes(c)) lines.push(`- ${s}`);
  lines.push('', `Repetitions (round-robin over the subjects): ${r.workloads.map((w) => `${w.id} ${w.reps}`).join(', ')}. ` +
    'Each cell: median over the repetitions (min–max). ↑ higher is better, ↓ lower is better.', '');
  for (const w of r.workloads) {
    lines.push(`### ${w.title}`, '', ...table(w, true), '');
    if (w.id === 'P2') {
      const p7 = w.subjects.filter((s) => !s.na);
      lines.push(`### P7 event-loop delay during P2 (perf_hooks.monitorEventLoopDelay, 1 ms resolution)`, '', ...table({ metrics: P7_METRICS, subjects: p7.map((s) => ({ ...s, infos: [] })) }, false), '');
    }
  }
  lines.push('### Targets', '', ...renderTargets(r), '');
  lines.push('### How each subject ran each workload', '');
  for (const w of r.workloads) {
    lines.push(`- ${w.id}:`);
    for (const s of w.subjects) if (!s.na) lines.push(`  - ${s.name}: ${s.how}`);
  }
  lines.push('');
  return lines.join('\n');
}
