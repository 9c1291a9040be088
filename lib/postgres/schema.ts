/**
 * The tables of cpfile/postgres: where they live (schema and table options), made on first use, and
 * the schema-version record that keeps a later cpfile from misreading them.
 *
 * Every table is recorded in `<schema>.cpfile_schema` (table_name, kind, version). First use, in one
 * transaction under an advisory lock on the schema's name (so that two processes racing at first use
 * serialise instead of failing): make the schema if missing, the record table, then the table and
 * its record. A table recorded with another kind or version, a table of that name that cpfile did not
 * make, or a recorded table that is gone is EFORMAT: nothing is changed, nothing presumed.
 */
import type { Pool, PoolClient } from 'pg';
import { CpError } from '../errors.js';
import { SCHEMA_LOCK_CLASS, hash32 } from './locks.js';

/** The version of the tables' layout this code reads and writes. */
export const SCHEMA_VERSION = 1;

export type TableKind = 'decisions' | 'positions';

export const DEFAULT_TABLES: Record<TableKind, string> = { decisions: 'cpfile_decisions', positions: 'cpfile_positions' };

export interface TableOptions {
  /** The PostgreSQL schema holding the tables (default 'public'); made when missing. */
  schema?: string;
  /** The table's name (default cpfile_decisions for the coordinator, cpfile_positions for the hooks). */
  table?: string;
}

/** A table, by schema and name, quoted for SQL. */
export interface TableRef {
  kind: TableKind;
  schema: string;
  table: string;
  /** "schema"."table" */
  sql: string;
  /** "schema".cpfile_schema */
  metaSql: string;
}

/** A quoted identifier ("a""b" for a"b). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A string as an SQL text literal for a statement's text (a multi-statement simple query takes no
 * parameters). Printable ASCII without a quote or backslash goes as it is; anything else as its
 * UTF-8 bytes in hex, decoded by the server: the text stays ASCII, so it reads the same whatever
 * the session's standard_conforming_strings and client_encoding (a multibyte encoding cannot take
 * a quote into a character), and a NUL is refused by the server as it is for a parameter.
 */
export function sqlText(s: string): string {
  if (/^[\x20-\x26\x28-\x5b\x5d-\x7e]*$/.test(s)) return `'${s}'`;
  return `convert_from(decode('${Buffer.from(s, 'utf8').toString('hex')}', 'hex'), 'UTF8')`;
}

/** A safe integer as an SQL literal (EINVAL otherwise: it goes into a statement's text). */
export function sqlInt(n: number): string {
  if (!Number.isSafeInteger(n)) throw new CpError('EINVAL', `not a safe integer: ${String(n)}`);
  return String(n);
}

function checkName(what: string, v: unknown): string {
  // (no control characters: the name goes into the ids of prepared epochs too)
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) > 63 || /[\x00-\x1f\x7f]/.test(v)) {
    throw new CpError('EINVAL', `${what} must be a non-empty string of at most 63 bytes without control characters, got ${typeof v === 'string' ? JSON.stringify(v) : typeof v}`);
  }
  return v;
}

/** Validate the options (EINVAL) and name the table. */
export function tableRef(kind: TableKind, options: TableOptions | undefined): TableRef {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw new CpError('EINVAL', 'options must be an object');
  const schema = checkName('schema', options?.schema ?? 'public');
  const table = checkName('table', options?.table ?? DEFAULT_TABLES[kind]);
  if (table === 'cpfile_schema') throw new CpError('EINVAL', 'table "cpfile_schema" is the name of cpfile\'s own record of its tables');
  return { kind, schema, table, sql: `${quoteIdent(schema)}.${quoteIdent(table)}`, metaSql: `${quoteIdent(schema)}.cpfile_schema` };
}

function ddl(t: TableRef): string[] {
  if (t.kind === 'decisions') {
    return [
      `CREATE TABLE ${t.sql} (id text PRIMARY KEY, store_id text NOT NULL, epoch bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
      `CREATE INDEX ${quoteIdent(`${t.table}_store`)} ON ${t.sql} (store_id, epoch)`,
    ];
  }
  return [
    `CREATE TABLE ${t.sql} (store_key text NOT NULL, name text NOT NULL, position bigint NOT NULL, ` +
      `state text NOT NULL CHECK (state IN ('open', 'closed')), userdata jsonb, updated_at timestamptz NOT NULL DEFAULT now(), ` +
      'PRIMARY KEY (store_key, name))',
  ];
}

/** Tables known to exist, per pool: the promise of their first use. */
const made = new WeakMap<object, Map<string, Promise<void>>>();

/** Make the table on first use through this pool (once per pool and table; a failure is retried at the next use). */
export function ensureTable(pool: Pool, t: TableRef): Promise<void> {
  let tables = made.get(pool);
  if (!tables) made.set(pool, (tables = new Map()));
  const key = `${t.kind} ${t.sql}`;
  let p = tables.get(key);
  if (!p) {
    p = makeTable(pool, t);
    tables.set(key, p);
    p.catch(() => tables!.delete(key));
  }
  return p;
}

async function makeTable(pool: Pool, t: TableRef): Promise<void> {
  const c = await pool.connect();
  const onError = (): void => undefined;   // a dropped connection rejects the query under way
  c.on('error', onError);
  let broken: unknown;
  try {
    await c.query('BEGIN');
    // per schema, not per table: the schema and its cpfile_schema are made by the first of its tables
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [SCHEMA_LOCK_CLASS, hash32(t.schema)]);
    await makeIn(c, t);
    await c.query('COMMIT');
  } catch (e) {
    broken = e;
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.removeListener('error', onError);
    c.release(broken instanceof CpError ? undefined : (broken as Error | undefined));
  }
}

async function makeIn(c: PoolClient, t: TableRef): Promise<void> {
  const ns = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [t.schema]);
  if (!ns.rowCount) await c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
  await c.query(`CREATE TABLE IF NOT EXISTS ${t.metaSql} (table_name text PRIMARY KEY, kind text NOT NULL, version integer NOT NULL, ` +
    'created_at timestamptz NOT NULL DEFAULT now())');
  const rec = (await c.query(`SELECT kind, version FROM ${t.metaSql} WHERE table_name = $1`, [t.table])).rows[0] as { kind: string; version: number } | undefined;
  const exists = ((await c.query('SELECT to_regclass($1) AS r', [t.sql])).rows[0] as { r: string | null }).r !== null;
  const where = `${t.schema}.${t.table}`;
  if (rec) {
    if (rec.kind !== t.kind || rec.version !== SCHEMA_VERSION) {
      throw new CpError('EFORMAT', `table ${where} holds cpfile ${rec.kind} of schema version ${rec.version}; this cpfile uses ${t.kind} of version ${SCHEMA_VERSION}`,
        { details: { table: where, kind: rec.kind, version: rec.version, expected: { kind: t.kind, version: SCHEMA_VERSION } } });
    }
    if (!exists) {
      throw new CpError('EFORMAT', `table ${where} is recorded in ${t.schema}.cpfile_schema but is gone (dropped?); delete its record there to let cpfile make it again`,
        { details: { table: where } });
    }
    return;
  }
  if (exists) {
    throw new CpError('EFORMAT', `table ${where} exists but was not made by cpfile (no record in ${t.schema}.cpfile_schema); pick another table name`, { details: { table: where } });
  }
  for (const s of ddl(t)) await c.query(s);
  await c.query(`INSERT INTO ${t.metaSql} (table_name, kind, version) VALUES ($1, $2, $3)`, [t.table, t.kind, SCHEMA_VERSION]);
}
