// A segment's high-water mark (FORMAT.md R19) where the disk or a crash gets in the way (cases an
// adversarial review of the first version found): recovery's own decision record (R17 V2b) raises
// the mark before it passes it; a mark that is valid but stale (a lost write of the header block
// after a sync had made it durable) is noticed from the log and the whole segment is scanned; and
// small segments take no raises at all.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MARK_OFFSET, encodeMark, recordCap, recordSize, writeHeadSize } from '../lib/format.js';
import { openStore, type IO } from '../lib/index.js';
import { interceptIO } from './helpers/intercept-io.js';
import { Sandbox } from './helpers/sandbox.js';
import { crash, openHeld, records, segmentPath } from './helpers/journal.js';
import { headOf, segmentMarkBreach } from './torture/marks.js';

/** Valid records ending past their segment's valid mark, in the store at `dir`. */
function breaches(dir: string): string[] {
  const jdir = path.join(dir, '.cpfile', 'journal');
  return fs.readdirSync(jdir).map((name) => segmentMarkBreach(name, fs.readFileSync(path.join(jdir, name)))).filter((x): x is string => x !== null);
}

function markOf(file: string): { mark: number | null; salt: number; seq: number } {
  const h = headOf(fs.readFileSync(file));
  if (!h) throw new Error('bad header');
  return { mark: h.mark, salt: h.header.salt, seq: h.header.seq };
}

