/**
 * The main thread's side of the journal: it lays records out (segment and offset), batches them in
 * a buffer and hands each batch to the flusher with its buffer transferred, not copied. write()
 * therefore costs neither a syscall nor a thread round-trip. Consecutive writes that continue each
 * other in one file are coalesced into one record. Memory stays bounded: when more than
 * `maxInflight` bytes are on their way to the flusher, callers wait (see drain()).
 *
 * JournalWriter is the facade over one-job parts: the record batch (record-batch.ts) and its buffers
 * (batch-buffers.ts), the actions waiting for the next task (outbox.ts), segment allocation
 * (segment-allocator.ts), direct appends (direct-appends.ts) and the tasks in flight
 * (task-tracker.ts). It keeps the layout itself: where the next record goes, rotation to a new
 * segment, and entry lists (docs/FORMAT.md, "Writing").
 */
import {
  MAX_PAYLOAD, RecordType, SEGEND_RECORD_SIZE, SEGMENT_HEADER_AREA,
  payloadSize, recordSize, writeHeadSize, pos, entryListOps, entryListBytes, recordCap, segmentSizeFor, commitPreparedSize,
  type CatalogEntry, type Op, type AppliedCursor,
} from '../format.js';
import { type IO } from '../io.js';
import { type Action, type PlainSegment, type TaskResult, type FlusherInit, emptyResult } from '../flusher/protocol.js';
import { type FlusherPort } from '../flusher/port.js';
import { CpError } from '../errors.js';
import { BatchBuffers } from './batch-buffers.js';
import { Outbox } from './outbox.js';
import { RecordBatch } from './record-batch.js';
import { SegmentAllocator } from './segment-allocator.js';
import { DirectAppends } from './direct-appends.js';
import { TaskTracker } from './task-tracker.js';
import { SegmentFiles } from './segment-files.js';
import { segmentPath } from './paths.js';

const isU64 = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;

/** A piece of a write as journaled: file range [fileStart, fileStart+len) is at (index, jOff). */
export interface JournalPiece {
  fileStart: number;
  len: number;
  index: number;
  jOff: number;
  /** Global position of the record (for ordering against the apply cursor). */
  pos: number;
}

export interface WriterOptions {
  segmentSize: number;
  storeId: string;
  batchBytes: number;
  maxInflight: number;
  journalDir: string;
}

export interface WriterStart {
  segment: PlainSegment;
  writeOffset: number;
  free: number[];
  nextIndex: number;
  maxSeq: number;
}

export class JournalWriter {
  /** The segment the next record goes to, and the offset in it. */
  seg: PlainSegment;
  off: number;
  /** End of the records handed to the flusher. */
  private sentPos: number;
  private scheduled = false;
  /** The last record laid out is a PREPARE: its decision comes next (R18). */
  private prepared = false;
  stats = { records: 0, bytes: 0, fsyncs: 0, batches: 0, directBytes: 0 };
  private buffers: BatchBuffers;
  private outbox = new Outbox();
  private batch: RecordBatch;
  private segments: SegmentAllocator;
  private direct: DirectAppends;
  private tasks: TaskTracker;
  /** Segment files read back (read()): a read in progress pins its file, which keeps its segment from being recycled. */
  private files: SegmentFiles;

  constructor(
    private port: FlusherPort, private io: IO, private opts: WriterOptions, start: WriterStart,
    private catalog: () => { entries: CatalogEntry[]; epoch: number },
  ) {
    this.seg = start.segment;
    this.off = start.writeOffset;
    this.sentPos = pos(this.seg.seq, this.off);
    this.buffers = new BatchBuffers(opts.batchBytes, opts.maxInflight);
    this.batch = new RecordBatch(opts.batchBytes, this.buffers, this.outbox, this.sentPos);
    this.segments = new SegmentAllocator(start);
    this.tasks = new TaskTracker(this.sentPos, this.buffers, this.stats);
    this.direct = new DirectAppends(opts.batchBytes, this.buffers, this.outbox, {
      failed: () => this.tasks.failure !== null,
      schedule: () => this.schedule(),
      closeRecords: () => this.batch.close(),
      stats: this.stats,
    });
    this.files = new SegmentFiles(io);
  }

  /** First task: hand the flusher its state. */
  init(init: Omit<FlusherInit, 'segments'>): Promise<TaskResult> {
    return this.tasks.track(this.port.run({ init: { ...init, segments: [this.seg] }, actions: [] }), this.sentPos, 0);
  }

  get position(): number {
    return pos(this.seg.seq, this.off);
  }

