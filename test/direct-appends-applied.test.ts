/**
 * Direct appends for a file listed open by the last COMMIT only, once the epoch that began listing it
 * is applied (FORMAT.md "Direct appends"): damage to COMMITs after the applied epoch, truncates in
 * between, and entries recovered by a reopen. Written by an independent review of the rule; each test
 * fails if recovery could end where the catalog does not list the file, or cut it to a wrong size.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type Store, type CpFile } from '../lib/index.js';
import { RecordType, segmentFileName } from '../lib/format.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { crash, records } from './helpers/journal.js';

function block(seed: number, i: number, len: number): Buffer {
  const b = Buffer.alloc(Math.ceil(len / 4) * 4);
  let x = (seed * 2654435761 + i * 40503 + 1) >>> 0;
  for (let k = 0; k < len; k += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, k);
  }
  return b.subarray(0, len);
}

const HELD = { inline: true, noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, directAppendMin: 1 } as const;

/** Apply every durable epoch now and let the overlays settle. */
async function applyAll(store: Store): Promise<void> {
  await (store as unknown as { applyNow(inQueue: boolean): Promise<void> }).applyNow(false);
  await store.readFile('no-such-file').catch(() => undefined);
}

/** Zero the COMMIT (or CATALOG) records of the given epochs in `dir`'s journal. */
async function zeroRecords(dir: string, type: RecordType, epochs: number[]): Promise<void> {
  const recs = await records(dir);
  for (const e of epochs) {
    const r = recs.filter((x) => x.header.type === type && x.header.epoch === e).pop();
    if (!r) throw new Error(`no record of type ${type} epoch ${e}`);
    const fd = fs.openSync(path.join(dir, '.cpfile', 'journal', segmentFileName(r.index)), 'r+');
    fs.writeSync(fd, Buffer.alloc(r.size), 0, r.size, r.offset);
    fs.closeSync(fd);
  }
}

async function flushed(f: CpFile, at: number): Promise<void> {
  await f.read(Buffer.alloc(1), 0, 1, at); // waits for the flusher to have written the direct bytes
}

