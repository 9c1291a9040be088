// Every kind of ECORRUPT (lib/errors.ts CorruptionDetails), each made from a real damaged store:
// its kind, whether --force applies, and that force does what `forceable` says (a forced recovery
// opens the store past forceable damage, and stops at the same kind where there is nothing to keep).
import * as fs from 'node:fs';
import { expect } from 'chai';
import { openStore, CpError, type Store } from '../lib/index.js';
import { corruptionOf, type CorruptionKind } from '../lib/errors.js';
import { nodeIO } from '../lib/io.js';
import { RecordType, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, decodeSegmentHeader, encodeRecord, decodeControlSlot, sealRecord, pos } from '../lib/format.js';
import { readControl, ControlWriter } from '../lib/journal/control.js';
import { listSegments } from '../lib/journal/segments.js';
import { SegmentFiles } from '../lib/journal/segment-files.js';
import { applyCommitted } from '../lib/store/applier.js';
import { metaPaths } from '../lib/journal/paths.js';
import { openHeld, crash, records, segmentPath, flipByte, NO_APPLY } from './helpers/journal.js';
import { Sandbox } from './helpers/sandbox.js';

const sb = new Sandbox();
after(() => sb.cleanup());

async function writeEpochs(s: Store, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await s.writeFile('a.txt', `epoch ${i} `.repeat(i));
    await s.writeFile(`f${i}.txt`, `file ${i}`);
    await s.check();
  }
}

/** A store whose epochs 1..n are committed and still in the journal (nothing applied), as a crash leaves it. */
async function heldStore(n: number, extra = {}): Promise<string> {
  const dir = await sb.dir();
  const s = await openHeld(dir, extra);
  await writeEpochs(s, n);
  await crash(s);
  return dir;
}

async function failure(p: Promise<unknown>): Promise<CpError> {
  try {
    const s = await p;
    if (s && typeof (s as Store).close === 'function') await (s as Store).close();
  } catch (e) {
    expect(e).to.be.instanceOf(CpError);
    return e as CpError;
  }
  throw new Error('expected ECORRUPT');
}

/** The salt of the segment file holding a record. */
function saltOf(file: string): number {
  const head = Buffer.alloc(SEGMENT_HEADER_SIZE);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  const h = decodeSegmentHeader(head);
  if (!h.ok) throw new Error('segment header');
  return h.header.salt;
}

/** Give the first WRITE of `epoch` an impossible name length and a checksum that matches it again. */
async function undecodableWrite(dir: string, epoch: number): Promise<void> {
  const w = (await records(dir)).find((r) => r.header.type === RecordType.WRITE && r.header.epoch === epoch)!;
  const file = segmentPath(dir, w);
  const b = fs.readFileSync(file);
  b.writeUInt16LE(0xffff, w.offset + RECORD_HEADER_SIZE + 8);
  sealRecord(b, w.offset, w.offset);
  fs.writeFileSync(file, b);
}

/** Give the COMMIT of `epoch` an entry count its payload cannot hold, and a checksum that matches it again. */
async function undecodableCommit(dir: string, epoch: number): Promise<void> {
  const c = (await records(dir)).find((r) => r.header.type === RecordType.COMMIT && r.header.epoch === epoch)!;
  const file = segmentPath(dir, c);
  const b = fs.readFileSync(file);
  b.writeUInt32LE(0xffffffff, c.offset + RECORD_HEADER_SIZE);
  sealRecord(b, c.offset, c.offset);
  fs.writeFileSync(file, b);
}

interface Case {
  kind: CorruptionKind;
  forceable: boolean;
  /** Damage a store; returns its directory. */
  damage(): Promise<string>;
}

