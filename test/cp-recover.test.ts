// cp-recover, the operator's tool, run as a real child process against stores left behind by
// SIGKILLed writers and against journals damaged by hand: exit codes, text and JSON output, the
// files it leaves, and that the read-only modes change nothing at all in the store.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { openStore, nodeIO } from '../lib/index.js';
import { recover } from '../lib/recovery/index.js';
import { shellWord } from '../lib/recovery/inspect.js';
import {
  FORMAT_VERSION,
  CONTROL_SLOT_SIZE, RECORD_HEADER_SIZE, RecordType, SEGMENT_HEADER_AREA, SEGMENT_HEADER_SIZE, checkRecordHeader,
  decodeControlSlot, decodeSegmentHeader, encodeControlSlot, encodeRecord, readRecordHeader, recordCrcOk, recordSize, type RecordHeader,
} from '../lib/format.js';
import { crc32 } from '../lib/crc.js';

const CLI = fileURLToPath(new URL('../tools/cp-recover.js', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures-recover/writer.js', import.meta.url));
const PREPARER = fileURLToPath(new URL('./fixtures-recover/preparer.js', import.meta.url));
const PREPARER_DIRECT = fileURLToPath(new URL('./fixtures-recover/preparer-direct.js', import.meta.url));
const PKG = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function cli(args: string[], opts: SpawnSyncOptions = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20000, ...opts });
  if (r.error) throw r.error;
  return { code: r.status, out: String(r.stdout), err: String(r.stderr) };
}

function cliJson(args: string[], opts: SpawnSyncOptions = {}): Run & { json: any } {
  const r = cli([...args, '--json'], opts);
  let json: any;
  try {
    json = JSON.parse(r.out);
  } catch (e) {
    throw new Error(`not JSON (exit ${r.code}): ${r.out}\nstderr: ${r.err}`);
  }
  return { ...r, json };
}

/** A one-line error message on stderr, no stack trace. */
function expectOneLine(r: Run, re: RegExp): void {
  const lines = r.err.trimEnd().split('\n');
  expect(lines, r.err).to.have.length(1);
  expect(lines[0]).to.match(/^cp-recover: /);
  expect(lines[0]).to.match(re);
  expect(r.err).not.to.match(/\n\s+at /);
}

const temps: string[] = [];
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-recover-test-'));
  temps.push(d);
  return d;
}

/** Every entry of the tree: name, type, permission bits, size and content hash (no times). */
function treeState(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.push(`d ${r} ${mode}`);
        walk(full, r);
      } else if (st.isSymbolicLink()) {
        out.push(`l ${r} -> ${fs.readlinkSync(full)}`);
      } else {
        out.push(`f ${r} ${mode} ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex')}`);
      }
    }
  };
  walk(dir, '');
  return out;
}

/** name -> hex of every user file (the metadata directory excluded). */
function userFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!rel && e.name === '.cpfile') continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out[r] = fs.readFileSync(path.join(d, e.name)).toString('hex');
    }
  };
  walk(dir, '');
  return out;
}

// ---------------------------------------------------------------------------------------------
// locating records with lib/format.ts

interface Located {
  file: string;
  offset: number;
  size: number;
  header: RecordHeader;
}

function liveSegment(dir: string): { file: string; salt: number; size: number } {
  const ctl = fs.readFileSync(path.join(dir, '.cpfile', 'control'));
  const slots = [decodeControlSlot(ctl.subarray(0, CONTROL_SLOT_SIZE)), decodeControlSlot(ctl.subarray(CONTROL_SLOT_SIZE))];
  let cursorSeq = -1;
  let counter = -1;
  for (const s of slots) if (s.ok && s.state.counter > counter) ({ counter, cursorSeq } = s.state);
  const jdir = path.join(dir, '.cpfile', 'journal');
  for (const name of fs.readdirSync(jdir)) {
    const file = path.join(jdir, name);
    const h = decodeSegmentHeader(fs.readFileSync(file).subarray(0, SEGMENT_HEADER_SIZE));
    if (h.ok && h.header.seq === cursorSeq) return { file, salt: h.header.salt, size: h.header.size };
  }
  throw new Error(`no segment with seq ${cursorSeq}`);
}

/** The valid records of the cursor's segment, from offset 4096 (the test stores fit in one segment). */
function locate(dir: string): Located[] {
  const seg = liveSegment(dir);
  const b = fs.readFileSync(seg.file);
  const out: Located[] = [];
  for (let off = SEGMENT_HEADER_AREA; off + RECORD_HEADER_SIZE <= seg.size;) {
    const h = readRecordHeader(b, off);
    if (checkRecordHeader(h, seg.salt, seg.size - off, b, off) !== 'ok' || !recordCrcOk(b, off, h.len, off)) break;
    out.push({ file: seg.file, offset: off, size: recordSize(h.len), header: h });
    if (h.type === RecordType.SEGEND) break;
    off += recordSize(h.len);
  }
  return out;
}

function patchFile(file: string, at: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, at);
  } finally {
    fs.closeSync(fd);
  }
}

