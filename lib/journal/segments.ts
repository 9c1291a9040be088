/**
 * Segment files as a whole: listing them (their headers), and starting one (sizing it, writing its
 * header and, for recovery, the CATALOG that opens it). Recovery and the flusher start segments
 * through the one initSegment below.
 */
import * as crypto from 'node:crypto';
import {
  SEGMENT_FILE_RE, SEGMENT_HEADER_AREA, SEGMENT_HEAD_BYTES, MARK_OFFSET, decodeSegmentHeader, decodeMark, encodeCatalog, encodeMark,
  encodeSegmentHeader, nextMark, segmentFileName, type CatalogEntry, type SegmentHeader,
} from '../format.js';
import { type IO, isENOENT, readFully, writeFully } from '../io.js';
import { journalFilePath } from './paths.js';
import { type SegmentFiles } from './segment-files.js';

export interface SegmentInfo extends SegmentHeader {
  index: number;
  file: string;
  /**
   * Version 5: the segment's high-water mark (FORMAT.md R19): no record of this life of the file
   * lies past it. As listed from the disk (the scan for later epochs stops there), or as the flusher
   * was told it at its start. Absent or null: unknown, the whole segment.
   */
  mark?: number | null;
}

/** A fresh salt for a segment's (re)initialisation (docs/FORMAT.md, "Segment header"). */
export const randomSalt = (): number => crypto.randomBytes(4).readUInt32LE(0);

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
    // Only the one name of an index is that index's segment file (FORMAT.md R13): the writer opens
    // segmentPath(dir, index), so seg-0000001.cpj is not segment 1, nor any segment.
    if (!m || segmentFileName(Number(m[1])) !== name) continue;
    const index = Number(m[1]);
    const file = journalFilePath(journalDir, name);
    out.indexes.push(index);
    const fd = await io.open(file, 'read');
    // The header and, from version 5 on, the mark after it (R19).
    const b = Buffer.alloc(SEGMENT_HEAD_BYTES);
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
    // Segments copied from another store are ignored (docs/FORMAT.md, "Segment header": storeId).
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
    out.bySeq.set(h.header.seq, { ...h.header, index, file, mark: decodeMark(b, h.header) });
    if (h.header.seq > out.maxSeq) out.maxSeq = h.header.seq;
  }
  out.indexes.sort((a, b) => a - b);
  return out;
}

/**
 * (Re)initialise a segment file: size it to the header's size, write its header area and, when
 * `entries` is given, the CATALOG of `entries` as of `epoch` that opens it (the first record of every
 * segment, FORMAT.md R3), and, for a version 5 segment, its first high-water mark (R19). Returns the offset after what it wrote, where the file has no
 * blocks yet (it was created or grown) or null, and the mark (null before version 5): durable with
 * the header.
 *
 * With `sync`, the segment is made durable here (fsync when the file is new or changed size, else
 * fdatasync; and the journal directory when the file was created): recovery's fresh segment. The
 * flusher passes `sync` false and its segment cache `files` (the file stays open there): it makes the
 * segment durable with its next barrier, before the SEGEND naming it is written (R9).
 */
export async function initSegment(
  io: IO, seg: SegmentInfo, sync: boolean, entries: CatalogEntry[] | null, epoch: number, journalDir: string,
  files?: SegmentFiles,
  /** The high-water mark's step (StoreOptions.markStep); default by the segment's size. */
  markStep?: number,
): Promise<{ writeOffset: number; sparseFrom: number | null; created: boolean; mark: number | null }> {
  let created = false;
  let fd = files?.cachedFd(seg.index);
  if (fd === undefined) {
    try {
      fd = await io.open(seg.file, 'readwrite');
    } catch (e) {
      if (!isENOENT(e)) throw e;
      fd = await io.open(seg.file, 'create');
      created = true;
    }
    files?.adopt(seg, fd);
  }
  try {
    const st = await io.fstat(fd);
    if (st.size !== seg.size) await io.ftruncate(fd, seg.size);
    const area = Buffer.alloc(SEGMENT_HEADER_AREA);
    encodeSegmentHeader(seg).copy(area, 0);
    let bytes = area;
    if (entries) {
      const rec = encodeCatalog(entries, seg.salt, epoch, SEGMENT_HEADER_AREA, seg.size);
      bytes = Buffer.concat([area, rec]);
    }
    const mark = seg.version >= 5 ? nextMark(bytes.length, seg.size, markStep) : null;
    if (mark !== null) encodeMark(seg.salt, seg.seq, mark).copy(bytes, MARK_OFFSET);
    await writeFully(io, fd, bytes, 0, bytes.length, 0);
    if (sync) {
      if (created || st.size !== seg.size) await io.fsync(fd);
      else await io.fdatasync(fd);
    }
    if (sync && created) await io.fsyncDir(journalDir);
    return { writeOffset: bytes.length, sparseFrom: st.size < seg.size ? Math.max(st.size, bytes.length) : null, created, mark };
  } finally {
    if (!files) await io.close(fd);
  }
}
