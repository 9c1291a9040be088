/**
 * Recovery phase 2: walk the log from the start of the cursor's segment (FORMAT.md R2) and collect
 * what the later phases need: the entries (the cursor segment's CATALOG plus every COMMIT after it),
 * the last COMMIT, the committed epochs after the cursor (what a replay would cover), the uncommitted
 * tail, and the first valid record that breaks the order of R3, R5 or R6 (the walk stops there).
 * The walk itself (lib/journal/reader.ts walkLog) ends at the first record that is not valid (R1).
 */
import * as path from 'node:path';
import { SEGMENT_HEADER_AREA, READABLE_VERSIONS_TEXT, RecordType, decodePayload, pos, type CatalogEntry, type ControlState, type Op, type AppliedCursor } from '../format.js';
import type { IO } from '../io.js';
import { walkLog, type ScannedRecord, type ScanEnd } from '../journal/reader.js';
import type { SegmentInfo, SegmentListing } from '../journal/segments.js';
import type { SegmentFiles } from '../journal/segment-files.js';
import { EpochOrder, type OrderVerdict } from './epoch-order.js';
import { CpError, corruptError } from '../errors.js';

/** One committed epoch after the cursor: what replaying it covers. */
export interface ReplayGroup {
  /** The end of its COMMIT. */
  end: number;
  records: number;
  /** Payload bytes of its records. */
  bytes: number;
  names: string[];
  /** Names its records truncate, create, unlink or rename (their size after the replay is the replay's). */
  reshaped: string[];
  /** Directories its records make, with the position of the record (ApplyContext.dirsAt). */
  dirs: [string, number][];
}

/** An apply cursor a COMMIT records, with its global position. */
export interface AppliedHint {
  pos: number;
  cursorSeq: number;
  cursorOffset: number;
  appliedEpoch: number;
}

/** Where the walk stopped at a valid record that cannot be used, and why ('catalog', 'epoch', 'entries', 'payload'). */
export interface WalkStop {
  seq: number;
  offset: number;
  reason: string;
}

/** A PREPARE the walk read: its epoch, id, entries (parts included), and where it lies. */
export interface PreparedAtEnd {
  epoch: number;
  id: string;
  entries: CatalogEntry[];
  seq: number;
  offset: number;
  /** The global position just after it: where its decision goes. */
  end: number;
}

const emptyGroup = (): Omit<ReplayGroup, 'end'> => ({ records: 0, bytes: 0, names: [], reshaped: [], dirs: [] });

/** The visitor of the walk, and the state it leaves for the phases after it. */
export class LogCollector {
  /** The entries as of the last COMMIT walked (open and closed; the report keeps the open ones). */
  readonly catalog = new Map<string, CatalogEntry>();
  /** The epoch of the cursor segment's CATALOG; -1 when the walk found none. */
  catalogEpoch = -1;
  /** The end of the cursor segment's catalog (its last part): the log kept is never cut before it. */
  catalogEnd = -1;
  lastCommitEpoch: number;
  lastCommitEnd: number;
  /** The last epoch whose entries the walk read (its catalog's or a COMMIT's); -1 when it read none. */
  walkedEpoch = -1;
  /** Valid records (and their journal bytes) after the last COMMIT or ABORT: the uncommitted tail. */
  pendingRecords = 0;
  pendingBytes = 0;
  /** Committed epochs after the cursor, one per COMMIT; which are replayed is planned after the walk. */
  readonly replayGroups: ReplayGroup[] = [];
  /**
   * The latest apply cursor a COMMIT records (it was durable in the control file when that COMMIT
   * was laid out). Direct appends made since are in no record: the replay must not start before it.
   */
  appliedHint: AppliedHint | null = null;
  /** The last SEGEND walked: where a 'missing-segment' end came from. */
  lastSegend: { seq: number; offset: number; version: number } | null = null;
  /** Positions of ABORT records after the cursor: the replay streams records only where there are none. */
  readonly aborts: number[] = [];
  /** Why the walk stopped at a valid record (out of order or undecodable), as the error's evidence. */
  corruptEarly: string | null = null;
  /** Where such a stop leaves nothing to keep (the first record of the walk). */
  earlyAt: WalkStop;
  /** Where such a stop is a place --force can cut the log at (FORMAT.md R8: misplaced records). */
  corruptAt: WalkStop | null = null;
  /**
   * The PREPARE whose decision the walk has not read (R18); still set when the walk ends, the epoch
   * is in doubt, and recovery asks for its decision (resolve.ts).
   */
  prepared: PreparedAtEnd | null = null;
  /** The order rules (R3, R5, R6), the one checker recovery and inspection share. */
  readonly order = new EpochOrder();

