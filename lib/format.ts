/**
 * cpfile's on-disk format: the constants and the codecs, every record's encoder beside its decoder.
 * The specification is docs/FORMAT.md (byte diagrams, and the numbered rules R1..R12 that the code
 * cites); this file and that document change together, and any change is a new FORMAT_VERSION.
 * All integers are little-endian; u64 values are two u32 halves and stay below 2^53.
 */

import { crc32 } from './crc.js';

/** The version this code writes (docs/FORMAT.md, "Versions"). */
export const FORMAT_VERSION = 5;
/**
 * The versions it reads: version 1 is version 2 without sizes in its entries; version 2 is version 3
 * without ENTRIES records (every entry list in one record) and without the segment-before-SEGEND
 * ordering (rule 9); version 3 is version 4 without PREPARE and COMMIT_PREPARED records (R18);
 * version 4 is version 5 without the segment's high-water mark (R19).
 */
export const isReadableVersion = (v: number): boolean => v >= 1 && v <= 5;
/** For messages: "format versions 1 to 5". */
export const READABLE_VERSIONS_TEXT = 'format versions 1 to 5';

export const META_DIR = '.cpfile';
export const CONTROL_FILE = 'control';
export const JOURNAL_DIR = 'journal';
export const LOCK_NAME = 'lock';
export const OWNER_FILE = 'owner';
export const segmentFileName = (index: number): string => `seg-${String(index).padStart(6, '0')}.cpj`;
export const SEGMENT_FILE_RE = /^seg-(\d{6,})\.cpj$/;

export const SEGMENT_MAGIC = Buffer.from('CPFJSEG\0', 'latin1');
export const SEGMENT_HEADER_SIZE = 64;
export const SEGMENT_HEADER_AREA = 4096;
export const MIN_SEGMENT_SIZE = 64 * 1024;
export const MAX_SEGMENT_SIZE = 2 ** 31;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024;

export const RECORD_HEADER_SIZE = 24;
export const RECORD_ALIGN = 8;
/** Largest payload of one record; larger writes are split. */
export const MAX_PAYLOAD = 1024 * 1024;
export const MAX_NAME_BYTES = 4096;

export const CONTROL_MAGIC = Buffer.from('CPFCTRL\0', 'latin1');
export const CONTROL_SLOT_SIZE = 512;
export const CONTROL_FILE_SIZE = 2 * CONTROL_SLOT_SIZE;

export const enum RecordType {
  WRITE = 1,
  TRUNCATE = 2,
  CREATE = 3,
  UNLINK = 4,
  RENAME = 5,
  COMMIT = 6,
  ABORT = 7,
  CATALOG = 8,
  SEGEND = 9,
  /** Version 3: part of the entry list of the CATALOG or COMMIT it belongs to (see RECORD_FLAG_MORE). */
  ENTRIES = 10,
  /** Version 4: ends epoch `epoch` undecided (two-phase): its decision, COMMIT_PREPARED or ABORT, follows (R18). */
  PREPARE = 11,
  /** Version 4: the prepared epoch `epoch` is committed (R18). */
  COMMIT_PREPARED = 12,
}
export const RECORD_TYPE_NAMES: Record<number, string> = {
  1: 'write', 2: 'truncate', 3: 'create', 4: 'unlink', 5: 'rename', 6: 'commit', 7: 'abort', 8: 'catalog', 9: 'segend', 10: 'entries',
  11: 'prepare', 12: 'commit-prepared',
};
export const isKnownType = (t: number): boolean => t >= 1 && t <= 12;
/** A prepared epoch's id: 1 to this many bytes of UTF-8 (FORMAT.md R18). */
export const MAX_PREPARE_ID_BYTES = 255;

/**
 * Record flag (version 3): the entry list this record carries continues in the next record of its
 * epoch. A CATALOG with MORE is followed at once by ENTRIES records of the same epoch, the last one
 * without MORE; a COMMIT's list is carried by ENTRIES records with MORE that precede it in the same
 * segment, the COMMIT itself holding the last part. No other record has a flag.
 */
