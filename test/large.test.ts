// Large offsets (> 4 GiB, sparse) and bounded memory for large pending epochs.
import { open as fsOpen, stat as fsStat } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { Sandbox, type Store } from './helpers/sandbox.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

describe('large: positions above 4 GiB and bounded memory', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  let dir: string;
  let store: Store;

  beforeEach(async function () {
    dir = await sb.dir();
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  it('a 1 KiB write at 5 GiB reads back before and after check and after reopen, with the right size', async function () {
    store = await sb.open(dir);
    const pos = 5 * GiB;
    const data = Buffer.alloc(1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;

    const f = await store.open('big.bin', 'w+');
    const w = await f.write(data, 0, data.length, pos);
    expect(w.bytesWritten).to.equal(1024);
    expect(f.tell()).to.equal(0);
    expect((await f.stat()).size).to.equal(pos + 1024);
    expect(f.seek(0, 'end')).to.equal(pos + 1024);

    const back = Buffer.alloc(1024);
    expect((await f.read(back, 0, 1024, pos)).bytesRead).to.equal(1024);
    expect(back.equals(data), 'pending read at 5 GiB').to.equal(true);
    // a read that straddles 4 GiB inside the hole sees zeros
    const hole = Buffer.alloc(4096, 0xee);
    expect((await f.read(hole, 0, 4096, 4 * GiB - 2048)).bytesRead).to.equal(4096);
    expect(hole.every((b) => b === 0), 'hole reads as zeros').to.equal(true);

    await store.check();
    back.fill(0);
    expect((await f.read(back, 0, 1024, pos)).bytesRead).to.equal(1024);
    expect(back.equals(data), 'read after check').to.equal(true);
    // a second write just past 4 GiB, then a read spanning both sides of the 4 GiB line
    const edge = Buffer.from('EDGE');
    await f.write(edge, 0, 4, 4 * GiB - 2);
    const span = Buffer.alloc(4);
    await f.read(span, 0, 4, 4 * GiB - 2);
    expect(span.toString()).to.equal('EDGE');
    await f.close();
    await store.close();

    const st = await fsStat(path.join(dir, 'big.bin'));
    expect(st.size).to.equal(pos + 1024);
    const fh = await fsOpen(path.join(dir, 'big.bin'), 'r');
    try {
      const disk = Buffer.alloc(1024);
      await fh.read(disk, 0, 1024, pos);
      expect(disk.equals(data), 'on-disk bytes at 5 GiB').to.equal(true);
      const diskEdge = Buffer.alloc(4);
      await fh.read(diskEdge, 0, 4, 4 * GiB - 2);
      expect(diskEdge.toString()).to.equal('EDGE');
    } finally {
      await fh.close();
    }
    // sparse: far fewer blocks than the apparent size
    expect(st.blocks * 512).to.be.lessThan(64 * MiB);

    store = await sb.open(dir);
    const g = await store.open('big.bin', 'r');
    expect((await g.stat()).size).to.equal(pos + 1024);
    back.fill(0);
    expect((await g.read(back, 0, 1024, pos)).bytesRead).to.equal(1024);
    expect(back.equals(data), 'read after reopen').to.equal(true);
    await g.close();
  });

  it('a single write larger than a journal segment is accepted and reads back (1 MiB segments, 3 MiB write)', async function () {
    store = await sb.open(dir, { segmentSize: MiB });
    const f = await store.open('wide.bin', 'w+');
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32BE(i >>> 2, i);
    const w = await f.write(data);
    expect(w.bytesWritten).to.equal(data.length);
    const back = Buffer.alloc(data.length);
    expect((await f.read(back, 0, back.length, 0)).bytesRead).to.equal(data.length);
    expect(back.equals(data), 'pending read').to.equal(true);
    await store.check();
    await f.close();
    await store.close();
    const fh = await fsOpen(path.join(dir, 'wide.bin'), 'r');
    try {
      const disk = Buffer.alloc(data.length);
      await fh.read(disk, 0, disk.length, 0);
      expect(disk.equals(data), 'on disk').to.equal(true);
    } finally {
      await fh.close();
    }
  });

  it('truncate and seek work with sizes above 4 GiB', async function () {
    store = await sb.open(dir);
    const f = await store.open('t.bin', 'w+');
    await f.truncate(6 * GiB);
    expect((await f.stat()).size).to.equal(6 * GiB);
    expect(f.seek(-1, 'end')).to.equal(6 * GiB - 1);
    await f.write('Z');
    expect(f.tell()).to.equal(6 * GiB);
    await f.truncate(4 * GiB + 1);
    expect((await f.stat()).size).to.equal(4 * GiB + 1);
    await f.close();
    await store.close();
    expect((await fsStat(path.join(dir, 't.bin'))).size).to.equal(4 * GiB + 1);
  });

  it('2 GiB written in 1 MiB writes between two checks keeps RSS growth under 150 MiB and stays readable', async function () {
    store = await sb.open(dir, { segmentSize: 8 * MiB });
    const f = await store.open('stream.bin', 'w+');
    await f.write('warm-up');
    await store.check();
    f.seek(0);

    const N = 2048;
    const fillOf = (i: number) => (i * 7 + 1) & 0xff;
    const chunk = Buffer.alloc(MiB);
    const base = process.memoryUsage().rss;
    let peak = base;
    for (let i = 0; i < N; i++) {
      chunk.fill(fillOf(i));
      chunk.writeUInt32BE(i, 0);
      await f.write(chunk);
      if ((i & 7) === 7) peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(f.tell()).to.equal(N * MiB);
    expect((await f.stat()).size).to.equal(N * MiB);

    // pending data from the middle is readable before the second check
    const probe = Buffer.alloc(64 * 1024);
    for (const i of [1, 777, 1024, 1500, 2047]) {
      const r = await f.read(probe, 0, probe.length, i * MiB + 4096);
      expect(r.bytesRead).to.equal(probe.length);
      expect(probe.every((b) => b === fillOf(i)), `chunk ${i} content`).to.equal(true);
      const head = Buffer.alloc(4);
      await f.read(head, 0, 4, i * MiB);
      expect(head.readUInt32BE(0), `chunk ${i} header`).to.equal(i);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    await store.check();
    peak = Math.max(peak, process.memoryUsage().rss);
    const growthMiB = (peak - base) / MiB;
    expect(growthMiB, `RSS growth ${growthMiB.toFixed(1)} MiB`).to.be.lessThan(150);

    // still readable after the check and on disk after close
    const head = Buffer.alloc(4);
    await f.read(head, 0, 4, 1300 * MiB);
    expect(head.readUInt32BE(0)).to.equal(1300);
    await f.close();
    await store.close();
    expect((await fsStat(path.join(dir, 'stream.bin'))).size).to.equal(N * MiB);
    const fh = await fsOpen(path.join(dir, 'stream.bin'), 'r');
    try {
      for (const i of [0, 999, 2047]) {
        await fh.read(probe, 0, probe.length, i * MiB + 100);
        expect(probe.every((b) => b === fillOf(i)), `disk chunk ${i}`).to.equal(true);
      }
    } finally {
      await fh.close();
    }
  });
});
