/**
 * store.readdir, store.stat and store.exists: names as the store sees them now, the files on disk
 * merged with pending creates, renames and unlinks (tombstones), before and after check(), after
 * rollback() and after a crash and recovery; what is left out (metadata, symlinks, FIFOs); bad input.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { openStore, StoreDirent } from '../lib/index.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { openHeld, crash, NO_APPLY } from './helpers/journal.js';

type Store = Awaited<ReturnType<typeof openStore>>;
const bad = (v: unknown): string => v as string;

/** name -> 'f' | 'd' for a recursive listing with types, as one comparable string per entry. */
async function typed(store: Store, dir = ''): Promise<string[]> {
  const ents = await store.readdir(dir, { recursive: true, withFileTypes: true });
  return ents.map((e) => `${e.parentPath === '' ? '' : `${e.parentPath}/`}${e.name}:${e.isFile() ? 'f' : e.isDirectory() ? 'd' : '?'}`);
}

describe('readdir, stat and exists', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it('lists the files on disk, sorted, never .cpfile; recursive gives paths relative to dir', async () => {
    const dir = await sb.dir();
    fs.mkdirSync(path.join(dir, 'sub/deep'), { recursive: true });
    for (const n of ['b.txt', 'a.txt', 'sub/x', 'sub/deep/y', 'Z']) fs.writeFileSync(path.join(dir, n), n);
    const store = await sb.open(dir);
    expect(await store.readdir()).to.deep.equal(['Z', 'a.txt', 'b.txt', 'sub']);
    expect(await store.readdir('')).to.deep.equal(['Z', 'a.txt', 'b.txt', 'sub']);
    expect(await store.readdir('.')).to.deep.equal(['Z', 'a.txt', 'b.txt', 'sub']);
    expect(await store.readdir('sub')).to.deep.equal(['deep', 'x']);
    expect(await store.readdir('sub/')).to.deep.equal(['deep', 'x']);
    expect(await store.readdir('', { recursive: true })).to.deep.equal(['Z', 'a.txt', 'b.txt', 'sub', 'sub/deep', 'sub/deep/y', 'sub/x']);
    expect(await store.readdir('sub', { recursive: true })).to.deep.equal(['deep', 'deep/y', 'x']);
    expect(await typed(store, 'sub')).to.deep.equal(['sub/deep:d', 'sub/deep/y:f', 'sub/x:f']);
    const [d] = await store.readdir('sub/deep', { withFileTypes: true });
    expect(d).to.be.instanceOf(StoreDirent);
    expect([d.name, d.parentPath, d.isFile(), d.isDirectory(), d.isSymbolicLink()]).to.deep.equal(['y', 'sub/deep', true, false, false]);
  });

  it('stat and exists by name: size, file or directory, ENOENT', async () => {
    const dir = await sb.dir();
    fs.mkdirSync(path.join(dir, 'd'));
    fs.writeFileSync(path.join(dir, 'd/f'), '12345');
    const store = await sb.open(dir);
    const st = await store.stat('d/f');
    expect([st.size, st.isFile(), st.isDirectory()]).to.deep.equal([5, true, false]);
    const sd = await store.stat('d');
    expect([sd.isFile(), sd.isDirectory()]).to.deep.equal([false, true]);
    expect((await store.stat('.')).isDirectory()).to.equal(true);
    expect((await store.stat('d/')).isDirectory()).to.equal(true);
    await expectCpError(() => store.stat('nope'), 'ENOENT');
    await expectCpError(() => store.stat('d/f/'), 'ENOTDIR');
    await expectCpError(() => store.stat('d/f/x'), 'ENOTDIR');
    expect(await store.exists('d/f')).to.equal(true);
    expect(await store.exists('d')).to.equal(true);
    expect(await store.exists('nope')).to.equal(false);
    expect(await store.exists('d/f/x')).to.equal(false);
    expect(await store.exists('x/y/z')).to.equal(false);
  });

  it('sees pending creates, writes, renames and unlinks (read-your-writes), and the same after check()', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'old'), 'disk');
    fs.writeFileSync(path.join(dir, 'gone'), 'x');
    const store = await sb.open(dir);
    // All in one epoch: created, renamed and unlinked.
    await store.writeFile('new/a', 'aaa');
    await store.writeFile('tmp', 'tttt');
    await store.rename('tmp', 'new/b');
    await store.writeFile('c', 'c');
    await store.unlink('c');
    await store.unlink('gone');
    await store.rename('old', 'moved/old');
    const f = await store.open('open.log', 'w');
    void f.write('12345678'); // unawaited: the stat after it sees it (call order)
    const want = ['moved:d', 'moved/old:f', 'new:d', 'new/a:f', 'new/b:f', 'open.log:f'];
    expect(await typed(store)).to.deep.equal(want);
    expect((await store.stat('open.log')).size).to.equal(8);
    expect((await store.stat('new/b')).size).to.equal(4);
    expect((await store.stat('new')).isDirectory()).to.equal(true);
    expect(await store.exists('c')).to.equal(false);
    expect(await store.exists('gone')).to.equal(false);
    expect(await store.exists('old')).to.equal(false);
    expect(await store.exists('tmp')).to.equal(false);
    await expectCpError(() => store.readdir('new/a'), 'ENOTDIR');
    await expectCpError(() => store.readdir('nothere'), 'ENOENT');
    await store.check();
    expect(await typed(store)).to.deep.equal(want);
    await f.close();
    await store.close();
    // On disk as listed.
    expect(fs.readdirSync(dir).filter((n) => n !== '.cpfile').sort()).to.deep.equal(['moved', 'new', 'open.log']);
    const again = await sb.open(dir);
    expect(await typed(again)).to.deep.equal(want);
  });

  it('after rollback() the listing is the last check again', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir);
    await store.writeFile('keep', 'k');
    await store.writeFile('d/x', 'x');
    await store.check();
    const before = await typed(store);
    expect(before).to.deep.equal(['d:d', 'd/x:f', 'keep:f']);
    await store.writeFile('p/q', 'pending');
    await store.rename('keep', 'kept');
    await store.unlink('d/x');
    expect(await typed(store)).to.deep.equal(['d:d', 'kept:f', 'p:d', 'p/q:f']);
    await store.rollback();
    expect(await typed(store)).to.deep.equal(before);
    expect(await store.exists('p')).to.equal(false);
  });

  it('a directory-to-be under a tombstone: a file unlinked and a directory of that name made in one epoch', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'a'), 'file a');
    const store = await sb.open(dir);
    await store.unlink('a');
    await store.writeFile('a/b', 'now a directory');
    expect(await typed(store)).to.deep.equal(['a:d', 'a/b:f']);
    expect((await store.stat('a')).isDirectory()).to.equal(true);
    expect(await store.readdir('a')).to.deep.equal(['b']);
    await expectCpError(() => store.stat('a/zz'), 'ENOENT');
    // Created and unlinked under a new directory: the directory is still to be made (as applying will).
    await store.writeFile('n/t', 't');
    await store.unlink('n/t');
    expect(await store.readdir('n')).to.deep.equal([]);
    await store.check();
    await store.close();
    const again = await sb.open(dir);
    expect(await typed(again)).to.deep.equal(['a:d', 'a/b:f', 'n:d']);
  });

  it('names two levels below a file on disk pending unlink can be created (they were EIO: ENOTDIR from the writability check)', async () => {
    const dir = await sb.dir();
    fs.writeFileSync(path.join(dir, 'a'), 'file a');
    const store = await sb.open(dir);
    await store.unlink('a');
    await store.writeFile('a/b/c', 'C');
    await (await store.open('a/b/d', 'w')).close();
    await store.appendFile('a/x/y/z', 'Z');
    await store.copyFile('a/b/c', 'a/b/e');
    expect(await typed(store)).to.deep.equal(['a:d', 'a/b:d', 'a/b/c:f', 'a/b/d:f', 'a/b/e:f', 'a/x:d', 'a/x/y:d', 'a/x/y/z:f']);
    await store.check();
    await store.close();
    const again = await sb.open(dir);
    expect(await again.readFile('a/b/e', 'utf8')).to.equal('C');
    expect(await again.readFile('a/x/y/z', 'utf8')).to.equal('Z');
  });

  it('after a crash and recovery: the checked names are listed, the unchecked ones are not', async () => {
    const dir = await sb.dir();
    const s = await openHeld(dir);
    await s.writeFile('one', '1');
    await s.writeFile('two', '2');
    await s.check();
    await s.writeFile('three', '3');
    await s.rename('one', 'sub/uno');
    await s.unlink('two');
    expect(await s.readdir('', { recursive: true })).to.deep.equal(['sub', 'sub/uno', 'three']);
    await crash(s);
    const r = await openStore(dir, NO_APPLY);
    try {
      expect(await r.readdir('', { recursive: true })).to.deep.equal(['one', 'two']);
      expect((await r.stat('two')).size).to.equal(1);
    } finally {
      await r.close();
    }
  });

  it('leaves out symlinks and FIFOs (the store cannot open them); a name through a symlink is EPATH', async () => {
    const dir = await sb.dir();
    const outside = await sb.dir();
    fs.writeFileSync(path.join(outside, 'secret'), 's');
    fs.writeFileSync(path.join(dir, 'real'), 'r');
    fs.symlinkSync(outside, path.join(dir, 'link'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'flink'));
    let fifo = true;
    try {
      execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    } catch {
      fifo = false;
    }
    const store = await sb.open(dir);
    expect(await store.readdir('', { recursive: true })).to.deep.equal(['real']);
    await expectCpError(() => store.readdir('link'), 'EPATH');
    await expectCpError(() => store.stat('link/secret'), 'EPATH');
    await expectCpError(() => store.stat('flink'), 'EPATH');
    await expectCpError(() => store.exists('link'), 'EPATH');
    if (fifo) await expectCpError(() => store.stat('pipe'), 'EINVAL');
  });

  it('bad input: wrong types, names outside the store, .cpfile, bad options; after close(): ECLOSED', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir);
    await store.writeFile('f', 'x');
    for (const v of [42, null, {}, ['a']]) {
      await expectCpError(() => store.readdir(bad(v)), 'EINVAL');
      await expectCpError(() => store.stat(bad(v)), 'EINVAL');
      await expectCpError(() => store.exists(bad(v)), 'EINVAL');
    }
    await expectCpError(() => store.stat(''), 'EINVAL');
    await expectCpError(() => store.exists('a\0b'), 'EINVAL');
    for (const n of ['../x', '/etc', '.cpfile', '.cpfile/journal', 'a/../../b']) {
      await expectCpError(() => store.readdir(n), 'EPATH');
      await expectCpError(() => store.stat(n), 'EPATH');
      await expectCpError(() => store.exists(n), 'EPATH');
    }
    const badOpts = [5, 'latin2', { recursive: 'yes' }, { withFileTypes: 1 }, { encoding: 'buffer' }, [true]];
    for (const o of badOpts) await expectCpError(() => store.readdir('', o as never), 'EINVAL');
    await store.close();
    await expectCpError(() => store.readdir(), 'ECLOSED');
    await expectCpError(() => store.stat('f'), 'ECLOSED');
    await expectCpError(() => store.exists('f'), 'ECLOSED');
  });

  it('takes effect in call order: unawaited changes before a listing are in it, those after are not', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir);
    const p1 = store.writeFile('a', '1');
    const listed = store.readdir();
    const p2 = store.writeFile('b', '2');
    const ex = store.exists('b');
    await Promise.all([p1, p2]);
    expect(await listed).to.deep.equal(['a']);
    expect(await ex).to.equal(true);
  });
});
