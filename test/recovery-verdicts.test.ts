// One test per verdict of recovery's end classifier (lib/recovery/index.ts, docs/FORMAT.md R8, R9):
// how the end of the log is judged, a normal end or a torn tail (recovered, the report says what was
// dropped) or corruption (ECORRUPT, naming the epochs that would be lost). Table-driven in the manner
// of etcd's repair_test.go: each row writes a journal through the real writer on the simulated file
// system (test/helpers/journal-fixture.ts), damages it in one documented way, and states the verdict.
// Every row was seen to give another verdict with its damage left out.
import { expect } from 'chai';
import { RECORD_HEADER_SIZE, RecordType, SEGMENT_HEADER_AREA, MAX_PAYLOAD, CONTROL_SLOT_SIZE } from '../lib/format.js';
import { type RecoveryReport, type RecoverOptions } from '../lib/recovery/index.js';
import type { ScannedRecord } from '../lib/journal/reader.js';
import { JournalFixture, REC, STORE } from './helpers/journal-fixture.js';
import { expectCpError } from './helpers/sandbox.js';

/**
 * Records of the journal every row starts from: the catalog, epoch 1 (a write of 'a', its COMMIT
 * listing 'a' open), epoch 2 (a write of 'b', its COMMIT). Nothing is applied.
 */
const CATALOG = 0, WRITE_A = 1, COMMIT_1 = 2, WRITE_B = 3, COMMIT_2 = 4;

async function twoEpochs(f: JournalFixture): Promise<ScannedRecord[]> {
  f.write('a', 0, 'epoch one').entry('a', 9, 9);
  await f.commit();
  f.write('b', 0, 'epoch two');
  await f.commit();
  const recs = await f.records();
  expect(recs.map((r) => r.header.type)).to.deep.equal([RecordType.CATALOG, RecordType.WRITE, RecordType.COMMIT, RecordType.WRITE, RecordType.COMMIT]);
  return recs;
}

/** Fill segments until the log goes on in a second one (seq 2, file index 1). */
async function twoSegments(f: JournalFixture): Promise<void> {
  for (let i = 0; (await f.segments()).bySeq.size < 2; i++) {
    f.write('big', i * 4000, Buffer.alloc(4000, 0x5a));
    await f.commit();
  }
}

/** The tail after epoch 2: two uncommitted records (of 'c', then 'd'), handed to the flusher. */
async function tail(f: JournalFixture): Promise<ScannedRecord[]> {
  f.write('c', 0, 'never committed').append({ type: RecordType.CREATE, name: 'd' });
  await f.flush();
  return (await f.records()).slice(5);
}

type Normal = { report: Partial<RecoveryReport> };
type Corrupt = { code: 'ECORRUPT' | 'EFORMAT'; message: RegExp[]; details: Record<string, unknown> };
interface Row {
  name: string;
  /** Writes the journal and damages it; may return options for recover(). */
  make: (f: JournalFixture) => Promise<Partial<RecoverOptions> | void>;
  want: Normal | Corrupt | ((r: RecoveryReport, f: JournalFixture) => void);
}

