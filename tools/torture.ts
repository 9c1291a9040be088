/**
 * cpfile crash-consistency torture suite.
 *
 *   npm run torture                                 all four kinds, full targets
 *   npm run torture -- --kind powerloss|kill|fuzz|faults[,...]
 *   npm run torture -- --seed N                     base seed (default: random, printed)
 *   npm run torture -- --cases N                    cases per selected kind
 *   npm run torture -- --lanes N                    parallel kill-loop lanes (default 2)
 *   npm run torture -- --quick                      small targets (a smoke run)
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
import { KINDS, fmtMs, replayLine, type KindName, type KindOptions, type KindResult } from '../test/torture/common.js';

const TARGETS: Record<KindName, number> = { powerloss: 200_000, kill: 2_000, fuzz: 50_000, faults: 10_000 };
const QUICK: Record<KindName, number> = { powerloss: 3_000, kill: 20, fuzz: 500, faults: 400 };
const RUNNERS: Record<KindName, (o: KindOptions) => Promise<KindResult>> = {
  powerloss: runPowerloss, kill: runKill, fuzz: runFuzz, faults: runFaults,
};

function usage(msg?: string): never {
  if (msg) console.error(`torture: ${msg}`);
  console.error('usage: npm run torture -- [--kind powerloss|kill|fuzz|faults[,...]] [--seed N] [--cases N] [--lanes N] [--quick]');
  process.exit(2);
}

function parse(argv: string[]): { kinds: KindName[]; seed: number; cases: number | null; lanes: number; quick: boolean } {
  let kinds: KindName[] = [...KINDS];
  let seed: number | null = null;
  let cases: number | null = null;
  let lanes = 2;
  let quick = false;
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
    } else if (name === '--quick') quick = true;
    else if (name === '--help' || name === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  return { kinds, seed: seed ?? ((Date.now() ^ (process.pid << 12)) >>> 0), cases, lanes, quick };
}

const args = parse(process.argv.slice(2));
// interrupted: remove the kill loop's store directories (its children die with the process group)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
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
  const r = await RUNNERS[kind]({ seed: args.seed, cases, log, lanes: args.lanes });
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
    console.log(`           ${replayLine(c.first)}${c.first.kind === 'kill' ? ' --lanes 1   (kill moments are real time: same workloads and plans, not the same instants)' : ''}`);
  }
}
process.exit(all.length ? 1 : 0);
