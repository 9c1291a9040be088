/**
 * The kill loop's edge rounds, on the real file system with real processes:
 *   - low ulimit: a child under `ulimit -n 128` (spawned through bash) writes thousands of files,
 *     all open, in each epoch, and is SIGKILLed at a random moment or finishes; a second child under
 *     the same limit recovers the store; the parent checks every acknowledged epoch is there;
 *   - contention: child A owns a store (lockStale 2000, the minimum) and is SIGSTOPped for longer
 *     than lockStale; child B opens the same store meanwhile; A is continued. The fix says a live
 *     owner's lock is never taken over: B must get ELOCKED. Oracle over both processes'
 *     acknowledgements: every epoch any process saw acknowledged is present after the final recovery;
 *     no epoch is acknowledged by a process whose lock was lost (after another process opened the store);
 *   - the same store opened twice in one process through a symlink to its directory: ELOCKED.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, CpError } from '../../lib/index.js';
import { Rng, mixSeed, mkTmp, rmTmp, sleep, readTree } from '../helpers/model.js';
import { errText } from './driver.js';
import { sig, manyName, type Violation } from './common.js';
import type { ChildPlan } from './kill-child.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'kill-child.js');

/** A child node process (optionally under `ulimit -n`), its stdout in lines. */
export class EdgeChild {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private partial = '';

