// Child process for locking tests: opens the store in argv[2] with lockStale argv[3] (and
// directAppendMin argv[4], if given), commits 'child.txt', prints READY and then holds the store until
// stdin ends (then closes cleanly) or until it is killed. If openStore fails it prints
// `OPENERR <code> <message>` and exits 3.
//
// While it holds the store it runs commands from stdin, one per line, one reply line each:
//   put <name> <marker> <bytes>   appends <bytes> bytes of <marker> repeated to <name> (through a handle
//                                 kept open), then check():
//                                 `ACK <name> <epoch>` once acknowledged, or `ERR <name> <code> <message>`
import { createInterface } from 'node:readline';
import { openStore } from '../../lib/index.js';

const [dir, staleArg, directArg] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: hold-store <dir> [lockStale] [directAppendMin]\n');
  process.exit(2);
}
let store: Awaited<ReturnType<typeof openStore>>;
try {
  store = await openStore(dir, {
    lockStale: Number(staleArg ?? 2000), segmentSize: 1 << 20,
    ...(directArg ? { directAppendMin: Number(directArg) } : {}),
  });
} catch (e) {
  const err = e as { code?: string; message?: string };
  process.stdout.write(`OPENERR ${err.code ?? 'unknown'} ${String(err.message).replace(/\n/g, ' ')}\n`);
  process.exit(3);
}
await store.writeFile('child.txt', 'from-child');
await store.check();
await store.writeFile('child-pending.txt', 'never-checked');
process.stdout.write('READY\n');

// Handles stay open across checks: once a file is applied, big appends to it go to the file directly.
const handles = new Map<string, Awaited<ReturnType<typeof store.open>>>();
async function put(name: string, marker: string, bytes: number): Promise<string> {
  try {
    const data = Buffer.alloc(bytes, marker);
    let f = handles.get(name);
    if (!f) handles.set(name, (f = await store.open(name, 'a')));
    await f.write(data);
    const epoch = await store.check();
    return `ACK ${name} ${epoch}`;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return `ERR ${name} ${err.code ?? 'unknown'} ${String(err.message).replace(/\n/g, ' ')}`;
  }
}

const keepAlive = setInterval(() => {}, 1000);
let queue: Promise<void> = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [cmd, name, marker, bytes] = line.trim().split(' ');
  queue = queue.then(async () => {
    const reply = cmd === 'put' ? await put(name, marker, Number(bytes)) : `ERR ${name} EUSAGE unknown command ${cmd}`;
    process.stdout.write(`${reply}\n`);
  });
});
lines.on('close', () => {
  queue = queue.then(async () => {
    clearInterval(keepAlive);
    await store.close({ discard: true });
    process.exit(0);
  });
});
