// A bounded sample of the torture suite (tools/torture.ts, `npm run torture` runs the full targets):
// the simulated file system's power-loss model itself, then a few thousand power-loss crash states, a
// fast-check journal-corruption sample, I/O fault injection at every call site of a few workloads, and
// a few real SIGKILLs (test/kill-loop.test.ts does the kill loop at length), two-phase epochs, 20
// rounds of the PostgreSQL kill loop on a private server (`npm run torture -- --kind postgres` runs
// 300), and the edge dimensions.
//
//   CPFILE_TORTURE_SEED=N npm test     replay a base seed (printed in the test titles)

import { expect } from 'chai';
import { SimFS, CrashModel, SECTOR } from './torture/simfs.js';
import { runPowerloss } from './torture/powerloss.js';
import { runFuzz } from './torture/fuzz.js';
import { runFaults } from './torture/faults.js';
import { runKill, realfsLane } from './torture/kill.js';
import { replayLine, type KindOptions, type KindResult, type Violation } from './torture/common.js';
import { edgeUnit, DIMS, type Dim } from './torture/edges.js';
import { runEdgeRounds } from './torture/kill-edge.js';
import { pgKillLoop } from './torture/pgkill.js';
import { usePgServer } from './helpers/pg-server.js';
import { Rng } from './helpers/model.js';

const SEED = process.env.CPFILE_TORTURE_SEED !== undefined
  ? Number(process.env.CPFILE_TORTURE_SEED) >>> 0
  : ((Date.now() ^ (process.pid << 8)) >>> 0);

function opts(cases: number): KindOptions {
  // the four kinds' samples keep their old shape: edge units and rounds have their own tests below
  return { seed: SEED, cases, log: () => undefined, lanes: 1, edge: { rate: 0, manyMax: 1500, states: 6, dimRate: {}, ulimitRounds: 0, contendRounds: 0 } };
}

function noViolations(r: KindResult): void {
  const lines = r.violations.slice(0, 5).map((v) => `${v.detail.split('\n').slice(0, 8).join('\n    ')}\n    replay: ${replayLine(v)}`);
  expect(r.violations.length, `${r.violations.length} ${r.kind} violation(s) (seed ${SEED}):\n  ${lines.join('\n  ')}`).to.equal(0);
  expect(r.cases).to.be.greaterThan(0);
}

// ---------------------------------------------------------------------------------------------
// the simulator

/** Every crash state (several random draws of each mode) at the end of a trace, as images. */
function statesAtEnd(base: ReturnType<SimFS['image']>, sim: SimFS, draws = 200): SimFS[] {
  const m = new CrashModel(base, sim.trace);
  while (!m.done) m.step();
  const rng = new Rng(42);
  const out: SimFS[] = [];
  for (let i = 0; i < draws; i++) {
    const mode = (['durable', 'all', 'random', 'ordered'] as const)[i % 4];
    out.push(new SimFS(m.materialize(m.randomChoice(rng, mode, 0.5))));
  }
  return out;
}

