// Streams (README "Streams"): createReadStream / createWriteStream on a handle and on a store name,
// side by side with node:fs FileHandle streams; pending state, call order, errors; 1 GiB piped through
// in bounded memory; a SIGKILL between two checks.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream as fsCreateWriteStream } from 'node:fs';
import { open as fsOpen, writeFile as fsWriteFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Sandbox, expectCpError, type Store } from './helpers/sandbox.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const ALPHA = 'abcdefghijklmnopqrstuvwxyz';
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures-streams', 'child.js');

async function collect(s: Readable): Promise<{ data: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return { data: Buffer.concat(parts), chunks: parts.map((p) => p.length) };
}

/** The error the stream emits (reading it if it is a Readable); fails if it closes without one. */
function streamError(s: Readable | Writable): Promise<Error> {
  return new Promise((resolve, reject) => {
    s.on('error', resolve);
    s.on('close', () => setImmediate(() => reject(new Error('the stream closed without an error'))));
    if (s instanceof Readable) s.resume();
  });
}

/** Assert the stream emits a CpError with `code` as its 'error'. */
async function expectStreamError(s: Readable | Writable, code: string): Promise<void> {
  await expectCpError(() => streamError(s).then((e) => { throw e; }), code);
}

/** `n` chunks of `size` bytes: chunk i is filled with (i * 7 + 1) & 0xff and starts with i (big endian). */
function chunks(n: number, size: number): Readable {
  let i = 0;
  return new Readable({
    highWaterMark: size,
    read() {
      if (i >= n) return void this.push(null);
      const b = Buffer.alloc(size, (i * 7 + 1) & 0xff);
      b.writeUInt32BE(i, 0);
      i++;
      this.push(b);
    },
  });
}

function sha256Sink(): { sink: Writable; digest: () => string; bytes: () => number } {
  const h = createHash('sha256');
  let n = 0;
  const sink = new Writable({ write(c: Buffer, _e, cb) { h.update(c); n += c.length; cb(); } });
  return { sink, digest: () => h.digest('hex'), bytes: () => n };
}

