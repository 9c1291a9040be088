// Child for test/cp-recover.test.ts: leaves a store with an epoch in doubt, as a crash between a
// two-phase epoch's prepare() and its decision does. Opens the store in argv[2] (small segments,
// nothing applied in the background), checks epoch 1, prepares epoch 2 as "tx-0" and commits it,
// writes epoch 3 and prepares it as argv[3] without deciding, prints READY <json> and waits to be
// killed. The JSON holds { pid, prepared: { id, epoch }, epochs: { "<n>": { name: hex } } }: the files'
// contents at each epoch, the prepared one included (what a commit of it gives).
import { openStore } from '../../lib/index.js';

const dir = process.argv[2];
const id = process.argv[3];
if (!dir || !id) {
  process.stderr.write('usage: preparer <dir> <id>\n');
  process.exit(2);
}

const store = await openStore(dir, { segmentSize: 1 << 20, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
const model = new Map<string, Buffer>();
const epochs: Record<string, Record<string, string>> = {};
const snapshot = (e: number): void => {
  epochs[String(e)] = Object.fromEntries([...model].map(([k, v]) => [k, v.toString('hex')]));
};
const put = (name: string, data: string): void => {
  model.set(name, Buffer.from(data));
};

// epoch 1: checked
const a = await store.open('a.txt', 'w+');
await a.write('one\n');
await store.writeFile('b.txt', 'b-1');
put('a.txt', 'one\n');
put('b.txt', 'b-1');
const e1 = await store.check();
if (e1 !== 1) throw new Error(`check() returned ${e1}`);
snapshot(1);

// epoch 2: prepared and committed by the application (a decided PREPARE stays in the journal)
await a.write('two\n');
await store.writeFile('c.txt', 'c-2');
put('a.txt', 'one\ntwo\n');
put('c.txt', 'c-2');
const p2 = await store.prepare({ id: 'tx-0' });
if ((await p2.commit()) !== 2) throw new Error('the commit of tx-0 is not epoch 2');
snapshot(2);

// epoch 3: prepared, never decided
await a.write('three\n');
await store.writeFile('b.txt', 'b-3, longer');
await store.unlink('c.txt');
await store.writeFile('sub/d.txt', 'd-3');
put('a.txt', 'one\ntwo\nthree\n');
put('b.txt', 'b-3, longer');
model.delete('c.txt');
put('sub/d.txt', 'd-3');
const p3 = await store.prepare({ id });
snapshot(p3.epoch);

process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, prepared: { id: p3.id, epoch: p3.epoch }, epochs })}\n`);
setInterval(() => {}, 1000);