const cases: Case[] = [
  {
    kind: 'control-file', forceable: false,
    damage: async () => {
      const dir = await heldStore(1);
      fs.rmSync(metaPaths(dir).control);
      return dir;
    },
  },
  {
    kind: 'cursor-segment-missing', forceable: false,
    damage: async () => {
      const dir = await heldStore(2);
      fs.rmSync(segmentPath(dir, (await records(dir))[0]));
      return dir;
    },
  },
  {
    kind: 'cursor-segment-short', forceable: false,
    damage: async () => {
      const dir = await heldStore(2);
      fs.truncateSync(segmentPath(dir, (await records(dir))[0]), 8192);
      return dir;
    },
  },
  {
    kind: 'cursor-catalog', forceable: false,
    damage: async () => {
      // The catalog opening the cursor's segment replaced by a valid record of another type.
      const dir = await heldStore(2);
      const catalog = (await records(dir))[0];
      const file = segmentPath(dir, catalog);
      const abort = encodeRecord({ type: RecordType.ABORT }, saltOf(file), catalog.header.epoch + 1, catalog.offset);
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, abort, 0, abort.length, catalog.offset);
      fs.closeSync(fd);
      return dir;
    },
  },
  {
    kind: 'damaged-record-before-commits', forceable: true,
    damage: async () => {
      const dir = await heldStore(4);
      const victim = (await records(dir)).find((r) => r.header.type === RecordType.WRITE && r.header.epoch === 2)!;
      flipByte(segmentPath(dir, victim), victim.offset + RECORD_HEADER_SIZE + victim.header.len - 1);
      return dir;
    },
  },
  {
    kind: 'cursor-past-damage', forceable: true,
    damage: async () => {
      // Applied and closed: the cursor sits after epoch 2's commit, in the same segment.
      const dir = await sb.dir();
      const s = await openStore(dir, { inline: true, noLock: true, segmentSize: 1 << 20 });
      await writeEpochs(s, 2);
      await s.close();
      const victim = (await records(dir)).find((r) => r.header.type === RecordType.WRITE && r.header.epoch === 1)!;
      flipByte(segmentPath(dir, victim), victim.offset + RECORD_HEADER_SIZE + victim.header.len - 1);
      return dir;
    },
  },
  {
    kind: 'control-older-than-journal', forceable: true,
    damage: async () => {
      const dir = await sb.dir();
      const s = await openHeld(dir);
      await writeEpochs(s, 1);
      await s.close(); // applies epoch 1
      const s2 = await openHeld(dir); // recovery starts a fresh segment and moves the cursor there
      await s2.writeFile('a.txt', 'acknowledged');
      await s2.check();
      await crash(s2);
      // The control file loses its newest slot: the older one points into the first run's segment.
      const ctlFile = metaPaths(dir).control;
      const ctl = fs.readFileSync(ctlFile);
      const slots = [0, 512].map((at) => decodeControlSlot(ctl.subarray(at, at + 512)));
      const newest = slots.map((d, i) => ({ i, c: d.ok ? d.state.counter : -1 })).sort((x, y) => y.c - x.c)[0].i;
      ctl[newest * 512 + 100] ^= 1;
      fs.writeFileSync(ctlFile, ctl);
      return dir;
    },
  },
  {
    kind: 'damaged-cursor-catalog', forceable: true,
    damage: async () => {
      const dir = await heldStore(2);
      const catalog = (await records(dir))[0];
      flipByte(segmentPath(dir, catalog), catalog.offset + 8);
      return dir;
    },
  },
  {
    kind: 'epoch-order', forceable: true,
    damage: async () => {
      // A valid record of epoch 5 where epoch 2 continues: a misdirected write, not a torn one.
      const dir = await heldStore(3);
      const victim = (await records(dir)).find((r) => r.header.type === RecordType.WRITE && r.header.epoch === 2)!;
      const file = segmentPath(dir, victim);
      const b = fs.readFileSync(file);
      const rec = encodeRecord({ type: RecordType.WRITE, name: 'a.txt', offset: 0, data: Buffer.alloc(victim.header.len - 8 - 2 - 5, 0x61) }, saltOf(file), 5, victim.offset);
      expect(rec.length).to.equal(victim.size);
      rec.copy(b, victim.offset);
      fs.writeFileSync(file, b);
      return dir;
    },
  },
  {
    kind: 'undecodable-record', forceable: true,
    damage: async () => {
      const dir = await heldStore(3);
      await undecodableWrite(dir, 2);
      return dir;
    },
  },
  {
    kind: 'missing-segment', forceable: true,
    damage: async () => {
      const dir = await sb.dir();
      const s = await openHeld(dir, { segmentSize: 65536 });
      (s as unknown as { applyNow: () => Promise<void> }).applyNow = async () => undefined;
      await s.writeFile('a.txt', 'epoch 1');
      await s.check();
      // Epoch 2 fills past the first segment: its COMMIT is in a later segment, which is lost.
      await s.writeFile('big.bin', Buffer.alloc(200_000, 2));
      await s.check();
      await crash(s);
      const commit2 = (await records(dir)).find((r) => r.header.type === RecordType.COMMIT && r.header.epoch === 2)!;
      fs.rmSync(segmentPath(dir, commit2));
      return dir;
    },
  },
];

