/**
 * Reading the journal: segment headers, records in order across segments, and the evidence that
 * tells a torn tail from corruption. Decoding never throws for damaged bytes: it reports why a record
 * ends the log (see RecordCheck) and the caller decides what that means.
 */
import * as path from 'node:path';
import {
  RECORD_HEADER_SIZE, SEGMENT_HEADER_AREA, SEGMENT_HEADER_SIZE, SEGMENT_FILE_RE, MAX_PAYLOAD, RecordType,
  checkRecordHeader, decodeSegmentHeader, readRecordHeader, recordCrcOk, recordSize, readU64, pos, posSeq, posOffset,
  type RecordHeader, type RecordCheck, type SegmentHeader,
} from '../format.js';
import { type IO, readFully } from '../io.js';

export interface SegmentInfo extends SegmentHeader {
  index: number;
  file: string;
}

export interface SegmentListing {
  /** Segments with a valid header of this store, by seq. */
  bySeq: Map<number, SegmentInfo>;
  /** Every segment file index present, valid or not (for recycling). */
  indexes: number[];
  /** Files whose header is damaged or belongs to another store or format. */
  invalid: { index: number; file: string; reason: string }[];
  maxSeq: number;
}

export async function listSegments(io: IO, journalDir: string, storeId: string | null): Promise<SegmentListing> {
  const out: SegmentListing = { bySeq: new Map(), indexes: [], invalid: [], maxSeq: 0 };
  let names: string[];
  try {
    names = await io.readdir(journalDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const name of names.sort()) {
    const m = SEGMENT_FILE_RE.exec(name);
    if (!m) continue;
    const index = Number(m[1]);
    const file = path.join(journalDir, name);
    out.indexes.push(index);
    const fd = await io.open(file, 'read');
    const b = Buffer.alloc(SEGMENT_HEADER_SIZE);
    try {
      await readFully(io, fd, b, 0, b.length, 0);
    } finally {
      await io.close(fd);
    }
    const h = decodeSegmentHeader(b);
    if (!h.ok) {
      out.invalid.push({ index, file, reason: h.reason });
      continue;
    }
    if (storeId !== null && h.header.storeId !== storeId) {
      out.invalid.push({ index, file, reason: 'foreign store' });
      continue;
    }
    const prev = out.bySeq.get(h.header.seq);
    if (prev) {
      // Two files claiming one seq can only come from tampering; keep neither silently: the lower
      // index wins deterministically and the other is reported.
      out.invalid.push({ index, file, reason: `duplicate seq ${h.header.seq}` });
      continue;
    }
    out.bySeq.set(h.header.seq, { ...h.header, index, file });
    if (h.header.seq > out.maxSeq) out.maxSeq = h.header.seq;
  }
  out.indexes.sort((a, b) => a - b);
  return out;
}

/**
 * Read window of SegmentReader: larger than the largest record (MAX_PAYLOAD plus its header), so a
 * record's header and payload come in the same read and a window holds several big records.
 */
export const READ_WINDOW = 4 * 1024 * 1024;

/** Windowed reader over one segment file: few large reads instead of one per record. */
export class SegmentReader {
  private win: Buffer = Buffer.alloc(0);
  private winStart = 0;
  /** The window's memory, reused by the next read that fits: what get() returns is valid until the next get(). */
  private backing: Buffer | null = null;
  /** `readEnd`: nothing at or past it is wanted (reads stop there unless a request reaches beyond). */
  /** `fd` gives the segment's descriptor at each read (SegmentFiles may have closed and reopened it since). */
  constructor(private io: IO, private fd: number | (() => Promise<number>), readonly size: number, private chunk = READ_WINDOW, private readEnd = size) {}

  /** Bytes [off, off+len) of the segment (shorter if the file is shorter). */
  async get(off: number, len: number): Promise<Buffer> {
    if (off >= this.winStart && off + len <= this.winStart + this.win.length) {
      return this.win.subarray(off - this.winStart, off - this.winStart + len);
    }
    const want = Math.min(Math.max(this.chunk, len), Math.max(0, this.size - off), Math.max(len, this.readEnd - off));
    if (!this.backing || this.backing.length < want) this.backing = Buffer.allocUnsafe(want);
    const b = this.backing.subarray(0, want);
    const n = await readFully(this.io, typeof this.fd === 'number' ? this.fd : await this.fd(), b, 0, want, off);
    this.win = b.subarray(0, n);
    this.winStart = off;
    return this.win.subarray(0, Math.min(len, n));
  }
}

export interface ScannedRecord {
  seq: number;
  index: number;
  offset: number;
  /** Global position: pos(seq, offset). */
  pos: number;
  header: RecordHeader;
  payload: Buffer;
  /** Aligned size on disk. */
  size: number;
}

export type EndReason = RecordCheck | 'segment-end' | 'missing-segment' | 'stop';

export interface ScanEnd {
  seq: number;
  offset: number;
  pos: number;
  reason: EndReason;
}

/** Check one record at `offset` of a segment; returns the record or why it is not one. */
export async function readRecordAt(
  reader: SegmentReader, seg: SegmentInfo, offset: number, checkCrc = true,
): Promise<{ ok: true; rec: ScannedRecord } | { ok: false; reason: RecordCheck | 'segment-end' }> {
  const room = seg.size - offset;
  if (room < RECORD_HEADER_SIZE) return { ok: false, reason: 'segment-end' };
  const hb = await reader.get(offset, RECORD_HEADER_SIZE);
  if (hb.length < RECORD_HEADER_SIZE) return { ok: false, reason: 'segment-end' };
  const h = readRecordHeader(hb);
  const check = checkRecordHeader(h, seg.salt, room, hb);
  if (check !== 'ok') return { ok: false, reason: check };
  const whole = await reader.get(offset, RECORD_HEADER_SIZE + h.len);
  if (whole.length < RECORD_HEADER_SIZE + h.len) return { ok: false, reason: 'length' };
  if (checkCrc && !recordCrcOk(whole, 0, h.len, offset)) return { ok: false, reason: 'crc' };
  return {
    ok: true,
    rec: {
      seq: seg.seq, index: seg.index, offset, pos: pos(seg.seq, offset), header: h,
      payload: whole.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + h.len), size: recordSize(h.len),
    },
  };
}

