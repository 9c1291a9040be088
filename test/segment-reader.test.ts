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
import { SegmentFiles } from '../lib/journal/segment-files.js';
import type { IO } from '../lib/io.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

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

/** get() the whole segment in `step`-byte requests, checking every byte; a request that fails (EIO only) is asked again. Returns the failures. */
async function readThrough(r: SegmentReader, file: Buffer, size: number, step: number, onFail: () => void = () => undefined): Promise<number> {
  let off = 0;
  let failed = 0;
  while (off < size) {
    const len = Math.min(size - off, step);
    try {
      expectBytes(await r.get(off, len), file, off, len);
      off += len;
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).to.equal('EIO');
      failed++;
      onFail();
    }
  }
  return failed;
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
        expect(await readThrough(r, file, size, 48 * KiB, () => { failing = false; })).to.equal(1);
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
      // Only a read the get itself made fails it (a failed read-ahead is made again, and that second
      // read of the same offset succeeds here).
      await readThrough(r, file, size, 100 * KiB);
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

  describe('edges: failing reads, memory held, bad blocks, descriptors', () => {
    for (const readAhead of [false, true]) {
      it(`fuzz (readAhead ${readAhead}): reads that fail leaving junk, short files, len 0, offsets past the size; what get() returned stays intact while a read-ahead runs`, async () => {
        for (let seed = 1; seed <= 40; seed++) {
          const rng = mulberry32(seed * 7919);
          const size = 64 * KiB + Math.floor(rng() * 3 * 1024 * KiB);
          const fileLen = rng() < 0.3 ? Math.floor(size * rng()) : size;
          const file = pattern(fileLen, seed);
          const readEnd = rng() < 0.3 ? Math.floor(size * rng()) : size;
          const chunk = [4096, 64 * KiB, 300 * KiB, READ_WINDOW][Math.floor(rng() * 4)];
          const failP = rng() < 0.5 ? 0.2 : 0;
          let inflight = 0;
          const read: ReadAt = async (buf, off, len, at) => {
            inflight++;
            try {
              for (let t = Math.floor(rng() * 3); t > 0; t--) await tick();
              if (rng() < failP) { buf.fill(0xee, off, off + Math.min(len, 4096)); throw Object.assign(new Error('EIO'), { code: 'EIO' }); }
              const n = Math.max(0, Math.min(len, file.length - at));
              if (n > 0) file.copy(buf, off, at, at + n);
              return n;
            } finally { inflight--; }
          };
          const r = new SegmentReader(read, size, chunk, readEnd, readAhead);
          let off = 0;
          for (let k = 0; k < 300; k++) {
            const u = rng();
            if (u < 0.5) off += Math.floor(rng() * 40 * KiB);
            else if (u < 0.6) off = Math.max(0, off - Math.floor(rng() * 200 * KiB));
            else if (u < 0.65) off = size + Math.floor(rng() * 100);
            else off = Math.floor(rng() * size);
            const len = rng() < 0.05 ? 0 : 1 + Math.floor(rng() * (rng() < 0.1 ? 1200 * KiB : 40 * KiB));
            let got: Buffer;
            try { got = await r.get(off, len); } catch (e) { expect((e as NodeJS.ErrnoException).code).to.equal('EIO'); continue; }
            const s = Math.min(off, file.length), e = Math.min(off + len, file.length);
            const want = file.subarray(s, Math.max(s, e));
            const ctx = `seed ${seed} k ${k} get(${off}, ${len}) size ${size} file ${fileLen} readEnd ${readEnd} chunk ${chunk}`;
            expect(got.length, ctx).to.equal(want.length);
            expect(got.equals(want), ctx).to.equal(true);
            // Let any read-ahead run to completion: the bytes handed out must not change under the caller.
            for (let t = 0; t < 6; t++) await tick();
            expect(got.equals(want), `${ctx}: changed while the read-ahead ran`).to.equal(true);
          }
          await r.release();
          expect(inflight).to.equal(0);
        }
      });
    }

    it('a reader holds no more than it reads: one 4 KiB record of a 64 KiB segment takes at most twice the segment', async () => {
      const size = 64 * KiB;
      const file = pattern(size, 3);
      const read: ReadAt = async (buf, off, len, at) => {
        const n = Math.max(0, Math.min(len, size - at));
        file.copy(buf, off, at, at + n);
        return n;
      };
      for (const ra of [false, true]) {
        const r = new SegmentReader(read, size, READ_WINDOW, size, ra);
        await r.get(4096, 4096);
        await r.release();
        const held = (r as unknown as { cur: Buffer | null; spare: Buffer | null }).cur!.length + ((r as unknown as { spare: Buffer | null }).spare?.length ?? 0);
        expect(held, `bytes held by one reader (readAhead=${ra})`).to.be.at.most(2 * size);
      }
    });
    for (const readAhead of [false, true]) {
      it(`a bad block in the part of a window nobody asked for fails no request (readAhead ${readAhead})`, async () => {
        const size = 16 * 1024 * KiB;
        const file = pattern(size, 11);
        const BAD = READ_WINDOW + 4096 + 2 * 1024 * KiB; // past the log's end, say (a torn tail on a failing disk)
        const read: ReadAt = async (buf, off, len, at) => {
          await tick();
          if (at <= BAD && at + len > BAD) throw Object.assign(new Error('EIO'), { code: 'EIO' });
          file.copy(buf, off, at, at + len);
          return len;
        };
        const r = new SegmentReader(read, size, READ_WINDOW, size, readAhead);
        await r.get(4096, 24);
        // The next record header, right after the window: its 24 bytes are fine, far from the bad sector.
        const at = 4096 + READ_WINDOW;
        let err: unknown = null;
        try { await r.get(at, 24); } catch (e) { err = e; }
        await r.release();
        expect(err, `get(${at}, 24) failed for a sector ${BAD - at} bytes past it`).to.equal(null);
      });
    }
    it('out of descriptors, a read-ahead that reopens its segment never closes the one a pinned read of another segment uses (the applier\'s re-read of a WRITE)', async () => {
      const MiB = 1024 * 1024;
      const content: Record<string, Buffer> = { A: Buffer.alloc(16 * MiB, 0xaa), B: Buffer.alloc(1 * MiB, 0xbb) };
      // The process is at its descriptor limit but for one (the applier's data files hold the rest).
      const table = new Map<number, string>();
      const MAX = 1;
      const io = {
        async open(p: string) {
          await tick();
          if (table.size >= MAX) throw Object.assign(new Error('EMFILE'), { code: 'EMFILE' });
          let fd = 3;
          while (table.has(fd)) fd++;
          table.set(fd, p);
          return fd;
        },
        async close(fd: number) { table.delete(fd); },
        async read(fd: number, buf: Uint8Array, off: number, len: number, at: number) {
          // The pread reaches the kernel a few turns later (threadpool queue behind the 4 MiB read-ahead).
          for (let i = 0; i < 5; i++) await tick();
          const p = table.get(fd);
          if (!p) throw Object.assign(new Error('EBADF'), { code: 'EBADF' });
          const f = content[p];
          const n = Math.max(0, Math.min(len, f.length - at));
          f.copy(buf as Buffer, off, at, at + n);
          return n;
        },
      } as unknown as IO;
      const files = new SegmentFiles(io, 'read', 8, true); // as recovery makes it
      const segA = { index: 1, file: 'A', size: 16 * MiB, seq: 1 };
      const segB = { index: 2, file: 'B', size: 1 * MiB, seq: 2 };
      const reader = await files.reader(segA);
      await reader.get(4096, 24); // window [4096, 4096 + 4 MiB), read-ahead of the next one started
      for (let i = 0; i < 20; i++) await tick(); // ... and done
      // An earlier runGroup re-read a WRITE of segment B (over the memory budget): B's open evicts A.
      await files.fd(segB);
      // The walk goes on: the window's read-ahead is used, the next one starts and must reopen A.
      await reader.get(4096 + 4 * MiB - 8, 24);
      // The applier re-reads a WRITE of segment B as runGroup does: through readExactly, pinned.
      const data = Buffer.alloc(64 * 1024);
      let err: unknown = null;
      const read = files.readExactly(segB, 4096, data, 0, data.length).catch((e) => { err = e; });
      // Meanwhile the walk goes on: its next read-ahead must reopen A, and may evict only what is not pinned.
      await reader.get(4096 + 8 * MiB - 8, 24).catch(() => undefined);
      await read;
      await reader.release();
      expect(err, 'the applier\'s read failed').to.equal(null);
      expect(data.every((b) => b === 0xbb), `the re-read got segment B's bytes (got 0x${data[0].toString(16)})`).to.equal(true);
    });
  });
});
