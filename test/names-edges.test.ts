// Names at the edges (issue #10, defects 5, 6, 8, 13): what the file system cannot hold is refused
// at the call; no symlink is followed at any component of a store name, at the call nor when the
// applier or recovery writes; hard-linked files are read-only; an epoch of thousands of files needs
// no descriptor per file.
import * as fs from 'node:fs/promises';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { CpError, openStore } from '../lib/index.js';
import { APPLY_MAX_FDS } from '../lib/store/applier.js';
import { nodeIO } from '../lib/io.js';
import { Sandbox, expectCpError, type Store, type StoreOptions } from './helpers/sandbox.js';
import { crash } from './helpers/journal.js';
import { interceptIO } from './helpers/intercept-io.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures-names', 'child.js');
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
/** An hour: committed epochs stay unapplied until close() (or recovery) applies them. */
const HELD: StoreOptions = { applyDelay: 3600_000 };

/** The error a failed background apply leaves: EPATH itself, or EREOPEN caused by it. */
function expectEpathFailure(e: unknown): CpError {
  expect(e).to.be.instanceOf(CpError);
  const err = e as CpError;
  const inner = err.code === 'EREOPEN' ? (err.cause as CpError) : err;
  expect(inner.code, err.message).to.equal('EPATH');
  return inner;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  expect.fail('expected a rejection');
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

describe('names at the edges: refused at the call, never followed at write time', function () {
  const sb = new Sandbox();
  let root: string;
  let dir: string;
  let outside: string;

  beforeEach(async function () {
    root = await sb.dir('cpfile-names-');
    dir = path.join(root, 'store');
    outside = path.join(root, 'outside');
    await fs.mkdir(dir);
    await fs.mkdir(outside);
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  describe('name rules', function () {
    /** Names whose full path (store dir + '/' + name) is `bytes` long, built of 250-byte components. */
    const pathOf = (bytes: number): string => {
      let left = bytes - Buffer.byteLength(dir) - 1;
      const parts: string[] = [];
      while (left > 251) {
        parts.push('c'.repeat(250));
        left -= 251;
      }
      parts.push('f'.repeat(left));
      return parts.join('/');
    };

    const refused: [string, () => string][] = [
      ['a trailing slash', () => 'a/'],
      ['a trailing slash under a directory', () => 'sub/a/'],
      ["a trailing '/.'", () => 'a/.'],
      ["a trailing '/..'", () => 'a/b/..'],
      ['a 256-byte name', () => 'x'.repeat(256)],
      ['a 256-byte component under a new directory', () => `new/${'x'.repeat(256)}`],
      ['a 256-byte directory component', () => `${'d'.repeat(256)}/f`],
      ['64 emoji (256 bytes in 128 UTF-16 units)', () => '😀'.repeat(64)],
      ['128 two-byte characters (256 bytes)', () => 'é'.repeat(128)],
      ['a path of PATH_MAX bytes without its NUL', () => pathOf(4096)],
      ['a path far over PATH_MAX in short components', () => Array(2100).fill('d').join('/')],
      ['a lone high surrogate', () => 'x\uD800'],
      ['a lone low surrogate', () => 'x\uDC00'],
      ['a surrogate pair in the wrong order', () => '\uDC00\uD83D'],
      ['a lone surrogate as a directory', () => 'a/\uD800/b'],
    ];
    for (const [what, make] of refused) {
      it(`refuses ${what} with EINVAL at every call, and the store stays openable`, async function () {
        const name = make();
        const s = await sb.open(dir);
        await s.writeFile('keep', 'K');
        const e = await expectCpError(() => s.writeFile(name, 'x'), 'EINVAL');
        expect(e.message.length, 'a short message').to.be.lessThan(400);
        await expectCpError(() => s.open(name, 'w'), 'EINVAL');
        await expectCpError(() => s.open(name, 'r'), 'EINVAL');
        await expectCpError(() => s.rename('keep', name), 'EINVAL');
        await expectCpError(() => s.unlink(name), 'EINVAL');
        await expectCpError(() => s.readFile(name), 'EINVAL');
        await s.check();
        await s.close();
        const again = await sb.open(dir);
        expect(text(await again.readFile('keep'))).to.equal('K');
        expect((await fs.readdir(dir)).sort()).to.deep.equal(['.cpfile', 'keep']);
      });
    }

    it("two names with lone surrogates, one file on disk (both U+FFFD): refused, so neither's content replaces the other's", async function () {
      const s = await sb.open(dir);
      await expectCpError(() => s.writeFile('x\uD800', 'high'), 'EINVAL');
      await expectCpError(() => s.writeFile('x\uDC00', 'low'), 'EINVAL');
      await s.close();
      expect(await fs.readdir(dir)).to.deep.equal(['.cpfile']);
    });

    it('accepts names at the limits and unicode edge cases; NFC and NFD stay two files; all survive a reopen', async function () {
      const names = [
        'y'.repeat(255),
        `new2/${'z'.repeat(255)}`,
        '😀'.repeat(63),
        `${'😀'.repeat(63)}abc`,
        `${Array(200).fill('d').join('/')}/leaf`,
        pathOf(4095),
        'caf\u00e9',
        'cafe\u0301',
        'emoji/🎉/✓.txt',
        '日本語/ファイル',
        'sp ace/tab\there',
        '-dash/.dot/..dots',
      ];
      const s = await sb.open(dir);
      for (const [i, n] of names.entries()) await s.writeFile(n, `content ${i}`);
      await s.check();
      for (const [i, n] of names.entries()) expect(text(await s.readFile(n)), n.slice(0, 40)).to.equal(`content ${i}`);
      await s.close();
      const again = await sb.open(dir);
      for (const [i, n] of names.entries()) expect(text(await again.readFile(n)), n.slice(0, 40)).to.equal(`content ${i}`);
      const top = await fs.readdir(dir);
      expect(top).to.include('caf\u00e9').and.to.include('cafe\u0301');
      expect(await fs.readFile(path.join(dir, 'cafe\u0301'), 'utf8')).to.equal('content 7');
    });
  });

  describe('hard links', function () {
    it('a file with two hard links opens read-only; opening it for writing and writeFile are refused with EPATH', async function () {
      let s = await sb.open(dir);
      await s.writeFile('h', 'hard');
      await s.close();
      s = await sb.open(dir);
      // (A link made while a handle is open for writing is a change behind the store's back: the
      // apply refuses to write through it, see "a hard link made to a file with a pending write" below.)
      await fs.link(path.join(dir, 'h'), path.join(dir, 'h2'));
      const ro = await s.open('h', 'r');
      const buf = Buffer.alloc(4);
      expect((await ro.read(buf, 0, 4, 0)).bytesRead).to.equal(4);
      expect(text(buf)).to.equal('hard');
      await ro.close();
      expect(text(await s.readFile('h2'))).to.equal('hard');
      for (const mode of ['r+', 'w', 'w+', 'a', 'a+'] as const) {
        const err = await expectCpError(() => s.open('h', mode), 'EPATH');
        expect(err.message).to.include('2 hard links');
      }
      await expectCpError(() => s.writeFile('h2', 'x'), 'EPATH');
      await s.check();
      await s.close();
      expect(await fs.readFile(path.join(dir, 'h'), 'utf8')).to.equal('hard');
      // One link again: writable again.
      await fs.unlink(path.join(dir, 'h2'));
      s = await sb.open(dir);
      await s.writeFile('h', 'single');
      await s.close();
      expect(await fs.readFile(path.join(dir, 'h'), 'utf8')).to.equal('single');
    });
  });

  describe('symlinks at the call', function () {
    it("a 'self -> .' link inside the store gives no way into .cpfile: EPATH for every call, and the journal is intact", async function () {
      let s = await sb.open(dir);
      await s.writeFile('keep', 'K');
      await s.check();
      await fs.symlink('.', path.join(dir, 'self'));
      const segs = await fs.readdir(path.join(dir, '.cpfile', 'journal'));
      for (const seg of segs) {
        await expectCpError(() => s.writeFile(`self/.cpfile/journal/${seg}`, 'overwritten'), 'EPATH');
        await expectCpError(() => s.open(`self/.cpfile/journal/${seg}`, 'r+'), 'EPATH');
      }
      await expectCpError(() => s.writeFile('self/.cpfile/control', 'x'), 'EPATH');
      await expectCpError(() => s.rename('keep', 'self/.cpfile/control'), 'EPATH');
      await expectCpError(() => s.readFile('self/keep'), 'EPATH');
      await expectCpError(() => s.open('self/new', 'w'), 'EPATH');
      await expectCpError(() => s.unlink('self/keep'), 'EPATH');
      await expectCpError(() => s.open('self', 'r'), 'EPATH');
      await s.writeFile('after', 'A');
      await s.close();
      s = await sb.open(dir);
      expect(text(await s.readFile('keep'))).to.equal('K');
      expect(text(await s.readFile('after'))).to.equal('A');
      await s.close();
    });
  });

  describe('symlinks planted after the call: the applier writes nothing through them', function () {
    interface Case {
      what: string;
      before?: (s: Store) => Promise<void>;
      act: (s: Store) => Promise<void>;
      plant: () => Promise<void>;
      /** Outside the store (or its metadata) nothing changed. */
      untouched: () => Promise<void>;
      /** The offending path the error names. */
      offending: () => string;
      file: string;
      unplant: () => Promise<void>;
      after: (s: Store) => Promise<void>;
    }
    const aside = (): string => path.join(root, 'aside');
    const cases: Case[] = [
      {
        what: 'a new file under a directory replaced by a symlink (CREATE)',
        act: (s) => s.writeFile('sub/new', 'data'),
        plant: () => fs.symlink(outside, path.join(dir, 'sub')),
        untouched: async () => {
          expect(await fs.readdir(outside)).to.deep.equal([]);
        },
        offending: () => path.join(dir, 'sub'),
        file: 'sub/new',
        unplant: () => fs.unlink(path.join(dir, 'sub')),
        after: async (s) => {
          expect(text(await s.readFile('sub/new'))).to.equal('data');
          expect((await fs.lstat(path.join(dir, 'sub'))).isDirectory()).to.equal(true);
        },
      },
      {
        what: 'a new file whose name became a symlink (CREATE, O_NOFOLLOW)',
        act: (s) => s.writeFile('g', 'new'),
        plant: async () => {
          await fs.writeFile(path.join(outside, 'victim'), 'victim');
          await fs.symlink(path.join(outside, 'victim'), path.join(dir, 'g'));
        },
        untouched: async () => {
          expect(await fs.readFile(path.join(outside, 'victim'), 'utf8')).to.equal('victim');
        },
        offending: () => path.join(dir, 'g'),
        file: 'g',
        unplant: () => fs.unlink(path.join(dir, 'g')),
        after: async (s) => {
          expect(text(await s.readFile('g'))).to.equal('new');
        },
      },
      {
        what: 'a write to an existing file replaced by a symlink (WRITE)',
        before: (s) => s.writeFile('f', 'old'),
        act: async (s) => {
          const f = await s.open('f', 'r+');
          await f.write('NEW', 0);
          await f.close();
        },
        plant: async () => {
          await fs.rename(path.join(dir, 'f'), aside());
          await fs.writeFile(path.join(outside, 'victim'), 'victim');
          await fs.symlink(path.join(outside, 'victim'), path.join(dir, 'f'));
        },
        untouched: async () => {
          expect(await fs.readFile(path.join(outside, 'victim'), 'utf8')).to.equal('victim');
        },
        offending: () => path.join(dir, 'f'),
        file: 'f',
        unplant: async () => {
          await fs.unlink(path.join(dir, 'f'));
          await fs.rename(aside(), path.join(dir, 'f'));
        },
        after: async (s) => {
          expect(text(await s.readFile('f'))).to.equal('NEW');
        },
      },
      {
        what: 'an unlink through a directory replaced by a symlink (UNLINK)',
        before: (s) => s.writeFile('sub/x', 'x'),
        act: (s) => s.unlink('sub/x'),
        plant: async () => {
          await fs.rename(path.join(dir, 'sub'), aside());
          await fs.writeFile(path.join(outside, 'x'), 'outside');
          await fs.symlink(outside, path.join(dir, 'sub'));
        },
        untouched: async () => {
          expect(await fs.readFile(path.join(outside, 'x'), 'utf8')).to.equal('outside');
        },
        offending: () => path.join(dir, 'sub'),
        file: 'sub/x',
        unplant: async () => {
          await fs.unlink(path.join(dir, 'sub'));
          await fs.rename(aside(), path.join(dir, 'sub'));
        },
        after: async (s) => {
          await expectCpError(() => s.readFile('sub/x'), 'ENOENT');
          expect(await exists(path.join(dir, 'sub', 'x'))).to.equal(false);
        },
      },
      {
        what: 'a rename out of a directory replaced by a symlink (RENAME source)',
        before: (s) => s.writeFile('sub/a', 'A'),
        act: (s) => s.rename('sub/a', 'b'),
        plant: async () => {
          await fs.rename(path.join(dir, 'sub'), aside());
          await fs.writeFile(path.join(outside, 'a'), 'outside');
          await fs.symlink(outside, path.join(dir, 'sub'));
        },
        untouched: async () => {
          expect(await fs.readFile(path.join(outside, 'a'), 'utf8')).to.equal('outside');
        },
        offending: () => path.join(dir, 'sub'),
        file: 'sub/a',
        unplant: async () => {
          await fs.unlink(path.join(dir, 'sub'));
          await fs.rename(aside(), path.join(dir, 'sub'));
        },
        after: async (s) => {
          expect(text(await s.readFile('b'))).to.equal('A');
          expect(await exists(path.join(dir, 'sub', 'a'))).to.equal(false);
        },
      },
      {
        what: 'a rename into a directory replaced by a symlink (RENAME target)',
        before: (s) => s.writeFile('a', 'A'),
        act: (s) => s.rename('a', 'sub2/b'),
        plant: () => fs.symlink(outside, path.join(dir, 'sub2')),
        untouched: async () => {
          expect(await fs.readdir(outside)).to.deep.equal([]);
        },
        offending: () => path.join(dir, 'sub2'),
        file: 'sub2/b',
        unplant: () => fs.unlink(path.join(dir, 'sub2')),
        after: async (s) => {
          expect(text(await s.readFile('sub2/b'))).to.equal('A');
        },
      },
      {
        what: "a link 'm -> .' planted under a name that reaches into .cpfile (the journal)",
        act: async (s) => {
          const segs = await fs.readdir(path.join(dir, '.cpfile', 'journal'));
          for (const seg of segs) await s.writeFile(`m/.cpfile/journal/${seg}`, 'overwritten');
          await s.writeFile('m/.cpfile/control', 'overwritten');
        },
        plant: () => fs.symlink('.', path.join(dir, 'm')),
        // The store reopens (EPATH, not ECORRUPT): its journal and control file were not written.
        untouched: async () => undefined,
        offending: () => path.join(dir, 'm'),
        file: 'm/.cpfile/',
        unplant: () => fs.unlink(path.join(dir, 'm')),
        after: async (s) => {
          expect(text(await s.readFile('m/.cpfile/control'))).to.equal('overwritten');
          expect((await fs.lstat(path.join(dir, 'm', '.cpfile'))).isDirectory()).to.equal(true);
        },
      },
      {
        what: 'a file where a directory must be',
        act: (s) => s.writeFile('d2/new', 'data'),
        plant: () => fs.writeFile(path.join(dir, 'd2'), 'a file'),
        untouched: async () => {
          expect(await fs.readFile(path.join(dir, 'd2'), 'utf8')).to.equal('a file');
        },
        offending: () => path.join(dir, 'd2'),
        file: 'd2/new',
        unplant: () => fs.unlink(path.join(dir, 'd2')),
        after: async (s) => {
          expect(text(await s.readFile('d2/new'))).to.equal('data');
        },
      },
      {
        what: 'a hard link made to a file with a pending write',
        before: (s) => s.writeFile('h', 'old'),
        act: (s) => s.writeFile('h', 'new'),
        plant: () => fs.link(path.join(dir, 'h'), path.join(outside, 'h-link')),
        untouched: async () => {
          expect(await fs.readFile(path.join(outside, 'h-link'), 'utf8')).to.equal('old');
        },
        offending: () => path.join(dir, 'h'),
        file: 'h',
        unplant: () => fs.unlink(path.join(outside, 'h-link')),
        after: async (s) => {
          expect(text(await s.readFile('h'))).to.equal('new');
        },
      },
    ];

    for (const c of cases) {
      it(`${c.what}: the apply fails with EPATH, reopening fails with it while it is there, and applies the epoch once it is gone`, async function () {
        if (c.before) {
          const s0 = await sb.open(dir);
          await c.before(s0);
          await s0.close();
        }
        const s = await sb.open(dir, HELD);
        await c.act(s);
        const epoch = await s.check();
        await c.plant();
        // close() applies: the worker meets the planted path.
        const failed = expectEpathFailure(await rejection(s.close()));
        expect(failed.message).to.include(JSON.stringify(c.file).slice(0, -1)).and.include(c.offending());
        await c.untouched();
        for (let i = 0; i < 2; i++) {
          const e = await expectCpError(() => openStore(dir, { segmentSize: 1 << 20 }), 'EPATH');
          expect(e.message).to.include(JSON.stringify(c.file).slice(0, -1)).and.include(c.offending());
          await c.untouched();
        }
        await c.unplant();
        const again = await sb.open(dir);
        expect(again.epoch).to.be.at.least(epoch);
        await c.after(again);
        await again.close();
      });
    }

    it('a symlink planted before the recovery of a crashed store: recovery fails with EPATH, and recovers once it is removed', async function () {
      const s = await openStore(dir, { inline: true, noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, segmentSize: 1 << 20 });
      await s.writeFile('sub/new', 'data');
      await s.writeFile('top', 'T');
      const epoch = await s.check();
      await crash(s);
      await fs.symlink(outside, path.join(dir, 'sub'));
      const e = await expectCpError(() => openStore(dir, { segmentSize: 1 << 20 }), 'EPATH');
      expect(e.message).to.include('"sub/new"').and.include(path.join(dir, 'sub'));
      expect(await fs.readdir(outside)).to.deep.equal([]);
      await fs.unlink(path.join(dir, 'sub'));
      const again = await sb.open(dir);
      expect(again.epoch).to.equal(epoch);
      expect(text(await again.readFile('sub/new'))).to.equal('data');
      expect(text(await again.readFile('top'))).to.equal('T');
    });

    it("recovery's cut-back of direct appends does not truncate a file through a directory replaced by a symlink", async function () {
      const s = await openStore(dir, { inline: true, noLock: true, directAppendMin: 4096, segmentSize: 1 << 20 });
      const f = await s.open('sub/log', 'a+');
      await f.write('committed');
      await s.check();
      await s.check(); // listed open by two commits: its next appends may go direct
      while (s.stats().applyLag.epochs > 0) await new Promise((r) => setTimeout(r, 5));
      await f.write(Buffer.alloc(64 * 1024, 'u'));
      // A read of the appended bytes waits until they are in the file.
      await f.read(Buffer.alloc(16), 0, 16, 9 + 64 * 1024 - 16);
      await crash(s);
      const full = 9 + 64 * 1024;
      expect((await fs.stat(path.join(dir, 'sub', 'log'))).size, 'the direct appends reached the file').to.equal(full);
      await fs.rename(path.join(dir, 'sub'), path.join(root, 'aside'));
      await fs.copyFile(path.join(root, 'aside', 'log'), path.join(outside, 'log'));
      await fs.symlink(outside, path.join(dir, 'sub'));
      const e = await expectCpError(() => openStore(dir, { segmentSize: 1 << 20 }), 'EPATH');
      expect(e.message).to.include('"sub/log"');
      expect((await fs.stat(path.join(outside, 'log'))).size).to.equal(full);
      await fs.unlink(path.join(dir, 'sub'));
      await fs.rename(path.join(root, 'aside'), path.join(dir, 'sub'));
      const again = await sb.open(dir);
      expect(again.recovery.cutBack).to.deep.equal([{ name: 'sub/log', size: 9, from: full }]);
      expect(text(await again.readFile('sub/log'))).to.equal('committed');
    });
  });

  describe('descriptors: an epoch of many files needs no descriptor per file', function () {
    it(`the applier keeps at most ${APPLY_MAX_FDS} data files open (1,000 files in one epoch), fdatasyncing each dirty one before closing it; rewriting them holds no base fd per file`, async function () {
      const open = new Map<number, { data: boolean; dirty: boolean }>();
      let maxData = 0;
      const closedDirty: string[] = [];
      const paths = new Map<number, string>();
      const io = interceptIO(async (call, args, next) => {
        if (call === 'close') {
          const fd = args[0] as number;
          const o = open.get(fd);
          if (o?.data && o.dirty) closedDirty.push(paths.get(fd)!);
          open.delete(fd);
        }
        const r = await next();
        if (call === 'open') {
          const p = args[0] as string;
          paths.set(r as number, p);
          open.set(r as number, { data: !p.includes(`${path.sep}.cpfile${path.sep}`), dirty: false });
          maxData = Math.max(maxData, [...open.values()].filter((x) => x.data).length);
        } else if (call === 'write' || call === 'ftruncate') {
          const o = open.get(args[0] as number);
          if (o) o.dirty = true;
        } else if (call === 'fdatasync' || call === 'fsync') {
          const o = open.get(args[0] as number);
          if (o) o.dirty = false;
        }
        return r;
      }, nodeIO);
      const N = 1000;
      let s = await openStore(dir, { io, noLock: true, applyDelay: 3600_000, segmentSize: 1 << 22 });
      for (let i = 0; i < N; i++) await s.writeFile(`d${i % 4}/f${i}`, `one ${i}`);
      await s.check();
      await s.close();
      expect(maxData, 'data files open at once while applying').to.be.at.most(APPLY_MAX_FDS + 2);
      expect(closedDirty, 'data files closed without their fdatasync').to.deep.equal([]);
      maxData = 0;
      s = await openStore(dir, { io, noLock: true, applyDelay: 3600_000, segmentSize: 1 << 22 });
      for (let i = 0; i < N; i++) await s.writeFile(`d${i % 4}/f${i}`, `two ${i}`);
      const heldByMain = [...open.values()].filter((x) => x.data).length;
      expect(heldByMain, 'base fds held for 1,000 pending rewrites').to.be.at.most(8);
      await s.check();
      await s.close();
      expect(maxData).to.be.at.most(APPLY_MAX_FDS + 8);
      expect(closedDirty).to.deep.equal([]);
      s = await sb.open(dir);
      for (let i = 0; i < N; i += 37) expect(text(await s.readFile(`d${i % 4}/f${i}`))).to.equal(`two ${i}`);
    });

    // The applier's cache is 64 descriptors; under a limit below that it gives cached ones back when
    // the process runs out (EMFILE), so any limit that leaves the store a few descriptors works. Not
    // much below 64 here: Node's ESM loader reads a module graph's files concurrently, and importing
    // the library (in the main thread, and in the flusher's worker at each open) takes about 45
    // descriptors at its peak, so 48 failed at import now and then under load.
    for (const [limit, count] of [[256, 1500], [64, 200]] as const) it(`under ulimit -n ${limit}, a child writes ${count} files in one epoch, rewrites and appends to them, reopening after each: no EMFILE`, async function () {
      this.timeout(180_000);
      const out = await new Promise<{ code: number | null; out: string; err: string }>((resolve, reject) => {
        const child = spawn('bash', ['-c', `ulimit -n ${limit} && exec "$0" "$1" many "$2" ${count}`, process.execPath, CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
        let o = '';
        let e = '';
        child.stdout.on('data', (d) => (o += d));
        child.stderr.on('data', (d) => (e += d));
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`child still running after 170 s: ${o} ${e}`));
        }, 170_000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, out: o, err: e });
        });
      });
      expect(out.out.trim(), out.err).to.equal('OK');
      expect(out.code).to.equal(0);
    });
  });
});
