/**
 * Journal corruption fuzzing with fast-check. One unit = one journal written by a real workload on the
 * simulated file system (every check acknowledged, maybe an uncommitted tail after the last one),
 * taken as a crash would leave it. fast-check then draws damage: bit flips, zeroed (lost) ranges,
 * garbage ranges, truncated segment files, duplicated and swapped ranges (often whole records, so
 * that the copies are valid records), and damage to the control file. Recovery on the damaged copy
 * must:
 *   - never throw anything but a CpError, never touch anything outside the store;
 *   - end in the last acknowledged epoch E exactly (files, epoch number, open entries), or reject with
 *     ECORRUPT (EFORMAT for a damaged format version);
 *   - roll back to E-1 only when that is indistinguishable from a torn write: every damaged byte lies
 *     in epoch E's records (or past them) and no record of a later epoch survives that would prove
 *     epoch E was durable.
 * Rejections of damage that only hit bytes outside the live log are counted as false alarms (an
 * availability cost, not a safety violation).
 */
import fc from 'fast-check';
import * as path from 'node:path';
import { openStore } from '../../lib/index.js';
import { walkLog } from '../../lib/journal/reader.js';
import { listSegments } from '../../lib/journal/segments.js';
import { SegmentFiles } from '../../lib/journal/segment-files.js';
import { readControl } from '../../lib/journal/control.js';
import {
  MARK_OFFSET, MARK_SIZE, RECORD_HEADER_SIZE, RECORD_TYPE_NAMES, recordCap, recordSize, SEGMENT_HEADER_SIZE, encodeMark, segmentFileName,
} from '../../lib/format.js';
import { Rng, mixSeed } from '../helpers/model.js';
import { SimFS, cloneImage, type Image } from './simfs.js';
import { headOf } from './marks.js';
import { drive, errText, type Snapshot } from './driver.js';
import { judge } from './oracle.js';
import { withSeededRandom } from './determinism.js';
import { guardUnit, recoverImage, directAppendMinOf, applySliceOf, markStepOf, unitSeed, sig, report, countDims, STORE, isCpError, DEFAULT_EDGE, type KindOptions, type KindResult, type Violation, type DimCount } from './common.js';
import { isEdgeUnit, edgeFuzzWorkload } from './edges.js';

const META = `${STORE}/.cpfile`;
const JOURNAL = `${META}/journal`;
const CONTROL = `${META}/control`;

interface Rec {
  file: number; // segment file index
  offset: number;
  size: number;
  type: number;
  epoch: number;
  ord: number; // position in log order
}

interface Base {
  img: Image;
  snaps: Map<number, Snapshot>;
  epoch: number; // last acknowledged epoch E
  recs: Rec[];
  files: { index: number; size: number }[]; // every segment file
  epochStart: number; // ord of the first record of epoch E (Infinity when E has no records)
  tail: Rec[]; // records after the last COMMIT
  segSize: number;
  /** appliedEpoch of the control file's current slot */
  applied: number;
  desc: string;
}

