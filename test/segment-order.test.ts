// FORMAT.md rule 9: a new segment is durable before the SEGEND naming it is written, so a valid
// SEGEND whose segment is missing is damage (ECORRUPT), never a torn tail that silently drops
// acknowledged epochs (and leaves files of a partly applied epoch behind).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { openStore, CpError } from '../lib/index.js';
import { RecordType, SEGMENT_HEADER_AREA } from '../lib/format.js';
import { interceptIO } from './helpers/intercept-io.js';
import { openHeld, crash, records, segmentPath, NO_APPLY } from './helpers/journal.js';
import { Sandbox } from './helpers/sandbox.js';

const sb = new Sandbox();
after(() => sb.cleanup());
const fresh = (): Promise<string> => sb.dir();

describe('segment order (rule 9)', () => {
  it('the new segment file is created, written and fsynced, and the journal directory fsynced, before the SEGEND naming it is written', async () => {
    const dir = await fresh();
    const calls: string[] = [];
    const fdNames = new Map<number, string>();
    const io = interceptIO(async (call, args, next) => {
      const r = await next();
      if (call === 'open') fdNames.set(r as number, path.basename(args[0] as string));
      const fd = typeof args[0] === 'number' ? fdNames.get(args[0] as number) : path.basename(String(args[0]));
      calls.push(`${call} ${fd}${call === 'write' ? ` @${args[4]} ${args[3]}` : ''}`);
      return r;
    });
    const s = await openStore(dir, { ...NO_APPLY, segmentSize: 65536, io });
    const f = await s.open('big.bin', 'w');
    calls.length = 0;
    for (let i = 0; i < 40; i++) await f.write(Buffer.alloc(4096, i));
    await s.check();
    const recs = await records(dir);
    const segend = recs.find((r) => r.header.type === RecordType.SEGEND)!;
    expect(segend, 'the writes rotate into a new segment').to.not.equal(undefined);
    const oldSeg = path.basename(segmentPath(dir, segend));
    const next = recs.find((r) => r.seq === segend.seq + 1)!;
    const newSeg = path.basename(segmentPath(dir, next));
    // The SEGEND is written on its own, after the records before it.
    const segendWrite = calls.findIndex((c) => c.startsWith(`write ${oldSeg} @${segend.offset} `));
    expect(segendWrite).to.be.greaterThan(0);
    const before = calls.slice(0, segendWrite);
    expect(before.some((c) => c === `fsync ${newSeg}`), `fsync of ${newSeg} before the SEGEND write: ${before.join(', ')}`).to.equal(true);
    if (before.some((c) => c.startsWith(`open ${newSeg}`)) && calls.some((c) => c.startsWith('open ' + newSeg))) {
      // A file created for it: the journal directory is fsynced before the SEGEND too.
      expect(before.some((c) => c === 'fsyncDir journal')).to.equal(true);
    }
    await crash(s);
  });

  it('losing a whole later segment of acknowledged epochs is ECORRUPT naming the epochs, not a rollback (and --force proceeds)', async () => {
    const dir = await fresh();
    const s = await openHeld(dir, { segmentSize: 65536 });
    // Nothing is applied in the background (a store whose log spans segments applies at once).
    (s as unknown as { applyNow: () => Promise<void> }).applyNow = async () => undefined;
    await s.writeFile('a.txt', 'epoch 1');
    expect(await s.check()).to.equal(1);
    // Epoch 2 creates a file and fills past the first segment: its COMMIT is in a later segment.
    await s.writeFile('created-in-2.txt', 'x');
    await s.writeFile('big.bin', Buffer.alloc(200_000, 2));
    expect(await s.check()).to.equal(2);
    await crash(s);
    const recs = await records(dir);
    const commit2 = recs.find((r) => r.header.type === RecordType.COMMIT && r.header.epoch === 2)!;
    expect(commit2.seq).to.be.greaterThan(recs[0].seq);
    // The applier had created the new file before the segment was lost (a partly applied epoch).
    fs.writeFileSync(path.join(dir, 'created-in-2.txt'), 'x');
    fs.rmSync(segmentPath(dir, commit2));
    let err: CpError | null = null;
    try {
      await openStore(dir, NO_APPLY);
    } catch (e) {
      err = e as CpError;
    }
    expect(err, 'a store that lost a segment of acknowledged epochs must not open as an earlier epoch').to.be.instanceOf(CpError);
    expect(err!.code).to.equal('ECORRUPT');
    expect(err!.message).to.match(/is missing/);
    expect(err!.details).to.include({ reason: 'missing-segment', lostFrom: 2 });
    const forced = await openStore(dir, { ...NO_APPLY, force: true });
    expect(forced.epoch).to.equal(1);
    expect(forced.recovery.corruption).to.not.equal(null);
    await forced.close();
  });

  it('a torn rotation (the segment was never written: the SEGEND is not durable either) is still a torn tail', async () => {
    const dir = await fresh();
    const s = await openHeld(dir, { segmentSize: 65536 });
    (s as unknown as { applyNow: () => Promise<void> }).applyNow = async () => undefined;
    await s.writeFile('a.txt', 'epoch 1');
    expect(await s.check()).to.equal(1);
    await s.writeFile('big.bin', Buffer.alloc(200_000, 2));
    await crash(s); // epoch 2 never checked
    const recs = await records(dir);
    const segend = recs.find((r) => r.header.type === RecordType.SEGEND)!;
    // As if neither the SEGEND nor anything after it reached the disk.
    const fd = fs.openSync(segmentPath(dir, segend), 'r+');
    fs.writeSync(fd, Buffer.alloc(65536 - segend.offset), 0, 65536 - segend.offset, segend.offset);
    fs.closeSync(fd);
    const next = recs.find((r) => r.seq === segend.seq + 1)!;
    fs.rmSync(segmentPath(dir, next));
    const again = await openStore(dir, NO_APPLY);
    expect(again.epoch).to.equal(1);
    expect(again.recovery.corruption).to.equal(null);
    expect(String(await again.readFile('a.txt'))).to.equal('epoch 1');
    await again.close();
    expect(SEGMENT_HEADER_AREA).to.equal(4096);
  });
});
