/**
 * The coordinated steps of the PostgreSQL kill loop (pgkill.ts) and of the kill tests
 * (test/postgres-kills.test.ts), shared by the child that runs them (pg-child.ts) and the parent that
 * judges them: the plan a child is given, what step n writes, and the oracle.
 *
 * Step n of a lane is one coord.check over every store of the lane. Inside fn, in every store i: the
 * line "n\n" appended to the open handle `log`, and the file f-<n % 16> rewritten with stepData(n, i);
 * in PostgreSQL one row (lane, n, i) per store. Some steps' fn throws after all that (an app error,
 * stepFails). The oracle (judgeLane): every store's files come from exactly the steps whose rows are
 * committed (the log lists them, in order; each f-k holds the last of them), every store has rows for
 * the same steps, and what the child was told agrees: an acknowledged step (ACK), or one settled
 * 'commit' by retryInDoubt, is in; one rolled back (ABORTED, an app error, settled 'abort') is out.
 */
import { Rng, mixSeed } from '../helpers/model.js';

export const STEPS_TABLE = 'pgk_steps';
export const STEPS_DDL = `CREATE TABLE IF NOT EXISTS ${STEPS_TABLE} (lane int NOT NULL, n int NOT NULL, store int NOT NULL, PRIMARY KEY (lane, n, store))`;
/** f-<n % FILES>: the by-name files a step rewrites. */
export const FILES = 16;

/** Where the child kills itself in step `step`: the stages of a coordinated step, in order. */
export type KillStage =
  | 'fn'               // inside fn, its files written and its rows inserted (before the prepares)
  | 'prepared'         // every store prepared, before the decision rows
  | 'commit-sent'      // the COMMIT sent, its answer not awaited
  | 'pg-committed'     // the COMMIT answered, before any store commits
  | 'store-commit'     // the last store's commit called: killed at its next mutating file-system call (the decision record's write), before or after it
  | 'store-committed'; // the first store's commit resolved (the others' may not have)
export const KILL_STAGES: readonly KillStage[] = ['fn', 'prepared', 'commit-sent', 'pg-committed', 'store-commit', 'store-committed'];

/** Where a reopening child kills itself in resolveInDoubt: asked, the answer in hand, or just after handing it to recovery. */
export type ResolveKill = 'ask' | 'answered' | 'recovering';

export interface PgChildPlan {
  mode: 'steps' | 'reopen';
  conn: { host: string; port: number; user: string; database: string };
  dirs: string[];
  /** per store: opened with postgresHooks (the positions written in the deciding transaction) */
  hooks: boolean[];
  lane: number;
  /** the lane's seed: step data and app errors */
  seed: number;
  /** steps: run steps from..from+count-1, then exit (DONE) */
  from: number;
  count: number;
  /** the share of steps whose fn throws (an app error) */
  failRate: number;
  /** the flusher inline (else its worker thread) */
  inline: boolean;
  /** delayMs: commit-sent, how long after the COMMIT was sent; after: store-commit, after its next mutating call (else before it) */
  kill?: { stage: KillStage; step: number; delayMs: number; after?: boolean };
  /** reopen: where resolveInDoubt kills the child (none: the child reopens every store and exits) */
  resolveKill?: ResolveKill;
  resolveDelayMs?: number;
}

/** What step n writes into f-<n % 16> of store i: a header and seeded bytes, mostly small, sometimes 20-64 KiB. */
export function stepData(seed: number, n: number, i: number): Buffer {
  const r = new Rng(mixSeed(mixSeed(seed, n), i + 0x51));
  const size = r.chance(0.1) ? r.range(20_000, 65_536) : r.range(0, 2000);
  return Buffer.concat([Buffer.from(`step ${n} store ${i}\n`), r.bytes(size)]);
}

/** Whether step n's fn throws after its writes (an app error: the step must be rolled back everywhere). */
export function stepFails(seed: number, n: number, failRate: number): boolean {
  return new Rng(mixSeed(seed, n ^ 0x7a11)).chance(failRate);
}

/** What the child's lines say about its steps. */
export interface StepLines {
  begun: number[];
  acked: number[];
  aborted: number[];
  inDoubt: number[];
  settled: Map<number, 'commit' | 'abort'>;
  errors: string[];
}

