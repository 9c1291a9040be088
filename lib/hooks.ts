/**
 * The seed's cp_hooks, as an object: adapt cpfile to an external checkpoint store (a database row per
 * file, say). The journal stays the source of truth; hooks mirror it. Every hook may be async.
 */
import { CpError } from './errors.js';

export interface Hooks {
  /** At openStore, after recovery: the store's id (16 hex digits, stable for its life) and its directory. */
  init?(store: { storeId: string; dir: string }): unknown;
  /** A new entry is needed for `name`; may return user data kept with the entry. */
  insert?(name: string): unknown;
  /** At each check, for every entry whose position or state changed (after the journal commit is durable). */
  update?(name: string, position: number, userdata: unknown, state: 'open' | 'closed'): unknown;
  /** At open: the checkpoint store's view of `name`, or null. */
  query?(name: string): { position?: number; userdata?: unknown } | null | undefined | Promise<{ position?: number; userdata?: unknown } | null | undefined>;
  /** After the updates of a check. */
  commit?(): unknown;
  /** When a check fails, or on store.rollback(). */
  rollback?(): unknown;
  /** At store.close. */
  fini?(): unknown;
}

const HOOK_NAMES = ['init', 'insert', 'update', 'query', 'commit', 'rollback', 'fini'] as const;

export function validateHooks(h: unknown): Hooks | undefined {
  if (h === undefined || h === null) return undefined;
  if (typeof h !== 'object') throw new CpError('EINVAL', 'hooks must be an object of functions');
  for (const k of HOOK_NAMES) {
    const f = (h as Record<string, unknown>)[k];
    if (f !== undefined && typeof f !== 'function') throw new CpError('EINVAL', `hooks.${k} must be a function`);
  }
  return h as Hooks;
}

/** Call a hook, turning a throw into CpError EHOOK. */
export async function callHook<K extends keyof Hooks>(hooks: Hooks | undefined, name: K, ...args: unknown[]): Promise<unknown> {
  const f = hooks?.[name] as ((...a: unknown[]) => unknown) | undefined;
  if (!f) return undefined;
  try {
    return await f.apply(hooks, args);
  } catch (e) {
    throw new CpError('EHOOK', `hooks.${name} failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}
