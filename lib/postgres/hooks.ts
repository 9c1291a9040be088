/**
 * postgresHooks: the seed's checkpoint store (cp_hooks) as a PostgreSQL table, one row per file of a
 * store: (store_key, name) -> position, state ('open' | 'closed'), user data (jsonb).
 *
 * The key is the store's id, which init() is told at openStore (or a `key` the app chooses, to keep
 * the rows of a store it recreates): one hooks object serves one open store at a time (a second
 * init refuses). While the store is open its hooks are registered by store id, so that a
 * coordinator (coordinator.ts) deciding a step for the store finds them: it writes the positions
 * itself in its deciding transaction (ENTRIES_SQL) and the store does not call update/commit for
 * that epoch, so the rows are exactly the committed epoch's, committed with the decision or not at all.
 *
 * What each hook does: init makes the table on first use; query(name) reads the row (null when
 * there is none); insert(name) returns the user data of a new entry (the `userdata` option, default
 * null) and writes nothing: the row is written with the epoch that makes the entry; update buffers
 * the entry; commit writes the buffered entries in one statement (upserts; an update without user
 * data, as recovery's are, keeps the row's); rollback forgets the user data of entries not written
 * yet (every buffered update is of a durable epoch: it stays); fini releases the store. Writes are
 * serialised: a coordinator's positions wait for a commit still under way.
 */
import type { Pool } from 'pg';
import { CpError } from '../errors.js';
import type { Hooks } from '../hooks.js';
import { ensureTable, sqlInt, sqlText, tableRef, type TableOptions, type TableRef } from './schema.js';

/** @internal The coordinator has the statement that writes a prepared epoch's entries made by this, for its deciding transaction. */
export const ENTRIES_SQL = Symbol('cpfile.postgres.entriesSql');
/** @internal ... and tells the hooks once that transaction committed. */
export const ENTRIES_COMMITTED = Symbol('cpfile.postgres.entriesCommitted');

export interface PostgresHooksOptions extends TableOptions {
  /** The store's key in the table (default: the store's id): a non-empty string of at most 1000 characters, one store's only. */
  key?: string;
  /** The user data of a new entry (JSON: it is stored as jsonb); default null. */
  userdata?: (name: string) => unknown;
}

export interface EntryState {
  name: string;
  position: number;
  state: 'open' | 'closed';
}

interface Row extends EntryState {
  /** JSON text; undefined keeps the row's user data. */
  userdata: string | undefined;
}

