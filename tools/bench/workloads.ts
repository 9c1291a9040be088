// The workloads P1-P8, each as a set of subjects (cpfile, raw node:fs, the peers). A subject's
// setup() and teardown() are untimed; rep() times what the workload measures and returns it.
// Everything a subject writes lives in its own temp dir under the run's root.
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { openStore, type Store, type CpFile } from '../../lib/index.js';
import type { BenchConfig, SubjectId, WorkloadId } from './config.js';
import { openLevel, openLmdb, openSqlite, levelKey, type Level, type Lmdb, type Sqlite } from './peers.js';
import { runChild, type P5Ready, type P6Result } from './child-api.js';
import { RawWorker } from './raw-worker.js';
import {
  LoopMonitor, type LoopDelay, MiB, fmtSize, freshDir, median, now, osSync, percentile, prng, randomBuffer, rmrf, sleep, yieldLoop,
} from './util.js';

export type Sample = Record<string, number>;

export interface RepResult {
  m: Sample;
  /** Whole distributions or time series of the repetition, for the charts (charts.ts): P1 'q', P2 'elT'/'elD'. */
  series?: Record<string, number[]>;
  /** Facts worth printing beside the figures (fsync counts, sizes...). */
  info?: string;
}

export interface MetricDef {
  key: string;
  label: string;
  better: 'higher' | 'lower';
}

export interface SubjectRun {
  id: SubjectId;
  /** How this subject does the workload (printed under the table). */
  how: string;
  /** Not applicable: why (printed instead of figures). */
  na?: string;
  setup?(): Promise<void>;
  rep?(i: number): Promise<RepResult>;
  teardown?(): Promise<void>;
}

export interface Workload {
  id: WorkloadId;
  title: string;
  /** The first metric is the one ratios and targets use. */
  metrics: MetricDef[];
  subjects: SubjectRun[];
}

/** A build of cpfile to benchmark: this checkout, and optionally another (--lib-b). */
export interface CpVariant {
  id: 'cpfile' | 'cpfile-b';
  open: typeof openStore;
  /** Path of its dist/lib/index.js for child processes; null: this checkout. */
  lib: string | null;
}

export interface Ctx {
  config: BenchConfig;
  cpfiles: CpVariant[];
  /** The run's root temp dir. */
  root: string;
  log: (msg: string) => void;
}

// ------------------------------------------------------------------------------------------------
// helpers

const round = (x: number): number => Math.round(x * 1000) / 1000;
const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);

/** Resolve once the store has applied every committed epoch (the background work after check()). */
async function waitApplied(store: Store, timeoutMs = 300_000): Promise<void> {
  const t0 = now();
  while (store.stats().applyLag.bytes > 0) {
    if (now() - t0 > timeoutMs) throw new Error('cpfile apply did not finish');
    await sleep(1);
  }
}

/** The percentiles a latency distribution is kept at for the charts (LATENCY_QUANTILES[i] -> q[i]). */
export const LATENCY_QUANTILES: readonly number[] = [...Array.from({ length: 100 }, (_, i) => i), 99.5, 99.9, 100];

/** Per-rep latency statistics of `n` calls of fn, and its distribution at LATENCY_QUANTILES. */
async function latencies(n: number, fn: () => unknown): Promise<{ median: number; p99: number; q: number[] }> {
  const xs: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t = now();
    await fn();
    xs[i] = now() - t;
  }
  return { median: median(xs), p99: percentile(xs, 99), q: LATENCY_QUANTILES.map((p) => round(percentile(xs, p))) };
}

function writeAll(fd: number, buf: Buffer, position: number | null): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.writeSync(fd, buf, off, buf.length - off, position === null ? null : position + off);
    off += n;
  }
}

