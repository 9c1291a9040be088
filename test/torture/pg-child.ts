/**
 * Child process of the PostgreSQL kill loop (pgkill.ts) and of test/postgres-kills.test.ts. Usage:
 * node pg-child.js '<json PgChildPlan>' (pg-steps.ts).
 *
 * mode 'steps': opens every store of the lane (resolveInDoubt: coord.resolve), prints READY <store
 *   ids>, then
 *   runs the coordinated steps from..from+count-1 (pg-steps.ts says what each writes), printing
 *   BEGIN n before a step and, once check settled: ACK n <epochs> (resolved), ABORTED n <stage>
 *   (EABORTED), or INDOUBT n (EINDOUBT; then retryInDoubt() until it decides: SETTLED n commit|abort),
 *   ERROR n <code> <message> for anything else. With plan.kill it SIGKILLs itself at that stage of
 *   that step (pg-steps.ts KillStage). Exits with DONE after the last step.
 * mode 'reopen': opens (recovers) every store with resolveInDoubt: coord.resolve, printing ASK i <id>
 *   and ASKED i <id> <decision>; with plan.resolveKill it SIGKILLs itself when asked, once it has the
 *   answer, or resolveDelayMs after handing the answer to recovery. Prints REOPENED i <epoch> per
 *   store and exits with ALL-REOPENED (without closing the stores: like a crash after recovery).
 * Every line is awaited before the child goes on (child-out.ts), so what the parent reads is what
 * the child had been told before it died.
 */
import pg from 'pg';
import { openStore, nodeIO, type CpFile, type IO, type PreparedEpoch, type ResolveInDoubt, type Store } from '../../lib/index.js';
import { postgresCoordinator, postgresHooks } from '../../lib/postgres/index.js';
import { say, sayAndExit } from '../helpers/child-out.js';
import { STEPS_TABLE, FILES, stepData, stepFails, type PgChildPlan } from './pg-steps.js';

const plan = JSON.parse(process.argv[2] ?? '{}') as PgChildPlan;
const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  for (;;) { /* never returns */ }
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// a safety net only: the parent kills us long before this
setTimeout(() => void sayAndExit('TIMEOUT', 4), 90_000).unref();
process.on('unhandledRejection', (e) => void sayAndExit(`FAIL unhandled rejection: ${(e as Error)?.stack?.split('\n').slice(0, 4).join(' | ') ?? String(e)}`, 3));

const pool = new pg.Pool({ ...plan.conn, max: 4 });
pool.on('error', () => undefined);   // idle clients the server drops (it is stopped now and then)
const coord = postgresCoordinator(pool);

const MUTATING = new Set(['write', 'fsync', 'fdatasync', 'ftruncate', 'rename', 'unlink', 'mkdir', 'fsyncDir']);
/** Armed (store-commit), the IO of the last store SIGKILLs the process at its next mutating call, before or after it. */
const ioKill = { armed: false };
function killerIO(after: boolean): IO {
  const io: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(nodeIO)) {
    const call = f as (...a: unknown[]) => Promise<unknown>;
    io[k] = !MUTATING.has(k) ? call : async (...args: unknown[]) => {
      const fire = ioKill.armed;
      if (fire && !after) die();
      const r = await call(...args);
      if (fire) die();
      return r;
    };
  }
  return io as unknown as IO;
}

async function openAll(resolve: (i: number) => ResolveInDoubt): Promise<Store[]> {
  const stores: Store[] = [];
  for (const [i, dir] of plan.dirs.entries()) {
    // (a store given an IO runs its flusher inline)
    const io = plan.kill?.stage === 'store-commit' && i === plan.dirs.length - 1 ? { io: killerIO(plan.kill.after === true) } : {};
    const s = await openStore(dir, { inline: plan.inline, ...io, resolveInDoubt: resolve(i), ...(plan.hooks[i] ? { hooks: postgresHooks(pool) } : {}) });
    stores.push(s);
    if (plan.mode === 'reopen') await say(`REOPENED ${i} ${s.epoch}`);
  }
  return stores;
}