  /** The first failure of a flusher task (then every call throws it). */
  get failure(): CpError | null {
    return this.tasks.failure;
  }

  /** Every record before this global position has been written to its segment. */
  get writtenPos(): number {
    return this.tasks.writtenPos;
  }

  /** Counts appendDirect calls; directDone is the count whose data the flusher has written. */
  get directMark(): number {
    return this.direct.mark;
  }

  get directDone(): number {
    return this.tasks.directDone;
  }

  /** Tasks handed to the flusher so far (the number of the last one). */
  get tasksSent(): number {
    return this.tasks.tasksSent;
  }

  // ------------------------------------------------------------------------------------------
  // layout

  /** Make room for a record of `size` bytes in the current segment and chunk; returns its offset in the chunk. */
  private place(size: number): number {
    if (size + SEGEND_RECORD_SIZE > this.seg.size - SEGMENT_HEADER_AREA) {
      throw new CpError('EINVAL', `a record of ${size} bytes does not fit a segment of ${this.seg.size} bytes`);
    }
    // A record never crosses the end of its segment, and room for a SEGEND is always kept (R1, R2).
    if (this.off + size + SEGEND_RECORD_SIZE > this.seg.size) this.rotate();
    return this.batch.reserve(this.seg, this.off, size);
  }

  /**
   * Continue the log in a new segment. `extra`: bytes of entry records that must follow its catalog
   * in the same segment (a commit's list never straddles segments: FORMAT.md R6). The new segment is
   * larger than the store's segment size when its catalog and `extra` need it (R7). It is made
   * durable before the SEGEND naming it is written (R9): a valid SEGEND whose segment is missing is
   * then damage, never a torn tail. Its first record is a CATALOG of the open entries (R3, R5).
   */
  private rotate(extra = 0): void {
    const cat = this.catalog();
    const catOps = entryListOps(RecordType.CATALOG, cat.entries, MAX_PAYLOAD);
    const size = segmentSizeFor(entryListBytes(catOps) + extra, this.opts.segmentSize);
    this.batch.close();
    const next = this.segments.allocate(size, this.opts.storeId);
    this.outbox.push({ op: 'segment', seg: next, durable: true });
    this.emit({ type: RecordType.SEGEND, nextSeq: next.seq }, 0, true);
    this.batch.close();
    this.seg = next;
    this.off = SEGMENT_HEADER_AREA;
    this.emitList(RecordType.CATALOG, cat.entries, cat.epoch);
  }

  /**
   * Emit an entry list (a CATALOG, or a COMMIT with its apply cursor) as one record or, past a
   * record's payload cap, as a run of records (FORMAT.md R5, R6). A COMMIT's run stays in one
   * segment. Returns the offset of the last record (the COMMIT).
   */
  private emitList(type: RecordType.CATALOG | RecordType.COMMIT | RecordType.PREPARE, entries: CatalogEntry[], epoch: number, applied?: AppliedCursor | null, id = ''): number {
    // Every field is checked before the first part is laid out: a list is written whole or not at
    // all (a part that failed to encode after others were laid out would leave a broken run, R6).
    for (const e of entries) {
      if (!isU64(e.position) || (e.size !== null && !isU64(e.size))) {
        throw new CpError('EINVAL', `entry ${JSON.stringify(e.name)}: position ${e.position} or size ${e.size} is not an integer from 0 to 2^53-1`);
      }
    }
    let ops = entryListOps(type, entries, recordCap(this.seg.size), applied, id);
    // A PREPARE keeps room for its decision right after it: nothing may separate them (R18).
    const after = type === RecordType.PREPARE ? commitPreparedSize(id) : 0;
    if (type !== RecordType.CATALOG && (ops.length > 1 || after > 0)) {
      const bytes = entryListBytes(ops) + after;
      if (this.off + bytes + SEGEND_RECORD_SIZE > this.seg.size) {
        this.rotate(bytes);
        ops = entryListOps(type, entries, recordCap(this.seg.size), applied, id);
      }
    }
    let offset = 0;
    for (const { op, flags } of ops) offset = this.emit(op, epoch, false, flags).offset;
    return offset;
  }

  /** Encode one record at the current position. `noRotate` is for the SEGEND itself. */
  private emit(op: Op, epoch: number, noRotate = false, flags = 0): { index: number; offset: number } {
    const len = payloadSize(op);
    const size = recordSize(len);
    // The writer always keeps SEGEND_RECORD_SIZE free, so a SEGEND fits without rotating.
    const at = noRotate ? this.batch.reserve(this.seg, this.off, size, true) : this.place(size);
    const offset = this.batch.put(at, op, len, this.seg.salt, epoch, flags);
    const index = this.batch.lastRecordIndex;
    this.off = this.batch.end;
    this.stats.records++;
    this.stats.bytes += size;
    // (schedule() may hand the batch over at once: what is returned is read before.)
    this.schedule();
    return { index, offset };
  }

