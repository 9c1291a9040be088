import { expect } from 'chai';
import * as fs from 'node:fs';
import { openStore, CpError, type IO } from '../lib/index.js';
import { interceptIO, injected } from './helpers/intercept-io.js';
import { tempDir } from './helpers/journal.js';

/** nodeIO with a switch: while `fail` names a call and `match` accepts its path/fd, that call throws `code`. */
function faultyIO(): { io: IO; arm(call: string, code: string, match?: (arg: unknown) => boolean): void; disarm(): void; hits: number } {
  const state = { call: '', code: '', match: (_: unknown) => true, hits: 0 };
  const io = interceptIO(async (call, args, next) => {
    if (call === state.call && state.match(args[0])) {
      state.hits++;
      throw injected(state.code, call);
    }
    return next();
  });
  return {
    io,
    arm(call, code, match = () => true) {
      Object.assign(state, { call, code, match, hits: 0 });
    },
    disarm() {
      state.call = '';
    },
    get hits() {
      return state.hits;
    },
  };
}

describe('I/O failures during check()', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  for (const [call, code] of [['write', 'ENOSPC'], ['fdatasync', 'EIO'], ['write', 'EIO']] as const) {
    it(`${code} from ${call} while committing rejects that check, keeps the previous epoch, and a reopen loses nothing acknowledged`, async () => {
      const dir = tempDir();
      dirs.push(dir);
      const f = faultyIO();
      const s = await openStore(dir, { io: f.io, noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
      await s.writeFile('a', 'epoch one');
      expect(await s.check()).to.equal(1);
      await s.writeFile('a', 'epoch two, never acknowledged');
      f.arm(call, code);
      let err: unknown = null;
      try {
        await s.check();
      } catch (e) {
        err = e;
      }
      expect(err, 'check must reject').to.be.instanceOf(CpError);
      expect((err as CpError).code).to.equal(code);
      expect(f.hits).to.be.greaterThan(0);
      expect(s.epoch).to.equal(1);
      // The store says plainly that it must be reopened.
      let later: unknown = null;
      try {
        await s.readFile('a');
      } catch (e) {
        later = e;
      }
      expect((later as CpError).code).to.equal('EREOPEN');
      expect((later as CpError).message).to.match(/reopen/);
      f.disarm();
      await s.close().catch(() => undefined);
      const r = await openStore(dir, { noLock: true });
      expect(['epoch one', 'epoch two, never acknowledged']).to.include((await r.readFile('a')).toString());
      if (call === 'write') expect((await r.readFile('a')).toString()).to.equal('epoch one');
      await r.close();
    });
  }

  it('a failure while applying in the background surfaces as EREOPEN and recovery applies the epoch', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const f = faultyIO();
    const s = await openStore(dir, { io: f.io, noLock: true, applyDelay: 0 });
    await s.writeFile('data.bin', 'applied later');
    // Fail every data-file open for writing during apply.
    f.arm('open', 'EACCES', (p) => typeof p === 'string' && p.endsWith('data.bin'));
    expect(await s.check()).to.equal(1);
    await new Promise((r) => setTimeout(r, 100));
    let err: unknown = null;
    try {
      await s.writeFile('other', 'x');
    } catch (e) {
      err = e;
    }
    expect((err as CpError).code).to.equal('EREOPEN');
    expect(((err as CpError).cause as CpError).code).to.equal('EACCES');
    f.disarm();
    await s.close().catch(() => undefined);
    const r = await openStore(dir, { noLock: true });
    expect(r.recovery.replayedEpochs).to.equal(1);
    expect(fs.readFileSync(`${dir}/data.bin`, 'utf8')).to.equal('applied later');
    await r.close();
  });
});
