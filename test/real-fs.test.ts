/**
 * Real faults on real file systems (issue #10): the file system's size limit (EFBIG), files and
 * directories that cannot be changed (EPERM as root with chattr +i, EACCES as a non-root user), a
 * full disk (ENOSPC) during an epoch's writes, its check and the background apply, and an ext4
 * that turns read-only in the middle. Each test mounts a small loop ext4 image (test/helpers/realfs.ts)
 * and skips visibly where that is impossible (not root, no loop devices).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CpError, openStore } from '../lib/index.js';
import { probeMaxFileSize, nodeIO } from '../lib/io.js';
import { SimFS } from './torture/simfs.js';
import { expectCpError, Sandbox, type Store } from './helpers/sandbox.js';
import { mountReal, chattr, testUser, type RealFs } from './helpers/realfs.js';

const NO_APPLY = { applyDelay: 3600_000, applyThreshold: 2 ** 40, segmentSize: 1 << 20 };

/** Did this rejection carry `code`, directly or as the cause of EREOPEN? */
function carries(e: unknown, ...codes: string[]): boolean {
  if (!(e instanceof CpError)) return false;
  if (codes.includes(e.code)) return true;
  const c = (e as { cause?: unknown }).cause;
  return e.code === 'EREOPEN' && c instanceof CpError && carries(c, ...codes);
}

async function settle(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return null;
  } catch (e) {
    return e;
  }
}

