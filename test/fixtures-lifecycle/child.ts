/**
 * Child process for test/lifecycle.test.ts: does one scenario and then simply returns from its
 * top-level code. The test measures whether the process exits by itself.
 */
import { openStore } from '../../lib/index.js';
import { cp_open, cp_write, cp_close } from '../../lib/compat.js';

const [mode, dir] = process.argv.slice(2);

if (mode === 'close') {
  const s = await openStore(dir);
  const f = await s.open('out.txt', 'w');
  await f.write('closed properly\n');
  await f.close();
  await s.close();
} else if (mode === 'no-close') {
  const s = await openStore(dir);
  const f = await s.open('out.txt', 'w');
  await f.write('checked\n');
  await s.check();
  await f.write('never checked\n');
} else if (mode === 'check-in-flight') {
  const s = await openStore(dir);
  const f = await s.open('out.txt', 'w');
  await f.write('x'.repeat(1 << 20));
  // Not awaited: the process must live until the commit is durable.
  void s.check().then((e) => process.stdout.write(`CHECKED ${e}\n`));
} else if (mode === 'two-stores') {
  const a = await openStore(`${dir}/a`);
  const b = await openStore(`${dir}/b`);
  await a.writeFile('f', 'A');
  await b.writeFile('f', 'B');
  await Promise.all([a.close(), b.close()]);
} else if (mode === 'compat') {
  process.chdir(dir);
  const f = await cp_open('c.txt', 'w');
  if (!f) throw new Error('cp_open failed');
  await cp_write(f, Buffer.from('compat'), 1, 6);
  await cp_close(f);
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write('END\n');
