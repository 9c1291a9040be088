// Child for test/entry-lists.test.ts: opens `count` files whose names are `nameLen` bytes long in the
// store argv[2] (segment size argv[5]), writes a few bytes to each, checks (epoch 1), moves every
// position, checks again (epoch 2), then writes uncommitted bytes to every file, prints ACKED and
// waits to be killed: recovery must bring back epoch 2 with every entry open at its position.
import { openStore } from '../../lib/index.js';

const [dir, countArg, lenArg, segArg] = process.argv.slice(2);
const count = Number(countArg);
const nameLen = Number(lenArg);
const store = await openStore(dir, { segmentSize: Number(segArg), applyDelay: 3600_000, applyThreshold: 2 ** 40 });
const name = (i: number): string => {
  const tag = `d${i % 7}/f${i}-`;
  return tag + 'x'.repeat(Math.max(1, nameLen - tag.length));
};
const files = [];
for (let i = 0; i < count; i++) {
  const f = await store.open(name(i), 'w+');
  await f.write(`file ${i}\n`);
  files.push(f);
}
if ((await store.check()) !== 1) throw new Error('expected epoch 1');
for (let i = 0; i < count; i++) files[i].seek(i % 5);
if ((await store.check()) !== 2) throw new Error('expected epoch 2');
for (const f of files) await f.write('UNCOMMITTED');
process.stdout.write('ACKED\n');
setInterval(() => undefined, 1000);
