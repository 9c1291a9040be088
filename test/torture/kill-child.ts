/**
 * Child process of the torture kill loop (test/torture/kill.ts). Usage: node kill-child.js '<json plan>'.
 *
 * mode 'run': opens the store on the real file system with the real flusher worker, prints
 *   BASE <epoch>, then runs the deterministic workload of test/helpers/model.ts, printing ACK <k> <epoch>
 *   after each check resolves. It is SIGKILLed by the parent at a random moment, or kills itself:
 *   'check' - while check number j is in flight (the worker is writing or syncing the commit);
 *   'apply' - right after check j resolved, while the worker applies the epoch (applyThreshold 0).
 *   With plan.twoPhase some epochs end with prepare() and a decision (model.ts TwoPhaseOptions):
 *   PREPARING <k> <id> before prepare(), PREPARED <k> <id> <epoch> after it; for a commit DECIDE <k> <id>
 *   before commit() is called (the coordinator's durable record: the parent's resolver says 'commit'
 *   for it), then ACK <k> <epoch> and DECIDED <k> <id> sync|nosync; for an abort ABORTING <k> <id>,
 *   then ABORTED <k> <id>. It kills itself, at prepare number j: 'prepare' while its PREPARE is on its
 *   way, 'prepared' once it resolved (before the decision), 'decision' while the decision is written,
 *   'nosync' right after a commit({ sync: false }) or an abort resolved (before any later sync).
 * mode 'recover': opens (recovers) a crashed store through an IO wrapper over node:fs that SIGKILLs
 *   the process at its n-th mutating call (before or after doing it); prints RECOVERED <epoch> <calls>
 *   if recovery finished first. plan.decided: the prepare ids its resolver answers 'commit' for
 *   (others 'abort'); it prints INDOUBT <id> <decision> when asked.
 * Any answer of the store that differs from the model ends the child with FAIL (exit code 3).
 */
import { openStore } from '../../lib/index.js';
import { nodeIO, type IO } from '../../lib/io.js';
import { workload, readTree, describeOp, codeOf, prepareId, type Op, type TwoPhaseOptions } from '../helpers/model.js';
import { execOp, Mismatch, errText } from './driver.js';
import { manyName } from './common.js';
import { say, sayAndExit } from '../helpers/child-out.js';

export interface ChildPlan {
  mode: 'run' | 'recover' | 'many' | 'contend';
  /** many: files per epoch; their names (component) lengths in bytes */
  files?: number;
  nameLen?: number;
  epochs?: number;
  /** contend: this process's tag (its log file is own-<tag>.log) */
  tag?: string;
  lockStale?: number;
  dir: string;
  seed: number;
  segmentSize: number;
  kill?: { type: 'none' } | { type: 'check' | 'apply' | 'prepare' | 'prepared' | 'decision' | 'nosync'; j: number; spinUs: number };
  /** run: end some epochs with prepare() and a decision */
  twoPhase?: TwoPhaseOptions;
  /** recover: the prepare ids the coordinator recorded 'commit' for (the resolver's answers) */
  decided?: string[];
  applyDelay?: number;
  applyThreshold?: number;
  directAppendMin?: number | false;
  applySlice?: number;
  /** recover: SIGKILL at the n-th mutating call, before it (after: false) or after it */
  at?: number;
  after?: boolean;
  /**
   * run: the parent fails the real file system under the store (a full disk, a read-only abort):
   * a call that rejects with that kind of I/O error ends the child with IOFAIL (exit code 5),
   * not FAIL. Every other difference from the model is still a FAIL.
   */
  ioFaults?: boolean;
}

const plan = JSON.parse(process.argv[2] ?? '{}') as ChildPlan;
// Every line is awaited before the child goes on, and exits wait for their line (child-out.ts: a
// line queued in this process when the parent SIGKILLs it is lost, and the oracle would count the
// checks it acknowledged as never acknowledged).
const out = say;
const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  for (;;) { /* never returns */ }
};
const spin = (us: number): void => {
  const end = performance.now() + us / 1000;
  while (performance.now() < end) { /* busy: the worker thread keeps going */ }
};