/**
 * Segment files a walk keeps open at most: a walk reads one segment at a time (and the applier one
 * more for data it re-reads), so a journal of any number of segments is read under a low `ulimit -n`.
 */
export const SEGMENT_FDS = 8;

/** Opens segment files on demand and keeps the most recently used SEGMENT_FDS of them open. */
export class SegmentFiles {
  /** index -> fd, least recently used first. */
  private fds = new Map<number, number>();
  constructor(readonly io: IO) {}
  async fd(seg: SegmentInfo): Promise<number> {
    let fd = this.fds.get(seg.index);
    if (fd !== undefined) {
      this.fds.delete(seg.index);
      this.fds.set(seg.index, fd);
      return fd;
    }
    for (;;) {
      try {
        fd = await this.io.open(seg.file, 'read');
        break;
      } catch (e) {
        // Out of descriptors: give one of ours back and try again.
        const code = (e as NodeJS.ErrnoException)?.code;
        if ((code !== 'EMFILE' && code !== 'ENFILE') || this.fds.size === 0) throw e;
        await this.evict();
      }
    }
    this.fds.set(seg.index, fd);
    while (this.fds.size > SEGMENT_FDS) await this.evict();
    return fd;
  }
  private async evict(): Promise<void> {
    const [index, fd] = this.fds.entries().next().value as [number, number];
    this.fds.delete(index);
    await this.io.close(fd);
  }
  /** A reader of `seg`; with `endPos`, reads stop where that position falls in this segment. */
  async reader(seg: SegmentInfo, endPos?: number): Promise<SegmentReader> {
    const readEnd = endPos !== undefined && posSeq(endPos) === seg.seq ? posOffset(endPos) : seg.size;
    await this.fd(seg);
    return new SegmentReader(this.io, () => this.fd(seg), seg.size, READ_WINDOW, readEnd);
  }
  async closeAll(): Promise<void> {
    for (const fd of this.fds.values()) await this.io.close(fd);
    this.fds.clear();
  }
}

/**
 * Walk the log from (startSeq, startOffset), following SEGEND records. Calls `visit` for each valid
 * record (return false to stop early) and returns where and why the log ended.
 */
