/**
 * The oracle: after a crash and recovery, every file equals its state at the last acknowledged check,
 * or at a later check that was already issued (its commit record may have been durable). Epoch
 * numbers and the recovered catalog (open entries and their positions) must agree with that state.
 */
import { diffFiles, sameFiles, summarize, type Snapshot } from '../helpers/model.js';

export interface Recovered {
  files: Map<string, Buffer>;
  epoch: number;
  /** open entries from the recovery report (null: not checked) */
  entries: { name: string; position: number }[] | null;
}

export interface Expectation {
  snaps: Map<number, Snapshot>;
  /** last acknowledged check */
  lo: number;
  /** last issued check */
  hi: number;
  /** check k -> epoch number (default: epoch === base + k) */
  epochOf?: (k: number) => number;
  base?: number;
}

/** null when the recovered state is allowed; otherwise why not. */
export function judge(r: Recovered, x: Expectation): string | null {
  const epochOf = x.epochOf ?? ((k: number) => (x.base ?? 0) + k);
  const matches: number[] = [];
  for (let k = x.lo; k <= x.hi; k++) {
    const s = x.snaps.get(k);
    if (s && sameFiles(r.files, s.files)) matches.push(k);
  }
  if (matches.length === 0) {
    const lines = [`recovered files match no check in [${x.lo}, ${x.hi}] (recovered epoch ${r.epoch})`];
    for (const k of new Set([x.lo, x.hi])) {
      const s = x.snaps.get(k);
      if (s) lines.push(`  vs check ${k}: ${diffFiles(r.files, s.files).join('; ')}`);
    }
    lines.push(`  recovered: ${summarize(r.files)}`);
    return lines.join('\n');
  }
  const k = matches.find((m) => epochOf(m) === r.epoch);
  if (k === undefined) {
    return `recovered epoch ${r.epoch} but the files are those of check(s) ${matches.join(', ')} (epochs ${matches.map(epochOf).join(', ')}); allowed [${x.lo}, ${x.hi}]`;
  }
  if (r.entries) {
    const want = x.snaps.get(k)!.open;
    const got = new Map(r.entries.map((e) => [e.name, e.position]));
    const bad: string[] = [];
    for (const [n, p] of want) if (got.get(n) !== p) bad.push(`${n}: expected open at ${p}, got ${got.has(n) ? got.get(n) : 'not open'}`);
    for (const [n, p] of got) if (!want.has(n)) bad.push(`${n}: recovered open at ${p}, expected closed`);
    if (bad.length) return `recovered catalog differs from check ${k}: ${bad.join('; ')}`;
  }
  return null;
}