describe('a segment\'s high-water mark under faults (FORMAT.md R19)', () => {
  const MiB = 1 << 20;
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  const SEG = 65536;
  // an 8 KiB step (the default gives a segment this small its end as its mark at once)
  const opts = { segmentSize: SEG, directAppendMin: false as const, markStep: 8192 };

  /** Prepare an epoch whose PREPARE ends `delta` bytes after the first write size tried; returns where it ended. */
  async function prepared(dataLen: number): Promise<{ dir: string; end: number; file: string; markBefore: number }> {
    const dir = await sb.dir();
    const s = await openHeld(dir, opts);
    const f = await s.open('a.bin', 'w');
    await f.write(Buffer.alloc(10, 1));
    await s.check();
    let recs = await records(dir);
    const segFile = segmentPath(dir, recs[recs.length - 1]);
    const before = markOf(segFile).mark!; // durable: the last sync returned
    await f.write(Buffer.alloc(dataLen, 2));
    await s.prepare({ id: 'tx' });
    await crash(s);
    recs = await records(dir);
    const prep = recs.filter((r) => r.header.type === 11).pop()!;
    return { dir, end: prep.offset + prep.size, file: segFile, markBefore: before };
  }

  it('V2b: recovery\'s decision record is never written past the durable mark (R19)', async function () {
    this.timeout(120000);
    // Find a write size whose PREPARE ends exactly at the mark that was durable before prepare()'s
    // sync: that sync raises the mark (the journal is within half a step), and a power loss during
    // it may keep the PREPARE's sectors and lose the mark's (R16: any subset of sectors).
    let len = 9000;
    let p = await prepared(len);
    len += p.markBefore - p.end;
    p = await prepared(len);
    expect(p.end, 'the PREPARE ends at the old mark').to.equal(p.markBefore);
    expect(markOf(p.file).mark!, 'prepare()\'s sync raised the mark').to.be.above(p.markBefore);
    // The crash state: the raise's sector lost (the old mark, whole and valid, durable before).
    const m = markOf(p.file);
    const fd = fs.openSync(p.file, 'r+');
    fs.writeSync(fd, encodeMark(m.salt, m.seq, p.markBefore), 0, 32, MARK_OFFSET);
    fs.closeSync(fd);
    expect(breaches(p.dir), 'the crash state itself keeps R19').to.deep.equal([]);
    // Recovery decides 'commit', writes the COMMIT_PREPARED (V2b), then fails to start its fresh
    // segment (any I/O error there, or a power loss: the state is the same).
    const io: IO = interceptIO(async (call, args, next) => {
      if (call === 'open' && args[1] === 'create' && /seg-\d+\.cpj$/.test(String(args[0]))) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
      return next();
    });
    const err = await openStore(p.dir, { ...opts, noLock: true, io, resolveInDoubt: () => 'commit' }).then(() => null, (e: unknown) => e);
    expect(err, 'recovery stopped at the fresh segment').to.not.equal(null);
    const br = breaches(p.dir);
    // (verdict-neutral: the decision's epoch is never above cur, so the next recovery is unaffected)
    const s2 = await openStore(p.dir, { ...opts, noLock: true });
    expect(s2.epoch).to.equal(2);
    await s2.close();
    expect(br, 'no valid record past a segment\'s mark').to.deep.equal([]);
  });

  for (const rollback of [false, true]) it(`${rollback ? 'a stale but valid mark (a lost write of the header block) and' : 'a current mark and'} one damaged record below it: ECORRUPT, the later epochs found`, async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir, { segmentSize: 4 * MiB, directAppendMin: false, markStep: 512 * 1024 });
    const f = await s.open('a.bin', 'w');
    for (let e = 1; e <= 3; e++) {
      await f.write(Buffer.alloc(1000, e));
      await s.check();
    }
    let recs = await records(dir);
    const file = segmentPath(dir, recs[recs.length - 1]);
    const m0 = markOf(file);
    await f.write(Buffer.alloc(MiB, 4)); // epoch 4: its run raises the mark past m0
    await s.check();
    await f.write(Buffer.alloc(1000, 5)); // epoch 5, past m0
    await s.check();
    await crash(s);
    recs = await records(dir);
    const e4 = recs.find((r) => r.header.epoch === 4)!;
    expect(e4.offset + 30).to.be.below(m0.mark!);
    expect(markOf(file).mark!).to.be.above(m0.mark!);
    // The device loses the latest write of block 0 (the raise), and a record of epoch 4 rots.
    const fd = fs.openSync(file, 'r+');
    if (rollback) fs.writeSync(fd, encodeMark(m0.salt, m0.seq, m0.mark!), 0, 32, MARK_OFFSET);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, e4.offset + 30);
    b[0] ^= 1;
    fs.writeSync(fd, b, 0, 1, e4.offset + 30);
    fs.closeSync(fd);
    const err = await openStore(dir, { noLock: true, segmentSize: 4 * MiB }).then(async (st) => {
      const ep = st.epoch;
      await st.close();
      return `opened at epoch ${ep} (epochs 4 and 5 were acknowledged)`;
    }, (e: { code?: string }) => e.code);
    expect(err).to.equal('ECORRUPT');
  });

  it('segments of at most 2 MiB get their end as their mark at once: a long unsynced run pays no extra sync', async () => {
    for (const [segmentSize, markStep, extra] of [[MiB, undefined, false], [MiB, 128 * 1024, true]] as const) {
      const dir = await sb.dir();
      let syncs = 0;
      const io: IO = interceptIO(async (call, args, next) => {
        if (call === 'fdatasync' || call === 'fsync') syncs++;
        return next();
      });
      const s = await openStore(dir, { noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, batchBytes: 65536, directAppendMin: false, segmentSize, markStep, io });
      const f = await s.open('big.bin', 'w');
      const start = syncs;
      // 3 MiB in 1 MiB segments, unsynced until the check: three rotations (two syncs each, R9)
      for (let i = 0; i < 3 * 1024; i++) await f.write(Buffer.alloc(1024, 1 + (i % 200)));
      await s.check();
      const n = syncs - start;
      await f.close();
      await s.close();
      for (const [index, m] of [...fs.readdirSync(path.join(dir, '.cpfile', 'journal'))].entries()) {
        if (!extra) expect(markOf(path.join(dir, '.cpfile', 'journal', m)).mark, `segment file ${index}`).to.equal(segmentSize);
      }
      if (extra) expect(n, `markStep ${markStep}: the raises pay syncs of their own`).to.be.above(12);
      else expect(n, 'the rotations\' syncs and the check\'s').to.be.at.most(10);
    }
  });

  // The scan reads one largest record and a record header past the mark: the record after a damaged
  // one of the largest size that starts at or below a stale mark is read whole (a review found the
  // header of the next record 8-24 bytes short of the reach).
  /** Epochs 1-3 small (epoch 3 padded by `pad`), epoch 4 one max-size WRITE, epoch 5 small; crashed. */
  async function build(pad: number): Promise<{ dir: string; file: string; rStart: number; rSize: number }> {
    const dir = await sb.dir();
    const s = await openHeld(dir, { segmentSize: 4 * MiB, directAppendMin: false, markStep: 512 * 1024 });
    const f = await s.open('a.bin', 'w');
    for (let e = 1; e <= 3; e++) {
      await f.write(Buffer.alloc(1000 + (e === 3 ? pad : 0), e));
      await s.check();
    }
    const g = await s.open('b.bin', 'w');
    await g.write(Buffer.alloc(recordCap(4 * MiB) - writeHeadSize('b.bin'), 4)); // exactly one record of the cap
    await s.check();
    await f.write(Buffer.alloc(1000, 5));
    await s.check();
    await crash(s);
    const recs = await records(dir);
    const r = recs.find((x) => x.header.epoch === 4 && x.size === recordSize(recordCap(4 * MiB)))!;
    return { dir, file: segmentPath(dir, r), rStart: r.offset, rSize: r.size };
  }

  for (const below of [8, 0, 16, 32]) {
    it(`the damaged max-size record starts ${below} bytes below a stale 4 KiB-aligned mark: ECORRUPT (epochs 4, 5 acknowledged)`, async function () {
      this.timeout(60000);
      let b = await build(0);
      const want = (((4096 - below - b.rStart) % 4096) + 4096) % 4096;
      b = await build(want);
      const m = b.rStart + below;
      expect(m % 4096, 'the stale mark is block-aligned, like every mark the flusher writes').to.equal(0);
      const cur = markOf(b.file);
      expect(cur.mark!, 'the real mark is past the record').to.be.above(b.rStart + b.rSize);
      // The device loses the latest write of block 0 (the mark back at m), and R rots.
      const fd = fs.openSync(b.file, 'r+');
      fs.writeSync(fd, encodeMark(cur.salt, cur.seq, m), 0, 32, MARK_OFFSET);
      const x = Buffer.alloc(1);
      fs.readSync(fd, x, 0, 1, b.rStart + 5000);
      x[0] ^= 1;
      fs.writeSync(fd, x, 0, 1, b.rStart + 5000);
      fs.closeSync(fd);
      const got = await openStore(b.dir, { noLock: true, segmentSize: 4 * MiB }).then(async (st) => {
        const ep = st.epoch;
        await st.close();
        return `opened at epoch ${ep}`;
      }, (e: { code?: string }) => e.code);
      expect(got).to.equal('ECORRUPT');
    });
  }
});
