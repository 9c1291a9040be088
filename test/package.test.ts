// What a user's `npm install cpfile` gets. Packs this checkout's dist/ with `npm pack` (scripts off, so
// nothing rebuilds: the pretest build made dist/), installs the tarball into a fresh empty project with
// only the production dependencies, offline from the npm cache that `npm ci` filled, and there, in
// child node processes: loads every shipped module by its file path, imports 'cpfile' and
// 'cpfile/compat' and 'cpfile/postgres' by name (the last without pg installed: pg is an optional peer),
// runs `cp-recover --help`, and opens, writes, checks and closes a store; the same from CommonJS
// (require() of the names, with require(esm) off where Node has the flag), and type-checks a .cts
// and a .mts that import the names with this checkout's typescript.
// Also holds the tarball to package.json's `files`: the library, the worker and cp-recover, never the
// tests, the torture suite or the benchmark, whose imports (test code, devDependencies) a user lacks.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
};

/** As on Node 20 before 20.19: a require() of an ES module fails (where this Node has the flag). */
const NO_REQUIRE_ESM = process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module')
  ? ['--no-experimental-require-module'] : [];

/** The only build outputs outside dist/lib, dist/cjs and dist/workers that may ship: cp-recover and its modules. */
const SHIPPED_TOOLS = /^dist\/tools\/cp-recover(-[a-z]+)?\.(js|js\.map|d\.ts)$/;

/** The environment of `npm test`, minus what would point a child npm back at this checkout. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package_|lifecycle_|command$|config_local_prefix$)/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

async function sh(file: string, args: string[], cwd: string, timeout = 180_000): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(file, args, { cwd, env: childEnv(), timeout, maxBuffer: 64 << 20, encoding: 'utf8' });
  } catch (e) {
    const x = e as Error & { stdout?: string; stderr?: string; code?: unknown };
    throw new Error(`${file} ${args.join(' ')} (in ${cwd}) failed, exit ${String(x.code)}: ${x.message}\n` +
      `stdout: ${x.stdout ?? ''}\nstderr: ${x.stderr ?? ''}`);
  }
}

function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else out.push(path.relative(base, p).split(path.sep).join('/'));
  }
  return out.sort();
}

/** Every module specifier a built file names literally (import/export from, import(), require()). */
function specifiers(src: string): string[] {
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"\n]+)['"]/gm;
  return [...src.matchAll(re)].map((m) => m[1]!);
}

// Run in the fresh project: load every shipped module by path and both entry points by name, and
// print one JSON line with what failed.
const LOAD_ALL = `
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
const pkg = path.resolve('node_modules/cpfile');
const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
const files = walk(path.join(pkg, 'dist')).filter((f) => /\\.c?js$/.test(f)).sort();
const loaded = [], failed = [];
for (const f of [...files, 'cpfile', 'cpfile/compat', 'cpfile/postgres']) {
  const spec = f.startsWith('/') ? pathToFileURL(f).href : f;
  const name = f.startsWith('/') ? path.relative(pkg, f) : f;
  try { await import(spec); loaded.push(name); } catch (e) { failed.push({ name, error: String(e && e.stack || e) }); }
}
const root = await import('cpfile'), compat = await import('cpfile/compat'), postgres = await import('cpfile/postgres');
let pgInstalled = true;
try { await import('pg'); } catch { pgInstalled = false; }
process.stdout.write(JSON.stringify({ loaded, failed, rootExports: Object.keys(root).sort(), compatExports: Object.keys(compat).length,
  postgresExports: Object.keys(postgres).sort(), pgInstalled }) + '\\n');
process.exit(0);
`;

// Run in the fresh project: the README's first steps, through the installed package and its worker.
const ROUND_TRIP = `
import * as fs from 'node:fs';
import { openStore } from 'cpfile';
const dir = process.argv[2];
const store = await openStore(dir);
const f = await store.open('ledger.log', 'a+');
await f.write('deposit 100\\n');
const epoch = await store.check();
await f.close();
await store.close();
process.stdout.write(JSON.stringify({ epoch, text: fs.readFileSync(dir + '/ledger.log', 'utf8') }) + '\\n');
`;

