/**
 * Two-phase epochs (FORMAT.md R18): prepare() makes an epoch durable and undecided; commit() and
 * abort() decide it; a crash in between leaves it in doubt, and recovery asks resolveInDoubt or
 * stops with EINDOUBT, changing nothing. What calls made while prepared do, misuse, direct appends,
 * and the journal records each step leaves.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { openStore, type Store, type StoreOptions, type PreparedEpoch } from '../lib/index.js';
import { RecordType } from '../lib/format.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { crash, records, openHeld, NO_APPLY, segmentPath } from './helpers/journal.js';
import { interceptIO, injected } from './helpers/intercept-io.js';

const MiB = 1024 * 1024;
const text = (dir: string, name: string): string => fs.readFileSync(path.join(dir, name), 'utf8');

/** A digest of every file under `dir` (names, sizes, bytes): recovery that must change nothing keeps it. */
function treeDigest(dir: string): string {
  const h = createHash('sha1');
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name !== 'lock' && !e.name.startsWith('owner.')) h.update(`${path.relative(dir, p)}\0`).update(fs.readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/** A store with epoch 1 committed ("one"), then "two" written and prepared; crashed while in doubt. */
async function inDoubtStore(sb: Sandbox, extra: StoreOptions = {}): Promise<{ dir: string; id: string; epoch: number }> {
  const dir = await sb.dir();
  const s = await openHeld(dir, extra);
  const f = await s.open('a.txt', 'w');
  await f.write(Buffer.from('one'));
  await s.check();
  await f.write(Buffer.from('two'));
  const p = await s.prepare({ id: 'tx-in-doubt' });
  await crash(s);
  return { dir, id: p.id, epoch: p.epoch };
}

describe('two-phase epochs: prepare, commit, abort', function () {
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('prepare() makes the epoch durable undecided; commit() commits it, with its number and entries', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    expect(s.id).to.match(/^[0-9a-f]{16}$/);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('hello'));
    const p = await s.prepare();
    expect(p.epoch).to.equal(1);
    expect(p.id).to.match(/^[0-9a-f]{32}$/);
    expect(p.storeId).to.equal(s.id);
    expect(p.decision).to.equal(null);
    expect(s.prepared).to.equal(p);
    expect(p.entries).to.deep.equal([{ name: 'a.txt', position: 5, state: 'open', size: 5 }]);
    expect(s.epoch).to.equal(0);
    expect(await p.commit()).to.equal(1);
    expect(p.decision).to.equal('commit');
    expect(s.prepared).to.equal(null);
    expect(s.epoch).to.equal(1);
    const kinds = (await records(dir)).map((r) => r.header.type);
    expect(kinds.slice(-2)).to.deep.equal([RecordType.PREPARE, RecordType.COMMIT_PREPARED]);
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('hello');
  });

  it('abort() discards the epoch: files, names and positions return to the last commit', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('kept'));
    await s.check();
    await f.write(Buffer.from('-gone'));
    const g = await s.open('new.txt', 'w');
    await g.write(Buffer.from('new'));
    const p = await s.prepare();
    await p.abort();
    expect(p.decision).to.equal('abort');
    expect(s.epoch).to.equal(1);
    expect(f.tell()).to.equal(4);
    expect(g.closed).to.equal(true);
    await expectCpError(() => g.write(Buffer.from('x')), 'EBADF');
    expect(await s.check()).to.equal(2);
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('kept');
    expect(fs.existsSync(path.join(dir, 'new.txt'))).to.equal(false);
  });

  it('calls made while prepared run after the decision: in the next epoch after a commit, discarded by an abort', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('A'));
    const p1 = await s.prepare();
    const order: string[] = [];
    const w = f.write(Buffer.from('B')).then(() => order.push('write'));
    const c = s.check().then((e) => { order.push(`check ${e}`); return e; });
    await new Promise((r) => setTimeout(r, 30));
    expect(order).to.deep.equal([]);
    await p1.commit().then(() => order.push('commit'));
    await w;
    expect(await c).to.equal(2);
    expect([...order].sort()).to.deep.equal(['check 2', 'commit', 'write']);
    expect(order[2]).to.equal('check 2');

    const p3 = await s.prepare();
    expect(p3.epoch).to.equal(3);
    const w2 = f.write(Buffer.from('C'));
    const h = s.open('later.txt', 'w');
    await p3.abort();
    await w2;
    expect((await h).closed).to.equal(true);
    expect(f.tell()).to.equal(2);
    expect(await s.check()).to.equal(3);
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('AB');
    expect(fs.existsSync(path.join(dir, 'later.txt'))).to.equal(false);
  });

  it('prepare() takes effect in call order: an unawaited write called right after it is not in the epoch', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await s.check();
    void f.write(Buffer.from('in'));
    const pp = s.prepare();
    const late = f.write(Buffer.from('-late'));
    const p = await pp;
    expect(p.entries).to.deep.equal([{ name: 'a.txt', position: 2, state: 'open', size: 2 }]);
    await p.abort();
    await late;
    expect(f.tell()).to.equal(0);
    await expectCpError(() => s.prepare('x' as never), 'EINVAL');
    await expectCpError(() => s.prepare(null as never), 'EINVAL');
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('');
  });

  it('a check() called while prepared builds on the prepared epoch: after an abort it rejects with EPREPARED and commits nothing', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('A'));
    await s.check();
    await f.write(Buffer.from('B'));
    const p = await s.prepare();
    const w = f.write(Buffer.from('C'));
    const c = s.check();
    const q = s.prepare();
    await p.abort();
    await w;
    await expectCpError(() => c, 'EPREPARED');
    await expectCpError(() => q, 'EPREPARED');
    expect(s.epoch).to.equal(1);
    expect(f.tell()).to.equal(1);
    expect(await s.check()).to.equal(2);
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('A');
  });

  it('prepare() while prepared waits for the decision; commit({ sync: false }) resolves before the sync', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('1'));
    const p1 = await s.prepare();
    let second: PreparedEpoch | null = null;
    const p2p = s.prepare().then((p) => { second = p; return p; });
    await new Promise((r) => setTimeout(r, 30));
    expect(second).to.equal(null);
    expect(await p1.commit({ sync: false })).to.equal(1);
    const p2 = await p2p;
    expect(p2.epoch).to.equal(2);
    await p2.commit();
    expect(s.epoch).to.equal(2);
    await s.close();
  });

  it('misuse: a second decision, a bad id, close() while prepared: CpError, nothing lost', async () => {
    const dir = await sb.dir();
    const s = await sb.open(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('x'));
    await expectCpError(() => s.prepare({ id: '' }), 'EINVAL');
    await expectCpError(() => s.prepare({ id: 'a\nb' }), 'EINVAL');
    await expectCpError(() => s.prepare({ id: 'x'.repeat(256) }), 'EINVAL');
    const p = await s.prepare({ id: 'tx-1' });
    await expectCpError(() => s.close(), 'EPREPARED');
    const c1 = p.commit();
    expect(p.commit()).to.equal(c1);
    await c1;
    await expectCpError(() => p.abort(), 'EPREPARED');
    const q = await s.prepare({ id: 'tx-2' });
    await q.abort();
    await expectCpError(() => q.commit(), 'EPREPARED');
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('x');
  });

  it('close({ discard: true }) while prepared aborts the epoch', async () => {
    const dir = await sb.dir();
    const s = await openStore(dir, { segmentSize: MiB });
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('one'));
    await s.check();
    await f.write(Buffer.from('two'));
    await s.prepare();
    await s.close({ discard: true });
    const t = await sb.open(dir);
    expect(t.epoch).to.equal(1);
    expect(t.recovery.inDoubt).to.equal(null);
    await t.close();
    expect(text(dir, 'a.txt')).to.equal('one');
  });

  it('direct appends of a prepared epoch: kept by a commit, cut back by an abort', async () => {
    for (const decision of ['commit', 'abort'] as const) {
      const dir = await sb.dir();
      const s = await sb.open(dir, { directAppendMin: 64 * 1024, segmentSize: 4 * MiB });
      const f = await s.open('big.bin', 'w');
      await f.write(Buffer.alloc(1000, 1));
      await s.check();
      await s.check();
      // Its creation applied: nothing pending creates or truncates it (write-path.ts directStart).
      for (let i = 0; i < 2000 && s.stats().applyLag.bytes > 0; i++) await new Promise((r) => setTimeout(r, 2));
      await s.readFile('no-such-file').catch(() => undefined);
      for (let i = 0; i < 8; i++) await f.write(Buffer.alloc(64 * 1024, 2 + i));
      expect(s.stats().bytesDirect, 'the epoch took direct appends').to.be.greaterThan(0);
      const p = await s.prepare();
      if (decision === 'commit') await p.commit();
      else await p.abort();
      await s.close();
      const size = fs.statSync(path.join(dir, 'big.bin')).size;
      expect(size, decision).to.equal(decision === 'commit' ? 1000 + 8 * 64 * 1024 : 1000);
    }
  });
});