  constructor(plan: ChildPlan, ulimit?: number) {
    const args = [CHILD, JSON.stringify(plan)];
    this.proc = ulimit
      ? spawn('bash', ['-c', `ulimit -n ${ulimit} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (s: string) => {
      this.partial += s;
      let i: number;
      while ((i = this.partial.indexOf('\n')) >= 0) {
        this.lines.push(this.partial.slice(0, i));
        this.partial = this.partial.slice(i + 1);
      }
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => {
      if (this.stderr.length < 8000) this.stderr += s;
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        if (this.partial) this.lines.push(this.partial);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  has(prefix: string): string | undefined {
    return this.lines.find((l) => l.startsWith(prefix));
  }

  async waitFor(pred: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (this.exit || Date.now() > end) return pred();
      await sleep(10);
    }
    return true;
  }

  signal(s: NodeJS.Signals): void {
    if (!this.exit) this.proc.kill(s);
  }

  async kill(): Promise<void> {
    if (!this.exit) {
      this.proc.kill('SIGCONT');
      this.proc.kill('SIGKILL');
    }
    await this.exited;
  }

  acks(): number[] {
    return this.lines.filter((l) => l.startsWith('ACK ')).map((l) => Number(l.split(' ')[1]));
  }

  output(): string {
    const l = this.lines;
    const shown = l.length <= 12 ? l : [...l.slice(0, 3), `... (${l.length - 10} lines)`, ...l.slice(-7)];
    return `stdout: ${shown.join(' | ')}\nstderr: ${this.stderr.slice(0, 1500)}`;
  }
}

export interface EdgeRoundStats {
  ulimitRounds: number;
  ulimitKills: number;
  contendRounds: number;
  takeoversAttempted: number;
  takeoversRefused: number;
  sameProcessOpens: number;
  violations: Violation[];
  /** dimension -> violations */
  dimViolations: Record<string, number>;
}

export function emptyEdgeStats(): EdgeRoundStats {
  return { ulimitRounds: 0, ulimitKills: 0, contendRounds: 0, takeoversAttempted: 0, takeoversRefused: 0, sameProcessOpens: 0, violations: [], dimViolations: {} };
}

function violation(st: EdgeRoundStats, seed: number, dim: string, msg: string, log: (s: string) => void): void {
  const ul = dim === 'low-ulimit children';
  const replay = `--kind kill --seed ${seed} --cases 1 --lanes 1 --ulimit-rounds ${ul ? 1 : 0} --contend-rounds ${ul ? 0 : 1}`;
  const v: Violation = { kind: 'kill', seed, cases: 1, what: `${dim}: ${sig(msg)}`, detail: msg, dims: [dim], replay };
  st.violations.push(v);
  st.dimViolations[dim] = (st.dimViolations[dim] ?? 0) + 1;
  log(`  VIOLATION kill/${dim} (seed ${seed}): ${msg.split('\n').slice(0, 10).join('\n    ')}`);
  log(`    replay: npm run torture -- ${replay}   (real time: same plan, not the same instants)`);
}

/** One low-ulimit round: thousands of open files per epoch under `ulimit -n`, killed or not, recovered under the same limit. */
export async function ulimitRound(seed: number, st: EdgeRoundStats, log: (s: string) => void, ulimit = 128): Promise<void> {
  const DIM = 'low-ulimit children';
  const rng = new Rng(seed);
  const dir = await mkTmp('cpfile-torture-ulimit-');
  st.ulimitRounds++;
  try {
    const files = rng.range(1000, 2500);
    const nameLen = rng.chance(0.5) ? rng.range(200, 250) : 30;
    const epochs = rng.range(1, 3);
    const plan: ChildPlan = { mode: 'many', dir, seed, segmentSize: rng.pick([64 * 1024, 1024 * 1024, 16 * 1024 * 1024]), files, nameLen, epochs, applyDelay: 0, applyThreshold: rng.pick([0, 2 ** 40]) };
    const killAt = rng.chance(0.6) ? rng.range(100, 2500) : null;
    const child = new EdgeChild(plan, ulimit);
    const t = setTimeout(() => void child.kill(), killAt ?? 60_000);
    await child.exited;
    clearTimeout(t);
    const killed = child.exit!.signal === 'SIGKILL';
    if (killed) st.ulimitKills++;
    const desc = `files ${files}, nameLen ${nameLen}, epochs ${epochs}, segmentSize ${plan.segmentSize}, applyThreshold ${plan.applyThreshold}, ulimit -n ${ulimit}, ${killed ? `killed after ${killAt} ms` : `exit ${JSON.stringify(child.exit)}`}`;
    const refused = child.has('REFUSED');
    if (!killed && !child.has('DONE') && !refused) {
      violation(st, seed, DIM, `the child failed: ${desc}\n${child.output()}`, log);
      return;
    }
    if (refused) {
      // a refusal at a call is allowed only with a documented code; EMFILE means fds are not bounded
      violation(st, seed, DIM, `a call was refused under ulimit -n ${ulimit} (fds not bounded?): ${refused}\n${desc}`, log);
    }
    const acks = child.acks();
    const lastAck = acks.length ? Math.max(...acks) : 0;
    const issued = Math.max(lastAck, ...child.lines.filter((l) => l.startsWith('ISSUE ')).map((l) => Number(l.split(' ')[1])));
    // recovery under the same limit
    const rc = new EdgeChild({ mode: 'recover', dir, seed, segmentSize: plan.segmentSize, at: 1e9 }, ulimit);
    const t2 = setTimeout(() => void rc.kill(), 60_000);
    await rc.exited;
    clearTimeout(t2);
    if (!rc.has('RECOVERED')) {
      violation(st, seed, DIM, `recovery under ulimit -n ${ulimit} failed (acked ${lastAck}): ${desc}\n${rc.output()}`, log);
    }
    // the parent's view (no limit): every file has the lines of one epoch k, lastAck <= k <= issued
    let s;
    try {
      s = await openStore(dir, { inline: true, segmentSize: plan.segmentSize });
    } catch (e) {
      violation(st, seed, DIM, `recovery rejected (acked ${lastAck}): ${errText(e)}\n${desc}`, log);
      return;
    }
    try {
      const tree = await readTree(dir);
      const k = s.epoch;
      const bad: string[] = [];
      if (k < lastAck || k > issued) bad.push(`recovered epoch ${k}, acknowledged ${lastAck}, issued ${issued}`);
      for (let i = 0; i < files && bad.length < 3; i++) {
        const n = manyName(i, nameLen);
        const want = k === 0 ? null : Array.from({ length: Math.min(k, epochs) }, (_, j) => `${j + 1}:${i}\n`).join('');
        const got = tree.get(n)?.toString() ?? null;
        if (k === 0 ? got !== null && got !== '' : got !== want) bad.push(`${n.slice(0, 40)}…: ${got === null ? 'missing' : `${got.length} bytes`}, expected ${want === null ? 'absent' : `${want.length} bytes`}`);
      }
      if (bad.length) violation(st, seed, DIM, `after recovery: ${bad.join('; ')}\n${desc}`, log);
    } finally {
      await s.close().catch(() => undefined);
    }
  } finally {
    await rmTmp(dir);
  }
}

/** One contention round: A SIGSTOPped past lockStale, B opens meanwhile, A continues; then the oracle over both. */
export async function contendRound(seed: number, st: EdgeRoundStats, log: (s: string) => void): Promise<void> {
  const DIM = 'lock takeovers attempted';
  const rng = new Rng(seed);
  const dir = await mkTmp('cpfile-torture-contend-');
  st.contendRounds++;
  const kids: EdgeChild[] = [];
  try {
    // the same store twice in one process, through a symlink to its directory
    const link = `${dir}-link`;
    await fsp.symlink(dir, link);
    st.sameProcessOpens++;
    try {
      const s1 = await openStore(dir, { inline: true });
      try {
        const s2 = await openStore(link, { inline: true }).catch((e) => e as unknown);
        if (!(s2 instanceof CpError) || s2.code !== 'ELOCKED') {
          violation(st, seed, 'same store opened twice in one process', `openStore through a symlink to an open store's directory: ${s2 instanceof Error ? errText(s2) : 'opened'}, expected ELOCKED`, log);
          if (!(s2 instanceof Error)) await (s2 as Awaited<ReturnType<typeof openStore>>).close().catch(() => undefined);
        }
      } finally {
        await s1.close().catch(() => undefined);
      }
    } finally {
      await fsp.rm(link, { force: true });
    }

