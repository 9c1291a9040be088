// Store ownership: one live owner per store (whatever path leads to it), a live owner's lock is never
// taken over (not even when it is stopped past lockStale), a provably dead owner's lock is reclaimed at
// once, a lost lock becomes ECOMPROMISED (nothing more written) instead of crashing the process.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { link, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import fsDefault, { readFileSync, readlinkSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { openStore } from '../lib/index.js';
import { Sandbox, expectCpError, findLockPaths, sleep, SMALL, type Store } from './helpers/sandbox.js';
import { interceptIO, injected } from './helpers/intercept-io.js';

const HOLDER = fileURLToPath(new URL('./fixtures-locking/hold-store.js', import.meta.url));
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** A hold-store child: started, it holds the store (READY) or failed to open it (openErr). */
class Holder {
  readonly child: ChildProcess;
  openErr: { code: string; message: string } | null = null;
  private lines: string[] = [];
  private waiting: ((line: string) => void)[] = [];
  private err = '';

  private constructor(dir: string, args: string[]) {
    this.child = spawn(process.execPath, [HOLDER, dir, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const w = this.waiting.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    this.child.on('exit', (code, sig) => {
      for (const w of this.waiting.splice(0)) w(`EXIT ${code} ${sig} ${this.err}`);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  private next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(`EXIT ${this.child.exitCode} ${this.child.signalCode} ${this.err}`);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Starts a child on `dir`; resolves once it is READY or reported OPENERR. */
  static async start(dir: string, children: ChildProcess[], args: string[] = ['2000']): Promise<Holder> {
    const h = new Holder(dir, args);
    children.push(h.child);
    const first = await h.next();
    if (first.startsWith('OPENERR ')) {
      const [, code, ...msg] = first.split(' ');
      h.openErr = { code, message: msg.join(' ') };
    } else if (first !== 'READY') {
      throw new Error(`holder did not become ready: ${first}`);
    }
    return h;
  }

  /** `put`: appends `bytes` bytes of `marker` to `name` and checks; the reply line. */
  async put(name: string, marker: string, bytes = marker.length): Promise<string> {
    this.child.stdin!.write(`put ${name} ${marker} ${bytes}\n`);
    return this.next();
  }
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await waitExit(child);
  }
}

/** This host's view of a process, as an owner record has it (lib/lock.ts OwnerRecord). */
function procStart(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
}
function recordFor(pid: number, over: Record<string, unknown> = {}): string {
  return `${JSON.stringify({
    pid, start: procStart(pid), boot: readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim(),
    pidns: readlinkSync('/proc/self/ns/pid'), host: os.hostname(), thread: 0, token: 'feedfacefeedface', ...over,
  })}\n`;
}
/** Leaves the lock of `dir` held by `record`, as its owner would have left it. */
async function plantLock(dir: string, pid: number, record: string): Promise<void> {
  const meta = path.join(dir, '.cpfile');
  await mkdir(meta, { recursive: true });
  await writeFile(path.join(meta, `owner.${pid}`), record);
  await link(path.join(meta, `owner.${pid}`), path.join(meta, 'lock'));
}

/** Every file under `dir` whose bytes contain `marker`. */
async function filesContaining(dir: string, marker: string): Promise<string[]> {
  const out: string[] = [];
  const needle = Buffer.from(marker);
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && (await readFile(p)).includes(needle)) out.push(path.relative(dir, p));
    }
  }
  await walk(dir);
  return out;
}

/** A process that just stays alive (its pid is alive for as long as the test needs it). */
function sleeper(children: ChildProcess[]): ChildProcess {
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(c);
  return c;
}

describe('locking: one owner per store directory', function () {
  this.timeout(30000);
  const sb = new Sandbox();
  let dir: string;
  const children: ChildProcess[] = [];

  beforeEach(async function () {
    dir = await sb.dir();
  });
  afterEach(async function () {
    for (const c of children.splice(0)) await kill(c);
    await sb.cleanup();
  });

  it('a second openStore on the same dir in the same process rejects with ELOCKED "already open in this process"; the first keeps working', async function () {
    const first = await sb.open(dir);
    await first.writeFile('a', 'one');
    const err = await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    expect(err.message).to.include('already open in this process');
    await first.check();
    expect(text(await first.readFile('a'))).to.equal('one');
    await first.close();
    // once released, the directory can be opened again
    const second = await sb.open(dir);
    expect(text(await second.readFile('a'))).to.equal('one');
  });

  it('a second openStore in the same process through a symlink to the store directory rejects with ELOCKED "already open in this process"', async function () {
    const first = await sb.open(dir);
    await first.writeFile('a', 'one');
    await first.check();
    const alias = `${dir}-alias`;
    await symlink(dir, alias);
    try {
      const err = await expectCpError(() => sb.open(alias), 'ELOCKED');
      expect(err.message).to.include('already open in this process');
      // the first store still owns the lock and works
      await first.writeFile('a', 'two');
      await first.check();
      expect(text(await first.readFile('a'))).to.equal('two');
      await first.close();
      const again = await sb.open(alias);
      expect(text(await again.readFile('a'))).to.equal('two');
      await again.close();
    } finally {
      await rm(alias, { force: true });
    }
  });

  it('a second openStore in the same process through a bind mount of the store directory rejects with ELOCKED "already open in this process"', async function () {
    const mnt = await sb.dir('cpfile-bind-');
    try {
      execFileSync('mount', ['--bind', dir, mnt], { stdio: 'pipe' });
    } catch (e) {
      console.log(`      SKIPPED: mount --bind is not permitted here (${String((e as { stderr?: Buffer }).stderr ?? e).trim()})`);
      this.skip();
    }
    const opened: Store[] = [];
    try {
      const first = await sb.open(dir);
      opened.push(first);
      await first.writeFile('a', 'one');
      await first.check();
      const err = await expectCpError(async () => opened.push(await sb.open(mnt)), 'ELOCKED');
      expect(err.message).to.include('already open in this process');
    } finally {
      for (const s of opened) await s.close({ discard: true }).catch(() => undefined);
      try {
        execFileSync('umount', [mnt], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
      }
    }
  });

  it('a store held open by a live child process makes openStore reject with ELOCKED naming it, also after lockStale', async function () {
    const child = await Holder.start(dir, children);
    const err = await expectCpError(() => openStore(dir, { ...SMALL, lockStale: 2000 }), 'ELOCKED');
    expect(err.message).to.include(`process ${child.pid} on host ${os.hostname()}`);
    await sleep(2500);
    await expectCpError(() => openStore(dir, { ...SMALL, lockStale: 2000 }), 'ELOCKED');
    // a clean exit of the owner releases the lock
    child.child.stdin!.end();
    await waitExit(child.child);
    expect(child.child.exitCode).to.equal(0);
    const store = await sb.open(dir, { lockStale: 2000 });
    expect(text(await store.readFile('child.txt'))).to.equal('from-child');
  });

  it('an owner SIGSTOPped for longer than lockStale keeps its lock: another process gets ELOCKED; after SIGCONT it goes on and nothing either acknowledged is lost', async function () {
    const acked = new Map<string, string>(); // name -> content, from every process's ACKs
    const a = await Holder.start(dir, children);
    expect(await a.put('a1', 'A-before-stop')).to.match(/^ACK a1 /);
    acked.set('a1', 'A-before-stop');
    a.child.kill('SIGSTOP');
    await sleep(2500); // > lockStale: a time lease would call the stopped owner's lock stale now
    const b = await Holder.start(dir, children);
    let bOpened = false;
    if (!b.openErr) {
      // (what the takeover did) the second process owns the store and acknowledges an epoch
      bOpened = true;
      const r = await b.put('b1', 'B-while-A-stopped');
      if (r.startsWith('ACK')) acked.set('b1', 'B-while-A-stopped');
    }
    const here = await expectCpError(() => openStore(dir, { ...SMALL, lockStale: 2000 }), 'ELOCKED');
    a.child.kill('SIGCONT');
    const r2 = await a.put('a2', 'A-after-continue');
    if (r2.startsWith('ACK')) acked.set('a2', 'A-after-continue');
    await kill(a.child);
    await kill(b.child);
    const store = await sb.open(dir, { lockStale: 2000 });
    for (const [name, content] of acked) expect(text(await store.readFile(name)), `acknowledged ${name}`).to.equal(content);
    expect(bOpened, 'the second process opened the store of a live (stopped) owner').to.equal(false);
    expect(b.openErr!.code).to.equal('ELOCKED');
    expect(b.openErr!.message).to.include(`process ${a.pid} on host`);
    expect(here.message).to.include('stopped');
    expect(r2, 'the stopped owner, continued, goes on').to.match(/^ACK a2 /);
  });

  it('the lock of a SIGKILLed owner is reclaimed at once by a new openStore, with its checked data', async function () {
    const child = await Holder.start(dir, children);
    child.child.kill('SIGKILL');
    await waitExit(child.child);
    const store = await sb.open(dir, { lockStale: 2000 });
    expect(text(await store.readFile('child.txt'))).to.equal('from-child');
    await expectCpError(() => store.readFile('child-pending.txt'), 'ENOENT');
    await store.writeFile('parent.txt', 'mine');
    await store.check();
    // the reclaimed lock is really ours, and the dead owner's record is gone
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    expect(await readdir(path.join(dir, '.cpfile'))).to.not.include(`owner.${child.pid}`);
  });

  it('an owner record from an earlier boot of this host is reclaimed, even though its pid is alive now', async function () {
    const s = await sb.open(dir);
    await s.writeFile('a', 'checked');
    await s.check();
    await s.close();
    const live = sleeper(children);
    await plantLock(dir, live.pid!, recordFor(live.pid!, { boot: '00000000-0000-0000-0000-000000000000' }));
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('checked');
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
  });

  it('an owner record of a live pid with another start time (the pid was reused) is reclaimed', async function () {
    const live = sleeper(children);
    await plantLock(dir, live.pid!, recordFor(live.pid!, { start: String(Number(procStart(live.pid!)) - 1) }));
    const store = await sb.open(dir);
    await store.writeFile('a', 'mine');
    await store.check();
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
  });

  it('an owner record from this process\'s pid of an earlier run (another start time) is reclaimed, one of this very process is not', async function () {
    await plantLock(dir, process.pid, recordFor(process.pid, { start: String(Number(procStart(process.pid)) - 1) }));
    const store = await sb.open(dir);
    await store.close();
    await plantLock(dir, process.pid, recordFor(process.pid));
    const err = await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    expect(err.message).to.include('already open in this process');
  });

  it('an owner record from another host or pid namespace is not reclaimed: ELOCKED names the holder and how to break the lock', async function () {
    await plantLock(dir, 4242, recordFor(process.pid, { pid: 4242, host: 'elsewhere.example' }));
    const err = await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    expect(err.message).to.include('process 4242 on host elsewhere.example');
    expect(err.message).to.include(`remove ${path.join(await fsDefault.promises.realpath(dir), '.cpfile', 'lock')}`);
    await rm(path.join(dir, '.cpfile', 'lock'));
    await rm(path.join(dir, '.cpfile', 'owner.4242'));
    await plantLock(dir, 4242, recordFor(process.pid, { pid: 4242, pidns: 'pid:[1]' }));
    const err2 = await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    expect(err2.message).to.include('another pid namespace');
    // the documented way out, once that process is known to be gone
    await rm(path.join(dir, '.cpfile', 'lock'));
    const store = await sb.open(dir);
    await store.close();
  });

  it('the lock removed by hand while its owner runs: the owner\'s next call rejects ECOMPROMISED and its later writes reach no journal segment and no data file; the next owner\'s epochs survive', async function () {
    const a = await Holder.start(dir, children, ['2000', '4096']);
    expect(await a.put('a1', 'A-before-break')).to.match(/^ACK a1 /);
    expect(await a.put('big', 'A-big-before')).to.match(/^ACK big /);
    // once 'big' is applied (on disk), A's big appends to it would go to the data file itself
    while (!(await stat(path.join(dir, 'big')).catch(() => null))) await sleep(10);
    await rm(path.join(dir, '.cpfile', 'lock'), { recursive: true, force: true });
    const b = await Holder.start(dir, children);
    expect(b.openErr).to.equal(null);
    expect(await b.put('b1', 'B-new-owner')).to.match(/^ACK b1 /);
    // A's next calls: a direct append (>= directAppendMin: it would go to the data file) and a journaled one
    const big = await a.put('big', 'QZX-A-after-break-direct', 256 * 1024);
    const small = await a.put('b1', 'QZX-A-after-break-small');
    const again = await a.put('a1', 'QZX-A-after-break-again');
    expect(await filesContaining(dir, 'QZX-A-after-break'), 'files holding bytes A wrote after the break').to.deep.equal([]);
    await kill(a.child);
    await kill(b.child);
    const store = await sb.open(dir);
    expect(text(await store.readFile('a1'))).to.equal('A-before-break');
    expect(text(await store.readFile('b1'))).to.equal('B-new-owner');
    expect(text(await store.readFile('big'))).to.equal('A-big-before');
    expect(big).to.match(/^ERR big ECOMPROMISED /);
    expect(small).to.match(/^ERR b1 ECOMPROMISED /);
    expect(again).to.match(/^ERR a1 ECOMPROMISED /);
  });

  it('a store whose lock is deleted while open rejects later calls with ECOMPROMISED and the process survives', async function () {
    const store: Store = await sb.open(dir, { lockStale: 2000 });
    await store.writeFile('a', 'before');
    await store.check();
    const locks = await findLockPaths(dir);
    expect(locks, 'lock created by openStore').to.not.be.empty;
    for (const l of locks) await rm(l, { recursive: true, force: true });
    await expectCpError(() => store.check(), 'ECOMPROMISED');
    await expectCpError(() => store.writeFile('a', 'after'), 'ECOMPROMISED');
    await expectCpError(() => store.open('b', 'w'), 'ECOMPROMISED');
    // the process is still alive and can keep running work
    await sleep(10);
    expect(process.exitCode ?? 0).to.equal(0);
    // and nothing acknowledged is lost
    await store.close().catch(() => undefined);
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('before');
  });

  it('an event-loop stall of the owner longer than lockStale, with nobody taking the lock, leaves its store working', async function () {
    const store: Store = await sb.open(dir, { lockStale: 2000 });
    await store.writeFile('a', 'acknowledged');
    await store.check();
    await store.writeFile('a', 'pending during the stall');
    const until = Date.now() + 3500;
    while (Date.now() < until) { /* a synchronous stall: no timer of the store can run */ }
    await sleep(1500); // the store's own timers run late now
    await store.check();
    expect(text(await store.readFile('a'))).to.equal('pending during the stall');
    await store.close();
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('pending during the stall');
  });

  describe('close() when removing the owner file fails (EROFS, as after an I/O error turned the file system read-only)', function () {
    const real = { unlinkSync: fsDefault.unlinkSync, rmSync: fsDefault.rmSync };
    let failing: string | null = null;
    before(function () {
      const rofs = (p: unknown): void => {
        if (failing && typeof p === 'string' && p.startsWith(failing) && /owner\.\d+$/.test(p)) {
          throw Object.assign(new Error(`EROFS: read-only file system, unlink '${p}'`), { code: 'EROFS' });
        }
      };
      fsDefault.unlinkSync = ((p: fsDefault.PathLike) => { rofs(p); real.unlinkSync(p); }) as typeof fsDefault.unlinkSync;
      fsDefault.rmSync = ((p: fsDefault.PathLike, o?: fsDefault.RmOptions) => { rofs(p); real.rmSync(p, o); }) as typeof fsDefault.rmSync;
      syncBuiltinESMExports();
    });
    after(function () {
      fsDefault.unlinkSync = real.unlinkSync;
      fsDefault.rmSync = real.rmSync;
      syncBuiltinESMExports();
    });
    afterEach(function () {
      failing = null;
    });

    it('a healthy store closes without error and its lock is released', async function () {
      const store = await sb.open(dir);
      await store.writeFile('a', 'one');
      failing = path.join(await fsDefault.promises.realpath(dir), '.cpfile');
      await store.close();
      failing = null;
      const again = await sb.open(dir);
      expect(text(await again.readFile('a'))).to.equal('one');
    });

    it('a failed store rejects with its own error (EREOPEN), not the lock\'s EROFS, and its lock is released', async function () {
      let broken = false;
      const io = interceptIO(async (call, args, next) => {
        if (broken && (call === 'write' || call === 'fdatasync' || call === 'fsync')) throw injected('EIO', call);
        return next();
      });
      const store = await sb.open(dir, { io });
      await store.writeFile('a', 'one');
      await store.check();
      broken = true;
      await store.writeFile('a', 'two');
      await expectCpError(() => store.check(), 'EIO');
      failing = path.join(await fsDefault.promises.realpath(dir), '.cpfile');
      await expectCpError(() => store.close(), 'EREOPEN');
      failing = null;
      broken = false;
      const again = await sb.open(dir);
      expect(text(await again.readFile('a'))).to.equal('one');
    });
  });
});