const normal: Row[] = [
  {
    name: 'a clean end after the last commit: every committed epoch is replayed, nothing dropped',
    make: async (f) => {
      await twoEpochs(f);
    },
    want: { report: { epoch: 2, replayedEpochs: 2, replayedRecords: 2, endReason: 'zero', tornTail: false, discardedRecords: 0, corruption: null, staleControl: false } },
  },
  {
    name: 'an uncommitted epoch at the end is discarded (its records counted), not replayed',
    make: async (f) => {
      await twoEpochs(f);
      await tail(f);
    },
    want: (r) => {
      expect(r).to.include({ epoch: 2, replayedEpochs: 2, endReason: 'zero', tornTail: false, discardedRecords: 2, clean: false });
      expect(r.discardedBytes).to.be.greaterThan(2 * RECORD_HEADER_SIZE);
      expect(r.filesTouched).to.deep.equal(['a', 'b']);
    },
  },
  {
    name: 'a torn tail: a record after the last commit fails its crc (normal after a crash; reported)',
    make: async (f) => {
      await twoEpochs(f);
      const t = await tail(f);
      f.flipByte(t[1], REC.payload + 2);
    },
    want: { report: { epoch: 2, replayedEpochs: 2, endReason: 'crc', tornTail: true, discardedRecords: 1, corruption: null } },
  },
  {
    name: 'a torn tail: a record after the last commit has an impossible length',
    make: async (f) => {
      await twoEpochs(f);
      const t = await tail(f);
      f.put(t[0], REC.len, u32(MAX_PAYLOAD + 8));
    },
    want: { report: { epoch: 2, endReason: 'length', tornTail: true, discardedRecords: 0, corruption: null } },
  },
  {
    name: 'a torn tail: a record after the last commit has an unknown type',
    make: async (f) => {
      await twoEpochs(f);
      const t = await tail(f);
      f.put(t[1], REC.type, Buffer.from([77]));
    },
    want: { report: { epoch: 2, endReason: 'type', tornTail: true, discardedRecords: 1, corruption: null } },
  },
  {
    name: 'a zeroed tail (never written) ends the log: no torn tail, nothing to discard',
    make: async (f) => {
      await twoEpochs(f);
      const t = await tail(f);
      f.zeroRange(t[0], 0, t[0].size + t[1].size);
    },
    want: { report: { epoch: 2, replayedEpochs: 2, endReason: 'zero', tornTail: false, discardedRecords: 0, corruption: null } },
  },
  {
    name: 'a stale tail (bytes of an earlier life, another salt) ends the log, even with a higher epoch',
    make: async (f) => {
      const recs = await twoEpochs(f);
      const at = { index: 0, offset: recs[COMMIT_2].offset + recs[COMMIT_2].size };
      f.plant(at, { type: RecordType.COMMIT, entries: [], applied: null }, 9, { salt: (f.segmentHeader(0).salt + 1) >>> 0 });
    },
    want: { report: { epoch: 2, endReason: 'stale', tornTail: false, discardedRecords: 0, corruption: null } },
  },
  {
    name: 'a segment of another store (its id) is never taken for live, nor as evidence of corruption',
    make: async (f) => {
      await twoEpochs(f);
      const t = await tail(f);
      f.flipByte(t[1], REC.payload + 2);
      // A journal of epochs 1..5, copied in from another store under a later seq.
      const other = await JournalFixture.open();
      for (let i = 0; i < 5; i++) {
        other.write('x', i, 'x');
        await other.commit();
      }
      await other.crash();
      f.sim.putFileSync(f.segmentFile(7), other.read(other.segmentFile(0), 0, other.segmentSize));
      f.rewriteSegmentHeader(7, { seq: 5 });
      expect(f.segmentHeader(7).storeId).to.not.equal(f.storeId);
    },
    want: (r, f) => {
      expect(r).to.include({ epoch: 2, endReason: 'crc', tornTail: true, corruption: null });
      expect(r.entries.map((e) => e.name)).to.deep.equal(['a']);
      expect(f.recovered.report.created).to.equal(true);
    },
  },
  {
    name: 'a segment end record of a version 2 segment naming a missing segment: the end of the log (R9 is version 3)',
    make: async (f) => {
      await twoSegments(f);
      f.dropSegment(1);
      f.rewriteSegmentHeader(0, { version: 2 });
    },
    want: (r) => {
      expect(r).to.include({ endReason: 'missing-segment', tornTail: false, corruption: null });
      expect(r.epoch).to.be.greaterThan(0);
    },
  },
  {
    name: 'a store whose cursor never moved (control counter 1) and has no segment yet: an empty log',
    make: async (f) => {
      await f.crash();
      f.sim.removeSync(f.segmentFile(0));
      // The only slot left is one with counter 1, as createStore writes it.
      const { slot } = await f.control();
      await f.writeControl({ counter: 1 });
      f.zeroRange(f.paths.control, slot * CONTROL_SLOT_SIZE, CONTROL_SLOT_SIZE);
    },
    want: { report: { created: false, epoch: 0, endReason: 'missing-segment', tornTail: false, corruption: null, discardedRecords: 0 } },
  },
  {
    name: 'a brand-new store (control counter 1) whose first catalog is torn: a torn tail, nothing was ever durable there',
    make: async (f) => {
      await f.crash();
      f.flipByte((await f.records())[0], REC.payload + 1);
      const { slot } = await f.control();
      await f.writeControl({ counter: 1 });
      f.zeroRange(f.paths.control, slot * CONTROL_SLOT_SIZE, CONTROL_SLOT_SIZE);
    },
    want: (r) => {
      expect(r).to.include({ epoch: 0, endReason: 'crc', tornTail: true, corruption: null });
      expect(r.entries).to.deep.equal([]);
    },
  },
  {
    name: 'the control file lost its newest slot: the replay starts at the cursor a COMMIT records (staleControl)',
    make: async (f) => {
      f.write('a', 0, 'epoch one').entry('a', 9, 9);
      await f.commit();
      await f.apply();
      f.write('b', 0, 'epoch two');
      await f.commit();
      await f.loseNewestControlSlot();
    },
    want: { report: { epoch: 2, staleControl: true, replayedEpochs: 1, endReason: 'zero', tornTail: false, corruption: null } },
  },
];