async function buildBase(seed: number, edgeRate = 0): Promise<Base> {
  const rng = new Rng(seed);
  const segSize = rng.chance(0.5) ? 64 * 1024 : 256 * 1024;
  const ops = rng.range(15, 60);
  const applyThreshold = rng.chance(0.7) ? 2 ** 40 : 0;
  const sim = new SimFS();
  sim.mkdirSync(STORE);
  const store = await openStore(STORE, { io: sim, noLock: true, segmentSize: segSize, applyThreshold, applyDelay: 3600_000, directAppendMin: directAppendMinOf(seed), applySlice: applySliceOf(seed), markStep: markStepOf(seed) });
  let run: { snaps: Map<number, Snapshot>; acked: number };
  let edgeDesc = '';
  if (isEdgeUnit(seed, edgeRate)) {
    // an edge journal: hundreds to thousands of entries (catalogs across segments), long names or short
    const e = new Rng(mixSeed(seed, 0xf0e));
    const many = e.range(300, 1500);
    const nameLen = e.chance(0.5) ? e.range(200, 255) : 0;
    edgeDesc = `edge journal: ${many} entries, names ${nameLen || 'short'}; `;
    const r = await edgeFuzzWorkload(store, sim, seed, many, nameLen);
    if (r.error) throw new Error(`fuzz edge base workload ${seed} (${edgeDesc}segmentSize ${segSize}) failed: ${r.error}`);
    run = r;
  } else {
    const r = await drive(store, { seed, ops, unawaited: 0 });
    if (r.error) throw new Error(`fuzz base workload ${seed} failed: op ${r.error.i} ${r.error.op}: ${errText(r.error.err)}`);
    run = r;
  }
  // let the last batch reach the flusher, as a process crash would leave it
  await (store as unknown as { writer: { flush(): Promise<unknown> } }).writer.flush();
  const img = sim.image();

  // analyse the live log
  const ctl = await readControl(sim, CONTROL);
  if (ctl.kind !== 'ok') throw new Error('fuzz base: no control');
  const listing = await listSegments(sim, JOURNAL, ctl.state.storeId);
  const sf = new SegmentFiles(sim);
  const recs: Rec[] = [];
  await walkLog(listing.bySeq, sf, ctl.state.cursorSeq, 4096, (r) => {
    recs.push({ file: r.index, offset: r.offset, size: r.size, type: r.header.type, epoch: r.header.epoch, ord: recs.length });
  });
  await sf.closeAll();
  const E = run.acked;
  let lastCommit = -1;
  recs.forEach((r, i) => {
    if (r.type === 6) lastCommit = i;
  });
  const tail = recs.slice(lastCommit + 1).filter((r) => r.type !== 8 && r.type !== 9);
  const firstE = recs.find((r) => r.epoch === E && r.type !== 8);
  const files = listing.indexes.map((index) => ({ index, size: sim.readFileSync(path.posix.join(JOURNAL, segmentFileName(index)))!.length }));
  const desc = `${edgeDesc}segmentSize ${segSize}, ops ${ops}, applyThreshold ${applyThreshold}, directAppendMin ${directAppendMinOf(seed)}, applySlice ${applySliceOf(seed) ?? 'default'}, markStep ${markStepOf(seed) ?? 'default'}, acked epoch ${E}, applied epoch ${ctl.state.appliedEpoch}, ${recs.length} live records ` +
    `(${recs.map((r) => `${RECORD_TYPE_NAMES[r.type]}@${r.file}:${r.offset}/e${r.epoch}`).slice(-6).join(' ')}), tail ${tail.length}`;
  return { img, snaps: run.snaps, epoch: E, recs, files, epochStart: firstE ? firstE.ord : Infinity, tail, segSize, applied: ctl.state.appliedEpoch, desc };
}

// ---------------------------------------------------------------------------------------------
// damage

interface Target {
  file: number; // index into base.files, or -1 for the control file
  off: number;
}

export type Damage =
  | { t: 'flip'; at: Target; bit: number }
  | { t: 'zero'; at: Target; len: number }
  | { t: 'garbage'; at: Target; bytes: number[] }
  | { t: 'truncate'; at: Target }
  | { t: 'dup'; from: Target; to: Target; len: number }
  | { t: 'swap'; a: Target; b: Target; len: number }
  /** a whole segment file lost (its directory entry gone) */
  | { t: 'drop'; file: number }
  /**
   * a lost write of the header block (FORMAT.md R19): the segment's high-water mark goes back to a
   * lower value, valid and of this life (`frac` of the way from 4 KiB to the mark it had)
   */
  | { t: 'stale'; file: number; frac: number }
  /** the same, the mark back at `end`: the end of a live record, or a few bytes into it (`at`: its segment file and offset) */
  | { t: 'staleAt'; at: Target; end: number };