export async function walkLog(
  segs: Map<number, SegmentInfo>, files: SegmentFiles, startSeq: number, startOffset: number,
  visit: (r: ScannedRecord) => boolean | void | Promise<boolean | void>,
  /** The caller stops at this position (visit returns false there): no need to read past it. */
  endPos?: number,
  /**
   * Records before this position were checksummed by a walk of this same process a moment ago
   * (recovery validates the whole log before applying it): their crc is not computed again.
   */
  verifiedTo = -1,
): Promise<ScanEnd> {
  let seg = segs.get(startSeq);
  let offset = startOffset;
  if (!seg) return { seq: startSeq, offset, pos: pos(startSeq, offset), reason: 'missing-segment' };
  let reader = await files.reader(seg, endPos);
  for (;;) {
    const r = await readRecordAt(reader, seg, offset, pos(seg.seq, offset) >= verifiedTo);
    if (!r.ok) return { seq: seg.seq, offset, pos: pos(seg.seq, offset), reason: r.reason };
    const rec = r.rec;
    if ((await visit(rec)) === false) return { seq: seg.seq, offset, pos: rec.pos, reason: 'stop' };
    if (rec.header.type === RecordType.SEGEND) {
      const nextSeq = readU64(rec.payload, 0);
      const next = segs.get(nextSeq);
      if (!next) return { seq: nextSeq, offset: SEGMENT_HEADER_AREA, pos: pos(nextSeq, SEGMENT_HEADER_AREA), reason: 'missing-segment' };
      seg = next;
      offset = SEGMENT_HEADER_AREA;
      reader = await files.reader(seg, endPos);
      continue;
    }
    offset += rec.size;
  }
}

/**
 * Look for proof that bytes at a failed record were once durable: a valid record with an epoch above
 * `epoch` after it, in the same segment (scanning 8-byte aligned offsets, since the failed record's
 * length cannot be trusted) or in any segment with a higher seq. Returns the one with the highest epoch.
 */
export async function findLaterEpoch(
  segs: Map<number, SegmentInfo>, files: SegmentFiles, failSeq: number, failOffset: number, epoch: number,
  /** Sees every valid record found on the way. */
  onRecord?: (r: ScannedRecord) => void,
): Promise<{ seq: number; offset: number; epoch: number } | null> {
  let best: { seq: number; offset: number; epoch: number } | null = null;
  const consider = (seq: number, offset: number, e: number, r: ScannedRecord): void => {
    if (onRecord) onRecord(r);
    if (e > epoch && (!best || e > best.epoch)) best = { seq, offset, epoch: e };
  };
  const seg = segs.get(failSeq);
  if (seg) {
    // Read the rest of the segment in large chunks and only decode where the salt matches.
    const fd = await files.fd(seg);
    const reader = await files.reader(seg);
    const CHUNK = 4 * 1024 * 1024;
    const buf = Buffer.allocUnsafe(CHUNK);
    const saltBytes = Buffer.alloc(4);
    saltBytes.writeUInt32LE(seg.salt >>> 0, 0);
    let off = failOffset + 8;
    while (off + RECORD_HEADER_SIZE <= seg.size) {
      const n = await readFully(files.io, fd, buf, 0, Math.min(CHUNK, seg.size - off), off);
      if (n < RECORD_HEADER_SIZE) break;
      let next = off + n - RECORD_HEADER_SIZE + 8; // where the next chunk resumes
      const view = buf.subarray(0, n);
      for (let i = 0; i + RECORD_HEADER_SIZE <= n; i += 8) {
        // Jump to the next place the salt appears (native search), then to its record start.
        const hit = view.indexOf(saltBytes, i + 8);
        if (hit < 0) break;
        if ((hit - 8) % 8 !== 0) {
          i = hit - 8 - ((hit - 8) % 8);
          continue;
        }
        i = hit - 8;
        if (i + RECORD_HEADER_SIZE > n) break;
        const r = await readRecordAt(reader, seg, off + i);
        if (r.ok) {
          consider(seg.seq, off + i, r.rec.header.epoch, r.rec);
          if (i + r.rec.size > n) {
            next = off + i + r.rec.size;
            break;
          }
          i += r.rec.size - 8;
        }
      }
      off = Math.max(next, off + 8);
    }
  }
  const later = [...segs.values()].filter((s) => s.seq > failSeq).sort((a, b) => a.seq - b.seq);
  for (const s of later) {
    await walkSegmentOnly(files, s, (rec) => consider(s.seq, rec.offset, rec.header.epoch, rec));
  }
  return best;
}

/** Valid records of one segment from its start, without following SEGEND. */
export async function walkSegmentOnly(
  files: SegmentFiles, seg: SegmentInfo, visit: (r: ScannedRecord) => boolean | void,
): Promise<ScanEnd> {
  const reader = await files.reader(seg);
  let offset = SEGMENT_HEADER_AREA;
  for (;;) {
    const r = await readRecordAt(reader, seg, offset);
    if (!r.ok) return { seq: seg.seq, offset, pos: pos(seg.seq, offset), reason: r.reason };
    if (visit(r.rec) === false) return { seq: seg.seq, offset, pos: r.rec.pos, reason: 'stop' };
    if (r.rec.header.type === RecordType.SEGEND) return { seq: seg.seq, offset, pos: r.rec.pos, reason: 'segment-end' };
    offset += r.rec.size;
  }
}

export const MAX_RECORD_SIZE = recordSize(MAX_PAYLOAD);
