#!/usr/bin/env node
/**
 * cp-recover: the operator's tool for a cpfile store.
 *
 *   cp-recover <dir>             take the store's lock, recover it (the code openStore runs), print a summary
 *   cp-recover --dry-run <dir>   say what recovery would do; change nothing
 *   cp-recover --verify <dir>    exit 0 only if the store is clean; change nothing
 *   cp-recover --inspect <dir>   dump the journal one line per record; change nothing
 *
 * Recovery logic lives in lib/recovery/index.ts (recover()), inspection in lib/recovery/inspect.ts; this file only
 * parses arguments, takes the lock and prints. Run `cp-recover --help` for exit codes and JSON keys.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { recover, type RecoveryReport } from '../lib/recovery/index.js';
import { acquireLock, ownerStatus, type Lock } from '../lib/lock.js';
import { nodeIO } from '../lib/io.js';
import { CpError, corruptionOf, lostEpochsText } from '../lib/errors.js';
import { READABLE_VERSIONS_TEXT } from '../lib/format.js';
import {
  probeStore, uncleanReasons, inspectJournal, fsError, type InspectedRecord, type InspectResult, type StorePaths,
} from '../lib/recovery/inspect.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, LOCKED: 3, NEEDS_FORCE: 4 } as const;

type Mode = 'recover' | 'dry-run' | 'verify' | 'inspect';

interface Opts {
  dryRun?: boolean;
  inspect?: boolean;
  verify?: boolean;
  force?: boolean;
  json?: boolean;
  from?: number;
  limit?: number;
  verbose?: boolean;
}

const HELP_AFTER = `
Modes (at most one; the default recovers):
  (none)       Take the store's lock, recover the store exactly as openStore does (replay committed
               epochs, discard the uncommitted tail, start a fresh journal segment) and print a summary.
               A lock left by a dead process is reclaimed; a live owner stops cp-recover with exit 3.
  --dry-run    Say what recovery would do. Changes nothing: no lock is taken and nothing is created
               in the store. With --force, also shows what forcing past corruption would lose.
  --verify     Exit 0 only when the store is clean (nothing to replay, nothing to discard, no damage),
               else exit 1 with the reasons (exit 4 when the damage needs --force). Changes nothing.
  --inspect    Dump the journal one line per record, from the start of the apply cursor's segment,
               following SEGEND records as recovery does; then a summary with the end-of-log reason
               and recovery's verdict. Page with --from <n> (first record number, 0-based) and
               --limit <n>. Changes nothing. Columns: record number, segment seq, offset, payload
               length, type, epoch, crc ("ok" or why the record ends the log: zero, stale, length,
               type, crc, segment-end), then the file name, [start,end) byte range of a write,
               [length,eof) of a truncate, from -> to of a rename, entries of a commit/catalog
               (name@position, and the committed size of an open entry).

  --dry-run, --verify and --inspect take no lock. They refuse (exit 3) while a live process is
  announced in .cpfile/owner.<pid>; a process that opens the store after that check is not kept
  out, so run them on a store nobody is using.

Damage that is not a torn tail (bytes that were once durable) makes recovery refuse with exit 4,
naming the epochs that would be lost. --force copies the journal to .cpfile/journal.broken-<time>/
first, then recovers to the last epoch before the damage.

Exit codes:
  0  ok (recovered; dry run or inspection done; --verify: the store is clean)
  1  failure: no such directory, not a store, unreadable or damaged store, permission denied, I/O
     error; --verify: the store is not clean
  2  usage error
  3  the store is locked by a live process
  4  journal damage that needs --force (nothing was changed)

JSON (--json): one object on stdout, in every mode and on errors (messages still go to stderr).
  Always: tool ("cp-recover"), version, mode ("recover" | "dry-run" | "verify" | "inspect"; null
    on a usage error), dir (absolute; null on a usage error), ok (boolean), exitCode, error (null,
    or { code, message, details? }; code is a CpError code such as ENOENT, EFORMAT, ECORRUPT,
    ELOCKED, EACCES, or "EUSAGE"; an ECORRUPT has details { kind, forceable, ... } and one that
    needs --force (forceable true) has { kind, forceable, seq, offset, reason, lostFrom, lostTo,
    evidence }).
  recover, dry-run, verify: dryRun, clean, problems (strings: why the store is not clean),
    lock { taken, reclaimedFrom (dead pids whose lock was or would be reclaimed), live (pids) },
    durationMs (whole run), report: null or { storeId, epoch (recovered epoch), replayedEpochs,
    replayedRecords, replayedBytes, discardedRecords, discardedBytes, tornTail (a damaged last
    record that is a normal crash artifact; false when it is corruption), endReason,
    clean, corruption (null or { seq, offset, reason, lostFrom, lostTo, evidence }), brokenCopy
    (path of the copied journal or null), staleControl (the control file's newest slot was lost
    and the apply cursor was taken from the last commit), filesTouched, cutBack [{ name, size,
    from }] (files cut from length "from" back to their committed size: direct appends of an epoch
    that did not commit), entries [{ name, position, state, size }], durationMs (recovery
    itself) }; report is null when recovery stopped with an error.
  inspect: records [{ n, seq, index, offset, len, size, type, epoch, crc, and as the type has
    them: name, from, to, range { start, end|null }, entries [{ name, position, state, size }],
    nextSeq, note }], control (null or { slot, counter, storeId, cursorSeq, cursorOffset,
    appliedEpoch }), controlProblem, segments [{ index, file, seq, size, salt, storeId }],
    invalidSegments [{ index, file, reason }],
    start ({ seq, offset } or null), summary { records, shown, from, limit, byType, bytes,
    dataBytes, segmentsWalked, commits, firstEpoch, lastCommitEpoch, uncommittedRecords,
    end { seq, offset, reason, explanation, record }, verdict ({ ok: true, report, problems } or
    { ok: false, error }) }.
`;

// ---------------------------------------------------------------------------------------------
// output

class Out {
  constructor(private stream: NodeJS.WriteStream) {}
  async write(s: string): Promise<void> {
    if (!this.stream.write(s)) await new Promise<void>((resolve) => this.stream.once('drain', resolve));
  }
  line(s = ''): Promise<void> {
    return this.write(s + '\n');
  }
}
const stdout = new Out(process.stdout);

function packageVersion(): string {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const f = path.join(d, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cpfile' && pkg.version) return pkg.version;
    } catch {
      // keep looking upwards
    }
    const up = path.dirname(d);
    if (up === d) return '0.0.0';
    d = up;
  }
}

const fmtBytes = (n: number): string => {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
};
const fmtMs = (ms: number): string => (ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`);
const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`;

// ---------------------------------------------------------------------------------------------
// errors

interface Failure {
  exit: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Map anything thrown to an exit code and a one-line message. */
