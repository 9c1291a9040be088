// The overlay of one file on its own (lib/store/overlay.ts): which byte ranges live in the journal,
// the logical size, how much of the base file shows through, and what settle() forgets once the
// applier has made records durable. Examples first, then a property test against a byte model: a
// random run of journaled writes and truncates, read through pieces() over a journal and a base
// file, always gives what the writes made, also after any prefix of it was applied and settled.
import { expect } from 'chai';
import fc from 'fast-check';
import { Overlay, type Extent } from '../lib/store/overlay.js';

const SEQ = 1;
const INDEX = 0;

/** Where each piece's bytes come from: 'base', or the journal offset of its first byte. */
function sources(ov: Overlay, start = 0, end = ov.size): [number, number, string | number][] {
  return ov.pieces(start, end).map((p) => [p.start, p.end, p.ext ? p.ext.jOff + (p.start - p.ext.start) : 'base']);
}

function expectWellFormed(ov: Overlay): void {
  let prev: Extent | null = null;
  for (const e of ov.extents) {
    expect(e.start, 'extent non-empty').to.be.lessThan(e.end);
    if (prev) expect(prev.end, 'extents sorted, not overlapping').to.be.at.most(e.start);
    prev = e;
  }
  if (prev) expect(prev.end, 'no extent past the size').to.be.at.most(ov.size);
}

