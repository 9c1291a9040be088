// Regression tests for bugs the torture suite found. Each one failed before its fix (checked by
// reverting the fix) and names the commit message that explains it (`git log --grep torture`).
import { expect } from 'chai';
import { openStore, CpError, type IO } from '../lib/index.js';
import { interceptIO, injected } from './helpers/intercept-io.js';
import { Sandbox } from './helpers/sandbox.js';
import { powerlossUnit } from './torture/powerloss.js';

/** nodeIO whose n-th `write` call (1-based, counted once armed) throws ENOSPC; counts the writes after it. */
function failNthWrite(n: number): { io: IO; arm(): void; after: number; failed: boolean } {
  const st = { armed: false, seen: 0, failed: false, after: 0 };
  const io = interceptIO(async (call, _args, next) => {
    if (call === 'write' && st.armed) {
      if (st.failed) st.after++;
      else if (++st.seen === n) {
        st.failed = true;
        throw injected('ENOSPC', call);
      }
    }
    return next();
  });
  return {
    io,
    arm: () => void (st.armed = true),
    get after() {
      return st.after;
    },
    get failed() {
      return st.failed;
    },
  };
}

describe('torture regressions', () => {
  const sb = new Sandbox();
  after(() => sb.cleanup());

  // 155dab2 "The flusher refuses every task after its first failure"
  it('after a failed journal write, batches queued behind it never reach the disk, and the store reopens without --force', async () => {
    const dir = await sb.dir();
    const f = failNthWrite(2);
    const s = await openStore(dir, { io: f.io, noLock: true, batchBytes: 4096, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    await s.writeFile('a', 'epoch one');
    expect(await s.check()).to.equal(1);
    const h = await s.open('b', 'w');
    f.arm();
    // Many small batches in flight at once: the second one fails, the ones behind it must not be written.
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 24; i++) pending.push(h.write(Buffer.alloc(4096, i)));
    pending.push(s.check());
    const settled = await Promise.allSettled(pending);
    expect(f.failed, 'the fault fired').to.equal(true);
    const rejected = settled.filter((r) => r.status === 'rejected');
    expect(rejected.length, 'the check and the writes behind the failure reject').to.be.greaterThan(0);
    for (const r of rejected) expect((r as PromiseRejectedResult).reason).to.be.instanceOf(CpError);
    expect(f.after, 'journal writes issued after the failed one').to.equal(0);
    expect(s.epoch).to.equal(1);
    await s.close({ discard: true }).catch(() => undefined);
    const r = await openStore(dir, { noLock: true });
    expect(r.epoch).to.equal(1);
    expect((await r.readFile('a')).toString()).to.equal('epoch one');
    await r.close();
  });

  // b6bc819 "Recovery restores the size of a live segment whose unsynced sizing was lost"
  it('power loss that keeps writes into a new segment but loses its sizing: replay of seed 2834450296 finds no violation', async function () {
    this.timeout(120_000);
    const r = await powerlossUnit(2834450296, { budget: 2500, limit: 182 });
    expect(r.states).to.equal(182);
    expect(r.violations.map((v) => v.detail.split('\n').slice(0, 3).join(' | '))).to.deep.equal([]);
  });
});
