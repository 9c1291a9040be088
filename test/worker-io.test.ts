// The flusher worker's own file-system calls go through the IO interface: a test can record them and
// fail them inside the real piscina worker (StoreOptions.workerIO), not only in the inline flusher.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, CpError, type Store } from '../lib/index.js';
import { Sandbox } from './helpers/sandbox.js';

const MODULE = new URL('./fixtures-worker/worker-io.js', import.meta.url).href;

function withEnv<T>(vars: Record<string, string>, f: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return f().finally(() => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe('the flusher worker through the IO interface', () => {
  const sb = new Sandbox();
  after(() => sb.cleanup());

  /**
   * A store through the worker whose journal calls go wrong once the arm file exists (`arm(file)`:
   * the CPFILE_TEST_WORKER_* variables of fixtures-worker/worker-io.ts): epoch 1 checked, then the
   * arm set and epoch 2 written; returns what its check() rejected with.
   */
  async function secondCheckFails(arm: (file: string) => Record<string, string>): Promise<{ dir: string; s: Store; err: unknown }> {
    const dir = await sb.dir();
    const file = path.join(await sb.dir(), 'arm');
    const s = await withEnv(arm(file), () => openStore(dir, { workerIO: MODULE, applyDelay: 3600_000, applyThreshold: 2 ** 40 }));
    await s.writeFile('a', 'epoch one');
    expect(await s.check()).to.equal(1);
    fs.writeFileSync(file, '');
    await s.writeFile('a', 'epoch two, never acknowledged');
    return { dir, s, err: await s.check().then(() => null, (e: unknown) => e) };
  }

  /** Reopen `dir`: epoch 1, or epoch 2 when its COMMIT reached the page cache before the failure (never only part of it). */
  async function reopenKeepsAcked(dir: string, onlyOne: boolean): Promise<void> {
    const r = await openStore(dir);
    expect(r.epoch).to.be.oneOf([1, 2]);
    if (onlyOne) expect(r.epoch).to.equal(1);
    expect((await r.readFile('a')).toString()).to.equal(r.epoch === 1 ? 'epoch one' : 'epoch two, never acknowledged');
    await r.close();
  }

  it('records the worker thread\'s journal writes, fdatasyncs, applies and directory fsyncs', async () => {
    const dir = await sb.dir();
    const log = path.join(await sb.dir(), 'worker-log');
    const s = await withEnv({ CPFILE_TEST_WORKER_LOG: log }, () => openStore(dir, { workerIO: MODULE, applyDelay: 0 }));
    await s.writeFile('sub/a.txt', 'through the worker');
    await s.check();
    await s.close();
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    const seen = (re: RegExp): boolean => lines.some((l) => re.test(l));
    expect(seen(/^write .*seg-\d+\.cpj$/), 'journal write').to.equal(true);
    expect(seen(/^fdatasync .*seg-\d+\.cpj$/), 'journal fdatasync').to.equal(true);
    expect(seen(/^write .*sub\/a\.txt$/), 'apply write').to.equal(true);
    expect(seen(/^fdatasync .*sub\/a\.txt$/), 'apply fdatasync').to.equal(true);
    expect(seen(new RegExp(`^fsyncDir ${dir}/sub$`)), 'directory fsync after create').to.equal(true);
    expect(fs.readFileSync(path.join(dir, 'sub', 'a.txt'), 'utf8')).to.equal('through the worker');
  });

  for (const [call, code] of [['fdatasync', 'EIO'], ['write', 'ENOSPC']] as const) {
    it(`${code} from the worker's ${call} of the journal rejects check() with ${code}; the store stays at the previous epoch and a reopen loses nothing`, async () => {
      // Armed once the first check resolved: the next journal call of that kind fails.
      const { dir, s, err } = await secondCheckFails((arm) => ({ CPFILE_TEST_WORKER_FAIL: `${call}:${code}:${arm}` }));
      expect(err).to.be.instanceOf(CpError);
      expect((err as CpError).code).to.equal(code);
      expect((err as CpError).message).to.match(/worker's/);
      expect(s.epoch).to.equal(1);
      const later = await s.readFile('a').then(() => null, (e: unknown) => e);
      expect((later as CpError).code).to.equal('EREOPEN');
      await s.close().catch(() => undefined);
      await reopenKeepsAcked(dir, call === 'write');
    });
  }

  for (const [mode, message] of [['EXIT', /flusher thread exited/], ['THROW', /flusher thread (failed: uncaught|exited)/]] as const) {
    it(`a flusher thread that ${mode === 'EXIT' ? 'exits' : 'throws an uncaught exception'} mid-check: check() rejects with EIO, later calls with EREOPEN, the process goes on, a reopen loses nothing acknowledged`, async () => {
      const { dir, s, err } = await secondCheckFails((arm) => ({ [`CPFILE_TEST_WORKER_${mode}`]: arm }));
      expect(err).to.be.instanceOf(CpError);
      expect((err as CpError).code).to.equal('EIO');
      expect((err as CpError).message).to.match(message);
      expect(s.epoch).to.equal(1);
      const later = await s.writeFile('b', 'x').then(() => null, (e: unknown) => e);
      expect((later as CpError).code).to.equal('EREOPEN');
      await s.close().catch(() => undefined);
      // The COMMIT was written before the fdatasync that never ran: the page cache may hold it.
      await reopenKeepsAcked(dir, false);
    });
  }

  it('polling slots come back when a store closes during its thread\'s polling window (a terminated thread frees none itself), and when a thread dies', async () => {
    const slots = (): number[] => [...((globalThis as Record<symbol, { slots: Int32Array } | undefined>)[Symbol.for('cpfile.flusherPollers')]?.slots ?? [])];
    for (let k = 0; k < 12; k++) {
      const s = await openStore(await sb.dir(), { flusherPoll: 100_000 });
      const f = await s.open('log', 'a');
      for (let i = 0; i < 3; i++) {
        await f.write('x');
        await s.check();
      }
      await s.close(); // the thread is inside its 100 ms window when it is terminated
      expect(slots().length, 'the process has polling slots').to.be.above(0);
      expect(slots().every((v) => v === 0), `after close ${k}: ${slots()}`).to.equal(true);
    }
    const arm = path.join(await sb.dir(), 'arm');
    const dying = await sb.dir();
    const s = await withEnv({ CPFILE_TEST_WORKER_EXIT: arm }, () => openStore(dying, { workerIO: MODULE, flusherPoll: 100_000 }));
    await s.writeFile('a', 'one');
    await s.check();
    fs.writeFileSync(arm, '');
    await s.writeFile('a', 'two');
    await s.check().catch(() => undefined);
    expect(slots().every((v) => v === 0), `after the thread died: ${slots()}`).to.equal(true);
    await s.close().catch(() => undefined);
  });

  it('flusherPoll: 0 (no polling) and the largest window work; anything else but an integer in [0, 100000] is EINVAL at openStore', async () => {
    for (const flusherPoll of [0, 100_000]) {
      const dir = await sb.dir();
      const s = await openStore(dir, { flusherPoll });
      const f = await s.open('log', 'a');
      for (let i = 0; i < 20; i++) {
        await f.write(`line ${i}\n`);
        expect(await s.check()).to.equal(i + 1);
      }
      await s.close();
      expect(fs.readFileSync(path.join(dir, 'log'), 'utf8').split('\n')).to.have.length(21);
    }
    for (const bad of [-1, 1.5, 100_001, Number.NaN, '250' as unknown as number]) {
      const dir = await sb.dir();
      const err = await openStore(dir, { flusherPoll: bad }).then(() => null, (e: unknown) => e);
      expect((err as CpError).code, String(bad)).to.equal('EINVAL');
      expect((err as CpError).message).to.match(/flusherPoll/);
    }
  });
});
