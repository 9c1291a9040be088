#!/usr/bin/env node
/**
 * cp-recover: the operator's tool for a cpfile store.
 *
 *   cp-recover <dir>             take the store's lock, recover it (the code openStore runs), print a summary
 *   cp-recover --dry-run <dir>   say what recovery would do; change nothing
 *   cp-recover --verify <dir>    exit 0 only if the store is clean; change nothing
 *   cp-recover --inspect <dir>   dump the journal one line per record; change nothing
 *   cp-recover --commit-prepared <id> <dir>, --abort-prepared <id> <dir>
 *                                recover, deciding the epoch a crash left prepared (two-phase) and in doubt
 *
 * Recovery logic lives in lib/recovery/index.ts (recover()), inspection in lib/recovery/inspect.ts; this file only
 * parses arguments, takes the lock and runs; cp-recover-output.ts prints, cp-recover-errors.ts maps errors to exit
 * codes, cp-recover-help.ts is the reference `cp-recover --help` prints (exit codes and JSON keys).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { recover, type InDoubtReport, type RecoverOptions, type RecoveryReport } from '../lib/recovery/index.js';
import { acquireLock, ownerStatus, type Lock } from '../lib/lock.js';
import { nodeIO } from '../lib/io.js';
import { CpError } from '../lib/errors.js';
import { MAX_PREPARE_ID_BYTES, validPrepareId } from '../lib/format.js';
import { probeStore, uncleanReasons, inspectJournal, fsError, type InspectResult, type StorePaths } from '../lib/recovery/inspect.js';
import { HELP_AFTER } from './cp-recover-help.js';
import { EXIT, NotInDoubt, classify, inDoubtFailure, inDoubtOf, lockedError, type Failure } from './cp-recover-errors.js';
import {
  stdout, packageVersion, printStack, progressFor, reportJson, printReport, inDoubtJson, decides,
  INSPECT_HEAD, recordLine, summaryJson, inspectInDoubt, printInspectSummary, type Decide, type LockInfo, type Mode,
} from './cp-recover-output.js';

export { EXIT };

interface Opts {
  dryRun?: boolean;
  inspect?: boolean;
  verify?: boolean;
  force?: boolean;
  json?: boolean;
  from?: number;
  limit?: number;
  verbose?: boolean;
  commitPrepared?: string;
  abortPrepared?: string;
}

// ---------------------------------------------------------------------------------------------
// recover / dry-run / verify

/** Who owns the store (a live owner stops every mode); to recover, take its lock. */
async function lockStore(p: StorePaths, dry: boolean, lock: LockInfo, onCompromised: (err: CpError) => void): Promise<Lock | null> {
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
    return null;
  }
  let held: Lock;
  try {
    held = await acquireLock(p.meta, 10_000, onCompromised);
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
  return held;
}

interface Run {
  root: string;
  report: RecoveryReport | null;
  /** The epoch the journal left in doubt, as the last recovery run reported it (or its EINDOUBT named it). */
  inDoubt: InDoubtReport | null;
}

/**
 * Recover (or dry-run) the store. With --commit-prepared/--abort-prepared a dry run comes first and
 * checks that the flag names the store's epoch in doubt: recovery of a store with none would never
 * ask, and would run to the end. The resolver then answers for that id only (recovery asks before
 * it changes anything, and stops with EINDOUBT when the resolver throws).
 */
async function recoverStore(run: Run, base: RecoverOptions, want: Decide | null): Promise<void> {
  if (want) {
    const pre = await recover({ ...base, dryRun: true });
    run.inDoubt = pre.report.inDoubt;
    if (base.dryRun) run.report = pre.report;
    if (!decides(want, pre.report.inDoubt)) throw new NotInDoubt(run.root, want, pre.report.inDoubt);
    if (base.dryRun) return;
  }
  const rec = await recover({
    ...base,
    resolveInDoubt: want ? (q) => {
      if (q.id !== want.id) throw new NotInDoubt(run.root, want, q);
      return want.decision;
    } : undefined,
  });
  run.report = rec.report;
  run.inDoubt = rec.report.inDoubt;
}