function damageArb(b: Base): fc.Arbitrary<Damage[]> {
  const fileOfIndex = new Map(b.files.map((f, i) => [f.index, i]));
  const live = b.recs.map((r) => ({ file: fileOfIndex.get(r.file)!, off: r.offset, size: r.size }));
  const fieldOffsets = [0, 4, 8, 12, 13, 16, 20, 24, 26, 32];
  const recordPoint: fc.Arbitrary<Target> = fc.tuple(fc.nat({ max: Math.max(0, live.length - 1) }), fc.constantFrom(...fieldOffsets), fc.boolean())
    .map(([i, f, atEnd]) => {
      const r = live[i];
      return { file: r.file, off: atEnd ? r.off + r.size - 1 - (f % 8) : r.off + Math.min(f, r.size - 1) };
    });
  const liveUniform: fc.Arbitrary<Target> = fc.tuple(fc.nat({ max: Math.max(0, live.length - 1) }), fc.nat({ max: 1 << 20 }))
    .map(([i, x]) => ({ file: live[i].file, off: live[i].off + (x % live[i].size) }));
  const anywhere: fc.Arbitrary<Target> = fc.tuple(fc.nat({ max: b.files.length - 1 }), fc.nat({ max: 1 << 30 }))
    .map(([f, x]) => ({ file: f, off: x % b.files[f].size }));
  // The header, or (version 5) the segment's high-water mark after it (R19): a damaged mark must
  // never change a verdict, since it reads as no mark and the scan for later epochs reads the whole segment.
  const header: fc.Arbitrary<Target> = fc.tuple(fc.nat({ max: b.files.length - 1 }), fc.nat({ max: SEGMENT_HEADER_SIZE + MARK_SIZE - 1 }))
    .map(([f, x]) => ({ file: f, off: x < SEGMENT_HEADER_SIZE ? x : MARK_OFFSET + x - SEGMENT_HEADER_SIZE }));
  const control: fc.Arbitrary<Target> = fc.nat({ max: 1023 }).map((x) => ({ file: -1, off: x }));
  const target = live.length
    ? fc.oneof({ weight: 4, arbitrary: recordPoint }, { weight: 4, arbitrary: liveUniform }, { weight: 2, arbitrary: anywhere }, { weight: 1, arbitrary: header })
    : fc.oneof(anywhere, header);
  const recordStart: fc.Arbitrary<{ at: Target; size: number }> = live.length
    ? fc.nat({ max: live.length - 1 }).map((i) => ({ at: { file: live[i].file, off: live[i].off }, size: live[i].size }))
    : anywhere.map((at) => ({ at, size: 64 }));
  // where a copied record would continue the log: right after the last live record
  const last = live[live.length - 1];
  const logEnd: fc.Arbitrary<Target> = last ? fc.constant({ file: last.file, off: last.off + last.size }) : anywhere;

  const one: fc.Arbitrary<Damage> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ t: fc.constant('flip' as const), at: target, bit: fc.nat({ max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('zero' as const), at: target, len: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(512), fc.integer({ min: 1, max: 4096 })) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('garbage' as const), at: target, bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 200 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('truncate' as const), at: target }) },
    {
      weight: 3, arbitrary: fc.record({ src: recordStart, n: fc.integer({ min: 1, max: 3 }), to: fc.oneof(logEnd, recordStart.map((r) => r.at), target) })
        .map(({ src, n, to }) => ({ t: 'dup' as const, from: src.at, to, len: src.size * n })),
    },
    {
      weight: 2, arbitrary: fc.record({ a: recordStart, b: recordStart })
        .map(({ a, b: bb }) => ({ t: 'swap' as const, a: a.at, b: bb.at, len: Math.min(a.size, bb.size) })),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('dup' as const), from: target, to: target, len: fc.integer({ min: 1, max: 2048 }) }) },
  );
  // The control file is damaged on its own (a single fault): with one slot bad, the other must do.
  const controlOnly = fc.array(fc.record({ t: fc.constant('flip' as const), at: control, bit: fc.nat({ max: 7 }) }), { minLength: 1, maxLength: 2 });
  // A lost write of a segment's header block: its mark back at a lower value, alone or with damage.
  const stale: fc.Arbitrary<Damage> = fc.record({ t: fc.constant('stale' as const), file: fc.nat({ max: b.files.length - 1 }), frac: fc.double({ min: 0, max: 1, noNaN: true }) });
  // ... or back inside or at the end of a live record, which then rots: the scan must still find the
  // later epochs (the record after it lies within the scan's reach past the mark, FORMAT.md R19).
  const staleAtRec: fc.Arbitrary<Damage[]> = live.length
    ? fc.tuple(fc.nat({ max: live.length - 1 }), fc.nat({ max: 1 << 20 }), fc.nat({ max: 7 }), fc.constantFrom(0, 8, 16, 24, -1)).map(([i, x, bit, k]) => [
      { t: 'staleAt' as const, at: { file: live[i].file, off: live[i].off }, end: k < 0 ? live[i].off + live[i].size : Math.max(4096, live[i].off + k) },
      { t: 'flip' as const, at: { file: live[i].file, off: live[i].off + (x % live[i].size) }, bit },
    ])
    : fc.constant([]);
  const withStale = fc.oneof(fc.tuple(stale, fc.array(one, { minLength: 0, maxLength: 2 })).map(([s, rest]) => [s, ...rest]), staleAtRec);
  // A lost segment file (a later one, say, of an epoch that spans segments): on its own.
  const dropOnly = fc.nat({ max: b.files.length - 1 }).map((file) => [{ t: 'drop' as const, file }]);
  return b.files.length > 1
    ? fc.oneof({ weight: 9, arbitrary: fc.array(one, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: controlOnly }, { weight: 1, arbitrary: dropOnly }, { weight: 1, arbitrary: withStale })
    : fc.oneof({ weight: 9, arbitrary: fc.array(one, { minLength: 1, maxLength: 3 }) }, { weight: 1, arbitrary: controlOnly }, { weight: 1, arbitrary: withStale });
}