export function parseStepLines(lines: readonly string[]): StepLines {
  const out: StepLines = { begun: [], acked: [], aborted: [], inDoubt: [], settled: new Map(), errors: [] };
  for (const l of lines) {
    const [w, ns, x] = l.split(' ');
    const n = Number(ns);
    if (w === 'BEGIN') out.begun.push(n);
    else if (w === 'ACK') out.acked.push(n);
    else if (w === 'ABORTED') out.aborted.push(n);
    else if (w === 'INDOUBT') out.inDoubt.push(n);
    else if (w === 'SETTLED') out.settled.set(n, x as 'commit' | 'abort');
    else if (w === 'ERROR' || w === 'FAIL') out.errors.push(l);
  }
  return out;
}

/** One store after recovery, as the parent reads it (through the store: the committed state). */
export interface StoreView {
  log: string | null;
  files: Map<string, Buffer | null>;
  /** postgresHooks' row for `log` (null: none; undefined: the store has no hooks) */
  position?: number | null;
}

export interface LaneFacts {
  seed: number;
  failRate: number;
  /** steps the lane ran before this round: every one with rows is judged as committed */
  before: number;
  /** the committed steps: rows per store */
  rows: Map<number, Set<number>>;
  stores: StoreView[];
  lines: StepLines;
}

/** The oracle: null when it holds, else what breaks it. */
export function judgeLane(f: LaneFacts): string | null {
  const sets = f.stores.map((_, i) => [...(f.rows.get(i) ?? new Set<number>())].sort((a, b) => a - b));
  const committed = sets[0] ?? [];
  for (const [i, s] of sets.entries()) {
    if (s.join(',') !== committed.join(',')) return `the rows of one step differ between stores: store 0 has steps ${tail(committed)}, store ${i} ${tail(s)}`;
  }
  const have = new Set(committed);
  const begun = new Set(f.lines.begun);
  const maxBegun = Math.max(f.before, ...f.lines.begun);
  for (const n of committed) {
    if (n > maxBegun || (n > f.before && !begun.has(n))) return `step ${n} has rows but was never begun`;
    if (stepFails(f.seed, n, f.failRate)) return `step ${n}, whose fn threw, has committed rows`;
  }
  for (const n of f.lines.acked) if (!have.has(n)) return `step ${n} was acknowledged (check resolved) but its rows are not committed (acknowledged step lost)`;
  for (const n of f.lines.aborted) if (have.has(n)) return `step ${n} was rolled back (EABORTED) but its rows are committed`;
  for (const [n, d] of f.lines.settled) if (have.has(n) !== (d === 'commit')) return `retryInDoubt settled step ${n} as ${d}, but its rows are ${have.has(n) ? '' : 'not '}committed`;
  for (const [i, v] of f.stores.entries()) {
    const want = committed.map((n) => `${n}\n`).join('');
    if ((v.log ?? '') !== want) {
      return `store ${i}: the log lists steps ${tail(lines(v.log))}, the committed rows are of steps ${tail(committed)} (files and rows from different decisions)`;
    }
    for (let k = 0; k < FILES; k++) {
      const last = [...committed].reverse().find((n) => n % FILES === k);
      const got = v.files.get(`f-${k}`) ?? null;
      const exp = last === undefined ? null : stepData(f.seed, last, i);
      if ((got === null) !== (exp === null) || (got && exp && !got.equals(exp))) {
        const what = got ? `"${got.subarray(0, got.indexOf(10)).toString()}"` : 'absent';
        return `store ${i}: f-${k} is ${what}, expected ${last === undefined ? 'absent' : `step ${last}'s`} (committed steps ${tail(committed)})`;
      }
    }
    if (v.position !== undefined) {
      const size = Buffer.byteLength(v.log ?? '');
      if ((v.position ?? 0) !== size) return `store ${i}: postgresHooks' position of log is ${v.position}, the committed log has ${size} bytes`;
    }
  }
  return null;
}

function lines(s: string | null): number[] {
  return (s ?? '').split('\n').filter(Boolean).map(Number);
}

function tail(a: readonly number[]): string {
  return a.length > 8 ? `…${a.slice(-8).join(',')} (${a.length})` : `${a.join(',') || 'none'}`;
}
