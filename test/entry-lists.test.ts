// FORMAT.md rules 6 and 7: an epoch commits whatever the number of open entries and the length of
// their names. Entry lists longer than a record's payload are carried by ENTRIES records, a catalog
// larger than the store's segment size gets a larger segment, and recovery reads them all back.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Sandbox } from './helpers/sandbox.js';
import { RecordType, entryListOps, entryListBytes, recordCap, segmentSizeFor, decodePayload, encodeRecord, readRecordHeader, checkRecordHeader, RECORD_FLAG_MORE, RECORD_HEADER_SIZE, MAX_PAYLOAD, type CatalogEntry } from '../lib/format.js';
import { EpochOrder } from '../lib/recovery/epoch-order.js';

const CHILD = fileURLToPath(new URL('./fixtures-entries/many-open.js', import.meta.url));

const name = (i: number, nameLen: number): string => {
  const tag = `d${i % 7}/f${i}-`;
  return tag + 'x'.repeat(Math.max(1, nameLen - tag.length));
};

function runUntilAcked(dir: string, count: number, nameLen: number, segmentSize: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(count), String(nameLen), String(segmentSize)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      if (String(d).includes('ACKED')) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

describe('entry lists of any length (format version 3)', function () {
  this.timeout(240_000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  describe('codec', () => {
    const entries = (n: number, len: number): CatalogEntry[] => Array.from({ length: n }, (_, i) => ({ name: name(i, len), position: i, state: i % 3 ? 'open' : 'closed', size: i % 3 ? i * 10 : null }));

    it('a list past the record cap splits into ENTRIES records with MORE, ending in the COMMIT with its cursor; the parts concatenate to the list', () => {
      const list = entries(20_000, 200);
      const applied = { cursorSeq: 3, cursorOffset: 4096, appliedEpoch: 7 };
      const ops = entryListOps(RecordType.COMMIT, list, MAX_PAYLOAD, applied);
      expect(ops.length).to.be.greaterThan(3);
      const back: CatalogEntry[] = [];
      ops.forEach(({ op, flags }, i) => {
        const rec = encodeRecord(op, 1234, 9, 4096, flags);
        const h = readRecordHeader(rec);
        expect(checkRecordHeader(h, 1234, 1 << 30, rec)).to.equal('ok');
        expect(h.len).to.be.at.most(MAX_PAYLOAD);
        const dec = decodePayload(h.type, rec.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + h.len));
        if (i < ops.length - 1) {
          expect(h.type).to.equal(RecordType.ENTRIES);
          expect(h.flags).to.equal(RECORD_FLAG_MORE);
        } else {
          expect(h.type).to.equal(RecordType.COMMIT);
          expect(h.flags).to.equal(0);
          expect((dec as { applied: unknown }).applied).to.deep.equal(applied);
        }
        back.push(...(dec as { entries: CatalogEntry[] }).entries);
      });
      expect(back).to.deep.equal(list);
    });

    it('a catalog splits into a CATALOG with MORE and ENTRIES parts, the last without MORE; a small list stays one record', () => {
      const ops = entryListOps(RecordType.CATALOG, entries(3000, 4000), recordCap(65536));
      expect(ops[0].op.type).to.equal(RecordType.CATALOG);
      expect(ops.slice(1).every((o) => o.op.type === RecordType.ENTRIES)).to.equal(true);
      expect(ops.map((o) => o.flags)).to.deep.equal([...ops.slice(1).map(() => RECORD_FLAG_MORE), 0]);
      expect(entryListOps(RecordType.CATALOG, entries(3, 10), recordCap(65536))).to.have.length(1);
      expect(entryListOps(RecordType.COMMIT, [], MAX_PAYLOAD, null)).to.have.length(1);
    });

    it('MORE is refused on every other record type, and unknown flags everywhere', () => {
      for (const t of [RecordType.WRITE, RecordType.COMMIT, RecordType.ABORT, RecordType.SEGEND]) {
        const op = t === RecordType.WRITE ? { type: t, name: 'a', offset: 0, data: Buffer.from('x') }
          : t === RecordType.COMMIT ? { type: t, entries: [] } : t === RecordType.SEGEND ? { type: t, nextSeq: 2 } : { type: t };
        const rec = encodeRecord(op as never, 1, 1, 4096, RECORD_FLAG_MORE);
        expect(checkRecordHeader(readRecordHeader(rec), 1, 1 << 20, rec)).to.equal('type');
      }
      const rec = encodeRecord({ type: RecordType.ENTRIES, entries: [] }, 1, 1, 4096, 2);
      expect(checkRecordHeader(readRecordHeader(rec), 1, 1 << 20, rec)).to.equal('type');
    });

    it('segments grow for catalogs larger than a quarter of the segment size, up to the limit', () => {
      expect(segmentSizeFor(1000, 65536)).to.equal(65536);
      const big = segmentSizeFor(1 << 20, 65536);
      expect(big).to.be.at.least(2 * (1 << 20));
      expect(big % 65536).to.equal(0);
      expect(segmentSizeFor(10, 64 << 20)).to.equal(64 << 20);
    });

    it('the epoch order: ENTRIES only with MORE before their COMMIT, a catalog\'s parts at once after it, and no list across a segment end', () => {
      const F = RECORD_FLAG_MORE;
      const run = (recs: [number, number, number][]): string[] => {
        const o = new EpochOrder();
        return recs.map(([t, e, f]) => {
          const v = o.next(t, e, f);
          return v.ok ? v.role : `!${v.reason}`;
        });
      };
      expect(run([[RecordType.CATALOG, 4, F], [RecordType.ENTRIES, 4, F], [RecordType.ENTRIES, 4, 0], [RecordType.WRITE, 5, 0], [RecordType.ENTRIES, 5, F], [RecordType.COMMIT, 5, 0]]))
        .to.deep.equal(['catalog', 'catalog-part', 'catalog-part', 'record', 'commit-part', 'commit']);
      expect(run([[RecordType.CATALOG, 4, F], [RecordType.WRITE, 5, 0]])).to.deep.equal(['catalog', '!entries']);
      expect(run([[RecordType.CATALOG, 4, 0], [RecordType.ENTRIES, 5, 0]])).to.deep.equal(['catalog', '!entries']);
      expect(run([[RecordType.CATALOG, 4, 0], [RecordType.ENTRIES, 5, F], [RecordType.SEGEND, 0, 0]])).to.deep.equal(['catalog', 'commit-part', '!entries']);
      expect(run([[RecordType.CATALOG, 4, 0], [RecordType.ENTRIES, 5, F], [RecordType.WRITE, 5, 0]])).to.deep.equal(['catalog', 'commit-part', '!entries']);
      expect(run([[RecordType.CATALOG, 4, 0], [RecordType.ENTRIES, 6, F]])).to.deep.equal(['catalog', '!epoch']);
      expect(run([[RecordType.WRITE, 4, 0]])).to.deep.equal(['!catalog']);
    });
  });

  const cases: { count: number; nameLen: number; segmentSize: number; what: string }[] = [
    { count: 6000, nameLen: 200, segmentSize: 64 << 20, what: '6,000 open files with 200-byte names (a COMMIT of about 1.3 MiB)' },
    { count: 20_000, nameLen: 12, segmentSize: 64 << 20, what: '20,000 open files with short names' },
    { count: 2000, nameLen: 200, segmentSize: 65536, what: '2,000 open files in 64 KiB segments (a catalog of 7 segments\' size)' },
  ];
  for (const c of cases) {
    it(`${c.what}: every check commits, and a SIGKILLed writer recovers to its last epoch with every entry resumed`, async () => {
      const dir = await sb.dir();
      await runUntilAcked(dir, c.count, c.nameLen, c.segmentSize);
      const store = await sb.open(dir, { segmentSize: c.segmentSize });
      expect(store.epoch).to.equal(2);
      expect(store.recovery.corruption).to.equal(null);
      expect(store.recovery.entries).to.have.length(c.count);
      const pos = new Map(store.recovery.entries.map((e) => [e.name, e.position]));
      for (let i = 0; i < c.count; i += Math.max(1, Math.floor(c.count / 50))) {
        expect(pos.get(name(i, c.nameLen))).to.equal(i % 5);
        expect((await readFile(path.join(dir, ...name(i, c.nameLen).split('/')))).toString()).to.equal(`file ${i}\n`);
      }
      // The store keeps working with all of them: reopen every entry, close them all, check, reopen.
      for (let i = 0; i < c.count; i++) await (await store.open(name(i, c.nameLen), 'r+')).close();
      expect(await store.check()).to.equal(3);
      await store.close();
      const again = await sb.open(dir, { segmentSize: c.segmentSize });
      expect(again.epoch).to.equal(4);
      expect(again.recovery.entries).to.have.length(0);
      await again.close();
    });
  }

  it('with 64 KiB segments, thousands of open files: checks keep committing across many segment rotations, closing every handle too', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir, { segmentSize: 65536 });
    const files = [];
    for (let i = 0; i < 2000; i++) files.push(await store.open(name(i, 120), 'w'));
    for (let round = 0; round < 5; round++) {
      for (const f of files) await f.write(Buffer.alloc(50, round));
      expect(await store.check()).to.equal(round + 1);
    }
    for (const f of files) await f.close();
    expect(await store.check()).to.equal(6);
    await store.close();
    const again = await sb.open(dir, { segmentSize: 65536 });
    expect(again.epoch).to.equal(7);
    expect((await again.readFile(name(1999, 120))).equals(Buffer.alloc(250, 0).fill(1, 50, 100).fill(2, 100, 150).fill(3, 150, 200).fill(4, 200, 250))).to.equal(true);
    await again.close();
  });

  it('a commit list is laid out whole or not at all: a bad entry in a later part leaves the journal untouched', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir, { segmentSize: 65536, inline: true });
    const w = (store as unknown as { writer: { position: number; append(op: unknown, epoch: number): number } }).writer;
    const list: CatalogEntry[] = Array.from({ length: 400 }, (_, i) => ({ name: name(i, 200), position: i, state: 'open', size: 1 }));
    list.push({ name: 'bad', position: 2 ** 53 + 2, state: 'open', size: 1 });
    const before = w.position;
    expect(() => w.append({ type: RecordType.COMMIT, entries: list, applied: null }, 1)).to.throw(/not an integer from 0 to 2\^53-1/);
    expect(w.position).to.equal(before);
  });

  it('the catalog limit is refused at open(), with EINVAL, before anything is journaled', () => {
    // MAX_CATALOG_BYTES is 256 MiB: about 65,000 names of the longest length. Checked by arithmetic
    // here (opening that many files takes minutes); the store test above covers the path itself.
    const longest = entryListBytes(entryListOps(RecordType.CATALOG, [{ name: 'x'.repeat(4096), position: 0, state: 'open', size: 0 }], MAX_PAYLOAD));
    expect(longest).to.be.lessThan(4200);
  });
});
