// Public API of the core store: files, positions, read-your-writes, epochs, rollback, close/reopen.
import { readFile as fsReadFile, realpath, access } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { openStore } from '../lib/index.js';
import { Sandbox, expectCpError, readAll, SMALL, type Store } from './helpers/sandbox.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

async function existsOnDisk(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

describe('api: core store and file handles', function () {
  const sb = new Sandbox();
  let dir: string;
  let store: Store;

  beforeEach(async function () {
    dir = await sb.dir();
    store = await sb.open(dir);
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  describe('store basics', function () {
    it('a new store reports its dir and epoch 0', async function () {
      expect([dir, path.resolve(dir), await realpath(dir)]).to.include(store.dir);
      expect(store.epoch).to.equal(0);
    });

    it('open() returns a handle with name, mode, resumed=false and position 0', async function () {
      const f = await store.open('a.txt', 'w+');
      expect(f.name).to.equal('a.txt');
      expect(f.mode).to.equal('w+');
      expect(f.resumed).to.equal(false);
      expect(f.tell()).to.equal(0);
      await f.close();
    });
  });

  describe('read / write / positions', function () {
    it('write then read back through the same handle returns the written bytes', async function () {
      const f = await store.open('a', 'w+');
      const w = await f.write('hello world');
      expect(w.bytesWritten).to.equal(11);
      const buf = Buffer.alloc(11);
      const r = await f.read(buf, 0, 11, 0);
      expect(r.bytesRead).to.equal(11);
      expect(text(r.buffer.subarray(0, r.bytesRead))).to.equal('hello world');
      await f.close();
    });

    it('write with null position writes at the handle position and advances it', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abc', null);
      expect(f.tell()).to.equal(3);
      await f.write('def');
      expect(f.tell()).to.equal(6);
      expect(text(await readAll(f))).to.equal('abcdef');
      await f.close();
    });

    it('write with a numeric position writes there and leaves the handle position alone', async function () {
      const f = await store.open('a', 'w+');
      await f.write('0123456789');
      expect(f.tell()).to.equal(10);
      await f.write('XY', 3);
      expect(f.tell()).to.equal(10);
      expect(text(await readAll(f))).to.equal('012XY56789');
      await f.close();
    });

    it('write honours offset and length into a buffer; a string is written whole at its position (fs/promises)', async function () {
      const f = await store.open('a', 'w+');
      const r1 = await f.write(Buffer.from('__abc__'), 2, 3);
      expect(r1.bytesWritten).to.equal(3);
      // for a string the second argument is the position: 'é' is two bytes in utf8, all four are written
      const r2 = await f.write('xéy', 1);
      expect(r2).to.deep.equal({ bytesWritten: 4, buffer: 'xéy' });
      expect(f.tell()).to.equal(3);
      expect(text(await readAll(f))).to.equal('axéy');
      // the old (string, offset, length, position) form fails loudly instead of writing elsewhere
      await expectCpError(() => f.write('xéy', 1, 2 as never), 'EINVAL');
      await expectCpError(() => (f.write as (...a: unknown[]) => Promise<unknown>)('zz', null, null, 0), 'EINVAL');
      expect(f.tell()).to.equal(3);
      await f.close();
    });

    it('read with null position reads at the handle position and advances it', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdef');
      f.seek(0);
      const buf = Buffer.alloc(2);
      let r = await f.read(buf, 0, 2, null);
      expect(text(buf.subarray(0, r.bytesRead))).to.equal('ab');
      expect(f.tell()).to.equal(2);
      r = await f.read(buf, 0, 2);
      expect(text(buf.subarray(0, r.bytesRead))).to.equal('cd');
      expect(f.tell()).to.equal(4);
      await f.close();
    });

    it('read with a numeric position reads there and leaves the handle position alone', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdef');
      f.seek(1);
      const buf = Buffer.alloc(3);
      const r = await f.read(buf, 0, 3, 3);
      expect(r.bytesRead).to.equal(3);
      expect(text(buf)).to.equal('def');
      expect(f.tell()).to.equal(1);
      await f.close();
    });

    it('read honours offset and length into the target buffer', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdef');
      const buf = Buffer.from('........');
      const r = await f.read(buf, 2, 3, 1);
      expect(r.bytesRead).to.equal(3);
      expect(text(buf)).to.equal('..bcd...');
      await f.close();
    });

    it('seek supports set/cur/end, returns the new position and tell() agrees', async function () {
      const f = await store.open('a', 'w+');
      await f.write('0123456789');
      expect(f.seek(4)).to.equal(4);
      expect(f.tell()).to.equal(4);
      expect(f.seek(3, 'cur')).to.equal(7);
      expect(f.seek(-2, 'end')).to.equal(8);
      expect(f.seek(2, 'set')).to.equal(2);
      expect(f.tell()).to.equal(2);
      const buf = Buffer.alloc(3);
      await f.read(buf);
      expect(text(buf)).to.equal('234');
      await f.close();
    });

    it('reads at or past the end return bytesRead 0', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abc');
      const buf = Buffer.alloc(4);
      expect((await f.read(buf, 0, 4, 3)).bytesRead).to.equal(0);
      expect((await f.read(buf, 0, 4, 100)).bytesRead).to.equal(0);
      expect((await f.read(buf, 0, 4, 1)).bytesRead).to.equal(2);
      await f.close();
    });

    it('writing past the end extends the file with zeros in between', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abc');
      await f.write('xyz', 10);
      expect((await f.stat()).size).to.equal(13);
      const all = await readAll(f);
      expect(all.length).to.equal(13);
      expect(text(all.subarray(0, 3))).to.equal('abc');
      expect([...all.subarray(3, 10)]).to.deep.equal([0, 0, 0, 0, 0, 0, 0]);
      expect(text(all.subarray(10))).to.equal('xyz');
      await store.check();
      await f.close();
      await store.close();
      const disk = await fsReadFile(path.join(dir, 'a'));
      expect(disk.equals(all)).to.equal(true);
    });

    it('seeking past the end then writing zero-fills the gap', async function () {
      const f = await store.open('a', 'w+');
      await f.write('ab');
      f.seek(6);
      await f.write('Z');
      const all = await readAll(f);
      expect([...all]).to.deep.equal([0x61, 0x62, 0, 0, 0, 0, 0x5a]);
      await f.close();
    });
  });

  describe('stat and truncate', function () {
    it('stat() reports the size including pending writes', async function () {
      const f = await store.open('a', 'w+');
      expect((await f.stat()).size).to.equal(0);
      await f.write('12345');
      expect((await f.stat()).size).to.equal(5);
      await f.write('67', 20);
      expect((await f.stat()).size).to.equal(22);
      await f.close();
    });

    it('truncate(len) shrinks the file and reads stop at the new end', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdefgh');
      await f.truncate(3);
      expect((await f.stat()).size).to.equal(3);
      expect(text(await readAll(f))).to.equal('abc');
      await f.close();
    });

    it('truncate() with no argument empties the file', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdefgh');
      await f.truncate();
      expect((await f.stat()).size).to.equal(0);
      await f.close();
      expect((await store.readFile('a')).length).to.equal(0);
    });

    it('truncate to a larger size extends with zeros', async function () {
      const f = await store.open('a', 'w+');
      await f.write('ab');
      await f.truncate(5);
      expect([...(await readAll(f))]).to.deep.equal([0x61, 0x62, 0, 0, 0]);
      await f.close();
    });

    it('shrinking then re-extending does not resurrect the truncated bytes', async function () {
      const f = await store.open('a', 'w+');
      await f.write('abcdefgh');
      await store.check();
      await f.truncate(2);
      await f.write('Z', 5);
      expect([...(await readAll(f))]).to.deep.equal([0x61, 0x62, 0, 0, 0, 0x5a]);
      await store.check();
      await f.close();
      await store.close();
      expect([...(await fsReadFile(path.join(dir, 'a')))]).to.deep.equal([0x61, 0x62, 0, 0, 0, 0x5a]);
    });
  });

  describe('dup', function () {
    it('dup() shares the position with the original handle in both directions', async function () {
      const f = await store.open('a', 'w+');
      const d = f.dup();
      await f.write('abc');
      expect(d.tell()).to.equal(3);
      await d.write('def');
      expect(f.tell()).to.equal(6);
      d.seek(1);
      expect(f.tell()).to.equal(1);
      expect(text(await readAll(f))).to.equal('abcdef');
      await d.close();
      await f.close();
    });

    it('closing a dup leaves the original handle usable', async function () {
      const f = await store.open('a', 'w+');
      const d = f.dup();
      await d.write('xy');
      await d.close();
      await f.write('z');
      expect(text(await readAll(f))).to.equal('xyz');
      await f.close();
      expect(text(await store.readFile('a'))).to.equal('xyz');
    });
  });

  describe('read-your-writes before check', function () {
    beforeEach(async function () {
      await store.writeFile('base', 'committed');
      await store.check();
    });

    it('readFile sees pending writes made through a handle', async function () {
      const f = await store.open('base', 'r+');
      await f.write('COMM');
      expect(text(await store.readFile('base'))).to.equal('COMMitted');
      await f.close();
    });

    it('a reopened handle sees writes made before it was opened', async function () {
      const f = await store.open('base', 'r+');
      await f.write('X', 8);
      await f.close();
      const g = await store.open('base', 'r');
      expect(text(await readAll(g))).to.equal('committeX');
      await g.close();
    });

    it('reads see a pending truncate', async function () {
      const f = await store.open('base', 'r+');
      await f.truncate(4);
      await f.close();
      expect(text(await store.readFile('base'))).to.equal('comm');
      const g = await store.open('base', 'r');
      expect((await g.stat()).size).to.equal(4);
      await g.close();
    });

    it('a pending unlink makes the name disappear', async function () {
      await store.unlink('base');
      await expectCpError(() => store.open('base', 'r'), 'ENOENT');
      await expectCpError(() => store.readFile('base'), 'ENOENT');
    });

    it('a pending rename moves the content to the new name', async function () {
      await store.rename('base', 'moved/there');
      await expectCpError(() => store.readFile('base'), 'ENOENT');
      expect(text(await store.readFile('moved/there'))).to.equal('committed');
    });

    it('rename replaces an existing target like POSIX rename', async function () {
      await store.writeFile('target', 'old target content');
      await store.rename('base', 'target');
      expect(text(await store.readFile('target'))).to.equal('committed');
      await store.check();
      await store.close();
      expect(await fsReadFile(path.join(dir, 'target'), 'utf8')).to.equal('committed');
      expect(await existsOnDisk(path.join(dir, 'base'))).to.equal(false);
    });

    it('pending data spread over several journal segments reads back before the check', async function () {
      // each round: 30 x 100 KiB of pending writes with 1 MiB segments, so the journal rolls over
      // segments, then every block is read back immediately (several rounds: the failure is a race)
      const bs = 100 * 1024;
      const block = Buffer.alloc(bs);
      const probe = Buffer.alloc(bs);
      const bad: string[] = [];
      for (let round = 0; round < 6; round++) {
        const f = await store.open(`multi${round}`, 'w+');
        for (let i = 0; i < 30; i++) {
          block.fill((round * 31 + i + 1) & 0xff);
          await f.write(block);
        }
        for (let i = 0; i < 30; i++) {
          const r = await f.read(probe, 0, bs, i * bs);
          const want = (round * 31 + i + 1) & 0xff;
          if (r.bytesRead !== bs || !probe.every((b) => b === want)) bad.push(`${round}:${i}`);
        }
        await f.close();
      }
      expect(bad, `blocks read back wrong before check (${bad.length} of 180)`).to.deep.equal([]);
    });

    it('a name recreated after a pending unlink starts empty', async function () {
      await store.unlink('base');
      const f = await store.open('base', 'a+');
      expect((await f.stat()).size).to.equal(0);
      await f.write('new');
      await f.close();
      expect(text(await store.readFile('base'))).to.equal('new');
    });
  });

  describe('readFile / writeFile', function () {
    it('writeFile then readFile round-trips strings and bytes', async function () {
      await store.writeFile('s.txt', 'héllo');
      await store.writeFile('b.bin', new Uint8Array([0, 1, 2, 255]));
      const s = await store.readFile('s.txt');
      expect(Buffer.isBuffer(s)).to.equal(true);
      expect(s.toString('utf8')).to.equal('héllo');
      expect([...(await store.readFile('b.bin'))]).to.deep.equal([0, 1, 2, 255]);
    });

    it('writeFile replaces the whole previous content', async function () {
      await store.writeFile('f', 'a much longer first version');
      await store.check();
      await store.writeFile('f', 'short');
      expect(text(await store.readFile('f'))).to.equal('short');
      await store.check();
      await store.close();
      expect(await fsReadFile(path.join(dir, 'f'), 'utf8')).to.equal('short');
    });

    it('writeFile creates subdirectories as needed', async function () {
      await store.writeFile('x/y/z.txt', 'deep');
      await store.close();
      expect(await fsReadFile(path.join(dir, 'x', 'y', 'z.txt'), 'utf8')).to.equal('deep');
    });

    it('readFile reads a pre-existing ordinary file in the store dir', async function () {
      await store.close();
      const { writeFile } = await import('node:fs/promises');
      await writeFile(path.join(dir, 'plain.txt'), 'made by node:fs');
      store = await sb.open(dir);
      expect(text(await store.readFile('plain.txt'))).to.equal('made by node:fs');
    });
  });

  describe('check() and epochs', function () {
    it('check() returns strictly increasing epochs and store.epoch follows', async function () {
      await store.writeFile('a', '1');
      const e1 = await store.check();
      expect(e1).to.be.greaterThan(0);
      expect(store.epoch).to.equal(e1);
      await store.writeFile('a', '2');
      const e2 = await store.check();
      expect(e2).to.be.greaterThan(e1);
      expect(store.epoch).to.equal(e2);
      const f = await store.open('a', 'r+');
      await f.write('3');
      const e3 = await f.check();
      expect(e3).to.be.greaterThan(e2);
      expect(store.epoch).to.equal(e3);
      await f.close();
    });

    it('the epoch survives a reopen', async function () {
      await store.writeFile('a', '1');
      const e1 = await store.check();
      await store.close({ discard: true });
      store = await sb.open(dir);
      expect(store.epoch).to.equal(e1);
      await store.writeFile('a', '2');
      expect(await store.check()).to.be.greaterThan(e1);
    });

    it('f.check() commits the changes of every file, like store.check()', async function () {
      const f = await store.open('a', 'w');
      await store.writeFile('other', 'other-data');
      await f.write('a-data');
      await f.check();
      await store.close({ discard: true });
      store = await sb.open(dir);
      expect(text(await store.readFile('a'))).to.equal('a-data');
      expect(text(await store.readFile('other'))).to.equal('other-data');
    });
  });

  describe('rollback()', function () {
    beforeEach(async function () {
      await store.writeFile('a', 'AAAA');
      await store.writeFile('b', 'BBBB');
      await store.writeFile('c', 'CCCC');
      await store.check();
    });

    it('rollback discards content changes and size changes since the last check', async function () {
      const f = await store.open('a', 'r+');
      await f.write('xxxxxxxx');
      await f.close();
      const g = await store.open('b', 'r+');
      await g.truncate(1);
      await g.close();
      await store.rollback();
      expect(text(await store.readFile('a'))).to.equal('AAAA');
      expect(text(await store.readFile('b'))).to.equal('BBBB');
      const h = await store.open('a', 'r');
      expect((await h.stat()).size).to.equal(4);
      await h.close();
    });

    it('rollback restores unlinked and renamed files and removes created files', async function () {
      await store.unlink('b');
      await store.rename('c', 'c2');
      await store.writeFile('new', 'NEW');
      await store.rollback();
      expect(text(await store.readFile('b'))).to.equal('BBBB');
      expect(text(await store.readFile('c'))).to.equal('CCCC');
      await expectCpError(() => store.readFile('c2'), 'ENOENT');
      await expectCpError(() => store.readFile('new'), 'ENOENT');
    });

    it('rollback does not undo earlier checks and its result is what gets persisted', async function () {
      await store.writeFile('a', 'A2');
      await store.check();
      await store.writeFile('a', 'A3');
      await store.unlink('b');
      await store.writeFile('new', 'NEW');
      await store.rollback();
      expect(text(await store.readFile('a'))).to.equal('A2');
      await store.writeFile('d', 'DDDD');
      await store.check();
      await store.close();
      expect(await fsReadFile(path.join(dir, 'a'), 'utf8')).to.equal('A2');
      expect(await fsReadFile(path.join(dir, 'b'), 'utf8')).to.equal('BBBB');
      expect(await fsReadFile(path.join(dir, 'd'), 'utf8')).to.equal('DDDD');
      expect(await existsOnDisk(path.join(dir, 'new'))).to.equal(false);
    });

    it('the store accepts new work after a rollback', async function () {
      await store.writeFile('a', 'junk');
      await store.rollback();
      const f = await store.open('a', 'a');
      await f.write('+');
      await f.close();
      const e = await store.check();
      expect(e).to.equal(store.epoch);
      expect(text(await store.readFile('a'))).to.equal('AAAA+');
    });
  });

  describe('close() and reopen', function () {
    it('close() leaves the final contents in ordinary files on disk', async function () {
      await store.writeFile('one.txt', 'first');
      await store.check();
      await store.writeFile('one.txt', 'first, then more');
      const f = await store.open('sub/two.bin', 'w');
      await f.write(Buffer.from([1, 2, 3]));
      await f.close();
      await store.writeFile('gone', 'x');
      await store.check();
      await store.unlink('gone');
      await store.writeFile('from', 'moving');
      await store.rename('from', 'to');
      // no explicit check: close() performs the final one
      await store.close();
      expect(await fsReadFile(path.join(dir, 'one.txt'), 'utf8')).to.equal('first, then more');
      expect([...(await fsReadFile(path.join(dir, 'sub', 'two.bin')))]).to.deep.equal([1, 2, 3]);
      expect(await fsReadFile(path.join(dir, 'to'), 'utf8')).to.equal('moving');
      expect(await existsOnDisk(path.join(dir, 'gone'))).to.equal(false);
      expect(await existsOnDisk(path.join(dir, 'from'))).to.equal(false);
    });

    it('close() with a file still open persists its writes too', async function () {
      const f = await store.open('open.txt', 'w');
      await f.write('still open at close');
      await store.close();
      expect(await fsReadFile(path.join(dir, 'open.txt'), 'utf8')).to.equal('still open at close');
    });

    it('a reopened store shows the same content', async function () {
      await store.writeFile('a', 'alpha');
      await store.writeFile('d/b', 'beta');
      await store.close();
      store = await sb.open(dir);
      expect(text(await store.readFile('a'))).to.equal('alpha');
      expect(text(await store.readFile('d/b'))).to.equal('beta');
    });

    it('several files change together in one check, or not at all', async function () {
      await store.writeFile('x', 'x0');
      await store.writeFile('y', 'y0');
      await store.check();

      // pending changes to both, then discard: neither changes
      await store.writeFile('x', 'x1');
      await store.writeFile('y', 'y1');
      await store.close({ discard: true });
      expect(await fsReadFile(path.join(dir, 'x'), 'utf8')).to.equal('x0');
      expect(await fsReadFile(path.join(dir, 'y'), 'utf8')).to.equal('y0');
      store = await sb.open(dir);
      expect(text(await store.readFile('x'))).to.equal('x0');
      expect(text(await store.readFile('y'))).to.equal('y0');

      // the same with a check: both change
      await store.writeFile('x', 'x2');
      await store.writeFile('y', 'y2');
      await store.check();
      await store.close({ discard: true });
      expect(await fsReadFile(path.join(dir, 'x'), 'utf8')).to.equal('x2');
      expect(await fsReadFile(path.join(dir, 'y'), 'utf8')).to.equal('y2');
      store = await sb.open(dir);
      expect(text(await store.readFile('x'))).to.equal('x2');
      expect(text(await store.readFile('y'))).to.equal('y2');
    });

    it('close({discard:true}) drops work since the last check but keeps earlier epochs', async function () {
      const f = await store.open('a', 'w');
      await f.write('checked');
      await store.check();
      await f.write('-discarded');
      await store.writeFile('never', 'x');
      await store.close({ discard: true });
      store = await sb.open(dir);
      expect(text(await store.readFile('a'))).to.equal('checked');
      await expectCpError(() => store.readFile('never'), 'ENOENT');
    });
  });

  describe('several stores and disposal', function () {
    it('several stores can be open in one process at once, independently', async function () {
      const dir2 = await sb.dir();
      const dir3 = await sb.dir();
      const s2 = await sb.open(dir2);
      const s3 = await sb.open(dir3);
      await store.writeFile('n', 'one');
      await s2.writeFile('n', 'two');
      await s3.writeFile('n', 'three');
      await s2.check();
      await s3.writeFile('n', 'three-rolled-back');
      await s3.rollback();
      expect(text(await store.readFile('n'))).to.equal('one');
      expect(text(await s2.readFile('n'))).to.equal('two');
      await expectCpError(() => s3.readFile('n'), 'ENOENT');
      await store.close();
      await s2.close();
      await s3.close();
      expect(await fsReadFile(path.join(dir, 'n'), 'utf8')).to.equal('one');
      expect(await fsReadFile(path.join(dir2, 'n'), 'utf8')).to.equal('two');
      expect(await existsOnDisk(path.join(dir3, 'n'))).to.equal(false);
    });

    it('`await using` closes the store (final check, lock released) and the file handle', async function () {
      await store.close();
      {
        await using s = await openStore(dir, SMALL);
        {
          await using f = await s.open('u.txt', 'w');
          await f.write('disposed');
        }
        // the handle was closed by disposal, so the name can be opened again
        const again = await s.open('u.txt', 'r');
        await again.close();
      }
      // lock released: a new store opens; the final check persisted the data
      store = await sb.open(dir);
      expect(text(await store.readFile('u.txt'))).to.equal('disposed');
      expect(await fsReadFile(path.join(dir, 'u.txt'), 'utf8')).to.equal('disposed');
    });

    it('a handle disposed by `await using` rejects further use with EBADF', async function () {
      let leaked: Awaited<ReturnType<Store['open']>> | undefined;
      {
        await using f = await store.open('u2', 'w+');
        leaked = f;
      }
      await expectCpError(() => leaked!.write('x'), 'EBADF');
    });
  });

  describe('stats()', function () {
    it('records, bytesJournaled, fsyncs and epochs grow with writes and checks', async function () {
      const s0 = store.stats();
      for (const k of ['records', 'bytesJournaled', 'fsyncs', 'epochs'] as const) {
        expect(s0[k], k).to.be.a('number');
      }
      expect(s0).to.have.property('applyLag');
      const payload = Buffer.alloc(4096, 7);
      const f = await store.open('s', 'w');
      await f.write(payload);
      await f.write(payload);
      await store.check();
      const s2 = store.stats();
      expect(s2.records).to.be.greaterThan(s0.records);
      expect(s2.bytesJournaled - s0.bytesJournaled).to.be.at.least(2 * payload.length);
      expect(s2.fsyncs).to.be.greaterThan(s0.fsyncs);
      expect(s2.epochs).to.be.greaterThan(s0.epochs);
      await f.write(payload);
      await store.check();
      const s3 = store.stats();
      expect(s3.records).to.be.greaterThan(s2.records);
      expect(s3.fsyncs).to.be.greaterThan(s2.fsyncs);
      expect(s3.epochs).to.be.greaterThan(s2.epochs);
      expect(s3.bytesJournaled - s2.bytesJournaled).to.be.at.least(payload.length);
      await f.close();
    });
  });

  describe('ordering of un-awaited calls', function () {
    it('100 un-awaited writes on one handle take effect in call order', async function () {
      const f = await store.open('seq', 'w+');
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 100; i++) ops.push(f.write(String(i).padStart(4, '0')));
      await Promise.all(ops);
      let expected = '';
      for (let i = 0; i < 100; i++) expected += String(i).padStart(4, '0');
      expect(f.tell()).to.equal(400);
      expect(text(await readAll(f))).to.equal(expected);
      await f.close();
    });

    it('un-awaited reads, seeks, truncates and writes observe exactly the earlier calls', async function () {
      const f = await store.open('seq', 'w+');
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 50; i++) ops.push(f.write(String(i).padStart(4, '0')));
      const midBuf = Buffer.alloc(1000);
      const mid = f.read(midBuf, 0, 1000, 0);
      const midStat = f.stat();
      const trunc = f.truncate(100);
      for (let i = 50; i < 60; i++) ops.push(f.write(String(i).padStart(4, '0'), 100 + (i - 50) * 4));
      const endBuf = Buffer.alloc(1000);
      const end = f.read(endBuf, 0, 1000, 0);
      await Promise.all([...ops, trunc]);
      expect((await mid).bytesRead).to.equal(200);
      expect((await midStat).size).to.equal(200);
      let expected = '';
      for (let i = 0; i < 25; i++) expected += String(i).padStart(4, '0');
      for (let i = 50; i < 60; i++) expected += String(i).padStart(4, '0');
      const r = await end;
      expect(text(endBuf.subarray(0, r.bytesRead))).to.equal(expected);
      await f.close();
    });
  });

  describe('a file and a directory of the same name', function () {
    // Apply never removes a directory: a file where a pending name needs a directory (or the other
    // way round) could never be applied, so it is refused before anything is journaled.
    it('a name under a pending file is refused, and so is a file where pending names need a directory', async function () {
      await store.writeFile('a', 'file a');
      await expectCpError(() => store.writeFile('a/b', 'x'), 'ENOENT');
      await expectCpError(() => store.open('a/c', 'w'), 'ENOENT');
      await store.writeFile('d/e', 'under d');
      await expectCpError(() => store.writeFile('d', 'x'), 'EINVAL');
      await expectCpError(() => store.open('d', 'w+'), 'EINVAL');
      await expectCpError(() => store.rename('a', 'd'), 'EINVAL');
      await expectCpError(() => store.rename('d/e', 'a/e'), 'ENOENT');
      expect(await store.check()).to.equal(1);
      await store.close();
      store = await sb.open(dir);
      expect(text(await store.readFile('a'))).to.equal('file a');
      expect(text(await store.readFile('d/e'))).to.equal('under d');
      expect(text(await fsReadFile(path.join(dir, 'd', 'e')))).to.equal('under d');
    });

    it('a name whose pending file was unlinked can become a directory, and the store applies it', async function () {
      await store.writeFile('a', 'file a');
      await store.check();
      await store.unlink('a');
      await store.writeFile('a/b', 'now a directory');
      await store.check();
      await store.close();
      expect(text(await fsReadFile(path.join(dir, 'a', 'b')))).to.equal('now a directory');
    });
  });
});
