// A background apply runs in slices of about StoreOptions.applySlice bytes of journal (default 1 MiB), each ending at a COMMIT,
// so that a commit sent while it runs waits for one slice, not for the whole lag. An apply on demand
// (close, rollback) is one task. Every slice leaves the files and the cursor as a whole apply would.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type AppliedEvent } from '../lib/index.js';
import { DEFAULT_APPLY_SLICE as APPLY_SLICE_BYTES } from '../lib/store/options.js';
import { Sandbox, expectCpError, sleep } from './helpers/sandbox.js';

const KIB4 = 4096;

describe('background apply in slices', function () {
  this.timeout(120000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('a lag of several slices is applied by several tasks, commits run between them, and the files end up whole', async () => {
    const dir = await sb.dir();
    const threshold = 3 * APPLY_SLICE_BYTES;
    const s = await openStore(dir, { noLock: true, applyDelay: 3600_000, applyThreshold: threshold });
    const order: string[] = [];
    const applied: AppliedEvent[] = [];
    s.on('checkpoint', (e) => order.push(`c${e.epoch}`));
    s.on('applied', (e) => {
      applied.push(e);
      order.push(`a${e.epoch}`);
    });
    const f = await s.open('log', 'a');
    const expected: Buffer[] = [];
    // Up to the threshold, then on until the background apply it started has finished.
    let i = 0;
    for (; i < 5000; i++) {
      const b = Buffer.alloc(KIB4, 1 + (i % 250));
      expected.push(b);
      await f.write(b);
      await s.check();
      if (applied.length > 0 && s.stats().applyLag.bytes < APPLY_SLICE_BYTES) break;
    }
    expect(i, 'the background apply finished while commits went on').to.be.below(5000);
    expect(applied.length, 'slices of one background apply').to.be.at.least(3);
    // each slice but the last covers at least a slice of journal (of which 4 KiB in each 4.2 KiB epoch is data)
    for (const a of applied.slice(0, -1)) expect(a.bytes).to.be.at.least(0.9 * APPLY_SLICE_BYTES);
    for (const a of applied) expect(a.bytes).to.be.below(APPLY_SLICE_BYTES + 2 * KIB4);
    const epochs = applied.map((a) => a.epoch);
    expect(epochs).to.deep.equal([...epochs].sort((x, y) => x - y));
    // a commit made durable between the first slice and the last one
    const first = order.indexOf(`a${applied[0].epoch}`);
    const last = order.indexOf(`a${applied.at(-1)!.epoch}`);
    expect(order.slice(first, last).some((x) => x.startsWith('c')), order.slice(first, last + 1).join(' ')).to.equal(true);
    // what the slices applied is in the file now (the rest is still in the journal)
    const onDisk = fs.readFileSync(path.join(dir, 'log'));
    expect(onDisk.length).to.be.at.least(applied.at(-1)!.epoch * KIB4 - 2 * KIB4);
    expect(onDisk.equals(Buffer.concat(expected).subarray(0, onDisk.length))).to.equal(true);
    await s.close();
    expect(fs.readFileSync(path.join(dir, 'log')).equals(Buffer.concat(expected))).to.equal(true);
  });

  it('close applies the whole lag in one task', async () => {
    const dir = await sb.dir();
    const s = await openStore(dir, { noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    const applied: AppliedEvent[] = [];
    s.on('applied', (e) => applied.push(e));
    const f = await s.open('log', 'a');
    const n = Math.ceil((3 * APPLY_SLICE_BYTES) / KIB4);
    for (let i = 0; i < n; i++) {
      await f.write(Buffer.alloc(KIB4, 1 + (i % 250)));
      await s.check();
    }
    expect(applied).to.have.length(0);
    await s.close();
    expect(applied).to.have.length(1);
    expect(applied[0].bytes).to.be.at.least(n * KIB4);
    expect(fs.statSync(path.join(dir, 'log')).size).to.equal(n * KIB4);
  });

  it('a store reopened after background slices holds every epoch once (no slice is applied twice in effect)', async () => {
    const dir = await sb.dir();
    const s = await openStore(dir, { noLock: true, applyDelay: 0, applyThreshold: APPLY_SLICE_BYTES });
    const f = await s.open('data', 'w');
    // overwrites of the same 64 KiB: a slice applied twice, or out of order, would leave old bytes
    for (let i = 0; i < 1200; i++) {
      await f.seek((i * KIB4) % (64 * 1024));
      await f.write(Buffer.alloc(KIB4, 1 + (i % 250)));
      await s.check();
    }
    await s.close();
    const s2 = await openStore(dir, { noLock: true });
    const want = Buffer.alloc(64 * 1024);
    for (let i = 1200 - 16; i < 1200; i++) want.fill(1 + (i % 250), (i * KIB4) % (64 * 1024), ((i * KIB4) % (64 * 1024)) + KIB4);
    expect((await s2.readFile('data')).equals(want)).to.equal(true);
    await s2.close();
  });

  it('applySlice sets the slice: 1 byte applies one epoch per task, in order; bad values are EINVAL at openStore', async () => {
    const dir = await sb.dir();
    const s = await openStore(dir, { noLock: true, inline: true, applyDelay: 3600_000, applyThreshold: 3 * KIB4, applySlice: 1 });
    const applied: AppliedEvent[] = [];
    s.on('applied', (e) => applied.push(e));
    const f = await s.open('log', 'a');
    for (let i = 0; i < 12; i++) {
      await f.write(Buffer.alloc(KIB4, 1 + i));
      await s.check();
    }
    // Background applies start whenever the lag reaches the threshold (3 epochs of 4 KiB); once it is
    // below it, at least 10 of the 12 epochs are applied, each by a slice of its own.
    for (let t = 0; t < 1000 && s.stats().applyLag.bytes >= 3 * KIB4; t++) await sleep(10);
    expect(s.stats().applyLag.bytes).to.be.below(3 * KIB4);
    expect(applied.length).to.be.at.least(10);
    expect(applied.map((a) => a.epoch)).to.deep.equal(Array.from({ length: applied.length }, (_, i) => applied[0].epoch + i));
    for (const a of applied) expect(a.bytes).to.equal(KIB4);
    await s.close();
    expect(fs.statSync(path.join(dir, 'log')).size).to.equal(12 * KIB4);
    for (const bad of [0, -1, 1.5, 2 ** 41, '1m', null]) {
      const e = await expectCpError(() => openStore(dir, { noLock: true, applySlice: bad as never }), 'EINVAL');
      expect(e.message).to.match(/^option applySlice must be an integer from 1 to \d+, got /);
    }
  });
});
