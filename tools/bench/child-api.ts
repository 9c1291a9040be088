// The parent's side of the benchmark's child processes (tools/bench/child.ts): P5's writers, which
// are SIGKILLed once their checkpoints resolved, and P6's memory probes.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface P5Ready {
  ready: true;
  info: string;
}

export interface P6Result {
  /** Largest process.memoryUsage.rss() seen until the second checkpoint resolved. */
  sampledPeak: number;
  /** VmHWM from /proc/self/status (the kernel's exact peak) when the second checkpoint resolved; NaN if unavailable. */
  hwm: number;
  /** VmHWM (or the sampled peak) once the store or database is closed: for cpfile, with the apply of the 2 GiB epoch. */
  hwmClosed: number;
  /** RSS before the first write. */
  base: number;
  ms: number;
  info: string;
}

type Message<T> = { ok: true; value: T } | { ok: false; error: string };

const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));

/**
 * Run the child with `args` and resolve with the value it sends. With kill, the child is SIGKILLed
 * right after its message arrives (a crash after the checkpoints resolved) and the promise resolves
 * once it is gone. `lib`: the cpfile build the child uses (another checkout's dist/lib/index.js).
 */
export function runChild<T>(args: string[], opts: { kill: boolean; timeoutMs?: number; lib?: string | null }): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const env = { ...process.env };
    if (opts.lib) env.CPFILE_BENCH_LIB = opts.lib;
    else delete env.CPFILE_BENCH_LIB;
    const child = fork(CHILD, args, { stdio: ['ignore', 'inherit', 'pipe', 'ipc'], execArgv: [], env });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 8000) stderr = stderr.slice(-8000);
    });
    let got: Message<T> | null = null;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child ${args.join(' ')} timed out`));
    }, opts.timeoutMs ?? 15 * 60_000);
    child.on('message', (m: Message<T>) => {
      if (got) return;
      got = m;
      if (opts.kill) child.kill('SIGKILL');
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!got) {
        reject(new Error(`child ${args.slice(0, 2).join(' ')} exited (${signal ?? code}) without a result: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      } else if (!got.ok) {
        reject(new Error(`child ${args.slice(0, 2).join(' ')}: ${got.error}`));
      } else {
        resolve(got.value);
      }
    });
  });
}
