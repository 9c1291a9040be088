/**
 * cp-recover's output: the text summaries and the JSON shapes of recovery's report and of an
 * inspection (tools/cp-recover.ts parses arguments, takes the lock and runs; this file only prints).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { InDoubtReport, RecoveryReport } from '../lib/recovery/index.js';
import { lostEpochsText } from '../lib/errors.js';
import { shellWord, type InspectedRecord, type InspectResult } from '../lib/recovery/inspect.js';

export type Mode = 'recover' | 'dry-run' | 'verify' | 'inspect';

/** --commit-prepared ID or --abort-prepared ID: the decision the operator gives for one prepared epoch. */
export interface Decide {
  id: string;
  decision: 'commit' | 'abort';
}

export interface LockInfo {
  taken: boolean;
  reclaimedFrom: number[];
  live: number[];
}

export class Out {
  constructor(private stream: NodeJS.WriteStream) {}
  async write(s: string): Promise<void> {
    if (!this.stream.write(s)) await new Promise<void>((resolve) => this.stream.once('drain', resolve));
  }
  line(s = ''): Promise<void> {
    return this.write(s + '\n');
  }
}
export const stdout = new Out(process.stdout);

export function packageVersion(): string {
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

export function printStack(e: unknown): void {
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

export function progressFor(enabled: boolean): { onProgress?: (done: number, total: number) => void; finish(): void } {
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
// the epoch in doubt

/** The two commands that decide epoch `d` of the store in `root`, for messages. */
export const decideCommands = (d: { id: string }, root: string): string =>
  `cp-recover --commit-prepared ${shellWord(d.id)} ${shellWord(root)} or cp-recover --abort-prepared ${shellWord(d.id)} ${shellWord(root)}`;

/** `want` names the epoch in doubt `d`. */
export const decides = (want: Decide | null, d: InDoubtReport | null): want is Decide => !!want && !!d && d.id === want.id;

/**
 * JSON's inDoubt: the decision recovery took, or in a dry run with --commit-prepared/--abort-prepared
 * naming the epoch the one it would take; null when nothing was decided.
 */
export function inDoubtJson(d: InDoubtReport | null, dry: boolean, want: Decide | null): Record<string, unknown> | null {
  if (!d) return null;
  const decision = dry ? (decides(want, d) ? want.decision : null) : d.decision;
  return { id: d.id, epoch: d.epoch, storeId: d.storeId, decision };
}

/** The summary's "in doubt" line. */
function inDoubtText(d: InDoubtReport, dry: boolean, want: Decide | null): string {
  const what = `epoch ${d.epoch}, prepared as ${JSON.stringify(d.id)}: `;
  const decision = dry ? (decides(want, d) ? want.decision : null) : d.decision;
  const flag = decision === 'commit' ? '--commit-prepared' : '--abort-prepared';
  if (decision === null) return `${what}its decision is not in the journal; recovery needs --commit-prepared ${shellWord(d.id)} or --abort-prepared ${shellWord(d.id)}`;
  if (decision === 'commit') return `${what}${dry ? 'would be committed' : 'committed'} (${flag})${dry ? ': its commit-prepared record is written before anything is applied' : ''}`;
  return `${what}${dry ? 'would be aborted' : 'aborted'} (${flag}): its records ${dry ? 'would be ' : ''}discarded`;
}

// ---------------------------------------------------------------------------------------------
// recover / dry-run / verify

export function reportJson(r: RecoveryReport | null): Record<string, unknown> | null {
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

export interface PrintInput {
  root: string;
  mode: Exclude<Mode, 'inspect'>;
  report: RecoveryReport;
  lock: LockInfo;
  totalMs: number;
  problems: string[];
  force: boolean;
  want: Decide | null;
}

/** The first line of a dry run's or a recovery's summary. */
function headLine(a: PrintInput): string {
  const { root, report: r } = a;
  const d = r.inDoubt;
  if (a.mode === 'recover') return `recovered ${root} to epoch ${r.epoch} in ${fmtMs(r.durationMs)}${r.clean ? ' (it was clean)' : ''}`;
  if (d && decides(a.want, d)) {
    const to = a.want.decision === 'commit' ? d.epoch : r.epoch;
    return `recovery would ${a.want.decision} epoch ${d.epoch} (prepared as ${JSON.stringify(d.id)}) and bring ${root} to epoch ${to}`;
  }
  if (d) return `recovery would stop: epoch ${d.epoch} is in doubt (prepared as ${JSON.stringify(d.id)}, its decision is not in the journal)`;
  return r.clean ? `the store is clean at epoch ${r.epoch}: recovery would only start a fresh journal segment` : `recovery would bring ${root} to epoch ${r.epoch}`;
}

interface Lines {
  replay: string;
  discard: string;
  files: string;
  /** The cut-back line, or null for none. */
  cut: string | null;
  final: string;
}

/**
 * A dry run reports what an abort of an epoch in doubt does: its records discarded, its direct
 * appends cut back. With --commit-prepared naming it they are replayed and kept instead, and the
 * store ends at that epoch.
 */
function replayLines(a: PrintInput): Lines {
  const r = a.report;
  const d = a.mode === 'recover' ? null : r.inDoubt;
  const replay = `${plural(r.replayedEpochs, 'epoch')} (${plural(r.replayedRecords, 'record')}, ${fmtBytes(r.replayedBytes)})`;
  const discard = `${plural(r.discardedRecords, 'uncommitted record')}, ${fmtBytes(r.discardedBytes)}`;
  const f = r.filesTouched;
  const files = f.length ? `${f.length}: ${f.slice(0, 20).join(', ')}${f.length > 20 ? ', ...' : ''}` : 'none';
  const list = `${r.cutBack.slice(0, 10).map((c) => `${c.name} ${c.from} -> ${c.size} B`).join(', ')}${r.cutBack.length > 10 ? ', ...' : ''}`;
  const cut = (why: string): string | null => (r.cutBack.length ? `${plural(r.cutBack.length, 'file')} longer than committed (${why}): ${list}` : null);
  if (!d) return { replay, discard, files, cut: cut('direct appends of an uncommitted epoch'), final: String(r.epoch) };
  const theirs = `${plural(r.discardedRecords, 'journal record')}, ${fmtBytes(r.discardedBytes)}`;
  const appends = `direct appends of the prepared epoch ${d.epoch}`;
  if (decides(a.want, d) && a.want.decision === 'commit') {
    return {
      replay: `${replay}, then the prepared epoch ${d.epoch} (${theirs})`, discard: 'nothing',
      files: f.length ? `${files}, and those of epoch ${d.epoch}` : `those of epoch ${d.epoch}`,
      cut: r.cutBack.length ? `none: a commit keeps the ${appends} (an abort would cut ${list})` : null, final: String(d.epoch),
    };
  }
  if (decides(a.want, d)) return { replay, discard: `${discard}: the prepared epoch ${d.epoch}'s`, files, cut: cut(appends), final: String(r.epoch) };
  return {
    replay, discard: `${discard}: the prepared epoch ${d.epoch}'s if it is aborted (replayed if it is committed)`, files,
    cut: cut(`${appends}: cut if it is aborted, kept if it is committed`), final: `${r.epoch} (${d.epoch} if epoch ${d.epoch} is committed)`,
  };
}

export async function printReport(a: PrintInput): Promise<void> {
  const { root, mode, report: r, lock, problems } = a;
  const dry = mode !== 'recover';
  const L = (k: string, v: string): Promise<void> => stdout.line(`  ${k.padEnd(16)}${v}`);
  if (mode === 'verify') {
    await stdout.line(r.clean && !r.corruption ? `${root}: clean at epoch ${r.epoch}` : `${root}: NOT clean (recovery would bring it to epoch ${r.epoch})`);
    for (const p of problems) await stdout.line(`  - ${p}`);
    return;
  }
  if (dry) await stdout.line(`dry run: nothing was changed in ${root}`);
  await stdout.line(headLine(a));
  if (r.inDoubt) await L('in doubt', inDoubtText(r.inDoubt, dry, a.want));
  const x = replayLines(a);
  await L(dry ? 'to replay' : 'replayed', x.replay);
  await L(dry ? 'to discard' : 'discarded', x.discard);
  await L('torn tail', r.corruption
    ? `no: the damaged record is corruption, not a torn tail (${r.endReason})`
    : r.tornTail ? `yes (the log ends in a damaged record: ${r.endReason})` : `no (the log ends: ${r.endReason})`);
  if (r.corruption) {
    const c = r.corruption;
    await L('CORRUPTION', `segment ${c.seq} offset ${c.offset} (${c.reason}): ${c.evidence}`);
    await L(dry ? 'would lose' : 'lost', lostEpochsText(c));
    if (r.brokenCopy) await L('journal copy', r.brokenCopy);
    else if (dry && a.force) await L('journal copy', 'would be made in .cpfile/journal.broken-<time>/');
  }
  await L(dry ? 'files to touch' : 'files touched', x.files);
  if (r.staleControl) await L('control file', `its newest slot is lost; ${dry ? 'would continue' : 'continued'} from the apply cursor the last commit records${dry ? '' : ' (repaired)'}`);
  if (x.cut) await L(dry ? 'to cut back' : 'cut back', x.cut);
  await L('open entries', r.entries.length ? `${r.entries.length}: ${r.entries.slice(0, 10).map((e) => `${e.name} @ ${e.position}`).join(', ')}${r.entries.length > 10 ? ', ...' : ''}` : 'none');
  if (lock.reclaimedFrom.length) await L('lock', `${dry ? 'would be reclaimed' : 'reclaimed'} from dead process ${lock.reclaimedFrom.join(', ')}`);
  await L('final epoch', x.final);
  await L('took', `${fmtMs(r.durationMs)} recovery, ${fmtMs(a.totalMs)} in all`);
}

// ---------------------------------------------------------------------------------------------
// inspect

function detailOf(r: InspectedRecord): string {
  const parts: string[] = [];
  if (r.id !== undefined) parts.push(`id ${JSON.stringify(r.id)}`);
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

/** The TYPE column holds the longest type name, 'commit-prepared'. */
const TYPE_WIDTH = 15;
export const INSPECT_HEAD = `${'#'.padStart(7)} ${'SEG'.padStart(5)} ${'OFFSET'.padStart(10)} ${'LEN'.padStart(8)}  ${'TYPE'.padEnd(TYPE_WIDTH)} ${'EPOCH'.padStart(7)}  ${'CRC'.padEnd(7)} DETAIL`;

export function recordLine(r: InspectedRecord): string {
  const v = (x: number | null): string => (x === null ? '-' : String(x));
  return `${String(r.n).padStart(7)} ${String(r.seq).padStart(5)} ${String(r.offset).padStart(10)} ${v(r.len).padStart(8)}  ${(r.type ?? '-').padEnd(TYPE_WIDTH)} ${v(r.epoch).padStart(7)}  ${r.crc.padEnd(7)} ${detailOf(r)}`.trimEnd();
}

export function summaryJson(r: InspectResult): Record<string, unknown> {
  const s = r.summary;
  return {
    ...s,
    verdict: s.verdict.ok ? { ok: true, report: reportJson(s.verdict.report), problems: s.verdict.problems } : s.verdict,
  };
}

/** inspect's inDoubt: what recovery's verdict says of the epoch the journal leaves prepared. */
export function inspectInDoubt(r: InspectResult | null): Record<string, unknown> | null {
  const v = r?.summary.verdict;
  return v && v.ok ? inDoubtJson(v.report.inDoubt, true, null) : null;
}

export async function printInspectSummary(r: InspectResult): Promise<void> {
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
  await L('segments', r.segments.length ? r.segments.map((x) => `${path.basename(x.file)} (seq ${x.seq}, ${fmtBytes(x.size)}${x.mark !== null ? `, written below ${fmtBytes(x.mark)}` : ''})`).join(', ') : 'none');
  for (const x of r.invalidSegments) await L('bad segment', `${path.basename(x.file)}: ${x.reason}`);
  if (r.start) await L('walked', `from segment ${r.start.seq} offset ${r.start.offset}${s.segmentsWalked.length ? ` through segment${s.segmentsWalked.length > 1 ? 's' : ''} ${s.segmentsWalked.join(', ')}` : ''}`);
  const types = Object.entries(s.byType).map(([k, v]) => `${k} ${v}`).join(', ');
  await L('records', `${s.records} valid (${fmtBytes(s.bytes)} on disk, ${fmtBytes(s.dataBytes)} of write data)${types ? `: ${types}` : ''}; ${s.shown} shown (from ${s.from}${s.limit !== null ? `, limit ${s.limit}` : ''})`);
  const prepared = s.prepares ? `, ${plural(s.prepares, 'prepare')}` : '';
  await L('epochs', s.firstEpoch === null ? 'none' : `first record of epoch ${s.firstEpoch}, ${plural(s.commits, 'commit')}${prepared}, last committed epoch ${s.lastCommitEpoch ?? 'none'}; ${plural(s.uncommittedRecords, 'uncommitted record')} after it`);
  if (s.inDoubt) {
    const d = s.inDoubt;
    await L('in doubt', `epoch ${d.epoch}, prepared as ${JSON.stringify(d.id)} (segment ${d.seq} offset ${d.offset}): the log ends before its decision`);
  }
  await L('end of log', `segment ${s.end.seq} offset ${s.end.offset}: ${s.end.reason} (${s.end.explanation})`);
  await printVerdict(L, s.verdict, r.dir);
}

async function printVerdict(L: (k: string, v: string) => Promise<void>, v: InspectResult['summary']['verdict'], root: string): Promise<void> {
  if (!v.ok) return L('verdict', `recovery fails: ${v.error.code}: ${v.error.message}`);
  const rep = v.report;
  if (rep.corruption) {
    await L('verdict', `CORRUPTION, not a torn tail: ${rep.corruption.evidence}; recovery refuses (exit 4) and --force loses ${lostEpochsText(rep.corruption)}, keeping epoch ${rep.epoch}`);
  } else if (rep.inDoubt) {
    await L('verdict', `IN DOUBT: recovery stops (exit 5) until epoch ${rep.inDoubt.epoch} is decided: ${decideCommands(rep.inDoubt, root)}`);
  } else if (rep.clean) {
    await L('verdict', `clean at epoch ${rep.epoch}`);
  } else {
    await L('verdict', `${rep.tornTail ? 'torn tail (normal after a crash); ' : ''}recovery would bring the store to epoch ${rep.epoch}`);
  }
  for (const p of v.problems) if (!rep.corruption) await L('', `- ${p}`);
}
