/**
 * Direct appends (format version 2: open entries carry their committed size): once a file's appends
 * in an epoch reach directAppendMin, later appends go to the file itself instead of the journal.
 * These tests pin what that must keep: the data is written once and the file is durable before the
 * COMMIT; an epoch that does not commit (crash, rollback, a damaged last COMMIT) leaves the file at
 * its committed size; reads see the direct bytes at once; mixing them with journaled overwrites,
 * truncates and unapplied epochs gives the same bytes as without.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openStore, type Store, type CpFile, type StoreOptions } from '../lib/index.js';
import { nodeIO } from '../lib/io.js';
import { recover } from '../lib/recovery/index.js';
import { RecordType, decodePayload, segmentFileName, decodeControlSlot, CONTROL_SLOT_SIZE } from '../lib/format.js';
import { interceptIO, openedPath } from './helpers/intercept-io.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { crash, records } from './helpers/journal.js';
import { block, flushed, zeroRecords } from './helpers/direct-appends.js';

const CLI = fileURLToPath(new URL('../tools/cp-recover.js', import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;

interface Call { call: string; file: string; len: number }

/** An inline store whose I/O is recorded as (call, file, bytes). */
function recordingIO(calls: Call[]) {
  const fdPath = new Map<number, string>();
  return interceptIO(async (call, args, next) => {
    const r = await next();
    if (call === 'open') fdPath.set(r as number, openedPath(r as number, args[0] as string));
    const fd = typeof args[0] === 'number' ? args[0] : -1;
    const file = fd >= 0 ? fdPath.get(fd) ?? '?' : String(args[0]);
    calls.push({ call, file, len: call === 'write' ? (args[3] as number) : 0 });
    return r;
  });
}

/** Wait until every committed epoch is applied and the overlays are settled. */
async function settled(store: Store): Promise<void> {
  for (let i = 0; i < 2000 && store.stats().applyLag.bytes > 0; i++) await new Promise((r) => setTimeout(r, 2));
  await store.readFile('no-such-file').catch(() => undefined); // a queued call: the settle queued after the apply has run
}

/** Apply every durable epoch now and let the overlays settle (the store's test seam: applies held off by options run too). */
async function applyAll(store: Store): Promise<void> {
  await (store as unknown as { applyNow(inQueue: boolean): Promise<void> }).applyNow(false);
  await store.readFile('no-such-file').catch(() => undefined);
}

/** Options for a store that applies nothing until it is closed. */
const HELD = { inline: true, noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 } as const;

/** A first run that writes `content` to `a` and closes the store with `a` still open: an unfinished entry. */
async function leftOpen(dir: string, content: Buffer): Promise<void> {
  const first = await openStore(dir, { inline: true, noLock: true });
  await (await first.open('a', 'w')).write(content);
  await first.close();
}

