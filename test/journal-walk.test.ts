// One test per end reason of the log walk (EndReason in lib/journal/reader.ts: every RecordCheck of
// lib/format.ts that is not 'ok', then 'segment-end', 'missing-segment' and 'stop'), in the manner
// of LevelDB's log_test.cc: a journal written by the real JournalWriter on the simulated file
// system, one small piece of damage, and what walkLog makes of it (docs/FORMAT.md R1, R2).
import { expect } from 'chai';
import { RECORD_HEADER_SIZE, RecordType, SEGMENT_HEADER_AREA, MAX_PAYLOAD, pos, encodeSegmentHeader, type RecordCheck } from '../lib/format.js';
import type { EndReason, ScannedRecord } from '../lib/journal/reader.js';
import { JournalFixture, REC } from './helpers/journal-fixture.js';

/** A log of a catalog, two committed epochs and an uncommitted write, handed to the flusher. */
async function threeEpochs(): Promise<{ f: JournalFixture; recs: ScannedRecord[] }> {
  const f = await JournalFixture.open();
  f.write('a', 0, 'first epoch').entry('a', 11, 11);
  await f.commit();
  f.write('b', 0, 'second epoch');
  await f.commit();
  f.write('c', 0, 'not committed');
  await f.flush();
  const { records, end } = await f.walk();
  expect(end.reason).to.equal('zero');
  expect(records.map((r) => r.header.type)).to.deep.equal([
    RecordType.CATALOG, RecordType.WRITE, RecordType.COMMIT, RecordType.WRITE, RecordType.COMMIT, RecordType.WRITE,
  ]);
  return { f, recs: records };
}

const types = (rs: ScannedRecord[]): number[] => rs.map((r) => r.header.type);

// Every end reason has a test below; the compiler keeps this list whole (adding a RecordCheck or an
// EndReason without a test here fails to build).
const TESTED: Record<Exclude<EndReason, 'ok'>, true> = {
  zero: true, stale: true, length: true, type: true, crc: true, 'segment-end': true, 'missing-segment': true, stop: true, payload: true,
};
const NOT_AN_END: Extract<RecordCheck, 'ok'> = 'ok';

