// The seed's C-style API (cpfile/compat): C return conventions over a default store at cwd.
// The compat module keeps process-wide state (hooks, default store), so the order of the
// tests in this file matters: cp_hooks must be the very first compat call.
import { access, readFile as fsReadFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { CpError } from '../lib/index.js';
import {
  cp_check,
  cp_close,
  cp_dup,
  cp_dup2,
  cp_error,
  cp_hooks,
  cp_open,
  cp_read,
  cp_seek,
  cp_tell,
  cp_unlink,
  cp_write,
} from '../lib/compat.js';
import { makeTmpDir, removeDir } from './helpers/sandbox.js';

type CpFileC = NonNullable<Awaited<ReturnType<typeof cp_open>>>;
type HookArgs = Parameters<typeof cp_hooks>;
type Ev = [string, ...unknown[]];

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

// Process-wide recording hooks, installed once by the first test.
const events: Ev[] = [];
const kinds = () => events.map((e) => e[0]);
const ins = (name: string) => {
  events.push(['insert', name]);
  return `ud-${name}`;
};
const upd = (name: string, position: number, userdata: unknown, state: string) => {
  events.push(['update', name, position, userdata, state]);
};
const qry = (name: string) => {
  events.push(['query', name]);
  return null;
};
const com = () => {
  events.push(['commit']);
};
const rbk = () => {
  events.push(['rollback']);
};
const ini = () => {
  events.push(['init']);
};
const fin = () => {
  events.push(['fini']);
};

describe('compat: seed C API', function () {
  const origCwd = process.cwd();
  let dir: string;
  let opened: CpFileC[] = [];

  /** cp_open that remembers handles so afterEach can close them (closing the default store). */
  async function open(name: string, mode: string): Promise<CpFileC> {
    const f = await cp_open(name, mode);
    if (f === null) expect.fail(`cp_open(${name}, ${mode}) failed: ${(await cp_error())?.code}`);
    opened.push(f);
    return f;
  }

  beforeEach(async function () {
    dir = await makeTmpDir('cpfile-compat-');
    process.chdir(dir);
    events.length = 0;
  });
  afterEach(async function () {
    for (const f of opened.splice(0).reverse()) {
      try {
        await cp_close(f);
      } catch {
        /* already closed */
      }
    }
    process.chdir(origCwd);
    await removeDir(dir);
  });

  it('cp_hooks before the first cp_open returns 0 and the hooks then see init/query/insert/update/commit/fini', async function () {
    const rc = await cp_hooks(
      ins as HookArgs[0],
      upd as unknown as HookArgs[1],
      qry as HookArgs[2],
      com as HookArgs[3],
      rbk as HookArgs[4],
      ini as HookArgs[5],
      fin as HookArgs[6],
    );
    expect(rc).to.equal(0);
    const f = await open('h.txt', 'w');
    expect(kinds()).to.include('init');
    expect(kinds()).to.include('query');
    expect(kinds()).to.include('insert');
    expect(await cp_write(f, Buffer.from('abc'), 1, 3)).to.equal(3);
    events.length = 0;
    expect(await cp_check(f)).to.equal(0);
    expect(events.filter((e) => e[0] === 'update')).to.deep.equal([['update', 'h.txt', 3, 'ud-h.txt', 'open']]);
    expect(kinds().at(-1)).to.equal('commit');
    events.length = 0;
    expect(await cp_close(f)).to.equal(0);
    opened = [];
    // last file closed: the default store is closed, so fini ran
    expect(kinds()).to.include('commit');
    expect(kinds().at(-1)).to.equal('fini');
  });

  it('cp_hooks after files were opened returns -1', async function () {
    const f = await open('x', 'w');
    const rc = await cp_hooks(
      ins as HookArgs[0],
      upd as unknown as HookArgs[1],
      qry as HookArgs[2],
      com as HookArgs[3],
      rbk as HookArgs[4],
    );
    expect(rc).to.equal(-1);
    expect(await cp_close(f)).to.equal(0);
  });

  it('cp_write and cp_read return item counts and cp_tell/cp_seek follow the position', async function () {
    const f = await open('data.bin', 'w+');
    const src = Buffer.from('AAAABBBBCCCC');
    expect(await cp_write(f, src, 4, 3)).to.equal(3);
    expect(await cp_tell(f)).to.equal(12);
    expect(await cp_seek(f, 4)).to.equal(0);
    expect(await cp_tell(f)).to.equal(4);
    const dst = Buffer.alloc(8);
    expect(await cp_read(f, dst, 4, 2)).to.equal(2);
    expect(dst.toString()).to.equal('BBBBCCCC');
    expect(await cp_tell(f)).to.equal(12);
  });

  it('cp_read counts only whole items at the end of file (like fread)', async function () {
    const f = await open('ten', 'w+');
    expect(await cp_write(f, Buffer.from('0123456789'), 1, 10)).to.equal(10);
    expect(await cp_seek(f, 0)).to.equal(0);
    const dst = Buffer.alloc(12);
    expect(await cp_read(f, dst, 4, 3)).to.equal(2);
    expect(dst.subarray(0, 8).toString()).to.equal('01234567');
    expect(await cp_seek(f, 10)).to.equal(0);
    expect(await cp_read(f, dst, 1, 5)).to.equal(0);
  });

  it("'rb' and 'wb' (and 'r+b') are accepted by cp_open", async function () {
    const w = await open('b.bin', 'wb');
    expect(await cp_write(w, Buffer.from([1, 2, 3]), 1, 3)).to.equal(3);
    expect(await cp_close(w)).to.equal(0);
    opened = opened.filter((x) => x !== w);
    const r = await open('b.bin', 'rb');
    const buf = Buffer.alloc(3);
    expect(await cp_read(r, buf, 1, 3)).to.equal(3);
    expect([...buf]).to.deep.equal([1, 2, 3]);
    expect(await cp_close(r)).to.equal(0);
    opened = opened.filter((x) => x !== r);
    const rp = await open('b.bin', 'r+b');
    expect(await cp_write(rp, Buffer.from([9]), 1, 1)).to.equal(1);
  });

  it('cp_open of a missing file in mode r returns null and cp_error() gives ENOENT', async function () {
    const keep = await open('keep', 'w'); // keeps the default store open
    expect(await cp_open('missing', 'r')).to.equal(null);
    const err = await cp_error();
    expect(err).to.be.instanceOf(CpError);
    expect(err!.code).to.equal('ENOENT');
    expect(await cp_open('keep2', 'x')).to.equal(null);
    expect((await cp_error())!.code).to.equal('EINVAL');
    void keep;
  });

  it('a cp_open that fails beside one that succeeds does not close the default store under it', async function () {
    const [bad, good] = await Promise.all([cp_open('missing', 'r'), cp_open('c', 'w')]);
    expect(bad).to.equal(null);
    expect(good).to.not.equal(null);
    expect(await cp_write(good!, Buffer.from('y'), 1, 1)).to.equal(1);
    expect(await cp_close(good!)).to.equal(0);
    expect(await fsReadFile(path.join(process.cwd(), 'c'), 'utf8')).to.equal('y');
  });

  it('cp_seek to a negative position returns -1 with EINVAL and keeps the position', async function () {
    const f = await open('s', 'w+');
    await cp_write(f, Buffer.from('abcd'), 1, 4);
    expect(await cp_seek(f, -1)).to.equal(-1);
    expect((await cp_error())!.code).to.equal('EINVAL');
    expect(await cp_tell(f)).to.equal(4);
  });

  it('cp_write on a read-only handle returns 0 items and cp_error() gives EBADF', async function () {
    const w = await open('ro', 'w');
    await cp_write(w, Buffer.from('x'), 1, 1);
    const r = await open('other', 'w');
    expect(await cp_close(w)).to.equal(0);
    opened = opened.filter((x) => x !== w);
    const ro = await open('ro', 'r');
    expect(await cp_write(ro, Buffer.from('zz'), 1, 2)).to.equal(0);
    expect((await cp_error())!.code).to.equal('EBADF');
    void r;
  });

  it('the default store is rooted at process.cwd() and files land there', async function () {
    const f = await open('sub/dir/file.txt', 'w');
    expect(await cp_write(f, Buffer.from('in cwd'), 6, 1)).to.equal(1);
    expect(await cp_close(f)).to.equal(0);
    opened = [];
    const real = await realpath(dir);
    expect(await fsReadFile(path.join(real, 'sub', 'dir', 'file.txt'), 'utf8')).to.equal('in cwd');
    expect(await exists(path.join(real, '.cpfile'))).to.equal(true);
  });

  it('cp_close checks: the commit hook runs at cp_close while another file keeps the store open', async function () {
    const a = await open('a', 'w');
    const b = await open('b', 'w');
    await cp_write(a, Buffer.from('aa'), 1, 2);
    await cp_write(b, Buffer.from('bbb'), 1, 3);
    events.length = 0;
    expect(await cp_close(a)).to.equal(0);
    opened = opened.filter((x) => x !== a);
    expect(kinds()).to.include('commit');
    const ups = events.filter((e) => e[0] === 'update');
    expect(ups).to.deep.include(['update', 'a', 2, 'ud-a', 'closed']);
    expect(ups).to.deep.include(['update', 'b', 3, 'ud-b', 'open']);
  });

  it('cp_check returns 0 and commits', async function () {
    const f = await open('c', 'w');
    await cp_write(f, Buffer.from('c'), 1, 1);
    events.length = 0;
    expect(await cp_check(f)).to.equal(0);
    expect(kinds()).to.include('commit');
  });

  it('cp_dup returns a handle that shares the position', async function () {
    const f = await open('d', 'w+');
    const d = await cp_dup(f);
    expect(d).to.not.equal(null);
    opened.push(d!);
    await cp_write(f, Buffer.from('12'), 1, 2);
    expect(await cp_tell(d!)).to.equal(2);
    await cp_write(d!, Buffer.from('34'), 1, 2);
    expect(await cp_tell(f)).to.equal(4);
    expect(await cp_seek(f, 0)).to.equal(0);
    const buf = Buffer.alloc(4);
    expect(await cp_read(d!, buf, 1, 4)).to.equal(4);
    expect(buf.toString()).to.equal('1234');
  });

  it('cp_dup2 closes the target and makes it a dup of the source', async function () {
    const a = await open('a2', 'w+');
    const b = await open('b2', 'w+');
    await cp_write(a, Buffer.from('AAA'), 1, 3);
    await cp_write(b, Buffer.from('B'), 1, 1);
    expect(await cp_dup2(a, b)).to.equal(0);
    expect(await cp_tell(b)).to.equal(3);
    await cp_write(b, Buffer.from('X'), 1, 1);
    expect(await cp_tell(a)).to.equal(4);
    // b2 was closed by cp_dup2, so it can be opened again, and kept its content
    const b2 = await open('b2', 'r');
    const buf = Buffer.alloc(4);
    expect(await cp_read(b2, buf, 1, 4)).to.equal(1);
    expect(buf.subarray(0, 1).toString()).to.equal('B');
    expect(await cp_seek(a, 0)).to.equal(0);
    expect(await cp_read(a, buf, 1, 4)).to.equal(4);
    expect(buf.toString()).to.equal('AAAX');
  });

  it('cp_unlink removes a file (0), and a missing name gives -1 with ENOENT', async function () {
    const keep = await open('keep', 'w');
    const v = await open('victim', 'w');
    await cp_write(v, Buffer.from('v'), 1, 1);
    expect(await cp_close(v)).to.equal(0);
    opened = opened.filter((x) => x !== v);
    expect(await cp_unlink('victim')).to.equal(0);
    expect(await cp_open('victim', 'r')).to.equal(null);
    expect((await cp_error())!.code).to.equal('ENOENT');
    expect(await cp_unlink('never-existed')).to.equal(-1);
    expect((await cp_error())!.code).to.equal('ENOENT');
    expect(await cp_close(keep)).to.equal(0);
    opened = [];
    expect(await exists(path.join(await realpath(dir), 'victim'))).to.equal(false);
  });

  it('a closed handle makes calls fail C-style with EBADF', async function () {
    const keep = await open('keep', 'w');
    const f = await open('f', 'w+');
    expect(await cp_close(f)).to.equal(0);
    opened = opened.filter((x) => x !== f);
    expect(await cp_write(f, Buffer.from('x'), 1, 1)).to.equal(0);
    expect((await cp_error())!.code).to.equal('EBADF');
    expect(await cp_close(f)).to.equal(-1);
    void keep;
  });
});
