// Makes a fixture store with the cpfile build given in argv[2] (its dist/lib/index.js), in argv[3].
// States: "clean" (closed store), "prepared" (version 4 on: two-phase epochs, the last one in doubt, killed), "many" (version 3 on: long entry lists, killed) and "crashed" (committed, unapplied epochs, open entries, an
// uncommitted tail), killed with SIGKILL.
import { pathToFileURL } from 'node:url';
import * as fs from 'node:fs';
const [lib, out, which] = process.argv.slice(2);
const { openStore } = await import(pathToFileURL(lib).href);
fs.rmSync(out, { recursive: true, force: true });
const store = await openStore(out, { segmentSize: 65536, applyDelay: 3600000, applyThreshold: 2 ** 40, directAppendMin: false });
if (which === 'many') {
  // Version 3 and later: 300 open files with 200-byte names, in 64 KiB segments: COMMITs and
  // CATALOGs span several records (ENTRIES), and segments grow to hold the catalog.
  const files = [];
  for (let i = 0; i < 300; i++) {
    const f = await store.open(`many/${String(i).padStart(3, '0')}-${'n'.repeat(190)}`, 'w+');
    await f.write(`file ${i}\n`);
    files.push(f);
  }
  await store.check(); // epoch 1
  for (let i = 0; i < 300; i++) files[i].seek(i % 7);
  await store.check(); // epoch 2
  for (const f of files) await f.write('UNCOMMITTED');
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200);
  await new Promise(() => undefined);
}
const a = await store.open('docs/a.txt', 'w+');
await a.write('alpha-1\n');
const b = await store.open('b.bin', 'w');
await b.write(Buffer.alloc(70000, 7));  // spans a segment
await store.writeFile('dir/sub/c.txt', 'charlie');
await store.check(); // epoch 1
await a.write('alpha-2\n');
await b.write(Buffer.from('tail'), 0, 4, 10);
await b.close();
await store.rename('dir/sub/c.txt', 'dir/c-renamed.txt');
await store.writeFile('gone.txt', 'soon gone');
await store.check(); // epoch 2
await store.unlink('gone.txt');
await a.seek(3);
await store.check(); // epoch 3
if (which === 'clean') { await a.close(); await store.close(); process.exit(0); }
if (which === 'prepared') {
  // Version 4 on: epoch 4 prepared and committed, epoch 5 prepared and left in doubt (killed).
  await a.write('alpha-4\n');
  await (await store.prepare({ id: 'fixture-epoch-4' })).commit();
  await a.write('alpha-5\n');
  await store.writeFile('five.txt', 'five');
  await store.prepare({ id: 'fixture-epoch-5' });
  process.kill(process.pid, 'SIGKILL');
}
await a.write('UNCOMMITTED');
await store.writeFile('never.txt', 'never');
setTimeout(() => process.kill(process.pid, 'SIGKILL'), 200);
