/**
 * A bulk append that only the apply of committed epochs keeps in the journal waits for that apply
 * and goes direct (WritePath.waitsForApply, ApplySchedule.applyForWrite): the adversarial cases of
 * its review. Nothing acknowledged is lost and no store becomes unopenable when the wait meets a
 * torn-looking COMMIT, a failing disk, a COMMIT in flight, a rollback, a prepare, a crash while it
 * waits, streams, several handles and files; and it waits at most once per durable commit.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type Store, type CpFile } from '../lib/index.js';
import { RecordType } from '../lib/format.js';
import { interceptIO, injected, openedPath } from './helpers/intercept-io.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { crash } from './helpers/journal.js';
import { block, flushed, zeroRecords } from './helpers/direct-appends.js';

const EARLY = { inline: true, noLock: true, directAppendMin: 1, applyDelay: 3600_000 } as const;
const plain = { inline: true, noLock: true } as const;
const read = (dir: string, n: string): Buffer => fs.readFileSync(path.join(dir, n));

describe('direct appends after waiting for an apply', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  /** n created with `first` in epoch 1, checked, unapplied. */
  async function created(opts = {}): Promise<{ dir: string; store: Store; f: CpFile; first: Buffer }> {
    const dir = await sb.dir();
    const store = sb.track(await openStore(dir, { ...EARLY, ...opts }));
    const f = await store.open('n', 'w+');
    const first = block(7, 0, 70000);
    await f.write(first);
    expect(await store.check()).to.equal(1);
    expect(store.stats().appliedEpoch).to.equal(0);
    return { dir, store, f, first };
  }

  it('waited write, then a torn-looking COMMIT 2: recovery back to epoch 1, direct bytes cut', async () => {
    const { dir, store, f, first } = await created();
    await f.write(block(7, 1, 50000));
    expect(store.stats().bytesDirect).to.equal(50000);
    expect(await store.check()).to.equal(2);
    await crash(store);
    await zeroRecords(dir, RecordType.COMMIT, [2]);
    const b = sb.track(await openStore(dir, plain));
    expect(b.recovery.epoch).to.equal(1);
    expect(read(dir, 'n').equals(first)).to.equal(true);
  });

  it('EIO while applying for a waiting write: write rejects, store must reopen, epoch 1 intact', async () => {
    const dir = await sb.dir();
    let fail = false;
    const fdPath = new Map<number, string>();
    const io = interceptIO(async (call, args, next) => {
      if (fail && call === 'write' && typeof args[0] === 'number' && (fdPath.get(args[0]) ?? '').endsWith('/n')) throw injected('EIO', 'write');
      const r = await next();
      if (call === 'open') fdPath.set(r as number, openedPath(r as number, args[0] as string));
      return r;
    });
    const store = sb.track(await openStore(dir, { ...EARLY, io }));
    const f = await store.open('n', 'w+');
    const first = block(8, 0, 70000);
    await f.write(first);
    await store.check();
    fail = true;
    const err = await f.write(block(8, 1, 50000)).then(() => null, (e: unknown) => e as { code: string });
    expect(err?.code, 'the waiting write reports the failure as any later call would').to.equal('EREOPEN');
    await expectCpError(() => store.check(), 'EREOPEN');
    await store.close().catch(() => undefined);
    fail = false;
    const again = sb.track(await openStore(dir, plain));
    expect(again.recovery.epoch).to.equal(1);
    expect(read(dir, 'n').equals(first)).to.equal(true);
  });

  it('unawaited check() then the bulk write (the COMMIT in flight while it waits); crash; both epochs recovered', async () => {
    const { dir, store, f, first } = await created();
    const m2 = block(9, 1, 50000);
    await f.write(m2); // waits, direct
    const c2 = store.check();
    const m3 = block(9, 2, 50000);
    const w3 = f.write(m3);
    expect(await c2).to.equal(2);
    await w3;
    expect(await store.check()).to.equal(3);
    await crash(store);
    const b = sb.track(await openStore(dir, plain));
    expect(b.recovery.epoch).to.equal(3);
    expect(read(dir, 'n').equals(Buffer.concat([first, m2, m3]))).to.equal(true);
  });

  it('rollback() and close({discard}) queued behind a waiting write cut it back', async () => {
    for (const how of ['rollback', 'discard'] as const) {
      const { dir, store, f, first } = await created();
      const w = f.write(block(10, 1, 50000));
      const r = how === 'rollback' ? store.rollback() : store.close({ discard: true });
      await w;
      await r;
      if (how === 'rollback') {
        expect(store.stats().appliedEpoch).to.equal(1);
        expect(read(dir, 'n').equals(first)).to.equal(true);
        expect(await store.check()).to.equal(2);
        await crash(store);
      }
      const b = sb.track(await openStore(dir, plain));
      expect(read(dir, 'n').equals(first)).to.equal(true);
      await b.close();
    }
  });

  it('prepare after a waited write: abort cuts back; commit({sync:false}) then a waiting write in the next epoch; crash', async () => {
    {
      const { dir, store, f, first } = await created();
      await f.write(block(11, 1, 50000));
      const p = await store.prepare();
      await p.abort();
      expect(read(dir, 'n').equals(first)).to.equal(true);
    }
    {
      const { dir, store, f, first } = await created();
      const g = await store.open('g', 'w+');
      const m = block(11, 2, 50000);
      await f.write(m);
      await g.write(block(11, 3, 40000));
      const p = await store.prepare();
      expect(await p.commit({ sync: false })).to.equal(2);
      const gm = block(11, 4, 30000);
      await g.write(gm); // g created in 2: waits for the apply of 2, direct
      expect(store.stats().appliedEpoch, 'the write waited for the apply of epoch 2').to.equal(2);
      expect(store.stats().bytesDirect, "n's 50000 in epoch 2, g's 30000 in epoch 3").to.equal(80000);
      await flushed(g, 69999);
      await crash(store);
      const b = sb.track(await openStore(dir, plain));
      expect(b.recovery.epoch).to.equal(2);
      expect(read(dir, 'n').equals(Buffer.concat([first, m]))).to.equal(true);
      expect(read(dir, 'g').equals(block(11, 3, 40000))).to.equal(true);
    }
  });

  it('dup handles, many files, truncate then append in one epoch: same bytes as a plain store', async () => {
    const dir = await sb.dir();
    const store = sb.track(await openStore(dir, EARLY));
    const fs0: CpFile[] = [];
    const want = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) {
      const f = await store.open(`f${i}`, 'w+');
      fs0.push(f);
      const b = block(12, i, 30000 + i);
      await f.write(b);
      want.set(`f${i}`, b);
    }
    await store.check();
    for (let e = 0; e < 4; e++) {
      for (let i = 0; i < 6; i++) {
        const f = e % 2 === 0 ? fs0[i] : fs0[i].dup();
        const cur = want.get(`f${i}`)!;
        if ((i + e) % 3 === 0) {
          await f.truncate(1000 * (i + 1));
          const t = cur.subarray(0, 1000 * (i + 1));
          const m = block(13, e * 10 + i, 20000);
          await f.write(m, 0, m.length, t.length);
          want.set(`f${i}`, Buffer.concat([t, m]));
        } else {
          const m = block(14, e * 10 + i, 25000);
          await f.write(m, 0, m.length, cur.length);
          want.set(`f${i}`, Buffer.concat([cur, m]));
        }
      }
      await store.check();
    }
    expect(store.stats().bytesDirect, 'the appends past the committed ends of epochs 2-5 went direct').to.equal(400000);
    for (const f of fs0) await flushed(f, 0);
    await crash(store);
    const b = sb.track(await openStore(dir, plain));
    for (const [n, w] of want) expect(read(dir, n).equals(w), n).to.equal(true);
  });

  it('no wasted wait: an existing file opened in epoch E, check E in flight: the bulk write waits only once COMMIT E is durable', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'old'), block(15, 0, 10000));
    const store = sb.track(await openStore(dir, EARLY));
    const other = await store.open('o', 'w');
    await other.write(block(15, 1, 1000));
    expect(await store.check()).to.equal(1); // unapplied: lag > 0
    const f = await store.open('old', 'r+');
    const applied: number[] = [];
    store.on('applied', (e) => applied.push(e.epoch));
    const c = store.check(); // COMMIT 2 (first to list 'old') in flight
    await f.write(block(15, 2, 50000), 0, 50000, 10000);
    expect(applied, 'no wait: no apply can reach epoch 2 before its COMMIT is durable').to.deep.equal([]);
    expect(store.stats().bytesDirect).to.equal(0);
    await c;
    await f.write(block(15, 3, 50000), 0, 50000, 60000);
    expect(applied, 'one wait, once COMMIT 2 is durable').to.deep.equal([2]);
    expect(store.stats().bytesDirect).to.equal(50000);
    await store.close();
  });

  it('crash while the write waits for the apply: recovery is epoch 1, file exactly as committed', async () => {
    for (let delay = 0; delay < 6; delay++) {
      const { dir, store, first } = await created();
      const f = (store as unknown as { catalog: { open: Map<string, { handles: Set<CpFile> }> } }).catalog.open.get('n')!.handles.values().next().value as CpFile;
      const w = f.write(block(16, delay, 50000)).catch(() => undefined);
      for (let k = 0; k < delay; k++) await new Promise((r) => setImmediate(r));
      await crash(store);
      await w;
      const b = sb.track(await openStore(dir, plain));
      expect(b.recovery.epoch).to.equal(1);
      expect(read(dir, 'n').equals(first), `delay ${delay}`).to.equal(true);
      await b.close();
    }
  });

  it('write streams across checks: waits once, goes direct, crash keeps checked bytes', async () => {
    const dir = await sb.dir();
    const store = sb.track(await openStore(dir, EARLY));
    const ws = store.createWriteStream('s');
    const want: Buffer[] = [];
    const put = (b: Buffer) => new Promise<void>((res, rej) => ws.write(b, (e?: Error | null) => (e ? rej(e) : res())));
    for (let e = 0; e < 3; e++) {
      for (let i = 0; i < 5; i++) {
        const b = block(17, e * 10 + i, 20000);
        want.push(b);
        await put(b);
      }
      await store.check();
    }
    await put(block(17, 99, 20000)); // unchecked
    expect(store.stats().bytesDirect, 'epoch 2 after one wait, epoch 3 and the unchecked write as a stream').to.equal(220000);
    await new Promise((r) => setTimeout(r, 50));
    await crash(store);
    const b = sb.track(await openStore(dir, plain));
    expect(b.recovery.epoch).to.equal(3);
    expect(read(dir, 's').equals(Buffer.concat(want))).to.equal(true);
  });

  it('waits at most once per durable end: 6 files x 40 bulk writes per epoch, 5 epochs', async () => {
    const dir = await sb.dir();
    const store = sb.track(await openStore(dir, EARLY));
    const sched = (store as unknown as { schedule: { applyForWrite(): Promise<void> } }).schedule;
    let waits = 0;
    const orig = sched.applyForWrite.bind(sched);
    sched.applyForWrite = () => { waits++; return orig(); };
    const files: CpFile[] = [];
    for (let i = 0; i < 6; i++) files.push(await store.open(`m${i}`, 'w+'));
    const perEpoch: number[] = [];
    for (let e = 0; e < 5; e++) {
      const before = waits;
      const ps: Promise<unknown>[] = [];
      for (let k = 0; k < 40; k++) for (const f of files) ps.push(f.write(block(18, k, 4096)));
      await Promise.all(ps);
      if (e === 2) for (const f of files) await f.truncate(1000);
      await store.check();
      perEpoch.push(waits - before);
    }
    expect(Math.max(...perEpoch)).to.be.at.most(1);
  });
});
