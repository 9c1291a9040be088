/**
 * The main thread's side of the journal: it lays records out (segment and offset), batches them in
 * a buffer and hands each batch to the flusher with its buffer transferred, not copied. write()
 * therefore costs neither a syscall nor a thread round-trip. Consecutive writes that continue each
 * other in one file are coalesced into one record. Memory stays bounded: when more than
 * `maxInflight` bytes are on their way to the flusher, callers wait (see drain()).
 */
import * as path from 'node:path';
import {
  MAX_PAYLOAD, RECORD_HEADER_SIZE, RecordType, SEGEND_RECORD_SIZE, SEGMENT_HEADER_AREA, FORMAT_VERSION,
  encodePayload, payloadSize, recordSize, sealRecord, writeRecordHeader, writeU64, nameSize, writeName, pos,
  segmentFileName, entryListOps, entryListBytes, recordCap, segmentSizeFor, type CatalogEntry, type Op, type AppliedCursor,
} from '../format.js';
import { type IO } from '../io.js';
import { type Action, type PlainSegment, type TaskResult, type FlusherInit } from '../flusher/protocol.js';
import { type FlusherPort } from '../flusher/port.js';
import { CpError, type CpErrorCode } from '../errors.js';
import { randomSalt } from './segments.js';

const isU64 = (v: number): boolean => Number.isSafeInteger(v) && v >= 0;

