/**
 * Reads of pending changes stay exact while committed epochs are applied in the background: the
 * model workload of the kill loop runs in-process (no kills) with immediate background applies and
 * 64 KiB segments, and every file is compared with the model after every operation.
 *
 * Regressions: applied overlays were settled outside the call queue (a rename could move an overlay
 * whose base file was not open yet, a read could lose its fd), and journal segments were recycled
 * while pending overlays still read from them.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { openStore, type CpFile } from '../lib/index.js';
import { workload, describeOp, writeOpCall } from './helpers/model.js';
import { tempDir } from './helpers/journal.js';

const SEEDS = [11, 40, 47, 52, 2026];
const OPS = 1200;

describe('read-your-writes under background apply (model workload, every op verified)', function () {
  this.timeout(120000);
  for (const seed of SEEDS) {
    for (const [inline, direct] of [[true, false], [false, false], [true, true], [false, true]]) {
      it(`seed ${seed}, ${inline ? 'inline flusher' : 'worker flusher'}${direct ? ', direct appends from 1 byte' : ''}: every file equals the model after every op`, async () => {
        const dir = tempDir();
        const store = await openStore(dir, {
          inline, noLock: true, sync: false, segmentSize: 64 * 1024, applyDelay: 0, applyThreshold: 0, directAppendMin: direct ? 1 : false,
        });
        const handles = new Map<number, CpFile>();
        const H = (h: number): CpFile => handles.get(h)!;
        let model = new Map<string, Buffer>();
        const recent: string[] = [];
        let i = 0;
        try {
          for (const op of workload(seed, new Map(), { trace: (m) => { model = new Map([...m].map(([k, v]) => [k, Buffer.from(v)])); } })) {
            recent.push(describeOp(op));
            if (recent.length > 12) recent.shift();
            switch (op.t) {
              case 'open': handles.set(op.h, await store.open(op.name, op.mode)); break;
              case 'write': await writeOpCall(H(op.h), op); break;
              case 'read': {
                const b = Buffer.alloc(op.len);
                const r = await H(op.h).read(b, 0, op.len, op.position ?? undefined);
                expect(b.subarray(0, r.bytesRead).equals(op.expect), `op ${i} ${describeOp(op)}`).to.equal(true);
                break;
              }
              case 'seek': H(op.h).seek(op.offset, op.whence); break;
              case 'truncate': await H(op.h).truncate(op.len); break;
              case 'stat': expect((await H(op.h).stat()).size).to.equal(op.size); break;
              case 'dup': handles.set(op.nh, H(op.h).dup()); break;
              case 'close': for (const h of op.hs) { await H(h).close(); handles.delete(h); } break;
              case 'unlink': await store.unlink(op.name); break;
              case 'rename': await store.rename(op.from, op.to); break;
              case 'writeFile': await store.writeFile(op.name, op.data); break;
              case 'readFile': break;
              case 'check': await store.check(); break;
            }
            for (const [name, want] of model) {
              const got = await store.readFile(name);
              if (!got.equals(want)) expect.fail(`after op ${i} (${describeOp(op)}) ${name} differs from the model (got ${got.length}B, want ${want.length}B); recent ops:\n${recent.join('\n')}`);
            }
            if (++i >= OPS) break;
          }
          await store.close();
          for (const [name, want] of model) expect(fs.readFileSync(`${dir}/${name}`).equals(want), `${name} on disk after close`).to.equal(true);
          if (direct) expect(store.stats().bytesDirect, 'some appends went direct').to.be.above(0);
        } finally {
          await store.close().catch(() => undefined);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  }
});
