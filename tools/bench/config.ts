// Benchmark configuration: the defaults of the issue, the --quick sizes, and the command line.
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GiB, KiB, MiB, fmtSize, parseCount, parseSize } from './util.js';

export const WORKLOAD_IDS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9'] as const;
export type WorkloadId = (typeof WORKLOAD_IDS)[number];

export const SUBJECT_IDS = ['raw', 'raw-async', 'raw-worker', 'raw-2x', 'cpfile', 'cpfile-new', 'cpfile-b', 'write-file-atomic', 'sqlite', 'lmdb', 'leveldb'] as const;
export type SubjectId = (typeof SUBJECT_IDS)[number];

export interface BenchConfig {
  /** Directory the benchmark's temp dirs go under (must be on the disk being measured). */
  baseDir: string;
  quick: boolean;
  /** Round-robin repetitions per workload (each subject runs once per repetition). */
  reps: Record<WorkloadId, number>;
  only: WorkloadId[];
  subjects: SubjectId[];
  /** Print progress lines on stderr. */
  verbose: boolean;
  /** A repetition taking longer than this is reported as an error, and its subject skipped from then on. */
  repTimeoutS: number;
  /**
   * Another build of cpfile (its dist/lib/index.js) benchmarked as subject 'cpfile-b' beside this one,
   * interleaved in the same run: before/after figures of a patch on a noisy machine.
   */
  libB: string | null;
  libBLabel: string;

  p1Commits: number;
  /**
   * Commits every P1 subject makes before its timed repetitions: V8 compiles a commit path of many
   * small functions on its helper threads for the first few thousand commits of a process, and on
   * two CPUs that compilation delays the committing threads (docs/BENCHMARKS.md, P1).
   */
  p1Warmup: number;
  p1WriteSize: number;
  p2Total: number;
  p2WriteSize: number;
  p2Checkpoint: number;
  /** Yield to the event loop after every write in P2 (so P7 sees the library, not the benchmark loop). */
  p2Yield: boolean;
  p3FileSize: number;
  p3WriteSize: number;
  p3Writes: number;
  p3PerCheckpoint: number;
  p4Writes: number;
  p4WriteSize: number;
  p5Bytes: number;
  p5WriteSize: number;
  p5Checkpoint: number;
  p6Bytes: number;
  p6WriteSize: number;
  p8Files: number;
  p8FileSize: number;
  /** P9 (tools/bench/p9-postgres.ts): commits per subject per repetition. */
  p9Commits: number;
}

export function defaultConfig(): BenchConfig {
  return {
    baseDir: os.tmpdir(),
    quick: false,
    reps: { P1: 7, P2: 4, P3: 5, P4: 5, P5: 4, P6: 2, P7: 0, P8: 7, P9: 5 },
    only: [...WORKLOAD_IDS],
    subjects: SUBJECT_IDS.filter((s) => s !== 'cpfile-b'),
    verbose: true,
    repTimeoutS: 600,
    libB: null,
    libBLabel: 'B',
    p1Commits: 300,
    p1Warmup: 5000,
    p1WriteSize: 4 * KiB,
    p2Total: 1 * GiB,
    p2WriteSize: 64 * KiB,
    p2Checkpoint: 16 * MiB,
    p2Yield: true,
    p3FileSize: 256 * MiB,
    p3WriteSize: 4 * KiB,
    p3Writes: 32768,
    p3PerCheckpoint: 256,
    p4Writes: 1_000_000,
    p4WriteSize: 100,
    p5Bytes: 256 * MiB,
    p5WriteSize: 64 * KiB,
    p5Checkpoint: 16 * MiB,
    p6Bytes: 2 * GiB,
    p6WriteSize: 64 * KiB,
    p8Files: 1000,
    p8FileSize: 4 * KiB,
    p9Commits: 200,
  };
}