describe('torture: the simulated file system and its power-loss model', () => {
  it('an fsynced file in an fsynced directory survives every crash state', async () => {
    const sim = new SimFS();
    sim.mkdirSync('/d');
    const base = sim.image();
    const fd = await sim.open('/d/f', 'create');
    await sim.write(fd, Buffer.from('durable'), 0, 7, 0);
    await sim.fsync(fd);
    await sim.fsyncDir('/d');
    await sim.write(fd, Buffer.alloc(2000, 1), 0, 2000, 7);
    for (const s of statesAtEnd(base, sim)) {
      const b = s.readFileSync('/d/f');
      expect(b, 'file exists').to.not.equal(null);
      expect(b!.subarray(0, 7).toString()).to.equal('durable');
      // the unsynced write: absent, whole, or a prefix cut at a sector boundary of the file
      expect([7, 512, 1024, 1536, 2007]).to.include(b!.length);
    }
  });

  it('a create or rename not followed by a directory fsync may be lost, never half done', async () => {
    const sim = new SimFS();
    sim.mkdirSync('/d');
    sim.mkdirSync('/e');
    const base = sim.image();
    const fd = await sim.open('/d/a', 'create');
    await sim.write(fd, Buffer.from('A'), 0, 1, 0);
    await sim.fsync(fd);
    await sim.fsyncDir('/d');
    await sim.rename('/d/a', '/e/b');
    await sim.fsyncDir('/d'); // only one of the two directories: the rename is not durable yet
    const seen = new Set<string>();
    for (const s of statesAtEnd(base, sim)) {
      const a = s.readFileSync('/d/a');
      const b = s.readFileSync('/e/b');
      expect((a === null) !== (b === null), 'exactly one name').to.equal(true);
      seen.add(a ? 'old' : 'new');
    }
    expect([...seen].sort()).to.deep.equal(['new', 'old']);
    await sim.fsyncDir('/e');
    for (const s of statesAtEnd(base, sim, 40)) expect(s.readFileSync('/e/b')!.toString()).to.equal('A');
  });

  it('operations on one name stay in order: an unlink and re-create never resurrect the old file', async () => {
    const sim = new SimFS();
    sim.mkdirSync('/d');
    let fd = await sim.open('/d/x', 'create');
    await sim.write(fd, Buffer.from('old'), 0, 3, 0);
    await sim.fsync(fd);
    await sim.fsyncDir('/d');
    const base = sim.image();
    await sim.unlink('/d/x');
    fd = await sim.open('/d/x', 'create');
    await sim.write(fd, Buffer.from('new'), 0, 3, 0);
    await sim.fsync(fd);
    await sim.rename('/d/x', '/d/y');
    for (const s of statesAtEnd(base, sim)) {
      const x = s.readFileSync('/d/x');
      const y = s.readFileSync('/d/y');
      if (y !== null) {
        expect(y.toString(), 'y is the new file').to.equal('new');
        expect(x, 'x is gone once the rename happened').to.equal(null);
      }
      if (x !== null) expect(['old', 'new']).to.include(x.toString());
    }
  });

  it('torn writes are cut at 512-byte sectors of the file', async () => {
    const sim = new SimFS();
    sim.mkdirSync('/d');
    const fd = await sim.open('/d/f', 'create');
    await sim.fsync(fd);
    await sim.fsyncDir('/d');
    const base = sim.image();
    await sim.write(fd, Buffer.alloc(3000, 7), 0, 3000, 100);
    const lengths = new Set(statesAtEnd(base, sim, 400).map((s) => s.readFileSync('/d/f')!.length));
    for (const n of lengths) expect(n === 0 || n === 3100 || n % SECTOR === 0, `length ${n}`).to.equal(true);
    expect(lengths.size).to.be.greaterThan(2);
  });
});

// ---------------------------------------------------------------------------------------------
// samples of the four kinds

describe(`torture sample (seed ${SEED}; full run: npm run torture)`, function () {
  this.timeout(120_000);

  it('power loss: 6,000 crash states along recorded workloads recover to an acknowledged (or later issued) epoch', async () => {
    noViolations(await runPowerloss(opts(6000)));
  });

  it('journal corruption (fast-check): 3,000 damaged journals recover exactly or are rejected with ECORRUPT', async () => {
    noViolations(await runFuzz(opts(3000)));
  });

  it('I/O faults: ENOSPC/EIO/EACCES at every call site of a workload and of recovery; nothing acknowledged is lost', async () => {
    noViolations(await runFaults(opts(1200)));
  });

  it('kill loop: a few SIGKILLs during check, apply and recovery with the real worker', async () => {
    noViolations(await runKill(opts(8)));
  });
});

// ---------------------------------------------------------------------------------------------
// two-phase epochs (test/torture/twophase.ts, kill.ts): prepare(), then commit({ sync }) or abort()

