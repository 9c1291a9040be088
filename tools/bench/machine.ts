// The machine a run happened on: what docs/BENCHMARKS.md records beside the figures.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  nproc: number;
  cpu: string;
  memTotal: number;
  memAvailable: number;
  /** `df -T DIR` of the directory the benchmark writes under. */
  df: string;
  /** The /proc/mounts line of that file system. */
  mount: string;
  node: string;
  kernel: string;
  loadavg: number[];
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export function describeMachine(dir: string): Machine {
  let memAvailable = os.freemem();
  try {
    const m = /MemAvailable:\s+(\d+)\s+kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) memAvailable = Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  const df = sh('df', ['-T', dir]);
  let mount = '';
  const target = df.split('\n')[1]?.trim().split(/\s+/).pop();
  if (target) {
    try {
      mount = readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1] === target).pop() ?? '';
    } catch {
      /* not Linux */
    }
  }
  const nproc = Number(sh('nproc', [])) || os.availableParallelism();
  return {
    nproc,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memTotal: os.totalmem(),
    memAvailable,
    df,
    mount,
    node: process.version,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg(),
  };
}