interface Chunk {
  index: number;
  seq: number;
  startOff: number;
  buf: Buffer;
  used: number;
  recStarts: number[];
}

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
  seg: PlainSegment;
  off: number;
  private chunk: Chunk | null = null;
  /**
   * A batch buffer kept on this thread: when a chunk is handed over far from full (a caller that
   * yields to the event loop between writes gets one flush per write), a right-sized copy is
   * transferred and the big buffer is reused for the next chunk, instead of allocating (and zeroing)
   * batchBytes per write. `spareUsed` bytes of it hold old data and are zeroed before reuse.
   */
  private spare: Buffer | null = null;
  private spareUsed = 0;
  /** Full-size batch buffers the flusher handed back after writing them (see TaskResult.recycled). */
  private pool: Buffer[] = [];
  private queued: Action[] = [];
  private transfer: ArrayBuffer[] = [];
  private last: { name: string; fileEnd: number; recStart: number } | null = null;
  /** End of the records closed into queued actions, and of those handed to the flusher. */
  private laidOut: number;
  private sentPos: number;
  writtenPos: number;
  private batches: { endPos: number; p: Promise<TaskResult> }[] = [];
  private inflightBytes = 0;
  private waiters: (() => void)[] = [];
  private scheduled = false;
  /** Bytes closed into queued write actions, not yet handed to the flusher. */
  private queuedBytes = 0;
  failure: CpError | null = null;
  /** Segments holding records not yet applied (index -> seq), the current one included. */
  private live = new Map<number, number>();
  private free: number[];
  private nextIndex: number;
  private maxSeq: number;
  private readFds = new Map<number, number>();
  private readRefs = new Map<number, number>();
  /** Files with direct appends in the epoch being built (the flusher holds their committed sizes). */
  private fenced = new Set<string>();
  /** The direct-append buffer being filled: bytes for [offset, offset+used) of `name`. */
  private direct: { name: string; offset: number; buf: Buffer; used: number } | null = null;
  /** Counts appendDirect calls; directDone is the count whose data the flusher has written. */
  directMark = 0;
  directDone = 0;
  stats = { records: 0, bytes: 0, fsyncs: 0, batches: 0, directBytes: 0 };

  constructor(
    private port: FlusherPort, private io: IO, private opts: WriterOptions, start: WriterStart,
    private catalog: () => { entries: CatalogEntry[]; epoch: number },
  ) {
    this.seg = start.segment;
    this.off = start.writeOffset;
    this.free = [...start.free];
    this.nextIndex = start.nextIndex;
    this.maxSeq = start.maxSeq;
    this.live.set(this.seg.index, this.seg.seq);
    this.sentPos = pos(this.seg.seq, this.off);
    this.laidOut = this.sentPos;
    this.writtenPos = this.sentPos;
  }

  /** First task: hand the flusher its state. */
  init(init: Omit<FlusherInit, 'segments'>): Promise<TaskResult> {
    return this.track(this.port.run({ init: { ...init, segments: [this.seg] }, actions: [] }), this.sentPos, 0);
  }

  get position(): number {
    return pos(this.seg.seq, this.off);
  }

  // ------------------------------------------------------------------------------------------
  // layout

  private closeChunk(): void {
    const c = this.chunk;
    if (!c) return;
    const end = Math.ceil(c.used / 8) * 8;
    c.buf.fill(0, c.used, end);
    for (const at of c.recStarts) sealRecord(c.buf, at, c.startOff + at);
    if (end * 4 <= c.buf.length && c.buf.length <= this.opts.batchBytes) {
      const copy = Buffer.from(new ArrayBuffer(end));
      c.buf.copy(copy, 0, 0, end);
      this.queued.push({ op: 'write', index: c.index, offset: c.startOff, bytes: copy });
      this.transfer.push(copy.buffer as ArrayBuffer);
      this.spare = c.buf;
      this.spareUsed = end;
    } else {
      this.queued.push({ op: 'write', index: c.index, offset: c.startOff, bytes: c.buf.subarray(0, end) });
      this.transfer.push(c.buf.buffer as ArrayBuffer);
    }
    this.queuedBytes += end;
    this.laidOut = pos(c.seq, c.startOff + end);
    this.chunk = null;
    this.last = null;
  }

  /** Make room for a record of `size` bytes in the current segment and chunk; returns its offset. */
  private place(size: number): number {
    if (size + SEGEND_RECORD_SIZE > this.seg.size - SEGMENT_HEADER_AREA) {
      throw new CpError('EINVAL', `a record of ${size} bytes does not fit a segment of ${this.seg.size} bytes`);
    }
    if (this.off + size + SEGEND_RECORD_SIZE > this.seg.size) this.rotate();
    let c = this.chunk;
    if (c && (c.startOff + Math.ceil(c.used / 8) * 8 !== this.off || Math.ceil(c.used / 8) * 8 + size > c.buf.length)) {
      this.closeChunk();
      c = null;
    }
    if (!c) {
      const cap = Math.max(this.opts.batchBytes, size);
      c = this.chunk = { index: this.seg.index, seq: this.seg.seq, startOff: this.off, buf: this.newBuffer(cap), used: 0, recStarts: [] };
    }
    const aligned = Math.ceil(c.used / 8) * 8;
    c.buf.fill(0, c.used, aligned);
    c.used = aligned;
    return aligned;
  }

  /** A zeroed batch buffer of at least `cap` bytes (the spare one when it is big enough). */
  private newBuffer(cap: number): Buffer {
    const spare = this.spare;
    if (spare && spare.length >= cap) {
      this.spare = null;
      spare.fill(0, 0, this.spareUsed);
      return spare;
    }
    const pooled = this.pool.pop();
    if (pooled && pooled.length >= cap) return pooled.fill(0);
    return Buffer.from(new ArrayBuffer(cap));
  }

  /**
   * Continue the log in a new segment. `extra`: bytes of entry records that must follow its catalog
   * in the same segment (a commit's list never straddles segments: FORMAT.md rule 6). The new
   * segment is larger than the store's segment size when its catalog and `extra` need it (rule 7).
   * It is made durable before the SEGEND naming it is written (rule 9): a valid SEGEND whose segment
   * is missing is then damage, never a torn tail.
   */
  private rotate(extra = 0): void {
    const seq = this.maxSeq + 1;
    const cat = this.catalog();
    const catOps = entryListOps(RecordType.CATALOG, cat.entries, MAX_PAYLOAD);
    const size = segmentSizeFor(entryListBytes(catOps) + extra, this.opts.segmentSize);
    this.closeChunk();
    const index = this.free.length ? this.free.shift()! : this.nextIndex++;
    this.maxSeq = seq;
    const next: PlainSegment = { version: FORMAT_VERSION, salt: randomSalt(), seq, storeId: this.opts.storeId, size, index };
    this.live.set(index, seq);
    this.queued.push({ op: 'segment', seg: next, durable: true });
    this.emit({ type: RecordType.SEGEND, nextSeq: seq }, 0, true);
    this.closeChunk();
    this.seg = next;
    this.off = SEGMENT_HEADER_AREA;
    this.emitList(RecordType.CATALOG, cat.entries, cat.epoch);
  }

  /**
   * Emit an entry list (a CATALOG, or a COMMIT with its apply cursor) as one record or, past a
   * record's payload cap, as a run of records (FORMAT.md rule 6). A COMMIT's run stays in one
   * segment. Returns the offset of the last record (the COMMIT).
   */
  private emitList(type: RecordType.CATALOG | RecordType.COMMIT, entries: CatalogEntry[], epoch: number, applied?: AppliedCursor | null): number {
    // Every field is checked before the first part is laid out: a list is written whole or not at
    // all (a part that failed to encode after others were laid out would leave a broken run, R6).
    for (const e of entries) {
      if (!isU64(e.position) || (e.size !== null && !isU64(e.size))) {
        throw new CpError('EINVAL', `entry ${JSON.stringify(e.name)}: position ${e.position} or size ${e.size} is not an integer from 0 to 2^53-1`);
      }
    }
    let ops = entryListOps(type, entries, recordCap(this.seg.size), applied);
    if (type === RecordType.COMMIT && ops.length > 1) {
      const bytes = entryListBytes(ops);
      if (this.off + bytes + SEGEND_RECORD_SIZE > this.seg.size) {
        this.rotate(bytes);
        ops = entryListOps(type, entries, recordCap(this.seg.size), applied);
      }
    }
    let offset = 0;
    for (const { op, flags } of ops) offset = this.emit(op, epoch, false, flags).offset;
    return offset;
  }

  /** Encode one record at the current position. `noRotate` is for the SEGEND itself. */
  private emit(op: Op, epoch: number, noRotate = false, flags = 0): { index: number; offset: number; bufAt: number } {
    const len = payloadSize(op);
    const size = recordSize(len);
    let at: number;
    if (noRotate) {
      // The writer always keeps SEGEND_RECORD_SIZE free, so this fits without rotating.
      let c = this.chunk;
      if (!c || c.startOff + Math.ceil(c.used / 8) * 8 !== this.off || Math.ceil(c.used / 8) * 8 + size > c.buf.length) {
        this.closeChunk();
        c = this.chunk = { index: this.seg.index, seq: this.seg.seq, startOff: this.off, buf: Buffer.from(new ArrayBuffer(Math.max(size, 4096))), used: 0, recStarts: [] };
      }
      const aligned = Math.ceil(c.used / 8) * 8;
      c.buf.fill(0, c.used, aligned);
      c.used = aligned;
      at = aligned;
    } else {
      at = this.place(size);
    }
    const c = this.chunk!;
    writeRecordHeader(c.buf, at, len, this.seg.salt, op.type, epoch, flags);
    encodePayload(c.buf, at + RECORD_HEADER_SIZE, op);
    c.used = at + RECORD_HEADER_SIZE + len;
    c.recStarts.push(at);
    const offset = c.startOff + at;
    this.off = c.startOff + Math.ceil(c.used / 8) * 8;
    this.last = null;
    this.stats.records++;
    this.stats.bytes += size;
    this.schedule();
    return { index: c.index, offset, bufAt: at };
  }

  /** Journal a non-write operation; returns the record's global position. */
  append(op: Op, epoch: number): number {
    this.check();
    if (op.type === RecordType.COMMIT || op.type === RecordType.CATALOG) {
      const offset = this.emitList(op.type, op.entries, epoch, op.type === RecordType.COMMIT ? op.applied : null);
      return pos(this.seg.seq, offset);
    }
    const r = this.emit(op, epoch);
    return pos(this.seg.seq, r.offset);
  }

  /**
   * Fast path of appendWrite: when the whole (non-empty) write continues the last record (small
   * sequential writes), extend it and return the data's journal offset; -1 when it does not fit
   * (then call appendWrite). The record is the one at lastRecordPos / lastRecordIndex.
   */
  continueWrite(name: string, fileOffset: number, data: Uint8Array): number {
    const c0 = this.chunk;
    const l0 = this.last;
    if (!c0 || !l0 || data.length === 0 || l0.name !== name || l0.fileEnd !== fileOffset || this.failure) return -1;
    const curLen = c0.buf.readUInt32LE(l0.recStart + 4);
    const n = data.length;
    if (curLen + n > MAX_PAYLOAD || c0.used + n > c0.buf.length || c0.startOff + c0.used + n + 8 > this.seg.size - SEGEND_RECORD_SIZE) return -1;
    const jOff = c0.startOff + c0.used;
    c0.buf.set(data, c0.used);
    c0.used += n;
    c0.buf.writeUInt32LE(curLen + n, l0.recStart + 4);
    this.off = c0.startOff + Math.ceil(c0.used / 8) * 8;
    this.stats.bytes += n;
    l0.fileEnd += n;
    this.schedule();
    return jOff;
  }

  /** Position of the record continueWrite extends. */
  get lastRecordPos(): number {
    return pos(this.chunk!.seq, this.chunk!.startOff + this.last!.recStart);
  }

  /** Segment index of the record continueWrite extends. */
  get lastRecordIndex(): number {
    return this.chunk!.index;
  }

  /** Journal a write, split into records of at most MAX_PAYLOAD and coalesced with a preceding one. */
  appendWrite(name: string, fileOffset: number, data: Uint8Array, epoch: number): JournalPiece[] {
    this.check();
    const pieces: JournalPiece[] = [];
    const fixed = 8 + nameSize(name);
    let done = 0;
    while (done < data.length || (data.length === 0 && pieces.length === 0)) {
      const c = this.chunk;
      const last = this.last;
      // Coalesce: extend the last record when it is a write to this file ending where this one starts.
      if (c && last && last.name === name && last.fileEnd === fileOffset + done) {
        const curLen = c.buf.readUInt32LE(last.recStart + 4);
        const room = Math.min(
          MAX_PAYLOAD - curLen,
          c.buf.length - c.used,
          this.seg.size - SEGEND_RECORD_SIZE - (c.startOff + c.used) - 8,
        );
        if (room > 0) {
          const n = Math.min(room, data.length - done);
          const jOff = c.startOff + c.used;
          c.buf.set(done === 0 && n === data.length ? data : data.subarray(done, done + n), c.used);
          c.used += n;
          c.buf.writeUInt32LE(curLen + n, last.recStart + 4);
          this.off = c.startOff + Math.ceil(c.used / 8) * 8;
          this.stats.bytes += n;
          pieces.push({ fileStart: fileOffset + done, len: n, index: c.index, jOff, pos: pos(c.seq, c.startOff + last.recStart) });
          done += n;
          last.fileEnd += n;
          continue;
        }
      }
      // A record never exceeds MAX_PAYLOAD nor a quarter of a segment (small test segments).
      const cap = recordCap(this.seg.size) - fixed;
      if (cap <= 0) throw new CpError('EINVAL', `file name too long for a segment of ${this.seg.size} bytes`);
      const n = Math.min(data.length - done, cap);
      const len = fixed + n;
      const at = this.place(recordSize(len));
      const ch = this.chunk!;
      writeRecordHeader(ch.buf, at, len, this.seg.salt, RecordType.WRITE, epoch);
      writeU64(ch.buf, fileOffset + done, at + RECORD_HEADER_SIZE);
      const dataAt = writeName(ch.buf, at + RECORD_HEADER_SIZE + 8, name);
      ch.buf.set(data.subarray(done, done + n), dataAt);
      ch.used = dataAt + n;
      ch.recStarts.push(at);
      this.off = ch.startOff + Math.ceil(ch.used / 8) * 8;
      this.stats.records++;
      this.stats.bytes += recordSize(len);
      pieces.push({ fileStart: fileOffset + done, len: n, index: ch.index, jOff: ch.startOff + dataAt, pos: pos(ch.seq, ch.startOff + at) });
      this.last = { name, fileEnd: fileOffset + done + n, recStart: at };
      done += n;
      if (n === 0) break;
    }
    this.schedule();
    return pieces;
  }

  // ------------------------------------------------------------------------------------------
  // direct appends

  /**
   * Write `data` at `offset` of `name` straight to the data file instead of the journal. The caller
   * (Store.writeNow) has checked that the range lies past everything the file's pending records
   * touch, that nothing pending renames, creates or truncates it, and that the last durable COMMIT
   * (or CATALOG) lists it as open with `fence`, its committed size: if this epoch never commits,
   * recovery cuts the file back to that size. The flusher only writes these bytes after that COMMIT
   * was synced (it runs tasks in order), so nothing is journaled for them at all.
   */
  appendDirect(name: string, fence: number, offset: number, data: Uint8Array): void {
    this.check();
    if (!this.fenced.has(name)) {
      // The flusher remembers the committed size, to cut the file back on rollback.
      this.closeDirect();
      this.queued.push({ op: 'fence', name, size: fence });
      this.fenced.add(name);
    }
    if (this.continueDirect(name, offset, data)) return;
    this.closeDirect();
    if (data.length >= this.opts.batchBytes) {
      // Bigger than a buffer: a copy of its own.
      const own = Buffer.from(new ArrayBuffer(data.length));
      own.set(data);
      this.queueDirect(name, offset, own);
      this.directMark++;
      this.stats.directBytes += data.length;
      this.schedule();
      return;
    }
    this.direct = { name, offset, buf: this.pool.pop() ?? Buffer.from(new ArrayBuffer(this.opts.batchBytes)), used: 0 };
    this.continueDirect(name, offset, data);
  }

  /** Fast path of appendDirect for a write continuing the direct buffer; false when it does not. */
  continueDirect(name: string, offset: number, data: Uint8Array): boolean {
    const d = this.direct;
    if (!d || d.name !== name || d.offset + d.used !== offset || d.used + data.length > d.buf.length || this.failure) return false;
    d.buf.set(data, d.used);
    d.used += data.length;
    this.directMark++;
    this.stats.directBytes += data.length;
    if (d.used === d.buf.length) this.closeDirect();
    this.schedule();
    return true;
  }

  private closeDirect(): void {
    const d = this.direct;
    if (!d) return;
    this.direct = null;
    if (d.used === 0) {
      if (d.buf.length === this.opts.batchBytes) this.pool.push(d.buf);
      return;
    }
    this.queueDirect(d.name, d.offset, d.buf.subarray(0, d.used));
  }

  private queueDirect(name: string, offset: number, bytes: Buffer): void {
    this.queued.push({ op: 'direct', name, offset, bytes });
    this.transfer.push(bytes.buffer as ArrayBuffer);
    this.queuedBytes += bytes.length;
  }

  /** Before the epoch's COMMIT is laid out: its direct appends are made durable first. */
  commitDirect(): void {
    this.endDirect('datasync');
  }

  /** After an ABORT: the files written directly are cut back to their committed sizes, durably. */
  abortDirect(): void {
    this.endDirect('undoDirect');
  }

  private endDirect(op: 'datasync' | 'undoDirect'): void {
    if (this.fenced.size === 0) return;
    this.closeDirect();
    this.closeChunk();
    this.queued.push({ op });
    this.fenced.clear();
  }

  /** Resolve once the flusher has written every direct append up to `mark` (a directMark value). */
  async whenDirect(mark: number): Promise<void> {
    if (this.directDone < mark) await this.flush();
    this.check();
  }

  // ------------------------------------------------------------------------------------------
  // hand-off

  private schedule(): void {
    // A caller looping on awaited writes never yields to the event loop: hand full batches over
    // now rather than at the next setImmediate, or they would pile up in memory.
    if (this.queuedBytes >= this.opts.batchBytes && !this.failure) {
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
      if (!this.failure) void this.flush();
    }, 1);
  }

  /** Tasks handed to the flusher so far (the number of the last one). */
  tasksSent = 0;
  /** The number of the first task that failed (Infinity while none has). */
  private failedTask = Infinity;

  /** Whether the first failure came from task `task` or one before it (tasks run in order). */
  failedBy(task: number): boolean {
    return this.failedTask <= task;
  }

  private track(p: Promise<TaskResult>, endPos: number, bytes: number, directMark = 0): Promise<TaskResult> {
    const task = ++this.tasksSent;
    this.inflightBytes += bytes;
    const tracked = p.then((res) => {
      this.inflightBytes -= bytes;
      this.stats.fsyncs += res.fsyncs;
      if (res.recycled) {
        for (const ab of res.recycled) {
          if (ab.byteLength === this.opts.batchBytes && this.pool.length < 8 && !this.pool.some((b) => b.buffer === ab)) this.pool.push(Buffer.from(ab));
        }
        res.recycled = undefined;
      }
      if (res.ok) {
        if (endPos > this.writtenPos) this.writtenPos = endPos;
        if (directMark > this.directDone) this.directDone = directMark;
      } else if (!this.failure) {
        this.failedTask = task;
        const err = res.error!;
        this.failure = new CpError((err.code as CpErrorCode) ?? 'EIO', err.message, { details: err.details });
      }
      this.batches = this.batches.filter((b) => b.p !== tracked);
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
      return res;
    });
    this.batches.push({ endPos, p: tracked });
    return tracked;
  }

  /** Send everything laid out so far, followed by `extra` actions, as one task. */
  flush(extra: Action[] = []): Promise<TaskResult> {
    this.closeDirect();
    this.closeChunk();
    if (this.queued.length === 0 && extra.length === 0) {
      const lastBatch = this.batches[this.batches.length - 1];
      return lastBatch ? lastBatch.p : Promise.resolve({ ok: !this.failure, fsyncs: 0 });
    }
    const actions = [...this.queued, ...extra];
    let bytes = 0;
    for (const a of this.queued) if (a.op === 'write' || a.op === 'direct') bytes += a.bytes.length;
    const transfer = this.transfer;
    this.queued = [];
    this.transfer = [];
    this.queuedBytes = 0;
    this.sentPos = this.laidOut;
    this.stats.batches++;
    return this.track(this.port.run({ actions }, transfer), this.sentPos, bytes, this.directMark);
  }

  /** True when drain() would wait: too much is on its way to the flusher. */
  get congested(): boolean {
    return this.inflightBytes > this.opts.maxInflight && !this.failure;
  }

  /** Wait while too much is on its way to the flusher. */
  async drain(): Promise<void> {
    while (this.inflightBytes > this.opts.maxInflight && !this.failure) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    this.check();
  }

  /** Resolve once every record before global position `p` has been written to its segment. */
  async whenWritten(p: number): Promise<void> {
    if (p > this.sentPos) void this.flush();
    while (this.writtenPos < p) {
      this.check();
      const b = this.batches.find((x) => x.endPos >= p) ?? this.batches[this.batches.length - 1];
      if (!b) break;
      await b.p;
    }
    this.check();
  }

  check(): void {
    if (this.failure) throw this.failure;
  }

  // ------------------------------------------------------------------------------------------
  // segments and reads

  /**
   * Called with the durable apply cursor: segments entirely before it are free again, unless a
   * pending overlay still reads from them (`pinned`).
   */
  applied(cursorSeq: number, pinned: Set<number>): void {
    for (const [index, seq] of this.live) {
      if (seq < cursorSeq && index !== this.seg.index && !this.readRefs.get(index) && !pinned.has(index)) {
        this.live.delete(index);
        this.free.push(index);
      }
    }
  }

  /** Read journaled bytes (already written) from segment `index`. */
  async read(index: number, jOff: number, buf: Uint8Array, off: number, len: number): Promise<void> {
    this.readRefs.set(index, (this.readRefs.get(index) ?? 0) + 1);
    try {
      let fd = this.readFds.get(index);
      if (fd === undefined) {
        fd = await this.io.open(path.join(this.opts.journalDir, segmentFileName(index)), 'read');
        this.readFds.set(index, fd);
      }
      let done = 0;
      while (done < len) {
        const n = await this.io.read(fd, buf, off + done, len - done, jOff + done);
        if (n <= 0) throw new CpError('EIO', `journal segment ${index} shorter than expected`);
        done += n;
      }
    } finally {
      this.readRefs.set(index, this.readRefs.get(index)! - 1);
    }
  }

  async closeReads(): Promise<void> {
    for (const fd of this.readFds.values()) await this.io.close(fd).catch(() => undefined);
    this.readFds.clear();
  }
}
