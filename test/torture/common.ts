/**
 * Shared pieces of the torture suite: results and violations, unit seeds, and recovery of a store
 * held in a simulated file system image.
 */
import { openStore, CpError, type ResolveInDoubt } from '../../lib/index.js';
import { SimFS, type Image } from './simfs.js';
import { Rng, mixSeed } from '../helpers/model.js';

export type KindName = 'powerloss' | 'kill' | 'fuzz' | 'faults' | 'postgres';
export const KINDS: readonly KindName[] = ['powerloss', 'kill', 'fuzz', 'faults', 'postgres'];

export interface Violation {
  kind: KindName;
  /** the unit seed: `--kind <kind> --seed <seed> --cases <cases>` replays it as the first unit */
  seed: number;
  /** cases of that unit up to and including the failing one */
  cases: number;
  /** the class of the violation (numbers stripped): violations are grouped by it in the summary */
  what: string;
  detail: string;
  /** the edge dimensions of the unit (edges.ts), for the per-dimension counts */
  dims?: string[];
  /** the arguments of `npm run torture --` that replay it, when they are not the usual ones */
  replay?: string;
}

/** A violation class from a message: its first line with numbers and quoted names blurred. */
export function sig(msg: string): string {
  return msg.split('\n')[0].replace(/\d+/g, 'N').replace(/'[^']*'/g, "'…'").slice(0, 160);
}

export interface KindResult {
  kind: KindName;
  cases: number;
  violations: Violation[];
  ms: number;
  /** extra figures for the summary (name -> value) */
  stats: Record<string, number | string>;
  /** edge dimensions: units (or rounds) that had it, and the violations found in them */
  dims?: Record<string, DimCount>;
  /** two-phase epochs (twophase.ts, kill.ts twoPhaseLane): what their units and rounds covered (name -> count) */
  twoPhase?: Record<string, number>;
}

export interface DimCount {
  cases: number;
  violations: number;
}

/** How much of the edge dimensions a run searches (edges.ts, kill-edge.ts). */
export interface EdgeOptions {
  /** fraction of powerloss units that are edge units */
  rate: number;
  /** largest count of open entries in one epoch */
  manyMax: number;
  /** crash states per edge unit */
  states: number;
  /** per-dimension multipliers of the chance that a unit has it */
  dimRate: Record<string, number>;
  /** kill: rounds of a child under ulimit -n 128 with thousands of files, and of two contending processes */
  ulimitRounds: number;
  contendRounds: number;
  /** kill: rounds on a loop-mounted ext4 that fills up or turns read-only (kill.ts realfsLane) */
  realfsRounds?: number;
}

export const DEFAULT_EDGE: EdgeOptions = { rate: 0.1, manyMax: 5000, states: 12, dimRate: {}, ulimitRounds: 6, contendRounds: 4, realfsRounds: 10 };

/** Count a unit's dimensions and its violations into `into`. */
export function countDims(into: Record<string, DimCount>, dims: readonly string[], violations: number): void {
  for (const d of dims) {
    const c = (into[d] ??= { cases: 0, violations: 0 });
    c.cases++;
    c.violations += violations;
  }
}

export interface KindOptions {
  seed: number;
  /** target number of cases */
  cases: number;
  /** print progress lines */
  log: (line: string) => void;
  /** stop after this many violations */
  maxViolations?: number;
  /** kill loop: parallel lanes (independent stores) */
  lanes?: number;
  /** the edge dimensions (default DEFAULT_EDGE) */
  edge?: EdgeOptions;
  /**
   * Two-phase epochs (prepare, commit or abort, in-doubt recovery): powerloss, the share of its cases
   * that go to two-phase units (twophase.ts; 1: every unit, the first with the base seed itself);
   * kill, the share of its kills made by a two-phase lane beside the others. Default 0: none.
   */
  twoPhase?: number;
}

/** Add `from`'s counts into `into`. */
export function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Seed of unit `i` of a run with base seed `base`: unit 0 uses the base seed itself, so a unit replays alone. */
export function unitSeed(base: number, i: number): number {
  return i === 0 ? base >>> 0 : mixSeed(base, i);
}

const printed = new Map<string, number>();

/** Record a violation; print the first two of each class in full, with the command that replays it. */
export function report(o: KindOptions, out: KindResult, v: Violation): void {
  out.violations.push(v);
  const key = `${v.kind}: ${v.what}`;
  const n = (printed.get(key) ?? 0) + 1;
  printed.set(key, n);
  if (n > 2) return;
  o.log(`  VIOLATION ${v.kind} (seed ${v.seed}, case ${v.cases}): ${v.detail.split('\n').slice(0, 14).map((l) => l.slice(0, 400)).join('\n    ')}`);
  o.log(`    replay: ${replayLine(v)}`);
}