/** Apply damage to a copy of the base image; returns the changed byte ranges per file (-1: control). */
function applyDamage(b: Base, img: Image, damage: Damage[]): Map<number, [number, number][]> {
  const sim = new SimFS(img, true);
  const pathOf = (file: number): string => (file < 0 ? CONTROL : path.posix.join(JOURNAL, segmentFileName(b.files[file].index)));
  const content = new Map<number, Buffer>();
  const get = (file: number): Buffer => {
    let c = content.get(file);
    if (!c) content.set(file, (c = sim.readFileSync(pathOf(file)) ?? Buffer.alloc(0)));
    return c;
  };
  const dropped = new Set<number>();
  for (const d of damage) {
    switch (d.t) {
      case 'drop':
        dropped.add(d.file);
        break;
      case 'stale':
      case 'staleAt': {
        // the mark back to a lower value of the same life: only where there is a valid one to set back
        const c = get(d.t === 'stale' ? d.file : d.at.file);
        const h = headOf(c);
        if (!h || h.mark === null || (d.t === 'stale' && h.mark <= 8192)) break;
        const mark = d.t === 'stale' ? 4096 + Math.floor((d.frac * (h.mark - 8192)) / 4096) * 4096 : d.end;
        if (mark >= h.mark) break;
        encodeMark(h.header.salt, h.header.seq, mark).copy(c, MARK_OFFSET);
        break;
      }
      case 'flip': {
        const c = get(d.at.file);
        if (d.at.off < c.length) {
          c[d.at.off] ^= 1 << d.bit;
        }
        break;
      }
      case 'zero': {
        const c = get(d.at.file);
        const z = Math.min(c.length, d.at.off + d.len);
        c.fill(0, d.at.off, z);
        break;
      }
      case 'garbage': {
        const c = get(d.at.file);
        const n = Math.max(0, Math.min(d.bytes.length, c.length - d.at.off));
        for (let i = 0; i < n; i++) c[d.at.off + i] = d.bytes[i];
        break;
      }
      case 'truncate': {
        const c = get(d.at.file);
        content.set(d.at.file, c.subarray(0, d.at.off));
        break;
      }
      case 'dup': {
        const src = get(d.from.file);
        const piece = Buffer.from(src.subarray(d.from.off, Math.min(src.length, d.from.off + d.len)));
        const dst = get(d.to.file);
        const n = Math.min(piece.length, dst.length - d.to.off);
        if (n > 0) piece.copy(dst, d.to.off, 0, n);
        break;
      }
      case 'swap': {
        const ca = get(d.a.file);
        const cb = get(d.b.file);
        const len = Math.min(d.len, ca.length - d.a.off, cb.length - d.b.off);
        if (len <= 0 || (d.a.file === d.b.file && Math.abs(d.a.off - d.b.off) < len)) break;
        const pa = Buffer.from(ca.subarray(d.a.off, d.a.off + len));
        const pb = Buffer.from(cb.subarray(d.b.off, d.b.off + len));
        pb.copy(ca, d.a.off);
        pa.copy(cb, d.b.off);
        break;
      }
    }
  }
  // What actually changed (zeroing zeros or copying equal bytes changes nothing): exact byte ranges.
  const exact = new Map<number, [number, number][]>();
  for (const [file, c] of content) {
    const before = sim.readFileSync(pathOf(file)) ?? Buffer.alloc(0);
    const ranges: [number, number][] = [];
    const n = Math.min(before.length, c.length);
    for (let i = 0; i < n; i++) {
      if (before[i] === c[i]) continue;
      let j = i;
      while (j < n && before[j] !== c[j]) j++;
      ranges.push([i, j]);
      i = j;
    }
    if (before.length !== c.length) ranges.push([n, Math.max(before.length, c.length)]);
    if (ranges.length) exact.set(file, ranges);
    sim.writeFileSync(pathOf(file), c);
  }
  for (const file of dropped) {
    const before = sim.readFileSync(pathOf(file));
    if (!before) continue;
    exact.set(file, [[0, Math.max(1, before.length)]]);
    sim.removeSync(pathOf(file));
  }
  const out = sim.image();
  img.nodes = out.nodes;
  return exact;
}

