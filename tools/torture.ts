/**
 * cpfile crash-consistency torture suite.
 *
 *   npm run torture                                 all five kinds, full targets
 *   npm run torture -- --kind powerloss|kill|fuzz|faults|postgres[,...]
 *   npm run torture -- --seed N                     base seed (default: random, printed)
 *   npm run torture -- --cases N                    cases per selected kind
 *   npm run torture -- --lanes N                    parallel kill-loop lanes (default 2)
 *   npm run torture -- --quick                      small targets (a smoke run)
 *   npm run torture -- --digest N [--seed S]        print the determinism digests of N seeded units
 *                                                   (test/torture/digest.ts) and exit: compare runs of
 *                                                   two versions that must leave the same bytes on disk
 *
 * Edge dimensions (test/torture/edges.ts, kill-edge.ts), each scaled by an option:
 *   --edge-rate X          fraction of powerloss units that are edge units (default 0.1; 0 = none)
 *   --many-max N           most entries open in one epoch in an edge unit (default 5000; most units stay under 2000)
 *   --edge-states N        crash states recovered per edge unit (default 12)
 *   --dim-rate d=x[,...]   multiply the chance of an edge dimension (many, longNames, smallSeg, odd, big,
 *                          links, readonly, fdlimit, misuse); e.g. --dim-rate links=3,big=0
 *   --ulimit-rounds N      kill: rounds of a child under ulimit -n 128 with 1000+ open files (default 6)
 *   --contend-rounds N     kill: rounds of two processes contending for a store, one SIGSTOPped past
 *                          lockStale (default 4)
 *   --realfs-rounds N      kill: rounds on a 48 MiB loop-mounted ext4 that fills up or turns read-only
 *                          mid-workload (default 10; needs root and loop mounts, else skipped and said)
 * The summary prints per dimension how many units (rounds) had it and the violations found in them.
 *
 * Two-phase epochs (test/torture/twophase.ts; kill.ts twoPhaseLane): workloads whose epochs end with
 * store.prepare() and commit({ sync: true | false }) or abort(), crashed everywhere, recovered with a
 * resolver that answers from a modelled coordinator (and without one: EINDOUBT, nothing changed):
 *   --twophase X           share of the powerloss cases and of the kill kills that go to two-phase
 *                          units and rounds (default 0.1; 0 = none, as before; 1 = every powerloss unit,
 *                          the first with the base seed: what a two-phase violation's replay uses)
 * The summary prints what they covered (stages of the prepared epoch at the crash, in-doubt
 * recoveries per answer, EINDOUBT checks, crashes during in-doubt recoveries, FARE/FARW/FAD epochs).
 *
 * PostgreSQL (test/torture/pgkill.ts): files of 2-3 stores and rows committed together by
 * postgresCoordinator on a private server this run starts and destroys (tools/pg-server.ts; skipped,
 * and said, without server binaries); the step loop's process SIGKILLed at random moments and at
 * every stage of a step, the server stopped (immediate) under it and restarted, reopening processes
 * killed while resolving; every round judges that each store's files hold exactly the steps whose
 * rows are committed, and every acknowledged step is in both. Cases are rounds.
 *
 * Every violation prints the command that replays it: unit 0 of a run uses the base seed itself, so
 * `--kind K --seed <unit seed> --cases <n>` runs the failing unit first and stops at its failing case.
 * Exit code 1 when any violation was found.
 */
import { execSync } from 'node:child_process';
import * as os from 'node:os';
import { runPowerloss } from '../test/torture/powerloss.js';
import { runKill, liveDirs } from '../test/torture/kill.js';
import { rmSync } from 'node:fs';
import { runFuzz } from '../test/torture/fuzz.js';
import { runFaults } from '../test/torture/faults.js';
import { runPostgres, killPgChildren } from '../test/torture/pgkill.js';
import { digestLines } from '../test/torture/digest.js';
import { KINDS, fmtMs, replayLine, replayExtra, DEFAULT_EDGE, type KindName, type KindOptions, type KindResult, type EdgeOptions } from '../test/torture/common.js';

