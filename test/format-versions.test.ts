// Stores written by every released format version still open, with the same files, epoch and
// resumed entries (test/fixtures-journals/README.md says how each fixture was made).
import { cp, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Sandbox } from './helpers/sandbox.js';
import { openStore, type CpError } from '../lib/index.js';
import { headOf } from './torture/marks.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// Compiled to dist/test: the fixtures stay in the source tree.
const fixtures = path.resolve(here, '..', '..', 'test', 'fixtures-journals');

async function userFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    if (!rel && e.name === '.cpfile') continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await userFiles(dir, r)));
    else out.push(r);
  }
  return out.sort();
}

describe('format versions: stores written by every released version open with the current code', () => {
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  const versions = ['v1', 'v2', 'v3', 'v4', 'v5'];
  for (const v of versions) {
    for (const state of ['clean', 'crashed'] as const) {
      it(`${v} ${state}: epoch ${state === 'clean' ? 4 : 3}, every file as committed${state === 'crashed' ? ', the uncommitted tail gone, the open entry resumed' : ''}`, async function () {
        const src = path.join(fixtures, `${v}-${state}`);
        try {
          await stat(src);
        } catch {
          throw new Error(`fixture ${src} is missing`);
        }
        const dir = await sb.dir();
        await cp(src, dir, { recursive: true });
        const store = await sb.open(dir, { segmentSize: 65536 });
        // close() checks once more: a clean store is at epoch 4.
        expect(store.epoch).to.equal(state === 'clean' ? 4 : 3);
        expect((await store.readFile('docs/a.txt')).toString()).to.equal('alpha-1\nalpha-2\n');
        const b = await store.readFile('b.bin');
        const want = Buffer.alloc(70000, 7);
        want.write('tail', 10);
        expect(b.equals(want)).to.equal(true);
        expect((await store.readFile('dir/c-renamed.txt')).toString()).to.equal('charlie');
        if (state === 'crashed') {
          expect(store.recovery.entries.map((e) => [e.name, e.position])).to.deep.equal([['docs/a.txt', 3]]);
          const a = await store.open('docs/a.txt', 'r+');
          expect(a.resumed).to.equal(true);
          expect(a.tell()).to.equal(3);
          await a.close();
        }
        await store.close();
        expect(await userFiles(dir)).to.deep.equal(['b.bin', 'dir/c-renamed.txt', 'docs/a.txt']);
        expect((await readFile(path.join(dir, 'docs/a.txt'))).toString()).to.equal('alpha-1\nalpha-2\n');
      });
    }
  }

  for (const v of ['v4', 'v5']) {
    it(`${v} prepared: an epoch prepared and committed, the next one in doubt (EINDOUBT, then each decision)`, async () => {
      const src = path.join(fixtures, `${v}-prepared`);
      for (const decision of [null, 'abort', 'commit'] as const) {
        const dir = await sb.dir();
        await cp(src, dir, { recursive: true });
        if (decision === null) {
          const err = await openStore(dir, { segmentSize: 65536 }).then(() => null, (e: unknown) => e as CpError);
          expect(err?.code).to.equal('EINDOUBT');
          expect(err?.details).to.deep.include({ id: 'fixture-epoch-5', epoch: 5 });
          continue;
        }
        const store = await sb.open(dir, { segmentSize: 65536, resolveInDoubt: ({ id }) => (id === 'fixture-epoch-5' ? decision : 'abort') });
        expect(store.epoch).to.equal(decision === 'commit' ? 5 : 4);
        // Epoch 3 left a.txt's handle at 3: epoch 4 writes over 'ha-1\nalp', epoch 5 goes on after it.
        const a = decision === 'commit' ? 'alpalpha-4\nalpha-5\n' : 'alpalpha-4\nha-2\n';
        expect((await store.readFile('docs/a.txt')).toString()).to.equal(a);
        expect(await userFiles(dir)).to.deep.equal(['b.bin', 'dir/c-renamed.txt', 'docs/a.txt', ...(decision === 'commit' ? ['five.txt'] : [])]);
        await store.close();
      }
    });
  }

  it('v5: every segment of the fixtures has a high-water mark at or past its last record (R19); before version 5 none has one', async () => {
    for (const v of versions) {
      for (const state of ['clean', 'crashed']) {
        const jdir = path.join(fixtures, `${v}-${state}`, '.cpfile', 'journal');
        for (const name of await readdir(jdir)) {
          const b = await readFile(path.join(jdir, name));
          const h = headOf(b);
          if (!h) continue;
          const mark = h.mark;
          if (v !== 'v5') {
            expect(mark, `${v}-${state} ${name}`).to.equal(null);
            continue;
          }
          expect(mark, `${v}-${state} ${name}`).to.be.a('number');
          // nothing but zeros, or records of an earlier life, past it: no byte of this salt's records
          const salt = Buffer.alloc(4);
          salt.writeUInt32LE(h.header.salt >>> 0, 0);
          expect(b.subarray(mark!).indexOf(salt), `${v}-${state} ${name}: the salt past the mark`).to.equal(-1);
        }
      }
    }
  });

  it('v3 many: COMMITs and CATALOGs of 300 long names in several ENTRIES records, in grown segments, recover every entry at its position', async () => {
    const dir = await sb.dir();
    await cp(path.join(fixtures, 'v3-many'), dir, { recursive: true });
    const store = await sb.open(dir, { segmentSize: 65536 });
    expect(store.epoch).to.equal(2);
    const names = (i: number): string => `many/${String(i).padStart(3, '0')}-${'n'.repeat(190)}`;
    expect(store.recovery.entries.map((e) => [e.name, e.position])).to.deep.equal(Array.from({ length: 300 }, (_, i) => [names(i), i % 7]));
    for (let i = 0; i < 300; i += 37) expect((await store.readFile(names(i))).toString()).to.equal(`file ${i}\n`);
    await store.close();
  });
});