/** A file of `size` bytes of pseudo-random data, fsynced (untimed preparation). */
function prefillFile(file: string, size: number, seed: number): void {
  const chunk = randomBuffer(Math.min(size, MiB), seed);
  const fd = fs.openSync(file, 'w');
  try {
    for (let at = 0; at < size; at += chunk.length) writeAll(fd, chunk.subarray(0, Math.min(chunk.length, size - at)), at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function cpInfo(store: Store, before: ReturnType<Store['stats']>, extra = ''): string {
  const s = store.stats();
  const parts = [`stats(): fsyncs ${s.fsyncs - before.fsyncs}`, `batches ${s.batches - before.batches}`, `journal ${fmtSize(s.bytesJournaled - before.bytesJournaled)}`, `direct ${fmtSize((s.bytesDirect ?? 0) - (before.bytesDirect ?? 0))}`];
  if (extra) parts.push(extra);
  return parts.join(', ');
}

const NA_WFA_BULK = 'write-file-atomic only replaces whole files: this workload would rewrite the file at every checkpoint';

// ------------------------------------------------------------------------------------------------
// P1 commit latency

export function p1(ctx: Ctx): Workload {
  const c = ctx.config;
  const data = randomBuffer(c.p1WriteSize, 1);
  const n = c.p1Commits;
  const warm = c.p1Warmup;
  const res = (l: { median: number; p99: number; q: number[] }): RepResult => ({ m: { median: round(l.median), p99: round(l.p99) }, series: { q: l.q } });
  const subjects: SubjectRun[] = [];

  {
    let dir = '';
    let fd = -1;
    const op = (): void => {
      fs.writeSync(fd, data);
      fs.fdatasyncSync(fd);
    };
    subjects.push({
      id: 'raw', how: `fs.writeSync of ${fmtSize(c.p1WriteSize)} appended to one file + fs.fdatasyncSync (the reference)`,
      async setup() {
        dir = await freshDir(ctx.root, 'p1-raw');
        fd = fs.openSync(path.join(dir, 'log.dat'), 'a');
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { fs.closeSync(fd); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let fh: fsp.FileHandle;
    const op = async (): Promise<void> => {
      await fh.write(data);
      await fh.datasync();
    };
    subjects.push({
      id: 'raw-async', how: 'fs.promises FileHandle.write (append) + FileHandle.datasync (libuv thread pool)',
      async setup() {
        dir = await freshDir(ctx.root, 'p1-rawasync');
        fh = await fsp.open(path.join(dir, 'log.dat'), 'a');
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { await fh.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let w: RawWorker;
    const op = (): Promise<void> => w.commit(data);
    subjects.push({
      id: 'raw-worker', how: 'the raw subject\'s fs.writeSync (append) + fs.fdatasyncSync in a worker thread, one message each way, the worker polling between commits as the flusher does: the floor of any design that keeps fsync off the main thread',
      async setup() {
        dir = await freshDir(ctx.root, 'p1-rawworker');
        w = new RawWorker(path.join(dir, 'log.dat'));
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { await w.close(); await rmrf(dir); },
    });
  }
  for (const cp of ctx.cpfiles) {
    let dir = '';
    let store: Store;
    let f: CpFile;
    const op = async (): Promise<void> => {
      await f.write(data);
      await store.check();
    };
    subjects.push({
      id: cp.id, how: `f.write(${fmtSize(c.p1WriteSize)}) on a file opened 'a', then await store.check(); default options`,
      async setup() {
        dir = await freshDir(ctx.root, `p1-${cp.id}`);
        store = await cp.open(dir);
        f = await store.open('log.dat', 'a');
        if (warm > 0) await latencies(warm, op);
      },
      async rep() {
        const before = store.stats();
        const r = res(await latencies(n, op));
        const s = store.stats();
        r.info = `stats(): ${((s.fsyncs - before.fsyncs) / n).toFixed(2)} fsyncs/commit (journal; the applier's are not counted), ${((s.batches - before.batches) / n).toFixed(2)} batches/commit`;
        return r;
      },
      async teardown() { await store.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let file = '';
    const op = (): Promise<void> => writeFileAtomic(file, data);
    subjects.push({
      id: 'write-file-atomic', how: `writeFileAtomic() replacing a ${fmtSize(c.p1WriteSize)} file (temp file, fsync, rename)`,
      async setup() {
        dir = await freshDir(ctx.root, 'p1-wfa');
        file = path.join(dir, 'value.dat');
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let db: Sqlite;
    let ins: ReturnType<Sqlite['prepare']>;
    const op = (): void => {
      ins.run(data);
    };
    subjects.push({
      id: 'sqlite', how: `INSERT of a ${fmtSize(c.p1WriteSize)} BLOB, one autocommit transaction each (WAL, synchronous=FULL)`,
      async setup() {
        dir = await freshDir(ctx.root, 'p1-sqlite');
        db = openSqlite(dir);
        ins = db.prepare('INSERT INTO t (v) VALUES (?)');
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { db.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let db: Lmdb;
    let k = 0;
    const op = async (): Promise<void> => {
      await db.put(k++, data);
      await db.flushed;
    };
    subjects.push({
      id: 'lmdb', how: `await db.put(key, ${fmtSize(c.p1WriteSize)}) then await db.flushed (one synced transaction each)`,
      async setup() {
        dir = await freshDir(ctx.root, 'p1-lmdb');
        db = openLmdb(dir);
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { await db.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let db: Level;
    let k = 0;
    const op = (): Promise<void> => db.put(levelKey(k++), data, { sync: true });
    subjects.push({
      id: 'leveldb', how: `await db.put(key, ${fmtSize(c.p1WriteSize)}, { sync: true })`,
      async setup() {
        dir = await freshDir(ctx.root, 'p1-leveldb');
        db = await openLevel(dir);
        if (warm > 0) await latencies(warm, op);
      },
      rep: async () => res(await latencies(n, op)),
      async teardown() { await db.close(); await rmrf(dir); },
    });
  }
  return {
    id: 'P1', title: `P1 commit latency: ${fmtSize(c.p1WriteSize)} write + durable checkpoint, ${n} times`,
    metrics: [{ key: 'median', label: 'median ms', better: 'lower' }, { key: 'p99', label: 'p99 ms', better: 'lower' }],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P2 bulk append (P7 event-loop delay is measured during it)

interface BulkOps {
  write(i: number): unknown;
  checkpoint(last: boolean): unknown;
}

async function bulkLoop(c: BenchConfig, ops: BulkOps): Promise<{ ms: number; el: LoopDelay }> {
  const writes = Math.ceil(c.p2Total / c.p2WriteSize);
  const per = Math.max(1, Math.round(c.p2Checkpoint / c.p2WriteSize));
  const mon = new LoopMonitor();
  mon.start();
  const t0 = now();
  for (let i = 0; i < writes; i++) {
    await ops.write(i);
    const last = i === writes - 1;
    if ((i + 1) % per === 0 || last) await ops.checkpoint(last);
    if (c.p2Yield) await yieldLoop();
  }
  const ms = now() - t0;
  const el = mon.stop();
  return { ms, el };
}

export function p2(ctx: Ctx): Workload {
  const c = ctx.config;
  const data = randomBuffer(c.p2WriteSize, 2);
  const total = Math.ceil(c.p2Total / c.p2WriteSize) * c.p2WriteSize;
  const per = Math.max(1, Math.round(c.p2Checkpoint / c.p2WriteSize));
  const sample = (r: { ms: number; el: LoopDelay }, extra: Sample = {}): Sample => ({
    mbps: round(mbps(total, r.ms)), elMax: round(r.el.maxMs), elP99: round(r.el.p99Ms), ...extra,
  });
  /** A repetition's result: the figures, and the event-loop delay over time (P7's chart). */
  const p2rep = (r: { ms: number; el: LoopDelay }, extra: Sample = {}, info?: string): RepResult => ({
    m: sample(r, extra), series: { elT: r.el.series.t, elD: r.el.series.d }, ...(info !== undefined ? { info } : {}),
  });
  const subjects: SubjectRun[] = [];

  subjects.push({
    id: 'raw', how: `fs.writeSync(${fmtSize(c.p2WriteSize)}) appending, fs.fdatasyncSync every ${fmtSize(c.p2Checkpoint)}`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-raw');
      const fd = fs.openSync(path.join(dir, 'bulk.dat'), 'w');
      osSync();
      const r = await bulkLoop(c, { write: () => writeAll(fd, data, null), checkpoint: () => fs.fdatasyncSync(fd) });
      fs.closeSync(fd);
      await rmrf(dir);
      return p2rep(r);
    },
  });
  subjects.push({
    id: 'raw-2x', how: `what a redo journal costs at least, with raw fs: every write appended to a log (fs.writeSync); at each checkpoint fs.fdatasyncSync(log), then the checkpoint's bytes read back from the log, written to the data file and fs.fdatasyncSync(data)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-raw2x');
      const logFd = fs.openSync(path.join(dir, 'log'), 'w+');
      const dataFd = fs.openSync(path.join(dir, 'bulk.dat'), 'w');
      const buf = Buffer.allocUnsafe(MiB);
      let logged = 0;
      let applied = 0;
      osSync();
      const r = await bulkLoop(c, {
        write: () => {
          writeAll(logFd, data, logged);
          logged += data.length;
        },
        checkpoint: () => {
          fs.fdatasyncSync(logFd);
          while (applied < logged) {
            const got = fs.readSync(logFd, buf, 0, Math.min(buf.length, logged - applied), applied);
            writeAll(dataFd, buf.subarray(0, got), applied);
            applied += got;
          }
          fs.fdatasyncSync(dataFd);
        },
      });
      fs.closeSync(logFd);
      fs.closeSync(dataFd);
      await rmrf(dir);
      return p2rep(r);
    },
  });
  subjects.push({
    id: 'raw-worker', how: `the raw subject's writes done in a worker thread: each ${fmtSize(c.p2WriteSize)} posted to it (copied into the message, as any design that leaves the caller its buffer), an fs.fdatasyncSync every ${fmtSize(c.p2Checkpoint)} awaited; P7's floor for a design that keeps I/O off the main thread`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-rawworker');
      const w = new RawWorker(path.join(dir, 'bulk.dat'));
      await w.sync(); // the worker is up and its file open before the clock starts
      osSync();
      const r = await bulkLoop(c, { write: () => w.append(data), checkpoint: () => w.sync() });
      await w.close();
      await rmrf(dir);
      return p2rep(r);
    },
  });
  for (const cp of ctx.cpfiles) subjects.push({
    id: cp.id, how: `await f.write(${fmtSize(c.p2WriteSize)}) on a file opened 'w', await store.check() every ${fmtSize(c.p2Checkpoint)}; "applied" also waits until the background apply has caught up (stats().applyLag.bytes = 0)`,
    async rep() {
      const dir = await freshDir(ctx.root, `p2-${cp.id}`);
      const store = await cp.open(dir);
      const f = await store.open('bulk.dat', 'w');
      await store.check();
      const before = store.stats();
      osSync();
      const t0 = now();
      const r = await bulkLoop(c, { write: () => f.write(data), checkpoint: () => store.check() });
      await waitApplied(store);
      const applied = now() - t0;
      const info = cpInfo(store, before);
      await f.close();
      await store.close();
      await rmrf(dir);
      return p2rep(r, { mbpsApplied: round(mbps(total, applied)) }, info);
    },
  });
  // The same with the file created inside the timed loop: the creating epoch still journals its
  // bytes (FORMAT.md "Direct appends"), and the next one goes direct once the creation is applied.
  const self = ctx.cpfiles.find((cp) => cp.id === 'cpfile');
  if (self) subjects.push({
    id: 'cpfile-new', how: `as cpfile, but the store.open('bulk.dat', 'w') that creates the file is inside the timed loop, in the first epoch (its bytes are journaled: direct appends start in a later epoch)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-cpfile-new');
      const store = await self.open(dir);
      const before = store.stats();
      osSync();
      const t0 = now();
      let f: CpFile | null = null;
      const r = await bulkLoop(c, {
        write: async () => {
          f ??= await store.open('bulk.dat', 'w');
          await f.write(data);
        },
        checkpoint: () => store.check(),
      });
      await waitApplied(store);
      const applied = now() - t0;
      const info = cpInfo(store, before);
      await (f as CpFile | null)?.close();
      await store.close();
      await rmrf(dir);
      return p2rep(r, { mbpsApplied: round(mbps(total, applied)) }, info);
    },
  });
  subjects.push({ id: 'write-file-atomic', how: '', na: NA_WFA_BULK });
  subjects.push({
    id: 'sqlite', how: `INSERT of ${fmtSize(c.p2WriteSize)} BLOBs, BEGIN ... COMMIT every ${fmtSize(c.p2Checkpoint)} (synchronous API: the commit's fsync runs on the main thread)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-sqlite');
      const db = openSqlite(dir);
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      osSync();
      db.exec('BEGIN');
      const r = await bulkLoop(c, {
        write: (i) => ins.run(i, data),
        checkpoint: (last) => db.exec(last ? 'COMMIT' : 'COMMIT; BEGIN'),
      });
      db.close();
      await rmrf(dir);
      return p2rep(r);
    },
  });
  subjects.push({
    id: 'lmdb', how: `the ${per} writes of a checkpoint put in one db.transaction() callback (lmdb runs it on the main thread; it commits on its own thread), then await db.flushed`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-lmdb');
      const db = openLmdb(dir);
      const pending: number[] = [];
      osSync();
      const r = await bulkLoop(c, {
        write: (i) => pending.push(i),
        async checkpoint() {
          const keys = pending.splice(0);
          await db.transaction(() => {
            for (const k of keys) void db.put(k, data);
          });
          await db.flushed;
        },
      });
      await db.close();
      await rmrf(dir);
      return p2rep(r);
    },
  });
  subjects.push({
    id: 'leveldb', how: `chained batch: batch.put(${fmtSize(c.p2WriteSize)}) per write, await batch.write({ sync: true }) every ${fmtSize(c.p2Checkpoint)}`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p2-leveldb');
      const db = await openLevel(dir);
      let batch = db.batch();
      osSync();
      const r = await bulkLoop(c, {
        write: (i) => batch.put(levelKey(i), data),
        async checkpoint() {
          await batch.write({ sync: true });
          batch = db.batch();
        },
      });
      await batch.close();
      await db.close();
      await rmrf(dir);
      return p2rep(r);
    },
  });
  return {
    id: 'P2', title: `P2 bulk append: ${fmtSize(total)} in ${fmtSize(c.p2WriteSize)} writes, a checkpoint every ${fmtSize(c.p2Checkpoint)}`,
    metrics: [{ key: 'mbps', label: 'MB/s durable', better: 'higher' }, { key: 'mbpsApplied', label: 'MB/s applied', better: 'higher' }],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P3 random overwrite

export function p3(ctx: Ctx): Workload {
  const c = ctx.config;
  const data = randomBuffer(c.p3WriteSize, 3);
  /**
   * The content of write i of repetition rep: every write differs from what the file holds (SQLite
   * skips rewriting a page whose content does not change; an identical overwrite would be free there).
   */
  const stamp = (rep: number, i: number): Buffer => {
    data.writeUInt32LE(i, 0);
    data.writeUInt32LE(rep + 1, 4);
    return data;
  };
  const slots = Math.floor(c.p3FileSize / c.p3WriteSize);
  const n = c.p3Writes;
  const per = c.p3PerCheckpoint;
  /** The same offsets for every subject in a repetition. */
  const slotsOf = (rep: number): Uint32Array => {
    const r = prng(1000 + rep);
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = r() % slots;
    return out;
  };
  const wps = (ms: number): number => Math.round(n / (ms / 1000));
  const subjects: SubjectRun[] = [];
  const prefillRows = async (put: (from: number, to: number) => Promise<void> | void): Promise<void> => {
    for (let from = 0; from < slots; from += 4096) await put(from, Math.min(slots, from + 4096));
  };

  {
    let dir = '';
    let fd = -1;
    subjects.push({
      id: 'raw', how: `fs.writeSync(${fmtSize(c.p3WriteSize)}, offset) in place, fs.fdatasyncSync every ${per} writes`,
      async setup() {
        dir = await freshDir(ctx.root, 'p3-raw');
        const file = path.join(dir, 'data.bin');
        prefillFile(file, c.p3FileSize, 30);
        fd = fs.openSync(file, 'r+');
      },
      async rep(rep) {
        const s = slotsOf(rep);
        osSync();
        const t0 = now();
        for (let i = 0; i < n; i++) {
          writeAll(fd, stamp(rep, i), s[i]! * c.p3WriteSize);
          if ((i + 1) % per === 0 || i === n - 1) fs.fdatasyncSync(fd);
        }
        return { m: { wps: wps(now() - t0) } };
      },
      async teardown() { fs.closeSync(fd); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let fd = -1;
    let logFd = -1;
    subjects.push({
      id: 'raw-2x', how: `what a redo journal costs at least, with raw fs: every write appended to a log (fs.writeSync); at each checkpoint fs.fdatasyncSync(log), then the checkpoint's writes done in place and fs.fdatasyncSync(data)`,
      async setup() {
        dir = await freshDir(ctx.root, 'p3-raw2x');
        const file = path.join(dir, 'data.bin');
        prefillFile(file, c.p3FileSize, 30);
        fd = fs.openSync(file, 'r+');
        logFd = fs.openSync(path.join(dir, 'log'), 'w');
      },
      async rep(rep) {
        const s = slotsOf(rep);
        fs.ftruncateSync(logFd, 0);
        osSync();
        const t0 = now();
        let logged = 0;
        let from = 0;
        for (let i = 0; i < n; i++) {
          writeAll(logFd, stamp(rep, i), logged);
          logged += data.length;
          if ((i + 1) % per === 0 || i === n - 1) {
            fs.fdatasyncSync(logFd);
            for (let j = from; j <= i; j++) writeAll(fd, stamp(rep, j), s[j]! * c.p3WriteSize);
            fs.fdatasyncSync(fd);
            from = i + 1;
          }
        }
        return { m: { wps: wps(now() - t0) } };
      },
      async teardown() { fs.closeSync(fd); fs.closeSync(logFd); await rmrf(dir); },
    });
  }
  for (const cp of ctx.cpfiles) {
    let dir = '';
    let store: Store;
    let f: CpFile;
    subjects.push({
      id: cp.id, how: `await f.write(${fmtSize(c.p3WriteSize)}, offset) on the file opened 'r+', await store.check() every ${per} writes; "applied" waits for the background apply`,
      async setup() {
        dir = await freshDir(ctx.root, `p3-${cp.id}`);
        prefillFile(path.join(dir, 'data.bin'), c.p3FileSize, 30);
        store = await cp.open(dir);
        f = await store.open('data.bin', 'r+');
      },
      async rep(rep) {
        const s = slotsOf(rep);
        await waitApplied(store);
        const before = store.stats();
        osSync();
        const t0 = now();
        for (let i = 0; i < n; i++) {
          await f.write(stamp(rep, i), 0, data.length, s[i]! * c.p3WriteSize);
          if ((i + 1) % per === 0 || i === n - 1) await store.check();
        }
        const t1 = now();
        await waitApplied(store);
        const t2 = now();
        return { m: { wps: wps(t1 - t0), wpsApplied: wps(t2 - t0) }, info: cpInfo(store, before) };
      },
      async teardown() { await f.close(); await store.close(); await rmrf(dir); },
    });
  }
  subjects.push({ id: 'write-file-atomic', how: '', na: NA_WFA_BULK });
  {
    let dir = '';
    let db: Sqlite;
    subjects.push({
      id: 'sqlite', how: `a table of ${slots.toLocaleString('en-US')} ${fmtSize(c.p3WriteSize)} BLOB rows; UPDATE of a random row, BEGIN ... COMMIT every ${per}`,
      async setup() {
        dir = await freshDir(ctx.root, 'p3-sqlite');
        db = openSqlite(dir);
        const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
        await prefillRows((from, to) => {
          db.transaction(() => {
            for (let k = from; k < to; k++) ins.run(k, data);
          })();
        });
        db.pragma('wal_checkpoint(TRUNCATE)');
      },
      async rep(rep) {
        const s = slotsOf(rep);
        const upd = db.prepare('UPDATE t SET v = ? WHERE k = ?');
        osSync();
        const t0 = now();
        db.exec('BEGIN');
        for (let i = 0; i < n; i++) {
          upd.run(stamp(rep, i), s[i]!);
          if ((i + 1) % per === 0 || i === n - 1) db.exec(i === n - 1 ? 'COMMIT' : 'COMMIT; BEGIN');
        }
        return { m: { wps: wps(now() - t0) } };
      },
      async teardown() { db.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let db: Lmdb;
    subjects.push({
      id: 'lmdb', how: `${slots.toLocaleString('en-US')} keys of ${fmtSize(c.p3WriteSize)}; the ${per} puts of a checkpoint in one db.transaction(), then await db.flushed`,
      async setup() {
        dir = await freshDir(ctx.root, 'p3-lmdb');
        db = openLmdb(dir);
        await prefillRows(async (from, to) => {
          await db.transaction(() => {
            for (let k = from; k < to; k++) void db.put(k, data);
          });
        });
        await db.flushed;
      },
      async rep(rep) {
        const s = slotsOf(rep);
        osSync();
        const t0 = now();
        for (let i = 0; i < n; i += per) {
          const end = Math.min(n, i + per);
          await db.transaction(() => {
            for (let j = i; j < end; j++) void db.put(s[j]!, stamp(rep, j));
          });
          await db.flushed;
        }
        return { m: { wps: wps(now() - t0) } };
      },
      async teardown() { await db.close(); await rmrf(dir); },
    });
  }
  {
    let dir = '';
    let db: Level;
    subjects.push({
      id: 'leveldb', how: `${slots.toLocaleString('en-US')} keys of ${fmtSize(c.p3WriteSize)}; a chained batch of ${per} puts, batch.write({ sync: true })`,
      async setup() {
        dir = await freshDir(ctx.root, 'p3-leveldb');
        db = await openLevel(dir);
        await prefillRows(async (from, to) => {
          const b = db.batch();
          for (let k = from; k < to; k++) b.put(levelKey(k), data);
          await b.write();
        });
        await db.compactRange(levelKey(0), levelKey(slots));
      },
      async rep(rep) {
        const s = slotsOf(rep);
        osSync();
        const t0 = now();
        let b = db.batch();
        for (let i = 0; i < n; i++) {
          b.put(levelKey(s[i]!), stamp(rep, i));
          if ((i + 1) % per === 0 || i === n - 1) {
            await b.write({ sync: true });
            b = db.batch();
          }
        }
        const ms = now() - t0;
        await b.close();
        return { m: { wps: wps(ms) } };
      },
      async teardown() { await db.close(); await rmrf(dir); },
    });
  }
  return {
    id: 'P3', title: `P3 random overwrite: ${n.toLocaleString('en-US')} x ${fmtSize(c.p3WriteSize)} at random offsets of ${fmtSize(c.p3FileSize)}, a checkpoint every ${per} writes`,
    metrics: [{ key: 'wps', label: 'writes/s durable', better: 'higher' }, { key: 'wpsApplied', label: 'writes/s applied', better: 'higher' }],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P4 small writes

export function p4(ctx: Ctx): Workload {
  const c = ctx.config;
  const data = randomBuffer(c.p4WriteSize, 4);
  const n = c.p4Writes;
  const ops = (ms: number): number => Math.round(n / (ms / 1000));
  const subjects: SubjectRun[] = [];

  subjects.push({
    id: 'raw', how: `fs.writeSync(${c.p4WriteSize} B) appending (one syscall per write), one fs.fdatasyncSync at the end`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p4-raw');
      const fd = fs.openSync(path.join(dir, 'small.dat'), 'w');
      osSync();
      const t0 = now();
      for (let i = 0; i < n; i++) fs.writeSync(fd, data);
      fs.fdatasyncSync(fd);
      const ms = now() - t0;
      fs.closeSync(fd);
      await rmrf(dir);
      return { m: { ops: ops(ms) } };
    },
  });
  for (const cp of ctx.cpfiles) subjects.push({
    id: cp.id, how: `await f.write(${c.p4WriteSize} B) on a file opened 'w', one await store.check(); "applied" waits for the background apply`,
    async rep() {
      const dir = await freshDir(ctx.root, `p4-${cp.id}`);
      const store = await cp.open(dir);
      const f = await store.open('small.dat', 'w');
      await store.check();
      const before = store.stats();
      osSync();
      const t0 = now();
      for (let i = 0; i < n; i++) await f.write(data);
      await store.check();
      const t1 = now();
      await waitApplied(store);
      const t2 = now();
      const info = cpInfo(store, before);
      await f.close();
      await store.close();
      await rmrf(dir);
      return { m: { ops: ops(t1 - t0), opsApplied: ops(t2 - t0) }, info };
    },
  });
  subjects.push({ id: 'write-file-atomic', how: '', na: NA_WFA_BULK });
  subjects.push({
    id: 'sqlite', how: `INSERT of a ${c.p4WriteSize} B BLOB per write in one BEGIN ... COMMIT`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p4-sqlite');
      const db = openSqlite(dir);
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      osSync();
      const t0 = now();
      db.exec('BEGIN');
      for (let i = 0; i < n; i++) ins.run(i, data);
      db.exec('COMMIT');
      const ms = now() - t0;
      db.close();
      await rmrf(dir);
      return { m: { ops: ops(ms) } };
    },
  });
  subjects.push({
    id: 'lmdb', how: `${n.toLocaleString('en-US')} puts of ${c.p4WriteSize} B in one db.transaction(), then await db.flushed`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p4-lmdb');
      const db = openLmdb(dir);
      osSync();
      const t0 = now();
      await db.transaction(() => {
        for (let i = 0; i < n; i++) void db.put(i, data);
      });
      await db.flushed;
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      return { m: { ops: ops(ms) } };
    },
  });
  subjects.push({
    id: 'leveldb', how: `a chained batch of ${n.toLocaleString('en-US')} puts of ${c.p4WriteSize} B, batch.write({ sync: true })`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p4-leveldb');
      const db = await openLevel(dir);
      osSync();
      const t0 = now();
      const b = db.batch();
      for (let i = 0; i < n; i++) b.put(levelKey(i), data);
      await b.write({ sync: true });
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      return { m: { ops: ops(ms) } };
    },
  });
  return {
    id: 'P4', title: `P4 small writes: ${n.toLocaleString('en-US')} writes of ${c.p4WriteSize} B, one checkpoint`,
    metrics: [{ key: 'ops', label: 'writes/s durable', better: 'higher' }, { key: 'opsApplied', label: 'writes/s applied', better: 'higher' }],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P5 recovery

export function p5(ctx: Ctx): Workload {
  const c = ctx.config;
  const bytes = Math.ceil(c.p5Bytes / c.p5WriteSize) * c.p5WriteSize;
  const sample = (usableMs: number, appliedMs: number): Sample => ({
    mbps: round(mbps(bytes, appliedMs)), usableS: round(usableMs / 1000), appliedS: round(appliedMs / 1000),
  });
  /** Run the writer child until its checkpoints resolved, then SIGKILL it. */
  const crashWriter = async (subject: SubjectId, dir: string, lib: string | null = null): Promise<P5Ready> => {
    const ready = await runChild<P5Ready>(['p5', subject, dir, String(bytes), String(c.p5WriteSize), String(c.p5Checkpoint)], { kill: true, lib });
    osSync();
    return ready;
  };
  const subjects: SubjectRun[] = [];

  subjects.push({
    id: 'raw', how: `read the same ${fmtSize(bytes)} (a file written and fsynced just before, in the page cache like the journal) in 1 MiB reads and write it to a new file, one fdatasync`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p5-raw');
      const src = path.join(dir, 'journal.copy');
      prefillFile(src, bytes, 50);
      osSync();
      const t0 = now();
      const buf = Buffer.allocUnsafe(MiB);
      const ifd = fs.openSync(src, 'r');
      const ofd = fs.openSync(path.join(dir, 'data.bin'), 'w');
      for (let at = 0; ; ) {
        const got = fs.readSync(ifd, buf, 0, buf.length, at);
        if (got <= 0) break;
        writeAll(ofd, buf.subarray(0, got), at);
        at += got;
      }
      fs.fdatasyncSync(ofd);
      fs.closeSync(ifd);
      fs.closeSync(ofd);
      const ms = now() - t0;
      await rmrf(dir);
      return { m: sample(ms, ms) };
    },
  });
  for (const cp of ctx.cpfiles) subjects.push({
    id: cp.id, how: `a child writes ${fmtSize(bytes)} (check() every ${fmtSize(c.p5Checkpoint)}, applyThreshold 2^40, applyDelay 1 h, one journal segment, directAppendMin false so that every byte is journaled) and is SIGKILLed once its checks resolved; timed: openStore() (recovery replays everything into the file)`,
    async rep() {
      const dir = await freshDir(ctx.root, `p5-${cp.id}`);
      const ready = await crashWriter('cpfile', dir, cp.lib);
      const t0 = now();
      const store = await cp.open(dir);
      const ms = now() - t0;
      const rec = store.recovery;
      await store.close();
      const st = await fsp.stat(path.join(dir, 'data.bin'));
      if (st.size !== bytes) throw new Error(`recovered file has ${st.size} bytes, expected ${bytes}`);
      await rmrf(dir);
      return {
        m: sample(ms, ms),
        info: `replayed ${fmtSize(rec.replayedBytes)} in ${rec.replayedEpochs} epochs (${ready.info}); recovery.durationMs ${Math.round(rec.durationMs)}`,
      };
    },
  });
  subjects.push({ id: 'write-file-atomic', how: '', na: 'write-file-atomic keeps no log: there is nothing to recover' });
  subjects.push({
    id: 'sqlite', how: `a child inserts ${fmtSize(bytes)} (COMMIT every ${fmtSize(c.p5Checkpoint)}, wal_autocheckpoint=0 so it all stays in the WAL), SIGKILL; timed: open + SELECT count(*) ("usable"), then PRAGMA wal_checkpoint(TRUNCATE) ("applied")`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p5-sqlite');
      await crashWriter('sqlite', dir);
      const t0 = now();
      const db = openSqlite(dir);
      const row = db.prepare('SELECT count(*) AS n FROM t').get() as { n: number };
      const t1 = now();
      db.pragma('wal_checkpoint(TRUNCATE)');
      const t2 = now();
      db.close();
      await rmrf(dir);
      return { m: sample(t1 - t0, t2 - t0), info: `${row.n} rows` };
    },
  });
  subjects.push({
    id: 'lmdb', how: `a child puts ${fmtSize(bytes)} (a transaction every ${fmtSize(c.p5Checkpoint)}, awaiting db.flushed), SIGKILL; timed: open + get (lmdb has no log to replay)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p5-lmdb');
      await crashWriter('lmdb', dir);
      const t0 = now();
      const db = openLmdb(dir);
      const v = db.get(0);
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      if (!v) throw new Error('lmdb lost key 0');
      return { m: sample(ms, ms) };
    },
  });
  subjects.push({
    id: 'leveldb', how: `a child batch-puts ${fmtSize(bytes)} (batch.write({ sync: true }) every ${fmtSize(c.p5Checkpoint)}), SIGKILL; timed: open (replays the log into a table) + get`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p5-leveldb');
      await crashWriter('leveldb', dir);
      const t0 = now();
      const db = await openLevel(dir);
      const v = await db.get(levelKey(0));
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      if (!v) throw new Error('LevelDB lost key 0');
      return { m: sample(ms, ms) };
    },
  });
  return {
    id: 'P5', title: `P5 recovery of ${fmtSize(bytes)} committed but unapplied`,
    metrics: [
      { key: 'mbps', label: 'MB/s recovered', better: 'higher' },
      { key: 'usableS', label: 's to usable', better: 'lower' },
      { key: 'appliedS', label: 's to applied', better: 'lower' },
    ],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P6 memory

export function p6(ctx: Ctx): Workload {
  const c = ctx.config;
  const bytes = Math.ceil(c.p6Bytes / c.p6WriteSize) * c.p6WriteSize;
  const how: Partial<Record<SubjectId, string>> = {
    raw: `fs.writeSync(${fmtSize(c.p6WriteSize)}) appending, fs.fdatasyncSync at the end`,
    cpfile: `check(), ${fmtSize(bytes)} of awaited f.write(${fmtSize(c.p6WriteSize)}), check(); default options`,
    sqlite: `BEGIN, INSERT of ${fmtSize(c.p6WriteSize)} BLOBs, COMMIT`,
    lmdb: `one db.transaction() with every put, then await db.flushed (RSS includes the file pages lmdb maps)`,
    leveldb: `one chained batch with every put, batch.write({ sync: true })`,
  };
  const subjects: SubjectRun[] = [];
  const ids: SubjectId[] = ['raw', ...ctx.cpfiles.map((cp) => cp.id), 'write-file-atomic', 'sqlite', 'lmdb', 'leveldb'];
  for (const id of ids) {
    const lib = ctx.cpfiles.find((cp) => cp.id === id)?.lib ?? null;
    if (id === 'write-file-atomic') {
      subjects.push({ id, how: '', na: 'write-file-atomic takes the whole content in one buffer: its peak is the data size by construction' });
      continue;
    }
    subjects.push({
      id, how: `child process: ${how[id === 'cpfile-b' ? 'cpfile' : id]}; RSS sampled every 5 ms and after every 64 writes, plus the kernel's VmHWM, until the second checkpoint resolved ("peak incl. close": until the store or database is closed, for cpfile after applying the whole epoch)`,
      async rep() {
        const dir = await freshDir(ctx.root, `p6-${id}`);
        try {
          osSync();
          const r = await runChild<P6Result>(['p6', id === 'cpfile-b' ? 'cpfile' : id, dir, String(bytes), String(c.p6WriteSize)], { kill: false, lib });
          const peak = Math.max(r.sampledPeak, Number.isFinite(r.hwm) ? r.hwm : 0);
          return {
            m: { peakMiB: round(peak / MiB), closedMiB: round(Math.max(peak, r.hwmClosed) / MiB), baseMiB: round(r.base / MiB), mbps: round(mbps(bytes, r.ms)) },
            info: `sampled peak ${Math.round(r.sampledPeak / MiB)} MiB, VmHWM ${Math.round(r.hwm / MiB)} MiB${r.info ? `, ${r.info}` : ''}`,
          };
        } finally {
          await rmrf(dir);
        }
      },
    });
  }
  return {
    id: 'P6', title: `P6 memory: peak RSS while writing ${fmtSize(bytes)} between two checkpoints`,
    metrics: [
      { key: 'peakMiB', label: 'peak RSS MiB', better: 'lower' },
      { key: 'closedMiB', label: 'peak incl. close MiB', better: 'lower' },
      { key: 'baseMiB', label: 'RSS before MiB', better: 'lower' },
      { key: 'mbps', label: 'MB/s', better: 'higher' },
    ],
    subjects,
  };
}

// ------------------------------------------------------------------------------------------------
// P8 many small files

export function p8(ctx: Ctx): Workload {
  const c = ctx.config;
  const data = randomBuffer(c.p8FileSize, 8);
  const n = c.p8Files;
  const name = (i: number): string => `f${String(i).padStart(5, '0')}.dat`;
  const sample = (ms: number, extra: Sample = {}): Sample => ({ ms: round(ms), filesPerS: Math.round(n / (ms / 1000)), ...extra });
  const subjects: SubjectRun[] = [];

  subjects.push({
    id: 'raw', how: 'per file: open, fs.writeSync, fs.fsyncSync, close; one fsync of the directory at the end',
    async rep() {
      const dir = await freshDir(ctx.root, 'p8-raw');
      osSync();
      const t0 = now();
      for (let i = 0; i < n; i++) {
        const fd = fs.openSync(path.join(dir, name(i)), 'w');
        writeAll(fd, data, 0);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
      }
      fsyncDir(dir);
      const ms = now() - t0;
      await rmrf(dir);
      return { m: sample(ms) };
    },
  });
  for (const cp of ctx.cpfiles) subjects.push({
    id: cp.id, how: `await store.writeFile(name, ${fmtSize(c.p8FileSize)}) per file, one await store.check(); "applied" waits until the files exist on disk (background apply)`,
    async rep() {
      const dir = await freshDir(ctx.root, `p8-${cp.id}`);
      const store = await cp.open(dir);
      const before = store.stats();
      osSync();
      const t0 = now();
      for (let i = 0; i < n; i++) await store.writeFile(name(i), data);
      await store.check();
      const t1 = now();
      await waitApplied(store);
      const t2 = now();
      const info = cpInfo(store, before);
      await store.close();
      await rmrf(dir);
      return { m: sample(t1 - t0, { msApplied: round(t2 - t0) }), info };
    },
  });
  subjects.push({
    id: 'write-file-atomic', how: 'await writeFileAtomic(name, data) per file (temp file, fsync, rename; no directory fsync)',
    async rep() {
      const dir = await freshDir(ctx.root, 'p8-wfa');
      osSync();
      const t0 = now();
      for (let i = 0; i < n; i++) await writeFileAtomic(path.join(dir, name(i)), data);
      const ms = now() - t0;
      await rmrf(dir);
      return { m: sample(ms) };
    },
  });
  subjects.push({
    id: 'sqlite', how: `${n} rows of ${fmtSize(c.p8FileSize)} in one transaction (not files)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p8-sqlite');
      const db = openSqlite(dir);
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      osSync();
      const t0 = now();
      db.transaction(() => {
        for (let i = 0; i < n; i++) ins.run(i, data);
      })();
      const ms = now() - t0;
      db.close();
      await rmrf(dir);
      return { m: sample(ms) };
    },
  });
  subjects.push({
    id: 'lmdb', how: `${n} keys of ${fmtSize(c.p8FileSize)} in one db.transaction() + await db.flushed (not files)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p8-lmdb');
      const db = openLmdb(dir);
      osSync();
      const t0 = now();
      await db.transaction(() => {
        for (let i = 0; i < n; i++) void db.put(i, data);
      });
      await db.flushed;
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      return { m: sample(ms) };
    },
  });
  subjects.push({
    id: 'leveldb', how: `${n} keys of ${fmtSize(c.p8FileSize)} in one chained batch, write({ sync: true }) (not files)`,
    async rep() {
      const dir = await freshDir(ctx.root, 'p8-leveldb');
      const db = await openLevel(dir);
      osSync();
      const t0 = now();
      const b = db.batch();
      for (let i = 0; i < n; i++) b.put(levelKey(i), data);
      await b.write({ sync: true });
      const ms = now() - t0;
      await db.close();
      await rmrf(dir);
      return { m: sample(ms) };
    },
  });
  return {
    id: 'P8', title: `P8 many small files: ${n.toLocaleString('en-US')} files of ${fmtSize(c.p8FileSize)} made durable together`,
    metrics: [
      { key: 'ms', label: 'ms durable', better: 'lower' },
      { key: 'msApplied', label: 'ms applied', better: 'lower' },
      { key: 'filesPerS', label: 'files/s', better: 'higher' },
    ],
    subjects,
  };
}

export const P7_METRICS: MetricDef[] = [
  { key: 'elMax', label: 'max delay ms', better: 'lower' },
  { key: 'elP99', label: 'p99 delay ms', better: 'lower' },
];

export function workloads(ctx: Ctx): Partial<Record<WorkloadId, () => Workload>> {
  return { P1: () => p1(ctx), P2: () => p2(ctx), P3: () => p3(ctx), P4: () => p4(ctx), P5: () => p5(ctx), P6: () => p6(ctx), P8: () => p8(ctx) };
}