async function steps(): Promise<void> {
  const stores = await openAll(() => coord.resolve);
  const logs: CpFile[] = [];
  for (const s of stores) logs.push(await s.open('log', 'a+'));
  await say(`READY ${stores.map((x) => x.id).join(',')}`);
  let current = 0;
  const kill = plan.kill;
  const killing = (stage: string): boolean => kill !== undefined && kill.stage === stage && kill.step === current;
  // the kill points: wrap each store's prepare (and the prepared epoch's commit), and the pool's COMMIT
  let prepared = 0;
  for (const [i, s] of stores.entries()) {
    const prepare = s.prepare.bind(s);
    s.prepare = async (...a: Parameters<Store['prepare']>): Promise<PreparedEpoch> => {
      const p = await prepare(...a);
      if (++prepared === stores.length && killing('prepared')) die();
      const commit = p.commit.bind(p);
      if (killing('pg-committed')) (p as { commit: unknown }).commit = die;
      else if (killing('store-commit') && i === stores.length - 1) {
        (p as { commit: unknown }).commit = (o?: { sync?: boolean; hooks?: boolean }) => {
          ioKill.armed = true;
          return commit(o);
        };
      } else if (killing('store-committed') && i === 0) {
        (p as { commit: unknown }).commit = (o?: { sync?: boolean; hooks?: boolean }) => commit(o).then(die);
      }
      return p;
    };
  }
  const isDecision = (q: unknown): boolean => typeof q === 'string' && q.startsWith('DO $cpfile$') && q.endsWith('\nCOMMIT');
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  (pool as { connect: unknown }).connect = async () => {
    const c = await connect();
    const q = c.query.bind(c) as (...a: unknown[]) => unknown;
    (c as { query: unknown }).query = (...a: unknown[]) => {
      const r = q(...a);
      // the decision goes as one query string ending in COMMIT (decisionSql), not as a bare 'COMMIT'
      if (isDecision(a[0]) && prepared === stores.length && killing('commit-sent')) setTimeout(die, kill!.delayMs);
      return r;
    };
    return c;
  };

  for (let n = plan.from; n < plan.from + plan.count; n++) {
    current = n;
    prepared = 0;
    await say(`BEGIN ${n}`);
    try {
      const epochs = await coord.check(stores, async (client) => {
        for (const [i, s] of stores.entries()) {
          await logs[i]!.write(`${n}\n`);
          await s.writeFile(`f-${n % FILES}`, stepData(plan.seed, n, i));
        }
        await client.query(`INSERT INTO ${STEPS_TABLE} (lane, n, store) SELECT $1, $2, s FROM generate_series(0, $3 - 1) s`, [plan.lane, n, stores.length]);
        if (killing('fn')) die();
        if (stepFails(plan.seed, n, plan.failRate)) throw new Error(`the app's own error in step ${n}`);
      });
      await say(`ACK ${n} ${epochs.join(',')}`);
    } catch (e) {
      const err = e as { code?: string; message?: string; details?: { stage?: string } };
      if (err.code === 'EABORTED') {
        await say(`ABORTED ${n} ${err.details?.stage ?? '?'}`);
        if (err.details?.stage === 'begin') await sleep(30);   // the server is down: do not spin
      } else if (err.code === 'EINDOUBT') {
        await say(`INDOUBT ${n}`);
        for (;;) {
          const r = await coord.retryInDoubt();
          if (r.committed.length || r.aborted.length) {
            await say(`SETTLED ${n} ${r.committed.length ? 'commit' : 'abort'}`);
            break;
          }
          await sleep(100);
        }
      } else {
        await say(`ERROR ${n} ${err.code ?? '-'} ${(err.message ?? String(e)).split('\n')[0]}`);
      }
    }
  }
  await sayAndExit('DONE', 0);
}

async function reopen(): Promise<void> {
  await openAll((i) => async (q) => {
    await say(`ASK ${i} ${q.id}`);
    if (plan.resolveKill === 'ask') die();
    const d = await coord.resolve(q);
    await say(`ASKED ${i} ${q.id} ${d}`);
    if (plan.resolveKill === 'answered') die();
    if (plan.resolveKill === 'recovering') setTimeout(die, plan.resolveDelayMs ?? 0);
    return d;
  });
  await sayAndExit('ALL-REOPENED', 0);
}

try {
  if (plan.mode === 'steps') await steps();
  else await reopen();
} catch (e) {
  await sayAndExit(`FAIL ${(e as { code?: string }).code ?? ''} ${((e as Error)?.stack ?? String(e)).split('\n').slice(0, 4).join(' | ')}`, 3);
}