async function runRecovery(dir: string, mode: Exclude<Mode, 'inspect'>, o: Opts, want: Decide | null): Promise<number> {
  const t0 = performance.now();
  const dry = mode !== 'recover';
  const force = !!o.force;
  const lock: LockInfo = { taken: false, reclaimedFrom: [], live: [] };
  const run: Run = { root: path.resolve(dir), report: null, inDoubt: null };
  let failure: Failure | null = null;
  let held: Lock | null = null;
  let compromised: CpError | null = null;
  const progress = progressFor(!o.json && process.stdout.isTTY === true && process.stderr.isTTY === true);
  try {
    const p = await probeStore(nodeIO, dir);
    run.root = p.root;
    held = await lockStore(p, dry, lock, (err) => { compromised = err; });
    const forced = mode === 'verify' ? false : force;
    await recoverStore(run, { io: nodeIO, dir: run.root, create: false, dryRun: dry, force: forced, onProgress: progress.onProgress }, want);
    if (compromised) throw compromised;
  } catch (e) {
    failure = classify(e, force && mode !== 'verify', run.root, dry);
    run.inDoubt ??= inDoubtOf(e, run.root);
  } finally {
    progress.finish();
    if (held) await held.release();
  }
  const { root, report } = run;
  // A dry run or a verify of a store in doubt: recovery would stop there (exit 5), unless the flag decides it.
  if (!failure && dry && report?.inDoubt && !decides(want, report.inDoubt)) failure = inDoubtFailure(root, report.inDoubt, true);

  let problems: string[] = report ? uncleanReasons(report) : [];
  let exit: number = failure ? failure.exit : EXIT.OK;
  if (!failure && mode === 'verify' && report && !(report.clean && !report.corruption)) exit = EXIT.FAILURE;
  if (failure?.exit === EXIT.NEEDS_FORCE && mode === 'verify') problems = [failure.message];
  const durationMs = performance.now() - t0;

  if (o.json) {
    await stdout.line(JSON.stringify({
      tool: 'cp-recover', version: packageVersion(), mode, dir: root, ok: exit === EXIT.OK, exitCode: exit,
      dryRun: dry, clean: report ? report.clean && !report.corruption : false, problems, lock,
      durationMs, inDoubt: inDoubtJson(run.inDoubt, dry, want), report: reportJson(report),
      error: failure ? { code: failure.code, message: failure.message, ...(failure.details ? { details: failure.details } : {}) } : null,
    }));
  } else if (report) {
    await printReport({ root, mode, report, lock, totalMs: durationMs, problems, force, want });
  }
  if (failure) {
    process.stderr.write(`cp-recover: ${failure.message}\n`);
    if (o.verbose) printStack(failure.cause);
  } else if (exit !== EXIT.OK && mode === 'verify') {
    process.stderr.write(`cp-recover: ${root} is not clean: ${problems.join('; ')}\n`);
  }
  return exit;
}

// ---------------------------------------------------------------------------------------------
// inspect

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
      summary: result ? summaryJson(result) : null, inDoubt: inspectInDoubt(result),
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

// ---------------------------------------------------------------------------------------------
// main

function nonNegInt(v: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError('must be a non-negative integer');
  return Number(v);
}

function preparedId(v: string): string {
  if (!validPrepareId(v)) throw new InvalidArgumentError(`a prepared epoch's id is 1 to ${MAX_PREPARE_ID_BYTES} bytes of UTF-8 without control characters`);
  return v;
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
    .addOption(new Option('--commit-prepared <id>', 'recover, committing the epoch in doubt prepared as <id> (two-phase)')
      .argParser(preparedId).conflicts(['abortPrepared', 'verify', 'inspect']))
    .addOption(new Option('--abort-prepared <id>', 'recover, aborting the epoch in doubt prepared as <id> (two-phase)')
      .argParser(preparedId).conflicts(['verify', 'inspect']))
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
  const want: Decide | null = o.commitPrepared !== undefined ? { id: o.commitPrepared, decision: 'commit' }
    : o.abortPrepared !== undefined ? { id: o.abortPrepared, decision: 'abort' } : null;
  return runRecovery(dir, o.verify ? 'verify' : o.dryRun ? 'dry-run' : 'recover', o, want);
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
