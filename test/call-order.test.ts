/**
 * Calls take effect in call order (issue #10): what a caller sees (return values, positions, sizes,
 * the bytes that reach the disk) is a function of the order of its calls alone, never of whether the
 * store's call queue was idle or busy when it made them. A call that rejects never moves the
 * position; a call made before store.close() / f.close() takes effect before it, and one made after
 * it rejects (ECLOSED / EBADF) instead of being acknowledged and dropped.
 *
 * `busy(store)` queues a call that needs the flusher (a stat behind an unawaited readFile), so the
 * next calls wait in the queue instead of running at once; each regression runs its program on an
 * idle and on a busy store and wants the same answers from both.
 */
import { readFile as fsReadFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { CpError, openStore } from '../lib/index.js';
import { interceptIO } from './helpers/intercept-io.js';
import { Sandbox, expectCpError, removeDir, type Store, type CpFile, type StoreOptions } from './helpers/sandbox.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** Keep the call queue busy: the calls made right after this one wait for it. */
function busy(store: Store): void {
  void store.readFile('busy').catch(() => undefined);
}

describe('call order: results never depend on timing', function () {
  const sb = new Sandbox();
  let dir: string;
  let store: Store;

  beforeEach(async function () {
    dir = await sb.dir();
    store = await sb.open(dir);
    await store.writeFile('busy', 'b');
    await store.check();
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  for (const loaded of [false, true]) {
    const label = loaded ? 'busy store' : 'idle store';

    describe(`#12 positions and sizes as of call order (${label})`, function () {
      it('seek(0, "end") right after an unawaited write sees its bytes: "hello" + "!" is "hello!"', async function () {
        const f = await store.open('h', 'w+');
        if (loaded) busy(store);
        const w1 = f.write('hello');
        expect(f.seek(0, 'end')).to.equal(5);
        const w2 = f.write('!');
        await Promise.all([w1, w2]);
        expect(text(await store.readFile('h'))).to.equal('hello!');
        expect(f.tell()).to.equal(6);
      });

      it("tell() right after an unawaited append in 'a+' mode is the new end", async function () {
        await store.writeFile('ap', 'abc');
        const f = await store.open('ap', 'a+');
        if (loaded) busy(store);
        const w = f.write('de');
        expect(f.tell()).to.equal(5);
        const w2 = f.write('f');
        expect(f.tell()).to.equal(6);
        await Promise.all([w, w2]);
        expect(text(await store.readFile('ap'))).to.equal('abcdef');
      });

      it('seek(0, "end") after an unawaited truncate(10) of 20 bytes is 10, and a write there leaves 11 bytes', async function () {
        await store.writeFile('t', 'x'.repeat(20));
        const f = await store.open('t', 'r+');
        if (loaded) busy(store);
        const tr = f.truncate(10);
        expect(f.seek(0, 'end')).to.equal(10);
        const w = f.write('Q');
        await Promise.all([tr, w]);
        expect(text(await store.readFile('t'))).to.equal('x'.repeat(10) + 'Q');
        expect((await f.stat()).size).to.equal(11);
      });

      it('after an unawaited rollback(), seek(5) and a write leave tell() at 6', async function () {
        await store.writeFile('r', '0123456789');
        const f = await store.open('r', 'r+');
        f.seek(2);
        await store.check();
        await f.write('zz');
        if (loaded) busy(store);
        const rb = store.rollback();
        expect(f.tell()).to.equal(2);
        f.seek(5);
        const w = f.write('X');
        expect(f.tell()).to.equal(6);
        await Promise.all([rb, w]);
        expect(f.tell()).to.equal(6);
        expect(text(await store.readFile('r'))).to.equal('01234X6789');
      });

      it('after an unawaited rollback(), seek(0, "end") is the committed size', async function () {
        await store.writeFile('rs', 'abc');
        const f = await store.open('rs', 'r+');
        await store.check();
        await f.write('abcdefgh');
        if (loaded) busy(store);
        const rb = store.rollback();
        expect(f.seek(0, 'end')).to.equal(3);
        await rb;
        expect((await f.stat()).size).to.equal(3);
      });

      it('rollback() and check() called back to back both settle (the rollback used to wait for the later check: deadlock)', async function () {
        await store.writeFile('k', 'before');
        await store.check();
        await store.writeFile('k', 'after');
        if (loaded) busy(store);
        const [, epoch] = await Promise.all([store.rollback(), store.check()]);
        expect(epoch).to.equal(store.epoch);
        expect(text(await store.readFile('k'))).to.equal('before');
      });

      it('a read past the end moves the position by what it will read, at once', async function () {
        await store.writeFile('s', 'abcde');
        const f = await store.open('s', 'r+');
        f.seek(3);
        if (loaded) busy(store);
        const buf = Buffer.alloc(10);
        const r = f.read(buf);
        expect(f.tell()).to.equal(5);
        const w = f.write('!');
        expect((await r).bytesRead).to.equal(2);
        await w;
        expect(f.tell()).to.equal(6);
        expect(text(await store.readFile('s'))).to.equal('abcde!');
      });
    });

    describe(`#10 bad ranges reject with EINVAL and never move the position (${label})`, function () {
      it('write(data, offset past the data) rejects EINVAL (fs/promises: ERR_OUT_OF_RANGE)', async function () {
        const f = await store.open('o', 'w+');
        await f.write('12');
        if (loaded) busy(store);
        await expectCpError(() => f.write(Buffer.from('abc'), 10), 'EINVAL');
        await expectCpError(() => f.write(Buffer.from('abc'), 4, undefined, 0), 'EINVAL');
        expect(f.tell()).to.equal(2);
        expect(text(await store.readFile('o'))).to.equal('12');
      });

      it('read(buffer, offset past the buffer) rejects EINVAL', async function () {
        const f = await store.open('o', 'w+');
        await f.write('12345');
        f.seek(1);
        if (loaded) busy(store);
        await expectCpError(() => f.read(Buffer.alloc(3), 20), 'EINVAL');
        expect(f.tell()).to.equal(1);
      });

      it('a write that would end past 2^53-1 rejects EINVAL, leaves the position and the next check works', async function () {
        const f = await store.open('big', 'w+');
        const far = Number.MAX_SAFE_INTEGER - 2;
        f.seek(far);
        if (loaded) busy(store);
        // EFBIG where the file system's largest file is below 2^53 (ext4: 16 TiB), else EINVAL.
        const limited = (store as unknown as { maxFileSize: number }).maxFileSize < Number.MAX_SAFE_INTEGER;
        await expectCpError(() => f.write('abcdef'), limited ? 'EFBIG' : 'EINVAL');
        expect(f.tell()).to.equal(far);
        // A read there is past the end of the file: 0 bytes, as fs/promises reads them.
        expect((await f.read(Buffer.alloc(6))).bytesRead).to.equal(0);
        expect(f.tell()).to.equal(far);
        expect(() => f.seek(10, 'cur')).to.throw().with.property('code', 'EINVAL');
        expect(f.tell()).to.equal(far);
        expect(await store.check()).to.be.a('number');
        await store.close();
        store = await sb.open(dir);
        const g = await store.open('big', 'r+');
        expect(g.resumed).to.equal(true);
        expect(g.tell()).to.equal(far);
      });
    });

    describe(`#11 calls made before f.close() complete first (${label})`, function () {
      it('a read and a truncate called before close() resolve', async function () {
        await store.writeFile('c', 'abcdef');
        const f = await store.open('c', 'r+');
        if (loaded) busy(store);
        const buf = Buffer.alloc(3);
        const r = f.read(buf, 0, 3, 1);
        const t = f.truncate(4);
        const c = f.close();
        expect((await r).bytesRead).to.equal(3);
        expect(text(buf)).to.equal('bcd');
        await t;
        await c;
        expect(text(await store.readFile('c'))).to.equal('abcd');
      });

      it('a write called before close() while a check is in flight is kept', async function () {
        const f = await store.open('w', 'w+');
        await f.write('one');
        if (loaded) busy(store);
        const k = store.check();
        const w = f.write('two');
        const c = f.close();
        await Promise.all([k, w, c]);
        await store.close();
        expect(await fsReadFile(path.join(dir, 'w'), 'utf8')).to.equal('onetwo');
      });

      it('every handle call made after f.close() was called rejects EBADF', async function () {
        const f = await store.open('e', 'w+');
        if (loaded) busy(store);
        const c = f.close();
        await expectCpError(() => f.write('x'), 'EBADF');
        await expectCpError(() => f.read(Buffer.alloc(1), 0, 1, 0), 'EBADF');
        await expectCpError(() => f.truncate(0), 'EBADF');
        await expectCpError(() => f.stat(), 'EBADF');
        await expectCpError(() => f.check(), 'EBADF');
        await expectCpError(() => f.close(), 'EBADF');
        expect(() => f.tell()).to.throw().with.property('code', 'EBADF');
        await c;
      });
    });

    describe(`#2 calls made after store.close() reject with ECLOSED; those before are in its final check (${label})`, function () {
      it('f.write() and store.writeFile() after close() reject ECLOSED; writes before it reach the disk', async function () {
        const f = await store.open('d', 'w+');
        if (loaded) busy(store);
        const before = f.write('kept');
        const wfBefore = store.writeFile('wf', 'kept too');
        const closing = store.close();
        await expectCpError(() => f.write('dropped'), 'ECLOSED');
        await expectCpError(() => store.writeFile('late', 'dropped'), 'ECLOSED');
        await before;
        await wfBefore;
        await closing;
        expect(await fsReadFile(path.join(dir, 'd'), 'utf8')).to.equal('kept');
        expect(await fsReadFile(path.join(dir, 'wf'), 'utf8')).to.equal('kept too');
        store = await sb.open(dir);
        await expectCpError(() => store.readFile('late'), 'ENOENT');
      });

      it('every store and handle call made while close() runs rejects ECLOSED', async function () {
        const f: CpFile = await store.open('d', 'w+');
        if (loaded) busy(store);
        const closing = store.close();
        const calls: [string, () => unknown][] = [
          ['open', () => store.open('n', 'w')],
          ['check', () => store.check()],
          ['rollback', () => store.rollback()],
          ['readFile', () => store.readFile('busy')],
          ['writeFile', () => store.writeFile('n', 'x')],
          ['unlink', () => store.unlink('busy')],
          ['rename', () => store.rename('busy', 'b2')],
          ['write', () => f.write('x')],
          ['read', () => f.read(Buffer.alloc(1), 0, 1, 0)],
          ['truncate', () => f.truncate(0)],
          ['stat', () => f.stat()],
          ['seek', () => f.seek(0)],
          ['tell', () => f.tell()],
          ['dup', () => f.dup()],
          ['f.check', () => f.check()],
          ['f.close', () => f.close()],
        ];
        for (const [name, call] of calls) {
          const err = await expectCpError(call, 'ECLOSED').catch((e: Error) => { throw new Error(`${name}: ${e.message}`); });
          expect(err.code, name).to.equal('ECLOSED');
        }
        await closing;
        store = await sb.open(dir);
        expect(text(await store.readFile('busy'))).to.equal('b');
        await expectCpError(() => store.readFile('n'), 'ENOENT');
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------
// Model-based: random programs of unawaited calls give the same answers on a busy and an idle store,
// and those of a simple in-memory model.

type Name = 'a' | 'b';
type Op =
  | { t: 'open'; name: Name; mode: 'r+' | 'w+' | 'a+'; then: 'none' | 'check' | 'rollback' }
  | { t: 'dup'; h: number }
  | { t: 'write'; h: number; len: number; pos: number | null; badOffset: boolean }
  | { t: 'read'; h: number; len: number; pos: number | null }
  | { t: 'truncate'; h: number; len: number }
  | { t: 'seek'; h: number; off: number; whence: 'set' | 'cur' | 'end' }
  | { t: 'seekFar'; h: number }
  | { t: 'tell'; h: number }
  | { t: 'stat'; h: number }
  | { t: 'fclose'; h: number }
  | { t: 'check' }
  | { t: 'rollback' }
  | { t: 'writeFile'; name: Name; len: number }
  | { t: 'readFile'; name: Name }
  | { t: 'unlink'; name: Name }
  | { t: 'close'; discard: boolean };

/** A call's answer: its value, or the code it was refused with; 'skip' when there was no handle. */
type Res = { ok: unknown } | { err: string } | 'skip';

const FAR = Number.MAX_SAFE_INTEGER - 2;
const INITIAL = Buffer.from('0123456789AB');

const nameArb = fc.constantFrom<Name>('a', 'b');
const hArb = fc.nat(5);
const posArb = fc.option(fc.nat(24), { nil: null, freq: 2 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('open' as const), name: nameArb, mode: fc.constantFrom('r+' as const, 'w+' as const, 'a+' as const), then: fc.constantFrom('none' as const, 'check' as const, 'rollback' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('dup' as const), h: hArb }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('write' as const), h: hArb, len: fc.constantFrom(0, 3, 4, 5, 6), pos: posArb, badOffset: fc.nat(9).map((x) => x === 0) }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('read' as const), h: hArb, len: fc.nat(8), pos: posArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('truncate' as const), h: hArb, len: fc.nat(20) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('seek' as const), h: hArb, off: fc.integer({ min: -4, max: 24 }), whence: fc.constantFrom('set' as const, 'cur' as const, 'end' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('seekFar' as const), h: hArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('tell' as const), h: hArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('stat' as const), h: hArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('fclose' as const), h: hArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('check' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rollback' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('writeFile' as const), name: nameArb, len: fc.nat(9) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('readFile' as const), name: nameArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('unlink' as const), name: nameArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('close' as const), discard: fc.boolean() }) },
);

/** The bytes op number `i` writes: `len` copies of one letter. */
const payload = (i: number, len: number): Buffer => Buffer.alloc(len, 97 + (i % 26));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface MEntry { name: Name; mode: 'r+' | 'w+' | 'a+'; pos: number; checked: number | null; handles: Set<MHandle> }
interface MHandle { entry: MEntry; closed: boolean }

/** What the README promises, as plain data: files are byte arrays, positions move as calls are made. */
class Model {
  /** The buffers are never changed in place (resize copies). */
  files = new Map<Name, Buffer>([['a', INITIAL]]);
  checkedFiles = new Map(this.files);
  epoch = 1;
  entries = new Map<Name, MEntry>();
  handles: MHandle[] = [];
  /** Entries of the last commit (name -> position), closed since then, and unfinished (resumable) ones. */
  logged = new Map<Name, number>();
  closedSince = new Set<Name>();
  unfinished = new Map<Name, number>();
  closed = false;

  private fail(code: string): never {
    throw Object.assign(new Error(code), { code });
  }
  private live(h: MHandle): MEntry {
    if (this.closed) this.fail('ECLOSED');
    if (h.closed) this.fail('EBADF');
    return h.entry;
  }
  private size(e: MEntry): number {
    return this.files.get(e.name)!.length;
  }
  private resize(name: Name, len: number): void {
    const old = this.files.get(name)!;
    const b = Buffer.alloc(len);
    old.copy(b, 0, 0, Math.min(len, old.length));
    this.files.set(name, b);
  }

  open(name: Name, mode: MEntry['mode']): { resumed: boolean } {
    if (this.closed) this.fail('ECLOSED');
    if (this.entries.has(name)) this.fail('EBUSY');
    const exists = this.files.has(name);
    const resumed = exists && this.unfinished.has(name);
    if (!exists && mode === 'r+') this.fail('ENOENT');
    if (!exists || (mode === 'w+' && !resumed)) this.files.set(name, Buffer.alloc(0));
    const e: MEntry = { name, mode, pos: resumed ? this.unfinished.get(name)! : 0, checked: null, handles: new Set() };
    this.unfinished.delete(name);
    this.entries.set(name, e);
    const h = { entry: e, closed: false };
    e.handles.add(h);
    this.handles.push(h);
    return { resumed };
  }
  dup(h: MHandle): void {
    const e = this.live(h);
    const d = { entry: e, closed: false };
    e.handles.add(d);
    this.handles.push(d);
  }
  write(h: MHandle, data: Buffer, pos: number | null, badOffset: boolean): number {
    const e = this.live(h);
    if (badOffset) this.fail('EINVAL');
    const start = e.mode === 'a+' ? this.size(e) : pos ?? e.pos;
    if (start + data.length > Number.MAX_SAFE_INTEGER) this.fail('EINVAL');
    if (data.length > 0) {
      // Copy on write: the checked state and INITIAL share the buffers.
      this.resize(e.name, Math.max(this.size(e), start + data.length));
      data.copy(this.files.get(e.name)!, start);
    }
    if (pos === null) e.pos = start + data.length;
    return data.length;
  }
  read(h: MHandle, len: number, pos: number | null): { n: number; data: string } {
    const e = this.live(h);
    const start = pos ?? e.pos;
    if (start + len > Number.MAX_SAFE_INTEGER) this.fail('EINVAL');
    const n = Math.max(0, Math.min(len, this.size(e) - start));
    if (pos === null) e.pos = start + n;
    return { n, data: hex(this.files.get(e.name)!.subarray(start, start + n)) };
  }
  truncate(h: MHandle, len: number): void {
    this.resize(this.live(h).name, len);
  }
  seek(h: MHandle, off: number, whence: 'set' | 'cur' | 'end'): number {
    const e = this.live(h);
    const next = (whence === 'set' ? 0 : whence === 'cur' ? e.pos : this.size(e)) + off;
    if (next < 0 || next > Number.MAX_SAFE_INTEGER) this.fail('EINVAL');
    e.pos = next;
    return next;
  }
  tell(h: MHandle): number {
    return this.live(h).pos;
  }
  stat(h: MHandle): { size: number } {
    return { size: this.size(this.live(h)) };
  }
  fclose(h: MHandle): void {
    const e = this.live(h);
    h.closed = true;
    e.handles.delete(h);
    if (e.handles.size > 0) return;
    this.entries.delete(e.name);
    this.closedSince.add(e.name);
  }
  check(): number {
    if (this.closed) this.fail('ECLOSED');
    this.commit();
    return this.epoch;
  }
  private commit(): void {
    for (const n of this.closedSince) if (!this.entries.has(n)) this.logged.delete(n);
    this.closedSince.clear();
    for (const e of this.entries.values()) {
      e.checked = e.pos;
      this.logged.set(e.name, e.pos);
    }
    this.checkedFiles = new Map(this.files);
    this.epoch++;
  }
  rollback(): void {
    if (this.closed) this.fail('ECLOSED');
    this.files = new Map(this.checkedFiles);
    for (const e of [...this.entries.values()]) {
      if (e.checked !== null) {
        e.pos = e.checked;
        continue;
      }
      for (const h of e.handles) h.closed = true;
      this.entries.delete(e.name);
    }
    this.closedSince.clear();
    this.unfinished = new Map([...this.logged].filter(([n]) => !this.entries.has(n)));
  }
  writeFile(name: Name, data: Buffer): void {
    if (this.closed) this.fail('ECLOSED');
    if (this.entries.has(name)) this.fail('EBUSY');
    this.files.set(name, Buffer.from(data));
  }
  readFile(name: Name): string {
    if (this.closed) this.fail('ECLOSED');
    if (!this.files.has(name)) this.fail('ENOENT');
    return hex(this.files.get(name)!);
  }
  unlink(name: Name): void {
    if (this.closed) this.fail('ECLOSED');
    if (this.entries.has(name)) this.fail('EBUSY');
    if (!this.files.has(name)) this.fail('ENOENT');
    this.files.delete(name);
    this.unfinished.delete(name);
    if (this.logged.has(name)) this.closedSince.add(name);
  }
  close(discard: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (discard) this.files = new Map(this.checkedFiles);
    else this.commit();
    for (const h of this.handles) h.closed = true;
  }
  /** What a reopened store shows: each name's bytes, whether it resumes and where. */
  reopened(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name of ['a', 'b'] as Name[]) {
      const b = this.files.get(name);
      out[name] = b ? { data: hex(b), resumed: this.logged.has(name), pos: this.logged.get(name) ?? 0 } : 'ENOENT';
    }
    return out;
  }
}

const codeOf = (e: unknown): string => (e instanceof CpError ? e.code : `not a CpError: ${String(e)}`);

function runModel(ops: Op[]): { results: Res[]; reopened: Record<string, unknown> } {
  const m = new Model();
  const results: Res[] = [];
  const call = (fn: () => unknown): Res => {
    try {
      const v = fn();
      return { ok: v === undefined ? null : v };
    } catch (e) {
      return { err: (e as { code: string }).code };
    }
  };
  ops.forEach((op, i) => {
    if (op.t === 'open') {
      const r = call(() => m.open(op.name, op.mode));
      const then = op.then === 'check' ? call(() => m.check()) : op.then === 'rollback' ? call(() => { m.rollback(); }) : 'skip';
      if ('ok' in (r as object)) {
        const h = m.handles[m.handles.length - 1];
        (r as { ok: Record<string, unknown> }).ok.tell = call(() => m.tell(h));
      }
      results.push(r, then);
      return;
    }
    if ('h' in op) {
      if (m.handles.length === 0) {
        results.push('skip');
        return;
      }
      const h = m.handles[op.h % m.handles.length];
      switch (op.t) {
        case 'dup': results.push(call(() => { m.dup(h); })); break;
        case 'write': results.push(call(() => m.write(h, payload(i, op.len), op.pos, op.badOffset))); break;
        case 'read': results.push(call(() => m.read(h, op.len, op.pos))); break;
        case 'truncate': results.push(call(() => { m.truncate(h, op.len); })); break;
        case 'seek': results.push(call(() => m.seek(h, op.off, op.whence))); break;
        case 'seekFar': results.push(call(() => m.seek(h, FAR, 'set'))); break;
        case 'tell': results.push(call(() => m.tell(h))); break;
        case 'stat': results.push(call(() => m.stat(h))); break;
        case 'fclose': results.push(call(() => { m.fclose(h); })); break;
      }
      return;
    }
    switch (op.t) {
      case 'check': results.push(call(() => m.check())); break;
      case 'rollback': results.push(call(() => { m.rollback(); })); break;
      case 'writeFile': results.push(call(() => { m.writeFile(op.name, payload(i, op.len)); })); break;
      case 'readFile': results.push(call(() => m.readFile(op.name))); break;
      case 'unlink': results.push(call(() => { m.unlink(op.name); })); break;
      case 'close': results.push(call(() => { m.close(op.discard); })); break;
    }
  });
  m.close(false);
  return { results, reopened: m.reopened() };
}

/**
 * Run `ops` against a real store. `awaitEach`: every call settles before the next is made (the
 * store is idle at each call); otherwise every call is made at once and awaited at the end, except
 * that an open is awaited (with the check or rollback called right after it) before the next call,
 * which needs its handle.
 */
async function runReal(dir: string, ops: Op[], opts: StoreOptions, awaitEach: boolean): Promise<{ results: Res[]; reopened: Record<string, unknown> }> {
  const store = await openStore(dir, { inline: true, sync: false, segmentSize: 64 * 1024, applyDelay: 0, applyThreshold: 0, ...opts });
  const handles: CpFile[] = [];
  const results: (Res | Promise<Res>)[] = [];
  const settle = (p: Promise<unknown>, map: (v: unknown) => unknown = (v) => (v === undefined ? null : v)): Promise<Res> =>
    p.then((v) => ({ ok: map(v) }), (e) => ({ err: codeOf(e) }));
  const now = (fn: () => unknown): Res => {
    try {
      const v = fn();
      return { ok: v === undefined ? null : v };
    } catch (e) {
      return { err: codeOf(e) };
    }
  };
  try {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      let r: Res | Promise<Res>;
      if (op.t === 'open') {
        const opened = settle(store.open(op.name, op.mode), (f) => {
          const h = f as CpFile;
          handles.push(h);
          return { resumed: h.resumed, tell: now(() => h.tell()) };
        });
        const then = op.then === 'check' ? settle(store.check()) : op.then === 'rollback' ? settle(store.rollback()) : 'skip';
        results.push(await opened, awaitEach ? await then : then);
        continue;
      }
      if ('h' in op) {
        if (handles.length === 0) {
          results.push('skip');
          continue;
        }
        const h = handles[op.h % handles.length];
        switch (op.t) {
          case 'dup': r = now(() => { handles.push(h.dup()); }); break;
          case 'write': {
            const data = payload(i, op.len);
            r = settle(op.badOffset ? h.write(Buffer.from('xyz'), 4) : h.write(data, 0, data.length, op.pos), (v) => (v as { bytesWritten: number }).bytesWritten);
            break;
          }
          case 'read': {
            const buf = Buffer.alloc(op.len);
            r = settle(h.read(buf, 0, op.len, op.pos), (v) => {
              const n = (v as { bytesRead: number }).bytesRead;
              return { n, data: hex(buf.subarray(0, n)) };
            });
            break;
          }
          case 'truncate': r = settle(h.truncate(op.len)); break;
          case 'seek': r = now(() => h.seek(op.off, op.whence)); break;
          case 'seekFar': r = now(() => h.seek(FAR, 'set')); break;
          case 'tell': r = now(() => h.tell()); break;
          case 'stat': r = settle(h.stat()); break;
          case 'fclose': r = settle(h.close()); break;
        }
      } else {
        switch (op.t) {
          case 'check': r = settle(store.check()); break;
          case 'rollback': r = settle(store.rollback()); break;
          case 'writeFile': r = settle(store.writeFile(op.name, payload(i, op.len))); break;
          case 'readFile': r = settle(store.readFile(op.name), (b) => hex(b as Buffer)); break;
          case 'unlink': r = settle(store.unlink(op.name)); break;
          case 'close': r = settle(store.close({ discard: op.discard })); break;
        }
      }
      results.push(awaitEach ? await r! : r!);
    }
    const settled = await Promise.all(results);
    await store.close();
    const again = await openStore(dir, { inline: true, sync: false });
    const reopened: Record<string, unknown> = {};
    try {
      for (const name of ['a', 'b'] as Name[]) {
        try {
          const data = hex(await again.readFile(name));
          const f = await again.open(name, 'r+');
          reopened[name] = { data, resumed: f.resumed, pos: f.tell() };
          await f.close();
        } catch (e) {
          reopened[name] = codeOf(e);
        }
      }
    } finally {
      await again.close({ discard: true });
    }
    return { results: settled, reopened };
  } finally {
    await store.close({ discard: true }).catch(() => undefined);
  }
}

describe('call order: random programs of unawaited calls (model-based)', function () {
  this.timeout(600000);
  const sb = new Sandbox();
  afterEach(async function () {
    await sb.cleanup();
  });
  const runs = Number(process.env.CALL_ORDER_RUNS ?? 60);
  const seed = Number(process.env.CALL_ORDER_SEED ?? 20261201);

  /** An IO that makes every call wait a turn of the event loop: the queue stays busy, completions interleave. */
  const slowIO = interceptIO(async (_call, _args, next) => {
    await new Promise((r) => setImmediate(r));
    return next();
  });

  it(`idle (each call awaited), busy (unawaited, slowed I/O) and busy with direct appends agree with the model (${runs} programs)`, async function () {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
      const want = runModel(ops);
      const variants: [string, StoreOptions, boolean][] = [
        ['idle', {}, true],
        ['busy', { io: slowIO }, false],
        ['busy+direct', { io: slowIO, directAppendMin: 1 }, false],
      ];
      for (const [label, opts, awaitEach] of variants) {
        const dir = await sb.dir();
        const s = await openStore(dir, { inline: true, sync: false });
        await s.writeFile('a', INITIAL);
        await s.check(); // epoch 1
        await s.close({ discard: true });
        // A program that never settles (a deadlock) is reported with its calls instead of as a bare
        // mocha timeout; a variant takes well under a second.
        let timer: NodeJS.Timeout | undefined;
        const hung = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${label}: the calls never settled: ${JSON.stringify(ops)}`)), 60000);
        });
        const got = await Promise.race([runReal(dir, ops, opts, awaitEach), hung]).finally(() => clearTimeout(timer));
        await removeDir(dir);
        for (let k = 0; k < want.results.length; k++) {
          expect(got.results[k], `${label}: answer ${k} of ${JSON.stringify(want.results.length)}`).to.deep.equal(want.results[k]);
        }
        expect(got.reopened, `${label}: the store after close and reopen`).to.deep.equal(want.reopened);
      }
    }), { numRuns: runs, seed });
  });
});
