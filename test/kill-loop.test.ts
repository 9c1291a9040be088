// Kill loop: a child runs a deterministic random workload (test/helpers/model.ts) against a real store
// and is SIGKILLed at a random moment; the parent recovers the store with openStore and compares the
// whole store directory with the model's state after check k or k+1, where k is the last "ACK k" the
// child printed. Every round continues the same store from the verified state.
//
//   CPFILE_KILLS=1000 npm test       more rounds (default 60, about 0.4 s each; npm run torture runs thousands)
//   CPFILE_SEED=1234 npm test        replay a base seed (printed on failure): the same workloads and kill
//                                    delays; where a kill lands in the workload still depends on timing

import { expect } from 'chai';
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';
import {
  Child, Rng, mixSeed, modelRun, readTree, diffFiles, sameFiles, summarize, describeOp, mkTmp, rmTmp,
  codeOf, NAMES, type Snapshot, type Op,
} from './helpers/model.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WORKER = path.join(here, 'fixtures', 'workload.js');

const KILLS = Math.max(1, Number(process.env.CPFILE_KILLS ?? 60) || 60);
const BASE_SEED = process.env.CPFILE_SEED !== undefined
  ? Number(process.env.CPFILE_SEED) >>> 0
  : ((Date.now() ^ (process.pid << 16)) >>> 0);
/** small journal segments so that rounds cross segment boundaries */
const SEGMENT = 64 * 1024;

interface RoundResult {
  lastAck: number;
  matched: number;
  ms: number;
}

class RoundFailure extends Error {}

/** when the parent sends SIGKILL: ms after the spawn, or ms after the child printed BASE (store open) */
interface KillAt {
  after: 'spawn' | 'BASE';
  ms: number;
}

describe('kill loop: SIGKILL at random moments, recovery, whole-store comparison', function () {
  let dir = '';
  let failed = false;

  before(async () => {
    dir = await mkTmp('cpfile-killloop-');
  });
  after(async () => {
    if (failed) {
      const keep = path.join(os.tmpdir(), `cpfile-killloop-fail-${BASE_SEED}`);
      await fsp.rm(keep, { recursive: true, force: true });
      await fsp.cp(dir, keep, { recursive: true }).catch(() => undefined);
      console.log(`    store dir of the failed run kept at ${keep}`);
    }
    if (dir) await rmTmp(dir);
  });

  it(`recovers exactly the last acknowledged epoch (or the next) after ${KILLS} kills (base seed ${BASE_SEED})`, async function () {
    this.timeout(KILLS * 8000 + 60000);
    const timing = new Rng(mixSeed(BASE_SEED, 0xdead));
    let state = new Map<string, Buffer>();
    const results: RoundResult[] = [];
    const t0 = Date.now();
    for (let round = 0; round < KILLS; round++) {
      const seed = mixSeed(BASE_SEED, round + 1);
      // some kills very early (during start-up, openStore or recovery), most in the middle of the workload
      const kill: KillAt = timing.chance(0.2)
        ? { after: 'spawn', ms: timing.range(20, 250) }
        : { after: 'BASE', ms: timing.range(0, 350) };
      const inline = timing.chance(0.25);
      try {
        const r = await runRound(dir, state, seed, kill, inline);
        results.push(r.result);
        state = r.next;
      } catch (e) {
        failed = true;
        const msg = e instanceof Error ? e.message : String(e);
        throw new Error(`kill loop failed in round ${round} (base seed ${BASE_SEED}, round seed ${seed}, kill ${kill.ms} ms after ${kill.after}, inline ${inline})\n` +
          `replay: CPFILE_SEED=${BASE_SEED} CPFILE_KILLS=${round + 1} npx mocha --no-config dist/test/kill-loop.test.js\n${msg}`);
      }
    }
    const acks = results.map((r) => r.lastAck);
    const ms = Date.now() - t0;
    console.log(`    ${KILLS} kills in ${(ms / 1000).toFixed(1)} s (${Math.round(ms / KILLS)} ms/round); ` +
      `no ACK ${acks.filter((a) => a === 0).length}, ACKs per round max ${Math.max(...acks)} mean ${(acks.reduce((s, a) => s + a, 0) / acks.length).toFixed(1)}; ` +
      `recovered epoch k ${results.filter((r) => r.matched === r.lastAck).length}, k+1 ${results.filter((r) => r.matched === r.lastAck + 1).length}`);
    expect(results.length).to.equal(KILLS);
  });
});

