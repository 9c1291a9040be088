// Small commits stay out of unallocated journal blocks: the flusher writes zeros ahead of them in a
// segment file that was created sparse (an fdatasync after writing into unallocated blocks also
// commits their allocation). It never writes below what was written before, and big tasks skip it.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type IO, type StoreOptions } from '../lib/index.js';
import { MARK_OFFSET, MARK_SIZE } from '../lib/format.js';
import { interceptIO } from './helpers/intercept-io.js';
import { Sandbox } from './helpers/sandbox.js';

interface SegWrite { pos: number; len: number; zeros: boolean }

/** nodeIO recording every write to a journal segment file: where, how long, all zeros or not. */
function recorder(log: SegWrite[]): IO {
  const seg = new Set<number>();
  return interceptIO(async (call, args, next) => {
    const r = await next();
    if (call === 'open') {
      if (/seg-\d+\.cpj$/.test(args[0] as string)) seg.add(r as number);
      else seg.delete(r as number);
    } else if (call === 'write' && seg.has(args[0] as number)) {
      const [, buf, off, len, pos] = args as [number, Uint8Array, number, number, number];
      // (a raise of the segment's high-water mark, FORMAT.md R19, writes in the header area: not a record)
      if (pos === MARK_OFFSET && len === MARK_SIZE) return r;
      log.push({ pos, len, zeros: buf.subarray(off, off + len).every((b) => b === 0) });
    }
    return r;
  });
}

/** Committed epochs stay in the journal: only the prefill and the records write to it. */
const HELD = { noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 } as const;

/** A store recording its journal writes, after `n` commits of one write each (`data(i)`) to `name`. */
async function recordCommits(dir: string, name: string, mode: 'a' | 'w', n: number, data: (i: number) => Buffer | string, extra: StoreOptions = {}) {
  const log: SegWrite[] = [];
  const s = await openStore(dir, { ...HELD, ...extra, io: recorder(log) });
  const f = await s.open(name, mode);
  log.length = 0;
  for (let i = 0; i < n; i++) {
    await f.write(data(i));
    await s.check();
  }
  return { log, s, f };
}

describe('journal prefill of sparse segments', () => {
  const sb = new Sandbox();
  after(() => sb.cleanup());

  it('a small commit in a new store pre-writes zeros ahead of its records, 4 MiB at a time, never below them', async () => {
    // 700 commits of 4 KiB journal 2.9 MiB: one prefill (with 1 MiB ahead, one commit in 250 paid for
    // a prefill's fdatasync, enough to set P1's p99)
    const n = 700;
    const dir = await sb.dir();
    const { log, s, f } = await recordCommits(dir, 'a.log', 'a', n, (i) => Buffer.alloc(4096, 1 + (i % 200)));
    const zeroWrites = log.filter((w) => w.zeros && w.len >= 1024 * 1024);
    expect(zeroWrites.length, `one prefill for ${n} small commits`).to.equal(1);
    expect(zeroWrites[0].len, 'the prefill reaches 4 MiB ahead').to.be.at.least(4 * 1024 * 1024);
    // everything else is records, written at increasing offsets, none of them below the prefill's start
    const data = log.filter((w) => !w.zeros);
    expect(data.length).to.be.at.least(n);
    for (let i = 1; i < data.length; i++) expect(data[i].pos, `record write ${i}`).to.be.greaterThan(data[i - 1].pos);
    expect(data[0].pos).to.be.at.least(zeroWrites[0].pos);
    await f.close();
    await s.close();
    const r = await openStore(dir, { noLock: true });
    expect((await r.readFile('a.log')).length).to.equal(n * 4096);
    await r.close();
  });

  it('big commits (more than 256 KiB since the last sync) allocate their blocks by writing them: no prefill', async () => {
    const dir = await sb.dir();
    const { log, s, f } = await recordCommits(dir, 'big.bin', 'w', 4, () => Buffer.alloc(1024 * 1024, 7));
    expect(log.filter((w) => w.zeros && w.len >= 1024 * 1024)).to.have.length(0);
    await f.close();
    await s.close();
  });

  it('a recycled segment (every block written before) gets no prefill', async () => {
    const dir = await sb.dir();
    // 1 MiB segments: fill and apply a few so that later segments are recycled files
    const s0 = await openStore(dir, { noLock: true, segmentSize: 1024 * 1024, applyDelay: 0 });
    const g = await s0.open('fill.bin', 'w');
    for (let i = 0; i < 24; i++) {
      await g.write(Buffer.alloc(256 * 1024, 3));
      await s0.check();
    }
    await g.close();
    await s0.close();
    const segs = fs.readdirSync(path.join(dir, '.cpfile', 'journal')).filter((n) => n.endsWith('.cpj'));
    expect(segs.length, 'several segment files to recycle').to.be.greaterThan(1);
    const { log, s, f } = await recordCommits(dir, 'small.log', 'a', 10, () => 'x'.repeat(100), { segmentSize: 1024 * 1024 });
    expect(log.filter((w) => w.zeros && w.len >= 64 * 1024), 'no prefill in a recycled segment').to.have.length(0);
    await f.close();
    await s.close();
  });
});