    const segmentSize = 64 * 1024;
    const stopMs = 2000 + rng.range(600, 2500);
    const A = new EdgeChild({ mode: 'contend', dir, seed, segmentSize, tag: 'A', lockStale: 2000 });
    kids.push(A);
    await A.waitFor(() => A.acks().length >= 3, 20_000);
    A.signal('SIGSTOP');
    const aAcksBeforeStop = A.acks().length;
    await sleep(stopMs);
    st.takeoversAttempted++;
    const B = new EdgeChild({ mode: 'contend', dir, seed, segmentSize, tag: 'B', lockStale: 2000 });
    kids.push(B);
    await B.waitFor(() => !!(B.has('OPENED') || B.has('LOCKED')), 15_000);
    const bOpened = !!B.has('OPENED');
    if (bOpened) await B.waitFor(() => B.acks().length >= 2, 3000);
    const aAcksAtCont = A.acks().length;
    A.signal('SIGCONT');
    await sleep(rng.range(300, 900));
    await A.kill();
    await B.kill();
    const desc = `A SIGSTOPped for ${stopMs} ms (lockStale 2000) after ${aAcksBeforeStop} acks; B ${bOpened ? 'OPENED the store' : B.has('LOCKED') ?? `said nothing (${B.output()})`}`;
    if (!bOpened && B.has('LOCKED')) {
      const code = B.has('LOCKED')!.split(' ')[1];
      if (code === 'ELOCKED') st.takeoversRefused++;
      else violation(st, seed, DIM, `the second opener was refused with ${code}, expected ELOCKED: ${desc}`, log);
    }
    if (bOpened) violation(st, seed, DIM, `a live owner's lock was taken over: the second process opened the store while the owner (SIGSTOPped past lockStale) lived: ${desc}`, log);
    const aLate = A.acks().length - aAcksAtCont;
    if (bOpened && aLate > 0) violation(st, seed, DIM, `epochs acknowledged by a process whose lock was lost: A acknowledged ${aLate} more after B had opened the store: ${desc}`, log);
    // final recovery: every acknowledged epoch of either process is there
    let s;
    try {
      s = await openStore(dir, { inline: true, segmentSize });
    } catch (e) {
      violation(st, seed, DIM, `recovery after contention rejected: ${errText(e)}\n${desc}`, log);
      return;
    }
    try {
      const tree = await readTree(dir);
      for (const [tag, kid] of [['A', A], ['B', B]] as const) {
        const acks = kid.acks();
        if (!acks.length) continue;
        const want = Math.max(...acks);
        const lines = (tree.get(`own-${tag}.log`)?.toString() ?? '').split('\n').filter(Boolean);
        const got = lines.length;
        const inOrder = lines.every((l, i) => l === `${tag} ${i + 1}`);
        if (got < want || !inOrder) {
          violation(st, seed, DIM, `acknowledged data lost: ${tag} saw ${want} epochs acknowledged, own-${tag}.log after recovery has ${got} lines${inOrder ? '' : ' (out of order)'}: ${desc}`, log);
        }
      }
    } finally {
      await s.close().catch(() => undefined);
    }
  } finally {
    for (const k of kids) await k.kill();
    await rmTmp(dir);
  }
}

export async function runEdgeRounds(seed: number, ulimitRounds: number, contendRounds: number, log: (s: string) => void): Promise<EdgeRoundStats> {
  const st = emptyEdgeStats();
  // the two kinds of rounds run side by side (a contention round mostly sleeps)
  await Promise.all([
    (async () => {
      for (let i = 0; i < ulimitRounds; i++) await ulimitRound(i === 0 ? seed : mixSeed(seed, 0x0111 + i), st, log).catch((e) => violation(st, seed, 'low-ulimit children', `the round threw: ${errText(e)}`, log));
    })(),
    (async () => {
      for (let i = 0; i < contendRounds; i++) await contendRound(i === 0 ? seed : mixSeed(seed, 0x0c0 + i), st, log).catch((e) => violation(st, seed, 'lock takeovers attempted', `the round threw: ${errText(e)}`, log));
    })(),
  ]);
  return st;
}
