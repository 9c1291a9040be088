// Child process for locking tests: opens the store in argv[2] with lockStale argv[3],
// commits 'child.txt', prints READY and then holds the store until stdin ends (then closes
// cleanly) or until it is killed.
import { openStore } from '../../lib/index.js';

const [dir, staleArg] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: hold-store <dir> [lockStale]\n');
  process.exit(2);
}
const store = await openStore(dir, { lockStale: Number(staleArg ?? 2000), segmentSize: 1 << 20 });
await store.writeFile('child.txt', 'from-child');
await store.check();
await store.writeFile('child-pending.txt', 'never-checked');
process.stdout.write('READY\n');
const keepAlive = setInterval(() => {}, 1000);
process.stdin.resume();
process.stdin.on('end', async () => {
  clearInterval(keepAlive);
  await store.close({ discard: true });
  process.exit(0);
});