// a safety net only: the parent kills us long before this
setTimeout(() => {
  void sayAndExit('TIMEOUT', 4);
}, 60_000).unref();

const MUTATING = new Set(['write', 'fsync', 'fdatasync', 'ftruncate', 'rename', 'unlink', 'mkdir', 'fsyncDir']);

function killerIO(at: number, after: boolean): { io: IO; count: () => number } {
  let n = 0;
  const io: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(nodeIO)) {
    io[k] = async (...args: unknown[]) => {
      if (!MUTATING.has(k)) return (f as (...a: unknown[]) => Promise<unknown>)(...args);
      n++;
      if (n === at && !after) die();
      const r = await (f as (...a: unknown[]) => Promise<unknown>)(...args);
      if (n === at && after) die();
      return r;
    };
  }
  return { io: io as unknown as IO, count: () => n };
}


if (plan.mode === 'many') {
  // thousands of files in one epoch, all open across the check (under a low ulimit -n when the parent says so)
  let store!: Awaited<ReturnType<typeof openStore>>; // a refusal below exits (sayAndExit)
  try {
    store = await openStore(plan.dir, { segmentSize: plan.segmentSize, applyDelay: plan.applyDelay ?? 0, applyThreshold: plan.applyThreshold });
  } catch (e) {
    await sayAndExit(`REFUSED open ${errText(e)}`.replace(/\n/g, ' | '), 5);
  }
  await out(`BASE ${store.epoch}`);
  const hs: Awaited<ReturnType<typeof store.open>>[] = [];
  const n = plan.files ?? 1000;
  try {
    for (let k = 1; k <= (plan.epochs ?? 2); k++) {
      for (let i = 0; i < n; i++) {
        if (k === 1) hs.push(await store.open(manyName(i, plan.nameLen ?? 40), 'a'));
        await hs[i].write(`${k}:${i}\n`);
      }
      await out(`ISSUE ${k}`);
      const epoch = await store.check();
      await out(`ACK ${k} ${epoch}`);
    }
    // close() is one more check (the entries complete): same bytes
    const last = (plan.epochs ?? 2) + 1;
    for (const h of hs) await h.close();
    await out(`ISSUE ${last}`);
    await store.close();
    await out(`ACK ${last} ${store.epoch}`);
    await out('DONE');
  } catch (e) {
    // a refusal at a call (documented code): the parent checks that nothing acknowledged was lost
    await sayAndExit(`REFUSED ${errText(e)}`.replace(/\n/g, ' | '), 5);
  }
  process.exit(0);
}

if (plan.mode === 'contend') {
  // one of two processes contending for one store; SIGSTOPped by the parent past lockStale
  let store!: Awaited<ReturnType<typeof openStore>>; // a refusal below exits (sayAndExit)
  try {
    store = await openStore(plan.dir, { segmentSize: plan.segmentSize, lockStale: plan.lockStale ?? 2000, applyDelay: 0 });
  } catch (e) {
    await sayAndExit(`LOCKED ${(e as { code?: string }).code ?? '?'} ${errText(e)}`.replace(/\n/g, ' | '), 0);
  }
  await out(`OPENED ${store.epoch}`);
  const f = await store.open(`own-${plan.tag}.log`, 'a');
  for (let k = 1; ; k++) {
    try {
      await f.write(`${plan.tag} ${k}\n`);
      await out(`ISSUE ${k}`);
      const epoch = await store.check();
      await out(`ACK ${k} ${epoch}`);
    } catch (e) {
      await sayAndExit(`REFUSED ${k} ${(e as { code?: string }).code ?? '?'} ${errText(e)}`.replace(/\n/g, ' | '), 0);
    }
    await new Promise((r) => setTimeout(r, 15));
  }
}

if (plan.mode === 'recover') {
  const k = killerIO(plan.at ?? 1, plan.after ?? false);
  const decided = new Set(plan.decided ?? []);
  const s = await openStore(plan.dir, {
    io: k.io, segmentSize: plan.segmentSize, applyDelay: 3600_000, applyThreshold: 2 ** 40,
    ...(plan.decided ? {
      resolveInDoubt: async ({ id }: { id: string }) => {
        const d = decided.has(id) ? 'commit' : 'abort';
        await out(`INDOUBT ${id} ${d}`);
        return d;
      },
    } : {}),
  });
  await sayAndExit(`RECOVERED ${s.epoch} ${k.count()}`, 0);
}

