/**
 * The decision rows of coordinated steps (presumed abort): a step's deciding transaction inserts one
 * row per prepared epoch, (id, store_id, epoch), and commits; a prepared epoch whose row exists is
 * committed, one without a row is aborted (only for ids the coordinator of that table made). A store's rows for epochs below one it prepares later are
 * deleted by that later step: preparing fsyncs the store's journal, so the earlier COMMIT is durable
 * and nobody will ask for it again. Each store keeps at most its last committed step's row.
 *
 * Learning a decision (resolve, or a step whose COMMIT got no answer) takes the stores' advisory
 * locks shared: a deciding transaction holds them exclusive until it ends, also when its client's
 * connection was lost during COMMIT (the server still finishes it), so the row read after the lock
 * is granted is the final word.
 */
import { randomBytes } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { CpError } from '../errors.js';
import { STORE_LOCK_CLASS, storeKeys } from './locks.js';
import { SCHEMA_VERSION, sqlInt, sqlText, type TableRef } from './schema.js';

/**
 * The id a step prepares its epochs with: 32 random hex digits, '@', and the decisions table
 * (schema.table). resolve presumes abort only for ids of its own table: an epoch prepared by someone
 * else, or decided in another table (a coordinator with other options), is not its to decide.
 */
export function preparedId(t: TableRef): string {
  return `${randomBytes(16).toString('hex')}@${t.schema}.${t.table}`;
}

/** EINDOUBT unless `id` was made by preparedId for this table. */
export function checkOwnId(t: TableRef, q: PreparedRef): void {
  const suffix = `@${t.schema}.${t.table}`;
  if (/^[0-9a-f]{32}@/.test(q.id) && q.id.slice(32) === suffix) return;
  throw new CpError('EINDOUBT', `epoch ${q.epoch} of store ${q.storeId} was not prepared by a coordinator of table ${t.schema}.${t.table} ` +
    `(id ${JSON.stringify(q.id)}): decide it with the coordinator that prepared it`, { details: { id: q.id, epoch: q.epoch, storeId: q.storeId } });
}

export interface PreparedRef {
  id: string;
  storeId: string;
  epoch: number;
}

/**
 * The opening of a deciding transaction, in one round trip (one simple query of several statements:
 * they run in order, and the first that fails skips the rest): BEGIN; synchronous_commit raised to
 * on when the session has it off (the stores commit once COMMIT answers: it must be durable by then;
 * a stronger setting stays); the stores' locks, exclusive, one statement per key in key order; and
 * the transaction's id, which the decision checks is still the one (fn may not end the transaction).
 * The keys are int4 computed here and the class a constant: nothing of the caller's goes in the text.
 */
export function beginStepSql(storeIds: readonly string[]): string {
  return [
    'BEGIN',
    RAISE_SYNCHRONOUS_COMMIT,
    ...storeKeys(storeIds).map((k) => `SELECT pg_advisory_xact_lock(${STORE_LOCK_CLASS}, ${k})`),
    'SELECT txid_current()::text AS x',
  ].join('; ');
}

/** synchronous_commit on for this transaction when the session has it off. */
const RAISE_SYNCHRONOUS_COMMIT = "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'";

/** Open the step's transaction (beginStepSql); resolves with its id. */
export async function beginStep(c: PoolClient, storeIds: readonly string[]): Promise<string> {
  const results = (await c.query(beginStepSql(storeIds))) as unknown as { rows: { x?: string }[] }[];
  const x = results[results.length - 1]?.rows[0]?.x;
  if (typeof x !== 'string' || !/^[0-9]+$/.test(x)) throw new CpError('EIO', `the step's transaction did not answer its id (${JSON.stringify(x)})`);
  return x;
}

/** Take the stores' locks, in key order: exclusive (a deciding transaction) or shared (learning a decision). */
export async function lockStores(c: PoolClient, storeIds: readonly string[], mode: 'exclusive' | 'shared'): Promise<void> {
  const fn = mode === 'exclusive' ? 'pg_advisory_xact_lock' : 'pg_advisory_xact_lock_shared';
  for (const k of storeKeys(storeIds)) await c.query(`SELECT ${fn}($1, $2)`, [STORE_LOCK_CLASS, k]);
}

/** The SQLSTATE the decision's first statement raises when the transaction is not the step's any more. */
export const STEP_ENDED = 'CPF01';

/**
 * The end of the deciding transaction, in one round trip (one simple query; its values are literals,
 * schema.ts sqlText): a check that the transaction is still the step's (`xid`, beginStep's: fn may
 * have ended it with a COMMIT the guard could not see; then this raises STEP_ENDED and nothing of
 * the rest runs, also in a new transaction or none); synchronous_commit raised to on again (fn may
 * have lowered it); the rows of these prepared epochs; their stores' older rows deleted (epochs below
 * the one prepared now: preparing fsynced the journal, so their COMMIT is durable); `more` (the
 * positions' upserts); and COMMIT. The first statement that fails skips every one after it, COMMIT
 * too: an ERROR answer means nothing was committed, as for a COMMIT sent alone.
 */