describe(`torture sample: two-phase epochs (seed ${SEED})`, function () {
  this.timeout(120_000);

  it('power loss: 1,200 crash states of workloads ending epochs with prepare() and commit (sync or not) or abort; the resolver answers as the coordinator recorded; EINDOUBT without it, nothing changed', async () => {
    const r = await runPowerloss({ ...opts(1200), twoPhase: 1 });
    noViolations(r);
    expect(r.twoPhase!['powerloss: units']).to.be.greaterThan(0);
  });

  it('kill: a few SIGKILLs while a PREPARE is written, before the decision, during it, after commit({ sync: false }) or abort', async () => {
    const r = await runKill({ ...opts(3), twoPhase: 1 });
    noViolations(r);
    // (a round's recovery may be killed too: at least one kill a case)
    expect(r.twoPhase!['kill: kills']).to.be.at.least(3);
  });
});

// ---------------------------------------------------------------------------------------------
// cpfile/postgres (test/torture/pgkill.ts): the kill loop of coordinated steps on a private server

describe(`torture sample: postgres kill loop (seed ${SEED})`, function () {
  this.timeout(300_000);
  const pg = usePgServer();

  it('20 rounds: steps over 2-3 stores and rows, the app killed at random moments and at each stage of a step, the server crashed under it, reopeners killed while resolving; rows and files always from one decision', async () => {
    const r = await pgKillLoop({ server: pg.server, seed: SEED, rounds: 20, log: () => undefined });
    const lines = r.violations.slice(0, 5).map((v) => `${v.detail.split('\n').slice(0, 10).join('\n    ')}\n    replay: ${replayLine(v)}`);
    expect(r.violations.length, `${r.violations.length} postgres violation(s) (seed ${SEED}):\n  ${lines.join('\n  ')}`).to.equal(0);
    expect(r.rounds).to.equal(20);
    const kills = Object.entries(r.stats).filter(([k]) => k.startsWith('kills: ')).reduce((n, [, v]) => n + v, 0);
    expect(kills, JSON.stringify(r.stats)).to.equal(20);
    expect(r.stats['steps acknowledged (check resolved)'] ?? 0, JSON.stringify(r.stats)).to.be.greaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------
// the edge dimensions (test/torture/edges.ts, kill-edge.ts), one test each: which defect class each
// searches is in its title. On a library without the edge fixes of issue #10 these fail, by design.

const ALL_DIMS = Object.keys(DIMS) as Dim[];

/** `units` edge units that all have dimension `dim` (the others off), from the sample's seed. */
async function edgeSample(dim: Dim, units: number, manyMax = 1200): Promise<void> {
  const dimRate: Partial<Record<Dim, number>> = {};
  // the other workload dimensions off; names and segment sizes as drawn, except where the dimension needs them
  for (const d of ALL_DIMS) if (d !== 'longNames' && d !== 'smallSeg') dimRate[d] = d === dim ? 100 : 0;
  if (dim === 'many') Object.assign(dimRate, { longNames: 100, smallSeg: 100 });
  // the dimension under test is always drawn, whatever the seed
  if (dim === 'longNames' || dim === 'smallSeg') dimRate[dim] = 100;
  const found: Violation[] = [];
  let cases = 0;
  for (let i = 0; i < units; i++) {
    const r = await edgeUnit('powerloss', (SEED + i) >>> 0, { manyMax, states: 4, dimRate }, Infinity);
    expect(r.dims, 'the unit has the dimension').to.include(dim);
    cases += r.cases;
    found.push(...r.violations);
  }
  const lines = found.slice(0, 6).map((v) => `${v.detail.split('\n').slice(0, 4).join('\n    ')}\n    replay: ${replayLine(v)} --edge-rate 1 --dim-rate ${Object.entries(dimRate).map(([d, x]) => `${d}=${x}`).join(',')}`);
  expect(found.length, `${found.length} violation(s) in ${units} ${dim} units (seed ${SEED}):\n  ${lines.join('\n  ')}`).to.equal(0);
  expect(cases).to.be.greaterThan(0);
}

describe(`torture sample: edge dimensions (seed ${SEED})`, function () {
  this.timeout(120_000);

  it('many: 1,000+ entries open in one epoch (catalog past the record payload / a 64 KiB segment) are acknowledged and survive', async () => {
    await edgeSample('many', 2);
  });

  it('longNames: names of 200-255 bytes and paths near PATH_MAX survive; longer ones are refused at the call (EINVAL)', async () => {
    await edgeSample('longNames', 4);
  });

  it('odd names: lone surrogates EINVAL, NFC/NFD two files, 255 vs 256 bytes, trailing slash, .. and .cpfile tricks EPATH', async () => {
    await edgeSample('odd', 4);
  });

  it('big: writes/truncates past 16 TiB (the simulated ext4 limit) refused with EFBIG at the call; 2^40..16 TiB survive', async () => {
    await edgeSample('big', 4);
  });

  it('links: symlinks/hard links planted before open, before apply, before recovery: EPATH, nothing written outside, reopenable once removed', async () => {
    await edgeSample('links', 4);
  });

  it('readonly: r+ of an unwritable file refused (EACCES/EPERM) at the call; a chmod before apply leaves a reopenable store', async () => {
    await edgeSample('readonly', 4);
  });

  it('fdlimit: a low fd limit (EMFILE) with 1,000+ files in an epoch: bounded fds, reopenable under the same limit', async () => {
    await edgeSample('fdlimit', 3);
  });

  it('misuse: calls after f.close()/store.close() refused (EBADF/ECLOSED), offsets past buffers EINVAL, tell()/seek(end) in call order', async () => {
    await edgeSample('misuse', 4);
  });

  it('an edge unit replays byte for byte (same journal from the same seed)', async () => {
    const a = await edgeUnit('powerloss', SEED, { manyMax: 1000, states: 2, dimRate: {} });
    const b = await edgeUnit('powerloss', SEED, { manyMax: 1000, states: 2, dimRate: {} });
    expect(b.journalDigest).to.equal(a.journalDigest);
    expect(b.violations.map((v) => v.detail)).to.deep.equal(a.violations.map((v) => v.detail));
  });

  it('kill: a child under ulimit -n 128 writing 1,000+ open files per epoch, killed, recovered under the same limit: nothing acknowledged lost', async () => {
    const st = await runEdgeRounds(SEED, 1, 0, () => undefined);
    expect(st.ulimitRounds).to.equal(1);
    expect(st.violations.map((v) => v.detail.split('\n')[0]), `seed ${SEED}`).to.deep.equal([]);
  });

  it('kill: an owner SIGSTOPped past lockStale keeps its lock (the second opener gets ELOCKED); the same store via a symlink path is ELOCKED', async () => {
    const st = await runEdgeRounds(SEED, 0, 1, () => undefined);
    expect(st.takeoversAttempted).to.equal(1);
    expect(st.violations.map((v) => v.detail.split('\n')[0]), `seed ${SEED}`).to.deep.equal([]);
    expect(st.takeoversRefused).to.equal(1);
  });

  it('kill: real fs: a loop-mounted ext4 that fills up or turns read-only mid-workload, cause removed: an acknowledged epoch, nothing lost', async function () {
    const logs: string[] = [];
    const st = await realfsLane(SEED, 3, (l) => logs.push(l));
    if (st.byPlan['real fs: skipped (cannot mount)']) {
      console.log(`      SKIPPED (real file system): ${logs.join(' ')}`);
      this.skip();
    }
    expect(st.violations.map((v) => v.detail.split('\n')[0]), `seed ${SEED}`).to.deep.equal([]);
    expect(st.rounds).to.equal(3);
  });
});
