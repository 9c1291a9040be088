/**
 * A journal on the simulated file system (test/torture/simfs.ts), written through the real
 * JournalWriter and the inline flusher exactly as openStore wires them (lib/store/store.ts), with
 * small helpers that damage the bytes on purpose and read the log back (walkLog, recover()). In the
 * spirit of LevelDB's log_test.cc: one fixture over an in-memory file, then one test per error path.
 *
 * The fixture plays the store's part only as far as the journal needs it: it numbers epochs, keeps
 * the open entries a rotation's CATALOG lists, and hands each COMMIT the apply cursor it knows is
 * durable. It never calls the writer's throw-if-failed method directly (it is being renamed): a
 * failed task shows in the TaskResult the fixture checks.
 *
 * Damage helpers edit a file's bytes in place, untraced (another program, or the disk, did it).
 * Record locations are { index, offset } (segment file index, byte offset in it), as ScannedRecord has.
 */
import * as path from 'node:path';
import {
  RECORD_HEADER_SIZE, SEGMENT_HEADER_AREA, SEGMENT_HEADER_SIZE, CONTROL_SLOT_SIZE, CONTROL_FILE_SIZE, RecordType, MIN_SEGMENT_SIZE,
  META_DIR, CONTROL_FILE, JOURNAL_DIR, decodeControlSlot,
  encodeRecord, encodeSegmentHeader, decodeSegmentHeader, encodeControlSlot, sealRecord, segmentFileName, pos,
  type CatalogEntry, type ControlState, type SegmentHeader, type Op, type AppliedCursor,
} from '../../lib/format.js';
import { JournalWriter } from '../../lib/journal/writer.js';
import { InlinePort } from '../../lib/flusher/port.js';
import { walkLog, type ScannedRecord, type ScanEnd } from '../../lib/journal/reader.js';
import { listSegments, type SegmentListing } from '../../lib/journal/segments.js';
import { SegmentFiles } from '../../lib/journal/segment-files.js';
import { recover, type RecoverOptions, type RecoveredState } from '../../lib/recovery/index.js';
import { SimFS } from '../torture/simfs.js';

/** Where the fixture's store lives on its SimFS. */
export const STORE = '/store';

export interface FixtureOptions {
  /** Journal segment size (default the smallest allowed, 64 KiB, so a few records rotate). */
  segmentSize?: number;
  /** An existing file system to open the store on (a copy, a crash image); default a new one. */
  sim?: SimFS;
}

/** Where a record is: its segment file index and its byte offset there. */
export interface At {
  index: number;
  offset: number;
}

export class JournalFixture {
  readonly dir = STORE;
  /** The store's metadata paths (docs/FORMAT.md, "Store layout"). */
  readonly paths = {
    meta: path.join(STORE, META_DIR),
    control: path.join(STORE, META_DIR, CONTROL_FILE),
    journal: path.join(STORE, META_DIR, JOURNAL_DIR),
  };
  /** The last committed epoch; records laid out now belong to epoch + 1. */
  epoch = 0;
  /** The open entries as of the last commit (what a rotation's CATALOG lists). */
  readonly entries = new Map<string, CatalogEntry>();
  /** What the recovery that opened this fixture reported. */
  recovered!: RecoveredState;
  private writer!: JournalWriter;
  private port!: InlinePort;
  /** Entry changes for the next COMMIT. */
  private deltas = new Map<string, CatalogEntry>();
  /** The apply cursor known durable in the control file (each COMMIT records it). */
  private applied!: AppliedCursor;
  private closed = true;

  private constructor(readonly sim: SimFS, readonly segmentSize: number) {}

  /** A store on a SimFS (created, or recovered when `sim` already holds one), ready to write. */
  static async open(opts: FixtureOptions = {}): Promise<JournalFixture> {
    const sim = opts.sim ?? new SimFS();
    sim.mkdirSync(STORE);
    const f = new JournalFixture(sim, opts.segmentSize ?? MIN_SEGMENT_SIZE);
    await f.start();
    return f;
  }

  /** Recover and start a writer where recovery left the log, as openStore does. */
  private async start(): Promise<void> {
    const rec = await recover({ io: this.sim, dir: STORE, sync: true, create: true, segmentSize: this.segmentSize });
    this.recovered = rec;
    this.epoch = rec.report.epoch;
    this.entries.clear();
    for (const e of rec.report.entries) this.entries.set(e.name, { ...e });
    this.deltas.clear();
    this.applied = { cursorSeq: rec.control.cursorSeq, cursorOffset: rec.control.cursorOffset, appliedEpoch: rec.control.appliedEpoch };
    this.port = new InlinePort(this.sim);
    this.writer = new JournalWriter(this.port, this.sim, {
      segmentSize: this.segmentSize, storeId: rec.control.storeId, batchBytes: 64 * 1024, maxInflight: 1 << 24, journalDir: this.paths.journal,
    }, { segment: rec.segment, writeOffset: rec.writeOffset, free: rec.free, nextIndex: rec.nextIndex, maxSeq: rec.maxSeq },
    () => ({ entries: [...this.entries.values()], epoch: this.epoch }));
    ok(await this.writer.init({ dir: STORE, sync: true, control: rec.control, controlSlot: rec.controlSlot, sparseFrom: rec.sparseFrom }), 'init');
    this.closed = false;
  }

