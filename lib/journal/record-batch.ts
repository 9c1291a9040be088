/**
 * The batch of records being laid out: one buffer (a "chunk") of consecutive records of one segment,
 * from `startOff` on, sealed and queued as a single write action when it is closed. Every record is
 * encoded by lib/format.ts; this file only places them. Consecutive writes that continue each other
 * in one file extend the last WRITE record in place (coalescing) until it is sealed.
 */
import {
  MAX_PAYLOAD, RECORD_ALIGN, RECORD_HEADER_SIZE, RecordType, SEGEND_RECORD_SIZE,
  encodePayload, encodeWriteHead, pos, recordLen, sealRecord, setRecordLen, writeRecordHeader, type Op,
} from '../format.js';
import { type PlainSegment } from '../flusher/protocol.js';
import { STAGE_BELOW, type BatchBuffers } from './batch-buffers.js';
import { type Outbox } from './outbox.js';

interface Chunk {
  index: number;
  seq: number;
  startOff: number;
  buf: Buffer;
  used: number;
  recStarts: number[];
}

/** Records start at 8-byte aligned offsets (docs/FORMAT.md, "Record"). */
const align = (n: number): number => Math.ceil(n / RECORD_ALIGN) * RECORD_ALIGN;

export class RecordBatch {
  private chunk: Chunk | null = null;
  /** The WRITE record a write continuing it may extend: its file, where it ends in the file, and its start in the chunk. */
  private last: { name: string; fileEnd: number; recStart: number } | null = null;
  /** End (global position) of the records closed into queued actions. */
  laidOut: number;

  constructor(private batchBytes: number, private buffers: BatchBuffers, private outbox: Outbox, start: number) {
    this.laidOut = start;
  }

  /**
   * Seal the chunk's records and queue it as one write action. The crc of each record binds its
   * segment offset (FORMAT.md R1), so a record is sealed only here, once its place and payload are final.
   */
  close(): void {
    const c = this.chunk;
    if (!c) return;
    const end = align(c.used);
    // Records are padded with zeros to a multiple of 8 (docs/FORMAT.md, "Record").
    c.buf.fill(0, c.used, end);
    for (const at of c.recStarts) sealRecord(c.buf, at, c.startOff + at);
    // A stage's bytes are copied out; a chunk far from full sends a right-sized copy and stays for the
    // next one; a full one goes itself.
    const bytes = this.buffers.isStage(c.buf)
      ? this.buffers.sendStage(c.buf, end)
      : end * 4 <= c.buf.length && c.buf.length <= this.batchBytes ? this.buffers.keepSpare(c.buf, end) : c.buf.subarray(0, end);
    this.outbox.pushBytes({ op: 'write', index: c.index, offset: c.startOff, bytes }, bytes.buffer, end);
    this.laidOut = pos(c.seq, c.startOff + end);
    this.chunk = null;
    this.last = null;
  }

  /**
   * Make room for a record of `size` bytes at offset `off` of `seg`: in the chunk when it ends there
   * and has room, else in a new one. Returns where the record starts in the chunk's buffer. `segEnd`:
   * the SEGEND record (whose room the writer always keeps) gets a small buffer of its own.
   */
  reserve(seg: PlainSegment, off: number, size: number, segEnd = false): number {
    let c = this.chunk;
    if (c && (c.startOff + align(c.used) !== off || align(c.used) + size > c.buf.length)) {
      this.close();
      c = null;
    }
    if (!c) {
      const buf = segEnd
        ? Buffer.from(new ArrayBuffer(Math.max(size, 4096)))
        : size < STAGE_BELOW ? this.buffers.takeStage(true) : this.buffers.take(Math.max(this.batchBytes, size));
      c = this.chunk = { index: seg.index, seq: seg.seq, startOff: off, buf, used: 0, recStarts: [] };
    }
    const aligned = align(c.used);
    c.buf.fill(0, c.used, aligned);
    c.used = aligned;
    return aligned;
  }

  /** Encode record `op` (payload `len` bytes) at `at`, which reserve() returned; returns its segment offset. */
  put(at: number, op: Op, len: number, salt: number, epoch: number, flags: number): number {
    const c = this.chunk!;
    writeRecordHeader(c.buf, at, len, salt, op.type, epoch, flags);
    encodePayload(c.buf, at + RECORD_HEADER_SIZE, op);
    c.used = at + RECORD_HEADER_SIZE + len;
    c.recStarts.push(at);
    this.last = null;
    return c.startOff + at;
  }

  /**
   * Encode a WRITE record of `data` to `name` at `fileOffset` at `at` (from reserve(); payload `len`
   * bytes). Later writes continuing it may extend it. Returns the segment offset of its data.
   */
  putWrite(at: number, len: number, salt: number, epoch: number, name: string, fileOffset: number, data: Uint8Array): number {
    const c = this.chunk!;
    writeRecordHeader(c.buf, at, len, salt, RecordType.WRITE, epoch);
    const dataAt = encodeWriteHead(c.buf, at + RECORD_HEADER_SIZE, fileOffset, name);
    c.buf.set(data, dataAt);
    c.used = dataAt + data.length;
    c.recStarts.push(at);
    this.last = { name, fileEnd: fileOffset + data.length, recStart: at };
    return c.startOff + dataAt;
  }

  /**
   * How many bytes of a write to `name` at `fileOffset` the last record can take (coalescing): 0 when
   * the write does not continue it. The record stays within MAX_PAYLOAD and its chunk, and ends
   * before the room kept for a SEGEND in a segment of `segmentSize` bytes.
   */
  room(name: string, fileOffset: number, segmentSize: number): number {
    const c = this.chunk;
    const last = this.last;
    if (!c || !last || last.name !== name || last.fileEnd !== fileOffset) return 0;
    const curLen = recordLen(c.buf, last.recStart);
    // The record's padding to 8 bytes (close()) must fit in the buffer too: a batchBytes that is not
    // a multiple of 8 let a chunk fill to its last byte, and the padding then threw (ERR_OUT_OF_RANGE
    // from the flush timer: the process died).
    const usable = c.buf.length - (c.buf.length % RECORD_ALIGN);
    return Math.max(0, Math.min(MAX_PAYLOAD - curLen, usable - c.used, segmentSize - SEGEND_RECORD_SIZE - (c.startOff + c.used) - 8));
  }

  /** Extend the last record with `data` (at most room() bytes); returns the segment offset of the data. */
  extend(data: Uint8Array): number {
    const c = this.chunk!;
    const last = this.last!;
    const curLen = recordLen(c.buf, last.recStart);
    const jOff = c.startOff + c.used;
    c.buf.set(data, c.used);
    c.used += data.length;
    setRecordLen(c.buf, last.recStart, curLen + data.length);
    last.fileEnd += data.length;
    return jOff;
  }

  /** Segment offset after the chunk's last record (aligned): where the next record goes. */
  get end(): number {
    const c = this.chunk!;
    return c.startOff + align(c.used);
  }

  /** Position of the last WRITE record (the one extend() extends). */
  get lastRecordPos(): number {
    return pos(this.chunk!.seq, this.chunk!.startOff + this.last!.recStart);
  }

  /** Segment index of the chunk (of the last record). */
  get lastRecordIndex(): number {
    return this.chunk!.index;
  }
}