interface Verdict {
  outcome: 'exact' | 'rejected' | 'false-alarm' | 'tail-rollback' | 'suffix-lost' | 'unchanged' | 'violation';
  violation: string | null;
}

/** Whether every changed byte lies in a segment's high-water mark (FORMAT.md R19). */
function onlyMarks(changed: Map<number, [number, number][]>): boolean {
  for (const [file, ranges] of changed) {
    if (file < 0 || ranges.some(([a, z]) => a < MARK_OFFSET || z > MARK_OFFSET + MARK_SIZE)) return false;
  }
  return changed.size > 0;
}

/** Each segment file's high-water mark in `img` (null: none valid), by file index. */
function markOfFiles(img: Image): Map<number, number | null> {
  const out = new Map<number, number | null>();
  const sim = new SimFS(img, true);
  for (const name of sim.listSync(JOURNAL)) {
    const m = /^seg-(\d+)\.cpj$/.exec(name);
    if (!m) continue;
    const c = sim.readFileSync(path.posix.join(JOURNAL, name));
    if (c) out.set(Number(m[1]), headOf(c)?.mark ?? null);
  }
  return out;
}

/** Which live records a set of changed ranges touches (headers count as their segment's first record). */
function touched(b: Base, changed: Map<number, [number, number][]>): { ords: number[]; control: boolean; dead: boolean } {
  const ords = new Set<number>();
  let control = false;
  for (const [file, ranges] of changed) {
    if (file < 0) {
      control = true;
      continue;
    }
    const idx = b.files[file].index;
    for (const [a, z] of ranges) {
      for (const r of b.recs) {
        if (r.file !== idx) continue;
        if (a < r.offset + r.size && z > r.offset) ords.add(r.ord);
      }
      if (a < SEGMENT_HEADER_SIZE) {
        const first = b.recs.find((r) => r.file === idx);
        if (first) ords.add(first.ord);
      }
    }
  }
  return { ords: [...ords].sort((x, y) => x - y), control, dead: ords.size === 0 && !control };
}