const corrupt: Row[] = [
  {
    name: 'damage followed by valid records of a later epoch: those were written after the damaged epoch was durable',
    make: async (f) => {
      const recs = await twoEpochs(f);
      f.flipByte(recs[WRITE_A], REC.payload + 12);
    },
    want: {
      code: 'ECORRUPT',
      message: [/^journal damaged at segment 1 offset 4128 \(crc\), not a torn tail: /, /a valid record of epoch 2 follows at segment 1 offset \d+/, /Epochs 1\.\.2 would be lost; cp-recover --force/],
      details: { seq: 1, offset: 4128, reason: 'crc', lostFrom: 1, lostTo: 2 },
    },
  },
  {
    name: 'a segment end record of a version 3 segment naming a missing segment (R9)',
    make: async (f) => {
      await twoSegments(f);
      f.dropSegment(1);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(missing-segment\), not a torn tail: segment 2, named by the segment end record at segment 1 offset \d+, is missing, and a segment is made durable before the record naming it is written/],
      details: { seq: 2, offset: SEGMENT_HEADER_AREA, reason: 'missing-segment' },
    },
  },
  {
    name: 'the apply cursor lies beyond the damaged record (it was applied, so it was durable)',
    make: async (f) => {
      const recs = await twoEpochs(f);
      await f.apply();
      f.flipByte(recs[WRITE_B], REC.payload + 12);
    },
    want: {
      code: 'ECORRUPT',
      // Epochs 1 and 2 are applied: none is lost (there is no epoch 3), only what COMMIT_2 recorded of the open entries.
      message: [/\(crc\), not a torn tail: the apply cursor \(segment 1 offset \d+\) lies beyond it/,
        /No epoch would be lost \(every epoch up to 2 is kept\); the open entries recorded after epoch 1 are lost \(the store opens with those of epoch 1\)/],
      details: { kind: 'cursor-past-damage', seq: 1, reason: 'crc', lostFrom: 3, lostTo: 2 },
    },
  },
  {
    name: 'the apply cursor points at the damaged record inside a committed epoch (a rename fence)',
    make: async (f) => {
      const recs = await twoEpochs(f);
      await f.writeControl({ cursorSeq: 1, cursorOffset: recs[WRITE_B].offset, appliedEpoch: 1, inEpoch: true });
      f.flipByte(recs[WRITE_B], REC.payload + 12);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(crc\), not a torn tail: the apply cursor points at it, inside a committed epoch \(a rename was being applied\)/],
      details: { seq: 1, reason: 'crc', lostFrom: 2, lostTo: 2 },
    },
  },
  {
    name: 'a COMMIT past the damage records an apply cursor past it too: the control file is older than the journal',
    make: async (f) => {
      const recs0 = (f.write('a', 0, 'epoch one').entry('a', 9, 9), await f.commit(), await f.apply(), await f.records());
      f.write('b', 0, 'epoch two');
      await f.commit();
      await f.loseNewestControlSlot();
      f.flipByte(recs0[WRITE_A], REC.payload + 12);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(crc\), not a torn tail: the commit of epoch 2 at segment 1 offset \d+ records an apply cursor \(segment 1 offset \d+\) beyond the end of the log: the control file is older than the journal/],
      details: { seq: 1, offset: 4128, reason: 'crc', lostFrom: 1, lostTo: 2 },
    },
  },
  {
    name: 'the catalog opening the cursor\'s segment is damaged while valid records follow it',
    make: async (f) => {
      const recs = await twoEpochs(f);
      f.flipByte(recs[CATALOG], REC.payload + 1);
    },
    want: {
      code: 'ECORRUPT',
      message: [/segment 1 offset 4096 \(crc\), not a torn tail: the catalog record opening segment 1 is damaged but valid records follow it/],
      details: { seq: 1, offset: SEGMENT_HEADER_AREA, reason: 'crc' },
    },
  },
  {
    name: 'after a recovery (control counter above 1) the catalog at the cursor is damaged, nothing valid after it: corruption, not a torn tail dropping the open entries',
    make: async (f) => {
      f.write('a', 0, 'one').entry('a', 3, 3);
      await f.commit();
      const rec = await f.reopen();
      expect(rec.control.counter).to.be.greaterThan(1);
      expect(rec.report.entries.map((e) => e.name)).to.deep.equal(['a']);
      const recs = await f.records();
      expect(recs.map((r) => [r.seq, r.offset, r.header.type])).to.deep.equal([[2, SEGMENT_HEADER_AREA, RecordType.CATALOG]]);
      f.flipByte(recs[0], REC.payload + 1);
    },
    want: {
      code: 'ECORRUPT',
      message: [/^journal damaged at segment 2 offset 4096 \(crc\), not a torn tail: the catalog record opening segment 2, where the apply cursor is, is damaged, and it was made durable before the cursor moved there/,
        /No epoch would be lost \(every epoch up to 1 is kept\); --force keeps the applied files and opens the store with no open entries/],
      details: { kind: 'damaged-cursor-catalog', forceable: true, seq: 2, offset: SEGMENT_HEADER_AREA, reason: 'crc', lostFrom: 2, lostTo: 1 },
    },
  },
  {
    name: 'the catalog is damaged and the apply cursor lies past it',
    make: async (f) => {
      const recs = await twoEpochs(f);
      await f.apply();
      f.flipByte(recs[CATALOG], REC.payload + 1);
    },
    want: { code: 'ECORRUPT', message: [/^the catalog record at the start of segment 1 is damaged$/], details: { seq: 1, offset: SEGMENT_HEADER_AREA } },
  },
  {
    name: 'the log ends inside the catalog opening the cursor\'s segment (R5: it was synced whole)',
    make: async (f) => {
      // Enough open entries for a catalog in two parts (a 64 KiB segment caps a record at 15 KiB).
      for (let i = 0; i < 100; i++) f.entry(`${'n'.repeat(200)}${i}`, i, i);
      await f.commit();
      await f.reopen();
      const recs = await f.records();
      expect(recs[1].header.type).to.equal(RecordType.ENTRIES);
      f.zeroRange(recs[1], 0, RECORD_HEADER_SIZE);
    },
    want: {
      code: 'ECORRUPT',
      message: [/^the catalog at the start of segment 2 ends before its last part \(at offset \d+: zero\)$/],
      details: { seq: 2, reason: 'catalog' },
    },
  },
  {
    name: 'a valid record out of epoch order (a copy of an epoch 1 record after epoch 2): misplaced, never torn (R3)',
    make: async (f) => {
      const recs = await twoEpochs(f);
      const at = { index: 0, offset: recs[COMMIT_2].offset + recs[COMMIT_2].size };
      f.put(at, 0, f.read(recs[WRITE_A], 0, recs[WRITE_A].size));
      f.fixCrc(at);
    },
    want: {
      code: 'ECORRUPT',
      message: [/^journal damaged at segment 1 offset (\d+) \(epoch\), not a torn tail: the record at segment 1 offset \1 \(type 1, epoch 1\) is out of place: the log continues with epoch 3/],
      details: { seq: 1, reason: 'epoch', lostFrom: 3, lostTo: 3 },
    },
  },
  {
    name: 'a record with a valid crc whose payload does not decode',
    make: async (f) => {
      const recs = await twoEpochs(f);
      f.put(recs[WRITE_B], REC.payload + 8, Buffer.from([0xff, 0xff]));
      f.fixCrc(recs[WRITE_B]);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(payload\), not a torn tail: record at segment 1 offset \d+ has a valid checksum but an undecodable payload/],
      details: { seq: 1, reason: 'payload', lostFrom: 2, lostTo: 2 },
    },
  },
  {
    name: 'a COMMIT with a valid crc whose entry list does not decode (an entry state 7): corruption at that record (R14)',
    make: async (f) => {
      const recs = await twoEpochs(f);
      f.put(recs[COMMIT_1], REC.payload + 12, Buffer.from([7]));
      f.fixCrc(recs[COMMIT_1]);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(payload\), not a torn tail: record at segment 1 offset \d+ has a valid checksum but an undecodable payload/, /Epochs 1\.\.2 would be lost/],
      details: { kind: 'undecodable-record', forceable: true, seq: 1, reason: 'payload', lostFrom: 1, lostTo: 2 },
    },
  },
  {
    name: 'a segment end record with a valid crc and a 4-byte payload, the last record of the log: corruption at it, not a torn tail (R14)',
    make: async (f) => {
      const recs = await twoEpochs(f);
      const at = { index: 0, offset: recs[COMMIT_2].offset + recs[COMMIT_2].size };
      f.plant(at, { type: RecordType.SEGEND, nextSeq: 2 }, 0);
      f.put(at, REC.len, u32(4));
      f.zeroRange(at, REC.payload + 4, 4);
      f.fixCrc(at);
    },
    want: {
      code: 'ECORRUPT',
      message: [/\(payload\), not a torn tail: the segment end record at segment 1 offset \d+ has a valid checksum but its payload is not the 8-byte seq of the next segment/],
      details: { kind: 'undecodable-record', forceable: true, seq: 1, reason: 'payload', lostFrom: 3 },
    },
  },
  {
    name: 'the cursor\'s segment does not begin with a catalog record',
    make: async (f) => {
      const recs = await twoEpochs(f);
      f.put(recs[CATALOG], REC.type, Buffer.from([RecordType.ABORT]));
      f.fixCrc(recs[CATALOG]);
    },
    want: { code: 'ECORRUPT', message: [/^segment 1 does not begin with a catalog record$/], details: { seq: 1, offset: SEGMENT_HEADER_AREA, reason: 'catalog' } },
  },
  {
    name: 'the segment holding the cursor is missing',
    make: async (f) => {
      await twoEpochs(f);
      f.dropSegment(0);
    },
    want: { code: 'ECORRUPT', message: [/^the segment holding the apply cursor \(seq 1\) is missing$/], details: { seq: 1, offset: SEGMENT_HEADER_AREA, invalid: [] } },
  },
  {
    name: 'the segment holding the cursor has a damaged header',
    make: async (f) => {
      await twoEpochs(f);
      f.flipByte(f.segmentFile(0), 20);
    },
    want: {
      code: 'ECORRUPT',
      message: [/^the segment holding the apply cursor \(seq 1\) is missing \(segment files with unusable headers: seg-000000\.cpj: crc\)$/],
      details: { seq: 1, invalid: [{ index: 0, file: `${STORE}/.cpfile/journal/seg-000000.cpj`, reason: 'crc' }] },
    },
  },
  {
    name: 'the segment holding the cursor is shorter than its header says',
    make: async (f) => {
      await twoEpochs(f);
      f.shrink(f.segmentFile(0), 8192);
    },
    want: { code: 'ECORRUPT', message: [/^the segment holding the apply cursor \(seq 1, seg-000000\.cpj\) is 8192 bytes, its header says 65536$/], details: { seq: 1, size: 8192, expected: 65536 } },
  },
  {
    name: 'the segment holding the cursor is of another format version: EFORMAT, not damage',
    make: async (f) => {
      await twoEpochs(f);
      f.rewriteSegmentHeader(0, { version: 9 });
    },
    want: { code: 'EFORMAT', message: [/seg-000000\.cpj: journal segment of another format version; this cpfile reads format versions 1 to 5$/], details: { seq: 1 } },
  },
  {
    name: 'the control file is missing while the journal has segments',
    make: async (f) => {
      await twoEpochs(f);
      await f.crash();
      f.sim.removeSync(f.paths.control);
    },
    want: { code: 'ECORRUPT', message: [/control is missing but the journal has segments: refusing to guess the apply cursor$/], details: { file: `${STORE}/.cpfile/control`, reason: 'missing' } },
  },
];