  /** The entries of the current epoch's COMMIT carried by ENTRIES records before it (R6). */
  private commitParts: CatalogEntry[] = [];
  private group = emptyGroup();
  private scanned = 0;

  constructor(
    private readonly control: ControlState, private readonly cursorPos: number, private readonly segs: Map<number, SegmentInfo>,
    private readonly totalBytes: number, private readonly onProgress?: (done: number, total: number) => void,
  ) {
    this.lastCommitEpoch = control.appliedEpoch;
    this.lastCommitEnd = cursorPos;
    this.earlyAt = { seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA, reason: 'catalog' };
  }

  /** walkLog's visitor: false stops the walk at a valid record that breaks the order or does not decode. */
  readonly visit = (r: ScannedRecord): boolean | void => {
    this.scanned += r.size;
    if (this.onProgress) this.onProgress(this.scanned, this.totalBytes);
    const t = r.header.type;
    // Every record reaching here is valid (FORMAT.md R1); its place in the log is checked next (R3, R5, R6).
    const v = this.order.next(t, r.header.epoch, r.header.flags);
    if (!v.ok) return this.misplaced(r, v);
    if (v.role === 'catalog' || v.role === 'catalog-part') return this.onCatalogPart(r, v.first);
    let op: Op | null = null;
    if (t !== RecordType.COMMIT && t !== RecordType.ABORT && t !== RecordType.SEGEND && t !== RecordType.CATALOG) {
      try {
        op = decodePayload(t, r.payload);
      } catch {
        return this.undecodable(r, false);
      }
    }
    switch (t) {
      case RecordType.ENTRIES:
        // Part of the COMMIT that follows (R6: the parts are applied only at the COMMIT; a catalog's parts were handled above).
        if (op!.type === RecordType.ENTRIES) for (const e of op!.entries) this.commitParts.push(e);
        this.pendingRecords++;
        this.pendingBytes += r.size;
        break;
      case RecordType.COMMIT:
        return this.onCommit(r);
      case RecordType.PREPARE:
        if (op!.type === RecordType.PREPARE) this.onPrepare(r, op!);
        break;
      case RecordType.COMMIT_PREPARED:
        return this.onCommitPrepared(r, op!);
      case RecordType.ABORT:
        this.prepared = null;
        this.commitParts = [];
        if (r.pos >= this.cursorPos) this.aborts.push(r.pos);
        this.endGroup();
        break;
      case RecordType.SEGEND:
        this.lastSegend = { seq: r.seq, offset: r.offset, version: this.segs.get(r.seq)?.version ?? 0 };
        break;
      case RecordType.CATALOG:
        break;
      default:
        this.onData(r, op!);
    }
  };

  /** A valid record that breaks the epoch order (R3) or an entry list's continuity (R5, R6). */
  private misplaced(r: ScannedRecord, v: Extract<OrderVerdict, { ok: false }>): false {
    if (v.reason === 'catalog') {
      this.corruptEarly = `segment ${r.seq} does not begin with a catalog record`;
      this.earlyAt = { seq: r.seq, offset: r.offset, reason: 'catalog' };
    } else {
      this.corruptEarly = `the record at segment ${r.seq} offset ${r.offset} (type ${r.header.type}, epoch ${r.header.epoch}) is out of place: ${v.message}`;
      this.corruptAt = { seq: r.seq, offset: r.offset, reason: v.reason };
    }
    return false;
  }

  private undecodable(r: ScannedRecord, first: boolean): false {
    this.corruptEarly = `record at segment ${r.seq} offset ${r.offset} has a valid checksum but an undecodable payload`;
    if (first) this.earlyAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
    else this.corruptAt = { seq: r.seq, offset: r.offset, reason: 'payload' };
    return false;
  }

  /**
   * The walk ended at a valid SEGEND whose payload is not its 8-byte nextSeq (walkLog's 'payload'):
   * a record that is not usable (R14), so corruption at it (R8), whatever lies after it. As the
   * walk's first record it leaves nothing to keep (R3 wants a catalog there).
   */
  unusableSegend(end: ScanEnd): void {
    this.corruptEarly = `the segment end record at segment ${end.seq} offset ${end.offset} has a valid checksum but its payload is not the 8-byte seq of the next segment`;
    const at = { seq: end.seq, offset: end.offset, reason: 'payload' };
    if (this.scanned === 0) this.earlyAt = at;
    else this.corruptAt = at;
  }

