import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type Store } from '../lib/index.js';
import { recover } from '../lib/recovery/index.js';
import { RecordType, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, decodeSegmentHeader, encodeRecord, decodeControlSlot } from '../lib/format.js';
import { interceptIO, injected } from './helpers/intercept-io.js';
import { expectCpError } from './helpers/sandbox.js';
import { SEGMENT_FDS } from '../lib/journal/segment-files.js';
import { tempDir, openHeld, crash, records, segmentPath, flipByte, snapshot, NO_APPLY } from './helpers/journal.js';

const dirs: string[] = [];
const fresh = (): string => {
  const d = tempDir();
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function writeEpochs(s: Store, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await s.writeFile('a.txt', `epoch ${i} `.repeat(i));
    await s.writeFile(`f${i}.txt`, `file ${i}`);
    await s.check();
  }
}

describe('recovery', () => {
  it('replays committed but unapplied epochs and discards the uncommitted tail', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 3);
    await s.writeFile('a.txt', 'uncommitted');
    await s.writeFile('tail.txt', 'never');
    await crash(s);
    expect(fs.existsSync(path.join(dir, 'f1.txt'))).to.equal(false); // nothing applied yet
    const r = await openStore(dir, NO_APPLY);
    expect(r.epoch).to.equal(3);
    expect(r.recovery.replayedEpochs).to.equal(3);
    expect(r.recovery.discardedRecords).to.be.greaterThan(0);
    expect(r.recovery.tornTail).to.equal(false);
    expect((await r.readFile('a.txt')).toString()).to.equal('epoch 3 '.repeat(3));
    expect(snapshot(dir).has('tail.txt')).to.equal(false);
    expect(fs.readFileSync(path.join(dir, 'f3.txt'), 'utf8')).to.equal('file 3');
    await r.close();
  });

  it('a replayed epoch holding an ABORT drops what came before it (the replay holds such epochs until their COMMIT)', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await s.writeFile('a.txt', 'one');
    await s.check();
    await s.writeFile('a.txt', 'rolled back');
    await s.writeFile('gone.txt', 'rolled back');
    await s.rollback(); // applies epoch 1, then the epoch goes on after the ABORT
    await s.writeFile('b.txt', 'two');
    await s.rename('a.txt', 'c.txt');
    await s.check();
    await crash(s);
    expect(fs.existsSync(path.join(dir, 'b.txt'))).to.equal(false); // epoch 2 not applied
    const r = await openStore(dir, NO_APPLY);
    expect(r.epoch).to.equal(2);
    const hex = (t: string): string => Buffer.from(t).toString('hex');
    expect(snapshot(dir)).to.deep.equal(new Map([['b.txt', hex('two')], ['c.txt', hex('one')]]));
    await r.close();
  });

  it('a control file that lost its newest slot after a recovery moved the log to a new segment: ECORRUPT, not a silent rollback', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 1);
    await s.close(); // applies epoch 1
    const s2 = await openHeld(dir); // recovery starts a fresh segment and moves the cursor there
    await s2.writeFile('a.txt', 'acknowledged');
    const acked = await s2.check();
    await crash(s2);
    const ctlFile = path.join(dir, '.cpfile', 'control');
    const ctl = fs.readFileSync(ctlFile);
    const slots = [0, 512].map((at) => decodeControlSlot(ctl.subarray(at, at + 512)));
    const newest = slots.map((d, i) => ({ i, c: d.ok ? d.state.counter : -1 })).sort((x, y) => y.c - x.c)[0].i;
    ctl[newest * 512 + 100] ^= 1;
    fs.writeFileSync(ctlFile, ctl);
    // The older slot points into the segment of the first run, whose log ends cleanly at epoch 1.
    const e = await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    expect(e.message).to.match(/records an apply cursor .* beyond the end of the log: the control file is older than the journal/);
    expect(e.details).to.include({ lostFrom: acked, lostTo: acked });
  });

  it('a torn last record is a torn tail: the last acknowledged epoch survives', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 2);
    await s.writeFile('a.txt', 'x'.repeat(3000));
    await crash(s);
    const recs = await records(dir);
    const last = recs[recs.length - 1];
    expect(last.header.type).to.equal(RecordType.WRITE);
    flipByte(segmentPath(dir, last), last.offset + RECORD_HEADER_SIZE + 100);
    const r = await openStore(dir, NO_APPLY);
    expect(r.recovery.tornTail).to.equal(true);
    expect(r.epoch).to.equal(2);
    expect((await r.readFile('a.txt')).toString()).to.equal('epoch 2 epoch 2 ');
    await r.close();
  });

  it('a bad record followed by later committed epochs is ECORRUPT naming the epochs, never silently dropped', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 4);
    await crash(s);
    const recs = await records(dir);
    const victim = recs.find((r) => r.header.type === RecordType.WRITE && r.header.epoch === 2)!;
    flipByte(segmentPath(dir, victim), victim.offset + RECORD_HEADER_SIZE + victim.header.len - 1);
    const before = snapshot(dir);
    const err = await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    expect(err.details).to.include({ lostFrom: 2, lostTo: 4 });
    expect(err.message).to.match(/Epochs 2\.\.4/);
    expect(snapshot(dir)).to.deep.equal(before); // refusing changed nothing

    const forced = await openStore(dir, { ...NO_APPLY, force: true });
    expect(forced.epoch).to.equal(1);
    expect(forced.recovery.brokenCopy).to.be.a('string');
    expect(fs.existsSync(forced.recovery.brokenCopy!)).to.equal(true);
    expect((await forced.readFile('a.txt')).toString()).to.equal('epoch 1 ');
    await forced.close();
  });

  it('--force copies the journal sparsely (holes stay holes, same bytes and sizes) under a temporary name, and removes a partial copy a killed run left', async () => {
    const dir = fresh();
    const s = await openHeld(dir, { segmentSize: 16 << 20 });
    await writeEpochs(s, 4);
    await crash(s);
    const recs = await records(dir);
    const victim = recs.find((r) => r.header.type === RecordType.WRITE && r.header.epoch === 2)!;
    flipByte(segmentPath(dir, victim), victim.offset + RECORD_HEADER_SIZE + victim.header.len - 1);
    // What a --force run killed in the middle of its copy leaves.
    const partial = path.join(dir, '.cpfile', 'journal.broken-partial');
    fs.mkdirSync(partial);
    fs.writeFileSync(path.join(partial, 'seg-000000.cpj'), 'half a copy');
    const journal = path.join(dir, '.cpfile', 'journal');
    const before = new Map(fs.readdirSync(journal).map((n) => [n, fs.readFileSync(path.join(journal, n))]));
    const forced = await openStore(dir, { ...NO_APPLY, force: true });
    const copy = forced.recovery.brokenCopy!;
    await forced.close();
    expect(fs.existsSync(partial), 'the partial copy is gone').to.equal(false);
    expect(fs.readdirSync(path.join(dir, '.cpfile')).filter((n) => n.startsWith('journal.broken'))).to.deep.equal([path.basename(copy)]);
    expect(fs.readdirSync(copy).sort()).to.deep.equal([...before.keys()].sort());
    for (const [n, data] of before) {
      const st = fs.statSync(path.join(copy, n));
      expect(st.size, n).to.equal(data.length);
      expect(fs.readFileSync(path.join(copy, n)).equals(data), n).to.equal(true);
      // A 16 MiB segment holding a few KiB of records: its copy allocates about that, not 16 MiB.
      if (data.length >= 16 << 20) expect(st.blocks * 512, `${n}: allocated bytes of the copy`).to.be.below(1 << 20);
    }
  });

  it('damage before the apply cursor is corruption even with nothing after it', async () => {
    const dir = fresh();
    const s = await openStore(dir, { inline: true, noLock: true, segmentSize: 1 << 20 });
    await writeEpochs(s, 2);
    await s.close(); // applied: the cursor sits at a fresh segment's catalog
    const s2 = await openHeld(dir);
    await s2.writeFile('b.txt', 'bee');
    await s2.check();
    await crash(s2);
    const recs = await records(dir);
    const cat = recs[0];
    expect(cat.header.type).to.equal(RecordType.CATALOG);
    // The catalog sits before the last commit, which was fsynced after it: damage there is corruption.
    flipByte(segmentPath(dir, cat), cat.offset + 8);
    await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
  });

  it('records left from an earlier life of a recycled segment are never replayed', async () => {
    const dir = fresh();
    const expect1: Record<string, string> = {};
    let s = await openStore(dir, { inline: true, noLock: true, segmentSize: 64 * 1024, applyThreshold: 0 });
    // Enough traffic to wrap through recycled segments many times.
    for (let i = 0; i < 60; i++) {
      const name = `k${i % 7}.txt`;
      const body = `${i}:`.padEnd(3000 + (i % 5) * 700, String.fromCharCode(97 + (i % 26)));
      await s.writeFile(name, body);
      expect1[name] = body;
      await s.check();
    }
    const segCount = fs.readdirSync(path.join(dir, '.cpfile', 'journal')).length;
    expect(segCount).to.be.lessThan(12); // recycled, not one per epoch
    await s.writeFile('k0.txt', 'uncommitted');
    await crash(s);
    s = await openStore(dir, NO_APPLY);
    for (const [name, body] of Object.entries(expect1)) expect((await s.readFile(name)).toString()).to.equal(body);
    await s.close();
    for (const [name, body] of Object.entries(expect1)) expect(fs.readFileSync(path.join(dir, name), 'utf8')).to.equal(body);
  });

  it('is idempotent: a crash at every mutating I/O call of recovery, then recovery again, gives the same files', async () => {
    const base = fresh();
    const s = await openHeld(base);
    await s.writeFile('a.txt', 'one');
    await s.writeFile('d/b.txt', 'two');
    await s.check();
    await s.rename('a.txt', 'c.txt');
    await s.writeFile('a.txt', 'new a');
    await s.unlink('d/b.txt');
    const f = await s.open('log', 'a+');
    await f.write('line1\n');
    await s.check();
    await f.write('line2\n');
    await s.check();
    await s.writeFile('c.txt', 'uncommitted');
    await crash(s);

    const reference = fresh();
    fs.cpSync(base, reference, { recursive: true });
    const ref = await openStore(reference, NO_APPLY);
    await ref.close({ discard: true });
    const want = snapshot(reference);
    expect(Object.fromEntries(want)).to.deep.equal(Object.fromEntries(snapshot(reference)));
    expect(Buffer.from(want.get('c.txt')!, 'hex').toString()).to.equal('one');
    expect(Buffer.from(want.get('a.txt')!, 'hex').toString()).to.equal('new a');
    expect(Buffer.from(want.get('log')!, 'hex').toString()).to.equal('line1\nline2\n');
    expect(want.has('d/b.txt')).to.equal(false);

    const MUTATING = new Set(['write', 'ftruncate', 'rename', 'unlink', 'mkdir', 'open', 'fsync', 'fdatasync', 'fsyncDir']);
    let n = 0;
    for (let stopAt = 1; ; stopAt++) {
      const dir = fresh();
      fs.cpSync(base, dir, { recursive: true });
      let calls = 0;
      const killed = new Error('killed');
      const io = interceptIO(async (call, _args, next) => {
        if (MUTATING.has(call) && ++calls === stopAt) throw killed;
        return next();
      });
      let died = false;
      try {
        await recover({ io, dir, create: false });
      } catch (e) {
        expect(String((e as Error).message)).to.include('killed');
        died = true;
      }
      const again = await openStore(dir, NO_APPLY);
      await again.close({ discard: true });
      expect(Object.fromEntries(snapshot(dir)), `crash at mutating call ${stopAt}`).to.deep.equal(Object.fromEntries(want));
      fs.rmSync(dir, { recursive: true, force: true });
      n++;
      if (!died) break;
    }
    expect(n).to.be.greaterThan(5);
  });

  it('an epoch records handle positions as they were when check() was called, not when it ran', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    const f = await s.open('a', 'w');
    await f.write('hello');
    const c = s.check(); // epoch 1 is called at position 5...
    await f.write('world'); // ...this write belongs to epoch 2
    expect(await c).to.equal(1);
    await crash(s);
    const r = await openStore(dir, NO_APPLY);
    const g = await r.open('a', 'r+');
    expect((await r.readFile('a')).toString()).to.equal('hello');
    expect(g.resumed).to.equal(true);
    expect(g.tell()).to.equal(5);
    await r.close();
  });

  it('a damaged header or a shortened file of the segment holding the cursor is ECORRUPT, not an empty log', async () => {
    for (const damage of ['header', 'short'] as const) {
      const dir = fresh();
      const s = await openHeld(dir);
      await writeEpochs(s, 2);
      await crash(s);
      const recs = await records(dir);
      const file = segmentPath(dir, recs[0]);
      if (damage === 'header') flipByte(file, 20);
      else fs.truncateSync(file, 4096);
      await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    }
  });

  it('valid records copied to another place do not validate there, and records out of epoch order are refused', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 2);
    await crash(s);
    const recs = await records(dir);
    const file = segmentPath(dir, recs[0]);
    const lastCommit = recs.filter((r) => r.header.type === RecordType.COMMIT).pop()!;
    // Copy the records of epoch 1 (after the catalog, up to its commit) right after the last commit.
    const firstOf1 = recs[1];
    const commit1 = recs.find((r) => r.header.type === RecordType.COMMIT && r.header.epoch === 1)!;
    const fd = fs.openSync(file, 'r+');
    const len = commit1.offset + commit1.size - firstOf1.offset;
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, firstOf1.offset);
    fs.writeSync(fd, b, 0, len, lastCommit.offset + lastCommit.size);
    fs.closeSync(fd);
    const r = await openStore(dir, NO_APPLY);
    // Moved records fail their offset-bound checksum: an ordinary end of the log, epoch 2 intact.
    expect(r.epoch).to.equal(2);
    expect((await r.readFile('a.txt')).toString()).to.equal('epoch 2 epoch 2 ');
    await r.close();
  });

  it('a store whose control file is missing but has segments is refused, not re-created', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 1);
    await crash(s);
    fs.rmSync(path.join(dir, '.cpfile', 'control'));
    const e = await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    expect(e.details).to.deep.equal({ kind: 'control-file', forceable: false, file: path.join(dir, '.cpfile', 'control'), reason: 'missing' });
  });

  it('every ECORRUPT says where in .details: a control file with no valid slot, a segment not opening with its catalog', async () => {
    const dir = fresh();
    const s = await openHeld(dir);
    await writeEpochs(s, 2);
    await crash(s);
    const ctl = path.join(dir, '.cpfile', 'control');
    const saved = fs.readFileSync(ctl);
    const bad = Buffer.from(saved);
    bad[100] ^= 1;
    bad[612] ^= 1;
    fs.writeFileSync(ctl, bad);
    const e1 = await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    expect(e1.details).to.deep.equal({ kind: 'control-file', forceable: false, file: ctl, reason: 'crc, crc' });
    fs.writeFileSync(ctl, saved);
    // The catalog opening the cursor's segment replaced by a valid record of another type: the walk
    // cannot start, and there is nothing --force could keep.
    const catalog = (await records(dir))[0];
    expect(catalog.header.type).to.equal(RecordType.CATALOG);
    const file = segmentPath(dir, catalog);
    const fd = fs.openSync(file, 'r+');
    const head = Buffer.alloc(SEGMENT_HEADER_SIZE);
    fs.readSync(fd, head, 0, head.length, 0);
    const h = decodeSegmentHeader(head);
    if (!h.ok) throw new Error('segment header');
    const abort = encodeRecord({ type: RecordType.ABORT }, h.header.salt, catalog.header.epoch + 1, catalog.offset);
    fs.writeSync(fd, abort, 0, abort.length, catalog.offset);
    fs.closeSync(fd);
    const e2 = await expectCpError(() => openStore(dir, NO_APPLY), 'ECORRUPT');
    expect(e2.message).to.match(/does not begin with a catalog record/);
    expect(e2.details).to.deep.equal({ kind: 'cursor-catalog', forceable: false, seq: catalog.seq, offset: catalog.offset, reason: 'catalog' });
  });

  it('a control file of another format version is EFORMAT', async () => {
    const dir = fresh();
    const s = await openStore(dir, { inline: true, noLock: true });
    await s.close();
    const file = path.join(dir, '.cpfile', 'control');
    const b = fs.readFileSync(file);
    b.write('NOTCPF!!', 0, 'latin1');
    b.write('NOTCPF!!', 512, 'latin1');
    fs.writeFileSync(file, b);
    await expectCpError(() => openStore(dir, { inline: true, noLock: true }), 'EFORMAT');
  });
});

