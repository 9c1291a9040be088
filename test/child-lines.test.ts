// The kill loops' oracle trusts the children's ACK lines: a check whose ACK the parent never read
// counts as unacknowledged, and at most one unacknowledged epoch may be durable. That holds only if a
// child never runs ahead of what its parent can still read after the SIGKILL.
//
// A child's stdout (stdio 'pipe') is a non-blocking Unix socket pair. While the parent does not read
// it (its event loop busy or starved: the same stall that makes a kill timer seconds late), its send
// buffer fills after about 278 short lines, and a plain process.stdout.write() then queues the line
// inside the child and returns; the SIGKILL drops the queue. A torture run met exactly that: 278 lines
// read (BASE, ACK 1..277), a store durably at check 312, "recovered files match no check in [277, 278]".
// Here the parent stops reading on purpose, by blocking its event loop, until the child is far past
// that point (or has stopped: a child that awaits its lines waits for the parent), kills it, and
// judges the recovered store with the oracle.
import { expect } from 'chai';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';
import { CONTROL_SLOT_SIZE, decodeControlSlot } from '../lib/format.js';
import { Child, modelRun, readTree, mkTmp, rmTmp } from './helpers/model.js';
import { judge } from './torture/oracle.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SEGMENT = 64 * 1024;
const SEED = 3; // a workload with about 630 checks in the 5000 operations a child runs
/** checks the child must reach while the parent does not read: well past the ~278 lines a socket holds */
const FAR = 400;
/** the child made no progress for this long: it waits for the parent to read */
const IDLE_MS = 4000;
const CAP_MS = 120_000;

/** The applied epoch of the store's control file (its current slot), 0 before there is one. */
function appliedEpoch(dir: string): number {
  let b: Buffer;
  try {
    b = readFileSync(path.join(dir, '.cpfile', 'control'));
  } catch {
    return 0;
  }
  let best = { counter: -1, applied: 0 };
  for (const at of [0, CONTROL_SLOT_SIZE]) {
    const s = decodeControlSlot(b.subarray(at, at + CONTROL_SLOT_SIZE));
    if (s.ok && s.state.counter > best.counter) best = { counter: s.state.counter, applied: s.state.appliedEpoch };
  }
  return best.applied;
}

/**
 * Block this thread's event loop (nothing reads the child's stdout meanwhile) until the store's
 * applied epoch reaches `target`, or stops moving for IDLE_MS. Returns the last applied epoch seen.
 */
function stallUntil(dir: string, target: number): number {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const t0 = Date.now();
  let last = -1;
  let movedAt = Date.now();
  for (;;) {
    const e = appliedEpoch(dir);
    if (e !== last) {
      last = e;
      movedAt = Date.now();
    }
    if (e >= target || Date.now() - movedAt > IDLE_MS || Date.now() - t0 > CAP_MS) return e;
    Atomics.wait(nap, 0, 0, 20);
  }
}

const children = [
  {
    title: 'the torture kill child (test/torture/kill-child.ts)',
    script: path.join(here, 'torture', 'kill-child.js'),
    // applied at once after every check, so the control file follows the child's progress
    args: (dir: string) => [JSON.stringify({ mode: 'run', dir, seed: SEED, segmentSize: SEGMENT, applyDelay: 0, applyThreshold: 0, directAppendMin: false })],
  },
  {
    title: 'the kill-loop child (test/fixtures/workload.ts)',
    script: path.join(here, 'fixtures', 'workload.js'),
    args: (dir: string) => [dir, String(SEED), '0', String(SEGMENT)],
  },
];

describe('kill-loop children: an ACK line is never lost while the parent is not reading', function () {
  this.timeout(CAP_MS + 60_000);
  for (const c of children) {
    it(`${c.title}: the recovered epoch is at most one past the last ACK read`, async () => {
      const dir = await mkTmp('cpfile-child-lines-');
      try {
        const child = new Child(c.script, c.args(dir));
        await child.waitFor('BASE', 30000);
        const base = Number(child.lines.find((l) => l.startsWith('BASE'))!.split(' ')[1]);
        expect(base).to.equal(0);
        const seen = stallUntil(dir, base + FAR);
        await child.kill();
        const failLine = child.lines.find((l) => l.startsWith('FAIL') || l.startsWith('TIMEOUT'));
        expect(failLine, child.output()).to.equal(undefined);
        let lastAck = 0;
        for (const l of child.lines) if (l.startsWith('ACK ')) lastAck = Number(l.split(' ')[1]);
        const store = await openStore(dir, { inline: true, segmentSize: SEGMENT });
        try {
          const k = store.epoch - base;
          expect(k, `the child reached check ${k} (applied epoch ${seen} while the parent did not read), ` +
            `but the parent read ${child.lines.length} lines, the last ACK ${lastAck}: lines were lost in the child`).to.be.at.most(lastAck + 1);
          const { snaps } = modelRun(SEED, new Map(), lastAck + 1);
          const bad = judge({ files: await readTree(dir), epoch: store.epoch, entries: store.recovery.entries },
            { snaps: new Map(snaps.map((s) => [s.k, s])), lo: lastAck, hi: lastAck + 1, base });
          expect(bad).to.equal(null);
        } finally {
          await store.close({ discard: true });
        }
      } finally {
        await rmTmp(dir);
      }
    });
  }
});
