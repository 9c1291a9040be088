// require() from CommonJS (README "CommonJS"): child node processes run .cjs scripts that require
// dist/cjs, the CommonJS build, and run a store round trip through the worker-thread flusher (default
// options), the compat API, a crash and its recovery, and the errors of both builds side by side.
// Where this Node has the flag, the children run with --no-experimental-require-module: as on Node 20
// before 20.19, a require() of an ES module fails, so nothing here passes by loading the ES build.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CJS = path.join(ROOT, 'dist', 'cjs');
const NO_REQUIRE_ESM = process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module')
  ? ['--no-experimental-require-module'] : [];

/** Run `script` (CommonJS source) in a child node; its last stdout line is JSON. */
async function child(script: string, args: string[], cwd: string): Promise<Record<string, unknown>> {
  const file = path.join(cwd, `script-${Math.random().toString(36).slice(2)}.cjs`);
  fs.writeFileSync(file, script);
  try {
    const { stdout } = await run(process.execPath, [...NO_REQUIRE_ESM, file, ...args], { cwd, timeout: 120_000, encoding: 'utf8' });
    return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  } catch (e) {
    const x = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`child failed: ${x.message}\nstdout: ${x.stdout ?? ''}\nstderr: ${x.stderr ?? ''}`);
  }
}

/** The prelude every script shares: the CommonJS entry points by path, and what loaded them. */
const PRELUDE = `
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const cpfile = require(${JSON.stringify(path.join(CJS, 'index.js'))});
const compat = require(${JSON.stringify(path.join(CJS, 'compat.js'))});
const { openStore, CpError } = cpfile;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const fail = (e) => { process.stderr.write(String(e && e.stack || e) + '\\n'); process.exit(1); };
const cjsModules = () => Object.keys(require.cache).filter((f) => f.startsWith(${JSON.stringify(CJS + path.sep)})).length;
`;

const ROUND_TRIP = PRELUDE + `
(async () => {
  const dir = process.argv[2];
  // The flusher's thread, as the diagnostic report lists worker threads: none before, one while open.
  const workers = () => process.report.getReport().workers.length;
  const before = workers();
  const store = await openStore(dir);
  const whileOpen = workers();
  const a = await store.open('ledger.log', 'a+');
  const b = await store.open('index.json', 'w+');
  await a.write('deposit 100\\n');
  await b.write(JSON.stringify({ balance: 100 }));
  const epoch = await store.check();
  await a.write('withdraw 30\\n');
  const buf = Buffer.alloc(64);
  const { bytesRead } = await a.read(buf, 0, 64, 0);
  const pending = buf.subarray(0, bytesRead).toString();
  const epoch2 = await store.check();
  let ebadf = null;
  await b.close();
  try { await b.write('x'); } catch (e) { ebadf = { code: e.code, cpError: e instanceof CpError }; }
  await a.close();
  await store.close();
  const flusher = { before, whileOpen, afterClose: workers() };

  const again = await openStore(dir);
  const text = (await again.readFile('ledger.log')).toString();
  const index = (await again.readFile('index.json')).toString();
  const reopened = again.epoch;
  await again.close();
  out({ flusher, epoch, epoch2, pending, ebadf, text, index, reopened, onDisk: fs.readFileSync(path.join(dir, 'ledger.log'), 'utf8'), cjsModules: cjsModules() });
})().catch(fail);
`;

const COMPAT = PRELUDE + `
(async () => {
  // compat's default store is the current directory
  const f = await compat.cp_open('seed.dat', 'w+');
  const written = await compat.cp_write(f, Buffer.from('abcdef'), 1, 6);
  const checked = await compat.cp_check(f);
  const closed = await compat.cp_close(f);
  const g = await compat.cp_open('seed.dat', 'r');
  const buf = Buffer.alloc(6);
  const read = await compat.cp_read(g, buf, 1, 6);
  await compat.cp_close(g);
  const missing = await compat.cp_open('../outside', 'r');
  const err = compat.cp_error();
  out({ written, checked, closed, read, text: buf.toString(), missing, errCode: err && err.code, errIsCpError: err instanceof CpError });
})().catch(fail);
`;

// Writes and checks epoch 1, writes more, and exits without closing: a crash after a check.
const CRASH = PRELUDE + `
(async () => {
  const store = await openStore(process.argv[2]);
  const f = await store.open('log', 'w');
  await f.write('checked\\n');
  await store.check();
  await f.write('never checked\\n');
  await new Promise((r) => setTimeout(r, 50));
  out({ exiting: true });
  process.exit(0);
})().catch(fail);
`;

const RECOVER = PRELUDE + `
(async () => {
  const store = await openStore(process.argv[2]);
  const f = await store.open('log', 'r+');
  const buf = Buffer.alloc(64);
  const { bytesRead } = await f.read(buf, 0, 64, 0);
  const out1 = { epoch: store.epoch, resumed: f.resumed, tell: f.tell(), text: buf.subarray(0, bytesRead).toString() };
  await f.close();
  await store.close();
  out(out1);
})().catch(fail);
`;