describe('recovery: a redo over names that later records turned into directories', () => {
  it('a file written, unlinked, then made a directory by later epochs, all applied but the cursor not moved: reopening replays them and opens', async () => {
    const dir = fresh();
    let failControl = false;
    const fdPath = new Map<number, string>();
    const io = interceptIO(async (call, args, next) => {
      if (call === 'write' && failControl && fdPath.get(args[0] as number)?.endsWith(path.join('.cpfile', 'control'))) throw injected('EIO', 'write');
      const r = await next();
      if (call === 'open') fdPath.set(r as number, args[0] as string);
      return r;
    });
    const s = await openStore(dir, { ...NO_APPLY, io });
    await s.writeFile('a', 'a file');
    await s.check();
    await s.unlink('a');
    await s.check();
    await s.writeFile('a/b', 'under a directory now');
    await s.check();
    failControl = true; // the apply runs, but its cursor move fails: recovery must redo all three epochs
    await expectCpError(() => s.close(), 'EREOPEN').catch(() => undefined);
    expect(fs.statSync(path.join(dir, 'a')).isDirectory()).to.equal(true);
    const again = await openStore(dir, NO_APPLY);
    expect(again.epoch).to.equal(4); // close() checked once more before its apply failed
    expect(String(await again.readFile('a/b'))).to.equal('under a directory now');
    await again.close();
    expect(snapshot(dir)).to.deep.equal(new Map([['a/b', Buffer.from('under a directory now').toString('hex')]]));
  });
});