/** The JSON text of user data (undefined stays undefined); EINVAL for what JSON cannot hold. */
function json(name: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  try {
    const s = JSON.stringify(v);
    if (typeof s !== 'string') throw new Error(`${typeof v} is not JSON`);
    return s;
  } catch (e) {
    throw new CpError('EINVAL', `user data of ${JSON.stringify(name)} cannot be stored as JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** The hooks of the stores open in this process, by store id (for the coordinator). */
const byStore = new Map<string, PostgresHooks>();

/** An entry's row replaces the one there, keeping its user data when the new one has none. */
const UPSERT = 'ON CONFLICT (store_key, name) DO UPDATE SET position = EXCLUDED.position, state = EXCLUDED.state, ' +
  'userdata = COALESCE(EXCLUDED.userdata, t.userdata), updated_at = now()';

/** The postgresHooks of the open store `storeId`, if it has them. */
export function hooksOfStore(storeId: string): PostgresHooks | undefined {
  return byStore.get(storeId);
}

export class PostgresHooks implements Hooks {
  readonly table: TableRef;
  private fixedKey: string | null;
  /** The open store these hooks serve (null while none). */
  private store: { storeId: string; dir: string } | null = null;
  /** Updates of durable epochs not written yet, last one per name. */
  private buffered = new Map<string, Row>();
  /** User data of new entries, until a row for them is written. */
  private inserted = new Map<string, string>();
  /** The last write under way (writes run one after another). */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(readonly pool: Pool, private options: PostgresHooksOptions = {}) {
    if (!pool || typeof (pool as { connect?: unknown }).connect !== 'function' || typeof (pool as { query?: unknown }).query !== 'function') {
      throw new CpError('EINVAL', 'postgresHooks needs a pg.Pool');
    }
    if (options === null || typeof options !== 'object') throw new CpError('EINVAL', 'postgresHooks options must be an object');
    const { key, userdata } = options;
    if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 1000)) {
      throw new CpError('EINVAL', 'postgresHooks key must be a non-empty string of at most 1000 characters');
    }
    if (userdata !== undefined && typeof userdata !== 'function') throw new CpError('EINVAL', 'postgresHooks userdata must be a function');
    this.fixedKey = key ?? null;
    this.table = tableRef('positions', options);
  }

  /** The store's key in the table: the `key` option, else the id of the store these hooks serve. */
  get key(): string {
    const k = this.fixedKey ?? this.store?.storeId;
    if (k === undefined) throw new CpError('EINVAL', 'postgresHooks serve no open store yet (init was not called): pass them to openStore as hooks');
    return k;
  }

  /** At openStore: the store these hooks serve from now until fini. */
  async init(store?: { storeId: string; dir: string }): Promise<void> {
    if (this.store) throw new CpError('EINVAL', `these postgresHooks already serve the open store ${this.store.dir}: make one hooks object per store`);
    if (!store || typeof store.storeId !== 'string') throw new CpError('EINVAL', 'postgresHooks.init needs the store ({ storeId, dir }): this cpfile does not pass it');
    const other = byStore.get(store.storeId);
    if (other) throw new CpError('EINVAL', `store ${store.dir} already has postgresHooks in this process`);
    await ensureTable(this.pool, this.table);
    this.store = { storeId: store.storeId, dir: store.dir };
    byStore.set(store.storeId, this);
  }

  async query(name: string): Promise<{ position: number; userdata: unknown } | null> {
    const r = await this.pool.query(`SELECT position, userdata FROM ${this.table.sql} WHERE store_key = $1 AND name = $2`, [this.key, name]);
    const row = r.rows[0] as { position: string; userdata: unknown } | undefined;
    return row ? { position: Number(row.position), userdata: row.userdata } : null;
  }

  async insert(name: string): Promise<unknown> {
    const ud = this.options.userdata ? await this.options.userdata(name) : null;
    this.inserted.set(name, json(name, ud)!);
    return ud;
  }

  update(name: string, position: number, userdata: unknown, state: 'open' | 'closed'): void {
    this.buffered.set(name, { name, position, state, userdata: json(name, userdata) });
  }

  /** Write the buffered updates (one upsert). On failure they stay buffered for the next commit. */
  commit(): Promise<void> {
    const rows = [...this.buffered.values()];
    if (rows.length === 0) return Promise.resolve();
    const key = this.key;
    return this.serial(async () => {
      await this.upsert(this.pool, key, rows);
      for (const r of rows) {
        if (this.buffered.get(r.name) === r) this.buffered.delete(r.name);
        this.inserted.delete(r.name);
      }
    });
  }

  rollback(): void {
    this.inserted.clear();
  }

  fini(): void {
    if (this.store && byStore.get(this.store.storeId) === this) byStore.delete(this.store.storeId);
    this.store = null;
  }

  /** @internal For the coordinator's deciding transaction: the statement that writes the prepared epoch's entries (null: none). */
  async [ENTRIES_SQL](entries: readonly EntryState[]): Promise<string | null> {
    const key = this.key;
    // a commit of an earlier epoch still under way lands first (it would otherwise overwrite these rows)
    await this.writing.catch(() => undefined);
    if (entries.length === 0) return null;
    // (literals: it goes in one query string with the decision; the same upsert as upsert()'s)
    const values = entries.map((e) => {
      const ud = this.inserted.get(e.name);
      return `(${sqlText(key)}, ${sqlText(e.name)}, ${sqlInt(e.position)}, ${sqlText(e.state)}, ${ud === undefined ? 'NULL' : `${sqlText(ud)}::jsonb`})`;
    });
    return `INSERT INTO ${this.table.sql} AS t (store_key, name, position, state, userdata) VALUES ${values.join(', ')} ${UPSERT}`;
  }

  /** @internal The deciding transaction committed: the entries written have their rows. */
  [ENTRIES_COMMITTED](entries: readonly EntryState[]): void {
    for (const e of entries) {
      this.inserted.delete(e.name);
      this.buffered.delete(e.name);   // an older durable update, superseded by the committed epoch
    }
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const p = this.writing.catch(() => undefined).then(fn);
    this.writing = p;
    return p;
  }

  private async upsert(db: Pick<Pool, 'query'>, key: string, rows: readonly Row[]): Promise<void> {
    if (rows.length === 0) return;
    await db.query(
      `INSERT INTO ${this.table.sql} AS t (store_key, name, position, state, userdata)
       SELECT $1, u.name, u.position, u.state, u.userdata FROM unnest($2::text[], $3::bigint[], $4::text[], $5::jsonb[]) AS u(name, position, state, userdata)
       ${UPSERT}`,
      [key, rows.map((r) => r.name), rows.map((r) => r.position), rows.map((r) => r.state), rows.map((r) => r.userdata ?? null)]);
  }
}

/** The seed's checkpoint store in PostgreSQL, for openStore's `hooks` (see the file comment). */
export function postgresHooks(pool: Pool, options: PostgresHooksOptions = {}): PostgresHooks {
  return new PostgresHooks(pool, options);
}