export const RECORD_FLAG_MORE = 1;
/** Flags a record of `type` may carry. */
const allowedFlags = (type: number): number => (type === RecordType.CATALOG || type === RecordType.ENTRIES ? RECORD_FLAG_MORE : 0);

/** A SEGEND's payload, its u64 nextSeq: exactly this many bytes (FORMAT.md R14). */
export const SEGEND_PAYLOAD_SIZE = 8;
/** Bytes a SEGEND record takes; the writer keeps this much free at the end of every segment. */
export const SEGEND_RECORD_SIZE = RECORD_HEADER_SIZE + SEGEND_PAYLOAD_SIZE;

/** A journal position comparable across segments: seq * 2^32 + offset. */
export const pos = (seq: number, offset: number): number => seq * 0x1_0000_0000 + offset;
export const posSeq = (p: number): number => Math.floor(p / 0x1_0000_0000);
export const posOffset = (p: number): number => p % 0x1_0000_0000;

// ---------------------------------------------------------------------------------------------
// integers

export function writeU64(buf: Buffer, value: number, at: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 out of range: ${value}`);
  buf.writeUInt32LE(value % 0x1_0000_0000, at);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}
export function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 0x1_0000_0000;
}

// ---------------------------------------------------------------------------------------------
// segment header

export interface SegmentHeader {
  version: number;
  salt: number;
  seq: number;
  storeId: string; // 16 hex chars
  size: number;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_SIZE);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeUInt32LE(h.version, 8);
  b.writeUInt32LE(h.salt >>> 0, 12);
  writeU64(b, h.seq, 16);
  Buffer.from(h.storeId, 'hex').copy(b, 24);
  b.writeUInt32LE(h.size, 32);
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
  return b;
}

export type HeaderResult =
  | { ok: true; header: SegmentHeader }
  | { ok: false; reason: 'short' | 'zero' | 'magic' | 'crc' | 'version' };

export function decodeSegmentHeader(b: Buffer): HeaderResult {
  if (b.length < SEGMENT_HEADER_SIZE) return { ok: false, reason: 'short' };
  if (isZero(b.subarray(0, SEGMENT_HEADER_SIZE))) return { ok: false, reason: 'zero' };
  if (!b.subarray(0, 8).equals(SEGMENT_MAGIC)) return { ok: false, reason: 'magic' };
  if (b.readUInt32LE(60) !== crc32(b.subarray(0, 60))) return { ok: false, reason: 'crc' };
  const version = b.readUInt32LE(8);
  if (!isReadableVersion(version)) return { ok: false, reason: 'version' };
  return {
    ok: true,
    header: {
      version,
      salt: b.readUInt32LE(12),
      seq: readU64(b, 16),
      storeId: b.subarray(24, 32).toString('hex'),
      size: b.readUInt32LE(32),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the segment's high-water mark (version 5, FORMAT.md R19)

export const MARK_MAGIC = Buffer.from('CPFJMRK\0', 'latin1');
/** Where a segment's mark is in its header area: in a sector of its own, never the header's. */
export const MARK_OFFSET = 512;
export const MARK_SIZE = 32;
/** The bytes at a segment file's start that hold its header and its mark. */
export const SEGMENT_HEAD_BYTES = MARK_OFFSET + MARK_SIZE;
const MARK_BLOCK = 4096;
const MARK_STEP_MIN = 2 * 1024 * 1024;
const MARK_STEP_MAX = 8 * 1024 * 1024;
/** The smallest step StoreOptions.markStep takes; it takes whole multiples of it. */
export const MARK_STEP_OPTION_MIN = MARK_BLOCK;

/**
 * How far a raised mark reaches past the journal's end (the writer's choice; readers only read the
 * mark): an eighth of the segment, from 2 MiB to 8 MiB (the default 64 MiB segment: 8 MiB). A
 * segment of at most 2 MiB gets a mark at its end at once and never raises it: scanning it whole
 * costs less than the syncs. StoreOptions.markStep sets it (the torture suite raises small steps).
 */
export const markStep = (size: number): number => Math.max(MARK_STEP_MIN, Math.min(MARK_STEP_MAX, Math.floor(size / 8 / MARK_BLOCK) * MARK_BLOCK));

/** The mark to raise to when the journal reaches `end` of a segment of `size` bytes: a step past it, at most the segment's end. */
export const nextMark = (end: number, size: number, step = markStep(size)): number => Math.min(size, Math.ceil(end / MARK_BLOCK) * MARK_BLOCK + step);

/** The mark: magic, salt, mark (u32), seq (u64), reserved, crc32 of bytes 0..27. */
export function encodeMark(salt: number, seq: number, mark: number): Buffer {
  const b = Buffer.alloc(MARK_SIZE);
  MARK_MAGIC.copy(b, 0);
  b.writeUInt32LE(salt >>> 0, 8);
  b.writeUInt32LE(mark, 12);
  writeU64(b, seq, 16);
  b.writeUInt32LE(crc32(b.subarray(0, 28)), 28);
  return b;
}

/**
 * The high-water mark of a segment (R19) from its first SEGMENT_HEAD_BYTES bytes and its decoded
 * header; null, meaning the whole segment, when the header is older than version 5 or the mark is
 * not whole or not of this life of the file (this salt and seq): a torn raise, a mark left from an
 * earlier life, or damage. A damaged mark never shortens a scan.
 */
export function decodeMark(head: Buffer, h: SegmentHeader): number | null {
  if (h.version < 5 || head.length < SEGMENT_HEAD_BYTES) return null;
  const b = head.subarray(MARK_OFFSET, MARK_OFFSET + MARK_SIZE);
  if (!b.subarray(0, 8).equals(MARK_MAGIC) || b.readUInt32LE(28) !== crc32(b.subarray(0, 28))) return null;
  if (b.readUInt32LE(8) !== h.salt >>> 0 || readU64(b, 16) !== h.seq) return null;
  const m = b.readUInt32LE(12);
  return m >= SEGMENT_HEADER_AREA && m <= h.size ? m : null;
}

// ---------------------------------------------------------------------------------------------
// records

export interface RecordHeader {
  crc: number;
  len: number;
  salt: number;
  type: number;
  flags: number;
  epoch: number;
}

/** Write a record header (crc left 0) at `at`; sealRecord() fills the crc once the payload is final. */
export function writeRecordHeader(buf: Buffer, at: number, len: number, salt: number, type: number, epoch: number, flags = 0): void {
  buf.writeUInt32LE(0, at);
  buf.writeUInt32LE(len, at + 4);
  buf.writeUInt32LE(salt >>> 0, at + 8);
  buf.writeUInt8(type, at + 12);
  buf.writeUInt8(flags, at + 13);
  buf.writeUInt16LE(0, at + 14);
  writeU64(buf, epoch, at + 16);
}

/**
 * The crc of a record: its segment offset (u32 LE) followed by bytes [4, 24 + len). Binding the
 * offset means a valid record copied or moved to another place (a misdirected write, a duplicated
 * or reordered range) no longer validates there.
 */
export function recordCrc(buf: Buffer, at: number, len: number, offset: number): number {
  const o = Buffer.allocUnsafe(4);
  o.writeUInt32LE(offset >>> 0, 0);
  return crc32(buf.subarray(at + 4, at + RECORD_HEADER_SIZE + len), crc32(o));
}

/** The payload length field of the record header at `at`. */
export const recordLen = (buf: Buffer, at: number): number => buf.readUInt32LE(at + 4);

/**
 * Set the payload length of the record header at `at` (a WRITE the writer extends in place with
 * data that continues it, before it is sealed).
 */
export function setRecordLen(buf: Buffer, at: number, len: number): void {
  buf.writeUInt32LE(len, at + 4);
}

/** Compute and store the crc of the record at `at` (segment offset `offset`) whose payload length is already in its header. */
export function sealRecord(buf: Buffer, at: number, offset = 0): void {
  const len = buf.readUInt32LE(at + 4);
  buf.writeUInt32LE(recordCrc(buf, at, len, offset), at);
}

export function recordSize(payloadLen: number): number {
  return Math.ceil((RECORD_HEADER_SIZE + payloadLen) / RECORD_ALIGN) * RECORD_ALIGN;
}

export function readRecordHeader(b: Buffer, at = 0): RecordHeader {
  return {
    crc: b.readUInt32LE(at),
    len: b.readUInt32LE(at + 4),
    salt: b.readUInt32LE(at + 8),
    type: b.readUInt8(at + 12),
    flags: b.readUInt8(at + 13),
    epoch: readU64(b, at + 16),
  };
}

export type RecordCheck = 'ok' | 'zero' | 'stale' | 'length' | 'type' | 'crc';

/**
 * Validate the header fields that can be checked before the payload is read: checks (1) to (3) of
 * FORMAT.md R1 (salt, length, type and flags); the crc (4) is recordCrcOk's.
 * `room` is how many bytes remain in the segment from the record's start.
 */
export function checkRecordHeader(h: RecordHeader, salt: number, room: number, raw: Buffer, at = 0): RecordCheck {
  if (h.salt !== salt) return isZero(raw.subarray(at, at + RECORD_HEADER_SIZE)) ? 'zero' : 'stale';
  if (h.len > MAX_PAYLOAD || recordSize(h.len) > room) return 'length';
  if (!isKnownType(h.type) || (h.flags & ~allowedFlags(h.type)) !== 0) return 'type';
  return 'ok';
}

/** Check the crc of a whole record held in `b` at `at`, read from segment offset `offset`. */
export function recordCrcOk(b: Buffer, at: number, len: number, offset = 0): boolean {
  return b.readUInt32LE(at) === recordCrc(b, at, len, offset);
}

// ---------------------------------------------------------------------------------------------
// payloads

export interface CatalogEntry {
  name: string;
  position: number;
  state: 'open' | 'closed';
  /** An open entry's committed file size; null for a closed entry and in version 1 records. */
  size: number | null;
}

/** An apply cursor as a COMMIT records it (version 2). */
export interface AppliedCursor {
  cursorSeq: number;
  cursorOffset: number;
  appliedEpoch: number;
}
const APPLIED_SIZE = 24;

/** Entry states on disk. */
const ENTRY_CLOSED = 0;
const ENTRY_OPEN_V1 = 1;
const ENTRY_OPEN = 2;

export type Op =
  | { type: RecordType.WRITE; name: string; offset: number; data: Buffer }
  | { type: RecordType.TRUNCATE; name: string; length: number }
  | { type: RecordType.CREATE; name: string }
  | { type: RecordType.UNLINK; name: string }
  | { type: RecordType.RENAME; from: string; to: string }
  | { type: RecordType.COMMIT; entries: CatalogEntry[]; applied?: AppliedCursor | null }
  | { type: RecordType.PREPARE; id: string; entries: CatalogEntry[]; applied?: AppliedCursor | null }
  | { type: RecordType.COMMIT_PREPARED; id: string }
  | { type: RecordType.ABORT }
  | { type: RecordType.CATALOG; entries: CatalogEntry[] }
  | { type: RecordType.SEGEND; nextSeq: number }
  | { type: RecordType.ENTRIES; entries: CatalogEntry[] };

export const nameSize = (name: string): number => 2 + Buffer.byteLength(name, 'utf8');

export function writeName(buf: Buffer, at: number, name: string): number {
  const n = buf.write(name, at + 2, 'utf8');
  buf.writeUInt16LE(n, at);
  return at + 2 + n;
}

export function readName(buf: Buffer, at: number): [string, number] {
  if (at + 2 > buf.length) throw new RangeError('name length past payload end');
  const n = buf.readUInt16LE(at);
  if (at + 2 + n > buf.length) throw new RangeError('name past payload end');
  return [buf.toString('utf8', at + 2, at + 2 + n), at + 2 + n];
}

export function entriesSize(entries: CatalogEntry[]): number {
  let n = 4;
  for (const e of entries) n += 9 + (e.state === 'open' && e.size !== null ? 8 : 0) + nameSize(e.name);
  return n;
}

export function writeEntries(buf: Buffer, at: number, entries: CatalogEntry[]): number {
  buf.writeUInt32LE(entries.length, at);
  at += 4;
  for (const e of entries) {
    writeU64(buf, e.position, at);
    if (e.state === 'open' && e.size !== null) {
      buf.writeUInt8(ENTRY_OPEN, at + 8);
      writeU64(buf, e.size, at + 9);
      at = writeName(buf, at + 17, e.name);
    } else {
      // An open entry whose size is unknown (carried over from a version 1 journal) keeps state 1.
      buf.writeUInt8(e.state === 'open' ? ENTRY_OPEN_V1 : ENTRY_CLOSED, at + 8);
      at = writeName(buf, at + 9, e.name);
    }
  }
  return at;
}

function readEntries(buf: Buffer, at: number, end?: { at: number }): CatalogEntry[] {
  const count = buf.readUInt32LE(at);
  at += 4;
  const out: CatalogEntry[] = [];
  for (let i = 0; i < count; i++) {
    const position = readU64(buf, at);
    const st = buf.readUInt8(at + 8);
    let size: number | null = null;
    at += 9;
    if (st === ENTRY_OPEN) {
      if (at + 8 > buf.length) throw new RangeError('entry size past payload end');
      size = readU64(buf, at);
      at += 8;
    } else if (st !== ENTRY_OPEN_V1 && st !== ENTRY_CLOSED) {
      throw new RangeError(`unknown entry state ${st}`);
    }
    const [name, next] = readName(buf, at);
    out.push({ name, position, state: st === ENTRY_CLOSED ? 'closed' : 'open', size });
    at = next;
  }
  if (end) end.at = at;
  return out;
}

/** Bytes of a WRITE payload before its data: the u64 file offset and the name. */
export const writeHeadSize = (name: string): number => 8 + nameSize(name);

/**
 * Encode the head of a WRITE payload at `at` (the u64 file offset, then the name); returns where its
 * data starts. The journal writer copies the data in itself, and may extend a WRITE with more data.
 */
export function encodeWriteHead(buf: Buffer, at: number, fileOffset: number, name: string): number {
  writeU64(buf, fileOffset, at);
  return writeName(buf, at + 8, name);
}

/** Payload byte length of an op (for WRITE, header part + data). */
export function payloadSize(op: Op): number {
  switch (op.type) {
    case RecordType.WRITE: return writeHeadSize(op.name) + op.data.length;
    case RecordType.TRUNCATE: return 8 + nameSize(op.name);
    case RecordType.CREATE:
    case RecordType.UNLINK: return nameSize(op.name);
    case RecordType.RENAME: return nameSize(op.from) + nameSize(op.to);
    case RecordType.COMMIT: return entriesSize(op.entries) + (op.applied ? APPLIED_SIZE : 0);
    case RecordType.PREPARE: return nameSize(op.id) + entriesSize(op.entries) + (op.applied ? APPLIED_SIZE : 0);
    case RecordType.COMMIT_PREPARED: return nameSize(op.id);
    case RecordType.CATALOG:
    case RecordType.ENTRIES: return entriesSize(op.entries);
    case RecordType.ABORT: return 0;
    case RecordType.SEGEND: return 8;
  }
}

/** Encode an op's payload at `at`; returns the end offset. */
export function encodePayload(buf: Buffer, at: number, op: Op): number {
  switch (op.type) {
    case RecordType.WRITE:
      at = encodeWriteHead(buf, at, op.offset, op.name);
      return at + op.data.copy(buf, at);
    case RecordType.TRUNCATE:
      writeU64(buf, op.length, at);
      return writeName(buf, at + 8, op.name);
    case RecordType.CREATE:
    case RecordType.UNLINK:
      return writeName(buf, at, op.name);
    case RecordType.RENAME:
      return writeName(buf, writeName(buf, at, op.from), op.to);
    case RecordType.COMMIT_PREPARED:
      return writeName(buf, at, op.id);
    case RecordType.PREPARE:
    case RecordType.COMMIT: {
      if (op.type === RecordType.PREPARE) at = writeName(buf, at, op.id);
      at = writeEntries(buf, at, op.entries);
      if (!op.applied) return at;
      writeU64(buf, op.applied.cursorSeq, at);
      writeU64(buf, op.applied.cursorOffset, at + 8);
      writeU64(buf, op.applied.appliedEpoch, at + 16);
      return at + APPLIED_SIZE;
    }
    case RecordType.CATALOG:
    case RecordType.ENTRIES:
      return writeEntries(buf, at, op.entries);
    case RecordType.ABORT:
      return at;
    case RecordType.SEGEND:
      writeU64(buf, op.nextSeq, at);
      return at + 8;
  }
}

/** Decode a payload. Throws RangeError on a payload that does not fit its type (a format error). */
export function decodePayload(type: number, p: Buffer): Op {
  switch (type) {
    case RecordType.WRITE: {
      const offset = readU64(p, 0);
      const [name, at] = readName(p, 8);
      return { type, name, offset, data: p.subarray(at) };
    }
    case RecordType.TRUNCATE: {
      const length = readU64(p, 0);
      return { type, name: readName(p, 8)[0], length };
    }
    case RecordType.CREATE:
    case RecordType.UNLINK:
      return { type, name: readName(p, 0)[0] };
    case RecordType.RENAME: {
      const [from, at] = readName(p, 0);
      return { type, from, to: readName(p, at)[0] };
    }
    case RecordType.COMMIT_PREPARED: {
      const [id, at] = readName(p, 0);
      if (at !== p.length || !validPrepareId(id)) throw new RangeError('commit-prepared payload is not one prepared id');
      return { type, id };
    }
    case RecordType.PREPARE:
    case RecordType.COMMIT: {
      let id = '';
      let start = 0;
      if (type === RecordType.PREPARE) {
        [id, start] = readName(p, 0);
        if (!validPrepareId(id)) throw new RangeError('prepare payload does not begin with a prepared id');
      }
      const end = { at: 0 };
      const entries = readEntries(p, start, end);
      const rest = p.length - end.at;
      let applied: AppliedCursor | null = null;
      if (rest === APPLIED_SIZE) applied = { cursorSeq: readU64(p, end.at), cursorOffset: readU64(p, end.at + 8), appliedEpoch: readU64(p, end.at + 16) };
      else if (rest !== 0) throw new RangeError(`${RECORD_TYPE_NAMES[type]} payload has ${rest} unexpected bytes after its entries`);
      return type === RecordType.PREPARE ? { type, id, entries, applied } : { type, entries, applied };
    }
    case RecordType.CATALOG:
    case RecordType.ENTRIES: {
      const end = { at: 0 };
      const entries = readEntries(p, 0, end);
      if (end.at !== p.length) throw new RangeError(`${RECORD_TYPE_NAMES[type]} payload has ${p.length - end.at} unexpected bytes after its entries`);
      return { type, entries };
    }
    case RecordType.ABORT:
      return { type };
    case RecordType.SEGEND:
      if (p.length !== SEGEND_PAYLOAD_SIZE) throw new RangeError(`segment end payload has ${p.length} bytes, not ${SEGEND_PAYLOAD_SIZE}`);
      return { type, nextSeq: readU64(p, 0) };
    default:
      throw new RangeError(`unknown record type ${type}`);
  }
}

/** Encode one complete, sealed record (header + payload + padding) to be written at segment offset `offset`. */
export function encodeRecord(op: Op, salt: number, epoch: number, offset = 0, flags = 0): Buffer {
  const len = payloadSize(op);
  const b = Buffer.alloc(recordSize(len));
  writeRecordHeader(b, 0, len, salt, op.type, epoch, flags);
  encodePayload(b, RECORD_HEADER_SIZE, op);
  sealRecord(b, 0, offset);
  return b;
}

// ---------------------------------------------------------------------------------------------
// entry lists of any length (version 3)

/** Bytes one entry takes in a list. */
export const entrySize = (e: CatalogEntry): number => 9 + (e.state === 'open' && e.size !== null ? 8 : 0) + nameSize(e.name);

/**
 * The largest payload of a record in a segment of `segmentSize` bytes: MAX_PAYLOAD, and at most a
 * quarter of the segment's record area (small segments still hold several records). An entry with
 * the longest name (MAX_NAME_BYTES) fits in the smallest segment's cap.
 */
export const recordCap = (segmentSize: number): number => Math.min(MAX_PAYLOAD, Math.floor((segmentSize - SEGMENT_HEADER_AREA) / 4));

/**
 * Split an entry list into the parts of consecutive records whose payloads are at most `cap` bytes;
 * the last part leaves `lastReserve` bytes for what follows its entries (a COMMIT's apply cursor).
 * Always at least one part (an empty list is one empty part).
 */
export function splitEntries(entries: CatalogEntry[], cap: number, lastReserve = 0): CatalogEntry[][] {
  const parts: CatalogEntry[][] = [];
  let cur: CatalogEntry[] = [];
  let size = 4;
  for (const e of entries) {
    const n = entrySize(e);
    if (size + n > cap && cur.length > 0) {
      parts.push(cur);
      cur = [];
      size = 4;
    }
    cur.push(e);
    size += n;
  }
  if (size + lastReserve > cap && cur.length > 0) {
    parts.push(cur);
    cur = [];
  }
  parts.push(cur);
  return parts;
}

/**
 * The records of an entry list: a CATALOG, or a COMMIT with its apply cursor, and the ENTRIES records
 * that carry the rest: a CATALOG first with MORE, then its ENTRIES (FORMAT.md R5); a COMMIT's
 * ENTRIES with MORE first, the COMMIT last (R6).
 */
export function entryListOps(
  type: RecordType.CATALOG | RecordType.COMMIT | RecordType.PREPARE, entries: CatalogEntry[], cap: number, applied?: AppliedCursor | null, id = '',
): { op: Op; flags: number }[] {
  if (type === RecordType.CATALOG) {
    const parts = splitEntries(entries, cap);
    return parts.map((part, i) => ({
      op: i === 0 ? { type: RecordType.CATALOG, entries: part } : { type: RecordType.ENTRIES, entries: part },
      flags: i < parts.length - 1 ? RECORD_FLAG_MORE : 0,
    }));
  }
  // A PREPARE is a COMMIT whose payload begins with its id (R18): its list is split the same way.
  const idBytes = type === RecordType.PREPARE ? nameSize(id) : 0;
  const parts = splitEntries(entries, cap, (applied ? APPLIED_SIZE : 0) + idBytes);
  return parts.map((part, i) => (i < parts.length - 1
    ? { op: { type: RecordType.ENTRIES, entries: part }, flags: RECORD_FLAG_MORE }
    : { op: type === RecordType.PREPARE
      ? { type, id, entries: part, applied: applied ?? null }
      : { type: RecordType.COMMIT, entries: part, applied: applied ?? null }, flags: 0 }));
}

/** A prepared epoch's id is 1 to MAX_PREPARE_ID_BYTES bytes of UTF-8 with no control character (R18). */
export function validPrepareId(id: string): boolean {
  const n = Buffer.byteLength(id, 'utf8');
  // eslint-disable-next-line no-control-regex
  return n >= 1 && n <= MAX_PREPARE_ID_BYTES && !/[\u0000-\u001f\u007f]/.test(id) && Buffer.from(id, 'utf8').toString('utf8') === id;
}

/** Journal bytes a COMMIT_PREPARED of `id` takes: the writer keeps this much room after a PREPARE (R18). */
export const commitPreparedSize = (id: string): number => recordSize(nameSize(id));

/** Journal bytes the records of an entry list take (headers and padding included). */
export function entryListBytes(ops: { op: Op }[]): number {
  let n = 0;
  for (const o of ops) n += recordSize(payloadSize(o.op));
  return n;
}

/** Encode a whole catalog (CATALOG and ENTRIES records, sealed) to be written at segment offset `offset`. */
export function encodeCatalog(entries: CatalogEntry[], salt: number, epoch: number, offset: number, segmentSize: number): Buffer {
  const bufs: Buffer[] = [];
  let at = offset;
  for (const { op, flags } of entryListOps(RecordType.CATALOG, entries, recordCap(segmentSize))) {
    const b = encodeRecord(op, salt, epoch, at, flags);
    bufs.push(b);
    at += b.length;
  }
  return Buffer.concat(bufs);
}

/**
 * Largest catalog (journal bytes of its records) a store may have: the open entries of a store are
 * refused past it (EINVAL at open), so that a segment sized by segmentSizeFor() always holds one.
 */
export const MAX_CATALOG_BYTES = 256 * 1024 * 1024;

/**
 * (FORMAT.md R7.) The size of a new segment that must hold `listBytes` of entry records (its catalog, and a commit's
 * list that may not straddle segments) beside room for data: `base` (the store's segment size) when
 * they take at most a quarter of it, else twice what they need, rounded up to 64 KiB.
 */
export function segmentSizeFor(listBytes: number, base: number): number {
  const need = SEGMENT_HEADER_AREA + listBytes + SEGEND_RECORD_SIZE;
  if (need - SEGMENT_HEADER_AREA <= (base - SEGMENT_HEADER_AREA) / 4) return base;
  const size = Math.ceil((2 * need) / 65536) * 65536;
  return Math.min(Math.max(size, base), MAX_SEGMENT_SIZE);
}

// ---------------------------------------------------------------------------------------------
// control file

export interface ControlState {
  counter: number;
  storeId: string;
  cursorSeq: number;
  cursorOffset: number;
  appliedEpoch: number;
  /**
   * (Version 3) The cursor points inside a committed epoch (a RENAME fence, R12): the record at it
   * was durable, so damage there is corruption, not a torn tail (R8). Absent: false.
   */
  inEpoch?: boolean;
}

/** Byte offset of the control slot's flags (version 3: bit 0 = inEpoch; zero in versions 1 and 2). */
const CONTROL_FLAGS_AT = 56;

export function encodeControlSlot(c: ControlState): Buffer {
  const b = Buffer.alloc(CONTROL_SLOT_SIZE);
  CONTROL_MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  writeU64(b, c.counter, 16);
  Buffer.from(c.storeId, 'hex').copy(b, 24);
  writeU64(b, c.cursorSeq, 32);
  writeU64(b, c.cursorOffset, 40);
  writeU64(b, c.appliedEpoch, 48);
  b.writeUInt32LE(c.inEpoch ? 1 : 0, CONTROL_FLAGS_AT);
  b.writeUInt32LE(crc32(b.subarray(0, CONTROL_SLOT_SIZE - 4)), CONTROL_SLOT_SIZE - 4);
  return b;
}

export type ControlSlotResult =
  | { ok: true; state: ControlState }
  | { ok: false; reason: 'short' | 'zero' | 'magic' | 'crc' | 'version' };

export function decodeControlSlot(b: Buffer): ControlSlotResult {
  if (b.length < CONTROL_SLOT_SIZE) return { ok: false, reason: 'short' };
  if (isZero(b)) return { ok: false, reason: 'zero' };
  if (!b.subarray(0, 8).equals(CONTROL_MAGIC)) return { ok: false, reason: 'magic' };
  if (b.readUInt32LE(CONTROL_SLOT_SIZE - 4) !== crc32(b.subarray(0, CONTROL_SLOT_SIZE - 4))) return { ok: false, reason: 'crc' };
  if (!isReadableVersion(b.readUInt32LE(8))) return { ok: false, reason: 'version' };
  return {
    ok: true,
    state: {
      counter: readU64(b, 16),
      storeId: b.subarray(24, 32).toString('hex'),
      cursorSeq: readU64(b, 32),
      cursorOffset: readU64(b, 40),
      appliedEpoch: readU64(b, 48),
      inEpoch: (b.readUInt32LE(CONTROL_FLAGS_AT) & 1) === 1,
    },
  };
}

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
