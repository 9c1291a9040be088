/**
 * Reading the journal: records in order across segments, and the evidence that tells a torn tail
 * from corruption. Decoding never throws for damaged bytes: it reports why a record ends the log
 * (see RecordCheck) and the caller decides what that means. Segment listing is in segments.ts, the
 * cache of open segment files in segment-files.ts, the windowed reader in segment-reader.ts.
 */
import {
  RECORD_HEADER_SIZE, SEGMENT_HEADER_AREA, SEGEND_PAYLOAD_SIZE, MAX_PAYLOAD, RecordType,
  checkRecordHeader, readRecordHeader, recordCap, recordCrcOk, recordSize, readU64, pos,
  type RecordHeader, type RecordCheck,
} from '../format.js';
import { type SegmentInfo } from './segments.js';
import { type SegmentFiles } from './segment-files.js';
import { READ_WINDOW, type SegmentReader } from './segment-reader.js';

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

/**
 * Why a walk ended: a record that is not valid (RecordCheck, R1), the segment's end, a missing
 * segment, the visitor's stop, or 'payload': a valid SEGEND whose payload is not exactly its 8-byte
 * nextSeq (R14), so the walk cannot know where the log goes on. That SEGEND is not visited; what
 * such an end means (corruption at that record, R8) is the caller's to say.
 */
export type EndReason = RecordCheck | 'segment-end' | 'missing-segment' | 'stop' | 'payload';

export interface ScanEnd {
  seq: number;
  offset: number;
  pos: number;
  reason: EndReason;
}

/**
 * Check one record at `offset` of a segment; returns the record or why it is not one. A record is
 * valid only when all four checks of FORMAT.md R1 hold (salt, length, type and flags, crc), in that
 * order: nothing of it is trusted before.
 */
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
 * Walk the log from (startSeq, startOffset), following SEGEND records (FORMAT.md R2: the first record
 * that is not valid ends it). Calls `visit` for each valid record (return false to stop early) and
 * returns where and why the log ended; the order of records (R3, R5, R6) is the caller's to check.
 * A SEGEND is followed only when its payload is its nextSeq and nothing else (else the end is 'payload').
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
  try {
    for (;;) {
      const r = await readRecordAt(reader, seg, offset, pos(seg.seq, offset) >= verifiedTo);
      if (!r.ok) return { seq: seg.seq, offset, pos: pos(seg.seq, offset), reason: r.reason };
      const rec = r.rec;
      const segend = rec.header.type === RecordType.SEGEND;
      if (segend && rec.payload.length !== SEGEND_PAYLOAD_SIZE) return { seq: seg.seq, offset, pos: rec.pos, reason: 'payload' };
      if ((await visit(rec)) === false) return { seq: seg.seq, offset, pos: rec.pos, reason: 'stop' };
      if (segend) {
        const nextSeq = readU64(rec.payload, 0);
        const next = segs.get(nextSeq);
        if (!next) return { seq: nextSeq, offset: SEGMENT_HEADER_AREA, pos: pos(nextSeq, SEGMENT_HEADER_AREA), reason: 'missing-segment' };
        seg = next;
        offset = SEGMENT_HEADER_AREA;
        await reader.release();
        reader = await files.reader(seg, endPos);
        continue;
      }
      offset += rec.size;
    }
  } finally {
    await reader.release();
  }
}