describe('overlay: pending writes of one file', () => {
  it('a write inside a base file is read from the journal there and from the base around it; the size stays', () => {
    const ov = new Overlay(7, 100, true, true);
    ov.insert(40, 10, INDEX, SEQ, 5000, 4999);
    expect(ov.size).to.equal(100);
    expect(sources(ov)).to.deep.equal([[0, 40, 'base'], [40, 50, 5000], [50, 100, 'base']]);
    expect(ov.baseLimit).to.equal(Infinity);
  });

  it('an overwrite splits the extent under it; the right part keeps its journal place', () => {
    const ov = new Overlay(null, 0, true, false);
    ov.insert(0, 10, INDEX, SEQ, 1000, 990);
    ov.insert(3, 2, INDEX, SEQ, 2000, 1990);
    expect(sources(ov)).to.deep.equal([[0, 3, 1000], [3, 5, 2000], [5, 10, 1005]]);
    expect(ov.extents).to.have.length(3);
    expectWellFormed(ov);
  });

  it('writes that continue one record in the journal stay one extent (coalesced records)', () => {
    const ov = new Overlay(null, 0, true, false);
    ov.insert(0, 4, INDEX, SEQ, 1000, 990);
    ov.insert(4, 4, INDEX, SEQ, 1004, 990);
    ov.insert(8, 4, INDEX, SEQ, 1008, 990);
    expect(ov.extents).to.deep.equal([{ start: 0, end: 12, index: INDEX, seq: SEQ, jOff: 1000, pos: 990 }]);
    // Another record, even right after it in the journal, is an extent of its own.
    ov.insert(12, 4, INDEX, SEQ, 1012, 1012);
    expect(ov.extents).to.have.length(2);
  });

  it('a write past the end grows the file; the gap reads as base only below the base size (pieces says base, the reader zero-fills)', () => {
    const ov = new Overlay(7, 10, true, true);
    ov.insert(20, 5, INDEX, SEQ, 3000, 2990);
    expect(ov.size).to.equal(25);
    expect(sources(ov)).to.deep.equal([[0, 20, 'base'], [20, 25, 3000]]);
  });

  it('truncate cuts the extents, hides the base past the new length and sets the size', () => {
    const ov = new Overlay(7, 100, true, true);
    ov.insert(10, 20, INDEX, SEQ, 1000, 990);
    ov.insert(60, 20, INDEX, SEQ, 2000, 1990);
    ov.truncate(15, 3000);
    expect(ov.size).to.equal(15);
    expect(ov.baseLimit).to.equal(15);
    expect(ov.extents.map((e) => [e.start, e.end])).to.deep.equal([[10, 15]]);
    expect(ov.truncs).to.deep.equal([{ pos: 3000, len: 15 }]);
    // Growing again does not bring the cut bytes back: beyond baseLimit the reader gives zeros.
    ov.truncate(50, 3100);
    expect(ov.size).to.equal(50);
    expect(ov.baseLimit).to.equal(15);
    expectWellFormed(ov);
  });

  it('a new file (create = truncate to 0) shows no base at all', () => {
    const ov = new Overlay(null, 0, true, false);
    expect(ov.baseLimit).to.equal(0);
    ov.truncate(0, 100);
    ov.insert(0, 3, INDEX, SEQ, 200, 190);
    expect(ov.size).to.equal(3);
    expect(ov.baseLimit).to.equal(0);
  });

  it('settle forgets what is applied, keeps what is not, and recomputes the base limit from the truncates left', () => {
    const ov = new Overlay(7, 100, true, true);
    ov.insert(0, 10, INDEX, SEQ, 1000, 1000);
    ov.truncate(50, 2000);
    ov.insert(60, 10, INDEX, SEQ, 3000, 3000);
    ov.lastPos = 3000;
    expect(ov.settle(2000)).to.equal(false);
    expect(ov.extents.map((e) => e.pos)).to.deep.equal([3000]);
    expect(ov.truncs).to.deep.equal([{ pos: 2000, len: 50 }]);
    expect(ov.baseLimit).to.equal(50);
    expect(ov.settle(2001)).to.equal(false);
    expect(ov.baseLimit).to.equal(Infinity);
    expect(ov.settle(3001)).to.equal(true);
    expect(ov.extents).to.deep.equal([]);
    expect(ov.lastPos).to.equal(-1);
  });

  it('settle changes nothing while a create or rename into the name is pending (the file is not at its name on disk yet)', () => {
    const ov = new Overlay(null, 0, true, false);
    ov.truncate(0, 500);
    ov.nsPos = 500;
    ov.insert(0, 10, INDEX, SEQ, 1000, 1000);
    ov.lastPos = 1000;
    // The applier has not reached the create: even a write before it in the journal stays.
    ov.insert(20, 5, INDEX, SEQ, 300, 300);
    expect(ov.settle(400)).to.equal(false);
    expect(ov.extents).to.have.length(2);
    expect(ov.truncs).to.have.length(1);
    expect(ov.nsPos).to.equal(500);
    // A cursor at the create is before it: the create is the next record to apply.
    ov.settle(500);
    expect(ov.nsPos).to.equal(500);
    expect(ov.truncs).to.have.length(1);
    // Past the create, the applied part goes as usual.
    expect(ov.settle(501)).to.equal(false);
    expect(ov.nsPos, 'applied past the create').to.equal(-1);
    expect(ov.truncs).to.deep.equal([]);
    expect(ov.extents.map((e) => e.pos)).to.deep.equal([1000]);
  });

  describe('property: reads through pieces() match a byte model', () => {
    type Op = { t: 'write'; start: number; len: number; cont: boolean } | { t: 'trunc'; len: number } | { t: 'apply'; frac: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('write' as const), start: fc.nat(300), len: fc.integer({ min: 1, max: 80 }), cont: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ t: fc.constant('trunc' as const), len: fc.nat(320) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('apply' as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    );

    it('random writes, truncates and applies (settle) of a file with a base', () => {
      fc.assert(fc.property(fc.nat(200), fc.array(opArb, { maxLength: 40 }), fc.integer(), (baseSize, ops, seed) => {
        let rnd = seed >>> 0;
        // Never 0: a byte read from the wrong place (zeros instead of the base, say) always shows.
        const byte = (): number => 1 + ((rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0) >>> 24) % 255;
        // The base file on disk, the journal (offset -> byte), and the file as the writes made it.
        let base: Buffer = Buffer.from(Array.from({ length: baseSize }, byte));
        const journal = new Map<number, number>();
        let model: Buffer = Buffer.from(base);
        // Every operation journaled, in order, with its position: what the applier replays.
        const log: { pos: number; apply: (b: Buffer) => Buffer }[] = [];
        let applied = 0;
        let jEnd = 4096;
        let last: { pos: number; end: number; fileEnd: number } | null = null;
        const ov = new Overlay(3, baseSize, true, true);

        const write = (b: Buffer, start: number, data: Buffer): Buffer => {
          const out = Buffer.alloc(Math.max(b.length, start + data.length));
          b.copy(out);
          data.copy(out, start);
          return out;
        };
        const trunc = (b: Buffer, len: number): Buffer => {
          const out = Buffer.alloc(len);
          b.copy(out, 0, 0, Math.min(len, b.length));
          return out;
        };

        for (const op of ops) {
          if (op.t === 'write') {
            const data = Buffer.from(Array.from({ length: op.len }, byte));
            // A write continuing the last record in the journal (coalesced), or a record of its own.
            const prev: { pos: number; end: number; fileEnd: number } | null = last;
            const cont: boolean = op.cont && prev !== null && prev.end === jEnd;
            const start: number = cont ? prev!.fileEnd : op.start;
            const recPos: number = cont ? prev!.pos : (jEnd += 24);
            const jOff = jEnd;
            data.forEach((v, i) => journal.set(jOff + i, v));
            jEnd += op.len;
            last = { pos: recPos, end: jEnd, fileEnd: start + op.len };
            ov.insert(start, op.len, INDEX, SEQ, jOff, recPos);
            ov.lastPos = recPos;
            model = write(model, start, data);
            if (cont) {
              const rec = log[log.length - 1];
              const before = rec.apply;
              rec.apply = (b) => write(before(b), start, data);
            } else {
              log.push({ pos: recPos, apply: (b) => write(b, start, data) });
            }
          } else if (op.t === 'trunc') {
            const p = (jEnd += 24);
            last = null;
            ov.truncate(op.len, p);
            ov.lastPos = p;
            model = trunc(model, op.len);
            log.push({ pos: p, apply: (b) => trunc(b, op.len) });
          } else {
            // The applier replays a prefix of the pending records onto the base, then settles.
            const pending = log.slice(applied);
            const n = Math.min(pending.length, Math.floor(op.frac * (pending.length + 1)));
            if (n === 0) continue;
            for (const r of pending.slice(0, n)) base = r.apply(base);
            applied += n;
            const appliedPos = applied < log.length ? log[applied].pos : jEnd + 1;
            const done = ov.settle(appliedPos);
            expect(done, 'nothing pending once everything is applied').to.equal(applied === log.length);
            last = null; // a record being extended is never applied half way
          }
          expectWellFormed(ov);
          expect(ov.size, 'size').to.equal(model.length);
          // Read the whole file, and a window, through the overlay.
          const read = (start: number, end: number): Buffer => {
            const out = Buffer.alloc(end - start);
            for (const p of ov.pieces(start, end)) {
              for (let at = p.start; at < p.end; at++) {
                out[at - start] = p.ext ? journal.get(p.ext.jOff + (at - p.ext.start))! : at < ov.baseLimit && at < base.length ? base[at] : 0;
              }
            }
            return out;
          };
          expect(read(0, ov.size).equals(model), 'whole file').to.equal(true);
          if (ov.size > 2) {
            const a = Math.floor(ov.size / 3);
            expect(read(a, ov.size - 1).equals(model.subarray(a, ov.size - 1)), 'a window').to.equal(true);
          }
        }
      }), { numRuns: 300 });
    });
  });
});