// The same from CommonJS: require() of every module of the CommonJS build and of both names, then
// a store round trip through the worker flusher and the compat API.
const REQUIRE_ALL = `
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const pkg = path.resolve('node_modules/cpfile');
const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
const files = walk(path.join(pkg, 'dist', 'cjs')).filter((f) => /\\.c?js$/.test(f)).sort();
const loaded = [], failed = [];
for (const f of [...files, 'cpfile', 'cpfile/compat', 'cpfile/postgres']) {
  const name = f.startsWith('/') ? path.relative(pkg, f) : f;
  try { require(f); loaded.push(name); } catch (e) { failed.push({ name, error: String(e && e.stack || e) }); }
}
const root = require('cpfile'), compat = require('cpfile/compat'), postgres = require('cpfile/postgres');
process.stdout.write(JSON.stringify({ loaded, failed, rootExports: Object.keys(root).sort(), compatExports: Object.keys(compat).length,
  postgresExports: Object.keys(postgres).sort(),
  resolved: [require.resolve('cpfile'), require.resolve('cpfile/compat'), require.resolve('cpfile/postgres')].map((f) => path.relative(pkg, f)) }) + '\\n');
`;

const ROUND_TRIP_CJS = `
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { openStore, CpError } = require('cpfile');
const compat = require('cpfile/compat');
(async () => {
  const dir = process.argv[2];
  const store = await openStore(dir);
  const f = await store.open('ledger.log', 'a+');
  await f.write('deposit 100\\n');
  const epoch = await store.check();
  let code = null;
  try { await store.open('../outside', 'r'); } catch (e) { code = e instanceof CpError ? e.code : 'not a CpError'; }
  await f.close();
  await store.close();
  process.chdir(dir);   // compat's default store is the current directory
  const c = await compat.cp_open('seed.dat', 'w');
  const written = await compat.cp_write(c, Buffer.from('abc'), 1, 3);
  const closed = await compat.cp_close(c);
  process.stdout.write(JSON.stringify({ epoch, code, written, closed, text: fs.readFileSync('ledger.log', 'utf8'), seed: fs.readFileSync('seed.dat', 'utf8') }) + '\\n');
})().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\\n'); process.exit(1); });
`;

// Types for both conditions: a .cts (require, so dist/cjs's declarations) and a .mts (import, dist/lib's).
// A call with a wrong argument must be an error in each: types that resolved to nothing (any) fail here.
const TYPES_CTS = `
import cpfile = require('cpfile');
import compat = require('cpfile/compat');
import postgres = require('cpfile/postgres');
export async function main(dir: string, pool: Parameters<typeof postgres.postgresCoordinator>[0]): Promise<number> {
  const store: cpfile.Store = await cpfile.openStore(dir, { sync: true });
  const f: cpfile.CpFile = await store.open('a', 'w+');
  const code: cpfile.CpErrorCode = new cpfile.CpError('EIO', 'x').code;
  const c: compat.CP_FILE | null = await compat.cp_open('b', 'r');
  // @ts-expect-error: a name is a string
  await store.open(42);
  // @ts-expect-error: cp_read takes a buffer, a size and a count
  await compat.cp_read(c!, 'no');
  const coord: postgres.PostgresCoordinator = postgres.postgresCoordinator(pool, { schema: 's' });
  // @ts-expect-error: a step takes an array of stores
  await coord.check(store, async () => 1);
  const epochs: number[] = await coord.check([store], async () => undefined);
  await f.close();
  return code.length + (await store.check()) + epochs.length;
}
`;
// Older TypeScript setups (moduleResolution node10, which ignores exports): `types` and typesVersions.
const TYPES_NODE10 = TYPES_CTS.replace(/^/, '// compiled with --module commonjs --moduleResolution node10\n');
const TYPES_MTS = TYPES_CTS
  .replace("import cpfile = require('cpfile');", "import * as cpfile from 'cpfile';")
  .replace("import compat = require('cpfile/compat');", "import * as compat from 'cpfile/compat';")
  .replace("import postgres = require('cpfile/postgres');", "import * as postgres from 'cpfile/postgres';");