// (powerloss and kill were 200,000 and 2,000 before the edge units and rounds took their share of the time)
const TARGETS: Record<KindName, number> = { powerloss: 160_000, kill: 1_800, fuzz: 50_000, faults: 10_000, postgres: 300 };
const QUICK: Record<KindName, number> = { powerloss: 3_000, kill: 20, fuzz: 500, faults: 400, postgres: 20 };
const RUNNERS: Record<KindName, (o: KindOptions) => Promise<KindResult>> = {
  powerloss: runPowerloss, kill: runKill, fuzz: runFuzz, faults: runFaults, postgres: runPostgres,
};

function usage(msg?: string): never {
  if (msg) console.error(`torture: ${msg}`);
  console.error('usage: npm run torture -- [--kind powerloss|kill|fuzz|faults|postgres[,...]] [--seed N] [--cases N] [--lanes N] [--quick]');
  process.exit(2);
}

function parse(argv: string[]): { kinds: KindName[]; seed: number; cases: number | null; lanes: number; quick: boolean; edge: EdgeOptions; edgeArgs: string; twoPhase: number } {
  const edge: EdgeOptions = { ...DEFAULT_EDGE, dimRate: {} };
  const edgeArgs: string[] = [];
  let kinds: KindName[] = [...KINDS];
  let seed: number | null = null;
  let cases: number | null = null;
  let lanes = 2;
  let quick = false;
  let twoPhase = 0.1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const name = a.split('=')[0];
    if (name === '--kind') {
      kinds = val().split(',').map((k) => k.trim()) as KindName[];
      for (const k of kinds) if (!KINDS.includes(k)) usage(`unknown kind ${k}`);
    } else if (name === '--seed') {
      const v = Number(val());
      if (!Number.isSafeInteger(v) || v < 0) usage('--seed needs a non-negative integer');
      seed = v >>> 0;
    } else if (name === '--cases') {
      const v = Number(val());
      if (!Number.isSafeInteger(v) || v < 1) usage('--cases needs a positive integer');
      cases = v;
    } else if (name === '--lanes') {
      lanes = Number(val());
      if (!Number.isSafeInteger(lanes) || lanes < 1) usage('--lanes needs a positive integer');
    } else if (name === '--edge-rate') {
      const v = Number(val());
      if (!(v >= 0 && v <= 1)) usage('--edge-rate needs a number from 0 to 1');
      edge.rate = v;
      edgeArgs.push(`--edge-rate ${v}`);
    } else if (name === '--many-max' || name === '--edge-states' || name === '--ulimit-rounds' || name === '--contend-rounds' || name === '--realfs-rounds') {
      const v = Number(val());
      if (!Number.isSafeInteger(v) || v < 0) usage(`${name} needs a non-negative integer`);
      if (name === '--many-max') edge.manyMax = Math.max(1000, v);
      else if (name === '--edge-states') edge.states = v;
      else if (name === '--ulimit-rounds') edge.ulimitRounds = v;
      else if (name === '--realfs-rounds') edge.realfsRounds = v;
      else edge.contendRounds = v;
      if (name === '--many-max' || name === '--edge-states') edgeArgs.push(`${name} ${v}`);
    } else if (name === '--dim-rate') {
      const v = val();
      for (const kv of v.split(',')) {
        const [d, x] = kv.split('=');
        if (!d || !(Number(x) >= 0)) usage('--dim-rate needs dim=x[,dim=x...]');
        edge.dimRate[d.trim()] = Number(x);
      }
      edgeArgs.push(`--dim-rate ${v}`);
    } else if (name === '--twophase') {
      const v = Number(val());
      if (!(v >= 0 && v <= 1)) usage('--twophase needs a number from 0 to 1');
      twoPhase = v;
    } else if (name === '--quick') quick = true;
    else if (name === '--help' || name === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (quick && !argv.some((a) => a.startsWith('--ulimit-rounds'))) edge.ulimitRounds = 1;
  if (quick && !argv.some((a) => a.startsWith('--contend-rounds'))) edge.contendRounds = 1;
  if (quick && !argv.some((a) => a.startsWith('--realfs-rounds'))) edge.realfsRounds = 2;
  return { kinds, seed: seed ?? ((Date.now() ^ (process.pid << 12)) >>> 0), cases, lanes, quick, edge, edgeArgs: edgeArgs.map((a) => ` ${a}`).join(''), twoPhase };
}

const digestAt = process.argv.indexOf('--digest');
if (digestAt >= 0) {
  const n = Number(process.argv[digestAt + 1]);
  const seedAt = process.argv.indexOf('--seed');
  const seed = seedAt >= 0 ? Number(process.argv[seedAt + 1]) : 1;
  if (!Number.isSafeInteger(n) || n < 1 || !Number.isSafeInteger(seed) || seed < 0) usage('--digest needs a positive count (and --seed a non-negative integer)');
  await digestLines(seed >>> 0, n, (l) => console.log(l));
  process.exit(0);
}
const args = parse(process.argv.slice(2));
replayExtra.args = args.edgeArgs;
// A library promise nobody handles would end the run: count it as a violation instead.
let unhandled = 0;
process.on('unhandledRejection', (e) => {
  unhandled++;
  if (unhandled <= 3) console.log(`  VIOLATION (unattributed): an unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 6).join('\n    ') : String(e)}`);
});
// interrupted: kill the PostgreSQL loop's children (signalled alone, this process's children would
// go on), remove the kill loops' store directories; exiting runs tools/pg-server.ts's exit hook,
// which stops the private server and removes its directories
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killPgChildren();
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
    process.exit(130);
  });
}
const log = (s: string): void => console.log(s);
let commit = '';
try {
  commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {
  // not a git checkout
}
console.log(`cpfile torture: kinds ${args.kinds.join(', ')}; seed ${args.seed}; node ${process.version}; ${os.cpus().length} cpus` +
  `${commit ? `; commit ${commit}` : ''}; ${new Date().toISOString()}`);
const t0 = performance.now();
const results: KindResult[] = [];
for (const kind of args.kinds) {
  const cases = args.cases ?? (args.quick ? QUICK : TARGETS)[kind];
  console.log(`\n== ${kind}: ${cases} cases`);
  const r = await RUNNERS[kind]({ seed: args.seed, cases, log, lanes: args.lanes, edge: args.edge, twoPhase: args.twoPhase });
  results.push(r);
  console.log(`   ${r.cases} cases, ${r.violations.length} violations, ${fmtMs(r.ms)}`);
  for (const [k, v] of Object.entries(r.stats)) console.log(`   ${k}: ${v}`);
}
const total = performance.now() - t0;

console.log('\nSummary');
const rows = [['kind', 'cases', 'violations', 'wall time', 'cases/s'], ...results.map((r) => [
  r.kind, String(r.cases), String(r.violations.length), fmtMs(r.ms), (r.cases / (r.ms / 1000)).toFixed(1),
]), ['total', String(results.reduce((s, r) => s + r.cases, 0)), String(results.reduce((s, r) => s + r.violations.length, 0)), fmtMs(total), '']];
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
for (const [i, r] of rows.entries()) {
  console.log('  ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
  if (i === 0 || i === rows.length - 2) console.log('  ' + widths.map((w) => '-'.repeat(w)).join('  '));
}
// per edge dimension: units (rounds) that had it, and the violations found in them
const dimRows: string[][] = [];
for (const r of results) for (const [d, c] of Object.entries(r.dims ?? {})) dimRows.push([r.kind, d, String(c.cases), String(c.violations)]);
if (dimRows.length) {
  console.log('\nEdge dimensions (a unit with several dimensions counts in each; its violations too)');
  const t = [['kind', 'dimension', 'units', 'violations'], ...dimRows];
  const w = t[0].map((_, c) => Math.max(...t.map((r) => r[c].length)));
  for (const [i, r] of t.entries()) {
    console.log('  ' + r.map((cell, c) => (c < 2 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('  '));
    if (i === 0) console.log('  ' + w.map((x) => '-'.repeat(x)).join('  '));
  }
}
// two-phase epochs: what their units and rounds covered
// (in a fixed order: totals, the prepares, where the crashes hit them, what recovery did)
const TP_ORDER = ['units', 'rounds', 'kills', 'cases', 'violations', 'ack', 'prepares:', 'prepared epochs with', 'kills:', 'crash states:', 'rounds killed:',
  'crash states in', 'rounds killed at', 'in-doubt recoveries:', 'in doubt without', 'in-doubt states recovered without', 'reopens', 'in-doubt recoveries crashed',
  'states of in-doubt', 'recovery children', 'recoveries in a window', 'recovered without a resolver', 'recoveries outside', 'other recoveries', 'process kills'];
const TP_STAGES = ['before any prepare', 'none', 'preparing', 'prepared', 'decision recorded', 'commit', 'committing', 'abort', 'settled'];
const tpRank = (k: string): number[] => {
  const rest = k.slice(k.indexOf(': ') + 2);
  // the longest prefix that matches ('rounds killed' before 'rounds')
  let i = -1;
  TP_ORDER.forEach((p, n) => { if (rest.startsWith(p) && (i < 0 || p.length > TP_ORDER[i].length)) i = n; });
  const stage = rest.slice(rest.indexOf(': ') + 2);
  let j = -1;
  TP_STAGES.forEach((p, n) => { if (stage.startsWith(p)) j = n; });
  return [i < 0 ? TP_ORDER.length : i, j];
};
const tpRows: string[][] = [];
for (const r of results) {
  const keys = Object.keys(r.twoPhase ?? {}).sort((a, b) => {
    const [x, y] = [tpRank(a), tpRank(b)];
    return x[0] - y[0] || x[1] - y[1] || (a < b ? -1 : a > b ? 1 : 0);
  });
  for (const k of keys) tpRows.push([k, String(r.twoPhase![k])]);
}
if (tpRows.length) {
  console.log(`\nTwo-phase epochs (--twophase ${args.twoPhase}): prepare, then commit (sync or not) or abort; crashes everywhere; recovery with the coordinator's resolver`);
  const w = [Math.max(...tpRows.map((r) => r[0].length)), Math.max(...tpRows.map((r) => r[1].length))];
  for (const [k, v] of tpRows) console.log(`  ${k.padEnd(w[0])}  ${v.padStart(w[1])}`);
}
if (unhandled) console.log(`\n${unhandled} unhandled rejection(s) during the run (violations, unattributed)`);
const all = results.flatMap((r) => r.violations);
if (all.length) {
  const classes = new Map<string, { n: number; first: (typeof all)[number] }>();
  for (const v of all) {
    const key = `${v.kind}: ${v.what}`;
    const c = classes.get(key);
    if (c) c.n++;
    else classes.set(key, { n: 1, first: v });
  }
  console.log(`\n${all.length} violation(s) in ${classes.size} class(es); each with the command that replays its first case:`);
  for (const [key, c] of [...classes].sort((a, b) => b[1].n - a[1].n)) {
    console.log(`  ${String(c.n).padStart(6)} × ${key}`);
    console.log(`           ${replayLine(c.first)}${c.first.kind === 'kill' ? `${c.first.replay ? '' : ' --lanes 1'}   (kill moments are real time: same workloads and plans, not the same instants)` : c.first.kind === 'postgres' ? '   (kill moments are real time: same plans, not the same instants)' : ''}`);
  }
}
process.exit(all.length || unhandled ? 1 : 0);