/** Tiny sizes: the smoke test and development runs. */
export function quickConfig(): BenchConfig {
  return {
    ...defaultConfig(),
    quick: true,
    reps: { P1: 2, P2: 2, P3: 2, P4: 2, P5: 1, P6: 1, P7: 0, P8: 2, P9: 1 },
    p9Commits: 10,
    p1Commits: 30,
    p1Warmup: 20,
    p2Total: 8 * MiB,
    p2Checkpoint: 1 * MiB,
    p3FileSize: 8 * MiB,
    p3Writes: 1024,
    p4Writes: 20_000,
    p5Bytes: 8 * MiB,
    p5Checkpoint: 1 * MiB,
    p6Bytes: 32 * MiB,
    p8Files: 50,
  };
}

export const USAGE = `npm run bench -- [flags]          (or: node dist/tools/bench/index.js [flags])

  --quick                 tiny sizes (seconds, not minutes)
  --only P1,P3            run these workloads only (P7 is measured during P2)
  --subjects cpfile,raw   run these subjects only: ${SUBJECT_IDS.join(', ')}
  --reps N                repetitions of every workload (round-robin over the subjects)
  --reps-P2 N             repetitions of one workload
  --lib-b PATH            also run another cpfile build (a checkout, or its dist/lib/index.js) as
                          subject cpfile-b, interleaved with this one (A/B figures for a patch)
  --lib-b-label TEXT      what to call it in the tables (default B)
  --dir DIR               where the temp dirs go (default os.tmpdir(); must be on the disk to measure)
  --out FILE              also write the Markdown report to FILE
  --json FILE             also write every sample as JSON to FILE
  --charts DIR            where the SVG charts go (default: bench-charts, or beside --out);
                          --no-charts for none
  --quiet                 no progress lines on stderr
  --rep-timeout S         a repetition running longer is an error (default 600 s)
  sizes (suffix k/m/g = KiB/MiB/GiB):
  --p1-commits 300  --p1-warmup 5000  --p1-write 4k
  --p2-total 1g  --p2-write 64k  --p2-checkpoint 16m  --p2-no-yield
  --p3-file 256m  --p3-write 4k  --p3-writes 32768  --p3-per-checkpoint 256
  --p4-writes 1000000  --p4-write 100
  --p5-bytes 256m  --p5-write 64k  --p5-checkpoint 16m
  --p6-bytes 2g  --p6-write 64k
  --p8-files 1000  --p8-size 4k
`;

export interface Cli {
  config: BenchConfig;
  out: string | null;
  json: string | null;
  /** the charts' directory (null: none) */
  charts: string | null;
  help: boolean;
}

