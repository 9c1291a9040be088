// Recovery's early syncs (lib/store/apply-files.ts, ApplyContext.earlySync): while the replay writes a
// data file, an fdatasync of it is started, unawaited, after every EARLY_SYNC_BYTES, so that the disk
// writes it back meanwhile. What must hold: one at a time per file; the barrier waits for them and
// fails with an early sync's error even when the final fdatasync succeeds (a write-back error is
// reported to one fdatasync only); no early sync outlives its descriptor (eviction, closeAll); and a
// recovery whose early sync fails fails with that error, changes nothing it cannot redo, and the next
// recovery has every byte.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, nodeIO, CpError, type IO } from '../lib/index.js';
import { FileCache, EARLY_SYNC_BYTES } from '../lib/store/apply-files.js';
import type { ApplyContext } from '../lib/store/applier.js';
import { crash } from './helpers/journal.js';

const MiB = 1024 * 1024;

/** nodeIO with fdatasync under the test's control and a log of fdatasync/close calls. */
function controlledIO(): { io: IO; log: string[]; pending: Array<{ fd: number; settle: (err?: Error) => void }>; hold: { on: boolean } } {
  const log: string[] = [];
  const pending: Array<{ fd: number; settle: (err?: Error) => void }> = [];
  const hold = { on: true };
  const io: IO = {
    ...nodeIO,
    fdatasync: (fd: number) => {
      log.push(`fdatasync ${fd}`);
      if (!hold.on) return nodeIO.fdatasync(fd);
      return new Promise<void>((resolve, reject) => {
        pending.push({ fd, settle: (err) => (err ? reject(err) : resolve()) });
      });
    },
    close: (fd: number) => {
      log.push(`close ${fd}`);
      return nodeIO.close(fd);
    },
  };
  return { io, log, pending, hold };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('recovery\'s early syncs of the data files it replays into', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpfile-early-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function cacheWith(io: IO, every: number): { cache: FileCache; fd: number } {
    const ctx = { io, root: dir, sync: true, earlySync: every } as unknown as ApplyContext;
    const fd = fs.openSync(path.join(dir, 'f'), 'w');
    return { cache: new FileCache(ctx), fd };
  }

  it('starts one fdatasync per file at a time, after every `earlySync` bytes, and the barrier waits for it', async () => {
    const c = controlledIO();
    const { cache, fd } = cacheWith(c.io, 1000);
    cache.wrote(fd, 999);
    expect(c.log).to.deep.equal([]);
    cache.wrote(fd, 1);
    expect(c.log).to.deep.equal([`fdatasync ${fd}`]);
    // In flight: more bytes start none.
    cache.wrote(fd, 5000);
    expect(c.log).to.have.length(1);
    let done = false;
    const b = cache.barrier().then(() => { done = true; });
    await tick();
    expect(done, 'the barrier returned before the early sync finished').to.equal(false);
    c.hold.on = false;
    c.pending.shift()!.settle();
    await b;
    // The barrier's own fdatasync of the dirty file came after the early one.
    expect(c.log).to.deep.equal([`fdatasync ${fd}`, `fdatasync ${fd}`]);
    fs.closeSync(fd);
  });

  it('a new early sync starts once the last one is done, not before', async () => {
    const c = controlledIO();
    const { cache, fd } = cacheWith(c.io, 100);
    cache.wrote(fd, 100);
    c.pending.shift()!.settle();
    await tick(); await tick();
    cache.wrote(fd, 99);
    expect(c.log).to.have.length(1);
    cache.wrote(fd, 1);
    expect(c.log).to.have.length(2);
    c.hold.on = false;
    c.pending.shift()!.settle();
    await cache.barrier();
    fs.closeSync(fd);
  });

  it('an early sync that failed fails the barrier, though the barrier\'s own fdatasync succeeds; no later early sync starts', async () => {
    const c = controlledIO();
    const { cache, fd } = cacheWith(c.io, 100);
    cache.wrote(fd, 100);
    c.pending.shift()!.settle(Object.assign(new Error('EIO: write-back failed'), { code: 'EIO' }));
    await tick(); await tick();
    cache.wrote(fd, 500);
    expect(c.log, 'an early sync started after one failed').to.have.length(1);
    c.hold.on = false;
    let err: unknown = null;
    await cache.barrier().catch((e) => { err = e; });
    expect((err as NodeJS.ErrnoException)?.code).to.equal('EIO');
    fs.closeSync(fd);
  });

  it('closeAll waits for an early sync in flight before it closes the descriptor (also after a failure)', async () => {
    const c = controlledIO();
    const { cache } = cacheWith(c.io, 100);
    const fd = await cache.fd('g');
    c.log.length = 0; // (the lookup's own opens and closes)
    cache.wrote(fd, 100);
    const closing = cache.closeAll();
    await tick(); await tick();
    expect(c.log).to.deep.equal([`fdatasync ${fd}`]);
    c.pending.shift()!.settle(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await closing;
    expect(c.log).to.deep.equal([`fdatasync ${fd}`, `close ${fd}`]);
  });

  it('an evicted file\'s early sync is waited for, and its failure reported, before the descriptor is closed', async () => {
    const c = controlledIO();
    const { cache } = cacheWith(c.io, 100);
    const fd = await cache.fd('h');
    c.log.length = 0;
    cache.wrote(fd, 100);
    const dropping = cache.drop('h');
    await tick(); await tick();
    expect(c.log).to.deep.equal([`fdatasync ${fd}`]);
    c.pending.shift()!.settle(Object.assign(new Error('EIO'), { code: 'EIO' }));
    let err: unknown = null;
    await dropping.catch((e) => { err = e; });
    expect((err as NodeJS.ErrnoException)?.code).to.equal('EIO');
    await cache.closeAll();
  });

  it('a file whose early sync failed is still closed when it is evicted (the error goes on up)', async () => {
    const c = controlledIO();
    const { cache } = cacheWith(c.io, 100);
    const fd = await cache.fd('h');
    cache.wrote(fd, 100);
    c.pending.shift()!.settle(Object.assign(new Error('EIO'), { code: 'EIO' }));
    await tick();
    let err: unknown = null;
    await cache.drop('h').catch((e) => { err = e; });
    expect((err as NodeJS.ErrnoException)?.code).to.equal('EIO');
    await cache.closeAll();
    let open = true;
    try { fs.fstatSync(fd); } catch { open = false; }
    if (open) fs.closeSync(fd);
    expect(open, `fd ${fd} still open after drop and closeAll (${c.log.join(', ')})`).to.equal(false);
  });

  it('one early sync at a time for the whole replay, however many files cross the threshold (each holds a libuv thread)', async () => {
    const c = controlledIO();
    const { cache } = cacheWith(c.io, 100);
    const fds: number[] = [];
    for (let i = 0; i < 8; i++) fds.push(await cache.fd(`f${i}`));
    for (const fd of fds) cache.wrote(fd, 100);
    expect(c.pending.length, 'early fdatasyncs in flight at once').to.equal(1);
    c.pending.shift()!.settle();
    await tick();
    // The next file to cross the threshold starts the next one.
    cache.wrote(fds[3], 100);
    expect(c.pending.length).to.equal(1);
    c.hold.on = false;
    c.pending.shift()!.settle();
    await cache.closeAll();
  });

  it('a recovery of more than twice EARLY_SYNC_BYTES syncs early; when an early sync fails it fails with EIO, and the next recovery has every byte', async function () {
    this.timeout(120_000);
    const bytes = 2 * EARLY_SYNC_BYTES + 8 * MiB;
    const chunk = Buffer.alloc(MiB);
    const store = await openStore(dir, { noLock: true, applyThreshold: 2 ** 40, applyDelay: 3600_000, segmentSize: 256 * MiB, directAppendMin: false });
    const f = await store.open('data.bin', 'w');
    for (let at = 0; at < bytes; at += MiB) {
      chunk.fill(at / MiB & 0xff);
      await f.write(chunk);
      if ((at / MiB) % 16 === 15) await store.check();
    }
    await store.check();
    await crash(store);
    const image = path.join(dir, '..', `${path.basename(dir)}-image`);
    fs.cpSync(dir, image, { recursive: true });
    try {
      // 1. The first early sync of data.bin fails.
      const dataFds = new Set<number>();
      let syncs = 0;
      let failed = false;
      const failing: IO = {
        ...nodeIO,
        open: async (p, mode, o) => {
          const fd = await nodeIO.open(p, mode, o);
          if (path.basename(p) === 'data.bin') dataFds.add(fd);
          return fd;
        },
        close: async (fd) => { dataFds.delete(fd); return nodeIO.close(fd); },
        fdatasync: async (fd) => {
          if (dataFds.has(fd)) {
            syncs++;
            if (!failed) {
              failed = true;
              throw Object.assign(new Error('EIO: injected write-back failure'), { code: 'EIO' });
            }
          }
          return nodeIO.fdatasync(fd);
        },
      };
      let err: unknown = null;
      await openStore(dir, { io: failing, noLock: true }).then((s) => s.close(), (e) => { err = e; });
      expect(err, 'recovery succeeded though an early sync failed').to.be.instanceOf(CpError);
      expect((err as CpError).code).to.equal('EIO');
      expect(failed).to.equal(true);
      // 2. Recovery again, counting: the data file is synced early (more than at the barrier alone).
      syncs = 0;
      failed = true;
      const s2 = await openStore(dir, { io: failing, noLock: true });
      expect(s2.recovery.replayedBytes).to.be.at.least(bytes);
      await s2.close();
      // (at least the first early one and the barrier's: a second early one waits for the first to finish)
      expect(syncs, 'data file fdatasyncs during the replay').to.be.at.least(2);
      const got = fs.readFileSync(path.join(dir, 'data.bin'));
      expect(got.length).to.equal(bytes);
      for (let at = 0; at < bytes; at += MiB) expect(got[at], `byte at ${at}`).to.equal(at / MiB & 0xff);
      // 3. The untouched image recovers the same bytes with the default IO.
      const s3 = await openStore(image, { noLock: true });
      await s3.close();
      expect(fs.readFileSync(path.join(image, 'data.bin')).equals(got)).to.equal(true);
    } finally {
      fs.rmSync(image, { recursive: true, force: true });
    }
  });
});
