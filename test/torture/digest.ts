/**
 * Determinism digests: what a seeded unit leaves on disk, as one sha1 per unit, so that a change that
 * must not alter any byte on disk (a refactoring) can be checked against the same seeds run before it.
 *
 * A powerloss-style unit runs the seeded model workload (driver.ts) on the simulated file system and
 * hashes the whole store (journal, control file and data files) at every acknowledged check, after
 * close, and after recovering the image a crash at the end would leave. An edge unit (edges.ts) adds the
 * digest of the journal its workload left. crypto.randomBytes is seeded for the unit (determinism.ts),
 * so the same code and seed give the same digest on every run and machine.
 */
import { createHash, type Hash } from 'node:crypto';
import { openStore } from '../../lib/index.js';
import { Rng, mixSeed } from '../helpers/model.js';
import { SimFS } from './simfs.js';
import { drive } from './driver.js';
import { withSeededRandom } from './determinism.js';
import { recoverImage, directAppendMinOf, STORE, SEGMENT } from './common.js';
import { edgeUnit, DEFAULT_SCALE } from './edges.js';

function hashTree(h: Hash, sim: SimFS, label: string): void {
  h.update(`--${label}\0`);
  for (const [n, b] of [...sim.tree(STORE, '\0')].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) h.update(`${n}\0${b.length}\0`).update(b);
}

/** The digest of one seeded workload unit (options drawn from the seed as in powerloss.ts). */
export async function workloadDigest(seed: number): Promise<string> {
  return withSeededRandom(seed, async () => {
    const rng = new Rng(mixSeed(seed, 0xd16e));
    const applyThreshold = [0, 0, 12 * 1024, 2 ** 40][rng.int(4)];
    const segmentSize = rng.chance(0.3) ? 64 * 1024 : SEGMENT;
    const ops = rng.range(20, 160);
    const h = createHash('sha1');
    const sim = new SimFS();
    sim.mkdirSync(STORE);
    sim.allowedRoot = STORE;
    const store = await openStore(STORE, { io: sim, noLock: true, segmentSize, applyThreshold, applyDelay: 3600_000, directAppendMin: directAppendMinOf(seed) });
    const run = await drive(store, { seed, ops, unawaited: 0, onAck: (k) => hashTree(h, sim, `ack ${k}`) });
    h.update(`error ${run.error ? `${run.error.i} ${run.error.op}` : 'none'} acked ${run.acked}\0`);
    const img = sim.image();
    await store.close({ discard: true }).catch(() => undefined);
    hashTree(h, sim, 'closed');
    const r = await recoverImage(img, true, { segmentSize });
    h.update(`recovered epoch ${r.epoch} error ${r.error ? String((r.error as { code?: string }).code) : 'none'}\0`);
    hashTree(h, r.sim, 'recovered');
    return h.digest('hex');
  });
}

/** `n` lines "<kind> <seed> <sha1>" for the seeds from `seed` on: a seed divisible by 4 is an edge unit, any other a workload unit. */
export async function digestLines(seed: number, n: number, progress?: (line: string) => void): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = (seed + i) >>> 0;
    const line = s % 4 === 0
      ? `edge ${s} ${(await edgeUnit('powerloss', s, { ...DEFAULT_SCALE, manyMax: 600, states: 1 }, 1)).journalDigest}`
      : `workload ${s} ${await workloadDigest(s)}`;
    out.push(line);
    progress?.(line);
  }
  return out;
}
