// Child-process entry of the benchmark (spawned by child-api.ts; not meant to be run by hand).
//
//   node dist/tools/bench/child.js p5 SUBJECT DIR BYTES WRITESIZE CHECKPOINT
//       write BYTES with a durable checkpoint every CHECKPOINT, report, then wait to be SIGKILLed
//   node dist/tools/bench/child.js p6 SUBJECT DIR BYTES WRITESIZE
//       write BYTES between two checkpoints while sampling RSS, report the peak, exit
import * as fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as thisBuild from '../../lib/index.js';
import type { SubjectId } from './config.js';
import type { P5Ready, P6Result } from './child-api.js';
import { openLevel, openLmdb, openSqlite, levelKey } from './peers.js';
import { MiB, errorText, fmtSize, now, peakRss, randomBuffer } from './util.js';

/** The cpfile build to use: this checkout, or the one the parent named (--lib-b). */
const lib: typeof thisBuild = process.env.CPFILE_BENCH_LIB
  ? ((await import(pathToFileURL(process.env.CPFILE_BENCH_LIB).href)) as typeof thisBuild)
  : thisBuild;
const openStore = lib.openStore;

function send(value: unknown): Promise<void> {
  return new Promise((resolve) => process.send!({ ok: true, value }, () => resolve()));
}

/** A journal segment big enough to hold everything: crossing a segment would start an apply. */
function oneSegment(bytes: number): number {
  let s = 64 * MiB;
  while (s < bytes * 1.01 + 4 * MiB) s *= 2;
  if (s > 2 ** 31) throw new Error(`P5 for cpfile holds at most ~2 GiB in one journal segment (asked ${fmtSize(bytes)})`);
  return s;
}

async function p5(subject: SubjectId, dir: string, bytes: number, writeSize: number, checkpoint: number): Promise<void> {
  const data = randomBuffer(writeSize, 5);
  const writes = Math.ceil(bytes / writeSize);
  const per = Math.max(1, Math.round(checkpoint / writeSize));
  let info = '';
  switch (subject) {
    case 'cpfile': {
      // directAppendMin false: P5 measures replaying a journal, so every byte must go through it.
      const store = await openStore(dir, { applyThreshold: 2 ** 40, applyDelay: 3600 * 1000, segmentSize: oneSegment(bytes), directAppendMin: false });
      const f = await store.open('data.bin', 'w');
      for (let i = 0; i < writes; i++) {
        await f.write(data);
        if ((i + 1) % per === 0 || i === writes - 1) await store.check();
      }
      const s = store.stats();
      if (s.appliedEpoch !== 0 || s.applyLag.bytes < bytes) throw new Error(`the writer applied epochs (appliedEpoch ${s.appliedEpoch}, lag ${s.applyLag.bytes})`);
      info = `${s.applyLag.epochs} epochs, ${fmtSize(s.applyLag.bytes)} of journal unapplied at the kill`;
      break;
    }
    case 'sqlite': {
      const db = openSqlite(dir);
      db.pragma('wal_autocheckpoint = 0');
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      db.exec('BEGIN');
      for (let i = 0; i < writes; i++) {
        ins.run(i, data);
        if ((i + 1) % per === 0 || i === writes - 1) db.exec(i === writes - 1 ? 'COMMIT' : 'COMMIT; BEGIN');
      }
      break;
    }
    case 'lmdb': {
      const db = openLmdb(dir);
      for (let i = 0; i < writes; i += per) {
        const end = Math.min(writes, i + per);
        await db.transaction(() => {
          for (let k = i; k < end; k++) void db.put(k, data);
        });
        await db.flushed;
      }
      break;
    }
    case 'leveldb': {
      const db = await openLevel(dir);
      let b = db.batch();
      for (let i = 0; i < writes; i++) {
        b.put(levelKey(i), data);
        if ((i + 1) % per === 0 || i === writes - 1) {
          await b.write({ sync: true });
          b = db.batch();
        }
      }
      break;
    }
    default:
      throw new Error(`no P5 writer for ${subject}`);
  }
  await send({ ready: true, info } satisfies P5Ready);
  // Stay alive (store open, nothing closed) until the parent's SIGKILL.
  setInterval(() => undefined, 1000);
}

