// Small helpers shared by the benchmark modules: sizes, statistics, clocks, temp dirs, the
// event-loop delay monitor and a deterministic PRNG (every subject sees the same offsets).
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** "64KiB", "1GiB", "256m", "4096" -> bytes. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b)?\s*$/i.exec(s);
  if (!m) throw new Error(`not a size: ${JSON.stringify(s)}`);
  const mult = { '': 1, k: KiB, m: MiB, g: GiB }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

/** "1,000,000" or "1e6" -> number. */
export function parseCount(s: string): number {
  const n = Number(s.replace(/[,_]/g, ''));
  if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive count: ${JSON.stringify(s)}`);
  return Math.round(n);
}

export function fmtSize(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= KiB && n % KiB === 0) return `${n / KiB} KiB`;
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${n} B`;
}

export function fmtCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** A number with 3 significant digits (no exponent for everyday magnitudes). */
export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a >= 0.01) return x.toFixed(3);
  return x.toPrecision(2);
}

export const now = (): number => performance.now();

export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Nearest-rank percentile (p in [0, 100]). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const yieldLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Flush every dirty page of the machine (untimed, between runs): a subject does not pay for the last one's writeback. */
export function osSync(): void {
  try {
    execFileSync('sync', { stdio: 'ignore' });
  } catch {
    /* not fatal: the run is only noisier */
  }
}

/** mulberry32: a tiny deterministic PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A buffer of pseudo-random bytes (incompressible: no peer's compression gets a free ride). */
export function randomBuffer(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  const r = prng(seed);
  let i = 0;
  for (; i + 4 <= size; i += 4) b.writeUInt32LE(r(), i);
  for (; i < size; i++) b[i] = r() & 0xff;
  return b;
}

export async function freshDir(base: string, name: string): Promise<string> {
  return fsp.mkdtemp(path.join(base, `${name.replace(/[^A-Za-z0-9]+/g, '-')}-`));
}

export async function rmrf(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Event-loop delay during a timed section (perf_hooks.monitorEventLoopDelay, 1 ms timer). */
/** Event-loop delay over a run: the histogram's max and p99, and a time series for the charts. */
export interface LoopDelay {
  maxMs: number;
  p99Ms: number;
  count: number;
  /** every SERIES_MS: t (ms since start) and the delay d (ms) of a timer due then */
  series: { t: number[]; d: number[] };
}

export class LoopMonitor {
  private static readonly RESOLUTION_MS = 1;
  private static readonly SERIES_MS = 10;
  private h: IntervalHistogram = monitorEventLoopDelay({ resolution: LoopMonitor.RESOLUTION_MS });
  private timer: NodeJS.Timeout | null = null;
  private series = { t: [] as number[], d: [] as number[] };
  start(): void {
    this.h.reset();
    this.h.enable();
    // the series: a timer every SERIES_MS, and how late each one ran (a coarser view than the histogram's)
    const t0 = performance.now();
    let due = t0 + LoopMonitor.SERIES_MS;
    this.series = { t: [], d: [] };
    this.timer = setInterval(() => {
      const at = performance.now();
      this.series.t.push(Math.round(due - t0));
      this.series.d.push(Math.round(Math.max(0, at - due) * 100) / 100);
      // (an interval timer's next run is due SERIES_MS after this one ran, not after it was due)
      due = at + LoopMonitor.SERIES_MS;
    }, LoopMonitor.SERIES_MS);
  }
  /**
   * The histogram records the interval between the monitor's 1 ms timer callbacks; the delay is that
   * interval minus the 1 ms it was asked for (clamped at 0).
   */
  stop(): LoopDelay {
    this.h.disable();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const d = (ns: number): number => Math.max(0, ns / 1e6 - LoopMonitor.RESOLUTION_MS);
    return { maxMs: d(this.h.max), p99Ms: d(this.h.percentile(99)), count: this.h.count, series: this.series };
  }
}

/** Peak resident set size of this process so far (Linux VmHWM), in bytes; NaN elsewhere. */
export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

export function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const msg = err?.message ?? String(e);
  return (err?.code && !msg.includes(err.code) ? `${err.code}: ${msg}` : msg).split('\n')[0]!.slice(0, 200);
}