async function run(row: Row): Promise<void> {
  const f = await JournalFixture.open();
  const opts = (await row.make(f)) ?? {};
  await f.crash();
  const want = row.want;
  if (typeof want === 'function') {
    want((await f.recover(opts)).report, f);
  } else if ('report' in want) {
    expect((await f.recover(opts)).report).to.include(want.report);
  } else {
    const e = await expectCpError(() => f.recover(opts), want.code);
    for (const re of want.message) expect(e.message).to.match(re);
    expect(e.details).to.deep.include(want.details);
  }
}

describe('recovery verdicts: a normal end of the log', () => {
  for (const row of normal) it(row.name, () => run(row));
});

describe('recovery verdicts: corruption', () => {
  for (const row of corrupt) it(row.name, () => run(row));

  it('--force proceeds past corruption: the journal is copied aside, the log ends before the damage', async () => {
    const f = await JournalFixture.open();
    const recs = await twoEpochs(f);
    f.flipByte(recs[WRITE_A], REC.payload + 12);
    await f.crash();
    const { report } = await f.recover({ force: true });
    expect(report).to.include({ epoch: 0, replayedEpochs: 0, endReason: 'crc', tornTail: false });
    expect(report.corruption).to.include({ seq: 1, offset: recs[WRITE_A].offset, reason: 'crc', lostFrom: 1, lostTo: 2 });
    expect(report.brokenCopy).to.match(/^\/store\/\.cpfile\/journal\.broken-/);
    expect(f.sim.listSync(report.brokenCopy!)).to.deep.equal(['seg-000000.cpj']);
    // The next recovery starts from the fresh segment and finds nothing wrong.
    const again = await f.recover();
    expect(again.report).to.include({ epoch: 0, corruption: null, tornTail: false });
  });

  it('--force past a damaged catalog at the cursor: the applied files stay, the store opens with no open entries', async () => {
    const f = await JournalFixture.open();
    f.write('a', 0, 'one').entry('a', 3, 3);
    await f.commit();
    await f.reopen();
    f.flipByte((await f.records())[0], REC.payload + 1);
    await f.crash();
    const { report } = await f.recover({ force: true });
    expect(report).to.include({ epoch: 1, tornTail: false });
    expect(report.entries).to.deep.equal([]);
    expect(report.corruption).to.include({ seq: 2, offset: SEGMENT_HEADER_AREA, lostFrom: 2, lostTo: 1 });
    expect(f.sim.readFileSync(`${STORE}/a`)!.toString()).to.equal('one');
    expect((await f.recover()).report).to.include({ epoch: 1, corruption: null, tornTail: false });
  });

  it('a dry run reports the same verdict and changes nothing', async () => {
    const f = await JournalFixture.open();
    const recs = await twoEpochs(f);
    await tail(f);
    f.flipByte(recs[WRITE_A], REC.payload + 12);
    await f.crash();
    const before = f.sim.tree(STORE, '');
    const e = await expectCpError(() => f.recover({ dryRun: true }), 'ECORRUPT');
    expect(e.details).to.include({ reason: 'crc', lostFrom: 1, lostTo: 3 });
    expect(f.sim.tree(STORE, '')).to.deep.equal(before);
  });
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