describe('real file systems (loop-mounted ext4): what the file system refuses', function () {
  this.timeout(60_000);
  let rfs: RealFs | null = null;
  let stores: Store[] = [];
  const open = async (dir: string, opts = {}): Promise<Store> => {
    const s = await openStore(dir, { ...NO_APPLY, ...opts });
    stores.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close({ discard: true }).catch(() => undefined);
    rfs?.cleanup();
    rfs = null;
  });

  it('EFBIG: a write or truncate past ext4\'s largest file (4 TiB with this image\'s 1 KiB blocks) is refused at the call; the store keeps working and reopens', async function () {
    rfs = mountReal(this, 32);
    const dir = path.join(rfs.dir, 'store');
    const t0 = performance.now();
    const limit = await probeMaxFileSize(nodeIO, rfs.dir);
    const probeMs = performance.now() - t0;
    console.log(`      probe: ext4 takes files up to ${limit} bytes; learnt in ${probeMs.toFixed(1)} ms`);
    // ext4 with extents: 2^32 - 1 blocks (4 TiB - 1 KiB with 1 KiB blocks, 16 TiB - 4 KiB with 4 KiB).
    expect([2 ** 42 - 2 ** 10, 2 ** 44 - 2 ** 12]).to.include(limit);
    const store = await open(dir);
    const f = await store.open('big', 'w+');
    await f.write('head', 0);
    await expectCpError(() => f.write('x', 2 ** 50), 'EFBIG');
    await expectCpError(() => f.truncate(2 ** 50), 'EFBIG');
    await expectCpError(() => f.truncate(limit + 1), 'EFBIG');
    // The last byte the file system takes is accepted.
    await f.write('z', limit - 1);
    expect(await store.check()).to.equal(1);
    await f.close();
    await store.close();
    stores = [];
    const again = await open(dir);
    expect(again.epoch).to.equal(store.epoch);
    expect(fs.statSync(path.join(dir, 'big')).size).to.equal(limit);
    const g = await again.open('big', 'r');
    const b = Buffer.alloc(4);
    await g.read(b, 0, 4, 0);
    expect(b.toString()).to.equal('head');
  });

  it('EPERM (chattr +i): open for writing, writeFile, unlink and rename of an immutable file, and names in an immutable directory, are refused at the call', async function () {
    rfs = mountReal(this, 32);
    const dir = path.join(rfs.dir, 'store');
    let store = await open(dir);
    await store.writeFile('a.txt', 'one');
    await store.writeFile('c.txt', 'see');
    await store.writeFile('d/keep', 'k');
    expect(await store.check()).to.equal(1);
    await store.close();
    try {
      chattr(path.join(dir, 'a.txt'), '+i');
    } catch (e) {
      console.log(`      SKIPPED: chattr +i is not supported here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
      this.skip();
    }
    chattr(path.join(dir, 'd'), '+i');
    store = await open(dir);
    for (const mode of ['r+', 'w', 'w+', 'a', 'a+'] as const) {
      const err = await expectCpError(() => store.open('a.txt', mode), 'EPERM');
      expect(err.message).to.include('a.txt');
    }
    await expectCpError(() => store.writeFile('a.txt', 'two'), 'EPERM');
    await expectCpError(() => store.unlink('a.txt'), 'EPERM');
    await expectCpError(() => store.rename('a.txt', 'b.txt'), 'EPERM');
    await expectCpError(() => store.rename('c.txt', 'a.txt'), 'EPERM');
    await expectCpError(() => store.open('d/new', 'w'), 'EPERM');
    await expectCpError(() => store.writeFile('d/new', 'n'), 'EPERM');
    await expectCpError(() => store.unlink('d/keep'), 'EPERM');
    // Reading is fine, and the store goes on.
    const r = await store.open('a.txt', 'r');
    await r.close();
    await store.writeFile('c.txt', 'sea');
    await store.check();
    await store.close();
    const last = store.epoch;
    stores = [];
    chattr(path.join(dir, 'a.txt'), '-i');
    chattr(path.join(dir, 'd'), '-i');
    store = await open(dir);
    expect(store.epoch).to.equal(last);
    expect((await store.readFile('a.txt')).toString()).to.equal('one');
    expect((await store.readFile('c.txt')).toString()).to.equal('sea');
  });

  it('a file made immutable after check() but before its apply: reopening stops with EPERM naming the file, keeps the epoch in the journal, and succeeds with all of it after chattr -i', async function () {
    rfs = mountReal(this, 32);
    const dir = path.join(rfs.dir, 'store');
    let store = await open(dir);
    await store.writeFile('a.txt', 'one');
    await store.writeFile('b.txt', 'bee');
    expect(await store.check()).to.equal(1);
    await store.close();
    store = await open(dir);
    const f = await store.open('a.txt', 'r+');
    await f.write('TWO', 0);
    await store.writeFile('b.txt', 'BEE');
    const acked = await store.check();
    try {
      chattr(path.join(dir, 'a.txt'), '+i');
    } catch (e) {
      console.log(`      SKIPPED: chattr +i is not supported here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
      this.skip();
    }
    // close() applies: that is refused, and says so.
    const closeErr = await settle(store.close());
    expect(carries(closeErr, 'EPERM'), String(closeErr)).to.equal(true);
    // close()'s own final check (an empty epoch) is durable before its apply fails.
    const durable = store.epoch;
    expect(durable).to.be.at.least(acked);
    stores = [];
    for (let i = 0; i < 2; i++) {
      const err = await expectCpError(() => open(dir), 'EPERM');
      expect(err.message).to.include('a.txt');
      expect(err.message).to.match(/operation not permitted/i);
      expect(err.details).to.deep.include({ file: 'a.txt', op: 'write' });
    }
    chattr(path.join(dir, 'a.txt'), '-i');
    store = await open(dir);
    expect(store.epoch).to.equal(durable);
    expect((await store.readFile('a.txt')).toString()).to.equal('TWO');
    expect((await store.readFile('b.txt')).toString()).to.equal('BEE');
  });

  it('EACCES as a non-root user: open for writing and writeFile of a mode-444 file, and names in a mode-555 directory, are refused at the call; unlink of the 444 file is allowed', async function () {
    const user = testUser();
    if (!user || process.getuid?.() !== 0) {
      console.log('      SKIPPED: needs root to run a child as a non-root user');
      this.skip();
    }
    const sb = new Sandbox();
    try {
      const base = await sb.dir('cpfile-eacces-');
      fs.chmodSync(base, 0o755);
      const dir = path.join(base, 'store');
      fs.mkdirSync(dir);
      fs.chownSync(dir, user!.uid, user!.gid);
      const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/index.js');
      const child = `
        import * as fs from 'node:fs';
        import { openStore } from ${JSON.stringify(lib)};
        const dir = ${JSON.stringify(dir)};
        const out = {};
        const code = async (fn) => { try { await fn(); return 'ok'; } catch (e) { return e.code + (e.message.includes('ro.txt') || e.message.includes('rodir') ? ':named' : ''); } };
        let s = await openStore(dir, { applyDelay: 0 });
        await s.writeFile('ro.txt', 'read only');
        await s.writeFile('gone.txt', 'x');
        await s.writeFile('rodir/in', 'in');
        await s.check();
        await s.close();
        fs.chmodSync(dir + '/ro.txt', 0o444);
        fs.chmodSync(dir + '/gone.txt', 0o444);
        fs.chmodSync(dir + '/rodir', 0o555);
        s = await openStore(dir, { applyDelay: 0 });
        out.openRplus = await code(() => s.open('ro.txt', 'r+'));
        out.openW = await code(() => s.open('ro.txt', 'w'));
        out.openA = await code(() => s.open('ro.txt', 'a'));
        out.writeFile = await code(() => s.writeFile('ro.txt', 'no'));
        out.createInRodir = await code(() => s.open('rodir/new', 'w'));
        out.writeFileInRodir = await code(() => s.writeFile('rodir/new2', 'n'));
        out.unlinkInRodir = await code(() => s.unlink('rodir/in'));
        out.openR = await code(async () => (await s.open('ro.txt', 'r')).close());
        out.unlink444 = await code(() => s.unlink('gone.txt'));
        out.epoch = await s.check();
        await s.close();
        s = await openStore(dir);
        out.reopened = s.epoch;
        out.content = (await s.readFile('ro.txt')).toString();
        out.goneExists = fs.existsSync(dir + '/gone.txt');
        await s.close();
        console.log(JSON.stringify(out));
      `;
      const txt = execFileSync('setpriv', [`--reuid=${user!.uid}`, `--regid=${user!.gid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', child], {
        cwd: base, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000,
      }).toString();
      const out = JSON.parse(txt.trim().split('\n').pop()!);
      expect(out).to.deep.equal({
        openRplus: 'EACCES:named', openW: 'EACCES:named', openA: 'EACCES:named', writeFile: 'EACCES:named',
        createInRodir: 'EACCES:named', writeFileInRodir: 'EACCES:named', unlinkInRodir: 'EACCES:named',
        openR: 'ok', unlink444: 'ok', epoch: 3, reopened: 4, content: 'read only', goneExists: false,
      });
    } finally {
      await sb.cleanup();
    }
  });
});

describe('EFBIG in the simulator (a configurable largest file)', () => {
  it('refuses writes and truncates past the simulated limit at the call, accepts up to it, and the epoch reopens', async () => {
    const sim = new SimFS();
    sim.mkdirSync('/s');
    sim.fileSizeLimit = 1 << 20;
    const opts = { io: sim, noLock: true, segmentSize: 1 << 20 };
    const store = await openStore('/s', opts);
    const f = await store.open('f', 'w+');
    await expectCpError(() => f.write(Buffer.alloc(2), null, null, (1 << 20) - 1), 'EFBIG');
    await expectCpError(() => f.truncate((1 << 20) + 1), 'EFBIG');
    await f.write(Buffer.from('end'), null, null, (1 << 20) - 3);
    await f.truncate(1 << 20);
    expect(await store.check()).to.equal(1);
    await store.close();
    const again = await openStore('/s', opts);
    expect(again.epoch).to.equal(store.epoch);
    expect((await again.readFile('f')).subarray(-3).toString()).to.equal('end');
    await again.close();
  });
});

describe('real file systems (loop-mounted ext4): a full disk and a file system that turns read-only', function () {
  this.timeout(60_000);
  let rfs: RealFs | null = null;
  let stores: Store[] = [];
  const open = async (dir: string, opts = {}): Promise<Store> => {
    const s = await openStore(dir, { ...NO_APPLY, directAppendMin: false, ...opts });
    stores.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close({ discard: true }).catch(() => undefined);
    rfs?.cleanup();
    rfs = null;
  });

  /** Reopen on a still-full disk: either it works with epoch `want`, or it says how much to free. */
  async function reopenWhileFull(dir: string, want: number): Promise<void> {
    try {
      const s = await open(dir);
      expect(s.epoch).to.equal(want);
      await s.close({ discard: true }).catch(() => undefined);
      stores = [];
    } catch (e) {
      expect(e).to.be.instanceOf(CpError);
      const err = e as CpError;
      expect(err.code, err.message).to.equal('ENOSPC');
      expect(err.message, 'says how much to free').to.match(/free (at least|up to) \d+ bytes/);
    }
  }

  async function expectEpoch(dir: string, want: number, files: Record<string, string>): Promise<void> {
    const s = await open(dir);
    expect(s.epoch).to.equal(want);
    for (const [n, c] of Object.entries(files)) expect((await s.readFile(n)).toString(), n).to.equal(c);
    await s.close();
    stores = [];
  }

  it('ENOSPC during an epoch\'s writes: the writes or the check reject with ENOSPC; after freeing space the store reopens at the last acknowledged epoch', async function () {
    rfs = mountReal(this, 24);
    const dir = path.join(rfs.dir, 'store');
    const store = await open(dir, { segmentSize: 4 << 20 });
    await store.writeFile('a', 'epoch one');
    const acked = await store.check();
    const filler = rfs.fill(256 * 1024);
    const f = await store.open('big', 'w');
    const chunk = Buffer.alloc(64 * 1024, 7);
    let failed: unknown = null;
    for (let i = 0; i < 64 && !failed; i++) failed = await settle(f.write(chunk));
    if (!failed) failed = await settle(store.check());
    expect(carries(failed, 'ENOSPC'), String(failed)).to.equal(true);
    expect(store.epoch).to.equal(acked);
    const closeErr = await settle(store.close());
    expect(carries(closeErr, 'ENOSPC'), String(closeErr)).to.equal(true);
    stores = [];
    await reopenWhileFull(dir, acked);
    fs.unlinkSync(filler);
    await expectEpoch(dir, acked, { a: 'epoch one' });
  });

  it('ENOSPC during check(): the check rejects with ENOSPC and the store stays at the previous epoch; reopening after freeing space has it exactly', async function () {
    rfs = mountReal(this, 24);
    const dir = path.join(rfs.dir, 'store');
    // One big batch: nothing reaches the journal before the check flushes it.
    const store = await open(dir, { segmentSize: 8 << 20, batchBytes: 8 << 20, maxInflight: 16 << 20 });
    await store.writeFile('a', 'epoch one');
    const acked = await store.check();
    await store.writeFile('b', Buffer.alloc(3 << 20, 1));
    const filler = rfs.fill(0);
    const err = await expectCpError(() => store.check(), 'ENOSPC');
    expect(err.message).to.include(`stays at epoch ${acked}`);
    expect(store.epoch).to.equal(acked);
    await settle(store.close());
    stores = [];
    await reopenWhileFull(dir, acked);
    fs.unlinkSync(filler);
    await expectEpoch(dir, acked, { a: 'epoch one' });
    expect(fs.existsSync(path.join(dir, 'b'))).to.equal(false);
  });

  it('ENOSPC during the background apply: the epoch stays in the journal; reopening while full fails saying how much to free, and after freeing it has the epoch', async function () {
    rfs = mountReal(this, 24);
    const dir = path.join(rfs.dir, 'store');
    let store = await open(dir, { segmentSize: 8 << 20 });
    await store.writeFile('a', 'epoch one');
    await store.check();
    await store.close();
    stores = [];
    store = await open(dir, { segmentSize: 8 << 20 });
    // 3 MiB in the journal, committed; the apply needs 3 MiB more for the file.
    await store.writeFile('big', Buffer.alloc(3 << 20, 2));
    const acked = await store.check();
    const filler = rfs.fill(0);
    const closeErr = await settle(store.close());
    expect(carries(closeErr, 'ENOSPC'), String(closeErr)).to.equal(true);
    const durable = store.epoch;
    expect(durable).to.be.at.least(acked);
    stores = [];
    const err = await expectCpError(() => open(dir), 'ENOSPC');
    expect(err.message).to.include('big');
    expect(err.message).to.match(/free up to \d+ bytes/);
    fs.unlinkSync(filler);
    await expectEpoch(dir, durable, { a: 'epoch one' });
    const s = await open(dir);
    expect((await s.readFile('big')).equals(Buffer.alloc(3 << 20, 2))).to.equal(true);
  });

  it('recovery on a disk filled by the store\'s own uncommitted tail: it says exactly how much to free, and opens once that much is free', async function () {
    rfs = mountReal(this, 24);
    const dir = path.join(rfs.dir, 'store');
    // One journal segment only (a store never reopened), so that recovery has no free segment to
    // reuse; epoch 1 applied in the background, so that recovery has nothing to apply.
    const store = await open(dir, { segmentSize: 64 << 20, applyDelay: 0, applyThreshold: 0 });
    await store.writeFile('a', 'epoch one');
    const acked = await store.check();
    while (store.stats().appliedEpoch < acked) await new Promise((r) => setTimeout(r, 5));
    expect(fs.readdirSync(path.join(dir, '.cpfile', 'journal'))).to.have.length(1);
    const filler = rfs.fill(4 << 20);
    const f = await store.open('tail', 'w');
    const chunk = Buffer.alloc(256 * 1024, 9);
    let failed: unknown = null;
    for (let i = 0; i < 64 && !failed; i++) failed = await settle(f.write(chunk));
    if (!failed) failed = await settle(store.check());
    expect(carries(failed, 'ENOSPC'), String(failed)).to.equal(true);
    await settle(store.close());
    stores = [];
    rfs.fill(0, 'filler2');
    let opened: Store | null = null;
    try {
      opened = await open(dir);
    } catch (e) {
      const err = e as CpError;
      expect(err.code, err.message).to.equal('ENOSPC');
      const m = /free at least (\d+) bytes/.exec(err.message);
      expect(m, err.message).to.not.equal(null);
      // Free exactly that much (a little filler), and it opens.
      const f2 = filler;
      fs.truncateSync(f2, fs.statSync(f2).size - Number(m![1]));
      // ext4 reuses freed blocks only once its journal has committed the free.
      execFileSync("sync", ["-f", f2]);
      opened = await open(dir);
    }
    expect(opened.epoch).to.equal(acked);
    await opened.close({ discard: true }).catch(() => undefined);
    stores = [];
    fs.unlinkSync(filler);
    fs.unlinkSync(path.join(rfs.dir, 'filler2'));
    await expectEpoch(dir, acked, { a: 'epoch one' });
  });

  it('ext4 turning read-only in the middle (remount,abort): calls reject with EROFS or EREOPEN, close() rejects with it; mounted again, the store reopens at the last acknowledged epoch', async function () {
    rfs = mountReal(this, 24);
    const dir = path.join(rfs.dir, 'store');
    const store = await open(dir);
    await store.writeFile('a', 'epoch one');
    const acked = await store.check();
    await store.writeFile('a', 'epoch two, never acknowledged');
    // mount -o remount,ro is refused (EBUSY) while the store holds its journal open for writing;
    // ext4's abort turns it read-only under the store, as an error would.
    rfs.abort();
    const err = await settle(store.check());
    expect(carries(err, 'EROFS', 'EIO'), String(err)).to.equal(true);
    await expectCpError(() => store.writeFile('b', 'x'), 'EREOPEN');
    const closeErr = await settle(store.close());
    expect(closeErr).to.be.instanceOf(CpError);
    expect((closeErr as CpError).code).to.equal('EREOPEN');
    stores = [];
    rfs.remount();
    await expectEpoch(dir, acked, { a: 'epoch one' });
  });
});