async function judgeCase(b: Base, damage: Damage[]): Promise<Verdict> {
  const img = cloneImage(b.img);
  const changed = applyDamage(b, img, damage);
  if (changed.size === 0) return { outcome: 'unchanged', violation: null };
  const t = touched(b, changed);
  const marks = markOfFiles(img);
  const r = await recoverImage(img, true, { segmentSize: b.segSize });
  if (r.sim.violations.length) return { outcome: 'violation', violation: `I/O outside the store: ${r.sim.violations.join('; ')}` };
  if (r.epoch === null) {
    if (!isCpError(r.error)) return { outcome: 'violation', violation: `recovery threw a non-CpError: ${errText(r.error)}` };
    if (r.error.code !== 'ECORRUPT' && r.error.code !== 'EFORMAT') {
      return { outcome: 'violation', violation: `recovery rejected with ${r.error.code}, not ECORRUPT: ${r.error.message}` };
    }
    // A mark that is damaged or stale, and nothing else, only changes how far the scan reads (R19).
    if (onlyMarks(changed)) return { outcome: 'violation', violation: `recovery rejected a store whose only damage is to segments' high-water marks: ${r.error.message}` };
    return { outcome: t.dead ? 'false-alarm' : 'rejected', violation: null };
  }
  const exact = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, { snaps: b.snaps, lo: b.epoch, hi: b.epoch });
  if (!exact) return { outcome: 'exact', violation: null };
  // A rollback to an earlier epoch j is allowed only when it is indistinguishable from a crash in
  // epoch j+1 (at most one epoch is ever in flight): no record of a later epoch survives where
  // recovery looks for evidence, and the control file does not say a later epoch was applied.
  const j = r.epoch;
  let why: string | null = null;
  if (j < b.epoch) {
    const floor = t.control ? 0 : b.applied;
    const ev = survivingEvidence(b, changed, j, marks);
    const cursorFile = b.files.findIndex((f) => f.index === b.recs[0]?.file);
    const cursorHeaderHit = cursorFile >= 0 && (changed.get(cursorFile) ?? []).some(([x]) => x < SEGMENT_HEADER_SIZE);
    if (cursorHeaderHit) why = 'the header of the segment holding the apply cursor was damaged: the cursor points into a segment that must exist';
    else if (j < floor) why = `the control file says epoch ${floor} was applied`;
    else if (ev) why = `record ${ev.ord} of epoch ${ev.epoch} (segment file ${ev.file} offset ${ev.offset}) survived intact`;
    else if (t.ords.length === 0 && !t.control) why = 'no record, header or control slot was damaged (only bytes no record holds, a segment\'s mark say): nothing may be lost';
    else {
      const prev = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, { snaps: b.snaps, lo: j, hi: j });
      if (!prev) return { outcome: b.epoch - j > 1 ? 'suffix-lost' : 'tail-rollback', violation: null };
      why = prev;
    }
  }
  return {
    outcome: 'violation',
    violation: `recovered state is not the acknowledged epoch ${b.epoch}: ${exact}` +
      (why ? `\nrolled back to epoch ${j}, which is not allowed: ${why}` : '') +
      `\ndamaged records (log order) ${t.ords.slice(0, 10).join(',')}${t.control ? ' + control file' : ''}; epoch ${b.epoch} starts at record ${b.epochStart}; tail ${b.tail.map((x) => x.ord).join(',')}`,
  };
}

/**
 * A record of an epoch above j+1 that recovery can still find after the damage: its bytes and its
 * segment's header are intact, and it lies in the segment where the log first breaks (scanned at
 * every aligned offset) or in a later segment, before any damage in that segment.
 */