  /** Journal a non-write operation; returns the record's global position. */
  append(op: Op, epoch: number): number {
    this.throwIfFailed();
    if (op.type === RecordType.COMMIT || op.type === RecordType.CATALOG || op.type === RecordType.PREPARE) {
      const offset = this.emitList(op.type, op.entries, epoch, op.type === RecordType.CATALOG ? null : op.applied, op.type === RecordType.PREPARE ? op.id : '');
      this.prepared = op.type === RecordType.PREPARE;
      return pos(this.seg.seq, offset);
    }
    // A prepared epoch's decision goes where its PREPARE kept room for it (R18): never after a rotation.
    const decision = this.prepared && (op.type === RecordType.COMMIT_PREPARED || op.type === RecordType.ABORT);
    if (this.prepared && !decision) throw new CpError('EINVAL', 'a prepared epoch is decided (COMMIT_PREPARED or ABORT) before anything else is journaled');
    this.prepared = false;
    const r = this.emit(op, epoch, decision);
    return pos(this.seg.seq, r.offset);
  }

  /**
   * Fast path of appendWrite: when the whole (non-empty) write continues the last record (small
   * sequential writes), extend it and return the data's journal offset; -1 when it does not fit
   * (then call appendWrite). The record is the one at lastRecordPos / lastRecordIndex.
   */
  continueWrite(name: string, fileOffset: number, data: Uint8Array): number {
    if (data.length === 0 || this.tasks.failure) return -1;
    if (this.batch.room(name, fileOffset, this.seg.size) < data.length) return -1;
    const jOff = this.batch.extend(data);
    this.off = this.batch.end;
    this.stats.bytes += data.length;
    this.schedule();
    return jOff;
  }

  /** Position of the record continueWrite extends. */
  get lastRecordPos(): number {
    return this.batch.lastRecordPos;
  }

  /** Segment index of the record continueWrite extends. */
  get lastRecordIndex(): number {
    return this.batch.lastRecordIndex;
  }

  /** Journal a write, split into records of at most MAX_PAYLOAD and coalesced with a preceding one. */
  appendWrite(name: string, fileOffset: number, data: Uint8Array, epoch: number): JournalPiece[] {
    this.throwIfFailed();
    const pieces: JournalPiece[] = [];
    const fixed = writeHeadSize(name);
    let done = 0;
    while (done < data.length || (data.length === 0 && pieces.length === 0)) {
      // Coalesce: extend the last record when it is a write to this file ending where this one starts.
      const room = this.batch.room(name, fileOffset + done, this.seg.size);
      if (room > 0) {
        const n = Math.min(room, data.length - done);
        const jOff = this.batch.extend(done === 0 && n === data.length ? data : data.subarray(done, done + n));
        this.off = this.batch.end;
        this.stats.bytes += n;
        pieces.push({ fileStart: fileOffset + done, len: n, index: this.batch.lastRecordIndex, jOff, pos: this.batch.lastRecordPos });
        done += n;
        continue;
      }
      // A record never exceeds MAX_PAYLOAD nor a quarter of a segment (small test segments).
      const cap = recordCap(this.seg.size) - fixed;
      if (cap <= 0) throw new CpError('EINVAL', `file name too long for a segment of ${this.seg.size} bytes`);
      const n = Math.min(data.length - done, cap);
      const len = fixed + n;
      const at = this.place(recordSize(len));
      const jOff = this.batch.putWrite(at, len, this.seg.salt, epoch, name, fileOffset + done, data.subarray(done, done + n));
      this.off = this.batch.end;
      this.stats.records++;
      this.stats.bytes += recordSize(len);
      pieces.push({ fileStart: fileOffset + done, len: n, index: this.batch.lastRecordIndex, jOff, pos: this.batch.lastRecordPos });
      done += n;
      if (n === 0) break;
    }
    this.schedule();
    return pieces;
  }

  // ------------------------------------------------------------------------------------------
  // direct appends (direct-appends.ts)