describe('direct appends', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  /** `a` in a new inline store, written `first` (if given) and checked, its creation applied: its next appends may go direct. */
  async function checkedFile(opts: StoreOptions, mode: 'w' | 'w+', first?: Uint8Array | string): Promise<{ dir: string; store: Store; f: CpFile }> {
    const dir = await sb.dir();
    const store = await sb.open(dir, { inline: true, noLock: true, ...opts });
    const f = await store.open('a', mode);
    if (first !== undefined) await f.write(first);
    await store.check();
    await store.check(); // listed open by two commits: its appends may go direct (store.ts directStart)
    await settled(store);
    return { dir, store, f };
  }

  it('appends past the committed end are written once, to the file, which is fdatasynced before the COMMIT is written', async () => {
    const dir = await sb.dir();
    const calls: Call[] = [];
    const store = sb.track(await openStore(dir, { io: recordingIO(calls), noLock: true, applyDelay: 0, directAppendMin: 256 * KiB }));
    const f = await store.open('bulk.dat', 'w');
    await store.check();
    await store.check(); // listed open by two commits: its appends may go direct (store.ts directStart)
    await settled(store);
    calls.length = 0;
    const want: Buffer[] = [];
    for (let i = 0; i < 64; i++) {
      want.push(block(1, i));
      await f.write(want[i]);
    }
    await store.check();
    const isData = (c: Call): boolean => c.file === path.join(dir, 'bulk.dat');
    const isJournal = (c: Call): boolean => c.file.includes(`${path.sep}journal${path.sep}`);
    const dataBytes = calls.filter((c) => c.call === 'write' && isData(c)).reduce((a, c) => a + c.len, 0);
    const journalBytes = calls.filter((c) => c.call === 'write' && isJournal(c)).reduce((a, c) => a + c.len, 0);
    // 4 MiB appended: the writes before the epoch's appends reach 256 KiB go through the journal
    // (three of 64 KiB), the rest only to the file.
    expect(dataBytes).to.equal(4 * MiB - 3 * 64 * KiB);
    expect(journalBytes).to.be.below(256 * KiB + 64 * KiB);
    expect(store.stats().bytesJournaled).to.be.below(2 * 256 * KiB);

    // Order: the data file is fdatasynced before the last journal write (the COMMIT). (Nothing has to
    // be synced before the first data write: the COMMIT listing the file with its committed size was.)
    const firstData = calls.findIndex((c) => c.call === 'write' && isData(c));
    let lastJournalWrite = -1;
    calls.forEach((c, i) => { if (c.call === 'write' && isJournal(c)) lastJournalWrite = i; });
    const dataSync = calls.findIndex((c) => c.call === 'fdatasync' && isData(c));
    expect(dataSync, 'data file fdatasynced').to.be.above(firstData);
    expect(dataSync, 'before the COMMIT is written').to.be.below(lastJournalWrite);

    // The COMMIT lists the file with its new committed size.
    const commits = (await records(dir)).filter((r) => r.header.type === RecordType.COMMIT);
    const last = decodePayload(RecordType.COMMIT, commits[commits.length - 1].payload);
    expect(last.type === RecordType.COMMIT && last.entries).to.deep.equal([{ name: 'bulk.dat', position: 4 * MiB, state: 'open', size: 4 * MiB }]);
    await store.close();
    expect(fs.readFileSync(path.join(dir, 'bulk.dat')).equals(Buffer.concat(want))).to.equal(true);
  });

  it('reads see direct appends at once, before and after the check (also while the flusher is slow to write them)', async () => {
    for (const inline of [true, false]) {
      const dir = await sb.dir();
      // Inline, the flusher's writes to the data file take 20 ms: a read that did not wait for them
      // would find the file short.
      const fdPath = new Map<number, string>();
      const slow = interceptIO(async (call, args, next) => {
        if (call === 'write' && fdPath.get(args[0] as number) === path.join(dir, 'a')) await new Promise((r) => setTimeout(r, 20));
        const r = await next();
        if (call === 'open') fdPath.set(r as number, openedPath(r as number, args[0] as string));
        return r;
      });
      const store = await sb.open(dir, { directAppendMin: 1, ...(inline ? { io: slow, noLock: true } : {}) });
      const f = await store.open('a', 'w+');
      await store.check();
      await store.check(); // listed open by two commits: its appends may go direct (store.ts directStart)
      await settled(store);
      const want: Buffer[] = [];
      for (let i = 0; i < 20; i++) {
        want.push(block(2, i, 10 * KiB + i));
        void f.write(want[i]); // not awaited: reads must still see them, in call order
        const at = want.slice(0, i).reduce((a, b) => a + b.length, 0);
        const got = Buffer.alloc(want[i].length);
        const r = await f.read(got, 0, got.length, at);
        expect(r.bytesRead, `${inline} ${i}`).to.equal(got.length);
        expect(got.equals(want[i]), `${inline} read ${i}`).to.equal(true);
      }
      expect((await f.stat()).size).to.equal(Buffer.concat(want).length);
      expect((await store.readFile('a')).equals(Buffer.concat(want))).to.equal(true);
      await store.check();
      expect((await store.readFile('a')).equals(Buffer.concat(want))).to.equal(true);
      expect(store.stats().bytesJournaled, 'the data did not go through the journal').to.be.below(8 * KiB);
      await store.close();
      expect(fs.readFileSync(path.join(dir, 'a')).equals(Buffer.concat(want))).to.equal(true);
    }
  });

  it('a crash before the check: recovery cuts the file back to its committed size (and a dry run says it would)', async () => {
    const dir = await sb.dir();
    await leftOpen(dir, block(3, 0, 5000));
    const store = await openStore(dir, { ...HELD, directAppendMin: 8000 });
    const f = await store.open('a', 'r+');
    expect(f.tell()).to.equal(5000);
    await f.write(block(3, 1, 7000)); // epoch 2: below directAppendMin, journaled, and left unapplied
    await store.check();
    const committed = Buffer.concat([block(3, 0, 5000), block(3, 1, 7000)]);
    for (let i = 2; i < 6; i++) await f.write(block(3, i, 30000));
    await f.read(Buffer.alloc(1), 0, 1, committed.length + 1000); // the flusher has written the direct bytes
    await crash(store);
    expect(fs.statSync(path.join(dir, 'a')).size, 'the uncommitted appends reached the file').to.be.above(committed.length);

    const longer = fs.statSync(path.join(dir, 'a')).size;
    const dry = await recover({ io: nodeIO, dir, dryRun: true });
    expect(dry.report.cutBack).to.deep.equal([{ name: 'a', size: committed.length, from: longer }]);
    const verify = spawnSync(process.execPath, [CLI, '--verify', dir], { encoding: 'utf8' });
    expect(verify.status, verify.stderr).to.equal(1);
    expect(verify.stdout).to.match(/1 file longer than committed \(direct appends of an uncommitted epoch\) would be cut back/);
    const dryCli = spawnSync(process.execPath, [CLI, '--dry-run', dir], { encoding: 'utf8' });
    expect(dryCli.stdout).to.match(new RegExp(`to cut back\\s+1 file longer than committed .*: a ${longer} -> ${committed.length} B`));
    expect(fs.statSync(path.join(dir, 'a')).size, 'a dry run changes nothing').to.be.above(committed.length);

    const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(again.recovery.epoch).to.equal(2);
    expect(again.recovery.replayedEpochs, 'epoch 2 applied, then the file cut back').to.equal(1);
    expect(again.recovery.cutBack).to.deep.equal([{ name: 'a', size: committed.length, from: longer }]);
    expect(again.recovery.filesTouched).to.include('a');
    expect(fs.readFileSync(path.join(dir, 'a')).equals(committed)).to.equal(true);
    const g = await again.open('a', 'r+');
    expect(g.resumed).to.equal(true);
    expect(g.tell()).to.equal(committed.length);
    await again.close();
    // Recovery is idempotent: a second one finds nothing to cut.
    const third = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(third.recovery.cutBack).to.deep.equal([]);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(committed)).to.equal(true);
  });

  it('a damaged last COMMIT rolls the store back one epoch, direct appends of that epoch included', async () => {
    const dir = await sb.dir();
    await leftOpen(dir, block(9, 0, 3000));
    const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
    const f = await store.open('a', 'r+');
    await store.check(); // listed open by two commits: its appends may go direct (store.ts directStart)
    await f.write(block(9, 1, 40000));
    await store.check();
    expect(store.stats().bytesDirect).to.equal(40000);
    await crash(store);
    // Lose the last COMMIT, as a misdirected or lost write could: it looks like a torn tail.
    const recs = await records(dir);
    const last = recs.filter((r) => r.header.type === RecordType.COMMIT).pop()!;
    expect(last.header.epoch).to.equal(3);
    const seg = fs.openSync(path.join(dir, '.cpfile', 'journal', segmentFileName(last.index)), 'r+');
    fs.writeSync(seg, Buffer.alloc(last.size), 0, last.size, last.offset);
    fs.closeSync(seg);
    const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(again.recovery.epoch).to.equal(2);
    expect(again.recovery.cutBack).to.deep.equal([{ name: 'a', size: 3000, from: 43000 }]);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(block(9, 0, 3000))).to.equal(true);
  });

  it('a file first listed open by the last COMMIT takes no direct appends: damage that rolls back past that COMMIT leaves it exactly as before', async () => {
    const dir = await sb.dir();
    const first = await openStore(dir, { inline: true, noLock: true });
    await first.writeFile('c', block(21, 0, 1000));
    await first.close(); // checked and applied: epoch 1
    const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
    const f = await store.open('c', 'a');
    expect(await store.check()).to.equal(2); // c listed open for the first time
    await f.write(block(21, 1, 50000)); // epoch 3, never checked
    expect(store.stats().bytesDirect, 'no direct appends one commit after the first listing').to.equal(0);
    await crash(store);
    // Lose epoch 2's COMMIT (undetectable: it looks like a torn tail): recovery rolls back to epoch 1,
    // whose catalog does not list c; had epoch 3's appends gone direct, nothing would cut them off.
    const recs = await records(dir);
    const c3 = recs.filter((r) => r.header.type === RecordType.COMMIT && r.header.epoch === 2).pop()!;
    const seg = fs.openSync(path.join(dir, '.cpfile', 'journal', segmentFileName(c3.index)), 'r+');
    fs.writeSync(seg, Buffer.alloc(c3.size), 0, c3.size, c3.offset);
    fs.closeSync(seg);
    // The journaled appends of epoch 3 are evidence of the damage (ECORRUPT); forced past it, the store
    // is at epoch 1 with c exactly as it was: nothing of epoch 3 is in the file.
    const again = sb.track(await openStore(dir, { inline: true, noLock: true, force: true }));
    expect(again.recovery.epoch).to.equal(1);
    expect(fs.readFileSync(path.join(dir, 'c')).equals(block(21, 0, 1000))).to.equal(true);
  });

  it('the control file losing its newest slot: the replay starts at the cursor the last COMMIT records, not before a truncate that direct appends followed', async () => {
    const dir = await sb.dir();
    // Applies happen only when asked for: rollback() applies every committed epoch first.
    const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
    const f = await store.open('a', 'w+');
    await f.write(block(12, 0, 4000));
    await store.check();
    await store.rollback(); // applies epoch 1: a control file write
    await f.truncate(1000); // epoch 2: a truncate
    await f.write(block(12, 1, 500), 0, 500, 1000);
    await store.check();
    await store.rollback(); // applies epoch 2 (the other slot), before the direct appends below
    await f.write(block(12, 2, 30000), 0, 30000, 1500); // epoch 3: direct, never applied
    await store.check();
    expect(store.stats().bytesDirect).to.equal(30000);
    expect(store.stats().appliedEpoch).to.equal(2);
    await crash(store);
    const want = Buffer.concat([block(12, 0, 1000), block(12, 1, 500), block(12, 2, 30000)]);
    // Lose the newest control slot (a flipped bit): the older one points before epoch 2's truncate.
    const ctlFile = path.join(dir, '.cpfile', 'control');
    const ctl = fs.readFileSync(ctlFile);
    const slots = [0, CONTROL_SLOT_SIZE].map((at) => decodeControlSlot(ctl.subarray(at, at + CONTROL_SLOT_SIZE)));
    const newest = slots.map((d, i) => ({ i, c: d.ok ? d.state.counter : -1 })).sort((x, y) => y.c - x.c)[0].i;
    ctl[newest * CONTROL_SLOT_SIZE + 100] ^= 1;
    fs.writeFileSync(ctlFile, ctl);
    const dry = await recover({ io: nodeIO, dir, dryRun: true });
    expect(dry.report.staleControl).to.equal(true);
    const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(again.recovery.staleControl).to.equal(true);
    expect(again.recovery.epoch).to.equal(3);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(want), 'the direct appends survive').to.equal(true);
    await again.close();
    const third = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(third.recovery.staleControl, 'the control file was repaired').to.equal(false);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(want)).to.equal(true);
  });

  it('rollback() cuts the file back, and the next epoch appends directly again', async () => {
    const { dir, store, f } = await checkedFile({ directAppendMin: 1 }, 'w+', block(4, 0, 4000));
    await f.write(block(4, 1, 50000));
    expect((await f.stat()).size).to.equal(54000);
    await store.rollback();
    expect((await f.stat()).size).to.equal(4000);
    expect(fs.statSync(path.join(dir, 'a')).size, 'the direct bytes are gone from the file').to.equal(4000);
    expect(f.tell()).to.equal(4000);
    await f.write(block(4, 2, 9000));
    await store.check();
    await store.close({ discard: true });
    expect(fs.readFileSync(path.join(dir, 'a')).equals(Buffer.concat([block(4, 0, 4000), block(4, 2, 9000)]))).to.equal(true);
  });

  it('close({ discard: true }) cuts the file back too', async () => {
    const { dir, store, f } = await checkedFile({ directAppendMin: 1 }, 'w', 'committed');
    await f.write(block(5, 0, 100000));
    await store.close({ discard: true });
    expect(fs.readFileSync(path.join(dir, 'a'), 'utf8')).to.equal('committed');
  });

  it('overwrites below where direct appends began, truncates and writes past them in the same epoch give the same bytes as the journal alone', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const results: Buffer[] = [];
      for (const directAppendMin of [false, 1, 3000] as const) {
        const dir = await sb.dir();
        const first = await openStore(dir, { inline: true, noLock: true });
        await first.writeFile('a', block(seed, 99999, 777));
        await first.close();
        const store = await sb.open(dir, { inline: seed % 2 === 0, noLock: true, directAppendMin, applyDelay: seed % 3 === 0 ? 0 : 3600_000, applyThreshold: seed % 3 === 0 ? 0 : 2 ** 40 });
        const f = await store.open('a', 'r+');
        f.seek(0, 'end');
        await store.check(); // the entry is in the catalog from now on
        await store.check(); // and listed open by two commits: its appends may go direct
        let x = seed;
        const rnd = (n: number): number => { x = (x * 1103515245 + 12345) % 2 ** 31; return x % n; };
        let size = 777;
        for (let op = 0; op < 120; op++) {
          const k = rnd(20);
          if (k < 12) {
            const len = 1 + rnd(9000);
            await f.write(block(seed, op, len), 0, len, null); // append at the position (the end, mostly)
            size = Math.max(size, f.tell());
          } else if (k < 15) {
            const at = rnd(size + 1);
            const len = 1 + rnd(3000);
            await f.write(block(seed, op + 1000, len), 0, len, at);
            size = Math.max(size, at + len);
          } else if (k < 16) {
            size = rnd(size + 1);
            await f.truncate(size);
            f.seek(0, 'end');
          } else if (k < 17) {
            f.seek(rnd(size + 20000));
          } else if (k < 19) {
            await store.check();
          } else {
            await store.rollback();
            size = (await f.stat()).size;
          }
          const got = Buffer.alloc(size);
          await f.read(got, 0, size, 0);
          expect((await f.stat()).size, `seed ${seed} ${directAppendMin} op ${op}`).to.equal(size);
          if (op % 10 === 0) results.push(got);
        }
        await store.check();
        if (directAppendMin !== false) expect(store.stats().bytesDirect, `seed ${seed} ${directAppendMin}: some appends went direct`).to.be.above(0);
        await store.close();
        results.push(fs.readFileSync(path.join(dir, 'a')));
      }
      const n = results.length / 3;
      for (let i = 0; i < n; i++) {
        expect(results[n + i].equals(results[i]), `seed ${seed} directAppendMin 1, sample ${i}`).to.equal(true);
        expect(results[2 * n + i].equals(results[i]), `seed ${seed} directAppendMin 3000, sample ${i}`).to.equal(true);
      }
    }
  });

  it('a truncate ends the epoch\'s direct appends: later writes past it are journaled and applied after it', async () => {
    for (const cut of [3000, 9000, 20000]) {
      const { dir, store, f } = await checkedFile({ directAppendMin: 1 }, 'w+', block(8, 0, 1000));
      await f.write(block(8, 1, 10000)); // direct: [1000, 11000)
      await f.truncate(cut); // inside the direct bytes, or past them
      await f.write(block(8, 2, 5000), 0, 5000, cut + 100); // past the cut (and past where direct appends began)
      const want = Buffer.alloc(cut + 5100);
      Buffer.concat([block(8, 0, 1000), block(8, 1, 10000)]).copy(want, 0, 0, Math.min(cut, 11000));
      block(8, 2, 5000).copy(want, cut + 100);
      expect((await store.readFile('a')).equals(want), `${cut}: before the check`).to.equal(true);
      await store.check();
      await store.close();
      expect(fs.readFileSync(path.join(dir, 'a')).equals(want), `${cut}: on disk`).to.equal(true);
    }
  });

  it('only a file the last commit lists as open takes direct appends: one opened in this epoch is journaled', async () => {
    const dir = await sb.dir();
    const first = await openStore(dir, { inline: true, noLock: true });
    await first.writeFile('b', block(10, 0, 2000));
    await first.close();
    const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
    const f = await store.open('b', 'r+');
    f.seek(0, 'end');
    await f.write(block(10, 1, 50000));
    expect(store.stats().bytesDirect).to.equal(0);
    await f.read(Buffer.alloc(1), 0, 1, 0);
    await crash(store);
    const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(fs.readFileSync(path.join(dir, 'b')).equals(block(10, 0, 2000))).to.equal(true);
    await again.close();
  });

  describe('a file listed open by one commit, since an applied epoch (created in the previous epoch, or recovered by a reopen)', () => {
    /** `n` created and written `first` bytes in epoch 1 (journaled), checked, and epoch 1 applied (and nothing applied after): `n` is listed open by one commit only. */
    async function created(): Promise<{ dir: string; store: Store; f: CpFile; first: Buffer }> {
      const dir = await sb.dir();
      const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
      const f = await store.open('n', 'w+');
      const first = block(31, 0, 70000);
      await f.write(first);
      expect(store.stats().bytesDirect, 'the creating epoch is journaled').to.equal(0);
      expect(await store.check()).to.equal(1);
      await applyAll(store);
      expect(store.stats().appliedEpoch).to.equal(1);
      return { dir, store, f, first };
    }

    it('takes direct appends at once (listed by one commit, but since an applied epoch); a crash before the check cuts them off', async () => {
      const { dir, store, f, first } = await created();
      await f.write(block(31, 1, 50000));
      expect(store.stats().bytesDirect).to.equal(50000);
      await flushed(f, 100000);
      await crash(store);
      expect(fs.statSync(path.join(dir, 'n')).size, 'the uncommitted appends reached the file').to.equal(120000);
      const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
      expect(again.recovery.epoch).to.equal(1);
      expect(again.recovery.cutBack).to.deep.equal([{ name: 'n', size: 70000, from: 120000 }]);
      expect(fs.readFileSync(path.join(dir, 'n')).equals(first)).to.equal(true);
    });

    it('checked: the direct bytes survive a crash; damage to the applied epoch\'s COMMIT is corruption (ECORRUPT), never a silent rollback that would leave them in a file no catalog lists', async () => {
      const { dir, store, f, first } = await created();
      const more = block(31, 2, 50000);
      await f.write(more);
      expect(store.stats().bytesDirect).to.equal(50000);
      expect(await store.check()).to.equal(2);
      await crash(store);
      const copy = await sb.dir();
      fs.cpSync(dir, copy, { recursive: true });
      const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
      expect(again.recovery.epoch).to.equal(2);
      expect(fs.readFileSync(path.join(dir, 'n')).equals(Buffer.concat([first, more]))).to.equal(true);
      await again.close();
      // The other copy: zero epoch 1's COMMIT, which would look like a torn tail were epoch 1 not applied.
      await zeroRecords(copy, RecordType.COMMIT, [1]);
      await expectCpError(() => openStore(copy, { inline: true, noLock: true }), 'ECORRUPT');
    });

    it('not before the creating epoch is applied: until then its appends are journaled', async () => {
      const dir = await sb.dir();
      const store = await openStore(dir, { ...HELD, directAppendMin: 1 });
      const f = await store.open('n', 'w');
      await f.write(block(32, 0, 70000));
      expect(await store.check()).to.equal(1);
      await f.write(block(32, 1, 50000));
      expect(store.stats().appliedEpoch).to.equal(0);
      expect(store.stats().bytesDirect, 'epoch 1 unapplied: no direct appends in epoch 2').to.equal(0);
      await store.close();
    });

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
      const s1 = await openStore(dir, { ...HELD, directAppendMin: 1 });
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

  describe('a bulk append that only the apply of committed epochs keeps in the journal waits for that apply (default apply options)', () => {
    /** Default applyThreshold and applyDelay (an early apply is allowed); the idle-delay apply is pushed far off so that only the wait can apply. */
    const EARLY = { inline: true, noLock: true, directAppendMin: 1, applyDelay: 3600_000 } as const;

    it('created and written in epoch 1: the first append of epoch 2 applies epoch 1 and goes direct; checked it survives a crash, unchecked it is cut off', async () => {
      for (const checked of [true, false]) {
        const dir = await sb.dir();
        const store = await openStore(dir, EARLY);
        const f = await store.open('n', 'w+');
        const first = block(51, 0, 70000);
        await f.write(first);
        expect(await store.check()).to.equal(1);
        expect(store.stats().appliedEpoch, 'the idle-delay apply has not run').to.equal(0);
        const more = block(51, 1, 50000);
        await f.write(more);
        expect(store.stats().appliedEpoch, 'the append waited for the apply of epoch 1').to.equal(1);
        expect(store.stats().bytesDirect).to.equal(50000);
        expect(fs.readFileSync(path.join(dir, 'n')).subarray(0, 70000).equals(first), 'epoch 1 is in the file').to.equal(true);
        if (checked) expect(await store.check()).to.equal(2);
        await flushed(f, 119999);
        await crash(store);
        const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
        expect(again.recovery.epoch).to.equal(checked ? 2 : 1);
        expect(fs.readFileSync(path.join(dir, 'n')).equals(checked ? Buffer.concat([first, more]) : first)).to.equal(true);
        await again.close();
      }
    });

    it('a committed truncate: the append after it waits for its apply, goes direct, and a crash keeps truncated size plus the checked bytes', async () => {
      const dir = await sb.dir();
      const store = await openStore(dir, EARLY);
      const f = await store.open('n', 'w');
      const first = block(52, 0, 70000);
      await f.write(first);
      await store.check();
      await store.check();
      await applyAll(store);
      await f.truncate(10000);
      expect(await store.check()).to.equal(3);
      const m = block(52, 1, 50000);
      await f.write(m, 0, m.length, 10000);
      expect(store.stats().appliedEpoch).to.equal(3);
      expect(store.stats().bytesDirect).to.equal(50000);
      expect(await store.check()).to.equal(4);
      await crash(store);
      const again = sb.track(await openStore(dir, { inline: true, noLock: true }));
      expect(again.recovery.epoch).to.equal(4);
      expect(fs.readFileSync(path.join(dir, 'n')).equals(Buffer.concat([first.subarray(0, 10000), m]))).to.equal(true);
      await again.close();
    });

    it('no wait for what this epoch itself created, nor in a store that holds its epochs (applyThreshold above 4 x maxInflight)', async () => {
      // this epoch's own create: nothing committed to apply, journaled
      const d1 = await sb.dir();
      const s1 = await openStore(d1, EARLY);
      const f1 = await s1.open('n', 'w');
      await f1.write(block(53, 0, 70000));
      expect(s1.stats().bytesDirect).to.equal(0);
      await s1.close();
      // a held store: journaled, nothing applied
      const d2 = await sb.dir();
      const s2 = await openStore(d2, { ...EARLY, applyThreshold: 4 * 16 * MiB + 1 });
      const f2 = await s2.open('n', 'w');
      await f2.write(block(53, 1, 70000));
      await s2.check();
      await f2.write(block(53, 2, 50000));
      expect(s2.stats().appliedEpoch).to.equal(0);
      expect(s2.stats().bytesDirect).to.equal(0);
      await s2.close();
    });
  });

  it('sizes in the catalog follow every change: writeFile of an entry left open by an earlier run, and no size (no cut) for read-only entries', async () => {
    const dir = await sb.dir();
    const first = await openStore(dir, { inline: true, noLock: true });
    await (await first.open('u', 'w')).write(block(11, 0, 100));
    await first.writeFile('r', block(11, 1, 100));
    await first.close(); // 'u' stays an unfinished entry, with its size, in the catalog
    const second = await openStore(dir, { inline: true, noLock: true });
    await second.writeFile('u', block(11, 2, 300)); // not reopened: still an entry, now 300 bytes
    const r = await second.open('r', 'r');
    await second.check();
    await second.close();
    fs.appendFileSync(path.join(dir, 'r'), 'appended by another program');
    const third = sb.track(await openStore(dir, { inline: true, noLock: true }));
    expect(third.recovery.cutBack).to.deep.equal([]);
    expect(fs.readFileSync(path.join(dir, 'u')).equals(block(11, 2, 300)), 'u keeps its new content').to.equal(true);
    expect(fs.readFileSync(path.join(dir, 'r')).length, 'a read-only entry is never cut').to.equal(100 + 27);
    void r;
  });

  it('a stream of bulk appends goes direct from the first append of each epoch; a small epoch after it goes back to the journal', async () => {
    const { dir, store, f } = await checkedFile({ directAppendMin: 64 * KiB }, 'w');
    const direct = (): number => store.stats().bytesDirect;
    for (let i = 0; i < 16; i++) await f.write(block(13, i, 16 * KiB));
    await store.check();
    expect(direct(), 'epoch A: direct once its appends reach 64 KiB').to.equal(13 * 16 * KiB);
    await f.write(block(13, 100, 16 * KiB));
    await store.check();
    expect(direct(), 'epoch B: direct from its first append').to.equal(14 * 16 * KiB);
    await f.write(block(13, 101, 16 * KiB));
    await store.check();
    expect(direct(), 'epoch C: B appended little, so C starts in the journal').to.equal(14 * 16 * KiB);
    await store.close();
    const want = Buffer.concat([...Array.from({ length: 16 }, (_, i) => block(13, i, 16 * KiB)), block(13, 100, 16 * KiB), block(13, 101, 16 * KiB)]);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(want)).to.equal(true);
  });

  it('directAppendMin is validated', async () => {
    const dir = await sb.dir();
    for (const bad of [0, -1, 1.5, 'x', null]) {
      await expectCpError(() => openStore(dir, { inline: true, noLock: true, directAppendMin: bad as unknown as number }), 'EINVAL');
    }
    const store = await sb.open(dir, { inline: true, noLock: true, directAppendMin: false });
    const f = await store.open('a', 'w');
    await store.check();
    await settled(store);
    await f.write(block(7, 0, 2 * MiB));
    await store.check();
    expect(store.stats().bytesJournaled, 'off: everything is journaled').to.be.above(2 * MiB);
  });
});