describe('streams: createReadStream and createWriteStream', function () {
  this.timeout(120000);
  const sb = new Sandbox();
  let dir: string;
  let store: Store;

  beforeEach(async function () {
    dir = await sb.dir('cpfile-streams-');
    store = await sb.open(dir);
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  describe('side by side with a node:fs FileHandle', function () {
    let fsDir: string;
    beforeEach(async function () {
      fsDir = await sb.dir('cpfile-streams-fs-');
    });

    /** Run `scenario` on a FileHandle and on a CpFile over the same content; compare what it returns. */
    async function sideBySide<T>(content: string, scenario: (h: { read: (b: Buffer, p: number | null) => Promise<unknown>; createReadStream: (o: object) => Readable; createWriteStream: (o: object) => Writable }) => Promise<T>): Promise<T> {
      const p = path.join(fsDir, 'f.txt');
      await fsWriteFile(p, content);
      const fh = await fsOpen(p, 'r+');
      const want = await scenario({
        read: (b, pos) => fh.read(b, 0, b.length, pos),
        createReadStream: (o) => fh.createReadStream({ ...o, autoClose: false }),
        // (a FileHandle's write stream with autoClose: false keeps the handle's close() waiting in
        // Node 20, so node:fs writes through the same descriptor by number)
        createWriteStream: (o) => fsCreateWriteStream('', { ...o, fd: fh.fd, autoClose: false }),
      });
      await fh.close();
      await store.writeFile('f.txt', content);
      const f = await store.open('f.txt', 'r+');
      const got = await scenario({
        read: (b, pos) => f.read(b, 0, b.length, pos),
        createReadStream: (o) => f.createReadStream({ ...o, autoClose: false }),
        createWriteStream: (o) => f.createWriteStream({ ...o, autoClose: false }),
      });
      await f.close();
      expect(got, 'cpfile as node:fs').to.deep.equal(want);
      return got;
    }

    const readCases: [string, object][] = [
      ['no options', {}],
      ['start', { start: 5 }],
      ['start and end', { start: 2, end: 9 }],
      ['end without start (end + 1 bytes from the position)', { end: 4 }],
      ['end past the file', { start: 20, end: 100 }],
      ['start past the file', { start: 100 }],
      ['start = end', { start: 7, end: 7 }],
      ['highWaterMark 3', { highWaterMark: 3 }],
      ['encoding hex, start, highWaterMark', { encoding: 'hex', start: 1, highWaterMark: 4 }],
      ['end: Infinity', { end: Infinity }],
    ];
    for (const [what, o] of readCases) {
      it(`read stream, ${what}: same bytes, chunks and handle position afterwards`, async function () {
        await sideBySide(ALPHA, async (h) => {
          await h.read(Buffer.alloc(3), null); // the position is 3
          const s = h.createReadStream(o);
          const parts: (string | number)[] = [];
          for await (const c of s) parts.push(typeof c === 'string' ? c : (c as Buffer).toString('latin1'));
          const next = Buffer.alloc(2);
          await h.read(next, null);
          return { parts, next: next.toString('latin1') };
        });
      });
    }

    const writeCases: [string, object][] = [
      ['no options (at the position, which moves)', {}],
      ['start (there; the position stays)', { start: 20 }],
      ['start past the end (a hole)', { start: 30 }],
      ['encoding hex for strings', { encoding: 'hex' }],
    ];
    for (const [what, o] of writeCases) {
      it(`write stream, ${what}: same file and handle position afterwards`, async function () {
        await sideBySide(ALPHA, async (h) => {
          await h.read(Buffer.alloc(3), null);
          const w = h.createWriteStream(o);
          w.write('4142');
          w.write(Buffer.from('xyz'));
          w.end('43');
          await once(w, 'finish');
          const next = Buffer.alloc(2);
          await h.read(next, null);
          const all = Buffer.alloc(40);
          const r = (await h.read(all, 0)) as { bytesRead: number };
          return { next: next.toString('latin1'), all: all.subarray(0, r.bytesRead).toString('latin1') };
        });
      });
    }

    it('autoClose (default true) closes the handle when the stream ends, as FileHandle does; false keeps it', async function () {
      const p = path.join(fsDir, 'a.txt');
      await fsWriteFile(p, ALPHA);
      const fh = await fsOpen(p, 'r');
      await collect(fh.createReadStream());
      expect(fh.fd, 'node:fs closed its handle').to.equal(-1);

      await store.writeFile('a.txt', ALPHA);
      const f = await store.open('a.txt', 'r');
      expect((await collect(f.createReadStream())).data.toString()).to.equal(ALPHA);
      await expectCpError(() => f.read(Buffer.alloc(1), 0, 1, 0), 'EBADF');
      const g = await store.open('a.txt', 'r');
      await collect(g.createReadStream({ autoClose: false }));
      expect((await g.read(Buffer.alloc(1), 0, 1, 0)).bytesRead).to.equal(1);
      const w = await store.open('b.txt', 'w');
      await pipeline(chunks(2, 10), w.createWriteStream());
      await expectCpError(() => w.write(Buffer.from('x'), 0, 1, 0), 'EBADF');
      await g.close();
    });
  });

  describe('pending state and call order', function () {
    it('a read stream of a file with pending changes sees them: writes, a truncate, a rename, a file created in the epoch', async function () {
      await store.writeFile('a.txt', ALPHA);
      await store.check();
      const f = await store.open('a.txt', 'r+');
      await f.write(Buffer.from('XYZ'), 0, 3, 10);
      await f.truncate(20);
      await f.write(Buffer.from('++'), 0, 2, 24); // a hole from 20 to 24
      expect((await collect(f.createReadStream({ start: 0 }))).data.toString('latin1')).to.equal('abcdefghijXYZnopqrst\0\0\0\0++');
      await store.writeFile('new.txt', 'fresh');
      await store.rename('new.txt', 'moved.txt');
      expect((await collect(store.createReadStream('moved.txt'))).data.toString()).to.equal('fresh');
      await expectStreamError(store.createReadStream('new.txt'), 'ENOENT');
      await store.rollback();
      expect((await collect(store.createReadStream('a.txt'))).data.toString()).to.equal(ALPHA);
    });

    it("a write stream's data is pending until a check: rollback discards it, check keeps it across a reopen", async function () {
      await store.writeFile('w.bin', 'old');
      await store.check();
      await pipeline(chunks(8, 1000), store.createWriteStream('w.bin'));
      expect((await store.readFile('w.bin')).length, 'read your writes').to.equal(8000);
      await store.rollback();
      expect((await store.readFile('w.bin')).toString()).to.equal('old');
      await pipeline(chunks(8, 1000), store.createWriteStream('w.bin', { flags: 'a' }));
      await store.check();
      await store.close();
      store = await sb.open(dir);
      const back = await store.readFile('w.bin');
      expect(back.length).to.equal(8003);
      expect(back.subarray(0, 3).toString()).to.equal('old');
      expect(back.readUInt32BE(3 + 7 * 1000)).to.equal(7);
    });

    it('flags: w truncates, a appends, r+ with start overwrites in place; the name is EBUSY while the stream has it open, free after', async function () {
      await store.writeFile('f.txt', ALPHA);
      const w = store.createWriteStream('f.txt', { flags: 'r+', start: 2 });
      // Called right after the stream (in call order, the open came first): EBUSY.
      await expectCpError(() => store.open('f.txt', 'r'), 'EBUSY');
      await expectStreamError(store.createReadStream('f.txt'), 'EBUSY');
      w.end('__');
      await once(w, 'close');
      expect((await store.readFile('f.txt')).toString()).to.equal('ab__efghijklmnopqrstuvwxyz');
      await pipeline(Readable.from([Buffer.from('!')]), store.createWriteStream('f.txt', { flags: 'a' }));
      expect((await store.readFile('f.txt')).toString()).to.equal('ab__efghijklmnopqrstuvwxyz!');
      await pipeline(Readable.from([Buffer.from('new')]), store.createWriteStream('f.txt', { start: 1 }));
      expect((await store.readFile('f.txt')).toString('latin1')).to.equal('\0new');
      const f = await store.open('f.txt', 'r');
      await f.close();
    });

    it('a read stream of a name is opened in call order: it sees what was called before it, not what comes after', async function () {
      void store.writeFile('c.txt', 'v1');
      const s = store.createReadStream('c.txt');
      const later = store.writeFile('c.txt', 'v2'); // the name is open by then: EBUSY
      expect((await collect(s)).data.toString()).to.equal('v1');
      await expectCpError(() => later, 'EBUSY');
    });

    it('backpressure: write() returns false once highWaterMark bytes are queued, then drain; cork/uncork batches writes (_writev)', async function () {
      const f = await store.open('bp.bin', 'w+');
      const w = f.createWriteStream({ highWaterMark: 1024, autoClose: false });
      expect(w.writableHighWaterMark).to.equal(1024);
      expect(w.write(Buffer.alloc(1000, 1))).to.equal(true);
      expect(w.write(Buffer.alloc(100, 2)), 'past highWaterMark').to.equal(false);
      await once(w, 'drain');
      w.cork();
      for (let i = 0; i < 10; i++) w.write(Buffer.from([48 + i]));
      w.uncork();
      w.end();
      await once(w, 'finish');
      expect(w.bytesWritten).to.equal(1110);
      const tail = Buffer.alloc(10);
      await f.read(tail, 0, 10, 1100);
      expect(tail.toString()).to.equal('0123456789');
      expect(f.tell(), 'the stream moved the handle position').to.equal(1110);
      expect(createWriteStreamDefault(f)).to.equal(16384);
      await f.close();
    });

    it('destroy mid-way: a read stream stops and closes its handle; a write stream keeps what was accepted and closes', async function () {
      await pipeline(chunks(64, 1024), store.createWriteStream('d.bin'));
      const r = store.createReadStream('d.bin', { highWaterMark: 1024 });
      let got = 0;
      r.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= 4096) r.destroy();
      });
      await once(r, 'close');
      expect(got).to.be.lessThan(64 * 1024);
      expect(r.destroyed).to.equal(true);
      await (await store.open('d.bin', 'r')).close(); // the name is free again

      const w = store.createWriteStream('d.bin');
      await new Promise<void>((res) => w.write(Buffer.alloc(5000, 9), () => res()));
      w.destroy();
      await once(w, 'close');
      expect((await store.readFile('d.bin')).length, 'accepted before the destroy').to.equal(5000);
      await (await store.open('d.bin', 'r')).close();

      const e = store.createWriteStream('e.bin');
      e.destroy(new Error('given'));
      expect((await streamError(e)).message).to.equal('given');
      await (await store.open('e.bin', 'r')).close();
    });
  });

  describe('errors', function () {
    it('bad options are EINVAL at the call, for handles and names', async function () {
      await store.writeFile('a.txt', ALPHA);
      const f = await store.open('a.txt', 'r+');
      const both: unknown[] = [
        { start: -1 }, { start: '1' }, { start: 1.5 }, { start: null }, { start: 2 ** 53 }, { start: 2n },
        { highWaterMark: -1 }, { highWaterMark: 'x' }, { highWaterMark: 1.5 }, { encoding: 'bogus' }, { encoding: 5 }, 5, true,
      ];
      const readOnly: unknown[] = [{ end: -1 }, { end: null }, { end: NaN }, { end: 1.5 }, { start: 5, end: 2 }];
      for (const o of [...both, ...readOnly]) {
        await expectCpError(() => f.createReadStream(o as object), 'EINVAL');
        await expectCpError(() => store.createReadStream('a.txt', o as object), 'EINVAL');
      }
      for (const o of both) {
        await expectCpError(() => f.createWriteStream(o as object), 'EINVAL');
        await expectCpError(() => store.createWriteStream('a.txt', o as object), 'EINVAL');
      }
      for (const flags of ['r', 'w+', 'x', 1, null]) await expectCpError(() => store.createWriteStream('a.txt', { flags } as object), 'EINVAL');
      for (const name of [42, '', null, undefined, {}]) {
        await expectCpError(() => store.createReadStream(name as string), 'EINVAL');
        await expectCpError(() => store.createWriteStream(name as string), 'EINVAL');
      }
      const w = f.createWriteStream({ autoClose: false });
      for (const chunk of [42, {}, [1, 2]]) await expectCpError(() => w.write(chunk as Buffer), 'EINVAL');
      await expectCpError(() => w.end(42 as unknown as Buffer), 'EINVAL');
      w.destroy();
      // nothing was opened: the name is free
      await f.close();
      await (await store.open('a.txt', 'r')).close();
    });

    it("names outside the store, missing files and the wrong mode are the stream's 'error'", async function () {
      for (const name of ['../x', '/etc/passwd', '.cpfile/lock']) {
        await expectStreamError(store.createReadStream(name), 'EPATH');
        await expectStreamError(store.createWriteStream(name), 'EPATH');
      }
      await expectStreamError(store.createReadStream('missing'), 'ENOENT');
      await expectStreamError(store.createWriteStream('missing', { flags: 'r+' }), 'ENOENT');
      await expectStreamError(store.createReadStream('bad/'), 'EINVAL');
      await store.writeFile('a.txt', ALPHA);
      const r = await store.open('a.txt', 'r');
      const rw = r.createWriteStream();
      rw.write('x');
      await expectStreamError(rw, 'EBADF');
      const w = await store.open('b.txt', 'w');
      await expectStreamError(w.createReadStream(), 'EBADF');
      // autoClose closed both on the error
      await expectCpError(() => r.close(), 'EBADF');
      await expectCpError(() => w.close(), 'EBADF');
    });

    it('a closed handle is EBADF at the call; after store.close() handle streams are ECLOSED at the call, name streams emit ECLOSED', async function () {
      await store.writeFile('a.txt', ALPHA);
      const f = await store.open('a.txt', 'r+');
      await f.close();
      await expectCpError(() => f.createReadStream(), 'EBADF');
      await expectCpError(() => f.createWriteStream(), 'EBADF');
      const g = await store.open('a.txt', 'r+');
      const closing = store.close();
      await expectCpError(() => g.createReadStream(), 'ECLOSED');
      await expectCpError(() => g.createWriteStream(), 'ECLOSED');
      await expectStreamError(store.createReadStream('a.txt'), 'ECLOSED');
      await expectStreamError(store.createWriteStream('a.txt'), 'ECLOSED');
      await closing;
      await expectStreamError(store.createReadStream('a.txt'), 'ECLOSED');
    });

    it('a stream running when its handle is closed by rollback() or store.close() gets EBADF / ECLOSED', async function () {
      await store.writeFile('a.bin', Buffer.alloc(MiB, 7));
      await store.check();
      const f = await store.open('a.bin', 'r'); // opened since the last check: rollback closes it
      const s = f.createReadStream({ highWaterMark: 1024 });
      await once(s, 'readable');
      await store.rollback();
      await expectStreamError(s, 'EBADF');
      const w = store.createWriteStream('b.bin');
      await new Promise<void>((res) => w.write(Buffer.alloc(10), () => res()));
      const closing = store.close({ discard: true });
      w.write(Buffer.alloc(10));
      await expectStreamError(w, 'ECLOSED');
      await closing;
    });
  });

  it('1 GiB piped through store.createWriteStream between two checks in bounded memory, then out through createReadStream into a matching sha256', async function () {
    this.timeout(180000);
    await store.close();
    store = await sb.open(dir, { segmentSize: 8 * MiB });
    await store.writeFile('big.bin', 'before');
    await store.check();
    const inHash = createHash('sha256');
    const source = chunks(GiB / (64 * 1024), 64 * 1024).on('data', (c: Buffer) => inHash.update(c));
    global.gc?.();
    const base = process.memoryUsage();
    let peakRss = base.rss;
    let peakHeap = base.heapUsed;
    const sample = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 10);
    const t0 = Date.now();
    try {
      await pipeline(source, store.createWriteStream('big.bin'));
    } finally {
      clearInterval(sample);
    }
    const ms = Date.now() - t0;
    const rssGrowth = (peakRss - base.rss) / MiB;
    const heapGrowth = (peakHeap - base.heapUsed) / MiB;
    // What stays: the journal writer's batches and what is in flight to the flusher (16 MiB), not the data.
    expect(rssGrowth, `RSS growth ${rssGrowth.toFixed(1)} MiB (${ms} ms)`).to.be.lessThan(300);
    expect(heapGrowth, `heap growth ${heapGrowth.toFixed(1)} MiB`).to.be.lessThan(100);
    const g = await store.open('big.bin', 'r');
    expect((await g.stat()).size).to.equal(GiB);
    await g.close();
    const want = inHash.digest('hex');
    await store.check();
    const out = sha256Sink();
    await pipeline(store.createReadStream('big.bin', { highWaterMark: MiB }), out.sink);
    expect(out.bytes()).to.equal(GiB);
    expect(out.digest(), 'sha256 of what came out').to.equal(want);
  });

  for (const mode of ['name', 'handle'] as const) {
    it(`SIGKILL while a ${mode === 'name' ? "name's" : "handle's"} write stream runs between two checks: recovery gives the file of the first check`, async function () {
      await store.close();
      const child = spawn(process.execPath, [CHILD, mode, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const exited = once(child, 'exit');
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (d) => {
            out += d;
            if (out.includes('STREAMING')) resolve();
          });
          child.on('exit', () => reject(new Error(`the child exited: ${out} ${err}`)));
          setTimeout(() => reject(new Error(`no STREAMING within 30 s: ${out} ${err}`)), 30000);
        });
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
      const [, epoch, sha] = /CHECKED (\d+) ([0-9a-f]+)/.exec(out)!;
      const file = mode === 'name' ? 'big.bin' : 'log.bin';
      if (mode === 'handle') expect(JSON.parse(/STREAMING (.*)/.exec(out)![1]).bytesDirect, 'direct appends ran').to.be.greaterThan(0);
      store = await sb.open(dir);
      expect(store.epoch).to.equal(Number(epoch));
      const back = await store.readFile(file);
      // (log.bin was open at the check: its next open resumes it at its checked position, 2 MiB, the
      // end; a name's read stream still reads from 0)
      expect(createHash('sha256').update(back).digest('hex'), `${file} as at the check (${back.length} bytes)`).to.equal(sha);
      const h = sha256Sink();
      await pipeline(store.createReadStream(file), h.sink);
      expect(h.digest()).to.equal(sha);
    });
  }
});

function createWriteStreamDefault(f: { createWriteStream: (o?: object) => Writable }): number {
  const w = f.createWriteStream({ autoClose: false });
  const hwm = w.writableHighWaterMark;
  w.destroy();
  return hwm;
}