export function parseArgs(argv: string[]): Cli {
  const quick = argv.includes('--quick');
  const config = quick ? quickConfig() : defaultConfig();
  const cli: Cli = { config, out: null, json: null, charts: 'bench-charts', help: false };
  let chartsGiven = false;
  const sizeFlags: Record<string, keyof BenchConfig> = {
    '--p1-write': 'p1WriteSize', '--p2-total': 'p2Total', '--p2-write': 'p2WriteSize', '--p2-checkpoint': 'p2Checkpoint',
    '--p3-file': 'p3FileSize', '--p3-write': 'p3WriteSize', '--p4-write': 'p4WriteSize', '--p5-bytes': 'p5Bytes',
    '--p5-write': 'p5WriteSize', '--p5-checkpoint': 'p5Checkpoint', '--p6-bytes': 'p6Bytes', '--p6-write': 'p6WriteSize',
    '--p8-size': 'p8FileSize',
  };
  const countFlags: Record<string, keyof BenchConfig> = {
    '--p1-commits': 'p1Commits', '--p1-warmup': 'p1Warmup', '--p3-writes': 'p3Writes', '--p3-per-checkpoint': 'p3PerCheckpoint',
    '--p4-writes': 'p4Writes', '--p8-files': 'p8Files',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') continue;
    else if (a === '--help' || a === '-h') cli.help = true;
    else if (a === '--quiet') config.verbose = false;
    else if (a === '--rep-timeout') config.repTimeoutS = parseCount(next());
    else if (a === '--p2-no-yield') config.p2Yield = false;
    else if (a === '--dir') config.baseDir = next();
    else if (a === '--lib-b') {
      const v = path.resolve(next());
      config.libB = v.endsWith('.js') ? v : path.join(v, 'dist', 'lib', 'index.js');
      if (!fs.existsSync(config.libB)) throw new Error(`--lib-b: ${config.libB} does not exist (build that checkout first)`);
    } else if (a === '--lib-b-label') config.libBLabel = next();
    else if (a === '--out') cli.out = next();
    else if (a === '--json') cli.json = next();
    else if (a === '--charts') { cli.charts = next(); chartsGiven = true; }
    else if (a === '--no-charts') { cli.charts = null; chartsGiven = true; }
    else if (a === '--reps') {
      const n = parseCount(next());
      for (const id of WORKLOAD_IDS) if (id !== 'P7') config.reps[id] = n;
    } else if (/^--reps-P[1-8]$/.test(a)) config.reps[a.slice(7) as WorkloadId] = parseCount(next());
    else if (a === '--only') {
      const ids = next().split(',').map((s) => s.trim().toUpperCase());
      for (const id of ids) if (!(WORKLOAD_IDS as readonly string[]).includes(id)) throw new Error(`unknown workload ${id}`);
      config.only = ids as WorkloadId[];
    } else if (a === '--subjects') {
      const ids = next().split(',').map((s) => s.trim());
      for (const id of ids) if (!(SUBJECT_IDS as readonly string[]).includes(id)) throw new Error(`unknown subject ${id} (${SUBJECT_IDS.join(', ')})`);
      config.subjects = ids as SubjectId[];
    } else if (a in sizeFlags) (config as unknown as Record<string, number>)[sizeFlags[a]!] = parseSize(next());
    else if (a in countFlags) (config as unknown as Record<string, number>)[countFlags[a]!] = parseCount(next());
    else throw new Error(`unknown flag ${a}\n\n${USAGE}`);
  }
  if (config.libB && !config.subjects.includes('cpfile-b')) config.subjects.push('cpfile-b');
  if (config.p3FileSize < config.p3WriteSize) throw new Error('--p3-file must hold at least one write');
  // beside the report when there is one (docs/BENCHMARKS.md -> docs/bench)
  if (!chartsGiven && cli.out) cli.charts = path.join(path.dirname(cli.out), 'bench');
  return cli;
}

/** One line per workload: the sizes this run used. */
export function describeSizes(c: BenchConfig): string[] {
  return [
    `P1: ${c.p1Commits} x (${fmtSize(c.p1WriteSize)} write + durable checkpoint), after ${c.p1Warmup.toLocaleString('en-US')} untimed commits of each subject`,
    `P2: ${fmtSize(c.p2Total)} in ${fmtSize(c.p2WriteSize)} writes, a checkpoint every ${fmtSize(c.p2Checkpoint)}${c.p2Yield ? ', yielding to the event loop after every write' : ''}`,
    `P3: ${c.p3Writes.toLocaleString('en-US')} x ${fmtSize(c.p3WriteSize)} writes at random offsets of a ${fmtSize(c.p3FileSize)} file, a checkpoint every ${c.p3PerCheckpoint} writes`,
    `P4: ${c.p4Writes.toLocaleString('en-US')} writes of ${c.p4WriteSize} B, one checkpoint`,
    `P5: recovery of ${fmtSize(c.p5Bytes)} committed (${fmtSize(c.p5WriteSize)} writes, a checkpoint every ${fmtSize(c.p5Checkpoint)}) after SIGKILL`,
    `P6: peak RSS while writing ${fmtSize(c.p6Bytes)} in ${fmtSize(c.p6WriteSize)} writes between two checkpoints (child process)`,
    `P7: event-loop delay during P2`,
    `P8: ${c.p8Files.toLocaleString('en-US')} files of ${fmtSize(c.p8FileSize)} made durable together`,
    `P9: ${c.p9Commits} x (4 KiB append + one INSERT committed together through postgresCoordinator), against the row alone, file then row, and raw fdatasync`,
  ];
}