export function decisionSql(t: TableRef, xid: string, prepared: readonly PreparedRef[], more: readonly string[] = []): string {
  if (!/^[0-9]+$/.test(xid)) throw new CpError('EINVAL', `not a transaction id: ${JSON.stringify(xid)}`);
  if (prepared.length === 0) throw new CpError('EINVAL', 'a decision needs a prepared epoch');
  return [
    `DO $cpfile$BEGIN IF txid_current() <> ${xid} THEN RAISE EXCEPTION 'the transaction is not the step''s any more' USING ERRCODE = '${STEP_ENDED}'; END IF; END$cpfile$`,
    RAISE_SYNCHRONOUS_COMMIT,
    `INSERT INTO ${t.sql} (id, store_id, epoch) VALUES ${prepared.map((p) => `(${sqlText(p.id)}, ${sqlText(p.storeId)}, ${sqlInt(p.epoch)})`).join(', ')}`,
    `DELETE FROM ${t.sql} d USING (VALUES ${prepared.map((p) => `(${sqlText(p.storeId)}, ${sqlInt(p.epoch)}::bigint)`).join(', ')}) AS p(store_id, epoch) ` +
      'WHERE d.store_id = p.store_id AND d.epoch < p.epoch',
    ...more,
    'COMMIT',
  ].join(';\n');
}

/** The table must be cpfile's decisions table of this version; it is never made here (a missing one says the options are wrong). */
async function verifyTable(c: PoolClient, t: TableRef): Promise<void> {
  const meta = ((await c.query('SELECT to_regclass($1) AS r', [t.metaSql])).rows[0] as { r: string | null }).r;
  const rec = meta === null ? undefined
    : (await c.query(`SELECT kind, version FROM ${t.metaSql} WHERE table_name = $1`, [t.table])).rows[0] as { kind: string; version: number } | undefined;
  const where = `${t.schema}.${t.table}`;
  if (!rec) throw new CpError('EINDOUBT', `there is no cpfile decisions table ${where}: are the coordinator's schema and table options the ones its steps used?`, { details: { table: where } });
  if (rec.kind !== 'decisions' || rec.version !== SCHEMA_VERSION) {
    throw new CpError('EFORMAT', `table ${where} holds cpfile ${rec.kind} of schema version ${rec.version}; this cpfile reads decisions of version ${SCHEMA_VERSION}`,
      { details: { table: where, kind: rec.kind, version: rec.version } });
  }
}

/**
 * The decision of these prepared epochs (one step's): wait for the stores' locks (shared), then read
 * their rows. All present: 'commit'; none: 'abort'. `lockTimeoutMs` bounds the wait (0: none).
 */
export async function learnDecision(pool: Pool, t: TableRef, prepared: readonly PreparedRef[], lockTimeoutMs: number): Promise<'commit' | 'abort'> {
  const c = await pool.connect();
  const onError = (): void => undefined;
  c.on('error', onError);
  let broken: Error | undefined;
  try {
    await c.query('BEGIN READ ONLY');
    if (lockTimeoutMs > 0) await c.query(`SET LOCAL lock_timeout = ${Math.ceil(lockTimeoutMs)}`);
    await verifyTable(c, t);
    await lockStores(c, prepared.map((p) => p.storeId), 'shared');
    const r = await c.query(`SELECT id, store_id, epoch FROM ${t.sql} WHERE id = ANY($1::text[])`, [prepared.map((p) => p.id)]);
    await c.query('COMMIT');
    return verdict(prepared, r.rows as { id: string; store_id: string; epoch: string }[]);
  } catch (e) {
    broken = e as Error;
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.removeListener('error', onError);
    c.release(broken instanceof CpError ? undefined : broken);
  }
}

function verdict(prepared: readonly PreparedRef[], rows: { id: string; store_id: string; epoch: string }[]): 'commit' | 'abort' {
  for (const r of rows) {
    const p = prepared.find((x) => x.id === r.id)!;
    if (r.store_id !== p.storeId || Number(r.epoch) !== p.epoch) {
      throw new CpError('EINDOUBT', `the decision row ${r.id} is of store ${r.store_id} epoch ${r.epoch}, not of store ${p.storeId} epoch ${p.epoch}`,
        { details: { id: r.id, epoch: p.epoch, storeId: p.storeId } });
    }
  }
  if (rows.length === prepared.length) return 'commit';
  if (rows.length === 0) return 'abort';
  throw new CpError('EINDOUBT', `only ${rows.length} of the ${prepared.length} decision rows of one step exist (${rows.map((r) => r.id).join(', ')}): the table was changed by hand`,
    { details: { ids: prepared.map((p) => p.id) } });
}