function survivingEvidence(b: Base, changed: Map<number, [number, number][]>, j: number, marks: Map<number, number | null>): Rec | null {
  const hit = (file: number, a: number, z: number): boolean => {
    const fi = b.files.findIndex((f) => f.index === file);
    return (changed.get(fi) ?? []).some(([x, y]) => x < z && y > a);
  };
  const damaged = b.recs.filter((r) => hit(r.file, r.offset, r.offset + r.size) || hit(r.file, 0, SEGMENT_HEADER_SIZE));
  if (damaged.length === 0) return null;
  const firstFile = damaged[0].file;
  const isBad = (r: Rec): boolean => hit(r.file, r.offset, r.offset + r.size) || hit(r.file, 0, SEGMENT_HEADER_SIZE);
  // How far the scan reads in the first segment (FORMAT.md R19): to its high-water mark and one
  // record past it, unless the walk ended past the mark or an intact record there ends past it (a
  // stale mark), or there is no valid mark: then all of it.
  const at = damaged[0].offset;
  const mark = marks.get(firstFile) ?? null;
  const size = b.files.find((f) => f.index === firstFile)?.size ?? b.segSize;
  let reach = Infinity;
  if (mark !== null && at <= mark) {
    // (the judge's own reach, not the code's: a record of the segment's largest size and a header)
    const lim = Math.min(size, mark + recordSize(recordCap(size)) + RECORD_HEADER_SIZE);
    const stale = b.recs.some((r) => r.file === firstFile && r.offset > at && r.offset + RECORD_HEADER_SIZE <= lim && r.offset + r.size > mark && !isBad(r));
    if (!stale) reach = lim;
  }
  let seenFirst = false;
  const brokenIn = new Set<number>();
  for (const r of b.recs) {
    if (r.file === firstFile) seenFirst = true;
    if (!seenFirst) continue;
    const bad = isBad(r);
    if (bad) {
      brokenIn.add(r.file);
      continue;
    }
    if (r.file !== firstFile && brokenIn.has(r.file)) continue;
    if (r.file === firstFile && r.offset + RECORD_HEADER_SIZE > reach) continue;
    if (r.ord > damaged[0].ord || r.file !== firstFile) {
      if (r.epoch > j + 1) return r;
    }
  }
  return null;
}

/** A violation class: what went wrong, and which kinds of damage caused it. */
function classify(damage: Damage[], violation: string): string {
  const ts = new Set(damage.map((d) => (d.t === 'flip' && d.at.file < 0 ? 'control' : d.t)));
  if (ts.has('drop')) return `${/rejected with (\w+)/.test(violation) ? `recovery rejected with ${/rejected with (\w+)/.exec(violation)![1]} instead of ECORRUPT` : /rolled back/.test(violation) ? 'silently rolled back past an acknowledged epoch' : /match no check/.test(violation) ? 'files that match no epoch' : sig(violation)} (damage: a lost segment file)`;
  const kinds = ts.has('dup') || ts.has('swap') ? 'valid records copied or swapped' : ts.has('control') ? 'control file' : [...ts].sort().join('+');
  let shape: string;
  if (/non-CpError/.test(violation)) shape = 'recovery threw a non-CpError';
  else if (/rejected with (\w+)/.test(violation)) shape = `recovery rejected with ${/rejected with (\w+)/.exec(violation)![1]} instead of ECORRUPT`;
  else if (/rolled back to epoch/.test(violation)) shape = 'silently rolled back past an acknowledged epoch';
  else if (/files are those of check/.test(violation)) shape = "files of one epoch under another epoch's number";
  else if (/catalog differs/.test(violation)) shape = 'right files, wrong open entries (catalog)';
  else if (/match no check/.test(violation)) shape = 'files that match no epoch';
  else shape = sig(violation);
  return `${shape} (damage: ${kinds})`;
}

function describeDamage(b: Base, d: Damage[]): string {
  const at = (x: Target): string => (x.file < 0 ? `control@${x.off}` : `seg${b.files[x.file].index}@${x.off}`);
  return d.map((x) => {
    switch (x.t) {
      case 'flip': return `flip bit ${x.bit} ${at(x.at)}`;
      case 'zero': return `zero ${x.len}B ${at(x.at)}`;
      case 'garbage': return `garbage ${x.bytes.length}B ${at(x.at)}`;
      case 'truncate': return `truncate ${at(x.at)}`;
      case 'dup': return `copy ${x.len}B ${at(x.from)} -> ${at(x.to)}`;
      case 'swap': return `swap ${x.len}B ${at(x.a)} <-> ${at(x.b)}`;
      case 'drop': return `lose segment file ${b.files[x.file].index}`;
      case 'staleAt': return `lose the last write of segment file ${b.files[x.at.file].index}'s header block (its mark back at ${x.end}, by the record at ${x.at.off})`;
      case 'stale': return `lose the last write of segment file ${b.files[x.file].index}'s header block (its mark back ${Math.round(x.frac * 100)}% of the way)`;
    }
  }).join('; ');
}

