// fopen-style open modes and the resume rules of open().
import { expect } from 'chai';
import { Sandbox, expectCpError, readAll, type Store } from './helpers/sandbox.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

describe('modes: fopen modes of store.open()', function () {
  const sb = new Sandbox();
  let dir: string;
  let store: Store;

  beforeEach(async function () {
    dir = await sb.dir();
    store = await sb.open(dir);
    await store.writeFile('existing', 'abcdef');
    await store.check();
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  describe("'r'", function () {
    it("'r' on a missing name rejects with ENOENT", async function () {
      await expectCpError(() => store.open('missing', 'r'), 'ENOENT');
    });

    it("the default mode is 'r' (reads work, writes are EBADF)", async function () {
      const f = await store.open('existing');
      expect(f.mode).to.equal('r');
      expect(text(await readAll(f))).to.equal('abcdef');
      await expectCpError(() => f.write('x'), 'EBADF');
      await f.close();
    });

    it("'r' reads existing content from position 0", async function () {
      const f = await store.open('existing', 'r');
      expect(f.tell()).to.equal(0);
      const buf = Buffer.alloc(3);
      await f.read(buf);
      expect(text(buf)).to.equal('abc');
      await f.close();
    });

    it("'r' rejects write and truncate with EBADF and leaves the content alone", async function () {
      const f = await store.open('existing', 'r');
      await expectCpError(() => f.write('zzz'), 'EBADF');
      await expectCpError(() => f.truncate(1), 'EBADF');
      await f.close();
      expect(text(await store.readFile('existing'))).to.equal('abcdef');
    });
  });

  describe("'r+'", function () {
    it("'r+' on a missing name rejects with ENOENT", async function () {
      await expectCpError(() => store.open('missing', 'r+'), 'ENOENT');
    });

    it("'r+' keeps the content and overwrites in place from position 0", async function () {
      const f = await store.open('existing', 'r+');
      expect((await f.stat()).size).to.equal(6);
      await f.write('XY');
      expect(f.tell()).to.equal(2);
      const buf = Buffer.alloc(4);
      await f.read(buf);
      expect(text(buf)).to.equal('cdef');
      await f.close();
      expect(text(await store.readFile('existing'))).to.equal('XYcdef');
    });
  });

  describe("'w'", function () {
    it("'w' truncates an existing file", async function () {
      const f = await store.open('existing', 'w');
      expect((await f.stat()).size).to.equal(0);
      await f.close();
      expect((await store.readFile('existing')).length).to.equal(0);
    });

    it("'w' creates a missing file", async function () {
      const f = await store.open('created', 'w');
      await f.write('new');
      await f.close();
      expect(text(await store.readFile('created'))).to.equal('new');
    });

    it("'w' rejects read with EBADF", async function () {
      const f = await store.open('existing', 'w');
      await f.write('abc');
      await expectCpError(() => f.read(Buffer.alloc(3), 0, 3, 0), 'EBADF');
      await f.close();
    });

    it("the truncation by 'w' is undone by rollback", async function () {
      const f = await store.open('existing', 'w');
      await f.close();
      await store.rollback();
      expect(text(await store.readFile('existing'))).to.equal('abcdef');
    });
  });

  describe("'w+'", function () {
    it("'w+' truncates an existing file and allows reading back what it wrote", async function () {
      const f = await store.open('existing', 'w+');
      expect((await f.stat()).size).to.equal(0);
      await f.write('hello');
      const buf = Buffer.alloc(5);
      const r = await f.read(buf, 0, 5, 0);
      expect(r.bytesRead).to.equal(5);
      expect(text(buf)).to.equal('hello');
      await f.close();
    });

    it("'w+' creates a missing file", async function () {
      const f = await store.open('created', 'w+');
      expect((await f.stat()).size).to.equal(0);
      await f.close();
      expect((await store.readFile('created')).length).to.equal(0);
    });
  });

  describe("'a'", function () {
    it("'a' starts at position 0 but writes go to the end, even after a seek", async function () {
      const f = await store.open('existing', 'a');
      expect(f.tell()).to.equal(0);
      f.seek(1);
      await f.write('gh');
      expect(f.tell()).to.equal(8);
      f.seek(0);
      await f.write('ij');
      expect(f.tell()).to.equal(10);
      await f.close();
      expect(text(await store.readFile('existing'))).to.equal('abcdefghij');
    });

    it("'a' ignores an explicit write position and appends", async function () {
      const f = await store.open('existing', 'a');
      await f.write('Z', 0);
      await f.close();
      expect(text(await store.readFile('existing'))).to.equal('abcdefZ');
    });

    it("'a' creates a missing file", async function () {
      const f = await store.open('created', 'a');
      await f.write('1');
      await f.write('2');
      await f.close();
      expect(text(await store.readFile('created'))).to.equal('12');
    });

    it("'a' rejects read with EBADF", async function () {
      const f = await store.open('existing', 'a');
      await expectCpError(() => f.read(Buffer.alloc(2), 0, 2, 0), 'EBADF');
      await f.close();
    });
  });

  describe("'a+'", function () {
    it("'a+' reads anywhere while every write appends", async function () {
      const f = await store.open('existing', 'a+');
      expect(f.tell()).to.equal(0);
      const buf = Buffer.alloc(3);
      await f.read(buf, 0, 3, 2);
      expect(text(buf)).to.equal('cde');
      f.seek(1);
      await f.read(buf, 0, 2);
      expect(text(buf.subarray(0, 2))).to.equal('bc');
      f.seek(0);
      await f.write('XY');
      expect(f.tell()).to.equal(8);
      const all = await readAll(f);
      expect(text(all)).to.equal('abcdefXY');
      await f.close();
    });

    it("'a+' creates a missing file", async function () {
      const f = await store.open('created', 'a+');
      await f.write('q');
      expect(text(await readAll(f))).to.equal('q');
      await f.close();
    });
  });

  describe('resume', function () {
    it('after close() and a check, a reopened store opens the name fresh (resumed false, position 0)', async function () {
      const f = await store.open('log', 'w');
      await f.write('hello world');
      f.seek(5);
      await store.check();
      await f.close();
      await store.check();
      await store.close();
      store = await sb.open(dir);
      const g = await store.open('log', 'r+');
      expect(g.resumed).to.equal(false);
      expect(g.tell()).to.equal(0);
      await g.close();
      // and 'w' truncates as usual for a fresh open
      const h = await store.open('log', 'w');
      expect(h.resumed).to.equal(false);
      expect((await h.stat()).size).to.equal(0);
      await h.close();
    });

    it('an entry left open at close({discard:true}) is resumed with its checkpointed position, and w does not truncate', async function () {
      const f = await store.open('log', 'w');
      await f.write('hello world');
      f.seek(6);
      await store.check(); // checkpoint: position 6, content 'hello world'
      await f.write('XXX'); // position 9, never checked
      await store.close({ discard: true });

      store = await sb.open(dir);
      const g = await store.open('log', 'w');
      expect(g.resumed, 'resumed').to.equal(true);
      expect(g.tell(), 'restored position').to.equal(6);
      expect((await g.stat()).size, 'not truncated').to.equal(11);
      await g.close();
      expect(text(await store.readFile('log'))).to.equal('hello world');
    });

    it('a resumed entry continues from its position and is fresh again after close and check', async function () {
      const f = await store.open('log', 'a');
      await f.write('one;');
      await store.check();
      await store.close({ discard: true });

      store = await sb.open(dir);
      const g = await store.open('log', 'a');
      expect(g.resumed).to.equal(true);
      expect(g.tell()).to.equal(4);
      await g.write('two;');
      await g.close();
      await store.check();
      expect(text(await store.readFile('log'))).to.equal('one;two;');
      await store.close();

      store = await sb.open(dir);
      const h = await store.open('log', 'a');
      expect(h.resumed).to.equal(false);
      expect(h.tell()).to.equal(0);
      await h.close();
    });

    it('an entry opened but never checked is not resumed after close({discard:true})', async function () {
      const f = await store.open('fresh', 'w');
      await f.write('never checked');
      await store.close({ discard: true });
      store = await sb.open(dir);
      // the creation was never checked, so the name does not exist
      await expectCpError(() => store.open('fresh', 'r'), 'ENOENT');
      const g = await store.open('fresh', 'w');
      expect(g.resumed).to.equal(false);
      expect(g.tell()).to.equal(0);
      await g.close();
    });
  });
});
