// Smoke test of the benchmark (npm run bench): every workload once, on every subject, at tiny sizes.
// It checks that the benchmark runs and reports; it asserts no timing.
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { parseArgs, quickConfig, type BenchConfig } from '../tools/bench/config.js';
import { renderReport } from '../tools/bench/report.js';
import { runBench, type BenchResult } from '../tools/bench/run.js';
import { parseSize, percentile, median } from '../tools/bench/util.js';
import { P9_SUBJECTS, renderP9, runP9 } from '../tools/bench/p9-postgres.js';
import { writeCharts } from '../tools/bench/charts.js';
import { LATENCY_QUANTILES } from '../tools/bench/workloads.js';

describe('bench: smoke run at tiny sizes', function () {
  this.timeout(120_000);
  let result: BenchResult;
  let report: string;

  before(async function () {
    const config: BenchConfig = {
      ...quickConfig(),
      verbose: false,
      reps: { P1: 1, P2: 1, P3: 1, P4: 1, P5: 1, P6: 1, P7: 0, P8: 1, P9: 1 },
      p1Commits: 10,
      p2Total: 2 * 1024 * 1024,
      p2Checkpoint: 512 * 1024,
      p3FileSize: 2 * 1024 * 1024,
      p3Writes: 300,
      p3PerCheckpoint: 100,
      p4Writes: 2000,
      p5Bytes: 1024 * 1024,
      p5Checkpoint: 256 * 1024,
      p6Bytes: 2 * 1024 * 1024,
      p8Files: 10,
    };
    result = await runBench(config);
    report = renderReport(result);
  });

  it('runs every workload on cpfile, raw fs and the peers', function () {
    expect(result.workloads.map((w) => w.id)).to.deep.equal(['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P8']);
    for (const w of result.workloads) {
      const ids = w.subjects.map((s) => s.id);
      expect(ids, w.id).to.include.members(['raw', 'cpfile', 'write-file-atomic', 'sqlite', 'leveldb', 'lmdb']);
      for (const s of w.subjects) {
        expect(s.errors, `${w.id} ${s.id}`).to.deep.equal([]);
        if (s.na) continue;
        expect(s.samples, `${w.id} ${s.id}`).to.have.length(1);
        const primary = s.samples[0]![w.metrics[0]!.key];
        expect(primary, `${w.id} ${s.id} ${w.metrics[0]!.key}`).to.be.a('number').and.satisfy(Number.isFinite);
      }
    }
  });

  it('measures the event-loop delay during P2 and the cpfile-only figures', function () {
    const p2 = result.workloads.find((w) => w.id === 'P2')!;
    const cp = p2.subjects.find((s) => s.id === 'cpfile')!;
    expect(cp.samples[0]).to.include.keys('mbps', 'mbpsApplied', 'elMax', 'elP99');
    const p5 = result.workloads.find((w) => w.id === 'P5')!.subjects.find((s) => s.id === 'cpfile')!;
    expect(p5.infos[0]).to.match(/^replayed 1\.0 MiB|^replayed 1 MiB/);
    const p6 = result.workloads.find((w) => w.id === 'P6')!.subjects.find((s) => s.id === 'cpfile')!;
    expect(p6.samples[0]!.peakMiB).to.be.greaterThan(0);
  });

  it('prints a Markdown report with the machine, every table and every target', function () {
    expect(report).to.include('### Machine');
    expect(report).to.match(/nproc \d+/);
    for (const id of ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8']) expect(report).to.include(`### ${id} `);
    expect(report).to.include('### Targets');
    const targetRows = report.split('\n').filter((l) => /^\| P\d \|/.test(l));
    expect(targetRows.length).to.be.at.least(13);
    for (const row of targetRows) expect(row).to.match(/\| (met|\*\*missed\*\*) \|$/);
    expect(report).to.match(/\| cpfile \| atomic \+ durable \| [\d.]+/);
    expect(report).to.include('÷ raw');
  });

  it("draws P1's latency distribution and P7's event-loop delay over P2 as SVG, one line per subject", async function () {
    const p1 = result.workloads.find((w) => w.id === 'P1')!;
    for (const s of p1.subjects.filter((x) => !x.na)) {
      expect(s.series[0]?.q, s.id).to.have.length(LATENCY_QUANTILES.length);
      expect([...s.series[0]!.q!].sort((a, b) => a - b), `${s.id}: percentiles in order`).to.deep.equal(s.series[0]!.q);
    }
    const p2 = result.workloads.find((w) => w.id === 'P2')!;
    for (const s of p2.subjects.filter((x) => !x.na)) expect(s.series[0]?.elT?.length, s.id).to.equal(s.series[0]?.elD?.length);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cpfile-charts-'));
    try {
      const files = await writeCharts(result, dir);
      expect(files.map((f) => path.basename(f))).to.deep.equal(['p1-latency.svg', 'p7-event-loop.svg']);
      const p1svg = await readFile(files[0]!, 'utf8');
      expect(p1svg).to.match(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/).and.match(/<\/svg>\n$/);
      const lines = (p1svg.match(/<path d="M/g) ?? []).length;
      expect(lines).to.equal(p1.subjects.filter((x) => !x.na).length);
      for (const s of p1.subjects.filter((x) => !x.na)) expect(p1svg, s.name).to.include(`>${s.name}</text>`);
      const p7svg = await readFile(files[1]!, 'utf8');
      expect(p7svg).to.include('max target 10 ms').and.include('>cpfile</text>');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves no temp dirs behind', async function () {
    expect(path.dirname(result.root)).to.equal(os.tmpdir());
    let gone = false;
    await access(result.root).catch(() => (gone = true));
    expect(gone, `${result.root} was not removed`).to.equal(true);
  });
});

describe('bench: helpers', function () {
  it('parses sizes, counts and flags', function () {
    expect(parseSize('64k')).to.equal(65536);
    expect(parseSize('1GiB')).to.equal(2 ** 30);
    expect(parseSize('256m')).to.equal(256 * 2 ** 20);
    expect(parseSize('100')).to.equal(100);
    const cli = parseArgs(['--quick', '--only', 'p1,P4', '--subjects', 'cpfile,raw', '--reps', '3', '--p4-writes', '1,000', '--out', 'x.md']);
    expect(cli.config.quick).to.equal(true);
    expect(cli.config.only).to.deep.equal(['P1', 'P4']);
    expect(cli.config.subjects).to.deep.equal(['cpfile', 'raw']);
    expect(cli.config.reps.P4).to.equal(3);
    expect(cli.config.p4Writes).to.equal(1000);
    expect(cli.out).to.equal('x.md');
    expect(() => parseArgs(['--bogus'])).to.throw(/unknown flag/);
  });

  it('computes medians and nearest-rank percentiles', function () {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 2, 3])).to.equal(2.5);
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 99)).to.equal(99);
    expect(percentile(xs, 50)).to.equal(50);
  });
});

describe('bench: P9 smoke run (files and a PostgreSQL row committed together)', function () {
  this.timeout(120_000);

  it('measures all four subjects on a private server and reports the target', async function () {
    const r = await runP9({ commits: 5, reps: 1 });
    if (r.skipped && !process.env.CI) this.skip();
    expect(r.skipped, r.skipped).to.equal(undefined);
    for (const s of P9_SUBJECTS) {
      expect(r.samples[s], s).to.have.length(5);
      for (const x of r.samples[s]) expect(x, s).to.be.a('number').and.satisfy(Number.isFinite).and.be.greaterThan(0);
    }
    expect(r.server).to.match(/PostgreSQL 1\d.* \(fsync on, synchronous_commit on\)/);
    const md = renderP9(r);
    expect(md).to.include('| cpfile+pg |').and.include('Target: cpfile+pg median at most row-alone + raw-fdatasync');
  });
});
