/**
 * Advisory lock keys of cpfile/postgres: the two-int form pg_advisory_xact_lock(class, key), with a
 * class of cpfile's own and a 32-bit hash of the store id (or the table name). Two stores whose ids
 * hash alike share a lock: their steps wait for each other, which is slower, never wrong.
 */

/** 'cpf' 1: the stores' deciding transactions (exclusive) and resolve (shared). */
export const STORE_LOCK_CLASS = 0x63706601;
/** 'cpf' 2: first use of a table. */
export const SCHEMA_LOCK_CLASS = 0x63706602;

/** FNV-1a over the UTF-8 bytes, as a signed 32-bit integer (PostgreSQL's int4). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/** The lock keys of these stores, sorted and without repeats (every step takes them in this order: no deadlock). */
export function storeKeys(storeIds: readonly string[]): number[] {
  return [...new Set(storeIds.map(hash32))].sort((a, b) => a - b);
}