describe('recovery: descriptors', () => {
  it('a journal of 40+ segments is recovered with a bounded number of segment files open (SEGMENT_FDS)', async () => {
    const dir = fresh();
    const s = await openHeld(dir, { segmentSize: 65536 });
    (s as unknown as { applyNow: () => Promise<void> }).applyNow = async () => undefined;
    for (let i = 0; i < 5; i++) {
      await s.writeFile(`f${i}.bin`, Buffer.alloc(600_000, i));
      await s.check();
    }
    await crash(s);
    const segs = fs.readdirSync(path.join(dir, '.cpfile', 'journal')).length;
    expect(segs).to.be.greaterThan(40);
    const open = new Set<number>();
    let most = 0;
    const io = interceptIO(async (call, args, next) => {
      const r = await next();
      if (call === 'open' && String(args[0]).includes(`${path.sep}journal${path.sep}seg-`)) {
        open.add(r as number);
        most = Math.max(most, open.size);
      }
      if (call === 'close') open.delete(args[0] as number);
      return r;
    });
    const again = await openStore(dir, { ...NO_APPLY, io });
    expect(again.epoch).to.equal(5);
    expect(most, `segment files open at once during recovery (of ${segs})`).to.be.at.most(SEGMENT_FDS + 2);
    expect((await again.readFile('f4.bin')).equals(Buffer.alloc(600_000, 4))).to.equal(true);
    await again.close();
  });
});