  /** A CATALOG or one of its ENTRIES parts (R5). The cursor segment's gives the entries; a later one repeats what the walk knows. */
  private onCatalogPart(r: ScannedRecord, first: boolean): false | void {
    let op;
    try {
      op = decodePayload(r.header.type, r.payload);
    } catch {
      return this.undecodable(r, first);
    }
    if (!first) return;
    if (op.type === RecordType.CATALOG || op.type === RecordType.ENTRIES) for (const e of op.entries) this.catalog.set(e.name, e);
    if (op.type === RecordType.CATALOG) this.catalogEpoch = this.walkedEpoch = r.header.epoch;
    this.catalogEnd = r.pos + r.size;
  }

  /** A COMMIT: its entries (with the ENTRIES parts before it, R6) change the catalog; undecodable, it stops the walk (R14). */
  private onCommit(r: ScannedRecord): false | void {
    let op: Op;
    try {
      op = decodePayload(r.header.type, r.payload);
    } catch {
      // A COMMIT is never the walk's first record (R3 wants a CATALOG there): cut the log before it.
      return this.undecodable(r, false);
    }
    if (op.type === RecordType.COMMIT) {
      const entries = this.commitParts.length ? [...this.commitParts, ...op.entries] : op.entries;
      this.commitParts = [];
      this.commitEntries(entries);
      this.hint(r, op.applied);
    }
    this.committed(r);
  }

  /** A COMMIT's (or a decided PREPARE's) entries change the catalog. */
  private commitEntries(entries: CatalogEntry[]): void {
    for (const e of entries) {
      if (e.state === 'open') this.catalog.set(e.name, e);
      else this.catalog.delete(e.name);
    }
  }

  /** A COMMIT or PREPARE at `r` records apply cursor `a` (durable in the control file when it was laid out). */
  private hint(r: ScannedRecord, a: AppliedCursor | null | undefined): void {
    if (a && pos(a.cursorSeq, a.cursorOffset) <= r.pos && (!this.appliedHint || pos(a.cursorSeq, a.cursorOffset) > this.appliedHint.pos)) {
      this.appliedHint = { pos: pos(a.cursorSeq, a.cursorOffset), ...a };
    }
  }

  /**
   * A PREPARE (R18): the epoch's entries wait for its decision, which is the next record; when the
   * walk ends first, the epoch is in doubt (`prepared` stays set).
   */
  private onPrepare(r: ScannedRecord, op: Extract<Op, { type: RecordType.PREPARE }>): void {
    const entries = this.commitParts.length ? [...this.commitParts, ...op.entries] : op.entries;
    this.commitParts = [];
    this.hint(r, op.applied);
    this.prepared = { epoch: r.header.epoch, id: op.id, entries, seq: r.seq, offset: r.offset, end: r.pos + r.size };
    this.pendingRecords++;
    this.pendingBytes += r.size;
  }

  /** The decision of the PREPARE before it: the epoch commits with that PREPARE's entries. */
  private onCommitPrepared(r: ScannedRecord, op: Op): false | void {
    const p = this.prepared;
    if (!p || op.type !== RecordType.COMMIT_PREPARED || op.id !== p.id) return this.undecodable(r, false);
    this.prepared = null;
    this.commitEntries(p.entries);
    this.committed(r);
  }

  /**
   * The epoch left prepared at the end of the walk was decided 'commit' (resolve.ts): as if its
   * COMMIT_PREPARED (`size` bytes, written by recovery before the replay) followed its PREPARE.
   */
  commitPrepared(size: number): void {
    const p = this.prepared!;
    this.prepared = null;
    this.commitEntries(p.entries);
    this.committed({ pos: p.end, size, header: { epoch: p.epoch } });
  }

  /** The end of a committed epoch at record `r` (its COMMIT or COMMIT_PREPARED). */
  committed(r: { pos: number; size: number; header: { epoch: number } }): void {
    if (r.pos >= this.cursorPos && r.header.epoch > this.control.appliedEpoch) this.replayGroups.push({ end: r.pos + r.size, ...this.group });
    this.lastCommitEpoch = Math.max(this.lastCommitEpoch, r.header.epoch);
    this.walkedEpoch = Math.max(this.walkedEpoch, r.header.epoch);
    if (r.pos + r.size > this.lastCommitEnd) this.lastCommitEnd = r.pos + r.size;
    this.endGroup();
  }