describe('two-phase epochs: recovery of an epoch in doubt', function () {
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('without resolveInDoubt: EINDOUBT naming the id, the epoch and the store, and nothing changed', async () => {
    const { dir, id, epoch } = await inDoubtStore(sb);
    const before = treeDigest(dir);
    const err = await expectCpError(() => openStore(dir, NO_APPLY), 'EINDOUBT');
    expect(err.details).to.deep.include({ id, epoch });
    expect((err.details as { storeId: string }).storeId).to.match(/^[0-9a-f]{16}$/);
    expect(err.message).to.include(id).and.include('--commit-prepared');
    expect(treeDigest(dir)).to.equal(before);
  });

  it('a resolver that throws or answers anything else: EINDOUBT with the cause, nothing changed', async () => {
    const { dir } = await inDoubtStore(sb);
    const before = treeDigest(dir);
    const boom = new Error('database down');
    const e1 = await expectCpError(() => openStore(dir, { ...NO_APPLY, resolveInDoubt: () => { throw boom; } }), 'EINDOUBT');
    expect(e1.cause).to.equal(boom);
    expect(e1.message).to.include('database down');
    for (const answer of ['yes', undefined, 1, null]) {
      await expectCpError(() => openStore(dir, { ...NO_APPLY, resolveInDoubt: (() => answer) as never }), 'EINDOUBT');
    }
    await expectCpError(() => openStore(dir, { ...NO_APPLY, resolveInDoubt: 'commit' as never }), 'EINVAL');
    expect(treeDigest(dir)).to.equal(before);
  });

  it("'commit': the epoch's files and positions, the decision made durable, a second open asks nobody", async () => {
    const { dir, id, epoch } = await inDoubtStore(sb);
    const asked: unknown[] = [];
    const s = await openStore(dir, { ...NO_APPLY, resolveInDoubt: async (q) => { asked.push(q); return 'commit' as const; } });
    expect(asked).to.deep.equal([{ id, epoch, storeId: s.id, dir: path.resolve(dir) }]);
    expect(s.epoch).to.equal(2);
    expect(s.recovery.inDoubt).to.deep.include({ id, epoch, decision: 'commit' });
    expect(s.recovery.entries).to.deep.equal([{ name: 'a.txt', position: 6, state: 'open', size: 6 }]);
    await crash(s);
    expect(text(dir, 'a.txt')).to.equal('onetwo');
    const t = await openStore(dir, { ...NO_APPLY, resolveInDoubt: () => { throw new Error('must not be asked'); } });
    expect(t.epoch).to.equal(2);
    expect(t.recovery.inDoubt).to.equal(null);
    await t.close();
  });

  it("'abort': the previous epoch's files and positions; the prepared epoch never comes back", async () => {
    const { dir, id } = await inDoubtStore(sb);
    const s = await openStore(dir, { ...NO_APPLY, resolveInDoubt: () => 'abort' });
    expect(s.epoch).to.equal(1);
    expect(s.recovery.inDoubt).to.deep.include({ id, decision: 'abort' });
    expect(s.recovery.entries).to.deep.equal([{ name: 'a.txt', position: 3, state: 'open', size: 3 }]);
    await crash(s);
    expect(text(dir, 'a.txt')).to.equal('one');
    const t = await openStore(dir, { ...NO_APPLY, resolveInDoubt: () => { throw new Error('must not be asked'); } });
    expect(t.epoch).to.equal(1);
    await t.close();
    expect(text(dir, 'a.txt')).to.equal('one');
  });

  it("an 'abort' is durable before its direct appends are cut back: a recovery that failed there does not ask again", async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir, { directAppendMin: 64 * 1024, segmentSize: 4 * MiB });
    const f = await s.open('big.bin', 'w');
    await f.write(Buffer.alloc(1000, 1));
    await s.check();
    await s.check();
    await crash(s);
    const t = await openHeld(dir, { directAppendMin: 64 * 1024, segmentSize: 4 * MiB });
    const g = await t.open('big.bin', 'r+');
    g.seek(0, 'end');
    await t.check();
    for (let i = 0; i < 8; i++) await g.write(Buffer.alloc(64 * 1024, 2 + i));
    expect(t.stats().bytesDirect).to.be.greaterThan(0);
    await t.prepare({ id: 'cut' });
    await crash(t);
    expect(fs.statSync(path.join(dir, 'big.bin')).size).to.be.greaterThan(1000);
    // The cut-back (an ftruncate of big.bin) fails: recovery stops after writing its decision.
    let cuts = 0;
    const failing = interceptIO(async (call, args, next) => {
      if (call === 'ftruncate' && (args[1] as number) === 1000) {
        cuts++;
        throw injected('EIO', 'ftruncate');
      }
      return next();
    });
    await expectCpError(() => openStore(dir, { ...NO_APPLY, io: failing, resolveInDoubt: () => 'abort' }), 'EIO');
    expect(cuts).to.equal(1);
    // Asked again, a different answer would keep a file shorter than its entry: it must not be asked.
    const u = await openStore(dir, { ...NO_APPLY, resolveInDoubt: () => { throw new Error('must not be asked'); } });
    expect(u.epoch).to.equal(3);
    expect(u.recovery.inDoubt).to.equal(null);
    await u.close();
    expect(fs.statSync(path.join(dir, 'big.bin')).size).to.equal(1000);
  });

  it('a crash after the decision was written (commit sync: false) recovers it without asking', async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('x'));
    const p = await s.prepare();
    await p.commit({ sync: false });
    await crash(s);
    const t = await openStore(dir, { ...NO_APPLY, resolveInDoubt: () => { throw new Error('must not be asked'); } });
    expect(t.epoch).to.equal(1);
    await t.close();
    expect(text(dir, 'a.txt')).to.equal('x');
  });

  it('a torn decision is in doubt; one followed by a valid record of a later epoch is corruption', async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir);
    const f = await s.open('a.txt', 'w');
    await f.write(Buffer.from('x'));
    const p = await s.prepare({ id: 'torn' });
    await p.commit({ sync: false });
    await crash(s);
    const recs = await records(dir);
    const dec = recs.find((r) => r.header.type === RecordType.COMMIT_PREPARED)!;
    const fd = fs.openSync(segmentPath(dir, dec), 'r+');
    fs.writeSync(fd, Buffer.alloc(8, 0xff), 0, 8, dec.offset + 24);
    fs.closeSync(fd);
    const err = await expectCpError(() => openStore(dir, NO_APPLY), 'EINDOUBT');
    expect(err.details).to.deep.include({ id: 'torn', epoch: 1 });

    // The same torn decision, but the next epoch was written after it (so after its sync, R4): damage.
    const dir2 = await sb.dir();
    const s2 = await openHeld(dir2);
    const g = await s2.open('a.txt', 'w');
    await g.write(Buffer.from('x'));
    await (await s2.prepare({ id: 'torn2' })).commit();
    await g.write(Buffer.from('y'));
    await s2.check();
    await crash(s2);
    const dec2 = (await records(dir2)).find((r) => r.header.type === RecordType.COMMIT_PREPARED)!;
    const fd2 = fs.openSync(segmentPath(dir2, dec2), 'r+');
    fs.writeSync(fd2, Buffer.alloc(8, 0xff), 0, 8, dec2.offset + 24);
    fs.closeSync(fd2);
    const e2 = await expectCpError(() => openStore(dir2, { ...NO_APPLY, resolveInDoubt: () => 'commit' }), 'ECORRUPT');
    expect(e2.details).to.deep.include({ kind: 'damaged-record-before-commits' });
  });

  it('in doubt after a process with a worker flusher is killed (SIGKILL) right after prepare()', async () => {
    const dir = await sb.dir();
    const lib = new URL('../lib/index.js', import.meta.url).href;
    const script = `import { openStore } from ${JSON.stringify(lib)};
      const s = await openStore(process.argv[1]);
      const f = await s.open('a.txt', 'w');
      await f.write(Buffer.from('one'));
      await s.check();
      await f.write(Buffer.from('two'));
      await s.prepare({ id: 'killed-tx' });
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { encoding: 'utf8', timeout: 30000 });
    expect(r.signal, r.stderr).to.equal('SIGKILL');
    await expectCpError(() => openStore(dir), 'EINDOUBT');
    const s: Store = await openStore(dir, { resolveInDoubt: ({ id }) => (id === 'killed-tx' ? 'commit' : 'abort') });
    expect(s.epoch).to.equal(2);
    await s.close();
    expect(text(dir, 'a.txt')).to.equal('onetwo');
  });
});
