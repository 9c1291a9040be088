// The machine a run happened on: what docs/BENCHMARKS.md records beside the figures.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
  /**
   * How fast this machine hands out memory it has not used lately: MB/s of filling a new buffer
   * (first touch: page faults) and of filling it again (no faults), and the guest's free page
   * reporting settings when it has them. Under a hypervisor that takes freed guest memory back
   * (virtio-balloon free page reporting), every page the page cache grows into faults on the host
   * too; then writes that need new page-cache pages run at the first-touch rate (docs/BENCHMARKS.md).
   */
  memory: { firstTouchMBps: number; retouchMBps: number; bytes: number; pageReporting: string };
}

/** Fill a new buffer of `bytes` twice: the first fill faults every page in, the second does not. */
export function probeMemory(bytes: number): Machine['memory'] {
  const buf = Buffer.allocUnsafeSlow(bytes);
  const t0 = performance.now();
  buf.fill(1);
  const t1 = performance.now();
  buf.fill(2);
  const t2 = performance.now();
  let pageReporting = '';
  try {
    const dir = '/sys/module/page_reporting/parameters';
    const get = (k: string): string => readFileSync(`${dir}/${k}`, 'utf8').trim();
    pageReporting = `free page reporting on (page_reporting_order ${get('page_reporting_order')}${existsSync(`${dir}/min_free_ms`) ? `, min_free_ms ${get('min_free_ms')}` : ''}, ${Math.round(Number(get('reported_kib')) / 1024)} MiB reported so far)`;
  } catch {
    /* no free page reporting here */
  }
  return { firstTouchMBps: bytes / 1e3 / (t1 - t0), retouchMBps: bytes / 1e3 / (t2 - t1), bytes, pageReporting };
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export function describeMachine(dir: string, probeBytes: number): Machine {
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
    memory: probeMemory(probeBytes),
  };
}
