// Store ownership: one live owner per directory, stale locks are reclaimed, a lost lock
// becomes ECOMPROMISED instead of crashing the process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { utimesSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { openStore } from '../lib/index.js';
import { Sandbox, expectCpError, findLockPaths, sleep, SMALL, type Store } from './helpers/sandbox.js';

const HOLDER = fileURLToPath(new URL('./fixtures-locking/hold-store.js', import.meta.url));
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** Starts the holder child and resolves once it printed READY (store open, child.txt checked). */
function startHolder(dir: string, lockStale: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HOLDER, dir, String(lockStale)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`holder did not become ready: ${err}`));
    }, 15000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`holder exited early (code ${code}, signal ${sig}): ${err}`));
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
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
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await waitExit(c);
      }
    }
    await sb.cleanup();
  });

  it('a second openStore on the same dir in the same process rejects with ELOCKED; the first keeps working', async function () {
    const first = await sb.open(dir);
    await first.writeFile('a', 'one');
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
    await first.check();
    expect(text(await first.readFile('a'))).to.equal('one');
    await first.close();
    // once released, the directory can be opened again
    const second = await sb.open(dir);
    expect(text(await second.readFile('a'))).to.equal('one');
  });

  it('a store held open by a live child process makes openStore reject with ELOCKED', async function () {
    const child = await startHolder(dir, 2000);
    children.push(child);
    await expectCpError(() => openStore(dir, { ...SMALL, lockStale: 2000 }), 'ELOCKED');
    // still locked after more than lockStale: the live owner keeps refreshing its lock
    await sleep(2500);
    await expectCpError(() => openStore(dir, { ...SMALL, lockStale: 2000 }), 'ELOCKED');
    // a clean exit of the owner releases the lock
    child.stdin!.end();
    await waitExit(child);
    expect(child.exitCode).to.equal(0);
    const store = await sb.open(dir, { lockStale: 2000 });
    expect(text(await store.readFile('child.txt'))).to.equal('from-child');
  });

  it('the lock of a SIGKILLed owner is reclaimed by a new openStore, with its checked data', async function () {
    const child = await startHolder(dir, 2000);
    children.push(child);
    child.kill('SIGKILL');
    await waitExit(child);
    await sleep(2500); // > lockStale: the dead owner's lock is stale now
    const store = await sb.open(dir, { lockStale: 2000 });
    expect(text(await store.readFile('child.txt'))).to.equal('from-child');
    await expectCpError(() => store.readFile('child-pending.txt'), 'ENOENT');
    await store.writeFile('parent.txt', 'mine');
    await store.check();
    // and the reclaimed lock is really ours
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
  });

  it('a store whose lock is deleted while open rejects later calls with ECOMPROMISED and the process survives', async function () {
    const store: Store = await sb.open(dir, { lockStale: 2000 });
    await store.writeFile('a', 'before');
    await store.check();
    const locks = await findLockPaths(dir);
    expect(locks, 'lock created by openStore').to.not.be.empty;
    for (const l of locks) await rm(l, { recursive: true, force: true });
    await sleep(2500);
    await expectCpError(() => store.writeFile('a', 'after'), 'ECOMPROMISED');
    await expectCpError(() => store.check(), 'ECOMPROMISED');
    await expectCpError(() => store.open('b', 'w'), 'ECOMPROMISED');
    // the process is still alive and can keep running work
    await sleep(10);
    expect(process.exitCode ?? 0).to.equal(0);
    // and nothing acknowledged is lost
    await store.close().catch(() => undefined);
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('before');
  });

  it('an event-loop stall past lockStale while another opener takes the stale lock: ECOMPROMISED, no crash, nothing acknowledged lost', async function () {
    const store: Store = await sb.open(dir, { lockStale: 2000 });
    await store.writeFile('a', 'acknowledged');
    await store.check();
    await store.writeFile('a', 'pending when the lock was lost');
    const locks = await findLockPaths(dir);
    expect(locks).to.not.be.empty;
    const until = Date.now() + 3500;
    while (Date.now() < until) { /* a synchronous stall: the lock's refresh timer cannot run */ }
    // Meanwhile the lock looked stale to another process, which took it (refreshing its mtime):
    // done before the event loop turns, so the overdue refresh sees it.
    const now = new Date();
    for (const l of locks) utimesSync(l, now, now);
    await sleep(1500); // the late refresh finds a lock that is not ours any more: compromised
    await expectCpError(() => store.check(), 'ECOMPROMISED');
    expect(process.exitCode ?? 0).to.equal(0);
    await store.close().catch(() => undefined);
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('acknowledged');
  });

  it('a lock left by a dead process that had our pid (a reboot, a new container) is reclaimed at once', async function () {
    const store: Store = await sb.open(dir);
    await store.writeFile('a', 'checked');
    await store.check();
    await store.close();
    // what that process left: its owner file (with our pid) and a fresh, not yet stale lock
    await writeFile(path.join(dir, '.cpfile', `owner.${process.pid}`), `${process.pid}\n`);
    await mkdir(path.join(dir, '.cpfile', 'lock'));
    const again = await sb.open(dir);
    expect(text(await again.readFile('a'))).to.equal('checked');
    await expectCpError(() => openStore(dir, SMALL), 'ELOCKED');
  });
});