describe('corruption kinds (ECORRUPT .details.kind and .forceable)', () => {
  for (const c of cases) {
    it(`${c.kind}: forceable ${c.forceable}`, async () => {
      const dir = await c.damage();
      const err = await failure(openStore(dir, NO_APPLY));
      expect(err.code, err.message).to.equal('ECORRUPT');
      expect(err.details).to.include({ kind: c.kind, forceable: c.forceable });
      expect(corruptionOf(err)).to.equal(err.details);
      if (c.forceable) {
        expect(err.details).to.have.keys('kind', 'forceable', 'seq', 'offset', 'reason', 'lostFrom', 'lostTo', 'evidence');
        const forced = await openStore(dir, { ...NO_APPLY, force: true });
        expect(forced.recovery.corruption).to.not.equal(null);
        expect(forced.recovery.brokenCopy).to.be.a('string');
        await forced.close();
      } else {
        const again = await failure(openStore(dir, { ...NO_APPLY, force: true }));
        expect(again.details).to.include({ kind: c.kind, forceable: false });
      }
    });
  }

  for (const [what, damage] of [['a WRITE', undecodableWrite], ['a COMMIT', undecodableCommit]] as const) {
    it(`undecodable-at-apply (${what}): forceable false (the applier, which recovery never lets reach such a record)`, () => undecodableAtApply(damage));
  }

  it('undecodable-record (a COMMIT): recovery refuses, forced it keeps the epochs before it', async () => {
    const dir = await heldStore(3);
    await undecodableCommit(dir, 2);
    const err = await failure(openStore(dir, NO_APPLY));
    expect(err.code, err.message).to.equal('ECORRUPT');
    expect(err.details).to.include({ kind: 'undecodable-record', forceable: true, reason: 'payload', lostFrom: 2, lostTo: 3 });
    const forced = await openStore(dir, { ...NO_APPLY, force: true });
    expect(forced.epoch).to.equal(1);
    await forced.close();
  });

  async function undecodableAtApply(damage: (dir: string, epoch: number) => Promise<void>): Promise<void> {
    const dir = await heldStore(3);
    await damage(dir, 2);
    const p = metaPaths(dir);
    const ctl = await readControl(nodeIO, p.control);
    if (ctl.kind !== 'ok') throw new Error('control');
    const listing = await listSegments(nodeIO, p.journal, ctl.state.storeId);
    const files = new SegmentFiles(nodeIO);
    const writer = await ControlWriter.open(nodeIO, p.control, false, ctl.state, ctl.slot);
    const last = (await records(dir)).filter((r) => r.header.type === RecordType.COMMIT).pop()!;
    try {
      const err = await failure(applyCommitted({ io: nodeIO, root: dir, segs: listing.bySeq, files, control: writer, sync: false }, pos(last.seq, last.offset + last.size)));
      expect(err.code).to.equal('ECORRUPT');
      expect(err.details).to.include({ kind: 'undecodable-at-apply', forceable: false, reason: 'payload' });
      expect(corruptionOf(err)?.kind).to.equal('undecodable-at-apply');
    } finally {
      await writer.close();
      await files.closeAll();
    }
  }

  it('corruptionOf reads only details made by corruptError (a kind it knows), never by the fields present', () => {
    expect(corruptionOf(new CpError('ECORRUPT', 'x', { details: { seq: 1, offset: 4096, reason: 'crc', lostFrom: 1 } }))).to.equal(null);
    expect(corruptionOf(new CpError('EIO', 'x'))).to.equal(null);
  });
});
