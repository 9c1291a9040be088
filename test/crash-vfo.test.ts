// The paper's three failure cases (FARE, FARW, FAD) plus resume and "killed right after check", each
// with a real child process (test/fixtures/vfo.ts) that is SIGKILLed at the failure point. The parent
// then opens the store (recovery), checks the store's view and, after close, the whole directory.

import { expect } from 'chai';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';
import { Child, readTree, diffFiles, mkTmp, rmTmp, codeOf } from './helpers/model.js';
import { V } from './fixtures/vfo-data.js';

type Store = Awaited<ReturnType<typeof openStore>>;

const here = path.dirname(fileURLToPath(import.meta.url));
const VFO = path.join(here, 'fixtures', 'vfo.js');

/** Runs the scenario child, waits for `until` (READY or the n-th CHECKED), SIGKILLs it. */
async function crash(scenario: string, dir: string, until: { ready: true } | { checked: number }): Promise<{ epochs: number[]; child: Child }> {
  const child = new Child(VFO, [scenario, dir]);
  try {
    if ('ready' in until) {
      await child.waitFor('READY');
    } else {
      const n = until.checked;
      await child.waitUntil((lines) => lines.filter((l) => l.startsWith('CHECKED')).length >= n, `CHECKED #${n}`);
    }
  } finally {
    await child.kill();
  }
  const bad = child.lines.find((l) => l.startsWith('FAIL') || l.startsWith('TIMEOUT'));
  if (bad) throw new Error(`child reported ${bad}\n${child.output()}`);
  expect(child.exit?.signal, `child must die by SIGKILL\n${child.output()}`).to.equal('SIGKILL');
  const epochs = child.lines.filter((l) => l.startsWith('CHECKED')).map((l) => Number(l.split(' ')[1]));
  return { epochs, child };
}

/** The store's view of `names` (absent names are left out). */
async function view(store: Store, names: string[]): Promise<Map<string, Buffer>> {
  const m = new Map<string, Buffer>();
  for (const n of names) {
    try {
      m.set(n, Buffer.from(await store.readFile(n)));
    } catch (e) {
      if (codeOf(e) !== 'ENOENT') throw e;
    }
  }
  return m;
}

function expectSame(actual: Map<string, Buffer>, expected: Map<string, Buffer>, what: string): void {
  const d = diffFiles(actual, expected);
  expect(d, `${what}:\n  ${d.join('\n  ')}`).to.deep.equal([]);
}

describe('crash: VFO failure cases with a real child killed by SIGKILL', function () {
  this.timeout(60000);
  let dir = '';
  beforeEach(async () => {
    dir = await mkTmp('cpfile-vfo-');
  });
  afterEach(async () => {
    if (dir) await rmTmp(dir);
    dir = '';
  });

  it('FARE: a file appended after checkpoint i is back to exactly its checkpoint-i content', async () => {
    const { epochs } = await crash('fare', dir, { ready: true });
    expect(epochs).to.have.length(2);
    const expected = V.fareExpected();
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch, 'store.epoch after recovery').to.equal(epochs[1]);
      expect(store.recovery, 'store.recovery').to.be.an('object');
      expectSame(await view(store, ['fare.dat', 'other.dat']), expected, 'store view after recovery');
      const f = await store.open('fare.dat', 'r');
      expect((await f.stat()).size).to.equal(V.A1.length + V.A2.length);
      await f.close();
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });

  it('FARW: bytes overwritten in place after checkpoint i are restored', async () => {
    const { epochs } = await crash('farw', dir, { ready: true });
    expect(epochs).to.have.length(2);
    const expected = new Map([['farw.dat', V.farwExpected()]]);
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch).to.equal(epochs[1]);
      expectSame(await view(store, ['farw.dat']), expected, 'store view after recovery');
      const f = await store.open('farw.dat', 'r');
      const b = Buffer.alloc(V.BLOCK);
      const r = await f.read(b, 0, V.BLOCK, 0);
      expect(r.bytesRead).to.equal(V.BLOCK);
      expect(b.equals(V.farwExpected().subarray(0, V.BLOCK)), 'first block is the original').to.equal(true);
      await f.close();
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });

  it('FAD: a file deleted after checkpoint i is back with its checkpoint-i content', async () => {
    const { epochs } = await crash('fad', dir, { ready: true });
    expect(epochs).to.have.length(2);
    const expected = V.fadExpected();
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch).to.equal(epochs[1]);
      expectSame(await view(store, ['fad.dat', 'keep.dat']), expected, 'store view after recovery');
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });

  it('FAD + re-create + rename: the deleted file has its old bytes, the re-created ones and the rename are gone', async () => {
    const { epochs } = await crash('fad-recreate', dir, { ready: true });
    expect(epochs).to.have.length(2);
    const expected = V.fadExpected();
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch).to.equal(epochs[1]);
      expectSame(await view(store, ['fad.dat', 'keep.dat', 'moved.dat']), expected, 'store view after recovery');
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });

  it('resume: a file left open comes back resumed at its checkpointed position, and "w" does not truncate it', async () => {
    const { epochs } = await crash('resume', dir, { ready: true });
    expect(epochs).to.have.length(1);
    const expected = new Map([['resume.log', V.L1], ['closed.log', V.C]]);
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch).to.equal(epochs[0]);
      expectSame(await view(store, ['resume.log', 'closed.log']), expected, 'store view after recovery');
      const f = await store.open('resume.log', 'w');
      expect(f.resumed, 'resume.log resumed').to.equal(true);
      expect(f.tell(), 'resume.log position').to.equal(V.RESUME_POS);
      expect((await f.stat()).size, "'w' on a resumed entry must not truncate").to.equal(V.L1.length);
      const c = await store.open('closed.log', 'r+');
      expect(c.resumed, 'closed.log was closed before the check: not resumed').to.equal(false);
      expect(c.tell()).to.equal(0);
      await c.close();
      await f.close();
      expectSame(await view(store, ['resume.log', 'closed.log']), expected, 'store view after the reopen');
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });

  it('killed right after a check resolved (while writing on): that epoch is fully present', async () => {
    const { epochs } = await crash('checked', dir, { checked: 2 });
    expect(epochs.length).to.be.at.least(2);
    const expected = V.checkedExpected();
    const store = await openStore(dir, { sync: true });
    try {
      expect(store.epoch).to.equal(epochs[1]);
      expectSame(await view(store, ['ledger.dat', 'meta.json']), expected, 'store view after recovery');
    } finally {
      await store.close();
    }
    expectSame(await readTree(dir), expected, 'store dir after recovery + close');
  });
});
