// FORMAT.md R19 checked on a crash state: no valid record of a segment's present life lies past the
// high-water mark its header area holds. The scan for later epochs (R8 (e)) stops at that mark, so
// a record past it would be proof of durable bytes that recovery never looks at. Checked on every
// power-loss state before it is recovered (powerloss.ts), so any order of sectors the crash model
// makes is under test, the raises of the mark included.
import {
  META_DIR, JOURNAL_DIR, SEGMENT_FILE_RE, SEGMENT_HEADER_AREA, SEGMENT_HEADER_SIZE, SEGMENT_HEAD_BYTES, RECORD_HEADER_SIZE,
  checkRecordHeader, decodeMark, decodeSegmentHeader, readRecordHeader, recordCrcOk, recordSize, type SegmentHeader,
} from '../../lib/format.js';
import { type Image, type ImageNode } from './simfs.js';

function lookup(img: Image, p: string): ImageNode | null {
  let n = img.nodes.get(img.root) ?? null;
  for (const part of p.split('/').filter(Boolean)) {
    const id = n?.kind === 'dir' ? n.entries?.get(part) : undefined;
    n = id === undefined ? null : img.nodes.get(id) ?? null;
  }
  return n;
}

/** The first valid record past its segment's mark in the store at `store` of `img`, described; null when there is none. */
export function markBreach(img: Image, store: string): string | null {
  const dir = lookup(img, `${store}/${META_DIR}/${JOURNAL_DIR}`);
  if (!dir || dir.kind !== 'dir') return null;
  for (const [name, id] of dir.entries!) {
    const node = img.nodes.get(id);
    if (!SEGMENT_FILE_RE.test(name) || node?.kind !== 'file' || !node.data) continue;
    const bad = segmentMarkBreach(name, node.data);
    if (bad) return bad;
  }
  return null;
}

/** A segment file's header and high-water mark (null: none valid), from its bytes `b`; null when its header is not valid. */
export function headOf(b: Buffer): { header: SegmentHeader; mark: number | null } | null {
  if (b.length < SEGMENT_HEADER_SIZE) return null;
  const h = decodeSegmentHeader(b.subarray(0, SEGMENT_HEADER_SIZE));
  return h.ok ? { header: h.header, mark: decodeMark(b.subarray(0, SEGMENT_HEAD_BYTES), h.header) } : null;
}

/** The first valid record of segment file `name` (its bytes `b`) that ends past the segment's valid mark, described; null when none does. */
export function segmentMarkBreach(name: string, b: Buffer): string | null {
  const h = headOf(b);
  if (!h || h.mark === null) return null;
  const mark = h.mark;
  const size = Math.min(h.header.size, b.length);
  const salt = Buffer.alloc(4);
  salt.writeUInt32LE(h.header.salt >>> 0, 0);
  // Every 8-byte aligned place whose salt matches, from the records' start (a record may start below the mark and end past it).
  for (let hit = b.indexOf(salt, SEGMENT_HEADER_AREA + 8); hit >= 0 && hit - 8 + RECORD_HEADER_SIZE <= size; hit = b.indexOf(salt, hit + 1)) {
    const at = hit - 8;
    if (at % 8 !== 0) continue;
    const rh = readRecordHeader(b, at);
    if (checkRecordHeader(rh, h.header.salt, size - at, b, at) !== 'ok' || !recordCrcOk(b, at, rh.len, at)) continue;
    if (at + recordSize(rh.len) > mark) {
      return `${name}: a valid record (type ${rh.type}, epoch ${rh.epoch}) at offset ${at}, ${recordSize(rh.len)} bytes, ends past the segment's mark ${mark}`;
    }
  }
  return null;
}