describe('log walk: one test per end reason', () => {
  it('lists every end reason (the record check "ok" is never one)', () => {
    expect(Object.keys(TESTED)).to.have.length(9);
    expect(NOT_AN_END).to.equal('ok');
  });

  it('zero: the log ends at the all-zero header after the last record written (EmptyTailIsTheEnd)', async () => {
    const { f, recs } = await threeEpochs();
    const last = recs[recs.length - 1];
    const { end } = await f.walk();
    expect(end).to.deep.equal({ seq: last.seq, offset: last.offset + last.size, pos: pos(last.seq, last.offset + last.size), reason: 'zero' });
    // A zeroed record in the middle is an end too: nothing after it is walked.
    f.zeroRange(recs[3], 0, RECORD_HEADER_SIZE);
    const w = await f.walk();
    expect(w.end.reason).to.equal('zero');
    expect(w.end.offset).to.equal(recs[3].offset);
    expect(types(w.records)).to.deep.equal([RecordType.CATALOG, RecordType.WRITE, RecordType.COMMIT]);
  });

  it('stale: a recycled segment ends at the first record of its earlier life (RecycledSegmentEndsAtOldSalt)', async () => {
    const f = await JournalFixture.open();
    // Fill the first segment and go on in a second: after an apply the first one is free.
    for (let i = 0; (await f.segments()).bySeq.size < 2; i++) {
      f.write('big', i * 4000, Buffer.alloc(4000, 0x5a));
      await f.commit();
    }
    await f.apply();
    const rec = await f.reopen();
    // Recovery started its fresh segment in the freed file: header and catalog are new, the records
    // after them are the first life's, with the old salt.
    expect(rec.segment.index).to.equal(0);
    expect(rec.segment.seq).to.equal(3);
    const { records, end } = await f.walk();
    expect(types(records)).to.deep.equal([RecordType.CATALOG]);
    expect(end.reason).to.equal('stale');
    expect(end.offset).to.equal(rec.writeOffset);
    expect(f.read({ index: 0, offset: end.offset }, REC.salt, 4).readUInt32LE(0)).to.not.equal(rec.segment.salt);
  });

  it('length: an impossible length ends the log, and so does a trailing record cut short (BadLengthIsAnEnd, TruncatedTrailingRecordIsIgnored)', async () => {
    const { f, recs } = await threeEpochs();
    const last = recs[5];
    // Longer than MAX_PAYLOAD.
    const len = f.read(last, REC.len, 4);
    f.put(last, REC.len, u32(MAX_PAYLOAD + 1));
    let w = await f.walk();
    expect(w.end.reason).to.equal('length');
    expect(w.end.offset).to.equal(last.offset);
    expect(w.records).to.have.length(5);
    // Within MAX_PAYLOAD but past the segment's end.
    f.put(last, REC.len, u32(f.segmentSize - last.offset));
    w = await f.walk();
    expect(w.end.reason).to.equal('length');
    expect(w.end.offset).to.equal(last.offset);
    // The header is whole but the file ends inside the payload.
    f.put(last, REC.len, len);
    f.shrink(f.segmentFile(last.index), last.offset + RECORD_HEADER_SIZE + 2);
    w = await f.walk();
    expect(w.end.reason).to.equal('length');
    expect(w.end.offset).to.equal(last.offset);
    expect(w.records).to.have.length(5);
  });

  it('type: an unknown record type, or a flag a type may not carry, ends the log (UnknownRecordTypeIsAnEnd)', async () => {
    const { f, recs } = await threeEpochs();
    // Its crc made right again: the type alone ends the log.
    f.put(recs[3], REC.type, Buffer.from([42]));
    f.fixCrc(recs[3]);
    let w = await f.walk();
    expect(w.end.reason).to.equal('type');
    expect(w.end.offset).to.equal(recs[3].offset);
    expect(w.records).to.have.length(3);
    // A WRITE with the MORE flag (only CATALOG and ENTRIES may carry it).
    f.put(recs[3], REC.type, Buffer.from([RecordType.WRITE, 1]));
    f.fixCrc(recs[3]);
    w = await f.walk();
    expect(w.end.reason).to.equal('type');
    expect(w.end.offset).to.equal(recs[3].offset);
  });

  it('crc: one flipped payload byte ends the log there, valid records after it are not walked (ChecksumMismatch)', async () => {
    const { f, recs } = await threeEpochs();
    f.flipByte(recs[3], REC.payload + 12);
    const w = await f.walk();
    expect(w.end).to.deep.equal({ seq: 1, offset: recs[3].offset, pos: recs[3].pos, reason: 'crc' });
    expect(w.records.map((r) => r.offset)).to.deep.equal(recs.slice(0, 3).map((r) => r.offset));
    // The crc binds the record's offset: the same bytes one record further on do not validate (R1).
    const moved = { index: 0, offset: recs[5].offset + recs[5].size };
    f.put(moved, 0, f.read(recs[4], 0, recs[4].size));
    f.fixCrc(recs[3]);
    const again = await f.walk();
    expect(again.end.offset, 'the record at its own place is valid again').to.equal(moved.offset);
    expect(again.end.reason).to.equal('crc');
  });

  it('segment-end: the log ends where the segment does, without a segment end record (SegmentEndsWithoutSegend)', async () => {
    const { f, recs } = await threeEpochs();
    const last = recs[5];
    const endOff = last.offset + last.size;
    // The file is cut right after the last record: no header can be read there.
    const file = f.segmentFile(last.index);
    const whole = f.read(file, 0, f.segmentSize);
    f.shrink(file, endOff);
    let w = await f.walk();
    expect(w.end).to.deep.equal({ seq: 1, offset: endOff, pos: pos(1, endOff), reason: 'segment-end' });
    expect(w.records).to.have.length(6);
    // The header says the segment ends less than a record header after the last record.
    f.put(file, 0, whole);
    f.rewriteSegmentHeader(0, { size: endOff + RECORD_HEADER_SIZE - 8 });
    w = await f.walk();
    expect(w.end.reason).to.equal('segment-end');
    expect(w.end.offset).to.equal(endOff);
  });

  it('missing-segment: a segment end record naming a segment that is gone, or a start in one (SegendToMissingSegment)', async () => {
    const f = await JournalFixture.open();
    for (let i = 0; (await f.segments()).bySeq.size < 2; i++) {
      f.write('big', i * 4000, Buffer.alloc(4000, 0x5a));
      await f.commit();
    }
    const before = await f.walk();
    expect(before.end.seq).to.equal(2);
    f.dropSegment(1);
    const w = await f.walk();
    expect(w.end).to.deep.equal({ seq: 2, offset: SEGMENT_HEADER_AREA, pos: pos(2, SEGMENT_HEADER_AREA), reason: 'missing-segment' });
    expect(w.records[w.records.length - 1].header.type).to.equal(RecordType.SEGEND);
    expect(w.records.every((r) => r.seq === 1)).to.equal(true);
    const none = await f.walk({ fromSeq: 7 });
    expect(none.records).to.have.length(0);
    expect(none.end).to.deep.equal({ seq: 7, offset: SEGMENT_HEADER_AREA, pos: pos(7, SEGMENT_HEADER_AREA), reason: 'missing-segment' });
  });

  it('payload: a segment end record with a valid crc whose payload is not its 8-byte next seq ends the walk there, unvisited', async () => {
    const { f, recs } = await threeEpochs();
    const at = { index: 0, offset: recs[5].offset + recs[5].size };
    for (const len of [0, 4, 7, 9, 16]) {
      f.zeroRange(at, 0, RECORD_HEADER_SIZE + 16);
      f.plant(at, { type: RecordType.SEGEND, nextSeq: 2 }, 0);
      f.put(at, REC.len, u32(len));
      f.fixCrc(at);
      const w = await f.walk();
      expect(w.end, `a ${len}-byte payload`).to.deep.equal({ seq: 1, offset: at.offset, pos: pos(1, at.offset), reason: 'payload' });
      expect(w.records).to.have.length(6);
    }
    // Its own 8 bytes: a usable segment end, followed to the (missing) segment it names.
    f.plant(at, { type: RecordType.SEGEND, nextSeq: 2 }, 0);
    f.zeroRange(at, RECORD_HEADER_SIZE + 8, 8);
    const w = await f.walk();
    expect(w.end.reason).to.equal('missing-segment');
    expect(w.records).to.have.length(7);
  });

  it('stop: the visitor ends the walk at a record, and the end names that record (VisitorStops)', async () => {
    const { f, recs } = await threeEpochs();
    const w = await f.walk({ stopAfter: 3 });
    expect(w.records).to.have.length(3);
    expect(w.end).to.deep.equal({ seq: 1, offset: recs[2].offset, pos: recs[2].pos, reason: 'stop' });
  });
});

describe('segment files: only the name segmentFileName gives an index (FORMAT.md R13)', () => {
  it('seg-0000001.cpj (a leading zero more) is not segment 1, nor any segment: never listed, walked or reused', async () => {
    const { f } = await threeEpochs();
    await f.crash();
    // A valid header of this store with the next seq, under a name the writer never opens for index 1.
    const odd = f.paths.journal + '/seg-0000001.cpj';
    f.sim.putFileSync(odd, f.read(f.segmentFile(0), 0, f.segmentSize));
    const head = encodeSegmentHeader({ ...f.segmentHeader(0), seq: 2 });
    f.put(odd, 0, head);
    const listing = await f.segments();
    expect(listing.indexes).to.deep.equal([0]);
    expect([...listing.bySeq.keys()]).to.deep.equal([1]);
    expect(listing.invalid).to.deep.equal([]);
    expect(listing.maxSeq).to.equal(1);
    // Recovery neither walks it nor hands it out as a free file; the next new file is index 1's own name.
    const rec = await f.recover();
    expect(rec.free).to.deep.equal([0]);
    expect(rec.segment.file).to.equal(f.segmentFile(1));
    expect(f.sim.readFileSync(odd)).to.not.equal(null);
  });
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