async function runRound(dir: string, state: Map<string, Buffer>, seed: number, killAt: KillAt, inline: boolean):
  Promise<{ result: RoundResult; next: Map<string, Buffer> }> {
  const started = Date.now();
  const child = new Child(WORKER, [dir, String(seed), inline ? '1' : '0', String(SEGMENT)]);
  if (killAt.after === 'BASE') await child.waitFor('BASE', 20000).catch(() => undefined);
  await Promise.race([new Promise((r) => setTimeout(r, killAt.ms)), child.exited]);
  const exit = await child.kill();
  if (exit.signal !== 'SIGKILL') {
    throw new RoundFailure(`the child was not killed but exited by itself (${JSON.stringify(exit)})\n${child.output()}`);
  }
  const failLine = child.lines.find((l) => l.startsWith('FAIL') || l.startsWith('TIMEOUT'));
  if (failLine) throw new RoundFailure(`the child reported: ${failLine}\n${child.output()}`);

  // what the child saw
  let base: number | null = null;
  const ackEpoch = new Map<number, number>();
  let lastAck = 0;
  for (const l of child.lines) {
    const p = l.split(' ');
    if (p[0] === 'BASE') base = Number(p[1]);
    else if (p[0] === 'ACK') {
      const k = Number(p[1]);
      if (k !== lastAck + 1) throw new RoundFailure(`ACKs out of order: ${k} after ${lastAck}\n${child.output()}`);
      lastAck = k;
      ackEpoch.set(k, Number(p[2]));
    }
  }

  // the model: snapshots 0..lastAck+1
  const { snaps, ops } = modelRun(seed, state, lastAck + 1);
  const sk = snaps[lastAck]!;
  const sk1 = snaps[lastAck + 1]!;
  const epochK = lastAck > 0 ? ackEpoch.get(lastAck)! : base;

  // recovery
  const store = await openStore(dir, { sync: true, segmentSize: SEGMENT });
  const recovery = JSON.stringify(store.recovery);
  const epoch = store.epoch;
  let matched: Snapshot;
  const context = (): string => {
    const from = ops.findIndex((o) => o.t === 'check' && o.k === lastAck - 1);
    const slice = ops.slice(from < 0 ? 0 : from + 1);
    return `child output:\n${child.lines.slice(-6).join('\n')}\n` +
      `recovered epoch ${epoch}, BASE ${base}, epoch of ACK ${lastAck}: ${epochK}; store.recovery ${recovery}\n` +
      `state k=${lastAck}: ${summarize(sk.files)}\nstate k+1=${lastAck + 1}: ${summarize(sk1.files)}\n` +
      `ops since check ${lastAck - 1} (model):\n  ${slice.slice(-60).map((o: Op) => describeOp(o)).join('\n  ')}`;
  };
  try {
    // 1. the store's view, with the store open (recovery done)
    const view = new Map<string, Buffer>();
    for (const name of NAMES) {
      try {
        view.set(name, Buffer.from(await store.readFile(name)));
      } catch (e) {
        if (codeOf(e) !== 'ENOENT') throw e;
      }
    }
    const isK = sameFiles(view, sk.files);
    const isK1 = sameFiles(view, sk1.files);
    if (!isK && !isK1) {
      throw new RoundFailure(`recovered store view matches neither check ${lastAck} nor check ${lastAck + 1}\n` +
        `diff vs k:   ${diffFiles(view, sk.files).join('; ')}\ndiff vs k+1: ${diffFiles(view, sk1.files).join('; ')}\n${context()}`);
    }
    if (isK && isK1) {
      // identical contents: the epoch number decides which one was recovered (only matters for resume)
      matched = epochK !== null && epoch > epochK ? sk1 : sk;
    } else {
      matched = isK ? sk : sk1;
    }
    // 2. epoch numbers must agree with what the child was told
    if (epochK === null) {
      if (!isK) throw new RoundFailure(`the child never opened the store, yet the contents changed\n${context()}`);
    } else if (!(isK && isK1)) {
      if (isK && epoch !== epochK) {
        throw new RoundFailure(`contents are check ${lastAck} (epoch ${epochK}) but store.epoch is ${epoch}\n${context()}`);
      }
      if (isK1 && epoch <= epochK) {
        throw new RoundFailure(`contents are check ${lastAck + 1} but store.epoch ${epoch} <= epoch ${epochK} of check ${lastAck}\n${context()}`);
      }
    }
    // 3. resume: entries open at the recovered check come back with their position, others start fresh
    for (const name of [...matched.files.keys()].sort()) {
      const f = await store.open(name, 'r+');
      const wantResumed = matched.open.has(name);
      const wantPos = matched.open.get(name) ?? 0;
      const got = { resumed: f.resumed, pos: f.tell() };
      await f.close();
      if (got.resumed !== wantResumed || got.pos !== wantPos) {
        throw new RoundFailure(`open('${name}') after recovery: resumed ${got.resumed} tell ${got.pos}, expected resumed ${wantResumed} tell ${wantPos}\n${context()}`);
      }
    }
  } finally {
    await store.close();
  }
  // 4. the whole directory on disk after close
  const disk = await readTree(dir);
  const d = diffFiles(disk, matched.files);
  if (d.length > 0) {
    throw new RoundFailure(`store dir after recovery + close differs from check ${matched.k}:\n  ${d.join('\n  ')}\n${context()}`);
  }
  return { result: { lastAck, matched: matched.k, ms: Date.now() - started }, next: matched.files };
}
