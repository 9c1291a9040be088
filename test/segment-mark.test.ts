// A segment's high-water mark (version 5, FORMAT.md R19): the flusher never writes a record past
// the mark that is durable in the segment's header area, raising it with a commit's own sync and,
// for a long run of unsynced writes, with a barrier of its own; the scan for later epochs (R8 (e))
// stops at it, and a mark that is not whole, or not of the segment's present life, means the whole
// segment. The torture suite checks the first rule on every power-loss state (test/torture/marks.ts).
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  FORMAT_VERSION, MARK_OFFSET, MARK_SIZE, SEGMENT_HEAD_BYTES, SEGMENT_HEADER_AREA,
  decodeMark, encodeMark, encodeSegmentHeader, markStep, nextMark, sealRecord, type SegmentHeader,
} from '../lib/format.js';
import { openStore, type CpError, type IO } from '../lib/index.js';
import { interceptIO } from './helpers/intercept-io.js';
import { headOf } from './torture/marks.js';
import { inspectJournal } from '../lib/recovery/inspect.js';
import { nodeIO } from '../lib/io.js';
import { Sandbox, expectCpError } from './helpers/sandbox.js';
import { crash, openHeld, records, segmentPath, flipByte } from './helpers/journal.js';
import { staleMarkReach } from '../lib/journal/reader.js';

const MiB = 1024 * 1024;

function head(h: SegmentHeader, mark: Buffer | null): Buffer {
  const b = Buffer.alloc(SEGMENT_HEAD_BYTES);
  encodeSegmentHeader(h).copy(b, 0);
  if (mark) mark.copy(b, MARK_OFFSET);
  return b;
}

/** Every segment file's header and mark, by index. */
function marks(dir: string): Map<number, { header: SegmentHeader; mark: number | null }> {
  const out = new Map<number, { header: SegmentHeader; mark: number | null }>();
  const jdir = path.join(dir, '.cpfile', 'journal');
  for (const name of fs.readdirSync(jdir)) {
    const h = headOf(fs.readFileSync(path.join(jdir, name)));
    if (h) out.set(Number(/\d+/.exec(name)![0]), h);
  }
  return out;
}

interface Ev { t: 'write' | 'sync'; file: string; pos?: number; bytes?: Buffer }

/** nodeIO recording the writes to journal segment files (with their bytes) and the syncs of their descriptors. */
function recorder(log: Ev[]): IO {
  // (by file: recovery writes a segment's start through a descriptor of its own, the flusher goes on through another)
  const seg = new Map<number, string>();
  return interceptIO(async (call, args, next) => {
    const r = await next();
    if (call === 'open') {
      if (/seg-\d+\.cpj$/.test(args[0] as string)) seg.set(r as number, args[0] as string);
      else seg.delete(r as number);
    } else if (call === 'write' && seg.has(args[0] as number)) {
      const [fd, buf, off, len, pos] = args as [number, Uint8Array, number, number, number];
      log.push({ t: 'write', file: seg.get(fd)!, pos, bytes: Buffer.from(buf.subarray(off, off + len)) });
    } else if ((call === 'fdatasync' || call === 'fsync') && seg.has(args[0] as number)) {
      log.push({ t: 'sync', file: seg.get(args[0] as number)! });
    }
    return r;
  });
}

/**
 * Replay a recorded trace and check R19 on it: a write of anything but zeros at or past offset 4096
 * ends at or below the mark that a sync made durable before it. A write covering the mark's bytes
 * (a segment's start, or a raise) sets the mark written; the next sync of that file makes it durable.
 * Returns the record writes checked, the raises, and the violations.
 */