function classify(e: unknown, force: boolean): Failure {
  if (e instanceof CommanderError) return { exit: EXIT.USAGE, code: 'EUSAGE', message: e.message.replace(/^error: /, ''), cause: e };
  const err = e instanceof CpError ? e : fsError(e, (e as NodeJS.ErrnoException)?.path ?? 'I/O failure');
  const details = err.details;
  const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ');
  if (err.code === 'ELOCKED') return { exit: EXIT.LOCKED, code: err.code, message: oneLine(err.message), details, cause: err };
  if (err.code === 'ECORRUPT') {
    // The kind of damage decides (lib/errors.ts CorruptionDetails): only a forceable one needs --force.
    const corruption = corruptionOf(err);
    const forceable = corruption?.forceable === true;
    if (forceable && !force) {
      return { exit: EXIT.NEEDS_FORCE, code: err.code, message: oneLine(err.message), details, cause: err };
    }
    // A journal segment of another format version is reported by recover() as an unusable header.
    const version = corruption?.kind === 'cursor-segment-missing' ? corruption.invalid.find((x) => x.reason === 'version') : undefined;
    if (version) {
      return {
        exit: EXIT.FAILURE, code: 'EFORMAT', details, cause: err,
        message: `${version.file}: journal segment of another format version; this cpfile reads ${READABLE_VERSIONS_TEXT} (${oneLine(err.message)})`,
      };
    }
    return {
      exit: EXIT.FAILURE, code: err.code, details, cause: err,
      message: `${oneLine(err.message)}${forceable ? '' : ' (--force cannot repair this damage; --inspect shows the journal)'}`,
    };
  }
  return { exit: EXIT.FAILURE, code: err.code, message: oneLine(err.message), details, cause: err };
}