  get storeId(): string {
    return this.recovered.control.storeId;
  }

  /** Global position of the next record. */
  get position(): number {
    return this.writer.position;
  }

  // ------------------------------------------------------------------------------------------
  // writing (records of epoch + 1)

  write(name: string, offset: number, data: string | Buffer): this {
    this.writer.appendWrite(name, offset, typeof data === 'string' ? Buffer.from(data) : data, this.epoch + 1);
    return this;
  }

  /** Any record but COMMIT (see commit()). */
  append(op: Op): this {
    this.writer.append(op, this.epoch + 1);
    return this;
  }

  /** The next COMMIT lists `name` as open at `position` with committed size `size` (or closed). */
  entry(name: string, position: number, size: number | null, state: 'open' | 'closed' = 'open'): this {
    this.deltas.set(name, { name, position, state, size: state === 'open' ? size : null });
    return this;
  }

  /** COMMIT epoch + 1 and sync it, as Store.check does; returns the committed epoch. */
  async commit(): Promise<number> {
    const epoch = this.epoch + 1;
    const deltas = [...this.deltas.values()];
    this.writer.append({ type: RecordType.COMMIT, entries: deltas, applied: { ...this.applied } }, epoch);
    for (const d of deltas) {
      if (d.state === 'open') this.entries.set(d.name, d);
      else this.entries.delete(d.name);
    }
    this.deltas.clear();
    this.epoch = epoch;
    ok(await this.writer.flush([{ op: 'sync' }]), `commit of epoch ${epoch}`);
    return epoch;
  }

  /** Hand everything laid out to the flusher (written, not synced). */
  async flush(): Promise<void> {
    ok(await this.writer.flush(), 'flush');
  }

  /** Apply every committed epoch to the files (the background applier's task); the cursor moves. */
  async apply(): Promise<AppliedCursor> {
    const res = ok(await this.writer.flush([{ op: 'apply', endPos: this.position }]), 'apply');
    const a = res.applied!;
    this.applied = { cursorSeq: a.cursorSeq, cursorOffset: a.cursorOffset, appliedEpoch: a.appliedEpoch };
    return { ...this.applied };
  }

  /** Stop as a crash would: what was handed over is written, nothing else happens. */
  async crash(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writer.flush();
    await this.port.destroy();
    await this.writer.closeReads();
  }

  /** Crash, then open again (recovery runs); the same fixture goes on writing. */
  async reopen(): Promise<RecoveredState> {
    await this.crash();
    await this.start();
    return this.recovered;
  }

  // ------------------------------------------------------------------------------------------
  // reading back

  segmentFile(index: number): string {
    return path.join(this.paths.journal, segmentFileName(index));
  }

  /** The control file's current slot (the valid one with the larger counter), decoded with format.ts. */
  async control(): Promise<{ state: ControlState; slot: 0 | 1 }> {
    const b = Buffer.alloc(CONTROL_FILE_SIZE);
    this.bytes(this.paths.control).copy(b);
    let best: { state: ControlState; slot: 0 | 1 } | null = null;
    for (const slot of [0, 1] as const) {
      const r = decodeControlSlot(b.subarray(slot * CONTROL_SLOT_SIZE, (slot + 1) * CONTROL_SLOT_SIZE));
      if (r.ok && (!best || r.state.counter > best.state.counter)) best = { state: r.state, slot };
    }
    if (!best) throw new Error('control file: no valid slot');
    return best;
  }

  async segments(storeId: string | null = this.storeId): Promise<SegmentListing> {
    return listSegments(this.sim, this.paths.journal, storeId);
  }

  /**
   * Walk the log with walkLog from the start of the cursor's segment (or `fromSeq`); `stopAfter`
   * records, the visitor says stop. Payloads are copied (the reader reuses its window).
   */
  async walk(opts: { fromSeq?: number; stopAfter?: number } = {}): Promise<{ records: ScannedRecord[]; end: ScanEnd }> {
    const seq = opts.fromSeq ?? (await this.control()).state.cursorSeq;
    const listing = await this.segments();
    const files = new SegmentFiles(this.sim);
    const records: ScannedRecord[] = [];
    try {
      const end = await walkLog(listing.bySeq, files, seq, SEGMENT_HEADER_AREA, (r) => {
        records.push({ ...r, payload: Buffer.from(r.payload) });
        if (opts.stopAfter !== undefined && records.length >= opts.stopAfter) return false;
      });
      return { records, end };
    } finally {
      await files.closeAll();
    }
  }