function checkTrace(log: Ev[]): { checked: number; raises: number; bad: string[] } {
  const st = new Map<string, { written: number | null; durable: number }>();
  let checked = 0;
  let raises = 0;
  const bad: string[] = [];
  for (const e of log) {
    let s = st.get(e.file);
    if (!s) st.set(e.file, (s = { written: null, durable: 0 }));
    if (e.t === 'sync') {
      if (s.written !== null) s.durable = s.written;
      continue;
    }
    const b = e.bytes!;
    const pos = e.pos!;
    if (pos <= MARK_OFFSET && pos + b.length >= MARK_OFFSET + MARK_SIZE) {
      const m = b.subarray(MARK_OFFSET - pos, MARK_OFFSET - pos + MARK_SIZE);
      if (m.readUInt32LE(0) !== 0) {
        s.written = m.readUInt32LE(12);
        if (pos === MARK_OFFSET) raises++;
        else s.durable = 0; // a segment's (re)start: nothing of its new life is durable yet
      }
    }
    const from = Math.max(pos, SEGMENT_HEADER_AREA);
    if (pos + b.length > from && b.subarray(from - pos).some((x) => x !== 0)) {
      checked++;
      let last = b.length - 1;
      while (b[last] === 0) last--;
      if (pos + last + 1 > s.durable && pos >= SEGMENT_HEADER_AREA) bad.push(`a write of ${b.length} bytes at ${pos} ends past the durable mark ${s.durable}`);
    }
  }
  return { checked, raises, bad };
}

