// The windowed segment reader (lib/journal/segment-reader.ts) against the bytes it reads: every
// get() returns exactly the file's bytes, with and without reading ahead, for walks that step over
// records of any size (straddling window ends), jumps forward and back, reads past the end of a
// short file, and reads that fail. A read-ahead that failed, or was never used, must not change what
// a get() returns; its error surfaces only when the bytes are needed, and no read is ever left
// running into a buffer after release().
import { expect } from 'chai';
import { SegmentReader, READ_WINDOW, type ReadAt } from '../lib/journal/segment-reader.js';
import { MAX_PAYLOAD, RECORD_HEADER_SIZE } from '../lib/format.js';
import { mulberry32 } from './helpers/model.js';

const KiB = 1024;

interface Source {
  read: ReadAt;
  calls: { at: number; len: number }[];
  /** Reads in flight now. */
  inflight: () => number;
}

/**
 * A segment file of `fileLen` bytes (the reader is told `size`, which may be larger: a short file)
 * whose reads settle after a random number of event-loop turns; `fails(at, len)` makes a read reject.
 */
function source(bytes: Buffer, seed: number, fails: (at: number, len: number, call: number) => boolean = () => false): Source {
  const rng = mulberry32(seed);
  const calls: { at: number; len: number }[] = [];
  let inflight = 0;
  const read: ReadAt = async (buf, off, len, at) => {
    const call = calls.length;
    calls.push({ at, len });
    inflight++;
    try {
      for (let t = Math.floor(rng() * 3); t > 0; t--) await new Promise((r) => setImmediate(r));
      if (fails(at, len, call)) {
        // As a read that got part of the way (readFully's first call succeeded) leaves it: junk.
        buf.fill(0xee, off, off + len);
        throw Object.assign(new Error(`injected EIO at ${at}`), { code: 'EIO' });
      }
      const n = Math.max(0, Math.min(len, bytes.length - at));
      if (n > 0) bytes.copy(buf, off, at, at + n);
      return n;
    } finally {
      inflight--;
    }
  };
  return { read, calls, inflight: () => inflight };
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

function expectBytes(got: Buffer, file: Buffer, off: number, len: number): void {
  const want = file.subarray(Math.min(off, file.length), Math.min(off + len, file.length));
  expect(got.length, `length of get(${off}, ${len})`).to.equal(want.length);
  expect(got.equals(want), `bytes of get(${off}, ${len})`).to.equal(true);
}

describe('SegmentReader: windows, carried bytes and read-ahead', () => {
  for (const readAhead of [false, true]) {
    describe(readAhead ? 'reading ahead' : 'without read-ahead', () => {
      it('a walk over records of any size reads every byte exactly once and returns the file\'s bytes', async () => {
        for (let seed = 1; seed <= 12; seed++) {
          const rng = mulberry32(seed * 977);
          const size = (6 + Math.floor(rng() * 10)) * 1024 * KiB + Math.floor(rng() * 4096) * 8;
          const file = pattern(size, seed);
          const src = source(file, seed);
          const r = new SegmentReader(src.read, size, READ_WINDOW, size, readAhead);
          let off = 4096;
          while (off + RECORD_HEADER_SIZE <= size) {
            // As readRecordAt does: the header, then the whole record.
            const big = rng() < 0.1;
            const len = RECORD_HEADER_SIZE + (big ? MAX_PAYLOAD - Math.floor(rng() * 64) : Math.floor(rng() * 70 * KiB));
            expectBytes(await r.get(off, RECORD_HEADER_SIZE), file, off, RECORD_HEADER_SIZE);
            expectBytes(await r.get(off, len), file, off, len);
            off += (len + 7) & ~7;
          }
          await r.release();
          expect(src.inflight()).to.equal(0);
          // Every byte read once (from 4096 on): the reads never overlap.
          const sorted = [...src.calls].sort((a, b) => a.at - b.at);
          for (let i = 1; i < sorted.length; i++) expect(sorted[i].at, `read ${i} overlaps the one before`).to.be.at.least(sorted[i - 1].at + sorted[i - 1].len);
          const read = src.calls.reduce((n, c) => n + Math.max(0, Math.min(c.len, size - c.at)), 0);
          expect(read).to.be.at.most(size - 4096 + (readAhead ? READ_WINDOW : 0));
        }
      });

      it('random requests (forward, back, past the end of a short file, past readEnd) return the file\'s bytes', async () => {
        for (let seed = 1; seed <= 30; seed++) {
          const rng = mulberry32(seed * 131);
          const size = Math.floor(rng() * 12 * 1024 * KiB) + 64;
          // A short file: the segment's header says `size`, the file holds less.
          const fileLen = rng() < 0.3 ? Math.floor(size * rng()) : size;
          const file = pattern(fileLen, seed);
          const readEnd = rng() < 0.3 ? Math.floor(size * rng()) : size;
          const src = source(file, seed);
          const r = new SegmentReader(src.read, size, Math.max(4096, Math.floor(rng() * READ_WINDOW)), readEnd, readAhead);
          let off = 0;
          for (let k = 0; k < 200; k++) {
            const u = rng();
            if (u < 0.6) off += Math.floor(rng() * 80 * KiB);
            else if (u < 0.75) off = Math.max(0, off - Math.floor(rng() * 2 * 1024 * KiB));
            else off = Math.floor(rng() * size);
            if (off >= size) off = Math.floor(rng() * size);
            const len = Math.min(size - off, 1 + Math.floor(rng() * (rng() < 0.1 ? 5 * 1024 * KiB : 80 * KiB)));
            expectBytes(await r.get(off, len), file, off, len);
          }
          await r.release();
          expect(src.inflight()).to.equal(0);
        }
      });

      it('a failed read fails the get that needs it; the next get reads again', async () => {
        const size = 13 * 1024 * KiB;
        const file = pattern(size, 5);
        let failing = true;
        // (the third window: the second one starts with bytes carried over, in front of the read)
        const src = source(file, 5, (at) => failing && at <= 9 * 1024 * KiB && at + READ_WINDOW > 9 * 1024 * KiB);
        const r = new SegmentReader(src.read, size, READ_WINDOW, size, readAhead);
        let off = 0;
        let failed = 0;
        while (off < size) {
          const len = Math.min(size - off, 48 * KiB);
          try {
            expectBytes(await r.get(off, len), file, off, len);
            off += len;
          } catch (e) {
            expect((e as NodeJS.ErrnoException).code).to.equal('EIO');
            failed++;
            failing = false;
          }
        }
        expect(failed).to.equal(1);
        await r.release();
      });
    });
  }

  it('a read-ahead that fails is read again when its bytes are needed, and its error is never seen otherwise', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const size = 10 * 1024 * KiB;
      const file = pattern(size, seed);
      const rng = mulberry32(seed);
      // Each read fails with probability 0.3 the first time its offset is read, never again.
      const tried = new Set<number>();
      const src = source(file, seed, (at) => {
        const first = !tried.has(at);
        tried.add(at);
        return first && rng() < 0.3;
      });
      const r = new SegmentReader(src.read, size, READ_WINDOW, size, true);
      let off = 0;
      while (off < size) {
        const len = Math.min(size - off, 100 * KiB);
        try {
          expectBytes(await r.get(off, len), file, off, len);
          off += len;
        } catch (e) {
          // Only a read the get itself made fails it (a failed read-ahead is made again, and that
          // second read of the same offset succeeds here).
          expect((e as NodeJS.ErrnoException).code).to.equal('EIO');
        }
      }
      await r.release();
      expect(src.inflight()).to.equal(0);
    }
  });

  it('a read-ahead past the last request is never awaited by get(), and release() waits for it', async () => {
    const size = 12 * 1024 * KiB;
    const file = pattern(size, 9);
    let rejectLater: (() => void) | null = null;
    const read: ReadAt = (buf, off, len, at) => {
      if (at >= READ_WINDOW) {
        // The read-ahead of the second window: it fails, late.
        return new Promise((_, reject) => { rejectLater = () => reject(Object.assign(new Error('EIO'), { code: 'EIO' })); });
      }
      file.copy(buf, off, at, at + len);
      return Promise.resolve(len);
    };
    const r = new SegmentReader(read, size, READ_WINDOW, size, true);
    expectBytes(await r.get(0, 4096), file, 0, 4096);
    expect(rejectLater).to.be.a('function');
    let released = false;
    const rel = r.release().then(() => { released = true; });
    await new Promise((res) => setImmediate(res));
    expect(released, 'release() returned while the read-ahead still runs').to.equal(false);
    rejectLater!();
    await rel;
    expect(released).to.equal(true);
  });
});