async function p6(subject: SubjectId, dir: string, bytes: number, writeSize: number): Promise<void> {
  const data = randomBuffer(writeSize, 6);
  const writes = Math.ceil(bytes / writeSize);
  let peak = 0;
  const sample = (): void => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  };
  const timer = setInterval(sample, 5);
  let info = '';
  let base = 0;
  let t0 = 0;
  let ms = 0;
  let atCheck = { sampled: 0, hwm: NaN };
  /** The second checkpoint resolved: the figures P6 is about. */
  const checkpointed = (): void => {
    ms = now() - t0;
    sample();
    atCheck = { sampled: peak, hwm: peakRss() };
  };
  const start = (): void => {
    sample();
    base = process.memoryUsage.rss();
    t0 = now();
  };
  switch (subject) {
    case 'raw': {
      const fd = fs.openSync(path.join(dir, 'big.dat'), 'w');
      start();
      for (let i = 0; i < writes; i++) {
        fs.writeSync(fd, data);
        if ((i & 63) === 63) sample();
      }
      fs.fdatasyncSync(fd);
      checkpointed();
      fs.closeSync(fd);
      break;
    }
    case 'cpfile': {
      const store = await openStore(dir);
      const f = await store.open('big.dat', 'w');
      await store.check();
      start();
      for (let i = 0; i < writes; i++) {
        await f.write(data);
        if ((i & 63) === 63) sample();
      }
      await store.check();
      checkpointed();
      const s = store.stats();
      info = `${s.fsyncs} fsyncs, ${s.batches} batches`;
      await store.close();
      break;
    }
    case 'sqlite': {
      const db = openSqlite(dir);
      const ins = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
      start();
      db.exec('BEGIN');
      for (let i = 0; i < writes; i++) {
        ins.run(i, data);
        if ((i & 63) === 63) sample();
      }
      db.exec('COMMIT');
      checkpointed();
      db.close();
      break;
    }
    case 'lmdb': {
      const db = openLmdb(dir);
      start();
      await db.transaction(() => {
        for (let i = 0; i < writes; i++) {
          void db.put(i, data);
          if ((i & 63) === 63) sample();
        }
      });
      await db.flushed;
      checkpointed();
      await db.close();
      break;
    }
    case 'leveldb': {
      const db = await openLevel(dir);
      start();
      const b = db.batch();
      for (let i = 0; i < writes; i++) {
        b.put(levelKey(i), data);
        if ((i & 63) === 63) sample();
      }
      await b.write({ sync: true });
      checkpointed();
      await db.close();
      break;
    }
    default:
      throw new Error(`no P6 probe for ${subject}`);
  }
  sample();
  clearInterval(timer);
  const end = peakRss();
  await send({ sampledPeak: atCheck.sampled, hwm: atCheck.hwm, hwmClosed: Number.isFinite(end) ? end : peak, base, ms, info } satisfies P6Result);
  process.exit(0);
}

async function main(): Promise<void> {
  const [mode, subject, dir, ...rest] = process.argv.slice(2);
  const nums = rest.map(Number);
  if (mode === 'p5') await p5(subject as SubjectId, dir!, nums[0]!, nums[1]!, nums[2]!);
  else if (mode === 'p6') await p6(subject as SubjectId, dir!, nums[0]!, nums[1]!);
  else throw new Error(`unknown child mode ${mode}`);
}

if (!process.send) {
  console.error('tools/bench/child.js is started by the benchmark (npm run bench), not by hand');
  process.exit(2);
}
main().catch((e: unknown) => {
  process.send!({ ok: false, error: errorText(e) }, () => process.exit(1));
});
