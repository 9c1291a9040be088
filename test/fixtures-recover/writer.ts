// Child writer for test/cp-recover.test.ts. Opens the store in argv[2] (small segments, committed
// epochs kept in the journal: nothing is applied in the background), writes and checks three epochs,
// verifying every file through its handles after each check, then starts a fourth epoch that it never
// checks, makes sure those records reached the journal file, prints READY <json> and waits to be killed.
// The JSON holds { pid, epochs: { "<n>": { name: hex } } }: the files' contents at each checked epoch.
import { openStore } from '../../lib/index.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: writer <dir>\n');
  process.exit(2);
}

const pattern = (tag: number, n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + tag * 17) & 0xff;
  return b;
};

const store = await openStore(dir, { segmentSize: 1 << 20, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
const model = new Map<string, Buffer>();
const epochs: Record<string, Record<string, string>> = {};

const a = await store.open('a.txt', 'w+');
const b = await store.open('data/b.bin', 'w+');
const append = (name: string, data: Buffer): void => {
  model.set(name, Buffer.concat([model.get(name) ?? Buffer.alloc(0), data]));
};
const writeAt = (name: string, data: Buffer, at: number): void => {
  const old = model.get(name) ?? Buffer.alloc(0);
  const out = Buffer.alloc(Math.max(old.length, at + data.length));
  old.copy(out);
  data.copy(out, at);
  model.set(name, out);
};

async function checkEpoch(want: number): Promise<void> {
  const e = await store.check();
  if (e !== want) throw new Error(`check() returned epoch ${e}, expected ${want}`);
  // Verify what the store serves against the model.
  for (const [name, h] of [['a.txt', a], ['data/b.bin', b]] as const) {
    const st = await h.stat();
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await h.read(buf, 0, st.size, 0);
    if (bytesRead !== st.size || !buf.equals(model.get(name)!)) throw new Error(`${name} differs from the model at epoch ${e}`);
  }
  epochs[String(e)] = Object.fromEntries([...model].map(([k, v]) => [k, v.toString('hex')]));
}

// epoch 1
await a.write('alpha-1\n');
append('a.txt', Buffer.from('alpha-1\n'));
await b.write(pattern(1, 3000), 0, 3000, 0);
writeAt('data/b.bin', pattern(1, 3000), 0);
await checkEpoch(1);

// epoch 2
await a.write('alpha-2\n');
append('a.txt', Buffer.from('alpha-2\n'));
await b.write(pattern(2, 500), 0, 500, 1000);
writeAt('data/b.bin', pattern(2, 500), 1000);
await store.writeFile('c.txt', 'c-epoch-2');
model.set('c.txt', Buffer.from('c-epoch-2'));
await checkEpoch(2);

// epoch 3
await a.write('alpha-3\n');
append('a.txt', Buffer.from('alpha-3\n'));
await b.truncate(2500);
model.set('data/b.bin', model.get('data/b.bin')!.subarray(0, 2500));
await store.rename('c.txt', 'c2.txt');
model.set('c2.txt', model.get('c.txt')!);
model.delete('c.txt');
await checkEpoch(3);

// epoch 4: never checked
await b.write(pattern(4, 1000), 0, 1000, 0);
await store.unlink('c2.txt');
await store.writeFile('d.txt', 'never-checked');
await a.write('alpha-4-uncommitted\n');
// Reading pending data waits until it is written to the journal file (the page cache survives SIGKILL).
const probe = Buffer.alloc(64);
await a.read(probe, 0, 64, 0);

process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, epochs })}\n`);
setInterval(() => {}, 1000);
