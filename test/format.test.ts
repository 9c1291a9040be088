import { expect } from 'chai';
import { crc32, crc32Js, crc32Native } from '../lib/crc.js';
import {
  RecordType, encodeRecord, decodePayload, readRecordHeader, checkRecordHeader, recordCrcOk, RECORD_HEADER_SIZE,
  encodeSegmentHeader, decodeSegmentHeader, encodeControlSlot, decodeControlSlot, recordSize, writeU64, readU64,
  FORMAT_VERSION, CONTROL_SLOT_SIZE, type Op,
} from '../lib/format.js';

describe('format', () => {
  describe('crc32', () => {
    it('matches the standard check value for "123456789"', () => {
      expect(crc32(Buffer.from('123456789'))).to.equal(0xcbf43926);
      expect(crc32Js(Buffer.from('123456789'))).to.equal(0xcbf43926);
    });

    it('native zlib.crc32 and the crc-32 package agree on random data and seeds', function () {
      if (!crc32Native) this.skip();
      for (let i = 0; i < 200; i++) {
        const b = Buffer.alloc(Math.floor(Math.random() * 5000));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(Math.random() * 256);
        const seed = i % 3 === 0 ? 0 : Math.floor(Math.random() * 2 ** 32);
        expect(crc32Native!(b, seed)).to.equal(crc32Js(b, seed));
      }
    });

    it('the crc32 cpfile uses (JS below 256 bytes, native above) chains across the switch', () => {
      const whole = Buffer.alloc(2000);
      for (let j = 0; j < whole.length; j++) whole[j] = (j * 31 + 7) & 0xff;
      for (const cut of [0, 24, 255, 256, 257, 1000, 1999]) {
        const a = whole.subarray(0, cut);
        const b = whole.subarray(cut);
        expect(crc32(b, crc32(a)), `cut at ${cut}`).to.equal(crc32Js(whole));
      }
    });
  });

  describe('records', () => {
    const ops: Op[] = [
      { type: RecordType.WRITE, name: 'dir/ä.dat', offset: 5 * 2 ** 30 + 7, data: Buffer.from('payload') },
      { type: RecordType.TRUNCATE, name: 'x', length: 2 ** 40 },
      { type: RecordType.CREATE, name: 'new' },
      { type: RecordType.UNLINK, name: 'gone' },
      { type: RecordType.RENAME, from: 'a', to: 'b/c' },
      { type: RecordType.COMMIT, entries: [{ name: 'f', position: 4 * 2 ** 30 + 1, state: 'open', size: 5 * 2 ** 30 }, { name: 'g', position: 0, state: 'closed', size: null }, { name: 'h', position: 7, state: 'open', size: null }], applied: null },
      { type: RecordType.COMMIT, entries: [], applied: { cursorSeq: 2 ** 33 + 1, cursorOffset: 4096, appliedEpoch: 12 } },
      { type: RecordType.ABORT },
      { type: RecordType.CATALOG, entries: [] },
      { type: RecordType.SEGEND, nextSeq: 12345 },
    ];

    it('entries: version 2 open entries carry the committed size; a version 1 open entry (state 1) reads with size null; an unknown state is a format error', () => {
      const v1 = Buffer.alloc(4 + 9 + 2 + 1);
      v1.writeUInt32LE(1, 0);
      writeU64(v1, 77, 4);
      v1.writeUInt8(1, 12);
      v1.writeUInt16LE(1, 13);
      v1.write('a', 15);
      expect(decodePayload(RecordType.CATALOG, v1)).to.deep.equal({ type: RecordType.CATALOG, entries: [{ name: 'a', position: 77, state: 'open', size: null }] });
      const bad = Buffer.from(v1);
      bad.writeUInt8(3, 12);
      expect(() => decodePayload(RecordType.CATALOG, bad)).to.throw(RangeError);
      const v2 = encodeRecord({ type: RecordType.COMMIT, entries: [{ name: 'a', position: 1, state: 'open', size: 2 ** 33 }] }, 1, 1);
      expect(readRecordHeader(v2).len).to.equal(4 + 9 + 8 + 3);
    });

    it('every record type round-trips through encode and decode', () => {
      for (const op of ops) {
        const b = encodeRecord(op, 0xdeadbeef, 77);
        expect(b.length % 8).to.equal(0);
        const h = readRecordHeader(b);
        expect(h.type).to.equal(op.type);
        expect(h.epoch).to.equal(77);
        expect(checkRecordHeader(h, 0xdeadbeef, b.length, b)).to.equal('ok');
        expect(recordCrcOk(b, 0, h.len)).to.equal(true);
        const back = decodePayload(h.type, b.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + h.len));
        expect(JSON.parse(JSON.stringify(back))).to.deep.equal(JSON.parse(JSON.stringify(op)));
      }
    });

    it('a flipped bit anywhere in a record fails its crc or its header check', () => {
      const b = encodeRecord(ops[0], 42, 3);
      const len = readRecordHeader(b).len;
      for (let i = 0; i < RECORD_HEADER_SIZE + len; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const c = Buffer.from(b);
          c[i] ^= 1 << bit;
          const h = readRecordHeader(c);
          const ok = checkRecordHeader(h, 42, c.length, c) === 'ok' && recordCrcOk(c, 0, h.len);
          expect(ok, `byte ${i} bit ${bit}`).to.equal(false);
        }
      }
    });

    it('a record written under another salt is stale, an all-zero header is zero', () => {
      const b = encodeRecord(ops[2], 1, 1);
      expect(checkRecordHeader(readRecordHeader(b), 2, b.length, b)).to.equal('stale');
      const z = Buffer.alloc(64);
      expect(checkRecordHeader(readRecordHeader(z), 2, z.length, z)).to.equal('zero');
    });

    it('a length running past the segment is a length error, not a read past the end', () => {
      const b = encodeRecord(ops[0], 9, 1);
      expect(checkRecordHeader(readRecordHeader(b), 9, b.length - 8, b)).to.equal('length');
    });

    it('records are 8-byte aligned', () => {
      expect(recordSize(0)).to.equal(24);
      expect(recordSize(1)).to.equal(32);
      expect(recordSize(8)).to.equal(32);
      expect(recordSize(9)).to.equal(40);
    });

    it('u64 fields hold positions above 4 GiB exactly and refuse unsafe values', () => {
      const b = Buffer.alloc(8);
      for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 5 * 2 ** 30 + 3, Number.MAX_SAFE_INTEGER]) {
        writeU64(b, v, 0);
        expect(readU64(b, 0)).to.equal(v);
      }
      expect(() => writeU64(b, -1, 0)).to.throw(RangeError);
      expect(() => writeU64(b, 2 ** 53, 0)).to.throw(RangeError);
    });
  });

  describe('segment header and control slots', () => {
    const h = { version: FORMAT_VERSION, salt: 123, seq: 2 ** 33 + 5, storeId: '0123456789abcdef', size: 1 << 20 };

    it('segment header round-trips and detects damage', () => {
      const b = encodeSegmentHeader(h);
      const d = decodeSegmentHeader(b);
      expect(d.ok && d.header).to.deep.equal(h);
      const bad = Buffer.from(b);
      bad[20] ^= 4;
      expect(decodeSegmentHeader(bad)).to.deep.equal({ ok: false, reason: 'crc' });
      const magic = Buffer.from(b);
      magic[0] = 0x58;
      expect(decodeSegmentHeader(magic)).to.deep.equal({ ok: false, reason: 'magic' });
      expect(decodeSegmentHeader(Buffer.alloc(64))).to.deep.equal({ ok: false, reason: 'zero' });
      expect(decodeSegmentHeader(b.subarray(0, 10))).to.deep.equal({ ok: false, reason: 'short' });
    });

    it('control slot round-trips and a torn slot is rejected', () => {
      const c = { counter: 9, storeId: 'fedcba9876543210', cursorSeq: 3, cursorOffset: 4096 + 64, appliedEpoch: 17 };
      const b = encodeControlSlot(c);
      const d = decodeControlSlot(b);
      expect(d.ok && d.state).to.deep.equal({ ...c, inEpoch: false });
      const fenced = decodeControlSlot(encodeControlSlot({ ...c, inEpoch: true }));
      expect(fenced.ok && fenced.state.inEpoch, 'the in-epoch flag of a rename fence round-trips').to.equal(true);
      const torn = Buffer.concat([b.subarray(0, 256), Buffer.alloc(256)]);
      expect(decodeControlSlot(torn).ok).to.equal(false);
      const next = Buffer.from(b);
      next.writeUInt32LE(FORMAT_VERSION + 1, 8);
      next.writeUInt32LE(crc32(next.subarray(0, CONTROL_SLOT_SIZE - 4)), CONTROL_SLOT_SIZE - 4);
      expect(decodeControlSlot(next)).to.deep.equal({ ok: false, reason: 'version' });
      // Version 1 (whose entries carry no size) is still read.
      const v1 = Buffer.from(b);
      v1.writeUInt32LE(1, 8);
      v1.writeUInt32LE(crc32(v1.subarray(0, CONTROL_SLOT_SIZE - 4)), CONTROL_SLOT_SIZE - 4);
      expect(decodeControlSlot(v1).ok).to.equal(true);
    });
  });
});
