// cpfile demo (npm run demo): a writer process keeps a small bank in two files - an append-only ledger
// and a fixed-width balance index rewritten in place - and makes an atomic epoch of both with check()
// after every batch of transfers. The demo SIGKILLs the writer in the middle of an epoch, opens the
// store (which runs recovery) and verifies that both files are exactly as they were at the last check.
//
//   node dist/tools/demo.js            run the demo
//   node dist/tools/demo.js writer DIR (internal) the writer child

import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';

const LEDGER = 'accounts.ledger';
const INDEX = 'accounts.idx';
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave'];
const OPENING = 100;
const CHECKPOINTS = 3; // epochs the writer completes with check(); epoch 4 is killed half-way
const PER_BATCH = 4;
const REC = 16; // bytes per index record

interface Transfer { from: number; to: number; amount: number }

/** The deterministic bank: ledger text, index bytes and balances after `batches` batches. */
function bank(batches: number): { ledger: string; index: string; balances: number[]; lines: string[] } {
  const balances = ACCOUNTS.map(() => OPENING);
  const lines = ACCOUNTS.map((a, i) => ledgerLine(i + 1, `open ${a}`, OPENING));
  let seq = ACCOUNTS.length;
  let x = 12345;
  const rnd = (n: number): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  for (let b = 2; b <= batches; b++) {
    for (const t of transfersOf(rnd, balances)) {
      balances[t.from] -= t.amount;
      balances[t.to] += t.amount;
      lines.push(ledgerLine(++seq, `${ACCOUNTS[t.from]!.padEnd(5)} -> ${ACCOUNTS[t.to]!.padEnd(5)}`, t.amount));
    }
  }
  return { ledger: lines.join(''), index: ACCOUNTS.map((_, i) => indexRecord(i, balances[i]!)).join(''), balances, lines };
}

function transfersOf(rnd: (n: number) => number, balances: readonly number[]): Transfer[] {
  const b = [...balances];
  const out: Transfer[] = [];
  while (out.length < PER_BATCH) {
    const from = rnd(ACCOUNTS.length);
    const to = (from + 1 + rnd(ACCOUNTS.length - 1)) % ACCOUNTS.length;
    const amount = 5 * (1 + rnd(8));
    if (b[from]! < amount) continue;
    b[from] -= amount;
    b[to] += amount;
    out.push({ from, to, amount });
  }
  return out;
}

function ledgerLine(seq: number, what: string, amount: number): string {
  return `#${String(seq).padStart(3, '0')} ${what.padEnd(14)} ${String(amount).padStart(4)}\n`;
}

function indexRecord(i: number, balance: number): string {
  return `${ACCOUNTS[i]!.padEnd(8)}${String(balance).padStart(7)}\n`; // 16 bytes
}

// ------------------------------------------------------------------------------------------------
// The writer child

async function writer(dir: string): Promise<void> {
  const say = (s: string): void => { process.stdout.write(s + '\n'); };
  const store = await openStore(dir);
  const ledger = await store.open(LEDGER, 'a');
  const index = await store.open(INDEX, 'w+');
  let done = bank(1);
  await ledger.write(done.ledger);
  await index.write(done.index, 0);
  let epoch = await store.check();
  say(`checkpoint ${epoch}: opened ${ACCOUNTS.length} accounts with ${OPENING} each`);
  for (let batch = 2; batch <= CHECKPOINTS + 1; batch++) {
    const next = bank(batch);
    for (const line of next.lines.slice(done.lines.length)) await ledger.write(line);
    for (let i = 0; i < ACCOUNTS.length; i++) {
      if (next.balances[i] !== done.balances[i]) await index.write(indexRecord(i, next.balances[i]!), i * REC);
    }
    const moved = next.lines.length - done.lines.length;
    done = next;
    if (batch <= CHECKPOINTS) {
      epoch = await store.check();
      say(`checkpoint ${epoch}: ${moved} transfers, ledger ${next.ledger.length} bytes, balances ${next.balances.join('/')}`);
    } else {
      say(`epoch ${epoch + 1} in progress: ${moved} more transfers written to both files, no check() yet`);
    }
  }
  say('READY');
  setInterval(() => undefined, 1000); // wait for SIGKILL
}

// ------------------------------------------------------------------------------------------------
// The demo

