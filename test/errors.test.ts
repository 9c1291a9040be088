// Every documented error code: CpError instance, right .code, one-line message, and the store
// keeps working afterwards without losing checked or pending work.
import { mkdir, readdir, symlink, writeFile as fsWriteFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { CpError } from '../lib/index.js';
import { Sandbox, expectCpError, type Store, type CpFile } from './helpers/sandbox.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
// Deliberately ill-typed arguments for EINVAL tests.
const bad = (v: unknown): never => v as never;

describe('errors: documented CpError codes', function () {
  const sb = new Sandbox();
  let root: string; // sandbox; the store lives in root/store so '..' escapes stay inside the sandbox
  let dir: string;
  let store: Store;
  let epochBefore: number;

  beforeEach(async function () {
    root = await sb.dir();
    dir = path.join(root, 'store');
    await mkdir(dir);
    store = await sb.open(dir);
    await store.writeFile('keep', 'KEEP-1');
    epochBefore = await store.check();
    await store.writeFile('pending', 'PEND'); // not checked yet
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  /** After an error: earlier checked and pending work is intact, new work commits, and it all persists. */
  async function expectStoreHealthy(): Promise<void> {
    expect(text(await store.readFile('keep'))).to.equal('KEEP-1');
    expect(text(await store.readFile('pending'))).to.equal('PEND');
    const f = await store.open('after', 'w+');
    await f.write('ok');
    await f.close();
    const e = await store.check();
    expect(e).to.be.greaterThan(epochBefore);
    await store.close();
    store = await sb.open(dir);
    expect(text(await store.readFile('keep'))).to.equal('KEEP-1');
    expect(text(await store.readFile('pending'))).to.equal('PEND');
    expect(text(await store.readFile('after'))).to.equal('ok');
  }

  describe('EINVAL', function () {
    for (const mode of ['x', 'rb', 'wb', 'r+b', 'a+b', '', 'rw', 'W']) {
      it(`open() with mode ${JSON.stringify(mode)} rejects with EINVAL`, async function () {
        await expectCpError(() => store.open('keep', bad(mode)), 'EINVAL');
        await expectStoreHealthy();
      });
    }

    it('an invalid mode does not create the file', async function () {
      await expectCpError(() => store.open('nothere', bad('wb')), 'EINVAL');
      await expectCpError(() => store.readFile('nothere'), 'ENOENT');
      await expectStoreHealthy();
    });

    it('write at a negative position rejects with EINVAL and writes nothing', async function () {
      const f = await store.open('keep', 'r+');
      await expectCpError(() => f.write('zz', -2), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    it('read at a negative position rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => f.read(Buffer.alloc(4), 0, 4, -5), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    it('read with a negative length rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => f.read(Buffer.alloc(4), 0, -1, 0), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    it('write with a negative length rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r+');
      await expectCpError(() => f.write(Buffer.from('abc'), 0, -2, 0), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    it('offset + length beyond the buffer rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r+');
      await expectCpError(() => f.write(Buffer.from('abc'), 2, 5, 0), 'EINVAL');
      await expectCpError(() => f.read(Buffer.alloc(3), 1, 10, 0), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    it('seek with an unknown whence throws EINVAL and keeps the position', async function () {
      const f = await store.open('keep', 'r');
      f.seek(2);
      await expectCpError(() => f.seek(0, bad('middle')), 'EINVAL');
      expect(f.tell()).to.equal(2);
      await f.close();
      await expectStoreHealthy();
    });

    it('seek to a negative resulting position throws EINVAL and keeps the position', async function () {
      const f = await store.open('keep', 'r');
      f.seek(3);
      await expectCpError(() => f.seek(-1), 'EINVAL');
      await expectCpError(() => f.seek(-10, 'cur'), 'EINVAL');
      expect(f.tell()).to.equal(3);
      await f.close();
      await expectStoreHealthy();
    });

    it('truncate to a negative length rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r+');
      await expectCpError(() => f.truncate(-1), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });

    for (const [label, value] of [
      ['a number', 123],
      ['a plain object', { length: 3 }],
      ['null', null],
      ['an array of numbers', [1, 2, 3]],
    ] as const) {
      it(`write() of ${label} instead of bytes/string rejects with EINVAL`, async function () {
        const f = await store.open('keep', 'r+');
        await expectCpError(() => f.write(bad(value)), 'EINVAL');
        await f.close();
        await expectStoreHealthy();
      });
    }

    it('writeFile() of non-buffer data rejects with EINVAL and leaves the old content', async function () {
      await expectCpError(() => store.writeFile('keep', bad(42)), 'EINVAL');
      await expectStoreHealthy();
    });

    it('read() into a non-buffer rejects with EINVAL', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => f.read(bad('not a buffer'), 0, 3, 0), 'EINVAL');
      await f.close();
      await expectStoreHealthy();
    });
  });

  describe('EBADF', function () {
    it('async calls on a closed handle reject with EBADF', async function () {
      const f = await store.open('keep', 'r+');
      await f.close();
      await expectCpError(() => f.read(Buffer.alloc(2), 0, 2, 0), 'EBADF');
      await expectCpError(() => f.write('x'), 'EBADF');
      await expectCpError(() => f.stat(), 'EBADF');
      await expectCpError(() => f.truncate(0), 'EBADF');
      await expectStoreHealthy();
    });

    it('seek/tell/dup on a closed handle throw EBADF', async function () {
      const f = await store.open('keep', 'r+');
      await f.close();
      await expectCpError(() => f.seek(0), 'EBADF');
      await expectCpError(() => f.tell(), 'EBADF');
      await expectCpError(() => f.dup(), 'EBADF');
      await expectStoreHealthy();
    });

    it("write through an 'r' handle rejects with EBADF", async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => f.write('zzzz'), 'EBADF');
      await f.close();
      await expectStoreHealthy();
    });

    it("read through a 'w' handle rejects with EBADF", async function () {
      const f = await store.open('other', 'w');
      await expectCpError(() => f.read(Buffer.alloc(2), 0, 2, 0), 'EBADF');
      await f.close();
      await expectStoreHealthy();
    });

    it('a closed dup rejects writes with EBADF while the original keeps working', async function () {
      const f = await store.open('other', 'w+');
      const d: CpFile = f.dup();
      await d.close();
      await expectCpError(() => d.write('x'), 'EBADF');
      await f.write('fine');
      await f.close();
      expect(text(await store.readFile('other'))).to.equal('fine');
      await expectStoreHealthy();
    });
  });

  describe('ENOENT', function () {
    it("open 'r' / 'r+' of a missing name rejects with ENOENT", async function () {
      await expectCpError(() => store.open('nope', 'r'), 'ENOENT');
      await expectCpError(() => store.open('nope/deeper', 'r+'), 'ENOENT');
      await expectStoreHealthy();
    });

    it('readFile of a missing name rejects with ENOENT', async function () {
      await expectCpError(() => store.readFile('nope'), 'ENOENT');
      await expectStoreHealthy();
    });

    it('unlink of a missing name rejects with ENOENT', async function () {
      await expectCpError(() => store.unlink('nope'), 'ENOENT');
      await expectStoreHealthy();
    });

    it('rename of a missing source rejects with ENOENT and leaves the target alone', async function () {
      await expectCpError(() => store.rename('nope', 'keep'), 'ENOENT');
      await expectStoreHealthy();
    });
  });

  describe('EBUSY', function () {
    it('opening a name that is already open rejects with EBUSY (dup is the way)', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => store.open('keep', 'r'), 'EBUSY');
      await expectCpError(() => store.open('keep', 'w'), 'EBUSY');
      const d = f.dup();
      await d.close();
      await f.close();
      // once closed, the name can be opened again
      const g = await store.open('keep', 'r');
      await g.close();
      await expectStoreHealthy();
    });

    it('unlink of an open name rejects with EBUSY and the file stays', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => store.unlink('keep'), 'EBUSY');
      await f.close();
      await expectStoreHealthy();
    });

    it('rename of an open source name rejects with EBUSY and nothing moves', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => store.rename('keep', 'elsewhere'), 'EBUSY');
      await f.close();
      await expectCpError(() => store.readFile('elsewhere'), 'ENOENT');
      await expectStoreHealthy();
    });

    it('rename onto an open target name rejects with EBUSY and the target keeps its content', async function () {
      const f = await store.open('keep', 'r');
      await expectCpError(() => store.rename('pending', 'keep'), 'EBUSY');
      await f.close();
      await expectStoreHealthy();
    });
  });

  describe('EPATH', function () {
    // opened with 'r' so that a faulty implementation cannot create anything outside the sandbox
    const badNames = [
      '/abs',
      '/',
      '../x',
      '..',
      'a/../../x',
      '.cpfile',
      '.cpfile/journal',
      '.cpfile/anything/else',
      './.cpfile',
      'a/../.cpfile/journal',
    ];
    for (const name of badNames) {
      it(`open(${JSON.stringify(name)}) rejects with EPATH`, async function () {
        await expectCpError(() => store.open(name, 'r'), 'EPATH');
        await expectStoreHealthy();
      });
    }

    it('creating through escaping or absolute names rejects with EPATH and creates nothing outside', async function () {
      await expectCpError(() => store.open('../made', 'w'), 'EPATH');
      await expectCpError(() => store.open('sub/../../made2', 'a'), 'EPATH');
      await expectCpError(() => store.open(path.join(root, 'made3'), 'w+'), 'EPATH');
      // absolute even when it points inside the store dir
      await expectCpError(() => store.open(path.join(dir, 'inside'), 'w'), 'EPATH');
      await expectCpError(() => store.open('.cpfile/journal', 'w'), 'EPATH');
      await expectStoreHealthy();
      expect(await readdir(root)).to.deep.equal(['store']);
    });

    it('writeFile/readFile/unlink/rename refuse escaping and reserved names with EPATH', async function () {
      await expectCpError(() => store.writeFile('../escape', 'x'), 'EPATH');
      await expectCpError(() => store.readFile(path.join(dir, 'keep')), 'EPATH');
      await expectCpError(() => store.unlink('.cpfile'), 'EPATH');
      await expectCpError(() => store.rename('keep', '../keep'), 'EPATH');
      await expectCpError(() => store.rename('keep', '.cpfile/keep'), 'EPATH');
      await expectCpError(() => store.rename('../x', 'keep'), 'EPATH');
      await expectStoreHealthy();
      // nothing was written next to the store dir
      expect(await readdir(root)).to.deep.equal(['store']);
    });

    it('a name through a symlinked directory pointing outside the store rejects with EPATH', async function () {
      const outside = await sb.dir('cpfile-outside-');
      await symlink(outside, path.join(dir, 'out'));
      await expectCpError(() => store.open('out/x', 'w'), 'EPATH');
      await expectCpError(() => store.writeFile('out/y', 'leak'), 'EPATH');
      await expectStoreHealthy();
      expect(await readdir(outside)).to.deep.equal([]);
    });

    it('a symlinked file pointing outside the store rejects with EPATH', async function () {
      const outside = await sb.dir('cpfile-outside-');
      const victim = path.join(outside, 'victim');
      await fsWriteFile(victim, 'untouched');
      await symlink(victim, path.join(dir, 'link'));
      await expectCpError(() => store.open('link', 'r+'), 'EPATH');
      await expectCpError(() => store.readFile('link'), 'EPATH');
      await expectStoreHealthy();
      const { readFile } = await import('node:fs/promises');
      expect(await readFile(victim, 'utf8')).to.equal('untouched');
    });

    it('a symlink that stays inside the store is refused with EPATH too: no symlink is followed at any component', async function () {
      await mkdir(path.join(dir, 'real'));
      await fsWriteFile(path.join(dir, 'real', 'inside'), 'disk');
      await symlink(path.join(dir, 'real'), path.join(dir, 'alias'));
      await symlink(path.join(dir, 'keep'), path.join(dir, 'keep-alias'));
      await expectCpError(() => store.writeFile('alias/inside', 'ok'), 'EPATH');
      await expectCpError(() => store.readFile('alias/inside'), 'EPATH');
      await expectCpError(() => store.readFile('keep-alias'), 'EPATH');
      await expectCpError(() => store.open('keep-alias', 'r'), 'EPATH');
      await expectCpError(() => store.rename('keep', 'alias/moved'), 'EPATH');
      await expectStoreHealthy();
    });
  });

  describe('ECLOSED', function () {
    it('every store call after store.close() rejects with ECLOSED', async function () {
      await store.close();
      await expectCpError(() => store.open('keep', 'r'), 'ECLOSED');
      await expectCpError(() => store.check(), 'ECLOSED');
      await expectCpError(() => store.rollback(), 'ECLOSED');
      await expectCpError(() => store.readFile('keep'), 'ECLOSED');
      await expectCpError(() => store.writeFile('keep', 'x'), 'ECLOSED');
      await expectCpError(() => store.unlink('keep'), 'ECLOSED');
      await expectCpError(() => store.rename('keep', 'k2'), 'ECLOSED');
      // reopening gives a working store with everything (close() checked the pending write)
      store = await sb.open(dir);
      expect(text(await store.readFile('keep'))).to.equal('KEEP-1');
      expect(text(await store.readFile('pending'))).to.equal('PEND');
      await store.writeFile('after', 'ok');
      await store.check();
    });

    it('a handle of a closed store can no longer write', async function () {
      const f = await store.open('keep', 'r+');
      await store.close();
      let caught: unknown;
      try {
        await f.write('zzzz');
      } catch (e) {
        caught = e;
      }
      expect(caught).to.be.instanceOf(CpError);
      expect(['ECLOSED', 'EBADF']).to.include((caught as CpError).code);
      store = await sb.open(dir);
      expect(text(await store.readFile('keep'))).to.equal('KEEP-1');
    });
  });
});
