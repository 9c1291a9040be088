// Shared pieces of the crash tests: a seeded PRNG, the deterministic random workload and its in-memory
// model, a reader for a store directory, a differ, and a small child-process driver.
//
// The workload is a generator of operations. It keeps its own model of the store (name -> bytes, open
// entries with their shared positions) and every decision it takes depends only on the PRNG and that
// model, never on what the real store answers. So the child (which executes every op against a real
// store) and the parent (which only runs the generator) see the same op sequence for the same seed and
// the same initial state, and the parent knows the exact expected state after every check k.

import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import os from 'node:os';

// ---------------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: a tiny 32-bit seeded PRNG. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes two numbers into a new 32-bit seed (used to derive per-round seeds from a base seed). */
export function mixSeed(a: number, b: number): number {
  let h = (Math.imul((a >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul((b >>> 0) + 0x632be5ab, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x45d9f3b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  private readonly f: () => number;
  constructor(seed: number) {
    this.f = mulberry32(seed);
  }
  /** float in [0, 1) */
  next(): number {
    return this.f();
  }
  /** integer in [0, n) (0 if n <= 0) */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor(this.f() * n);
  }
  /** integer in [a, b] */
  range(a: number, b: number): number {
    return a + this.int(b - a + 1);
  }
  chance(p: number): boolean {
    return this.f() < p;
  }
  pick<T>(arr: readonly T[]): T {
    if (arr.length === 0) throw new Error('pick from empty array');
    return arr[this.int(arr.length)] as T;
  }
  /** n pseudo-random bytes */
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE((this.f() * 4294967296) >>> 0, i);
    for (; i < n; i++) b[i] = (this.f() * 256) & 0xff;
    return b;
  }
  /** n printable ASCII characters */
  text(n: number): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-:\n';
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** Deterministic content: `len` bytes derived from `seed` (used by the VFO fixtures and their parent). */
export function content(seed: number, len: number): Buffer {
  return new Rng(seed).bytes(len);
}

// ---------------------------------------------------------------------------------------------------
// The workload and its model

export type Mode = 'r' | 'r+' | 'w' | 'w+' | 'a' | 'a+';
export type Whence = 'set' | 'cur' | 'end';

export const ALL_MODES: readonly Mode[] = ['r', 'r+', 'w', 'w+', 'a', 'a+'];
export const CREATE_MODES: readonly Mode[] = ['w', 'w+', 'a', 'a+'];
export const READABLE = new Set<Mode>(['r', 'r+', 'w+', 'a+']);
export const WRITABLE = new Set<Mode>(['r+', 'w', 'w+', 'a', 'a+']);
export const APPENDING = new Set<Mode>(['a', 'a+']);
/** modes the workload truncates through (ftruncate on O_APPEND is left out as under-specified) */
export const TRUNCATABLE = new Set<Mode>(['r+', 'w', 'w+']);

/** The names the kill-loop workload uses (3-5 live files at a time, one in a subdirectory). */
export const NAMES: readonly string[] = ['a.dat', 'b.dat', 'c.log', 'sub/d.dat', 'e.idx'];

/** Files are kept below this size so that a round stays fast. */
export const MAX_FILE = 160 * 1024;

export interface Snapshot {
  /** number of checks of this workload run done when the snapshot was taken (0 = initial state) */
  k: number;
  /** name -> bytes (the buffers are never mutated after they are stored) */
  files: Map<string, Buffer>;
  /** names with an open entry at that check -> the entry's position */
  open: Map<string, number>;
}

export type Op =
  /** `resume`: the name is left unfinished (an aborted epoch closed or reopened it): it resumes at that position */
  | { t: 'open'; h: number; name: string; mode: Mode; resume?: number }
  | { t: 'write'; h: number; data: Buffer | string; off: number; len: number; position: number | null; expectPos: number }
  | { t: 'read'; h: number; len: number; position: number | null; expect: Buffer; expectPos: number }
  | { t: 'seek'; h: number; offset: number; whence: Whence; expectPos: number }
  | { t: 'truncate'; h: number; len: number }
  | { t: 'stat'; h: number; size: number }
  | { t: 'dup'; h: number; nh: number }
  | { t: 'close'; hs: number[] }
  | { t: 'unlink'; name: string }
  | { t: 'rename'; from: string; to: string }
  | { t: 'writeFile'; name: string; data: Buffer }
  | { t: 'readFile'; name: string; expect: Buffer }
  | { t: 'check'; k: number; via: number | null; snap: Snapshot | null }
  | PrepareOp;

/**
 * Two-phase epochs (WorkloadOptions.twoPhase): the epoch ends with store.prepare({ id }), then the
 * decision. `k` is the check number the epoch gets if committed (an abort does not use it up: the
 * next epoch gets the same number); `snap` is the prepared state (a committed check's snapshot only
 * when `decision` is 'commit'). `vfo`: which of the VFO paper's failure cases the prepared epoch holds
 * (FARE: it appended to a file; FARW: it read an area of a file and then overwrote it; FAD: it
 * deleted a file that the last committed epoch has). `injected`: the generator added them on purpose
 * just before the prepare (an append past directAppendMin, a read and overwrite, an unlink).
 */
export interface PrepareOp {
  t: 'prepare';
  k: number;
  /** the prepares of this workload run before it */
  n: number;
  decision: 'commit' | 'abort';
  /** commit({ sync }) */
  sync: boolean;
  snap: Snapshot | null;
  vfo: { fare: boolean; farw: boolean; fad: boolean };
  injected: boolean;
  /**
   * The next `during` ops (never checks or prepares) are called while the epoch is prepared: after
   * prepare() resolved and before commit() is called, unawaited until the decision (they run after
   * it and belong to the next epoch). Only with a commit decision.
   */
  during: number;
}

/** The prepare id of a workload's n-th prepare (unique per seed). */
export function prepareId(seed: number, n: number): string {
  return `tp-${(seed >>> 0).toString(16)}-${n}`;
}

interface Entry {
  pos: number;
  mode: Mode;
  handles: number[];
}

const EMPTY = Buffer.alloc(0);

class Model {
  files: Map<string, Buffer>;
  entries = new Map<string, Entry>();
  handles = new Map<number, string>();
  constructor(initial: Map<string, Buffer>) {
    this.files = new Map(initial);
  }
  entryOf(h: number): { name: string; e: Entry } {
    const name = this.handles.get(h);
    if (name === undefined) throw new Error(`model: no handle ${h}`);
    const e = this.entries.get(name);
    if (!e) throw new Error(`model: no entry for ${name}`);
    return { name, e };
  }
  size(name: string): number {
    return this.files.get(name)?.length ?? 0;
  }
  /** writes `data` at `pos`, extending with zeros; always stores a new buffer */
  put(name: string, pos: number, data: Buffer): void {
    const old = this.files.get(name) ?? EMPTY;
    const nb = Buffer.alloc(Math.max(old.length, pos + data.length));
    old.copy(nb, 0);
    data.copy(nb, pos);
    this.files.set(name, nb);
  }
  resize(name: string, len: number): void {
    const old = this.files.get(name) ?? EMPTY;
    const nb = Buffer.alloc(len);
    old.copy(nb, 0, 0, Math.min(len, old.length));
    this.files.set(name, nb);
  }
  snapshot(k: number): Snapshot {
    const open = new Map<string, number>();
    for (const [name, e] of this.entries) open.set(name, e.pos);
    return { k, files: new Map(this.files), open };
  }
}

function randLen(rng: Rng): number {
  const r = rng.next();
  if (r < 0.65) return rng.range(1, 512);
  if (r < 0.95) return rng.range(513, 8192);
  return rng.range(8193, 48 * 1024);
}

/** How a workload ends its epochs with prepare() (drawn from a stream of their own: without them the workload is unchanged). */
export interface TwoPhaseOptions {
  /** chance that an epoch ends with prepare() instead of check() */
  rate: number;
  /** chance that a prepared epoch is aborted (else committed) */
  abortRate: number;
  /** chance that a commit is commit({ sync: false }) */
  noSyncRate: number;
  /** chance that the VFO cases are added to a prepared epoch right before its prepare() */
  vfoRate: number;
  /** chance that a committed prepare has 1-3 calls made while it is prepared (PrepareOp.during) */
  duringRate?: number;
  /**
   * Keep one file open in 'a' mode across epochs (never closed; reopened when an abort closed it):
   * an append to a file open at the last two commits can go straight to it (direct appends).
   */
  keeper?: boolean;
  /** the store's directAppendMin (false: off): the added append is longer, so that it goes straight to the file */
  directMin: number | false;
}

export interface WorkloadOptions {
  /** attach a Snapshot to every check op (the parent needs them, the child does not) */
  snapshots?: boolean;
  /** end some epochs with prepare() and a decision (see TwoPhaseOptions) */
  twoPhase?: TwoPhaseOptions;
  /** called with the model's files after each op is decided, before it is yielded (debugging aid) */
  trace?: (files: ReadonlyMap<string, Buffer>) => void;
}

/**
 * The deterministic random workload: an endless sequence of ops over NAMES, starting from `initial`
 * (name -> bytes; no open entries). The model is updated before each op is yielded, so a check op's
 * snapshot is the state that check must make durable.
 */
export function* workload(seed: number, initial: Map<string, Buffer>, opts: WorkloadOptions = {}): Generator<Op, never, void> {
  const rng = new Rng(seed);
  const m = new Model(initial);
  let k = 0;
  let nextHandle = 1;

  const openHandles = (pred: (e: Entry) => boolean): number[] => {
    const out: number[] = [];
    for (const e of m.entries.values()) if (pred(e)) out.push(...e.handles);
    return out;
  };
  const closedNames = (): string[] => NAMES.filter((n) => !m.entries.has(n));
  const closedExisting = (): string[] => NAMES.filter((n) => !m.entries.has(n) && m.files.has(n));

  // Two-phase epochs: every draw of theirs comes from a stream of its own, and nothing of this is
  // used without opts.twoPhase, so a workload without it is the same op for op.
  const tp = opts.twoPhase;
  const tpRng = new Rng(mixSeed(seed, 0x2bc));
  let prepares = 0;
  /** ops still to come before a check may be drawn again (PrepareOp.during) */
  let noCheck = 0;
  /** ops decided together (a prepare with what precedes and follows it), yielded before any new draw */
  const queue: Op[] = [];
  /** the epoch being built: the VFO cases it holds so far, and the areas it read (name -> [from, to)) */
  let flags = { fare: false, farw: false, fad: false };
  let reads = new Map<string, [number, number][]>();
  /** the last committed epoch: what an abort returns to */
  const commitState = () => ({ files: new Map(m.files), entries: new Map([...m.entries].map(([n, e]) => [n, { e, pos: e.pos, mode: e.mode }])) });
  let committed = commitState();
  /** the committed epoch before it (direct appends need a file open at both) */
  let committedBefore = committed;
  const committedPoint = (): void => {
    if (!tp) return;
    committedBefore = committed;
    committed = commitState();
    flags = { fare: false, farw: false, fad: false };
    reads = new Map();
  };
  /** The VFO cases, added to the epoch about to be prepared: an append past directAppendMin, a read and overwrite of the same area, an unlink. */
  const injectVfo = (t: TwoPhaseOptions): void => {
    const ws = openHandles((e) => WRITABLE.has(e.mode));
    // rather a file open at the last two commits: its append can go straight to the file
    const direct = ws.filter((h) => {
      const { name, e } = m.entryOf(h);
      return committed.entries.get(name)?.e === e && committedBefore.entries.get(name)?.e === e;
    });
    if (ws.length) {
      const h = tpRng.pick(direct.length ? direct : ws);
      const { name, e } = m.entryOf(h);
      const size = m.size(name);
      const len = Math.min((t.directMin === false ? 2048 : t.directMin) + tpRng.range(1, 4096), MAX_FILE - size);
      if (len > 0) {
        const data = tpRng.bytes(len);
        const appending = APPENDING.has(e.mode);
        m.put(name, size, data);
        if (appending) e.pos = size + len;
        flags.fare = true;
        queue.push({ t: 'write', h, data, off: 0, len, position: appending ? null : size, expectPos: e.pos });
      }
    }
    const rw = openHandles((e) => e.mode === 'r+' || e.mode === 'w+').filter((h) => m.size(m.entryOf(h).name) > 0);
    if (rw.length) {
      const h = tpRng.pick(rw);
      const { name, e } = m.entryOf(h);
      const file = m.files.get(name)!;
      const at = tpRng.int(file.length);
      const len = Math.min(tpRng.range(1, 4096), file.length - at);
      const expect = Buffer.from(file.subarray(at, at + len));
      queue.push({ t: 'read', h, len, position: at, expect, expectPos: e.pos });
      const data = Buffer.alloc(len);
      for (let i = 0; i < len; i++) data[i] = expect[i]! ^ (1 + tpRng.int(255));
      m.put(name, at, data);
      flags.farw = true;
      queue.push({ t: 'write', h, data, off: 0, len, position: at, expectPos: e.pos });
    }
    const del = closedExisting().filter((n) => committed.files.has(n));
    if (del.length) {
      const name = tpRng.pick(del);
      m.files.delete(name);
      flags.fad = true;
      queue.push({ t: 'unlink', name });
    }
  };
  /**
   * After an abort the store is back at the last committed epoch: files, sizes and positions; entries
   * opened since are closed; a name open then whose entry did not survive (closed, or closed and
   * reopened) is left unfinished, and the workload reopens it at once: it resumes at its position.
   */
  const abortToCommitted = (): void => {
    m.files = new Map(committed.files);
    for (const [name, e] of [...m.entries]) {
      const c = committed.entries.get(name);
      if (c && c.e === e) {
        e.pos = c.pos;
        continue;
      }
      for (const h of e.handles) m.handles.delete(h);
      m.entries.delete(name);
    }
    for (const [name, c] of committed.entries) {
      if (m.entries.get(name) === c.e) continue;
      const h = nextHandle++;
      m.entries.set(name, { pos: c.pos, mode: c.mode, handles: [h] });
      m.handles.set(h, name);
      queue.push({ t: 'open', h, name, mode: c.mode, resume: c.pos });
    }
    flags = { fare: false, farw: false, fad: false };
    reads = new Map();
    openKeeper();
  };
  /** TwoPhaseOptions.keeper: its name, and its open (queued) when it is not open */
  const keeper = tp?.keeper ? NAMES[tpRng.int(NAMES.length)] : null;
  const openKeeper = (): void => {
    if (!keeper || m.entries.has(keeper) || m.entries.size >= 3) return;
    const h = nextHandle++;
    if (!m.files.has(keeper)) m.files.set(keeper, EMPTY);
    m.entries.set(keeper, { pos: 0, mode: 'a', handles: [h] });
    m.handles.set(h, keeper);
    queue.push({ t: 'open', h, name: keeper, mode: 'a' });
  };
  openKeeper();
  const prepare = (t: TwoPhaseOptions): null => {
    const injected = tpRng.chance(t.vfoRate);
    if (injected) injectVfo(t);
    const decision = tpRng.chance(t.abortRate) ? 'abort' : 'commit';
    const sync = decision === 'abort' || !tpRng.chance(t.noSyncRate);
    const during = decision === 'commit' && tpRng.chance(t.duringRate ?? 0) ? tpRng.range(1, 3) : 0;
    noCheck = during;
    queue.push({ t: 'prepare', k: k + 1, n: prepares++, decision, sync, snap: opts.snapshots ? m.snapshot(k + 1) : null, vfo: { ...flags }, injected, during });
    if (decision === 'commit') {
      k++;
      committedPoint();
    } else {
      abortToCommitted();
    }
    return null;
  };

  const choosers: Array<[number, () => Op | null]> = [
    // open
    [12, () => {
      if (m.entries.size >= 3) return null;
      const cands = closedNames();
      if (cands.length === 0) return null;
      const name = rng.pick(cands);
      const exists = m.files.has(name);
      const mode = exists ? rng.pick(ALL_MODES) : rng.pick(CREATE_MODES);
      if (mode === 'w' || mode === 'w+') m.files.set(name, EMPTY);
      else if (!exists) m.files.set(name, EMPTY);
      const h = nextHandle++;
      m.entries.set(name, { pos: 0, mode, handles: [h] });
      m.handles.set(h, name);
      return { t: 'open', h, name, mode };
    }],
    // write
    [30, () => {
      const hs = openHandles((e) => WRITABLE.has(e.mode));
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      const { name, e } = m.entryOf(h);
      const size = m.size(name);
      let len = randLen(rng);
      let position: number | null = null;
      let at: number;
      if (APPENDING.has(e.mode)) {
        at = size;
      } else if (rng.chance(0.5)) {
        at = e.pos;
      } else {
        position = rng.int(size + 2048 + 1);
        at = position;
      }
      len = Math.min(len, MAX_FILE - at);
      if (len <= 0) {
        if (APPENDING.has(e.mode)) return null;
        // the handle stands too far out: bring it home instead
        e.pos = 0;
        return { t: 'seek', h, offset: 0, whence: 'set', expectPos: 0 };
      }
      let data: Buffer | string;
      let off = 0;
      let bytes: Buffer;
      if (rng.chance(0.15)) {
        data = rng.text(len);
        bytes = Buffer.from(data, 'utf8');
      } else {
        off = rng.chance(0.25) ? rng.range(1, 64) : 0;
        const extra = off > 0 ? rng.range(0, 64) : 0;
        data = rng.bytes(off + len + extra);
        bytes = data.subarray(off, off + len);
      }
      if (tp) {
        if (at + len > size) flags.fare = true;
        if (reads.get(name)?.some(([a, b]) => at < b && at + len > a)) flags.farw = true;
      }
      m.put(name, at, bytes);
      if (position === null) e.pos = at + len;
      return { t: 'write', h, data, off, len, position, expectPos: e.pos };
    }],
    // read
    [8, () => {
      const hs = openHandles((e) => READABLE.has(e.mode));
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      const { name, e } = m.entryOf(h);
      const file = m.files.get(name) ?? EMPTY;
      const len = rng.range(1, 8192);
      const position = rng.chance(0.5) ? null : rng.int(file.length + 100 + 1);
      const at = position ?? e.pos;
      const expect = at >= file.length ? EMPTY : Buffer.from(file.subarray(at, Math.min(file.length, at + len)));
      if (position === null) e.pos = at + expect.length;
      if (tp && expect.length > 0) {
        const rs = reads.get(name) ?? [];
        rs.push([at, at + expect.length]);
        reads.set(name, rs);
      }
      return { t: 'read', h, len, position, expect, expectPos: e.pos };
    }],
    // seek
    [8, () => {
      const hs = openHandles(() => true);
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      const { name, e } = m.entryOf(h);
      const size = m.size(name);
      const target = rng.chance(0.2) ? size : rng.int(size + 1024 + 1);
      const whence = rng.pick<Whence>(['set', 'cur', 'end']);
      const offset = whence === 'set' ? target : whence === 'cur' ? target - e.pos : target - size;
      e.pos = target;
      return { t: 'seek', h, offset, whence, expectPos: target };
    }],
    // truncate
    [5, () => {
      const hs = openHandles((e) => TRUNCATABLE.has(e.mode));
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      const { name } = m.entryOf(h);
      const size = m.size(name);
      const len = rng.chance(0.8) ? rng.int(size + 1) : Math.min(MAX_FILE, size + rng.range(1, 2048));
      m.resize(name, len);
      return { t: 'truncate', h, len };
    }],
    // stat
    [3, () => {
      const hs = openHandles(() => true);
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      return { t: 'stat', h, size: m.size(m.entryOf(h).name) };
    }],
    // dup
    [3, () => {
      const hs = openHandles((e) => e.handles.length === 1);
      if (hs.length === 0) return null;
      const h = rng.pick(hs);
      const { name, e } = m.entryOf(h);
      const nh = nextHandle++;
      e.handles.push(nh);
      m.handles.set(nh, name);
      return { t: 'dup', h, nh };
    }],
    // close (every handle of one entry, the dups first, with no check in between)
    [8, () => {
      const names = keeper ? [...m.entries.keys()].filter((n) => n !== keeper) : [...m.entries.keys()];
      if (names.length === 0) return null;
      const name = rng.pick(names);
      const e = m.entries.get(name)!;
      const hs = [...e.handles].reverse();
      for (const h of hs) m.handles.delete(h);
      m.entries.delete(name);
      return { t: 'close', hs };
    }],
    // unlink
    [3, () => {
      const cands = closedExisting();
      if (cands.length === 0) return null;
      const name = rng.pick(cands);
      if (tp && committed.files.has(name)) flags.fad = true;
      m.files.delete(name);
      return { t: 'unlink', name };
    }],
    // rename (replaces an existing target like POSIX rename)
    [3, () => {
      const froms = closedExisting();
      if (froms.length === 0) return null;
      const from = rng.pick(froms);
      const tos = closedNames().filter((n) => n !== from);
      if (tos.length === 0) return null;
      const to = rng.pick(tos);
      m.files.set(to, m.files.get(from)!);
      m.files.delete(from);
      return { t: 'rename', from, to };
    }],
    // writeFile
    [4, () => {
      const cands = closedNames();
      if (cands.length === 0) return null;
      const name = rng.pick(cands);
      const data = rng.chance(0.1) ? Buffer.alloc(0) : rng.bytes(rng.range(1, 16 * 1024));
      m.files.set(name, data);
      return { t: 'writeFile', name, data };
    }],
    // readFile
    [3, () => {
      const cands = NAMES.filter((n) => m.files.has(n));
      if (cands.length === 0) return null;
      const name = rng.pick(cands);
      return { t: 'readFile', name, expect: m.files.get(name)! };
    }],
    // check
    [10, () => {
      if (noCheck > 0) return null;
      if (tp && tpRng.chance(tp.rate)) return prepare(tp);
      k++;
      const hs = openHandles(() => true);
      const via = hs.length > 0 && rng.chance(0.3) ? rng.pick(hs) : null;
      const op: Op = { t: 'check', k, via, snap: opts.snapshots ? m.snapshot(k) : null };
      committedPoint();
      return op;
    }],
  ];
  const total = choosers.reduce((s, [w]) => s + w, 0);

  for (;;) {
    const queued = queue.shift();
    if (queued) {
      opts.trace?.(m.files);
      yield queued;
      continue;
    }
    let x = rng.next() * total;
    let chosen = choosers[choosers.length - 1]![1];
    for (const [w, fn] of choosers) {
      if (x < w) {
        chosen = fn;
        break;
      }
      x -= w;
    }
    const op = chosen();
    if (op) {
      if (noCheck > 0) noCheck--;
      opts.trace?.(m.files);
      yield op;
    }
  }
}

/**
 * Runs the workload generator (model only) until check `upto` and returns the snapshots 0..upto and
 * the op log (for failure reports).
 */
export function modelRun(seed: number, initial: Map<string, Buffer>, upto: number, twoPhase?: TwoPhaseOptions): { snaps: Snapshot[]; ops: Op[] } {
  const snaps: Snapshot[] = [{ k: 0, files: new Map(initial), open: new Map() }];
  const ops: Op[] = [];
  if (upto <= 0) return { snaps, ops };
  for (const op of workload(seed, initial, { snapshots: true, twoPhase })) {
    ops.push(op);
    if (op.t === 'check' || (op.t === 'prepare' && op.decision === 'commit')) {
      snaps.push(op.snap!);
      if (op.k >= upto) break;
    }
  }
  return { snaps, ops };
}

/** One short line per op, for failure reports. */
/**
 * Runs a write op through a handle in the form its data takes: a string is written whole at its
 * position, write(string, position) as in fs/promises; a buffer as write(buffer, off, len, position).
 */
export function writeOpCall<R>(f: { write(d: string, position?: number | null): Promise<R>; write(d: Buffer, off?: number, len?: number, position?: number): Promise<R> }, op: Extract<Op, { t: 'write' }>): Promise<R> {
  return typeof op.data === 'string' ? f.write(op.data, op.position) : f.write(op.data, op.off, op.len, op.position ?? undefined);
}

export function describeOp(op: Op): string {
  switch (op.t) {
    case 'open': return `open #${op.h} ${op.name} '${op.mode}'${op.resume !== undefined ? ` (resumes at ${op.resume})` : ''}`;
    case 'write': return `write #${op.h} ${op.len}B at ${op.position === null ? 'pos' : op.position}${typeof op.data === 'string' ? ' (string)' : ''} -> pos ${op.expectPos}`;
    case 'read': return `read #${op.h} ${op.len}B at ${op.position === null ? 'pos' : op.position} -> ${op.expect.length}B, pos ${op.expectPos}`;
    case 'seek': return `seek #${op.h} ${op.offset} ${op.whence} -> ${op.expectPos}`;
    case 'truncate': return `truncate #${op.h} ${op.len}`;
    case 'stat': return `stat #${op.h} = ${op.size}`;
    case 'dup': return `dup #${op.h} -> #${op.nh}`;
    case 'close': return `close ${op.hs.map((h) => '#' + h).join(' ')}`;
    case 'unlink': return `unlink ${op.name}`;
    case 'rename': return `rename ${op.from} -> ${op.to}`;
    case 'writeFile': return `writeFile ${op.name} ${op.data.length}B`;
    case 'readFile': return `readFile ${op.name} = ${op.expect.length}B`;
    case 'check': return `check k=${op.k}${op.via !== null ? ` via #${op.via}` : ''}`;
    case 'prepare': return `prepare k=${op.k} (#${op.n}) then ${op.decision}${op.decision === 'commit' && !op.sync ? ' (sync: false)' : ''}` +
      `${op.injected ? ', VFO cases added' : ''}${op.during ? `, ${op.during} call(s) made while prepared` : ''}${Object.entries(op.vfo).filter(([, v]) => v).map(([c]) => ` ${c.toUpperCase()}`).join('')}`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Store directory contents

export const META_DIR = '.cpfile';

/** Every regular file under `dir` (recursively, '/'-separated names), except the top-level '.cpfile'. */
export async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel ? path.join(dir, rel) : dir;
    const ents = await fsp.readdir(abs, { withFileTypes: true });
    for (const d of ents) {
      const name = rel ? `${rel}/${d.name}` : d.name;
      if (!rel && d.name === META_DIR) continue;
      if (d.isDirectory()) await walk(name);
      else out.set(name, await fsp.readFile(path.join(dir, name)));
    }
  };
  await walk('');
  return out;
}

/** Human-readable differences between an actual and an expected name -> bytes map ([] if equal). */
export function diffFiles(actual: Map<string, Buffer>, expected: Map<string, Buffer>): string[] {
  const out: string[] = [];
  const names = [...new Set([...actual.keys(), ...expected.keys()])].sort();
  for (const n of names) {
    const a = actual.get(n);
    const e = expected.get(n);
    if (!a) { out.push(`${n}: missing (expected ${e!.length} bytes)`); continue; }
    if (!e) { out.push(`${n}: unexpected file (${a.length} bytes)`); continue; }
    if (a.equals(e)) continue;
    let i = 0;
    const lim = Math.min(a.length, e.length);
    while (i < lim && a[i] === e[i]) i++;
    out.push(`${n}: size ${a.length} expected ${e.length}, first difference at byte ${i}` +
      (i < lim ? ` (got 0x${a[i]!.toString(16)} expected 0x${e[i]!.toString(16)})` : ''));
  }
  return out;
}

export function sameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  return diffFiles(a, b).length === 0;
}

export function summarize(files: Map<string, Buffer>): string {
  return [...files.entries()].sort(([x], [y]) => (x < y ? -1 : 1)).map(([n, b]) => `${n}:${b.length}`).join(' ') || '(empty)';
}

// ---------------------------------------------------------------------------------------------------
// Temp dirs and children

export async function mkTmp(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function rmTmp(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child node process whose stdout is split into lines. */
export class Child {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<Exit>;
  exit: Exit | null = null;
  private partial = '';
  private waiters: Array<() => void> = [];

  constructor(script: string, args: string[]) {
    this.proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (s: string) => {
      this.partial += s;
      let i: number;
      while ((i = this.partial.indexOf('\n')) >= 0) {
        this.lines.push(this.partial.slice(0, i));
        this.partial = this.partial.slice(i + 1);
      }
      this.wake();
    });
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => {
      if (this.stderr.length < 20000) this.stderr += s;
    });
    this.exited = new Promise<Exit>((resolve) => {
      // 'close' fires after the stdio streams ended, so every line the child wrote is in `lines`
      this.proc.on('close', (code, signal) => {
        if (this.partial) this.lines.push(this.partial);
        this.partial = '';
        this.exit = { code, signal };
        this.wake();
        resolve(this.exit);
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves with the first line starting with `prefix`; rejects if the child exits first or on timeout. */
  async waitFor(prefix: string, timeoutMs = 30000): Promise<string> {
    await this.waitUntil((lines) => lines.some((l) => l.startsWith(prefix)), prefix, timeoutMs);
    return this.lines.find((l) => l.startsWith(prefix))!;
  }

  /** Resolves as soon as `pred(lines)` holds; rejects if the child exits first or on timeout. */
  async waitUntil(pred: (lines: string[]) => boolean, what: string, timeoutMs = 30000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (pred(this.lines)) return;
      if (this.exit) throw new Error(`child exited (${JSON.stringify(this.exit)}) before ${what}\n${this.output()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${what}\n${this.output()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<Exit> {
    if (!this.exit) this.proc.kill('SIGKILL');
    return this.exited;
  }

  /** stdout (long runs of lines shortened to their ends) and stderr, for failure messages */
  output(): string {
    const l = this.lines;
    const shown = l.length <= 16 ? l : [...l.slice(0, 3), `... (${l.length - 13} lines)`, ...l.slice(-10)];
    return `stdout:\n${shown.join('\n')}\nstderr:\n${this.stderr}`;
  }
}

/** Error code of a thrown value (CpError.code or a Node errno code). */
export function codeOf(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}