  /** After a COMMIT or an ABORT: nothing is pending, the next epoch's group starts. */
  private endGroup(): void {
    this.group = emptyGroup();
    this.pendingRecords = 0;
    this.pendingBytes = 0;
  }

  /** WRITE, TRUNCATE, CREATE, UNLINK, RENAME: pending until a COMMIT; after the cursor, part of a replay. */
  private onData(r: ScannedRecord, op: Op): void {
    this.pendingRecords++;
    this.pendingBytes += r.size;
    if (r.pos < this.cursorPos) return;
    const g = this.group;
    g.records++;
    g.bytes += r.payload.length;
    if ('name' in op) g.names.push(op.name);
    const made = op.type === RecordType.RENAME ? op.to : 'name' in op && op.type !== RecordType.UNLINK ? op.name : null;
    if (made !== null) for (let i = made.indexOf('/'); i > 0; i = made.indexOf('/', i + 1)) g.dirs.push([made.slice(0, i), r.pos]);
    if (op.type === RecordType.RENAME) {
      g.names.push(op.from, op.to);
      g.reshaped.push(op.from, op.to);
    } else if (op.type !== RecordType.WRITE && 'name' in op) {
      g.reshaped.push(op.name);
    }
  }
}

export interface ScanInput {
  io: IO;
  control: ControlState;
  fresh: boolean;
  listing: SegmentListing;
  files: SegmentFiles;
  onProgress?: (done: number, total: number) => void;
}

export interface Scanned {
  end: ScanEnd;
  cursorSeg: SegmentInfo | undefined;
  log: LogCollector;
}

/** The segment holding the cursor is missing: fine only in a store never written (FORMAT.md R8). */
function assertCursorSegmentMayBeMissing(control: ControlState, fresh: boolean, listing: SegmentListing): void {
  if (control.cursorOffset === SEGMENT_HEADER_AREA && fresh) return;
  // A segment whose header is intact but of another format version is not damage: say so.
  const other = listing.invalid.filter((x) => x.reason === 'version');
  if (other.length) {
    throw new CpError('EFORMAT', `${other.map((x) => x.file).join(', ')}: journal segment of another format version; this cpfile reads ${READABLE_VERSIONS_TEXT}`, {
      details: { seq: control.cursorSeq, invalid: listing.invalid },
    });
  }
  const bad = listing.invalid.map((x) => `${path.basename(x.file)}: ${x.reason}`).join(', ');
  throw corruptError(`the segment holding the apply cursor (seq ${control.cursorSeq}) is missing${bad ? ` (segment files with unusable headers: ${bad})` : ''}`, {
    kind: 'cursor-segment-missing', seq: control.cursorSeq, offset: control.cursorOffset, invalid: listing.invalid,
  });
}

/** Walk the log from offset 4096 of the cursor's segment (R2), following SEGEND records. */
export async function scanLog(a: ScanInput): Promise<Scanned> {
  const { control, listing, files } = a;
  const segs = listing.bySeq;
  const cursorPos = pos(control.cursorSeq, control.cursorOffset);
  const totalBytes = [...segs.values()].reduce((n, s) => n + s.size, 0);
  const log = new LogCollector(control, cursorPos, segs, totalBytes, a.onProgress);
  const cursorSeg = segs.get(control.cursorSeq);
  if (!cursorSeg) {
    assertCursorSegmentMayBeMissing(control, a.fresh, listing);
    log.catalogEpoch = control.appliedEpoch;
    return { end: { seq: control.cursorSeq, offset: SEGMENT_HEADER_AREA, pos: cursorPos, reason: 'missing-segment' }, cursorSeg, log };
  }
  if (!a.fresh) {
    // The cursor's segment was sized and synced before the cursor moved there (FORMAT.md R8).
    const st = await a.io.fstat(await files.fd(cursorSeg));
    if (st.size < cursorSeg.size) {
      throw corruptError(`the segment holding the apply cursor (seq ${control.cursorSeq}, ${path.basename(cursorSeg.file)}) is ${st.size} bytes, its header says ${cursorSeg.size}`, {
        kind: 'cursor-segment-short', seq: control.cursorSeq, size: st.size, expected: cursorSeg.size,
      });
    }
  }
  // The first record that is not valid ends the log (FORMAT.md R1, R2); classify-end.ts says what that end means (R8).
  const end = await walkLog(segs, files, control.cursorSeq, SEGMENT_HEADER_AREA, log.visit);
  if (end.reason === 'payload') log.unusableSegend(end);
  return { end, cursorSeg, log };
}