function printStack(e: unknown): void {
  let cur: unknown = e;
  let prefix = '';
  for (let depth = 0; cur && depth < 5; depth++) {
    const s = cur instanceof Error ? (cur.stack ?? cur.message) : String(cur);
    process.stderr.write(`${prefix}${s}\n`);
    cur = cur instanceof Error ? cur.cause : undefined;
    prefix = 'caused by: ';
  }
}

// ---------------------------------------------------------------------------------------------
// progress

function progressFor(enabled: boolean): { onProgress?: (done: number, total: number) => void; finish(): void } {
  if (!enabled) return { finish: () => undefined };
  const delay = Number(process.env.CP_RECOVER_PROGRESS_DELAY_MS ?? 300);
  const t0 = performance.now();
  let bar: cliProgress.SingleBar | null = null;
  let last = 0;
  return {
    onProgress: (done, total) => {
      last = total;
      if (!bar) {
        if (performance.now() - t0 < delay) return;
        bar = new cliProgress.SingleBar({
          format: 'scanning journal [{bar}] {percentage}% | {done} of {all}',
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
        }, cliProgress.Presets.shades_classic);
        bar.start(total, done, { done: fmtBytes(done), all: fmtBytes(total) });
      }
      bar.update(done, { done: fmtBytes(done), all: fmtBytes(total) });
    },
    finish: () => {
      if (bar) {
        bar.update(last, { done: fmtBytes(last), all: fmtBytes(last) });
        bar.stop();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// recover / dry-run / verify

interface LockInfo {
  taken: boolean;
  reclaimedFrom: number[];
  live: number[];
}

function reportJson(r: RecoveryReport | null): Record<string, unknown> | null {
  if (!r) return null;
  return {
    storeId: r.storeId, epoch: r.epoch, replayedEpochs: r.replayedEpochs, replayedRecords: r.replayedRecords,
    replayedBytes: r.replayedBytes, discardedRecords: r.discardedRecords, discardedBytes: r.discardedBytes,
    // recover() also sets tornTail when the damage is corruption (forced past); here it means what
    // RecoveryReport documents: a damaged record that is a normal crash artifact.
    tornTail: r.tornTail && !r.corruption, endReason: r.endReason, clean: r.clean,
    corruption: r.corruption ? { ...r.corruption } : null, brokenCopy: r.brokenCopy, staleControl: r.staleControl,
    filesTouched: r.filesTouched, cutBack: r.cutBack.map((c) => ({ name: c.name, size: c.size, from: c.from })),
    entries: r.entries.map((e) => ({ name: e.name, position: e.position, state: e.state, size: e.size })),
    durationMs: r.durationMs,
  };
}

function lockedError(p: StorePaths, live: number[], cause?: unknown): CpError {
  return new CpError('ELOCKED',
    `store ${p.root} is in use by live process${live.length === 1 ? '' : 'es'} ${live.length ? live.join(', ') : '(unknown pid)'}; ` +
    'stop it (or let it close the store) and run cp-recover again', { cause });
}

async function runRecovery(dir: string, mode: Exclude<Mode, 'inspect'>, o: Opts): Promise<number> {
  const t0 = performance.now();
  const dry = mode !== 'recover';
  const force = !!o.force;
  const lock: LockInfo = { taken: false, reclaimedFrom: [], live: [] };
  let report: RecoveryReport | null = null;
  let root = path.resolve(dir);
  let failure: Failure | null = null;
  let held: Lock | null = null;
  let compromised: CpError | null = null;
  const progress = progressFor(!o.json && process.stdout.isTTY === true && process.stderr.isTTY === true);
  try {
    const p = await probeStore(nodeIO, dir);
    root = p.root;
    let st;
    try {
      st = ownerStatus(p.meta);
    } catch (e) {
      throw fsError(e, p.meta);
    }
    lock.live = st.live;
    if (st.staleLock) lock.reclaimedFrom = st.owners.filter((x) => !x.alive).map((x) => x.pid);
    if (dry) {
      if (st.live.length) throw lockedError(p, st.live);
    } else {
      try {
        held = await acquireLock(p.meta, 10_000, (err) => { compromised = err; });
      } catch (e) {
        if (e instanceof CpError && e.code === 'ELOCKED') {
          const live = ownerStatus(p.meta).live;
          lock.live = live;
          throw lockedError(p, live, e);
        }
        throw fsError(e instanceof CpError && e.cause ? e.cause : e, p.meta);
      }
      lock.taken = true;
      if (!st.staleLock) lock.reclaimedFrom = [];
    }
    const rec = await recover({
      io: nodeIO, dir: root, create: false, dryRun: dry, force: mode === 'verify' ? false : force, onProgress: progress.onProgress,
    });
    report = rec.report;
    if (compromised) throw compromised;
  } catch (e) {
    failure = classify(e, force && mode !== 'verify');
  } finally {
    progress.finish();
    if (held) await held.release();
  }

  let problems: string[] = report ? uncleanReasons(report) : [];
  let exit: number = failure ? failure.exit : EXIT.OK;
  if (!failure && mode === 'verify' && report && !(report.clean && !report.corruption)) exit = EXIT.FAILURE;
  if (failure?.exit === EXIT.NEEDS_FORCE && mode === 'verify') problems = [failure.message];
  const durationMs = performance.now() - t0;

  if (o.json) {
    await stdout.line(JSON.stringify({
      tool: 'cp-recover', version: packageVersion(), mode, dir: root, ok: exit === EXIT.OK, exitCode: exit,
      dryRun: dry, clean: report ? report.clean && !report.corruption : false, problems, lock,
      durationMs, report: reportJson(report),
      error: failure ? { code: failure.code, message: failure.message, ...(failure.details ? { details: failure.details } : {}) } : null,
    }));
  } else if (report) {
    await printReport(root, mode, report, lock, durationMs, problems, force);
  }
  if (failure) {
    process.stderr.write(`cp-recover: ${failure.message}\n`);
    if (o.verbose) printStack(failure.cause);
  } else if (exit !== EXIT.OK && mode === 'verify') {
    process.stderr.write(`cp-recover: ${root} is not clean: ${problems.join('; ')}\n`);
  }
  return exit;
}

async function printReport(root: string, mode: Mode, r: RecoveryReport, lock: LockInfo, totalMs: number, problems: string[], force: boolean): Promise<void> {
  const dry = mode !== 'recover';
  const L = (k: string, v: string): Promise<void> => stdout.line(`  ${k.padEnd(16)}${v}`);
  if (mode === 'verify') {
    await stdout.line(r.clean && !r.corruption ? `${root}: clean at epoch ${r.epoch}` : `${root}: NOT clean (recovery would bring it to epoch ${r.epoch})`);
    for (const p of problems) await stdout.line(`  - ${p}`);
    return;
  }
  if (dry) {
    await stdout.line(`dry run: nothing was changed in ${root}`);
    await stdout.line(r.clean ? `the store is clean at epoch ${r.epoch}: recovery would only start a fresh journal segment` : `recovery would bring ${root} to epoch ${r.epoch}`);
  } else {
    await stdout.line(`recovered ${root} to epoch ${r.epoch} in ${fmtMs(r.durationMs)}${r.clean ? ' (it was clean)' : ''}`);
  }
  await L(dry ? 'to replay' : 'replayed', `${plural(r.replayedEpochs, 'epoch')} (${plural(r.replayedRecords, 'record')}, ${fmtBytes(r.replayedBytes)})`);
  await L(dry ? 'to discard' : 'discarded', `${plural(r.discardedRecords, 'uncommitted record')}, ${fmtBytes(r.discardedBytes)}`);
  await L('torn tail', r.corruption
    ? `no: the damaged record is corruption, not a torn tail (${r.endReason})`
    : r.tornTail ? `yes (the log ends in a damaged record: ${r.endReason})` : `no (the log ends: ${r.endReason})`);
  if (r.corruption) {
    const c = r.corruption;
    await L('CORRUPTION', `segment ${c.seq} offset ${c.offset} (${c.reason}): ${c.evidence}`);
    await L(dry ? 'would lose' : 'lost', lostEpochsText(c));
    if (r.brokenCopy) await L('journal copy', r.brokenCopy);
    else if (dry && force) await L('journal copy', 'would be made in .cpfile/journal.broken-<time>/');
  }
  const files = r.filesTouched;
  await L(dry ? 'files to touch' : 'files touched', files.length ? `${files.length}: ${files.slice(0, 20).join(', ')}${files.length > 20 ? ', ...' : ''}` : 'none');
  if (r.staleControl) await L('control file', `its newest slot is lost; ${dry ? 'would continue' : 'continued'} from the apply cursor the last commit records${dry ? '' : ' (repaired)'}`);
  if (r.cutBack.length) {
    const list = r.cutBack.slice(0, 10).map((c) => `${c.name} ${c.from} -> ${c.size} B`).join(', ');
    await L(dry ? 'to cut back' : 'cut back', `${plural(r.cutBack.length, 'file')} longer than committed (direct appends of an uncommitted epoch): ${list}${r.cutBack.length > 10 ? ', ...' : ''}`);
  }
  await L('open entries', r.entries.length ? `${r.entries.length}: ${r.entries.slice(0, 10).map((e) => `${e.name} @ ${e.position}`).join(', ')}${r.entries.length > 10 ? ', ...' : ''}` : 'none');
  if (lock.reclaimedFrom.length) await L('lock', `${dry ? 'would be reclaimed' : 'reclaimed'} from dead process ${lock.reclaimedFrom.join(', ')}`);
  await L('final epoch', String(r.epoch));
  await L('took', `${fmtMs(r.durationMs)} recovery, ${fmtMs(totalMs)} in all`);
}

// ---------------------------------------------------------------------------------------------
// inspect

function detailOf(r: InspectedRecord): string {
  const parts: string[] = [];
  if (r.name !== undefined) parts.push(JSON.stringify(r.name));
  if (r.from !== undefined) parts.push(`${JSON.stringify(r.from)} -> ${JSON.stringify(r.to)}`);
  if (r.range) parts.push(r.range.end === null ? `[${r.range.start},eof) size=${r.range.start}` : `[${r.range.start},${r.range.end})`);
  if (r.entries) {
    const shown = r.entries.slice(0, 4).map((e) => `${JSON.stringify(e.name)}@${e.position}${e.state === 'closed' ? ' closed' : e.size !== null ? ` size=${e.size}` : ''}`);
    parts.push(`${plural(r.entries.length, 'entry').replace('entrys', 'entries')}${shown.length ? `: ${shown.join(', ')}${r.entries.length > 4 ? ', ...' : ''}` : ''}`);
  }
  if (r.nextSeq !== undefined) parts.push(`next segment seq ${r.nextSeq}`);
  if (r.note) parts.push(`!! ${r.note}`);
  return parts.join(' ');
}

const INSPECT_HEAD = `${'#'.padStart(7)} ${'SEG'.padStart(5)} ${'OFFSET'.padStart(10)} ${'LEN'.padStart(8)}  ${'TYPE'.padEnd(8)} ${'EPOCH'.padStart(7)}  ${'CRC'.padEnd(7)} DETAIL`;

function recordLine(r: InspectedRecord): string {
  const v = (x: number | null): string => (x === null ? '-' : String(x));
  return `${String(r.n).padStart(7)} ${String(r.seq).padStart(5)} ${String(r.offset).padStart(10)} ${v(r.len).padStart(8)}  ${(r.type ?? '-').padEnd(8)} ${v(r.epoch).padStart(7)}  ${r.crc.padEnd(7)} ${detailOf(r)}`.trimEnd();
}

async function runInspect(dir: string, o: Opts): Promise<number> {
  let root = path.resolve(dir);
  let result: InspectResult | null = null;
  let failure: Failure | null = null;
  let jsonOpen = false;
  let count = 0;
  const openJson = async (): Promise<void> => {
    if (jsonOpen) return;
    jsonOpen = true;
    await stdout.write(`{"tool":"cp-recover","version":${JSON.stringify(packageVersion())},"mode":"inspect","dir":${JSON.stringify(root)},"records":[`);
  };
  let headed = false;
  try {
    const p = await probeStore(nodeIO, dir);
    root = p.root;
    let st;
    try {
      st = ownerStatus(p.meta);
    } catch (e) {
      throw fsError(e, p.meta);
    }
    if (st.live.length) throw lockedError(p, st.live);
    result = await inspectJournal({
      io: nodeIO, dir: root, from: o.from, limit: o.limit,
      onRecord: async (r) => {
        if (o.json) {
          await openJson();
          await stdout.write(`${count ? ',' : ''}\n${JSON.stringify(r)}`);
        } else {
          if (!headed) {
            headed = true;
            await stdout.line(INSPECT_HEAD);
          }
          await stdout.line(recordLine(r));
        }
        count++;
      },
    });
  } catch (e) {
    failure = classify(e, false);
  }
  const exit = failure ? failure.exit : EXIT.OK;
  if (o.json) {
    if (!jsonOpen && !failure) await openJson();
    const rest = {
      ok: exit === EXIT.OK, exitCode: exit,
      control: result?.control ?? null, controlProblem: result?.controlProblem ?? null,
      segments: result?.segments ?? [], invalidSegments: result?.invalidSegments ?? [], start: result?.start ?? null,
      summary: result ? summaryJson(result) : null,
      error: failure ? { code: failure.code, message: failure.message, ...(failure.details ? { details: failure.details } : {}) } : null,
    };
    if (jsonOpen) {
      const body = JSON.stringify(rest);
      await stdout.line(`${count ? '\n' : ''}],${body.slice(1)}`);
    } else {
      await stdout.line(JSON.stringify({ tool: 'cp-recover', version: packageVersion(), mode: 'inspect', dir: root, records: [], ...rest }));
    }
  } else if (result) {
    await printInspectSummary(result);
  }
  if (failure) {
    process.stderr.write(`cp-recover: ${failure.message}\n`);
    if (o.verbose) printStack(failure.cause);
  }
  return exit;
}

function summaryJson(r: InspectResult): Record<string, unknown> {
  const s = r.summary;
  return {
    ...s,
    verdict: s.verdict.ok ? { ok: true, report: reportJson(s.verdict.report), problems: s.verdict.problems } : s.verdict,
  };
}

async function printInspectSummary(r: InspectResult): Promise<void> {
  const s = r.summary;
  const L = (k: string, v: string): Promise<void> => stdout.line(`  ${k.padEnd(14)}${v}`);
  await stdout.line('');
  await stdout.line(`summary of ${r.dir}`);
  if (r.control) {
    const c = r.control;
    await L('control', `slot ${c.slot}, counter ${c.counter}, store ${c.storeId}, cursor at segment ${c.cursorSeq} offset ${c.cursorOffset}, applied epoch ${c.appliedEpoch}`);
  } else {
    await L('control', `UNUSABLE: ${r.controlProblem}`);
  }
  await L('segments', r.segments.length ? r.segments.map((x) => `${path.basename(x.file)} (seq ${x.seq}, ${fmtBytes(x.size)})`).join(', ') : 'none');
  for (const x of r.invalidSegments) await L('bad segment', `${path.basename(x.file)}: ${x.reason}`);
  if (r.start) await L('walked', `from segment ${r.start.seq} offset ${r.start.offset}${s.segmentsWalked.length ? ` through segment${s.segmentsWalked.length > 1 ? 's' : ''} ${s.segmentsWalked.join(', ')}` : ''}`);
  const types = Object.entries(s.byType).map(([k, v]) => `${k} ${v}`).join(', ');
  await L('records', `${s.records} valid (${fmtBytes(s.bytes)} on disk, ${fmtBytes(s.dataBytes)} of write data)${types ? `: ${types}` : ''}; ${s.shown} shown (from ${s.from}${s.limit !== null ? `, limit ${s.limit}` : ''})`);
  await L('epochs', s.firstEpoch === null ? 'none' : `first record of epoch ${s.firstEpoch}, ${plural(s.commits, 'commit')}, last committed epoch ${s.lastCommitEpoch ?? 'none'}; ${plural(s.uncommittedRecords, 'uncommitted record')} after it`);
  await L('end of log', `segment ${s.end.seq} offset ${s.end.offset}: ${s.end.reason} (${s.end.explanation})`);
  if (s.verdict.ok) {
    const rep = s.verdict.report;
    if (rep.corruption) {
      await L('verdict', `CORRUPTION, not a torn tail: ${rep.corruption.evidence}; recovery refuses (exit 4) and --force loses ${lostEpochsText(rep.corruption)}, keeping epoch ${rep.epoch}`);
    } else if (rep.clean) {
      await L('verdict', `clean at epoch ${rep.epoch}`);
    } else {
      await L('verdict', `${rep.tornTail ? 'torn tail (normal after a crash); ' : ''}recovery would bring the store to epoch ${rep.epoch}`);
    }
    for (const p of s.verdict.problems) if (!rep.corruption) await L('', `- ${p}`);
  } else {
    await L('verdict', `recovery fails: ${s.verdict.error.code}: ${s.verdict.error.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// main

function nonNegInt(v: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError('must be a non-negative integer');
  return Number(v);
}

export async function main(argv: string[]): Promise<number> {
  const version = packageVersion();
  const wantsJson = argv.includes('--json');
  const program = new Command()
    .name('cp-recover')
    .description('Recover, verify or inspect a cpfile store (a directory with a .cpfile/ journal).')
    .argument('<dir>', 'the store directory')
    .addOption(new Option('--dry-run', 'say what recovery would do; change nothing').conflicts(['inspect', 'verify']))
    .addOption(new Option('--verify', 'exit 0 only if the store is clean; change nothing').conflicts(['inspect', 'force']))
    .addOption(new Option('--inspect', 'dump the journal one line per record, then a summary; change nothing').conflicts(['force']))
    .option('--force', 'proceed past journal damage that is not a torn tail (the journal is copied aside first)')
    .option('--json', 'machine-readable output (one JSON object on stdout)')
    .addOption(new Option('--from <n>', '--inspect: first record number to show (0-based)').argParser(nonNegInt))
    .addOption(new Option('--limit <n>', '--inspect: show at most n records').argParser(nonNegInt))
    .option('--verbose', 'print stack traces with errors')
    .version(version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show this help')
    .addHelpText('after', HELP_AFTER)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: () => undefined, // printed by us, as one line
    });

  let dir: string;
  let o: Opts;
  try {
    program.parse(argv, { from: 'user' });
    dir = program.args[0]!;
    o = program.opts<Opts>();
    if ((o.from !== undefined || o.limit !== undefined) && !o.inspect) {
      throw new CommanderError(EXIT.USAGE, 'cp-recover.usage', 'error: --from and --limit only apply to --inspect');
    }
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')) {
      return EXIT.OK;
    }
    const f = classify(e, false);
    if (wantsJson) {
      await stdout.line(JSON.stringify({ tool: 'cp-recover', version, mode: null, dir: null, ok: false, exitCode: EXIT.USAGE, error: { code: f.code, message: f.message } }));
    }
    process.stderr.write(`cp-recover: ${f.message}\ntry 'cp-recover --help' for usage\n`);
    return EXIT.USAGE;
  }
  if (dir === '') {
    const message = 'the store directory must not be empty';
    if (wantsJson) {
      await stdout.line(JSON.stringify({ tool: 'cp-recover', version, mode: null, dir: null, ok: false, exitCode: EXIT.USAGE, error: { code: 'EUSAGE', message } }));
    }
    process.stderr.write(`cp-recover: ${message}\ntry 'cp-recover --help' for usage\n`);
    return EXIT.USAGE;
  }
  if (o.inspect) return runInspect(dir, o);
  return runRecovery(dir, o.verify ? 'verify' : o.dryRun ? 'dry-run' : 'recover', o);
}

const isMain = ((): boolean => {
  try {
    return process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (isMain) {
  // `cp-recover --inspect dir | head`: a closed pipe ends the output quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
    throw e;
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (e: unknown) => {
    process.stderr.write(`cp-recover: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.argv.includes('--verbose')) printStack(e);
    process.exitCode = EXIT.FAILURE;
  });
}
