/**
 * Runs the deterministic random workload of test/helpers/model.ts against a store and reports what the
 * oracle needs: the expected state after every check (snapshots), which checks were issued and which
 * resolved, in order with the I/O (through callbacks that put marks into a SimFS trace).
 */
import { CpError } from '../../lib/index.js';
import { workload, describeOp, writeOpCall, codeOf, prepareId, type Op, type PrepareOp, type Snapshot, type TwoPhaseOptions } from '../helpers/model.js';

type Store = Awaited<ReturnType<typeof import('../../lib/index.js').openStore>>;
type File = Awaited<ReturnType<Store['open']>>;

export { type Snapshot };

export const EMPTY_SNAPSHOT: Snapshot = { k: 0, files: new Map(), open: new Map() };

export interface DriveOptions {
  seed: number;
  initial?: Map<string, Buffer>;
  /** stop after this many ops */
  ops: number;
  /** probability that a check is not awaited (the workload goes on while it commits) */
  unawaited?: number;
  /** decides "await this check?" deterministically; defaults to a PRNG seeded from `seed` */
  rand?: () => number;
  onIssue?: (k: number) => void;
  onAck?: (k: number, epoch: number) => void;
  /** called before op #i runs (fault injection uses it to label call sites) */
  onOp?: (i: number, op: Op) => void;
  /** end some epochs with prepare() and a decision (model.ts TwoPhaseOptions) */
  twoPhase?: TwoPhaseOptions;
  /**
   * Two-phase epochs, in order: prepare() is about to be called; it resolved; the coordinator
   * records the decision 'commit' durably (before commit() is called: a crash after this must
   * commit); abort() is about to be called (presumed abort: nothing recorded); the decision resolved.
   */
  onPrepare?: (op: PrepareOp, id: string) => void;
  onPrepared?: (op: PrepareOp, epoch: number) => void;
  onDecide?: (op: PrepareOp, id: string) => void;
  onAbort?: (op: PrepareOp, id: string) => void;
  onDecided?: (op: PrepareOp, epoch: number) => void;
}

/** A prepare of the run: its op, id, the epoch prepare() resolved with, and the bytes its epoch appended straight to files. */
export interface PrepareRecord {
  op: PrepareOp;
  id: string;
  epoch: number | null;
  direct: number;
  storeId: string;
}

export interface DriveResult {
  /** snapshots by check number k (0 = initial state) */
  snaps: Map<number, Snapshot>;
  issued: number;
  acked: number;
  /** check number -> the epoch check() resolved with */
  epochs: Map<number, number>;
  ops: Op[];
  /** the first op that threw, if any (the workload stops there) */
  error: { i: number; op: string; err: unknown } | null;
  /** answers of the store that differ from the model (reads, sizes, positions) */
  mismatches: string[];
  /** the prepares made, in order */
  prepares: PrepareRecord[];
}

export class Mismatch extends Error {}

/** Execute one model op against the store. Throws Mismatch when the store answers differently. */
export async function execOp(store: Store, handles: Map<number, File>, op: Op): Promise<void> {
  const H = (h: number): File => {
    const f = handles.get(h);
    if (!f) throw new Mismatch(`no handle #${h}`);
    return f;
  };
  switch (op.t) {
    case 'open': {
      const f = await store.open(op.name, op.mode);
      handles.set(op.h, f);
      if (f.tell() !== (op.resume ?? 0)) throw new Mismatch(`${describeOp(op)}: initial tell() ${f.tell()}`);
      if (f.resumed !== (op.resume !== undefined)) throw new Mismatch(`${describeOp(op)}: resumed ${f.resumed}`);
      return;
    }
    case 'write': {
      const f = H(op.h);
      const r = await writeOpCall(f, op);
      if (r.bytesWritten !== op.len) throw new Mismatch(`${describeOp(op)}: bytesWritten ${r.bytesWritten}`);
      if (f.tell() !== op.expectPos) throw new Mismatch(`${describeOp(op)}: tell() ${f.tell()}`);
      return;
    }
    case 'read': {
      const f = H(op.h);
      const buf = Buffer.alloc(op.len);
      const r = await f.read(buf, 0, op.len, op.position ?? undefined);
      if (r.bytesRead !== op.expect.length || !buf.subarray(0, r.bytesRead).equals(op.expect)) {
        throw new Mismatch(`${describeOp(op)}: got ${r.bytesRead} bytes, different content`);
      }
      if (f.tell() !== op.expectPos) throw new Mismatch(`${describeOp(op)}: tell() ${f.tell()}`);
      return;
    }
    case 'seek': {
      const p = H(op.h).seek(op.offset, op.whence);
      if (p !== op.expectPos) throw new Mismatch(`${describeOp(op)}: seek returned ${p}`);
      return;
    }
    case 'truncate':
      await H(op.h).truncate(op.len);
      return;
    case 'stat': {
      const st = await H(op.h).stat();
      if (st.size !== op.size) throw new Mismatch(`${describeOp(op)}: size ${st.size}`);
      return;
    }
    case 'dup':
      handles.set(op.nh, H(op.h).dup());
      return;
    case 'close':
      for (const h of op.hs) {
        await H(h).close();
        handles.delete(h);
      }
      return;
    case 'unlink':
      await store.unlink(op.name);
      return;
    case 'rename':
      await store.rename(op.from, op.to);
      return;
    case 'writeFile':
      await store.writeFile(op.name, op.data);
      return;
    case 'readFile': {
      const b = Buffer.from(await store.readFile(op.name));
      if (!b.equals(op.expect)) throw new Mismatch(`${describeOp(op)}: got ${b.length} bytes, different content`);
      return;
    }
    case 'check':
    case 'prepare':
      throw new Error('checks and prepares are run by drive()');
  }
}