export interface FuzzUnitResult {
  cases: number;
  violations: Violation[];
  outcomes: Record<string, number>;
  /** cases that lost a whole segment file, and their violations */
  drops: number;
  dropViolations: number;
  /** the journal came from an edge workload (many entries) */
  edge: boolean;
}

export async function fuzzUnit(seed: number, numRuns: number, opts: { shrink?: boolean; edgeRate?: number } = {}): Promise<FuzzUnitResult> {
  return withSeededRandom(seed, async () => {
    const b = await buildBase(seed, opts.edgeRate ?? 0);
    const res: FuzzUnitResult = { cases: 0, violations: [], outcomes: {}, drops: 0, dropViolations: 0, edge: b.desc.startsWith('edge journal') };
    // Counting mode: every case runs and every violation counts (fast-check's order of cases is fixed
    // by the seed, so `--cases n` replays case n last). With shrink, the first failure is minimised.
    const prop = fc.asyncProperty(damageArb(b), async (damage) => {
      res.cases++;
      const drop = damage.some((d) => d.t === 'drop');
      if (drop) res.drops++;
      const v = await judgeCase(b, damage);
      if (drop && v.violation) res.dropViolations++;
      res.outcomes[v.outcome] = (res.outcomes[v.outcome] ?? 0) + 1;
      if (!v.violation) return;
      if (opts.shrink) throw new Error(v.violation);
      res.violations.push({ kind: 'fuzz', seed, cases: res.cases, what: classify(damage, v.violation), detail: `${b.desc}
damage: ${describeDamage(b, damage)}
${v.violation}` });
    });
    const out = await fc.check(prop, { seed, numRuns });
    if (out.failed) {
      const ce = out.counterexample ? describeDamage(b, out.counterexample[0]) : '?';
      const msg = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
      res.violations.push({
        kind: 'fuzz', seed, cases: out.numRuns, what: sig(msg),
        detail: `${b.desc}
damage (shrunk): ${ce}
${msg}
fast-check: seed ${out.seed}, path "${out.counterexamplePath}"`,
      });
    }
    return res;
  });
}

export async function runFuzz(o: KindOptions): Promise<KindResult> {
  const t0 = performance.now();
  const out: KindResult = { kind: 'fuzz', cases: 0, violations: [], ms: 0, stats: {} };
  const outcomes: Record<string, number> = {};
  let units = 0;
  let lastLog = t0;
  const edge = o.edge ?? DEFAULT_EDGE;
  const dims: Record<string, DimCount> = {};
  for (let i = 0; out.cases < o.cases; i++) {
    const seed = unitSeed(o.seed, i);
    const before = out.violations.length;
    // an edge journal recovers thousands of entries per case: fewer cases on it
    const runs = Math.min(isEdgeUnit(seed, edge.rate) ? 150 : 500, o.cases - out.cases);
    const r = await guardUnit(o, out, seed, () => fuzzUnit(seed, runs, { edgeRate: edge.rate }));
    if (!r) {
      if (isEdgeUnit(seed, edge.rate)) countDims(dims, ['edge journals (300-1500 entries)'], out.violations.length - before);
      continue;
    }
    if (r.edge) countDims(dims, ['edge journals (300-1500 entries)'], r.violations.length);
    dims['lost segment file'] ??= { cases: 0, violations: 0 };
    dims['lost segment file'].cases += r.drops;
    dims['lost segment file'].violations += r.dropViolations;
    units++;
    out.cases += r.cases;
    for (const [k, v] of Object.entries(r.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
    for (const v of r.violations) report(o, out, v);
    if (performance.now() - lastLog > 15000) {
      lastLog = performance.now();
      o.log(`  fuzz: ${out.cases} cases on ${units} journals, ${out.violations.length} violations, ${((lastLog - t0) / 1000).toFixed(0)} s`);
    }
  }
  out.ms = performance.now() - t0;
  out.dims = dims;
  out.stats = { journals: units, ...Object.fromEntries(Object.entries(outcomes).map(([k, v]) => [`outcome ${k}`, v])) };
  return out;
}