// Both builds in one process: the dual-package hazard README "CommonJS" documents.
const BOTH = PRELUDE + `
(async () => {
  const esm = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist', 'lib', 'index.js')).href)});
  const errorOf = async (openStore, dir) => {
    const s = await openStore(dir);
    try { await s.open('../escape', 'r'); return null; } catch (e) { return e; } finally { await s.close(); }
  };
  const fromCjs = await errorOf(openStore, process.argv[2] + '/cjs');
  const fromEsm = await errorOf(esm.openStore, process.argv[2] + '/esm');
  // A CpError from the ES build that reaches the CommonJS build's code keeps its code (not EIO).
  const { ioError } = require(${JSON.stringify(path.join(CJS, 'errors.js'))});
  const passed = ioError(new esm.CpError('EBUSY', 'from the other build'), 'cpfile');
  // One store, one owner: open through the ES build, the CommonJS build is refused, then may open it.
  const shared = process.argv[2] + '/shared';
  const first = await esm.openStore(shared);
  const second = await openStore(shared).then((s) => s.close().then(() => 'opened twice'), (e) => e.code);
  await first.close();
  const third = await openStore(shared);
  const reopenedEpoch = third.epoch;
  await third.close();
  out({
    sameClass: esm.CpError === CpError,
    codes: [fromCjs.code, fromEsm.code],
    names: [fromCjs.name, fromEsm.name],
    cjsErrorIsEsm: fromCjs instanceof esm.CpError, esmErrorIsCjs: fromEsm instanceof CpError,
    bothAreErrors: fromCjs instanceof Error && fromEsm instanceof Error,
    plainIsNot: new Error('x') instanceof CpError || ({ code: 'EIO' }) instanceof esm.CpError,
    passedCode: passed.code, passedSame: passed.message === 'from the other build',
    second, reopenedEpoch,
  });
})().catch(fail);
`;

describe('CommonJS: require() of the dist/cjs build', function () {
  this.timeout(180_000);
  this.slow(10_000);
  let work = '';

  before(function () {
    for (const f of ['index.js', 'compat.js', 'index.d.ts', 'package.json']) {
      if (!fs.existsSync(path.join(CJS, f))) throw new Error(`dist/cjs/${f} is missing: npm run build makes both builds`);
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cpfile-commonjs-test-'));
  });

  after(function () {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('dist/cjs is a CommonJS scope, and package.json maps require to it with its own types', function () {
    expect(JSON.parse(fs.readFileSync(path.join(CJS, 'package.json'), 'utf8'))).to.deep.equal({ type: 'commonjs' });
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, Record<string, string>>> };
    for (const [sub, file] of [['.', 'index'], ['./compat', 'compat']] as const) {
      expect(pkg.exports[sub]!.require).to.deep.equal({ types: `./dist/cjs/${file}.d.ts`, default: `./dist/cjs/${file}.js` });
      expect(pkg.exports[sub]!.import).to.deep.equal({ types: `./dist/lib/${file}.d.ts`, default: `./dist/lib/${file}.js` });
    }
    // The package's own name resolves through those conditions (a self-reference: this file is inside it).
    const req = createRequire(import.meta.url);
    expect(req.resolve('cpfile')).to.equal(path.join(CJS, 'index.js'));
    expect(req.resolve('cpfile/compat')).to.equal(path.join(CJS, 'compat.js'));
  });

  it('opens, writes, checks, closes, reopens and reads through the worker flusher', async function () {
    const dir = path.join(work, 'round-trip');
    const r = await child(ROUND_TRIP, [dir], work);
    expect(r.flusher).to.deep.equal({ before: 0, whileOpen: 1, afterClose: 0 });
    expect(r.epoch).to.equal(1);
    expect(r.epoch2).to.equal(2);
    expect(r.pending).to.equal('deposit 100\nwithdraw 30\n');
    expect(r.ebadf).to.deep.equal({ code: 'EBADF', cpError: true });
    expect(r.text).to.equal('deposit 100\nwithdraw 30\n');
    expect(r.index).to.equal('{"balance":100}');
    expect(r.reopened).to.be.at.least(2);
    expect(r.onDisk).to.equal('deposit 100\nwithdraw 30\n');
    expect(r.cjsModules).to.be.greaterThan(10);
  });

  it('runs the compat API from require("cpfile/compat")', async function () {
    const cwd = path.join(work, 'compat');
    fs.mkdirSync(cwd);
    const r = await child(COMPAT, [], cwd);
    expect(r).to.deep.equal({ written: 6, checked: 0, closed: 0, read: 6, text: 'abcdef', missing: null, errCode: 'EPATH', errIsCpError: true });
  });

  it('recovers the last checked epoch after a crash of a CommonJS writer', async function () {
    const dir = path.join(work, 'crash');
    expect(await child(CRASH, [dir], work)).to.deep.equal({ exiting: true });
    const r = await child(RECOVER, [dir], work);
    expect(r).to.deep.equal({ epoch: 1, resumed: true, tell: 8, text: 'checked\n' });
  });

  it('with both builds loaded, errors of each are instanceof either CpError and keep their codes, and a store has one owner', async function () {
    const dir = path.join(work, 'both');
    fs.mkdirSync(dir);
    const r = await child(BOTH, [dir], work);
    expect(r).to.deep.equal({
      sameClass: false, codes: ['EPATH', 'EPATH'], names: ['CpError', 'CpError'],
      cjsErrorIsEsm: true, esmErrorIsCjs: true, bothAreErrors: true, plainIsNot: false,
      passedCode: 'EBUSY', passedSame: true, second: 'ELOCKED', reopenedEpoch: 1,
    });
  });
});