function lcg(seed: number): () => number {
  let s = (seed ^ 0x5bd1e995) >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Run `opts.ops` ops of the workload of `opts.seed`. Never throws: failures are in the result. */
export async function drive(store: Store, opts: DriveOptions): Promise<DriveResult> {
  const res: DriveResult = {
    snaps: new Map([[0, { k: 0, files: new Map(opts.initial ?? []), open: new Map() }]]),
    issued: 0, acked: 0, epochs: new Map(), ops: [], error: null, mismatches: [], prepares: [],
  };
  const rand = opts.rand ?? lcg(opts.seed);
  const handles = new Map<number, File>();
  const outstanding: Promise<void>[] = [];
  let i = 0;
  // bytes appended straight to files when the epoch being built began
  let directAtStart = store.stats().bytesDirect;
  const ops = workload(opts.seed, opts.initial ?? new Map(), { snapshots: true, twoPhase: opts.twoPhase });
  while (i < opts.ops) {
    const op = ops.next().value;
    res.ops.push(op);
    opts.onOp?.(i, op);
    try {
      if (op.t === 'check') {
        res.snaps.set(op.k, op.snap!);
        res.issued = op.k;
        opts.onIssue?.(op.k);
        const k = op.k;
        const p = (op.via !== null && handles.has(op.via) ? handles.get(op.via)!.check() : store.check()).then((epoch) => {
          res.epochs.set(k, epoch);
          if (k > res.acked) res.acked = k;
          opts.onAck?.(k, epoch);
        });
        directAtStart = store.stats().bytesDirect;
        if (rand() < (opts.unawaited ?? 0)) {
          // keep going; a failure surfaces here or at a later op
          outstanding.push(p.catch((e) => {
            if (!res.error) res.error = { i, op: describeOp(op), err: e };
          }));
        } else {
          await p;
        }
      } else if (op.t === 'prepare') {
        const id = prepareId(opts.seed, op.n);
        const rec: PrepareRecord = { op, id, epoch: null, direct: store.stats().bytesDirect - directAtStart, storeId: store.id };
        res.prepares.push(rec);
        opts.onPrepare?.(op, id);
        const p = await store.prepare({ id });
        rec.epoch = p.epoch;
        if (p.id !== id || p.storeId !== store.id) throw new Mismatch(`${describeOp(op)}: prepare() resolved with id ${p.id}, store ${p.storeId}`);
        opts.onPrepared?.(op, p.epoch);
        if (op.decision === 'commit') {
          // calls made while prepared: accepted, run after the decision (awaiting them first would deadlock)
          const during: Op[] = [];
          for (let d = 0; d < op.during && i + 1 + d < opts.ops; d++) during.push(ops.next().value);
          res.ops.push(...during);
          const chain = (async () => {
            for (const o of during) await execOp(store, handles, o);
          })();
          chain.catch(() => undefined);
          res.snaps.set(op.k, op.snap!);
          res.issued = op.k;
          opts.onDecide?.(op, id);
          const epoch = await p.commit({ sync: op.sync });
          i += during.length;
          await chain;
          if (epoch !== p.epoch) throw new Mismatch(`${describeOp(op)}: commit() resolved with epoch ${epoch}, prepare() with ${p.epoch}`);
          res.epochs.set(op.k, epoch);
          if (op.k > res.acked) res.acked = op.k;
          opts.onDecided?.(op, epoch);
        } else {
          opts.onAbort?.(op, id);
          await p.abort();
          opts.onDecided?.(op, p.epoch);
        }
        directAtStart = store.stats().bytesDirect;
      } else {
        await execOp(store, handles, op);
      }
    } catch (e) {
      if (e instanceof Mismatch) res.mismatches.push(`op ${i}: ${e.message}`);
      res.error ??= { i, op: describeOp(op), err: e };
      break;
    }
    i++;
  }
  await Promise.all(outstanding);
  return res;
}

/** A one-line description of a thrown value. */
export function errText(e: unknown): string {
  if (e instanceof CpError) return `CpError ${e.code}: ${e.message}`;
  if (e instanceof Error) return `${e.name}${codeOf(e) ? ` ${codeOf(e)}` : ''}: ${e.message}`;
  return String(e);
}
