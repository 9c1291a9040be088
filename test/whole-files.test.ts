/**
 * store.readFile, writeFile, appendFile and copyFile in their fs/promises forms: encodings, any
 * ArrayBufferView, creating on append, copying what the store sees (pending changes included) in
 * bounded memory, atomic at the next check (gone after rollback and after a crash), EBUSY for an
 * open target, and bad input.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { constants } from 'node:fs';
import * as path from 'node:path';
import { openStore } from '../lib/index.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { openHeld, crash, NO_APPLY } from './helpers/journal.js';

const bad = (v: unknown): never => v as never;

describe('whole files: readFile, writeFile, appendFile, copyFile', function () {
  this.timeout(120000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('readFile and writeFile take an encoding string or { encoding } as fs/promises', async () => {
    const store = await sb.open(await sb.dir());
    await store.writeFile('t', 'héllo');
    expect(await store.readFile('t', 'utf8')).to.equal('héllo');
    expect(await store.readFile('t', { encoding: 'utf8' })).to.equal('héllo');
    expect(Buffer.isBuffer(await store.readFile('t'))).to.equal(true);
    expect(Buffer.isBuffer(await store.readFile('t', { encoding: null }))).to.equal(true);
    expect(Buffer.isBuffer(await store.readFile('t', {}))).to.equal(true);
    await store.writeFile('h', '68656c6c6f', 'hex');
    expect(await store.readFile('h', 'latin1')).to.equal('hello');
    await store.writeFile('b', 'aGVsbG8=', { encoding: 'base64' });
    expect(await store.readFile('b', 'base64')).to.equal('aGVsbG8=');
    await store.writeFile('e', '');
    expect(await store.readFile('e', 'utf8')).to.equal('');
  });

  it('data may be any ArrayBufferView (a Uint16Array, a DataView, a view into a larger buffer)', async () => {
    const store = await sb.open(await sb.dir());
    const u16 = new Uint16Array([0x6261, 0x6463]);
    await store.writeFile('u16', u16);
    expect(await store.readFile('u16')).to.deep.equal(Buffer.from(u16.buffer));
    const big = Buffer.from('0123456789');
    await store.writeFile('dv', new DataView(big.buffer, big.byteOffset + 2, 3));
    expect(await store.readFile('dv', 'utf8')).to.equal('234');
    await store.appendFile('dv', new Float32Array([1]));
    expect((await store.readFile('dv')).length).to.equal(7);
  });

  it('appendFile creates a missing file, appends to a pending or disk one, and is atomic at the next check', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'disk.log'), 'on disk\n');
    const store = await sb.open(dir);
    await store.appendFile('new/a.log', 'one\n');
    await store.appendFile('new/a.log', 'two\n', 'utf8');
    await store.appendFile('disk.log', Buffer.from('more\n'));
    await store.appendFile('empty', '');
    expect(await store.readFile('new/a.log', 'utf8')).to.equal('one\ntwo\n');
    expect(await store.readFile('disk.log', 'utf8')).to.equal('on disk\nmore\n');
    expect((await store.stat('empty')).size).to.equal(0);
    expect(fs.readFileSync(path.join(dir, 'disk.log'), 'utf8')).to.equal('on disk\n');
    await store.rollback();
    expect(await store.exists('new/a.log')).to.equal(false);
    expect(await store.readFile('disk.log', 'utf8')).to.equal('on disk\n');
    await store.appendFile('disk.log', 'kept\n');
    await store.check();
    await store.close();
    expect(fs.readFileSync(path.join(dir, 'disk.log'), 'utf8')).to.equal('on disk\nkept\n');
  });

  it('copyFile copies what the store sees (pending writes of an open source included), onto a new or existing name', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'target'), 'old target content, longer than the source');
    const store = await sb.open(dir);
    const f = await store.open('src', 'w+');
    await f.write('pending bytes');
    await store.copyFile('src', 'target');
    await store.copyFile('src', 'sub/dir/copy');
    expect(await store.readFile('target', 'utf8')).to.equal('pending bytes');
    expect(await store.readFile('sub/dir/copy', 'utf8')).to.equal('pending bytes');
    await f.write(' and more'); // the copy is a copy: later writes to the source do not show in it
    expect(await store.readFile('target', 'utf8')).to.equal('pending bytes');
    expect(fs.readFileSync(path.join(dir, 'target'), 'utf8')).to.match(/^old target/);
    await store.copyFile('target', 'target'); // onto itself: nothing changes (as fs)
    expect(await store.readFile('target', 'utf8')).to.equal('pending bytes');
    await store.check();
    await f.close();
    await store.close();
    expect(fs.readFileSync(path.join(dir, 'target'), 'utf8')).to.equal('pending bytes');
    expect(fs.readFileSync(path.join(dir, 'sub/dir/copy'), 'utf8')).to.equal('pending bytes');
  });

  it('copyFile of a renamed-in and of a truncated file; COPYFILE_EXCL refuses an existing target with EEXIST', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'a'), 'aaaaaaaaaa');
    const store = await sb.open(dir);
    await store.rename('a', 'b');
    await store.copyFile('b', 'c');
    expect(await store.readFile('c', 'utf8')).to.equal('aaaaaaaaaa');
    const f = await store.open('b', 'r+');
    await f.truncate(3);
    await f.close();
    await store.copyFile('b', 'd', constants.COPYFILE_FICLONE);
    expect(await store.readFile('d', 'utf8')).to.equal('aaa');
    await expectCpError(() => store.copyFile('b', 'c', constants.COPYFILE_EXCL), 'EEXIST');
    await expectCpError(() => store.copyFile('b', 'b', constants.COPYFILE_EXCL), 'EEXIST');
    expect(await store.readFile('c', 'utf8')).to.equal('aaaaaaaaaa');
    await store.copyFile('b', 'e', constants.COPYFILE_EXCL);
    await expectCpError(() => store.copyFile('a', 'x'), 'ENOENT');
    expect(await store.exists('x')).to.equal(false);
  });

  it('a copy of a large file runs in chunks, in bounded memory, and survives a crash only once checked', async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir);
    const f = await s.open('big', 'w');
    const chunk = Buffer.alloc(1 << 20);
    // 128 MiB: the copy's memory stays at the journal writer's batches and what is in flight to the
    // flusher (about 60-70 MiB of RSS on this machine, whatever the size: a 2 GiB copy peaks there
    // too), well below the file, which is never held whole.
    for (let i = 0; i < 128; i++) {
      chunk.fill(i);
      await f.write(chunk);
    }
    await f.close();
    await s.check();
    const rss0 = process.memoryUsage().rss;
    await s.copyFile('big', 'big.copy');
    const grew = process.memoryUsage().rss - rss0;
    expect(grew, 'RSS growth while copying 128 MiB').to.be.below(100 * 1024 * 1024);
    const st = await s.stat('big.copy');
    expect(st.size).to.equal(128 << 20);
    const back = Buffer.alloc(1 << 20);
    const g = await s.open('big.copy', 'r');
    await g.read(back, 0, back.length, 127 << 20);
    expect(back.every((b) => b === 127)).to.equal(true);
    await g.close();
    await s.copyFile('big', 'unchecked');
    await s.check();
    await s.copyFile('big', 'lost');
    await crash(s);
    const r = await openStore(dir, NO_APPLY);
    try {
      expect(await r.readdir()).to.deep.equal(['big', 'big.copy', 'unchecked']);
      expect((await r.stat('unchecked')).size).to.equal(128 << 20);
    } finally {
      await r.close();
    }
  });

  it('EBUSY for an open target (as writeFile); EINVAL for a directory; reading an open source is fine', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir);
    await store.writeFile('d/x', 'x');
    const f = await store.open('busy', 'w');
    await expectCpError(() => store.copyFile('d/x', 'busy'), 'EBUSY');
    await expectCpError(() => store.appendFile('busy', 'y'), 'EBUSY');
    await expectCpError(() => store.writeFile('busy', 'y'), 'EBUSY');
    await store.copyFile('busy', 'copy-of-busy');
    await expectCpError(() => store.readFile('d'), 'EINVAL'); // a directory-to-be
    await expectCpError(() => store.copyFile('d', 'y'), 'EINVAL');
    await expectCpError(() => store.appendFile('d', 'y'), 'EINVAL');
    await expectCpError(() => store.copyFile('d/x', 'd'), 'EINVAL');
    await store.check();
    await expectCpError(() => store.readFile('d'), 'EINVAL'); // on disk now
    await expectCpError(() => store.appendFile('d', 'y'), 'EINVAL');
    await f.close();
  });

  it('bad input: wrong types, bad encodings and options, names outside the store; after close(): ECLOSED', async () => {
    const store = await sb.open(await sb.dir());
    await store.writeFile('f', 'x');
    for (const data of [42, null, undefined, {}, [1, 2], new ArrayBuffer(4)]) {
      await expectCpError(() => store.writeFile('f', bad(data)), 'EINVAL');
      await expectCpError(() => store.appendFile('f', bad(data)), 'EINVAL');
    }
    for (const o of ['nope', 5, { encoding: 'nope' }, { encoding: 7 }, { flag: 'a' }, { signal: new AbortController().signal }, { mode: 0o600 }]) {
      await expectCpError(() => store.readFile('f', bad(o)), 'EINVAL');
      await expectCpError(() => store.writeFile('f', 'y', bad(o)), 'EINVAL');
    }
    await expectCpError(() => store.appendFile('f', 'y', bad({ flag: 'w' })), 'EINVAL');
    const detached = new Uint8Array(new ArrayBuffer(4));
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    await expectCpError(() => store.writeFile('f', detached), 'EINVAL');
    await expectCpError(() => store.appendFile('f', detached), 'EINVAL');
    expect(await store.readFile('f', 'utf8')).to.equal('x'); // nothing above changed it
    for (const m of [-1, 1.5, '1', 8, constants.COPYFILE_FICLONE_FORCE]) await expectCpError(() => store.copyFile('f', 'g', bad(m)), 'EINVAL');
    for (const n of ['../x', '/abs', '.cpfile/control']) {
      await expectCpError(() => store.readFile(n), 'EPATH');
      await expectCpError(() => store.appendFile(n, 'y'), 'EPATH');
      await expectCpError(() => store.copyFile('f', n), 'EPATH');
      await expectCpError(() => store.copyFile(n, 'g'), 'EPATH');
    }
    for (const n of [3, '', 'dir/']) {
      await expectCpError(() => store.appendFile(bad(n), 'y'), 'EINVAL');
      await expectCpError(() => store.copyFile('f', bad(n)), 'EINVAL');
    }
    expect(await store.exists('g')).to.equal(false);
    await store.close();
    await expectCpError(() => store.readFile('f', 'utf8'), 'ECLOSED');
    await expectCpError(() => store.appendFile('f', 'y'), 'ECLOSED');
    await expectCpError(() => store.copyFile('f', 'g'), 'ECLOSED');
  });
});