describe('direct appends for a file listed by one COMMIT, since an applied epoch', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  /** `n` created with 70000 bytes in epoch 1, checked and applied (control file applied = 1). */
  async function created(): Promise<{ dir: string; store: Store; f: CpFile; first: Buffer }> {
    const dir = await sb.dir();
    const store = await openStore(dir, HELD);
    const f = await store.open('n', 'w+');
    const first = block(41, 0, 70000);
    await f.write(first);
    expect(await store.check()).to.equal(1);
    await applyAll(store);
    expect(store.stats().appliedEpoch).to.equal(1);
    return { dir, store, f, first };
  }

  it('epoch 2 direct and checked but unapplied, epoch 3 direct and uncommitted: a torn-looking COMMIT 2 rolls back to 1 and cuts both epochs off', async () => {
    const { dir, store, f, first } = await created();
    const m2 = block(41, 2, 50000);
    await f.write(m2);
    expect(store.stats().bytesDirect).to.equal(50000);
    expect(await store.check()).to.equal(2);
    const m3 = block(41, 3, 40000);
    await f.write(m3);
    expect(store.stats().bytesDirect).to.equal(90000);
    await flushed(f, 150000);
    await crash(store);
    expect(fs.statSync(path.join(dir, 'n')).size).to.equal(160000);
    const copy = await sb.dir();
    fs.cpSync(dir, copy, { recursive: true });
    // undamaged: epoch 2
    const a = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(a.recovery.epoch).to.equal(2);
    expect(fs.readFileSync(path.join(dir, 'n')).equals(Buffer.concat([first, m2]))).to.equal(true);
    await a.close();
    // COMMIT 2 zeroed (looks torn; epoch 2 not applied): back to epoch 1, n cut back to 70000
    await zeroRecords(copy, RecordType.COMMIT, [2]);
    const b = sb.track(await openStore(copy, { inline: true, noLock: true }));
    expect(b.recovery.epoch).to.equal(1);
    expect(fs.readFileSync(path.join(copy, 'n')).equals(first)).to.equal(true);
    await b.close();
  });

  it('two unapplied direct epochs whose COMMITs are both lost: back to the applied epoch, every direct byte cut off', async () => {
    const { dir, store, f, first } = await created();
    await f.write(block(41, 2, 50000));
    expect(await store.check()).to.equal(2);
    await f.write(block(41, 3, 50000));
    expect(await store.check()).to.equal(3);
    await f.write(block(41, 4, 50000));
    expect(store.stats().bytesDirect).to.equal(150000);
    await flushed(f, 219999);
    await crash(store);
    await zeroRecords(dir, RecordType.COMMIT, [2, 3]);
    const b = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(b.recovery.epoch).to.equal(1);
    expect(fs.readFileSync(path.join(dir, 'n')).equals(first)).to.equal(true);
    await b.close();
  });

  it('a truncate committed after since blocks direct appends until it is applied; then they resume and a crash keeps the truncated size plus committed bytes', async () => {
    const { dir, store, f, first } = await created();
    await f.truncate(10000);
    expect(await store.check()).to.equal(2);
    const m3 = block(41, 3, 50000);
    await f.write(m3, 0, m3.length, 10000);
    expect(store.stats().bytesDirect, 'epoch 2 truncate unapplied: journaled').to.equal(0);
    expect(await store.check()).to.equal(3);
    await applyAll(store);
    expect(store.stats().appliedEpoch).to.equal(3);
    const m4 = block(41, 4, 30000);
    await f.write(m4, 0, m4.length, 60000);
    expect(store.stats().bytesDirect, 'truncate applied: direct again').to.equal(30000);
    await flushed(f, 89999);
    await crash(store);
    const b = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(b.recovery.epoch).to.equal(3);
    expect(fs.readFileSync(path.join(dir, 'n')).equals(Buffer.concat([first.subarray(0, 10000), m3]))).to.equal(true);
    await b.close();
  });

  it('a truncate in the epoch after since: the next appends are journaled, and a zeroed COMMIT 2 is then ECORRUPT (epoch 3 records prove it), files untouched', async () => {
    const { dir, store, f, first } = await created();
    await f.truncate(10000);
    expect(await store.check()).to.equal(2);
    await f.write(block(41, 3, 50000), 0, 50000, 10000);
    expect(store.stats().bytesDirect).to.equal(0);
    expect(await store.check()).to.equal(3);
    await crash(store);
    // epoch 3's journaled WRITE after the zeroed COMMIT 2 proves epoch 2 was durable: ECORRUPT (R8 (e))
    await zeroRecords(dir, RecordType.COMMIT, [2]);
    await expectCpError(() => openStore(dir, { inline: true, noLock: true }), 'ECORRUPT');
    expect(fs.readFileSync(path.join(dir, 'n')).equals(first), 'nothing changed').to.equal(true);
  });

  it('reopened after recovery (since = report.epoch = applied): direct in the first epoch; a lost COMMIT of it rolls back to the fresh catalog and cuts back', async () => {
    const dir = await sb.dir();
    const s0 = await openStore(dir, { inline: true, noLock: true });
    const first = block(42, 0, 70000);
    await (await s0.open('n', 'w')).write(first);
    await s0.check();
    await crash(s0);
    const s1 = await openStore(dir, HELD);
    const r0 = s1.recovery.epoch;
    expect(s1.stats().appliedEpoch).to.equal(r0);
    const f = await s1.open('n', 'r+');
    const m = block(42, 1, 50000);
    await f.write(m, 0, m.length, 70000);
    expect(s1.stats().bytesDirect, 'new rule: direct in the first epoch after reopen').to.equal(50000);
    expect(await s1.check()).to.equal(r0 + 1);
    await f.write(block(42, 2, 20000), 0, 20000, 120000);
    await flushed(f, 139999);
    await crash(s1);
    const copy = await sb.dir();
    fs.cpSync(dir, copy, { recursive: true });
    const copy2 = await sb.dir();
    fs.cpSync(dir, copy2, { recursive: true });
    const a = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(a.recovery.epoch).to.equal(r0 + 1);
    expect(fs.readFileSync(path.join(dir, 'n')).equals(Buffer.concat([first, m]))).to.equal(true);
    await a.close();
    await zeroRecords(copy, RecordType.COMMIT, [r0 + 1]);
    const b = sb.track(await openStore(copy, { inline: true, noLock: true }));
    expect(b.recovery.epoch).to.equal(r0);
    expect(fs.readFileSync(path.join(copy, 'n')).equals(first)).to.equal(true);
    await b.close();
    // the fresh catalog zeroed: corruption (R8 (g)), never a silent drop of n's entry
    await zeroRecords(copy2, RecordType.CATALOG, [r0]);
    await expectCpError(() => openStore(copy2, { inline: true, noLock: true }), 'ECORRUPT');
  });
});