  /**
   * Write `data` at `offset` of `name` straight to the data file instead of the journal. The caller
   * (Store.writeNow) has checked that the range lies past everything the file's pending records
   * touch, that nothing pending renames, creates or truncates it, and that the last durable COMMIT
   * (or CATALOG) lists it as open with `fence`, its committed size: if this epoch never commits,
   * recovery cuts the file back to that size. The flusher only writes these bytes after that COMMIT
   * was synced (it runs tasks in order), so nothing is journaled for them at all.
   */
  appendDirect(name: string, fence: number, offset: number, data: Uint8Array): void {
    this.throwIfFailed();
    this.direct.append(name, fence, offset, data);
  }

  /** Fast path of appendDirect for a write continuing the direct buffer; false when it does not. */
  continueDirect(name: string, offset: number, data: Uint8Array): boolean {
    return this.direct.continue(name, offset, data);
  }

  /**
   * End the epoch's direct appends: 'commit', before its COMMIT, makes them durable; 'prepare' does
   * so before its PREPARE and keeps them undoable until the decision (R18); 'abort', after an ABORT,
   * cuts the files written directly back to their committed sizes, durably.
   */
  endDirect(how: 'commit' | 'prepare' | 'abort'): void {
    if (how === 'abort') this.direct.end('undoDirect');
    else this.direct.end('datasync', how === 'prepare');
  }

  /** Resolve once the flusher has written every direct append up to `mark` (a directMark value). */
  async whenDirect(mark: number): Promise<void> {
    if (this.tasks.directDone < mark) await this.flush();
    this.throwIfFailed();
  }

  // ------------------------------------------------------------------------------------------
  // hand-off (task-tracker.ts)

  private schedule(): void {
    // A caller looping on awaited writes never yields to the event loop: hand full batches over
    // now rather than at the next setImmediate, or they would pile up in memory.
    if (this.outbox.bytes >= this.opts.batchBytes && !this.tasks.failure) {
      void this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // Otherwise hand over a millisecond later, not at the next turn of the event loop: a caller
    // that awaits other I/O between writes (store.writeFile of many small files, say) would make one
    // worker task per write, and each costs a postMessage on both threads. check() and close() do
    // not wait for this: they flush at once.
    setTimeout(() => {
      this.scheduled = false;
      if (!this.tasks.failure) void this.flush();
    }, 1);
  }

  /** Whether the first failure came from task `task` or one before it (tasks run in order). */
  failedBy(task: number): boolean {
    return this.tasks.failedBy(task);
  }

  /** Send everything laid out so far, followed by `extra` actions, as one task. */
  flush(extra: Action[] = []): Promise<TaskResult> {
    this.direct.close();
    this.batch.close();
    if (this.outbox.length === 0 && extra.length === 0) {
      return this.tasks.lastTask ?? Promise.resolve(emptyResult(!this.tasks.failure));
    }
    const { actions, transfer, shared, bytes } = this.outbox.take(extra);
    this.sentPos = this.batch.laidOut;
    this.stats.batches++;
    return this.tasks.track(this.port.run({ actions }, transfer), this.sentPos, bytes, this.direct.mark, shared);
  }

  /** True when drain() would wait: too much is on its way to the flusher. */
  get congested(): boolean {
    return this.tasks.congested(this.opts.maxInflight);
  }

  /** Wait while too much is on its way to the flusher. */
  drain(): Promise<void> {
    return this.tasks.drain(this.opts.maxInflight);
  }

  /** Resolve once every record before global position `p` has been written to its segment. */
  async whenWritten(p: number): Promise<void> {
    if (p > this.sentPos) void this.flush();
    while (this.tasks.writtenPos < p) {
      this.throwIfFailed();
      const t = this.tasks.taskReaching(p);
      if (!t) break;
      await t;
    }
    this.throwIfFailed();
  }

  /** Throw the first failure of a flusher task, if any (the writer is unusable after one). */
  throwIfFailed(): void {
    this.tasks.throwIfFailed();
  }

  // ------------------------------------------------------------------------------------------
  // segments and reads

  /**
   * Called with the durable apply cursor: segments entirely before it are free again, unless a
   * read is in progress or a pending overlay still reads from them (`pinned`).
   */
  applied(cursorSeq: number, pinned: Set<number>): void {
    this.segments.release(cursorSeq, this.seg.index, (index) => this.files.inUse(index) || pinned.has(index));
  }

  /** Read journaled bytes (already written) from segment `index`. */
  read(index: number, jOff: number, buf: Uint8Array, off: number, len: number): Promise<void> {
    return this.files.readExactly({ index, file: segmentPath(this.opts.journalDir, index) }, jOff, buf, off, len);
  }

  async closeReads(): Promise<void> {
    await this.files.closeAll(true);
  }
}