function flipBit(file: string, at: number): void {
  const b = Buffer.alloc(1);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0x04;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// writer children

interface Ready {
  pid: number;
  epochs: Record<string, Record<string, string>>;
}

/** A store left with an epoch in doubt (fixtures-recover/preparer.ts): the files at each epoch, the prepared one's too. */
interface Prepared extends Ready {
  prepared: { id: string; epoch: number };
}

function startWriter<R = Ready>(dir: string, script = WRITER, args: string[] = []): Promise<{ child: ChildProcess; ready: R }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer not ready: ${err}`));
    }, 15000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (.*)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, ready: JSON.parse(m[1]!) as R });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`writer exited early (code ${code}, signal ${sig}): ${err}`));
    });
  });
}

async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await gone;
}

const hex = (s: string): string => Buffer.from(s).toString('hex');

describe('cp-recover', function () {
  this.timeout(30000);

  let template: string; // a store left behind by a SIGKILLed writer; copied for every test
  let ready: Ready;
  const copy = (): string => {
    const d = tempDir();
    fs.cpSync(template, d, { recursive: true });
    return d;
  };

  before(async () => {
    template = tempDir();
    const w = await startWriter(template);
    ready = w.ready;
    await kill9(w.child);
  });

  after(() => {
    for (const d of temps) {
      try {
        fs.chmodSync(d, 0o700);
      } catch {
        // already gone
      }
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  describe('arguments', () => {
    it('--help documents the modes, exit codes and JSON keys; --version prints the package version', () => {
      const h = cli(['--help']);
      expect(h.code).to.equal(0);
      for (const s of ['--dry-run', '--verify', '--inspect', '--force', '--json', '--from', '--limit', 'Exit codes:', 'locked by a live process', 'needs --force', 'replayedEpochs', 'lostFrom',
        '--commit-prepared <id>', '--abort-prepared <id>', '5  an epoch is in doubt', '6  --commit-prepared/--abort-prepared', 'EINDOUBT', 'ENOTINDOUBT', 'inDoubt (null or { id, epoch,']) {
        expect(h.out).to.contain(s);
      }
      const v = cli(['--version']);
      expect(v.code).to.equal(0);
      expect(v.out.trim()).to.equal(PKG.version);
    });

    it('usage errors exit 2 with one line', () => {
      const d = copy();
      const cases: string[][] = [[], ['--dry-run', '--inspect', d], ['--verify', '--force', d], ['--inspect', '--from', '-1', d],
        ['--inspect', '--limit', 'x', d], ['--from', '3', d], ['--bogus', d], [d, d], [''],
        ['--commit-prepared', 'a', '--abort-prepared', 'a', d], ['--verify', '--commit-prepared', 'a', d], ['--inspect', '--abort-prepared', 'a', d],
        ['--commit-prepared', '', d], ['--abort-prepared', 'x\ty', d], ['--commit-prepared', 'x'.repeat(256), d], ['--commit-prepared']];
      for (const args of cases) {
        const r = cli(args);
        expect(r.code, args.join(' ')).to.equal(2);
        expect(r.err, args.join(' ')).to.match(/^cp-recover: .*\ntry 'cp-recover --help' for usage\n$/);
      }
      const j = cliJson(['--verify', '--force', d]);
      expect(j.code).to.equal(2);
      expect(j.json).to.include({ ok: false, exitCode: 2 });
      expect(j.json.error.code).to.equal('EUSAGE');
      const empty = cliJson(['']);
      expect(empty.code).to.equal(2);
      expect(empty.json).to.include({ ok: false, exitCode: 2 });
      expect(empty.json.error.code).to.equal('EUSAGE');
    });
  });

  describe('bad input', () => {
    it('a path that does not exist, a file, a directory that is not a store: exit 1, one line', () => {
      const base = tempDir();
      const missing = path.join(base, 'nope');
      const file = path.join(base, 'file');
      fs.writeFileSync(file, 'x');
      const empty = path.join(base, 'empty');
      fs.mkdirSync(empty);
      const metaOnly = path.join(base, 'meta-only');
      fs.mkdirSync(path.join(metaOnly, '.cpfile'), { recursive: true });
      for (const mode of [[], ['--dry-run'], ['--verify'], ['--inspect']]) {
        expectOneLine(cli([...mode, missing]), /no such directory/);
        expect(cli([...mode, missing]).code).to.equal(1);
        const f = cli([...mode, file]);
        expect(f.code).to.equal(1);
        expectOneLine(f, /is not a directory/);
        const e = cli([...mode, empty]);
        expect(e.code).to.equal(1);
        expectOneLine(e, /is not a cpfile store/);
        const m = cli([...mode, metaOnly]);
        expect(m.code, `${mode} ${m.err}`).to.equal(1);
        expectOneLine(m, /not a cpfile store/);
      }
      // Nothing was created anywhere.
      expect(fs.readdirSync(empty)).to.deep.equal([]);
      expect(fs.readdirSync(path.join(metaOnly, '.cpfile'))).to.deep.equal([]);
      const j = cliJson([missing]);
      expect(j.code).to.equal(1);
      expect(j.json).to.include({ tool: 'cp-recover', mode: 'recover', ok: false, exitCode: 1, report: null });
      expect(j.json.error.code).to.equal('ENOENT');
    });

    it('--verbose adds the stack trace', () => {
      const r = cli(['--verbose', path.join(tempDir(), 'nope')]);
      expect(r.code).to.equal(1);
      expect(r.err).to.match(/^cp-recover: .*no such directory\n/);
      expect(r.err).to.match(/\n\s+at /);
    });

    it('an empty store (created, never written) recovers to epoch 0 and verifies clean', async () => {
      // As createStore leaves it: a control file at counter 1 and an empty journal directory.
      const bare = tempDir();
      fs.mkdirSync(path.join(bare, '.cpfile', 'journal'), { recursive: true });
      const slot = encodeControlSlot({ counter: 1, storeId: '0011223344556677', cursorSeq: 1, cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: 0 });
      fs.writeFileSync(path.join(bare, '.cpfile', 'control'), Buffer.concat([slot, Buffer.alloc(CONTROL_SLOT_SIZE)]));
      const v = cliJson(['--verify', bare]);
      expect(v.code, v.err).to.equal(0);
      expect(v.json.report).to.include({ epoch: 0, clean: true, replayedEpochs: 0, discardedRecords: 0 });
      const i = cliJson(['--inspect', bare]);
      expect(i.code, i.err).to.equal(0);
      expect(i.json.records).to.deep.equal([]);
      expect(i.json.summary.records).to.equal(0);
      const r = cli([bare]);
      expect(r.code, r.err).to.equal(0);
      expect(r.out).to.match(/recovered .* to epoch 0/);

      // Opened and closed without a single write.
      const closed = tempDir();
      const s = await openStore(closed, { segmentSize: 1 << 20 });
      await s.close();
      const c = cliJson(['--verify', closed]);
      expect(c.code, c.err).to.equal(0);
      expect(c.json.clean).to.equal(true);
      expect(cli([closed]).code).to.equal(0);
    });

    it('permission denied: exit 1, one line', function () {
      const d = copy();
      const asRoot = process.getuid?.() === 0;
      const opts: SpawnSyncOptions = {};
      if (asRoot) {
        // root reads everything: run the tool as nobody against a store it may not enter.
        fs.chmodSync(d, 0o755);
        fs.chmodSync(path.join(d, '.cpfile'), 0o700);
        opts.uid = 65534;
        opts.gid = 65534;
        const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(CLI)})`], opts);
        if (probe.status !== 0) this.skip();
      } else {
        fs.chmodSync(path.join(d, '.cpfile'), 0o000);
      }
      try {
        for (const mode of [[], ['--dry-run'], ['--verify'], ['--inspect']]) {
          const r = cli([...mode, d], opts);
          expect(r.code, `${mode} ${r.err}`).to.equal(1);
          expectOneLine(r, /permission denied/);
        }
        const j = cliJson([d], opts);
        expect(j.json.error.code).to.match(/^E(ACCES|PERM)$/);
      } finally {
        fs.chmodSync(path.join(d, '.cpfile'), 0o755);
      }
    });
  });

  describe('a store left by a SIGKILLed writer', () => {
    it('--verify: exit 1 naming the work to do; --dry-run: what recovery would do, nothing changed', () => {
      const d = copy();
      const before = treeState(d);
      const v = cli(['--verify', d]);
      expect(v.code).to.equal(1);
      expect(v.out).to.match(/NOT clean/);
      expect(v.err).to.match(/^cp-recover: .* is not clean: 3 committed epochs not yet applied .*; 5 uncommitted records .* would be discarded\n$/);
      const vj = cliJson(['--verify', d]);
      expect(vj.code).to.equal(1);
      expect(vj.json).to.include({ mode: 'verify', ok: false, exitCode: 1, clean: false, error: null });
      expect(vj.json.problems).to.have.length(2);

      const t = cli(['--dry-run', d]);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.match(/dry run: nothing was changed/);
      expect(t.out).to.match(/recovery would bring .* to epoch 3/);
      expect(t.out).to.match(/to replay\s+3 epochs \(11 records/);
      expect(t.out).to.match(/to discard\s+5 uncommitted records/);
      expect(t.out).to.match(new RegExp(`lock\\s+would be reclaimed from dead process ${ready.pid}`));
      const j = cliJson(['--dry-run', d]);
      expect(j.code).to.equal(0);
      expect(j.json).to.include({ tool: 'cp-recover', version: PKG.version, mode: 'dry-run', dir: d, ok: true, exitCode: 0, dryRun: true, clean: false, error: null });
      expect(j.json.lock).to.deep.equal({ taken: false, reclaimedFrom: [ready.pid], live: [] });
      expect(j.json.report).to.include({ epoch: 3, replayedEpochs: 3, replayedRecords: 11, discardedRecords: 5, tornTail: false, endReason: 'zero', clean: false, corruption: null, brokenCopy: null });
      expect(j.json.report.filesTouched).to.deep.equal(['a.txt', 'c.txt', 'c2.txt', 'data/b.bin']);
      expect(j.json.report.entries).to.deep.equal([{ name: 'a.txt', position: 24, state: 'open', size: 24 }, { name: 'data/b.bin', position: 0, state: 'open', size: 2500 }]);
      for (const k of ['replayedBytes', 'discardedBytes', 'durationMs']) expect(j.json.report[k]).to.be.a('number');
      // Inspection too: not one byte, name or mode changed, and no lock file was made.
      expect(cli(['--inspect', d]).code).to.equal(0);
      expect(cliJson(['--inspect', '--from', '3', '--limit', '2', d]).code).to.equal(0);
      expect(treeState(d)).to.deep.equal(before);
    });

    it('--inspect lists every record with segment, offset, type, epoch, name, range and crc', () => {
      const d = copy();
      const recs = locate(d);
      expect(recs).to.have.length(20);
      const r = cli(['--inspect', d]);
      expect(r.code, r.err).to.equal(0);
      const lines = r.out.split('\n');
      expect(lines[0]).to.match(/#\s+SEG\s+OFFSET\s+LEN\s+TYPE\s+EPOCH\s+CRC\s+DETAIL/);
      const recLines = lines.slice(1, 1 + recs.length);
      recs.forEach((x, n) => {
        expect(recLines[n]).to.match(new RegExp(`^\\s*${n}\\s+\\d+\\s+${x.offset}\\s+${x.header.len}\\s+\\w+\\s+${x.header.epoch}\\s+ok`));
      });
      expect(recLines[0]).to.match(/catalog\s+0\s+ok\s+0 entries/);
      expect(recLines[4]).to.match(/write\s+1\s+ok\s+"data\/b\.bin" \[0,3000\)/);
      expect(recLines[12]).to.match(/truncate\s+3\s+ok\s+"data\/b\.bin" \[2500,eof\)/);
      expect(recLines[13]).to.match(/rename\s+3\s+ok\s+"c\.txt" -> "c2\.txt"/);
      // a.txt's position and size moved, data/b.bin's size (the truncate)
      expect(recLines[14]).to.match(/commit\s+3\s+ok\s+2 entries: "a\.txt"@24 size=24, "data\/b\.bin"@0 size=2500/);
      expect(r.out).to.match(/records\s+20 valid/);
      expect(r.out).to.match(/last committed epoch 3; 5 uncommitted records after it/);
      expect(r.out).to.match(/end of log\s+segment \d+ offset \d+: zero/);
      expect(r.out).to.match(/verdict\s+recovery would bring the store to epoch 3/);

      const j = cliJson(['--inspect', '--from', '2', '--limit', '3', d]);
      expect(j.code, j.err).to.equal(0);
      expect(j.json).to.include({ mode: 'inspect', ok: true, exitCode: 0, error: null });
      expect(j.json.records.map((x: any) => x.n)).to.deep.equal([2, 3, 4]);
      expect(j.json.records.map((x: any) => x.offset)).to.deep.equal(recs.slice(2, 5).map((x) => x.offset));
      expect(j.json.records[2]).to.deep.include({ type: 'write', epoch: 1, name: 'data/b.bin', range: { start: 0, end: 3000 }, crc: 'ok' });
      expect(j.json.summary).to.include({ records: 20, shown: 3, from: 2, limit: 3, commits: 3, lastCommitEpoch: 3, uncommittedRecords: 5 });
      expect(j.json.summary.end.reason).to.equal('zero');
      expect(j.json.summary.verdict.ok).to.equal(true);
      expect(j.json.summary.verdict.report).to.include({ epoch: 3, replayedEpochs: 3 });
      expect(j.json.control).to.include({ cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: 0 });
      expect(j.json.segments).to.have.length(1);
      const none = cliJson(['--inspect', '--limit', '0', d]);
      expect(none.json.records).to.deep.equal([]);
      expect(none.json.summary.records).to.equal(20);
    });

    it('recovers to the last checked epoch, reclaiming the dead owner\'s lock; then verifies clean', () => {
      const d = copy();
      expect(fs.existsSync(path.join(d, '.cpfile', `owner.${ready.pid}`))).to.equal(true);
      const r = cli([d]);
      expect(r.code, r.err).to.equal(0);
      expect(r.err).to.equal('');
      expect(r.out).to.match(/recovered .* to epoch 3 in [\d.]+ m?s/);
      expect(r.out).to.match(/replayed\s+3 epochs \(11 records/);
      expect(r.out).to.match(/discarded\s+5 uncommitted records/);
      expect(r.out).to.match(/torn tail\s+no/);
      expect(r.out).to.match(/files touched\s+4: a\.txt, c\.txt, c2\.txt, data\/b\.bin/);
      expect(r.out).to.match(new RegExp(`lock\\s+reclaimed from dead process ${ready.pid}`));
      expect(r.out).to.match(/final epoch\s+3/);
      expect(r.out).to.match(/took\s+[\d.]+ m?s recovery/);
      expect(userFiles(d)).to.deep.equal(ready.epochs['3']);
      // The lock and every owner file are gone.
      expect(fs.readdirSync(path.join(d, '.cpfile')).sort()).to.deep.equal(['control', 'journal']);
      const v = cliJson(['--verify', d]);
      expect(v.code, v.err).to.equal(0);
      expect(v.json).to.include({ ok: true, clean: true });
      expect(v.json.report.epoch).to.equal(3);
      // Recovering a clean store is harmless.
      const again = cliJson([d]);
      expect(again.code).to.equal(0);
      expect(again.json.report).to.include({ epoch: 3, clean: true, replayedEpochs: 0 });
      expect(userFiles(d)).to.deep.equal(ready.epochs['3']);
    });

    it('--json recovery: the documented keys', () => {
      const d = copy();
      const j = cliJson([d]);
      expect(j.code, j.err).to.equal(0);
      expect(Object.keys(j.json)).to.have.members(['tool', 'version', 'mode', 'dir', 'ok', 'exitCode', 'dryRun', 'clean', 'problems', 'lock', 'durationMs', 'inDoubt', 'report', 'error']);
      expect(j.json.inDoubt).to.equal(null);
      expect(Object.keys(j.json.report)).to.have.members(['storeId', 'epoch', 'replayedEpochs', 'replayedRecords', 'replayedBytes', 'discardedRecords',
        'discardedBytes', 'tornTail', 'endReason', 'clean', 'corruption', 'brokenCopy', 'staleControl', 'filesTouched', 'cutBack', 'entries', 'durationMs']);
      expect(j.json).to.include({ mode: 'recover', ok: true, exitCode: 0, dryRun: false });
      expect(j.json.lock).to.deep.equal({ taken: true, reclaimedFrom: [ready.pid], live: [] });
      expect(j.json.report.epoch).to.equal(3);
      expect(userFiles(d)).to.deep.equal(ready.epochs['3']);
    });
  });

  describe('a live owner', () => {
    it('every mode exits 3 naming the pid, changes nothing; after the kill the lock is reclaimed', async () => {
      const d = tempDir();
      const w = await startWriter(d);
      try {
        const before = treeState(d);
        for (const mode of [[], ['--dry-run'], ['--verify'], ['--inspect']]) {
          const r = cli([...mode, d]);
          expect(r.code, `${mode} ${r.err}`).to.equal(3);
          expectOneLine(r, new RegExp(`is in use by live process ${w.ready.pid}`));
          const j = cliJson([...mode, d]);
          expect(j.code).to.equal(3);
          expect(j.json.error.code).to.equal('ELOCKED');
        }
        expect(treeState(d)).to.deep.equal(before);
      } finally {
        await kill9(w.child);
      }
      const r = cliJson([d]);
      expect(r.code, r.err).to.equal(0);
      expect(r.json.lock.reclaimedFrom).to.deep.equal([w.ready.pid]);
      expect(userFiles(d)).to.deep.equal(w.ready.epochs['3']);
    });
  });

  describe('hand-damaged journals', () => {
    it('torn tail: a garbled last uncommitted record is discarded (exit 0)', () => {
      const d = copy();
      const recs = locate(d);
      const last = recs[recs.length - 1]!;
      expect(last.header.epoch).to.equal(4);
      patchFile(last.file, last.offset + RECORD_HEADER_SIZE + 12, Buffer.from('garbage!'));
      const i = cliJson(['--inspect', d]);
      expect(i.json.summary.end).to.include({ reason: 'crc', offset: last.offset });
      const bad = i.json.records[i.json.records.length - 1];
      expect(bad).to.include({ n: 19, offset: last.offset, crc: 'crc', type: 'write', epoch: 4 });
      expect(cli(['--inspect', d]).out).to.match(new RegExp(`\\n\\s+19\\s+\\d+\\s+${last.offset}\\s+\\d+\\s+write\\s+4\\s+crc`));
      const v = cli(['--verify', d]);
      expect(v.code).to.equal(1);
      expect(v.out).to.match(/torn record \(crc\)/);
      const j = cliJson([d]);
      expect(j.code, j.err).to.equal(0);
      expect(j.json.report).to.include({ epoch: 3, tornTail: true, endReason: 'crc', discardedRecords: 4, corruption: null });
      expect(userFiles(d)).to.deep.equal(ready.epochs['3']);
      expect(cli(['--verify', d]).code).to.equal(0);
    });

    it('torn tail: a cut (never written) last record is discarded (exit 0)', () => {
      const d = copy();
      const recs = locate(d);
      const last = recs[recs.length - 1]!;
      patchFile(last.file, last.offset, Buffer.alloc(last.size));
      const t = cli([d]);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.match(/discarded\s+4 uncommitted records/);
      expect(t.out).to.match(/torn tail\s+no \(the log ends: zero\)/);
      expect(userFiles(d)).to.deep.equal(ready.epochs['3']);
    });

    it('a flipped bit before committed records: exit 4 naming the lost epochs; --force copies the journal and recovers the epoch before', () => {
      const d = copy();
      const recs = locate(d);
      const victim = recs.find((x) => x.header.epoch === 2 && x.header.type === RecordType.WRITE && x.header.len > 100)!;
      flipBit(victim.file, victim.offset + RECORD_HEADER_SIZE + 60);
      const journalBefore = fs.readFileSync(victim.file);
      const before = treeState(d);

      for (const mode of [['--dry-run'], ['--verify'], []]) {
        const r = cli([...mode, d]);
        expect(r.code, `${mode} ${r.err}`).to.equal(4);
        expectOneLine(r, new RegExp(`offset ${victim.offset} \\(crc\\), not a torn tail: .*Epochs 2\\.\\.4 would be lost; .*--force`));
        if (mode.length) expect(treeState(d), `${mode} changes nothing`).to.deep.equal(before);
      }
      const j = cliJson([d]);
      expect(j.code).to.equal(4);
      expect(j.json.error.code).to.equal('ECORRUPT');
      expect(j.json.error.details).to.include({ offset: victim.offset, reason: 'crc', lostFrom: 2, lostTo: 4 });
      expect(j.json.error.details.evidence).to.be.a('string');
      // A refusal changes no user file and no journal byte.
      expect(userFiles(d)).to.deep.equal(userFiles(template));
      expect(fs.readFileSync(victim.file).equals(journalBefore)).to.equal(true);
      const ins = cliJson(['--inspect', d]);
      expect(ins.code).to.equal(0);
      expect(ins.json.summary.verdict.report.corruption).to.include({ lostFrom: 2, lostTo: 4 });
      expect(cli(['--inspect', d]).out).to.match(/verdict\s+CORRUPTION, not a torn tail/);

      // What forcing would do, without doing it.
      const dryDir = copy();
      flipBit(locate(dryDir).find((x) => x.offset === victim.offset)!.file, victim.offset + RECORD_HEADER_SIZE + 60);
      const dryBefore = treeState(dryDir);
      const dry = cliJson(['--dry-run', '--force', dryDir]);
      expect(dry.code, dry.err).to.equal(0);
      expect(dry.json.report).to.include({ epoch: 1, tornTail: false, brokenCopy: null });
      expect(dry.json.report.corruption).to.include({ lostFrom: 2, lostTo: 4 });
      expect(cli(['--dry-run', '--force', dryDir]).out).to.match(/would lose\s+epochs 2\.\.4/);
      expect(treeState(dryDir)).to.deep.equal(dryBefore);

      const f = cliJson(['--force', d]);
      expect(f.code, f.err).to.equal(0);
      expect(f.json.report).to.include({ epoch: 1 });
      expect(f.json.report.corruption).to.include({ lostFrom: 2, lostTo: 4 });
      const copyDir = f.json.report.brokenCopy as string;
      expect(path.dirname(copyDir)).to.equal(path.join(d, '.cpfile'));
      expect(path.basename(copyDir)).to.match(/^journal\.broken-/);
      expect(fs.readFileSync(path.join(copyDir, path.basename(victim.file))).equals(journalBefore)).to.equal(true);
      expect(userFiles(d)).to.deep.equal(ready.epochs['1']);
      expect(cli(['--verify', d]).code).to.equal(0);

      // The text output names the copy.
      const d2 = copy();
      flipBit(locate(d2).find((x) => x.offset === victim.offset)!.file, victim.offset + RECORD_HEADER_SIZE + 60);
      const t = cli(['--force', d2]);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.match(/CORRUPTION\s+segment \d+ offset \d+ \(crc\)/);
      expect(t.out).to.match(/lost\s+epochs 2\.\.4/);
      expect(t.out).to.match(/journal copy\s+.*\.cpfile\/journal\.broken-/);
      expect(userFiles(d2)).to.deep.equal(ready.epochs['1']);
    });

    it('a valid record out of place (wrong epoch): exit 4, --force recovers the epoch before', () => {
      const d = copy();
      const recs = locate(d);
      // Overwrite the first record of epoch 3 with a record of the same size that carries epoch 5
      // and a valid checksum for its offset: a misdirected write, not a torn one.
      const victim = recs.find((x) => x.header.epoch === 3 && x.header.type === RecordType.WRITE)!;
      const b = fs.readFileSync(victim.file);
      const seg = liveSegment(d);
      const rec = encodeRecord({ type: RecordType.WRITE, name: 'a.txt', offset: 16, data: Buffer.from('alpha-3\n') }, seg.salt, 5, victim.offset);
      expect(rec.length).to.equal(victim.size);
      rec.copy(b, victim.offset);
      fs.writeFileSync(victim.file, b);
      expect(cli(['--inspect', d]).out).to.match(/write\s+5\s+ok\s+"a\.txt" \[16,24\) !! epoch out of place: the log continues with epoch 3/);
      const r = cli([d]);
      expect(r.code, r.err).to.equal(4);
      expectOneLine(r, /out of place.*Epochs 3\.\.4 would be lost/);
      const f = cliJson(['--force', d]);
      expect(f.code, f.err).to.equal(0);
      expect(f.json.report).to.include({ epoch: 2, tornTail: false });
      expect(f.json.report.corruption).to.include({ offset: victim.offset, reason: 'epoch', lostFrom: 3, lostTo: 4 });
      expect(userFiles(d)).to.deep.equal(ready.epochs['2']);
      expect(cli(['--verify', d]).code).to.equal(0);
    });

    it('a truncated segment header: exit 1 (not something --force repairs), one line', () => {
      const d = copy();
      const seg = liveSegment(d);
      fs.truncateSync(seg.file, 40);
      const before = treeState(d);
      for (const mode of [['--dry-run'], ['--verify'], [], ['--force']]) {
        const r = cli([...mode, d]);
        expect(r.code, `${mode} ${r.err}`).to.equal(1);
        expectOneLine(r, /segment holding the apply cursor .* is missing .*unusable headers: seg-\d+\.cpj/);
        if (mode[0] === '--dry-run' || mode[0] === '--verify') expect(treeState(d), `${mode} changes nothing`).to.deep.equal(before);
      }
      const i = cli(['--inspect', d]);
      expect(i.code).to.equal(0);
      expect(i.out).to.match(/bad segment\s+seg-\d+\.cpj/);
      expect(i.out).to.match(/verdict\s+recovery fails: ECORRUPT/);
      expect(userFiles(d)).to.deep.equal(userFiles(template));
      expect(fs.statSync(seg.file).size).to.equal(40);
    });

    it('a garbage journal segment: exit 1, one line', () => {
      const d = copy();
      const seg = liveSegment(d);
      fs.writeFileSync(seg.file, crypto.randomBytes(seg.size));
      for (const mode of [['--dry-run'], ['--verify'], []]) {
        const r = cli([...mode, d]);
        expect(r.code, `${mode} ${r.err}`).to.equal(1);
        expectOneLine(r, /segment holding the apply cursor .* is missing/);
      }
      const j = cliJson(['--inspect', d]);
      expect(j.code).to.equal(0);
      expect(j.json.invalidSegments).to.have.length(1);
      expect(j.json.invalidSegments[0].reason).to.equal('magic');
    });

    it('wrong magic or another version in the control file: EFORMAT, one line', () => {
      for (const damage of ['magic', 'version'] as const) {
        const d = copy();
        const file = path.join(d, '.cpfile', 'control');
        const b = fs.readFileSync(file);
        for (const at of [0, CONTROL_SLOT_SIZE]) {
          if (damage === 'magic') b.write('NOTCPF\0\0', at, 'latin1');
          else {
            b.writeUInt32LE(FORMAT_VERSION + 1, at + 8);
            b.writeUInt32LE(crc32(b.subarray(at, at + CONTROL_SLOT_SIZE - 4)), at + CONTROL_SLOT_SIZE - 4);
          }
        }
        fs.writeFileSync(file, b);
        const before = treeState(d);
        for (const mode of [['--dry-run'], ['--verify'], [], ['--force']]) {
          const r = cli([...mode, d]);
          expect(r.code, `${damage} ${mode} ${r.err}`).to.equal(1);
          expectOneLine(r, new RegExp(`control: no valid slot \\(${damage}, ${damage}\\); this cpfile reads format versions 1 to 5`));
          if (mode[0] === '--dry-run' || mode[0] === '--verify') expect(treeState(d), `${damage} ${mode} changes nothing`).to.deep.equal(before);
        }
        const j = cliJson([d]);
        expect(j.json.error.code).to.equal('EFORMAT');
        const i = cliJson(['--inspect', d]);
        expect(i.code).to.equal(0);
        expect(i.json.control).to.equal(null);
        expect(i.json.controlProblem).to.match(new RegExp(damage));
        expect(i.json.summary.verdict).to.deep.include({ ok: false });
        expect(i.json.summary.verdict.error.code).to.equal('EFORMAT');
        expect(i.json.summary.records).to.equal(20); // walked from the lowest valid segment
        expect(userFiles(d)).to.deep.equal(userFiles(template));
        }
    });

    it('a journal segment of another format version: EFORMAT, one line', () => {
      const d = copy();
      const seg = liveSegment(d);
      const h = Buffer.alloc(SEGMENT_HEADER_SIZE);
      const fd = fs.openSync(seg.file, 'r+');
      try {
        fs.readSync(fd, h, 0, h.length, 0);
        h.writeUInt32LE(FORMAT_VERSION + 1, 8);
        h.writeUInt32LE(crc32(h.subarray(0, 60)), 60);
        fs.writeSync(fd, h, 0, h.length, 0);
      } finally {
        fs.closeSync(fd);
      }
      const r = cli([d]);
      expect(r.code, r.err).to.equal(1);
      expectOneLine(r, /journal segment of another format version; this cpfile reads format versions 1 to 5/);
      expect(cliJson(['--dry-run', d]).json.error.code).to.equal('EFORMAT');
    });

    it('a zero-length control file: exit 1, one line', () => {
      const d = copy();
      fs.writeFileSync(path.join(d, '.cpfile', 'control'), '');
      for (const mode of [['--dry-run'], ['--verify'], []]) {
        const r = cli([...mode, d]);
        expect(r.code, `${mode} ${r.err}`).to.equal(1);
        expectOneLine(r, /control holds no valid slot but the journal has segments/);
      }
      expect(fs.statSync(path.join(d, '.cpfile', 'control')).size).to.equal(0);
      const i = cliJson(['--inspect', d]);
      expect(i.code).to.equal(0);
      expect(i.json.controlProblem).to.match(/no valid slot/);
    });

    it('a control file that is a directory: exit 1, one line naming the file, the tool\'s name said once', () => {
      const d = copy();
      fs.rmSync(path.join(d, '.cpfile', 'control'));
      fs.mkdirSync(path.join(d, '.cpfile', 'control'));
      for (const mode of [['--dry-run'], ['--force'], []]) {
        const r = cli([...mode, d]);
        expect(r.code, `${mode} ${r.err}`).to.equal(1);
        expectOneLine(r, /control file .*\.cpfile\/control: EISDIR/);
        expect(r.err).to.not.match(/cp-recover: cp-recover/);
      }
    });
  });

  describe('an epoch in doubt (two-phase: a crash between prepare and its decision)', () => {
    let doubtTemplate: string; // epoch 1 checked, epoch 2 prepared as tx-0 and committed, epoch 3 prepared as tx-1: SIGKILLed undecided
    let prep: Prepared;
    let storeId: string;
    const copyDoubt = (): string => {
      const d = tempDir();
      fs.cpSync(doubtTemplate, d, { recursive: true });
      return d;
    };
    /** The store's files and journal, without the dead writer's lock and owner files (a recovery's lock reclaims them). */
    const storeState = (d: string): string[] => treeState(d).filter((l) => !/^\S+ \.cpfile\/(lock|owner\.)/.test(l));
    const undecided = (): Record<string, unknown> => ({ id: 'tx-1', epoch: 3, storeId, decision: null });

    before(async () => {
      doubtTemplate = tempDir();
      const w = await startWriter<Prepared>(doubtTemplate, PREPARER, ['tx-1']);
      prep = w.ready;
      await kill9(w.child);
      expect(prep.prepared).to.deep.equal({ id: 'tx-1', epoch: 3 });
      storeId = cliJson(['--inspect', doubtTemplate]).json.control.storeId;
    });

    it('--dry-run and --verify exit 5 naming the epoch, its id and both flags; nothing changes', () => {
      const d = copyDoubt();
      const before = treeState(d);
      const t = cli(['--dry-run', d]);
      expect(t.code, t.err).to.equal(5);
      expect(t.out).to.match(/recovery would stop: epoch 3 is in doubt \(prepared as "tx-1", its decision is not in the journal\)/);
      expect(t.out).to.match(/in doubt\s+epoch 3, prepared as "tx-1": its decision is not in the journal; recovery needs --commit-prepared tx-1 or --abort-prepared tx-1/);
      expect(t.out).to.match(/to discard\s+7 uncommitted records, \d+ B: the prepared epoch 3's if it is aborted/);
      expect(t.out).to.match(/final epoch\s+2 \(3 if epoch 3 is committed\)/);
      expectOneLine(t, /epoch 3 is in doubt: it was prepared as "tx-1" and its decision is not in the journal; recovery would stop until it is decided .*: cp-recover --commit-prepared tx-1 \S+ or cp-recover --abort-prepared tx-1 \S+$/);
      const tj = cliJson(['--dry-run', d]);
      expect(tj.code).to.equal(5);
      expect(tj.json).to.include({ mode: 'dry-run', ok: false, exitCode: 5, clean: false });
      expect(tj.json.inDoubt).to.deep.equal(undecided());
      expect(tj.json.error).to.deep.include({ code: 'EINDOUBT', details: { id: 'tx-1', epoch: 3, storeId } });
      expect(tj.json.report).to.include({ epoch: 2, replayedEpochs: 2, discardedRecords: 7 });

      const v = cli(['--verify', d]);
      expect(v.code, v.err).to.equal(5);
      expect(v.out).to.match(/NOT clean/);
      expect(v.out).to.match(/- epoch 3 is in doubt: prepared as "tx-1" \(7 records, \d+ bytes\), its decision is not in the journal; recovery needs it: --commit-prepared tx-1 or --abort-prepared tx-1/);
      expectOneLine(v, /epoch 3 is in doubt: it was prepared as "tx-1"/);
      const vj = cliJson(['--verify', d]);
      expect(vj.code).to.equal(5);
      expect(vj.json).to.include({ mode: 'verify', ok: false, exitCode: 5, clean: false });
      expect(vj.json.inDoubt).to.deep.equal(undecided());
      expect(vj.json.problems.filter((p: string) => /epoch 3 is in doubt/.test(p))).to.have.length(1);
      expect(treeState(d)).to.deep.equal(before);
    });

    it('--inspect lists the prepare and commit-prepared records with their ids, and names the epoch in doubt', () => {
      const d = copyDoubt();
      const before = treeState(d);
      const recs = locate(d);
      const prepares = recs.filter((x) => x.header.type === RecordType.PREPARE);
      const decided = recs.filter((x) => x.header.type === RecordType.COMMIT_PREPARED);
      expect(prepares.map((x) => x.header.epoch)).to.deep.equal([2, 3]);
      expect(decided.map((x) => x.header.epoch)).to.deep.equal([2]);
      const r = cli(['--inspect', d]);
      expect(r.code, r.err).to.equal(0);
      const line = (x: Located): string => r.out.split('\n').find((l) => new RegExp(`^\\s*\\d+\\s+\\d+\\s+${x.offset}\\s`).test(l))!;
      expect(line(prepares[0]!)).to.match(/prepare\s+2\s+ok\s+id "tx-0" 1 entry: "a\.txt"@8 size=8$/);
      expect(line(decided[0]!)).to.match(/commit-prepared\s+2\s+ok\s+id "tx-0"$/);
      expect(line(prepares[1]!)).to.match(/prepare\s+3\s+ok\s+id "tx-1" 1 entry: "a\.txt"@14 size=14$/);
      expect(r.out).to.match(/epochs\s+first record of epoch 0, 2 commits, 2 prepares, last committed epoch 2; 7 uncommitted records after it/);
      expect(r.out).to.match(new RegExp(`in doubt\\s+epoch 3, prepared as "tx-1" \\(segment \\d+ offset ${prepares[1]!.offset}\\): the log ends before its decision`));
      expect(r.out).to.match(/verdict\s+IN DOUBT: recovery stops \(exit 5\) until epoch 3 is decided: cp-recover --commit-prepared tx-1 \S+ or cp-recover --abort-prepared tx-1 /);
      expect(r.out).to.match(/- epoch 3 is in doubt: prepared as "tx-1"/);

      const j = cliJson(['--inspect', d]);
      expect(j.code, j.err).to.equal(0);
      expect(j.json.records.filter((x: any) => x.type === 'prepare').map((x: any) => [x.epoch, x.id])).to.deep.equal([[2, 'tx-0'], [3, 'tx-1']]);
      expect(j.json.records.filter((x: any) => x.type === 'commit-prepared').map((x: any) => [x.epoch, x.id])).to.deep.equal([[2, 'tx-0']]);
      expect(j.json.summary).to.include({ commits: 2, prepares: 2, lastCommitEpoch: 2, uncommittedRecords: 7 });
      expect(j.json.summary.inDoubt).to.deep.include({ id: 'tx-1', epoch: 3, offset: prepares[1]!.offset });
      expect(j.json.inDoubt).to.deep.equal(undecided());
      expect(treeState(d)).to.deep.equal(before);
    });

    it('plain recovery refuses with exit 5 naming the epoch, the id and both flags, and changes nothing', () => {
      const d = copyDoubt();
      const before = storeState(d);
      for (const args of [[d], ['--force', d]]) {
        const r = cli(args);
        expect(r.code, r.err).to.equal(5);
        expect(r.out).to.equal('');
        expectOneLine(r, /epoch 3 is in doubt: it was prepared as "tx-1" and its decision is not in the journal; nothing was changed; decide it .*: cp-recover --commit-prepared tx-1 \S+ or cp-recover --abort-prepared tx-1 \S+$/);
      }
      const j = cliJson([d]);
      expect(j.code).to.equal(5);
      expect(j.json).to.include({ mode: 'recover', ok: false, exitCode: 5, report: null });
      expect(j.json.inDoubt).to.deep.equal(undecided());
      expect(j.json.error).to.deep.include({ code: 'EINDOUBT', details: { id: 'tx-1', epoch: 3, storeId } });
      expect(storeState(d)).to.deep.equal(before);
      expect(userFiles(d)).to.deep.equal(userFiles(doubtTemplate));
    });

    it('--commit-prepared ID commits the epoch (its data in the files); --dry-run says so first; a second run finds the store clean', () => {
      const d = copyDoubt();
      const before = treeState(d);
      const t = cli(['--dry-run', '--commit-prepared', 'tx-1', d]);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.match(/recovery would commit epoch 3 \(prepared as "tx-1"\) and bring .* to epoch 3/);
      expect(t.out).to.match(/in doubt\s+epoch 3, prepared as "tx-1": would be committed \(--commit-prepared\)/);
      expect(t.out).to.match(/to replay\s+2 epochs \(.*\), then the prepared epoch 3 \(7 journal records/);
      expect(t.out).to.match(/to discard\s+nothing/);
      expect(t.out).to.match(/final epoch\s+3\n/);
      const tj = cliJson(['--dry-run', '--commit-prepared', 'tx-1', d]);
      expect(tj.code, tj.err).to.equal(0);
      expect(tj.json.inDoubt).to.deep.equal({ ...undecided(), decision: 'commit' });
      expect(treeState(d)).to.deep.equal(before);

      const r = cliJson(['--commit-prepared', 'tx-1', d]);
      expect(r.code, r.err).to.equal(0);
      expect(r.json).to.include({ mode: 'recover', ok: true, exitCode: 0, error: null });
      expect(r.json.inDoubt).to.deep.equal({ ...undecided(), decision: 'commit' });
      expect(r.json.report).to.include({ epoch: 3, replayedEpochs: 3, discardedRecords: 0 });
      expect(userFiles(d)).to.deep.equal(prep.epochs['3']);
      const again = cliJson([d]);
      expect(again.code, again.err).to.equal(0);
      expect(again.json.report).to.include({ epoch: 3, clean: true, replayedEpochs: 0, discardedRecords: 0 });
      expect(again.json.inDoubt).to.equal(null);
      expect(cli(['--verify', d]).code).to.equal(0);
      expect(userFiles(d)).to.deep.equal(prep.epochs['3']);

      const d2 = copyDoubt();
      const txt = cli(['--commit-prepared', 'tx-1', d2]);
      expect(txt.code, txt.err).to.equal(0);
      expect(txt.out).to.match(/recovered .* to epoch 3 in/);
      expect(txt.out).to.match(/in doubt\s+epoch 3, prepared as "tx-1": committed \(--commit-prepared\)\n/);
      expect(txt.out).to.match(/files touched\s+4: a\.txt, b\.txt, c\.txt, sub\/d\.txt/);
      expect(userFiles(d2)).to.deep.equal(prep.epochs['3']);
    });

    it('--abort-prepared ID aborts the epoch (the files as at the epoch before); --dry-run says so first; a second run finds the store clean', () => {
      const d = copyDoubt();
      const before = treeState(d);
      const t = cli(['--dry-run', '--abort-prepared', 'tx-1', d]);
      expect(t.code, t.err).to.equal(0);
      expect(t.out).to.match(/recovery would abort epoch 3 \(prepared as "tx-1"\) and bring .* to epoch 2/);
      expect(t.out).to.match(/in doubt\s+epoch 3, prepared as "tx-1": would be aborted \(--abort-prepared\): its records would be discarded/);
      expect(t.out).to.match(/to discard\s+7 uncommitted records, \d+ B: the prepared epoch 3's\n/);
      expect(t.out).to.match(/final epoch\s+2\n/);
      expect(cliJson(['--dry-run', '--abort-prepared', 'tx-1', d]).json.inDoubt).to.deep.equal({ ...undecided(), decision: 'abort' });
      expect(treeState(d)).to.deep.equal(before);

      const r = cliJson(['--abort-prepared', 'tx-1', d]);
      expect(r.code, r.err).to.equal(0);
      expect(r.json.inDoubt).to.deep.equal({ ...undecided(), decision: 'abort' });
      expect(r.json.report).to.include({ epoch: 2, replayedEpochs: 2, discardedRecords: 7 });
      expect(userFiles(d)).to.deep.equal(prep.epochs['2']);
      const again = cliJson([d]);
      expect(again.code, again.err).to.equal(0);
      expect(again.json.report).to.include({ epoch: 2, clean: true });
      expect(again.json.inDoubt).to.equal(null);
      expect(cli(['--verify', d]).code).to.equal(0);
      expect(userFiles(d)).to.deep.equal(prep.epochs['2']);

      const d2 = copyDoubt();
      const txt = cli(['--abort-prepared', 'tx-1', d2]);
      expect(txt.code, txt.err).to.equal(0);
      expect(txt.out).to.match(/recovered .* to epoch 2 in/);
      expect(txt.out).to.match(/in doubt\s+epoch 3, prepared as "tx-1": aborted \(--abort-prepared\): its records discarded/);
      expect(userFiles(d2)).to.deep.equal(prep.epochs['2']);
    });

    it('a flag naming another id refuses with exit 6 and changes nothing', () => {
      const d = copyDoubt();
      const before = storeState(d);
      for (const [flag, decision] of [['--commit-prepared', 'commit'], ['--abort-prepared', 'abort']] as const) {
        for (const mode of [[], ['--dry-run']]) {
          const r = cli([...mode, flag, 'tx-2', d]);
          expect(r.code, `${flag} ${mode} ${r.err}`).to.equal(6);
          expectOneLine(r, new RegExp(`${flag} "tx-2": the epoch in doubt, epoch 3, was prepared as "tx-1", not "tx-2"; nothing was changed$`));
        }
        const j = cliJson([flag, 'tx-2', d]);
        expect(j.code).to.equal(6);
        expect(j.json).to.include({ ok: false, exitCode: 6, report: null });
        expect(j.json.inDoubt).to.deep.equal(undecided());
        expect(j.json.error).to.deep.include({ code: 'ENOTINDOUBT', details: { id: 'tx-2', decision, inDoubt: { id: 'tx-1', epoch: 3, storeId } } });
      }
      expect(storeState(d)).to.deep.equal(before);
      expect(userFiles(d)).to.deep.equal(userFiles(doubtTemplate));
    });

    it('a flag on a store with no epoch in doubt refuses with exit 6 and changes nothing', () => {
      const d = copy(); // the SIGKILLed writer's store: committed epochs to replay and an uncommitted tail, nothing prepared
      const seg = liveSegment(d).file;
      const journal = fs.readFileSync(seg);
      const before = treeState(d);
      for (const flag of ['--commit-prepared', '--abort-prepared']) {
        const t = cli(['--dry-run', flag, 'tx-1', d]);
        expect(t.code, t.err).to.equal(6);
        expectOneLine(t, new RegExp(`${flag} "tx-1": no epoch of this store is in doubt \\(none is prepared and undecided\\); nothing was changed$`));
      }
      expect(treeState(d)).to.deep.equal(before);
      for (const flag of ['--commit-prepared', '--abort-prepared']) {
        const r = cliJson([flag, 'tx-1', d]);
        expect(r.code, r.err).to.equal(6);
        expect(r.json).to.include({ inDoubt: null, report: null });
        expect(r.json.error.code).to.equal('ENOTINDOUBT');
        expect(r.json.error.details.inDoubt).to.equal(null);
      }
      expect(fs.readFileSync(seg).equals(journal), 'not one journal byte changed').to.equal(true);
      expect(storeState(d)).to.deep.equal(before.filter((l) => !/^\S+ \.cpfile\/(lock|owner\.)/.test(l)));
      expect(userFiles(d)).to.deep.equal(userFiles(template));
      // Nor after the decision: the epoch is no longer in doubt.
      const c = copyDoubt();
      expect(cli(['--abort-prepared', 'tx-1', c]).code).to.equal(0);
      const second = cli(['--abort-prepared', 'tx-1', c]);
      expect(second.code, second.err).to.equal(6);
      expectOneLine(second, /no epoch of this store is in doubt/);
    });

    it('direct appends of the epoch in doubt: a commit keeps them, an abort cuts them back, and --dry-run says which', async () => {
      const base = tempDir();
      const w = await startWriter<{ pid: number; prepared: { id: string; epoch: number }; sha: Record<string, string>; size: Record<string, number> }>(base, PREPARER_DIRECT, ['tx-d']);
      await kill9(w.child);
      const { sha, size } = w.ready;
      const shaOf = (d: string): string => crypto.createHash('sha256').update(fs.readFileSync(path.join(d, 'a.bin'))).digest('hex');
      expect(fs.statSync(path.join(base, 'a.bin')).size, 'the appends went to the file').to.equal(size['4']);
      const cut = `a\\.bin ${size['4']} -> ${size['3']} B`;
      const t = cli(['--dry-run', base]);
      expect(t.code, t.err).to.equal(5);
      expect(t.out).to.match(new RegExp(`to cut back\\s+1 file longer than committed \\(direct appends of the prepared epoch 4: cut if it is aborted, kept if it is committed\\): ${cut}`));
      const tc = cli(['--dry-run', '--commit-prepared', 'tx-d', base]);
      expect(tc.code, tc.err).to.equal(0);
      expect(tc.out).to.match(new RegExp(`to cut back\\s+none: a commit keeps the direct appends of the prepared epoch 4 \\(an abort would cut ${cut}\\)`));
      const ta = cli(['--dry-run', '--abort-prepared', 'tx-d', base]);
      expect(ta.code, ta.err).to.equal(0);
      expect(ta.out).to.match(new RegExp(`to cut back\\s+1 file longer than committed \\(direct appends of the prepared epoch 4\\): ${cut}`));

      const c = tempDir();
      fs.cpSync(base, c, { recursive: true });
      const rc = cliJson(['--commit-prepared', 'tx-d', c]);
      expect(rc.code, rc.err).to.equal(0);
      expect(rc.json.report).to.include({ epoch: 4 });
      expect(rc.json.report.cutBack).to.deep.equal([]);
      expect(shaOf(c)).to.equal(sha['4']);
      const a = tempDir();
      fs.cpSync(base, a, { recursive: true });
      const ra = cliJson(['--abort-prepared', 'tx-d', a]);
      expect(ra.code, ra.err).to.equal(0);
      expect(ra.json.report).to.include({ epoch: 3 });
      expect(ra.json.report.cutBack).to.deep.equal([{ name: 'a.bin', size: size['3'], from: size['4'] }]);
      expect(shaOf(a)).to.equal(sha['3']);
      for (const d of [c, a]) expect(cli(['--verify', d]).code).to.equal(0);
    });

    it('recover() asks before it changes anything: a resolver that throws, or answers junk, leaves every byte as it was', async () => {
      const d = copyDoubt();
      const before = treeState(d);
      const resolvers = [() => { throw new Error('coordinator unreachable'); }, () => 'maybe' as 'commit', undefined];
      for (const resolveInDoubt of resolvers) {
        let err: any = null;
        await recover({ io: nodeIO, dir: d, resolveInDoubt }).catch((e) => { err = e; });
        expect(err?.code, String(err)).to.equal('EINDOUBT');
        expect(err.details).to.deep.equal({ id: 'tx-1', epoch: 3, storeId });
        expect(treeState(d)).to.deep.equal(before);
      }
    });

    it('the commands it suggests quote an id the shell would split', () => {
      for (const id of ['tx-1', 'a b', "it's", 'x$(touch y)`z`', '"', 'ü-ß']) {
        const r = spawnSync('sh', ['-c', `printf %s ${shellWord(id)}`], { encoding: 'utf8' });
        expect(r.stdout, id).to.equal(id);
      }
    });
  });

  describe('progress', () => {
    const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
    const haveScript = !script.error && script.status === 0;

    it('no progress bar when stdout is not a TTY', () => {
      const d = copy();
      const r = cli(['--dry-run', d], { env: { ...process.env, CP_RECOVER_PROGRESS_DELAY_MS: '0' } });
      expect(r.code).to.equal(0);
      expect(r.out + r.err).not.to.match(/scanning journal|\x1b\[/);
    });

    it('a progress bar on a TTY, none with --json', function () {
      if (!haveScript) this.skip();
      const d = copy();
      const run = (args: string): string => {
        const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} ${args} ${JSON.stringify(d)}`;
        const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
          encoding: 'utf8', timeout: 20000, env: { ...process.env, CP_RECOVER_PROGRESS_DELAY_MS: '0' },
        });
        return String(r.stdout);
      };
      expect(run('--dry-run')).to.contain('scanning journal');
      const j = run('--dry-run --json');
      expect(j).not.to.contain('scanning journal');
      expect(JSON.parse(j.trim()).ok).to.equal(true);
    });
  });
});