async function demo(): Promise<number> {
  const log = (s = ''): void => { console.log(s); };
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'cpfile-demo-'));
  let ok = true;
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  const verdict = (good: boolean, what: string): void => {
    if (!good) ok = false;
    log(`  ${good ? 'OK    ' : 'FAILED'} ${what}`);
  };
  try {
    log('cpfile demo: two files, atomic epochs, a crash in the middle of an epoch');
    log(`store directory: ${dir}`);
    log();
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'writer', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<NodeJS.Signals | number | null>((r) => child.on('close', (code, sig) => r(sig ?? code)));
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (s: string) => {
        buf += s;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'READY') resolve();
          else log(`  writer (pid ${child.pid}) | ${line}`);
        }
      });
      child.on('close', () => reject(new Error('the writer exited before reaching the crash point')));
    });
    child.kill('SIGKILL');
    const how = await exited;
    log(`demo: killed the writer mid-epoch (${String(how)}); its last epoch was never checked`);
    const raw = await Promise.all([LEDGER, INDEX].map(async (n) => `${n} ${await fsp.stat(path.join(dir, n)).then((s) => `${s.size} B`, () => 'absent')}`));
    log(`files on disk before recovery: ${raw.join(', ')} (committed data may still sit in the journal, .cpfile/)`);
    log();

    log('demo: openStore() - recovery runs here');
    store = await openStore(dir);
    const rec = store.recovery as unknown as Record<string, unknown>;
    const num = (k: string): string => (typeof rec[k] === 'number' ? String(rec[k]) : '?');
    const touched = Array.isArray(rec.filesTouched) ? ` into ${rec.filesTouched.join(', ')}` : '';
    log(`  replayed ${num('replayedEpochs')} committed epoch(s): ${num('replayedRecords')} journal records, ${num('replayedBytes')} bytes${touched}`);
    log(`  discarded ${num('discardedRecords')} records / ${num('discardedBytes')} bytes that belonged to no committed epoch; torn tail: ${rec.tornTail === true ? 'yes' : 'no'}`);
    if (Array.isArray(rec.entries) && rec.entries.length > 0) {
      const ents = (rec.entries as Array<{ name?: unknown; position?: unknown; state?: unknown }>).map((e) => `${String(e.name)} ${String(e.state)} @${String(e.position)}`);
      log(`  entries at the checkpoint: ${ents.join(', ')}`);
    }
    log(`  store.epoch = ${store.epoch} (the last durable checkpoint)`);
    const want = bank(CHECKPOINTS);
    const ledgerNow = Buffer.from(await store.readFile(LEDGER)).toString('utf8');
    const indexNow = Buffer.from(await store.readFile(INDEX)).toString('utf8');
    log();
    log(`${LEDGER} after recovery (${ledgerNow.length} bytes):`);
    for (const l of ledgerNow.split('\n').filter(Boolean)) log(`    ${l}`);
    log(`${INDEX} after recovery: ${indexNow.split('\n').filter(Boolean).map((l) => l.replace(/\s+/g, ' ').trim()).join(' | ')}`);
    log();
    log('verification against checkpoint ' + CHECKPOINTS + ':');
    verdict(store.epoch === CHECKPOINTS, `store.epoch is ${CHECKPOINTS}`);
    verdict(ledgerNow === want.ledger, `${LEDGER} equals its checkpoint-${CHECKPOINTS} content (${want.lines.length} lines), the killed epoch's lines are gone`);
    verdict(indexNow === want.index, `${INDEX} equals its checkpoint-${CHECKPOINTS} content (${want.balances.join('/')})`);
    const replayed = ACCOUNTS.map(() => 0);
    for (const l of ledgerNow.split('\n').filter(Boolean)) {
      const m = /^#\d+ (?:open +(\w+)|(\w+) +-> +(\w+)) +(\d+)$/.exec(l);
      if (!m) { replayed[0] = NaN; continue; }
      const amount = Number(m[4]);
      if (m[1]) replayed[ACCOUNTS.indexOf(m[1])] += amount;
      else { replayed[ACCOUNTS.indexOf(m[2]!)] -= amount; replayed[ACCOUNTS.indexOf(m[3]!)] += amount; }
    }
    const indexed = indexNow.split('\n').filter(Boolean).map((l) => Number(l.slice(8)));
    verdict(replayed.join() === indexed.join() && replayed.reduce((s, v) => s + v, 0) === OPENING * ACCOUNTS.length,
      `ledger and index agree (total ${OPENING * ACCOUNTS.length}): the two files moved together`);
    const f = await store.open(LEDGER, 'a');
    verdict(f.resumed && f.tell() === want.ledger.length,
      `${LEDGER} reopens resumed=${f.resumed} at position ${f.tell()}, where the writer stood at the checkpoint`);
    await f.close();
    await store.close();
    store = undefined;
    const disk = await fsp.readFile(path.join(dir, LEDGER), 'utf8');
    verdict(disk === want.ledger, 'after store.close() the plain file on disk holds the same ledger');
  } catch (e) {
    ok = false;
    log(`FAILED: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  } finally {
    if (store) await store.close().catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  }
  log();
  log(ok ? 'RESULT: OK - the crash cost exactly the unfinished epoch, nothing more, nothing less.' : 'RESULT: FAILED');
  return ok ? 0 : 1;
}

if (process.argv[2] === 'writer') {
  await writer(process.argv[3]!);
} else {
  process.exitCode = await demo();
}