describe('a segment\'s high-water mark (FORMAT.md R19)', () => {
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  describe('the codec', () => {
    const h: SegmentHeader = { version: FORMAT_VERSION, salt: 0xdeadbeef, seq: 2 ** 33 + 7, storeId: '0123456789abcdef', size: 64 * MiB };

    it('reads back the mark it wrote; the step is an eighth of the segment, from 2 MiB to 8 MiB, and a mark never passes the segment', () => {
      expect(decodeMark(head(h, encodeMark(h.salt, h.seq, 12 * MiB)), h)).to.equal(12 * MiB);
      expect(markStep(64 * 1024)).to.equal(2 * MiB);
      expect(markStep(16 * MiB)).to.equal(2 * MiB);
      expect(markStep(32 * MiB)).to.equal(4 * MiB);
      expect(markStep(64 * MiB)).to.equal(8 * MiB);
      expect(markStep(2 ** 31)).to.equal(8 * MiB);
      expect(nextMark(4096 + 100, 64 * MiB)).to.equal(8192 + 8 * MiB);
      expect(nextMark(60 * MiB, 64 * MiB)).to.equal(64 * MiB);
      expect(nextMark(4096, 2 * MiB), 'a small segment: its end at once').to.equal(2 * MiB);
      expect(nextMark(4096 + 100, 64 * MiB, 8192), 'StoreOptions.markStep').to.equal(16384);
    });

    it('is no mark (the whole segment) before version 5, when zero, damaged anywhere, of another life (salt or seq), or out of the segment', () => {
      const good = encodeMark(h.salt, h.seq, 12 * MiB);
      expect(decodeMark(head({ ...h, version: 4 }, good), { ...h, version: 4 }), 'version 4').to.equal(null);
      expect(decodeMark(head(h, null), h), 'zero').to.equal(null);
      for (let i = 0; i < MARK_SIZE; i++) {
        for (const bit of [0x01, 0x80]) {
          const m = Buffer.from(good);
          m[i] ^= bit;
          expect(decodeMark(head(h, m), h), `byte ${i} bit ${bit}`).to.equal(null);
        }
      }
      expect(decodeMark(head(h, encodeMark(h.salt ^ 1, h.seq, MiB)), h), 'another salt').to.equal(null);
      expect(decodeMark(head(h, encodeMark(h.salt, h.seq - 1, MiB)), h), 'another seq').to.equal(null);
      expect(decodeMark(head(h, encodeMark(h.salt, h.seq, h.size + 8)), h), 'past the segment').to.equal(null);
      expect(decodeMark(head(h, encodeMark(h.salt, h.seq, 4088)), h), 'inside the header area').to.equal(null);
      expect(decodeMark(head(h, good).subarray(0, SEGMENT_HEAD_BYTES - 1), h), 'short').to.equal(null);
    });
  });

  it('markStep: bad values (and steps that are not whole 4 KiB blocks) are EINVAL at openStore, one line naming the option', async () => {
    const dir = await sb.dir();
    for (const bad of [0, 4095, -1, 1.5, 2 ** 32, '1m', null]) {
      const e = await expectCpError(() => openStore(dir, { noLock: true, markStep: bad as never }), 'EINVAL');
      expect(e.message).to.match(/^option markStep must be an integer from 4096 to \d+, got /);
    }
    for (const bad of [5000, 4097, 8192 + 512]) {
      const e = await expectCpError(() => openStore(dir, { noLock: true, markStep: bad }), 'EINVAL');
      expect(e.message).to.equal(`option markStep must be a multiple of 4096, got ${bad}`);
    }
  });

  describe('the flusher', () => {
    it('small commits raise the mark with their own syncs (no extra sync), it stays ahead of every record, and by at most a step', async () => {
      const dir = await sb.dir();
      const log: Ev[] = [];
      // 1 MiB segments, a 128 KiB step; 400 commits of 4 KiB span two segments.
      const s = await openStore(dir, { noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, segmentSize: MiB, markStep: 128 * 1024, io: recorder(log) });
      const f = await s.open('a.log', 'a');
      const n = 400;
      for (let i = 0; i < n; i++) {
        await f.write(Buffer.alloc(4096, 1 + (i % 250)));
        await s.check();
        if (i % 50 === 49) {
          // The mark on disk now, against the end of the log.
          const recs = await records(dir);
          const last = recs[recs.length - 1];
          const m = marks(dir).get(last.index)!;
          expect(m.mark, `after commit ${i}`).to.be.a('number');
          expect(m.mark!, `after commit ${i}: at or past the end of the log`).to.be.at.least(last.offset + last.size);
          expect(m.mark! - (last.offset + last.size), `after commit ${i}: at most a step and a block ahead`).to.be.at.most(128 * 1024 + 4096);
        }
      }
      const t = checkTrace(log);
      expect(t.bad).to.deep.equal([]);
      expect(t.checked).to.be.at.least(n);
      expect(t.raises, 'raised a few times').to.be.at.least(8);
      // (none with a sync of its own: they ride on the commits' syncs)
      const syncs = log.filter((e) => e.t === 'sync').length;
      // one sync per commit, the segments' own (recovery's first one, the second one: R9)
      expect(syncs).to.be.at.most(n + 4);
      await f.close();
      await s.close();
    });

    it('a run of unsynced writes longer than half a step raises the mark with a barrier of its own before it passes it', async () => {
      const dir = await sb.dir();
      const log: Ev[] = [];
      // 64 KiB batches: the run reaches the flusher as eleven writes, none of them synced before the check.
      const s = await openStore(dir, { noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, segmentSize: MiB, markStep: 128 * 1024, batchBytes: 65536, directAppendMin: false, io: recorder(log) });
      const f = await s.open('big.bin', 'w');
      for (let i = 0; i < 700; i++) await f.write(Buffer.alloc(1024, 1 + (i % 200)));
      await s.check();
      const t = checkTrace(log);
      expect(t.bad).to.deep.equal([]);
      // recovery's segment, the check, and a barrier for each raise (700 KiB cross the 128 KiB step
      // several times), except a raise the check's own sync carried
      expect(t.raises).to.be.at.least(3);
      expect(log.filter((e) => e.t === 'sync').length).to.be.within(t.raises + 1, t.raises + 2);
      await f.close();
      await s.close();
      const r = await openStore(dir, { noLock: true, segmentSize: MiB });
      expect((await r.readFile('big.bin')).length).to.equal(700 * 1024);
      await r.close();
    });

    it('a recycled segment starts its new life with a mark of its own (salt and seq), never the old one', async () => {
      const dir = await sb.dir();
      const log: Ev[] = [];
      // 64 KiB segments applied at once: the files are recycled many times.
      const s = await openStore(dir, { noLock: true, segmentSize: 65536, markStep: 8192, applyThreshold: 0, directAppendMin: false, io: recorder(log) });
      const f = await s.open('r.bin', 'w');
      for (let i = 0; i < 60; i++) {
        await f.write(Buffer.alloc(6000, i));
        await s.check();
      }
      const t = checkTrace(log);
      expect(t.bad).to.deep.equal([]);
      for (const [index, m] of marks(dir)) expect(m.mark, `segment file ${index}`).to.be.a('number');
      await f.close();
      await s.close();
    });
  });

  describe('recovery', () => {
    /** A held store with three committed epochs and an uncommitted write, stopped as a crash would. */
    async function crashed(): Promise<{ dir: string; file: string; mark: number; commit: Buffer; size: number }> {
      const dir = await sb.dir();
      const s = await openHeld(dir, { segmentSize: 4 * MiB, markStep: 512 * 1024, directAppendMin: false });
      const f = await s.open('a.txt', 'w');
      for (let e = 1; e <= 3; e++) {
        await f.write(`epoch ${e}\n`);
        await s.check();
      }
      await f.write('never committed\n');
      await crash(s);
      const recs = await records(dir);
      const commit = recs.filter((r) => r.header.type === 6).pop()!;
      const file = segmentPath(dir, commit);
      const m = marks(dir).get(commit.index)!;
      const bytes = fs.readFileSync(file).subarray(commit.offset, commit.offset + commit.size);
      return { dir, file, mark: m.mark!, commit: Buffer.from(bytes), size: m.header.size };
    }

    /** Put a copy of a COMMIT, made epoch 9 and valid at `at` (its crc binds the offset), into the segment. */
    function plant(file: string, commit: Buffer, at: number): void {
      const b = Buffer.from(commit);
      b.writeUInt32LE(9, 16);
      b.writeUInt32LE(0, 20);
      sealRecord(b, 0, at);
      const fd = fs.openSync(file, 'r+');
      try {
        fs.writeSync(fd, b, 0, b.length, at);
      } finally {
        fs.closeSync(fd);
      }
    }

    it('the scan for later epochs reads up to the mark: a valid record of a later epoch below it is corruption (R8 (e))', async () => {
      const c = await crashed();
      expect(c.mark).to.be.below(c.size);
      plant(c.file, c.commit, c.mark - 4096);
      const err = await openStore(c.dir, { noLock: true, segmentSize: 4 * MiB }).then(() => null, (e: unknown) => e as CpError);
      expect(err?.code).to.equal('ECORRUPT');
      expect(err?.message).to.match(/a valid record of epoch 9 follows/);
    });

    it('and one record\'s length past it (a valid record there proves the mark stale, and the whole segment is read)', async () => {
      const c = await crashed();
      plant(c.file, c.commit, c.mark + 8192);
      const err = await openStore(c.dir, { noLock: true, segmentSize: 4 * MiB }).then(() => null, (e: unknown) => e as CpError);
      expect(err?.code).to.equal('ECORRUPT');
    });

    it('and not past that: the never-written rest of the segment is not read, so a record there is not seen', async () => {
      const c = await crashed();
      plant(c.file, c.commit, staleMarkReach(c.mark, c.size) + 8192);
      const s = await openStore(c.dir, { noLock: true, segmentSize: 4 * MiB });
      expect(s.epoch).to.equal(3);
      expect((await s.readFile('a.txt')).toString()).to.equal('epoch 1\nepoch 2\nepoch 3\n');
      await s.close();
    });

    it('cp-recover --inspect lists each segment\'s version and mark (null for no mark)', async () => {
      const c = await crashed();
      const r = await inspectJournal({ io: nodeIO, dir: c.dir });
      const seg = r.segments.find((x) => x.mark !== null)!;
      expect(seg).to.deep.include({ version: FORMAT_VERSION, mark: c.mark });
      flipByte(c.file, MARK_OFFSET + 3);
      const r2 = await inspectJournal({ io: nodeIO, dir: c.dir });
      expect(r2.segments.find((x) => x.index === seg.index)!.mark).to.equal(null);
    });

    it('a damaged mark is no mark: the whole segment is scanned, and the same record is found', async () => {
      for (const at of [MARK_OFFSET, MARK_OFFSET + 12, MARK_OFFSET + 31]) {
        const c = await crashed();
        plant(c.file, c.commit, staleMarkReach(c.mark, c.size) + 8192);
        flipByte(c.file, at);
        const err = await openStore(c.dir, { noLock: true, segmentSize: 4 * MiB }).then(() => null, (e: unknown) => e as CpError);
        expect(err?.code, `mark byte ${at - MARK_OFFSET} damaged`).to.equal('ECORRUPT');
      }
    });
  });
});
