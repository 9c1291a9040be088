/**
 * Child process for test/streams.test.ts: checks a known content through a write stream, then
 * streams more between two checks forever; the parent SIGKILLs it once STREAMING is printed.
 *   name:   store.createWriteStream('big.bin') (flags 'w': truncates, then rewrites) after the check
 *   handle: a handle open 'a' at two checks appends through f.createWriteStream (direct appends)
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openStore } from '../../lib/index.js';

const [mode, dir] = process.argv.slice(2);
const MiB = 2 ** 20;

/** `n` chunks of 64 KiB (Infinity: endless), chunk i filled with (i * 13 + seed) & 0xff. */
function source(n: number, seed: number, onChunk?: (i: number) => void): Readable {
  let i = 0;
  return new Readable({
    read() {
      if (i >= n) return void this.push(null);
      const b = Buffer.alloc(64 * 1024, (i * 13 + seed) & 0xff);
      b.writeUInt32BE(i, 0);
      onChunk?.(i);
      i++;
      this.push(b);
    },
  });
}

const store = await openStore(dir, { segmentSize: 8 * MiB });
const say = (s: string): void => void process.stdout.write(`${s}\n`);
// STREAMING once 32 MiB went in (and, for 'handle', once direct appends reached the file, or at 256 MiB).
let said = false;
const streaming = (i: number): void => {
  if (said || i < 512) return;
  if (mode === 'handle' && store.stats().bytesDirect === 0 && i < 4096) return;
  said = true;
  say(`STREAMING ${JSON.stringify(store.stats())}`);
};
if (mode === 'name') {
  await pipeline(source(64, 1), store.createWriteStream('big.bin'));
  const epoch = await store.check();
  say(`CHECKED ${epoch} ${createHash('sha256').update(await store.readFile('big.bin')).digest('hex')}`);
  await pipeline(source(Infinity, 2, streaming), store.createWriteStream('big.bin'));
} else if (mode === 'handle') {
  const f = await store.open('log.bin', 'a');
  await pipeline(source(32, 3), f.createWriteStream({ autoClose: false }));
  await store.check();
  const epoch = await store.check();
  say(`CHECKED ${epoch} ${createHash('sha256').update(await store.readFile('log.bin')).digest('hex')}`);
  await pipeline(source(Infinity, 4, streaming), f.createWriteStream({ autoClose: false }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
say('END');