describe('the npm package', function () {
  this.timeout(600_000);
  this.slow(60_000);

  let work = '';
  let tarball = '';
  let packed: string[] = [];
  let project = '';
  let installed = '';

  before(async function () {
    for (const f of ['dist/lib/index.js', 'dist/workers/flusher-entry.cjs', PKG.bin['cp-recover']!]) {
      if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: build first (npm test runs the build as pretest)`);
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cpfile-package-test-'));
    const packDir = path.join(work, 'pack');
    project = path.join(work, 'project');
    fs.mkdirSync(packDir);
    fs.mkdirSync(project);

    // --ignore-scripts: no prepack/prepare rebuild, the tarball holds exactly this checkout's dist/.
    const { stdout } = await sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], ROOT);
    const info = JSON.parse(stdout) as { filename: string; files: { path: string }[]; size: number; unpackedSize: number }[];
    expect(info).to.have.length(1);
    tarball = path.join(packDir, path.basename(info[0]!.filename));
    packed = info[0]!.files.map((f) => f.path).sort();
    console.log(`      packed ${packed.length} files, ${info[0]!.size} bytes (${info[0]!.unpackedSize} unpacked)`);

    fs.writeFileSync(path.join(project, 'package.json'),
      JSON.stringify({ name: 'cpfile-install-probe', version: '0.0.0', private: true, type: 'module' }, null, 2) + '\n');
    const install = ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-save'];
    try {
      await sh('npm', [...install, '--offline', tarball], project);
    } catch (e) {
      if (!/ENOTCACHED/.test(String(e))) throw e;
      console.log('      NOTE: `npm install --offline` failed for lack of cache; installing with --prefer-offline instead');
      await sh('npm', [...install, '--prefer-offline', tarball], project);
    }
    installed = path.join(project, 'node_modules', PKG.name);
  });

  after(function () {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('ships the library, the worker and cp-recover, and no test, torture or benchmark code', function () {
    expect(packed).to.include.members(['package.json', 'README.md', 'docs/FORMAT.md', 'dist/lib/index.js',
      'dist/lib/compat.js', 'dist/workers/flusher.js', 'dist/workers/flusher-entry.cjs', 'dist/tools/cp-recover.js',
      'dist/tools/cp-recover-errors.js', 'dist/tools/cp-recover-help.js', 'dist/tools/cp-recover-output.js',
      'dist/cjs/package.json', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/compat.js', 'dist/cjs/compat.d.ts']);
    const strays = packed.filter((f) => (f.startsWith('dist/test/') || f.startsWith('dist/tools/')) && !SHIPPED_TOOLS.test(f));
    expect(strays, `build outputs that must not ship: ${strays.join(', ')}`).to.deep.equal([]);
    const outside = packed.filter((f) => f.startsWith('dist/') && !/^dist\/(lib|cjs|workers|tools)\//.test(f));
    expect(outside, `unexpected dist/ folders: ${outside.join(', ')}`).to.deep.equal([]);
    // What was installed is what was packed.
    expect(walk(installed).filter((f) => f !== 'package.json')).to.deep.equal(packed.filter((f) => f !== 'package.json'));
  });

  it('ships no stale build output: every shipped module has its source in this checkout', function () {
    const stale = packed.filter((f) => /^dist\/.*\.c?js$/.test(f)).filter((f) => {
      // dist/cjs is the CommonJS build of lib/ (tsconfig.cjs.json: rootDir lib)
      const src = f.slice('dist/'.length).replace(/^cjs\//, 'lib/').replace(/\.js$/, '.ts').replace(/\.cjs$/, '.cts');
      return !fs.existsSync(path.join(ROOT, src));
    });
    expect(stale, `left in dist/ by an earlier build (npm run clean): ${stale.join(', ')}`).to.deep.equal([]);
  });

  it('names in every shipped module only node built-ins, production dependencies and shipped files', function () {
    const builtins = new Set(builtinModules);
    const deps = Object.keys(PKG.dependencies ?? {});
    const shipped = new Set(packed);
    const bad: string[] = [];
    for (const f of packed.filter((p) => /\.c?js$/.test(p))) {
      for (const s of specifiers(fs.readFileSync(path.join(installed, f), 'utf8'))) {
        if (s.startsWith('node:') || builtins.has(s)) continue;
        if (s.startsWith('.')) {
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), s));
          if (!shipped.has(target)) bad.push(`${f}: ${s} (not shipped)`);
          continue;
        }
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
        if (name !== PKG.name && !deps.includes(name)) bad.push(`${f}: ${s} (not a production dependency)`);
      }
    }
    expect(bad, bad.join('\n')).to.deep.equal([]);
  });

  it('loads every shipped module, and cpfile, cpfile/compat and cpfile/postgres (without pg) by name, with only production dependencies', async function () {
    fs.writeFileSync(path.join(project, 'load-all.mjs'), LOAD_ALL);
    const { stdout } = await sh(process.execPath, ['load-all.mjs'], project, 120_000);
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { loaded: string[]; failed: { name: string; error: string }[]; rootExports: string[]; compatExports: number; postgresExports: string[]; pgInstalled: boolean };
    expect(r.failed, r.failed.map((x) => `${x.name}: ${x.error}`).join('\n')).to.deep.equal([]);
    const modules = packed.filter((f) => /^dist\/.*\.c?js$/.test(f));
    expect(r.loaded).to.include.members([...modules, 'cpfile', 'cpfile/compat', 'cpfile/postgres']);
    expect(r.rootExports).to.include.members(['openStore', 'CpError']);
    expect(r.compatExports).to.be.greaterThan(0);
    // cpfile/postgres loads without pg (an optional peer: the app passes its own pool)
    expect(r.pgInstalled, 'pg is not a production dependency').to.equal(false);
    expect(r.postgresExports).to.include.members(['postgresCoordinator', 'postgresHooks']);
  });

  it('requires every module of the CommonJS build, and cpfile, cpfile/compat and cpfile/postgres by name, from CommonJS', async function () {
    fs.writeFileSync(path.join(project, 'require-all.cjs'), REQUIRE_ALL);
    const { stdout } = await sh(process.execPath, [...NO_REQUIRE_ESM, 'require-all.cjs'], project, 120_000);
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { loaded: string[]; failed: { name: string; error: string }[]; rootExports: string[]; compatExports: number; postgresExports: string[]; resolved: string[] };
    expect(r.failed, r.failed.map((x) => `${x.name}: ${x.error}`).join('\n')).to.deep.equal([]);
    const modules = packed.filter((f) => /^dist\/cjs\/.*\.c?js$/.test(f));
    expect(modules.length).to.be.greaterThan(10);
    expect(r.loaded).to.include.members([...modules, 'cpfile', 'cpfile/compat', 'cpfile/postgres']);
    expect(r.resolved).to.deep.equal(['dist/cjs/index.js', 'dist/cjs/compat.js', 'dist/cjs/postgres/index.js']);
    expect(r.postgresExports).to.include.members(['postgresCoordinator', 'postgresHooks']);
    expect(r.rootExports).to.include.members(['openStore', 'CpError']);
    expect(r.compatExports).to.be.greaterThan(0);
  });

  it('opens a store, writes, checks and closes it from a .cjs script through require()', async function () {
    fs.writeFileSync(path.join(project, 'round-trip.cjs'), ROUND_TRIP_CJS);
    const dir = path.join(work, 'store-cjs');
    const { stdout } = await sh(process.execPath, [...NO_REQUIRE_ESM, 'round-trip.cjs', dir], project, 120_000);
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).to.deep.equal({
      epoch: 1, code: 'EPATH', written: 3, closed: 0, text: 'deposit 100\n', seed: 'abc',
    });
  });

  it('types the names for require (a .cts) and import (a .mts), and under node10 resolution, checked by this checkout\'s typescript', async function () {
    fs.writeFileSync(path.join(project, 'types.cts'), TYPES_CTS);
    fs.writeFileSync(path.join(project, 'types.mts'), TYPES_MTS);
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const { stdout } = await sh(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--listFiles',
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
      '--typeRoots', path.join(ROOT, 'node_modules', '@types'), '--types', 'node',
      'types.cts', 'types.mts'], project, 120_000);
    const listed = stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(installed + path.sep)).map((l) => path.relative(installed, l));
    // the .cts got the CommonJS build's declarations, the .mts the ES build's
    expect(listed).to.include.members(['dist/cjs/index.d.ts', 'dist/cjs/compat.d.ts', 'dist/lib/index.d.ts', 'dist/lib/compat.d.ts',
      'dist/cjs/postgres/index.d.ts', 'dist/lib/postgres/index.d.ts']);
    // moduleResolution node10 ignores exports: `types` and typesVersions lead it to the CommonJS declarations
    fs.writeFileSync(path.join(project, 'types-node10.ts'), TYPES_NODE10);
    const old = await sh(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--listFiles',
      '--module', 'commonjs', '--moduleResolution', 'node10', '--target', 'es2022',
      '--typeRoots', path.join(ROOT, 'node_modules', '@types'), '--types', 'node', 'types-node10.ts'], project, 120_000);
    const listed10 = old.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(installed + path.sep)).map((l) => path.relative(installed, l));
    expect(listed10).to.include.members(['dist/cjs/index.d.ts', 'dist/cjs/compat.d.ts', 'dist/cjs/postgres/index.d.ts']);
    expect(listed10.filter((f) => f.startsWith('dist/lib/'))).to.deep.equal([]);
  });

  it('installs cp-recover on the PATH of the project, and `cp-recover --help` exits 0', async function () {
    const { stdout } = await sh(path.join(project, 'node_modules', '.bin', 'cp-recover'), ['--help'], project, 60_000);
    expect(stdout).to.match(/cp-recover/);
    expect(stdout).to.match(/--dry-run/);
  });

  it('opens a store, writes, checks and closes it through the installed package', async function () {
    fs.writeFileSync(path.join(project, 'round-trip.mjs'), ROUND_TRIP);
    const dir = path.join(work, 'store');
    const { stdout } = await sh(process.execPath, ['round-trip.mjs', dir], project, 120_000);
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { epoch: unknown; text: string };
    expect(r.text).to.equal('deposit 100\n');
    expect(r.epoch).to.equal(1);
  });
});