/**
 * Look for proof that bytes at a failed record were once durable (FORMAT.md R8, the first proof): a
 * valid record with an epoch above `epoch` after it, in the same segment (scanning 8-byte aligned
 * offsets, since the failed record's length cannot be trusted) or in any segment with a higher seq.
 * Such a record is only written after the failed record's epoch was synced (R4). Returns the one
 * with the highest epoch.
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
    // No record of this life of the file lies past its high-water mark (version 5, FORMAT.md R19):
    // the never-written rest of the segment is not read. A valid mark is stale only when a write of
    // it that a sync had made durable was lost (a disk fault). The log is contiguous, so then the
    // walk ended past the mark, or valid records lie across it or start within one record's length
    // after it (the first of them may be the damaged one; no record of a version 5 segment is longer
    // than its cap, recordCap): the scan reads that far and a record header more (a header is read
    // only whole), and when it finds a record ending past the mark it reads on to the segment's end.
    const mark = seg.mark ?? null;
    await scanSegment(files, seg, failOffset, mark === null || failOffset > mark ? null : mark, consider);
  }
  const later = [...segs.values()].filter((s) => s.seq > failSeq).sort((a, b) => a.seq - b.seq);
  for (const s of later) {
    await walkSegmentOnly(files, s, (rec) => consider(s.seq, rec.offset, rec.header.epoch, rec));
  }
  return best;
}

/**
 * The scan of findLaterEpoch in one segment: every 8-byte aligned offset from `failOffset + 8` on,
 * read in large chunks (the next one read while this one is searched) and decoded only where the
 * salt matches. With the segment's `mark` (null: none to trust), up to staleMarkReach past it,
 * unless a valid record ends past the mark (it is stale): then, like without one, to the end.
 */
async function scanSegment(
  files: SegmentFiles, seg: SegmentInfo, failOffset: number, mark: number | null,
  consider: (seq: number, offset: number, e: number, r: ScannedRecord) => void,
): Promise<void> {
  let limit = mark === null ? seg.size : Math.min(seg.size, staleMarkReach(mark, seg.size));
  // (reads past a reader's end are still served, only not read ahead: the rare stale case)
  const chunks = await files.reader(seg, pos(seg.seq, limit), true);
  const reader = await files.reader(seg, pos(seg.seq, limit), false);
  const saltBytes = Buffer.alloc(4);
  saltBytes.writeUInt32LE(seg.salt >>> 0, 0);
  let off = failOffset + 8;
  try {
    while (off + RECORD_HEADER_SIZE <= limit) {
      const view = await chunks.get(off, Math.min(READ_WINDOW, limit - off));
      const n = view.length;
      if (n < RECORD_HEADER_SIZE) break;
      let next = off + n - RECORD_HEADER_SIZE + 8; // where the next chunk resumes
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
          if (mark !== null && off + i + r.rec.size > mark) limit = seg.size;
          if (i + r.rec.size > n) {
            next = off + i + r.rec.size;
            break;
          }
          i += r.rec.size - 8;
        }
      }
      off = Math.max(next, off + 8);
    }
  } finally {
    await chunks.release();
    await reader.release();
  }
}

/**
 * How far past a segment's mark the scan for later epochs reads to notice a stale mark (FORMAT.md
 * R19): the largest record of the segment and one record header more, so that the record after a
 * damaged one of the largest size, starting at or below the mark, is still read whole.
 */
export const staleMarkReach = (mark: number, size: number): number => mark + recordSize(recordCap(size)) + RECORD_HEADER_SIZE;

/** Valid records of one segment from its start, without following SEGEND. */
export async function walkSegmentOnly(
  files: SegmentFiles, seg: SegmentInfo, visit: (r: ScannedRecord) => boolean | void,
): Promise<ScanEnd> {
  const reader = await files.reader(seg);
  let offset = SEGMENT_HEADER_AREA;
  try {
    for (;;) {
      const r = await readRecordAt(reader, seg, offset);
      if (!r.ok) return { seq: seg.seq, offset, pos: pos(seg.seq, offset), reason: r.reason };
      if (visit(r.rec) === false) return { seq: seg.seq, offset, pos: r.rec.pos, reason: 'stop' };
      if (r.rec.header.type === RecordType.SEGEND) return { seq: seg.seq, offset, pos: r.rec.pos, reason: 'segment-end' };
      offset += r.rec.size;
    }
  } finally {
    await reader.release();
  }
}

export const MAX_RECORD_SIZE = recordSize(MAX_PAYLOAD);
