/**
 * Child process for test/names-edges.test.ts.
 *   many <dir> <count>      <count> files in one epoch (writeFile), check, close, reopen, verify; then
 *                           rewrite every one (writeFile), then append to every one (open 'a',
 *                           write, close), each epoch checked, closed, reopened and verified. Run
 *                           under a low `ulimit -n`: prints OK, or the error.
 */
import * as fs from 'node:fs';
import { openStore } from '../../lib/index.js';

const [mode, dir, arg] = process.argv.slice(2);
const say = (s: string): void => {
  fs.writeSync(1, s + '\n');
};

if (mode === 'many') {
  const count = Number(arg);
  const name = (i: number): string => `d${i % 8}/file-${i}`;
  const verify = async (want: (i: number) => string): Promise<void> => {
    const s = await openStore(dir);
    for (let i = 0; i < count; i++) {
      const got = (await s.readFile(name(i))).toString();
      if (got !== want(i)) throw new Error(`${name(i)} holds ${JSON.stringify(got)}, expected ${JSON.stringify(want(i))}`);
    }
    await s.close();
  };
  try {
    let s = await openStore(dir);
    for (let i = 0; i < count; i++) await s.writeFile(name(i), `one ${i}`);
    await s.check();
    await s.close();
    await verify((i) => `one ${i}`);
    s = await openStore(dir);
    for (let i = 0; i < count; i++) await s.writeFile(name(i), `two ${i}`);
    await s.check();
    await s.close();
    await verify((i) => `two ${i}`);
    s = await openStore(dir);
    for (let i = 0; i < count; i++) {
      const f = await s.open(name(i), 'a');
      await f.write(` +${i}`);
      await f.close();
    }
    // Reads of the pending appends (each reopens its file's base) hold no descriptor either.
    for (let i = 0; i < count; i += 97) {
      const got = (await s.readFile(name(i))).toString();
      if (got !== `two ${i} +${i}`) throw new Error(`pending read of ${name(i)}: ${got}`);
    }
    await s.check();
    await s.close();
    await verify((i) => `two ${i} +${i}`);
    say('OK');
  } catch (e) {
    say(`FAILED ${(e as { code?: string }).code ?? ''} ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