const store = await openStore(plan.dir, {
  segmentSize: plan.segmentSize, applyDelay: plan.applyDelay ?? 25, applyThreshold: plan.applyThreshold,
  ...(plan.directAppendMin !== undefined ? { directAppendMin: plan.directAppendMin } : {}),
  ...(plan.applySlice !== undefined ? { applySlice: plan.applySlice } : {}),
});
const initial = await readTree(plan.dir);
await out(`BASE ${store.epoch}`);

type File = Awaited<ReturnType<typeof store.open>>;
const handles = new Map<number, File>();
const kill = plan.kill ?? { type: 'none' };
let i = 0;
/** let a call reach the worker, spin while it writes, and die */
const dieSoon = async (spinUs: number): Promise<never> => {
  for (let t = 0; t < 4; t++) await Promise.resolve();
  spin(spinUs);
  return die();
};
const ops = workload(plan.seed, initial, { twoPhase: plan.twoPhase });
for (;;) {
  const op = ops.next().value;
  if (i++ > 5000) break;
  try {
    if (op.t === 'check') {
      const p = op.via !== null && handles.has(op.via) ? handles.get(op.via)!.check() : store.check();
      if (kill.type === 'check' && kill.j === op.k) {
        // let the commit reach the worker, then die while it writes and syncs
        for (let t = 0; t < 4; t++) await Promise.resolve();
        spin(kill.spinUs);
        die();
      }
      const epoch = await p;
      await out(`ACK ${op.k} ${epoch}`);
      if (kill.type === 'apply' && kill.j === op.k) {
        // the apply task was handed to the worker when the check resolved; let it start, then die
        await new Promise((r) => setImmediate(r));
        spin(kill.spinUs);
        die();
      }
    } else if (op.t === 'prepare') {
      const id = prepareId(plan.seed, op.n);
      const at = (type: string): boolean => kill.type === type && 'j' in kill && kill.j === op.n;
      await out(`PREPARING ${op.k} ${id}`);
      const pp = store.prepare({ id });
      if (at('prepare')) await dieSoon(kill.type === 'none' ? 0 : kill.spinUs);
      const p = await pp;
      await out(`PREPARED ${op.k} ${id} ${p.epoch}`);
      if (at('prepared')) die();
      if (op.decision === 'commit') {
        // calls made while prepared: accepted, run after the decision
        const during: Op[] = [];
        for (let d = 0; d < op.during; d++) during.push(ops.next().value);
        i += during.length;
        const chain = (async () => {
          for (const o of during) await execOp(store, handles, o);
        })();
        chain.catch(() => undefined);
        await out(`DECIDE ${op.k} ${id}`);
        const c = p.commit({ sync: op.sync });
        if (at('decision')) await dieSoon(kill.type === 'none' ? 0 : kill.spinUs);
        const epoch = await c;
        await chain;
        await out(`ACK ${op.k} ${epoch}`);
        await out(`DECIDED ${op.k} ${id} ${op.sync ? 'sync' : 'nosync'}`);
      } else {
        await out(`ABORTING ${op.k} ${id}`);
        const a = p.abort();
        if (at('decision')) await dieSoon(kill.type === 'none' ? 0 : kill.spinUs);
        await a;
        await out(`ABORTED ${op.k} ${id}`);
      }
      if (at('nosync')) die();
    } else {
      await execOp(store, handles, op);
    }
  } catch (e) {
    const code = codeOf(e);
    if (plan.ioFaults && !(e instanceof Mismatch) && (code === 'ENOSPC' || code === 'EROFS' || code === 'EIO' || code === 'EREOPEN')) {
      await sayAndExit(`IOFAIL ${code} ${i - 1} ${describeOp(op)}`, 5);
    }
    await sayAndExit(`FAIL ${i - 1} ${describeOp(op)}: ${e instanceof Mismatch ? e.message : errText(e)}`.replace(/\n/g, ' | '), 3);
  }
}
await sayAndExit('DONE', 0);