/**
 * Run one unit; a unit that throws (its set-up failed, say) is a violation of its own, counted as one
 * case, with the command that replays it, rather than an exception that ends the whole run.
 */
export async function guardUnit<T>(o: KindOptions, out: KindResult, seed: number, unit: () => Promise<T>): Promise<T | null> {
  try {
    return await unit();
  } catch (e) {
    out.cases += 1;
    const msg = `the unit threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
    report(o, out, { kind: out.kind, seed, cases: 1, what: sig(msg), detail: msg });
    return null;
  }
}

/** Options a replay needs when the run used non-default edge settings (set by the CLI). */
export const replayExtra = { args: '' };

export function replayLine(v: Violation): string {
  if (v.replay) return `npm run torture -- ${v.replay}`;
  return `npm run torture -- --kind ${v.kind} --seed ${v.seed} --cases ${Math.max(1, v.cases)}${replayExtra.args}`;
}

export const STORE = '/store';
export const SEGMENT = 64 * 1024;

export interface SimRecovery {
  sim: SimFS;
  /** null when recovery rejected */
  epoch: number | null;
  entries: { name: string; position: number }[] | null;
  files: Map<string, Buffer>;
  error: unknown;
  /** trace events recorded during recovery (openStore) */
  traceLen: number;
  store: Awaited<ReturnType<typeof openStore>> | null;
}

/** Open (recover) the store held in `img` with the simulated I/O; reads the files it leaves on disk. */
export async function recoverImage(img: Image, adopt = true, opts: { segmentSize?: number; keepOpen?: boolean; resolveInDoubt?: ResolveInDoubt } = {}): Promise<SimRecovery> {
  const sim = new SimFS(img, adopt);
  sim.allowedRoot = STORE;
  let store: Awaited<ReturnType<typeof openStore>> | null = null;
  try {
    store = await openStore(STORE, {
      io: sim, noLock: true, segmentSize: opts.segmentSize ?? SEGMENT, applyDelay: 3600_000, applyThreshold: 2 ** 40,
      ...(opts.resolveInDoubt ? { resolveInDoubt: opts.resolveInDoubt } : {}),
    });
  } catch (e) {
    return { sim, epoch: null, entries: null, files: sim.tree(STORE), error: e, traceLen: sim.trace.length, store: null };
  }
  const out: SimRecovery = {
    sim, epoch: store.epoch, entries: store.recovery.entries.map((e) => ({ name: e.name, position: e.position })),
    files: sim.tree(STORE), error: null, traceLen: sim.trace.length, store,
  };
  if (!opts.keepOpen) out.store = null;
  return out;
}

export function isCpError(e: unknown): e is CpError {
  return e instanceof CpError;
}

export function fmtMs(ms: number): string {
  const s = ms / 1000;
  if (s < 59.95) return `${s.toFixed(1)} s`;
  const r = Math.round(s);
  return `${Math.floor(r / 60)} min ${r % 60} s`;
}

/**
 * The directAppendMin a torture unit runs with: mostly small, so that the workload's appends (most
 * of 1 B-8 KiB) go straight to the files and the committed sizes, cut-backs and orderings are under
 * test; sometimes off (journal only). Drawn from its own stream of `seed`.
 */
export function directAppendMinOf(seed: number): number | false {
  return ([1, 1, 2048, 16 * 1024, false] as const)[new Rng(mixSeed(seed, 0xd1ec7)).int(5)];
}

/**
 * StoreOptions.applySlice for a unit, from a stream of its own (the other draws of a seed stay what
 * they were): the default (1 MiB, more than any unit's lag: one slice), or slices of one epoch,
 * 4 KiB or 16 KiB, so that background applies stop and resume between COMMITs in every kind.
 */
export function applySliceOf(seed: number): number | undefined {
  return ([undefined, 1, 4096, 16 * 1024] as const)[new Rng(mixSeed(seed, 0x511ce)).int(4)];
}

/**
 * The markStep a torture unit's store runs with (FORMAT.md R19): mostly a few KiB, so that the 64 KiB
 * segments raise their high-water marks every few records and every crash state has raises in
 * flight; sometimes the default (a segment this small gets its end as its mark at once). Drawn
 * from its own stream of `seed`.
 */
export function markStepOf(seed: number): number | undefined {
  return ([undefined, 4096, 8192, 8192, 16 * 1024] as const)[new Rng(mixSeed(seed, 0x3a7c)).int(5)];
}

/** The i-th file of a 'many' round (kill-edge.ts builds the same names). */
export function manyName(i: number, nameLen: number): string {
  const tag = `${String(i).padStart(5, '0')}-`;
  return `many/${i % 3}/${tag}${'n'.repeat(Math.max(0, nameLen - tag.length))}`;
}
