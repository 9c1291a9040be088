/**
 * Stages (lib/journal/batch-buffers.ts, STAGE_BELOW): a batch of records or of direct appends begun
 * by a small write is laid out in a plain buffer kept on the main thread and copied once into a
 * sendable buffer when it is queued. These tests pin what that must keep: the bytes sent are exactly
 * the bytes laid out, whichever buffer a batch began in and whatever sizes follow; a stage is reused
 * (at most one per role, so memory stays bounded); and a store fed every mix of sizes around the
 * threshold, on both paths (journal and direct), reads back and recovers the same bytes.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type Store } from '../lib/index.js';
import { BatchBuffers, STAGE_BELOW } from '../lib/journal/batch-buffers.js';
import { Sandbox } from './helpers/sandbox.js';
import { crash } from './helpers/journal.js';

const KiB = 1024;

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x;
  };
}

function bytes(next: () => number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = next() & 0xff;
  return b;
}

const stagesOf = (store: Store): number =>
  ((store as unknown as { writer: { buffers: { stageDirty: Map<Buffer, number> } } }).writer.buffers.stageDirty).size;

describe('batch stages', function () {
  this.timeout(60_000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('sendStage copies exactly the bytes laid out: a right-sized plain buffer when few, a full-size shared one when many; the stage is reused and zeroed on request', () => {
    const batch = 64 * KiB;
    const bb = new BatchBuffers(batch, 4 * batch);
    const st = bb.takeStage(true);
    expect(bb.isStage(st)).to.equal(true);
    expect(st.length).to.equal(batch);
    const next = rng(7);
    const few = bytes(next, 1000);
    few.copy(st, 0);
    const out1 = bb.sendStage(st, few.length);
    expect(out1.equals(few)).to.equal(true);
    expect(out1.buffer).to.be.instanceOf(ArrayBuffer);
    expect(out1.buffer.byteLength, 'right-sized').to.equal(few.length);
    // The same stage comes back, zeroed where it held old bytes.
    const again = bb.takeStage(true);
    expect(again).to.equal(st);
    expect(again.subarray(0, few.length).every((b) => b === 0)).to.equal(true);
    const many = bytes(next, batch - 8);
    many.copy(again, 0);
    const out2 = bb.sendStage(again, many.length);
    expect(out2.equals(many)).to.equal(true);
    expect(out2.buffer).to.be.instanceOf(SharedArrayBuffer);
    expect(bb.isStage(out2), 'what is sent is never a stage').to.equal(false);
    // Not zeroed on request (direct appends overwrite every byte they send): the old bytes are still there.
    const dirty = bb.takeStage(false);
    expect(dirty.subarray(0, many.length).equals(many)).to.equal(true);
    bb.returnStage(dirty, 0);
    // Buffers that are not stages are never taken for one.
    expect(bb.isStage(bb.takeFull())).to.equal(false);
    expect(bb.isStage(bb.take(batch))).to.equal(false);
  });

  it('a stage that went from one role to the other is zeroed as far as either wrote', () => {
    const bb = new BatchBuffers(8 * KiB);
    const st = bb.takeStage(true);
    st.fill(0xcc, 0, 3000); // the record batch wrote 3000 bytes
    bb.returnStage(st, 3000);
    const d = bb.takeStage(false); // the direct appends take it without zeroing, write 100
    expect(d).to.equal(st);
    d.fill(0xdd, 0, 100);
    bb.returnStage(d, 100);
    const z = bb.takeStage(true);
    expect(z).to.equal(st);
    expect(z.every((b) => b === 0), 'every byte either role wrote is zeroed').to.equal(true);
  });

  // batchBytes 4100: not a multiple of 8 (a chunk used to fill to its last byte, and its padding threw
  // from the flush timer, killing the process).
  for (const [inline, batchBytes] of [[true, 16 * KiB], [false, 16 * KiB], [false, 4100], [true, 4100]] as const) {
    it(`every mix of write sizes around the threshold (${STAGE_BELOW} B), journaled and direct, reads back and recovers the same bytes; at most two stages are made (${inline ? 'inline flusher' : 'worker flusher'}, batchBytes ${batchBytes})`, async () => {
      const dir = await sb.dir();
      // Small batches and a low directAppendMin: many batches begin in a stage, on both paths. noLock:
      // the crash below leaves this process's lock held, as a killed process's would be stale.
      const opts = { segmentSize: 1 << 20, batchBytes, directAppendMin: 8 * KiB, inline, noLock: true };
      const store = sb.track(await openStore(dir, opts));
      const next = rng(inline ? 11 : 12);
      const sizes = [1, 7, 100, STAGE_BELOW - 1, STAGE_BELOW, STAGE_BELOW + 1, 3000, 16 * KiB - 1, 16 * KiB, 40 * KiB];
      const models = new Map<string, Buffer>();
      const names = ['a', 'b'];
      for (const n of names) {
        const f = await store.open(n, 'w');
        await f.close();
        models.set(n, Buffer.alloc(0));
      }
      await store.check();
      const handles = new Map(await Promise.all(names.map(async (n) => [n, await store.open(n, 'r+')] as const)));
      let checked = new Map(models);
      for (let epoch = 0; epoch < 12; epoch++) {
        for (let i = 0; i < 60; i++) {
          const n = names[next() % names.length]!;
          const f = handles.get(n)!;
          const model = models.get(n)!;
          const len = sizes[next() % sizes.length]!;
          const data = bytes(next, len);
          // Mostly appends (direct once an epoch's appends reach directAppendMin), some overwrites (journaled).
          const at = model.length > 0 && next() % 5 === 0 ? next() % model.length : model.length;
          if (at === model.length && next() % 2 === 0) {
            // write(buffer): at the handle's position, which follows this loop's appends to the file.
            f.seek(at);
            await f.write(data);
          } else {
            await f.write(data, 0, len, at);
          }
          const grown = Buffer.alloc(Math.max(model.length, at + len));
          model.copy(grown, 0);
          data.copy(grown, at);
          models.set(n, grown);
          // A caller may reuse its buffer once the write settled.
          data.fill(0xee);
        }
        for (const n of names) {
          const got = await store.readFile(n);
          expect(got.equals(models.get(n)!), `epoch ${epoch}: ${n} reads back`).to.equal(true);
        }
        await store.check();
        checked = new Map(models);
      }
      expect(store.stats().bytesDirect, 'some appends went direct').to.be.greaterThan(0);
      expect(stagesOf(store), 'a stage per role at most').to.be.at.most(2);
      expect(stagesOf(store), 'stages were used').to.be.at.least(1);
      // Uncommitted writes after the last check, then a crash: recovery gives the checked bytes.
      await handles.get('a')!.write(bytes(next, 500), 0, 500, 0);
      await crash(store);
      const re = sb.track(await openStore(dir, opts));
      for (const n of names) {
        expect((await re.readFile(n)).equals(checked.get(n)!), `${n} after recovery`).to.equal(true);
      }
      await re.close();
      for (const n of names) expect(fs.readFileSync(path.join(dir, n)).equals(checked.get(n)!), `${n} on disk`).to.equal(true);
    });
  }
});