  /** The valid records of the live log (see walk()). */
  async records(): Promise<ScannedRecord[]> {
    return (await this.walk()).records;
  }

  /** Run recover() on the store as it is now (crash first if still writing). */
  async recover(opts: Partial<RecoverOptions> = {}): Promise<RecoveredState> {
    await this.crash();
    return recover({ io: this.sim, dir: STORE, sync: true, ...opts });
  }

  // ------------------------------------------------------------------------------------------
  // damage (in place, untraced)

  private bytes(file: string): Buffer {
    const b = this.sim.readFileSync(file);
    if (!b) throw new Error(`${file}: no such file`);
    return b;
  }

  private fileOf(at: string | At): string {
    return typeof at === 'string' ? at : this.segmentFile(at.index);
  }

  /** XOR the byte at `offset` (from the record's start, for a record) with `mask`. */
  flipByte(at: string | At, offset: number, mask = 0x01): void {
    this.edit(at, (b, base) => {
      b[base + offset] ^= mask;
    });
  }

  /** Zero `len` bytes at `offset` (from the record's start, for a record). */
  zeroRange(at: string | At, offset: number, len: number): void {
    this.edit(at, (b, base) => {
      b.fill(0, base + offset, base + offset + len);
    });
  }

  /** Bytes [offset, offset+len) of a file or from a record's start. */
  read(at: string | At, offset: number, len: number): Buffer {
    const base = typeof at === 'string' ? 0 : at.offset;
    return Buffer.from(this.bytes(this.fileOf(at)).subarray(base + offset, base + offset + len));
  }

  /** Put `data` at `offset` (from the record's start, for a record). */
  put(at: string | At, offset: number, data: Buffer): void {
    this.edit(at, (b, base) => {
      data.copy(b, base + offset);
    });
  }

  /** Cut a file to `len` bytes. */
  shrink(file: string, len: number): void {
    this.sim.writeFileSync(file, this.bytes(file).subarray(0, len));
  }

  /** Remove a segment file. */
  dropSegment(index: number): void {
    this.sim.removeSync(this.segmentFile(index));
  }

  /** Recompute the record's crc for its header's length and its place, after an edit made it wrong. */
  fixCrc(at: At): void {
    this.edit(at, (b, base) => sealRecord(b, base, at.offset));
  }

  /** Write a whole sealed record of `op` at `at` (as if it had always been there): `salt` defaults to the segment's. */
  plant(at: At, op: Op, epoch: number, opts: { salt?: number; flags?: number } = {}): Buffer {
    const salt = opts.salt ?? this.segmentHeader(at.index).salt;
    const rec = encodeRecord(op, salt, epoch, at.offset, opts.flags ?? 0);
    this.put(at, 0, rec);
    return rec;
  }

  /** The decoded header of a segment file. */
  segmentHeader(index: number): SegmentHeader {
    const h = decodeSegmentHeader(this.read(this.segmentFile(index), 0, SEGMENT_HEADER_SIZE));
    if (!h.ok) throw new Error(`segment ${index}: header ${h.reason}`);
    return h.header;
  }

  /** Rewrite a segment's header with some fields changed (a valid header: its crc is recomputed). */
  rewriteSegmentHeader(index: number, change: Partial<SegmentHeader>): void {
    this.put(this.segmentFile(index), 0, encodeSegmentHeader({ ...this.segmentHeader(index), ...change }));
  }

  /** Write a control slot with the current state changed by `change` (a newer counter, the other slot). */
  async writeControl(change: Partial<ControlState>): Promise<void> {
    const { state, slot } = await this.control();
    const next = { ...state, counter: state.counter + 1, ...change };
    this.put(this.paths.control, (slot === 0 ? 1 : 0) * CONTROL_SLOT_SIZE, encodeControlSlot(next));
  }

  /** Zero the control file's current slot (the older one becomes current). */
  async loseNewestControlSlot(): Promise<void> {
    const { slot } = await this.control();
    this.zeroRange(this.paths.control, slot * CONTROL_SLOT_SIZE, CONTROL_SLOT_SIZE);
  }

  private edit(at: string | At, fn: (b: Buffer, base: number) => void): void {
    const file = this.fileOf(at);
    const b = this.bytes(file);
    fn(b, typeof at === 'string' ? 0 : at.offset);
    this.sim.writeFileSync(file, b);
  }
}

type TaskResult = Awaited<ReturnType<JournalWriter['flush']>>;

function ok(res: TaskResult, what: string): TaskResult {
  if (!res.ok) throw new Error(`${what} failed: ${res.error?.code} ${res.error?.message}`);
  return res;
}

/** Offsets inside a record header (docs/FORMAT.md, "Record"). */
export const REC = { crc: 0, len: 4, salt: 8, type: 12, flags: 13, epoch: 16, payload: RECORD_HEADER_SIZE } as const;

/** The global position of a record location, for comparing with ScanEnd.pos. */
export const posOf = (seq: number, offset: number): number => pos(seq, offset);
