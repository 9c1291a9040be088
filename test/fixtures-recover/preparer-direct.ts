// Child for test/cp-recover.test.ts: an epoch in doubt whose appends went to the file itself (direct
// appends), not to the journal. Writes and checks a.bin (5000 bytes) and closes the store, so the file
// is on disk; reopens it (nothing applied in the background, directAppendMin 8000), appends 7000
// bytes and checks (epoch 3), appends 120000 bytes (past directAppendMin: direct), prepares epoch 4 as
// argv[3], prints READY <json> and waits to be killed. The JSON holds { pid, prepared: { id, epoch },
// sha: { "<epoch>": sha256 of a.bin }, size: { "<epoch>": its length } } for epochs 3 and 4.
import * as crypto from 'node:crypto';
import { openStore } from '../../lib/index.js';

const dir = process.argv[2];
const id = process.argv[3];
if (!dir || !id) {
  process.stderr.write('usage: preparer-direct <dir> <id>\n');
  process.exit(2);
}

const pattern = (tag: number, n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + tag * 7 + (i >> 8)) & 0xff;
  return b;
};
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

let store = await openStore(dir, { segmentSize: 1 << 20 });
let f = await store.open('a.bin', 'w+');
await f.write(pattern(1, 5000));
await store.check();
await store.close();

store = await openStore(dir, { segmentSize: 1 << 20, applyDelay: 3600_000, applyThreshold: 2 ** 40, directAppendMin: 8000 });
f = await store.open('a.bin', 'r+');
await f.write(pattern(2, 7000));
const e3 = await store.check();
const at3 = Buffer.concat([pattern(1, 5000), pattern(2, 7000)]);
const more = [pattern(3, 40000), pattern(4, 40000), pattern(5, 40000)];
for (const b of more) await f.write(b);
// Reading past the committed end waits until the flusher has written the direct bytes.
await f.read(Buffer.alloc(1), 0, 1, 13000);
const p = await store.prepare({ id });
const at4 = Buffer.concat([at3, ...more]);

process.stdout.write(`READY ${JSON.stringify({
  pid: process.pid, prepared: { id: p.id, epoch: p.epoch },
  sha: { [e3]: sha(at3), [p.epoch]: sha(at4) }, size: { [e3]: at3.length, [p.epoch]: at4.length },
})}\n`);
setInterval(() => {}, 1000);
