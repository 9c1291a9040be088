/**
 * cpfile/compat: the seed's C API by name, promise-returning, with C return conventions:
 * item counts for cp_read/cp_write, 0 or -1 elsewhere, cp_tell returns the position, cp_open and
 * cp_dup return null on failure, and cp_error() gives the last CpError.
 *
 * The functions share a default store rooted at the current directory, opened at the first cp_open
 * and closed when its last open file is closed. cp_close also checks: in the seed, closing a file ends
 * its processing.
 */
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';
import { CpError } from './errors.js';
import { type CpFile, type Mode } from './store/file.js';
import { type Hooks } from './hooks.js';

/** A compat file: a box around a CpFile, so that cp_dup2 can re-point it. */
export interface CP_FILE {
  /** @internal */ handle: CpFile | null;
}

let store: Store | null = null;
let opening: Promise<Store> | null = null;
let hooks: Hooks | undefined;
let lastError: CpError | null = null;
const open = new Set<CP_FILE>();
/** Calls on the default store under way: it is not closed under them (a failed cp_open beside a good one). */
let inflight = 0;

function remember(e: unknown): void {
  lastError = e instanceof CpError ? e : new CpError('EIO', (e as Error)?.message ?? String(e), { cause: e });
}

async function defaultStore(): Promise<Store> {
  if (store) return store;
  if (!opening) {
    opening = openStore(process.cwd(), hooks ? { hooks } : {}).then((s) => {
      store = s;
      return s;
    }).finally(() => {
      opening = null;
    });
  }
  return opening;
}

async function closeIfIdle(): Promise<void> {
  if (open.size === 0 && inflight === 0 && store) {
    const s = store;
    store = null;
    await s.close();
  }
}

function handleOf(cpf: CP_FILE | null | undefined): CpFile {
  if (!cpf || !cpf.handle) throw new CpError('EBADF', 'not an open CP_FILE');
  return cpf.handle;
}

/** Bytes of `count` items of `size` bytes, checked against the buffer. */
function itemBytes(buf: Uint8Array, size: number, count: number): number {
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(count) || size < 0 || count < 0) throw new CpError('EINVAL', 'size and count must be non-negative integers');
  if (!(buf instanceof Uint8Array)) throw new CpError('EINVAL', 'buffer must be a Buffer or Uint8Array');
  const want = size * count;
  if (want > buf.byteLength) throw new CpError('EINVAL', `size*count (${want}) exceeds the buffer`);
  return want;
}

/** The last error a compat call failed with, or null. */
export function cp_error(): CpError | null {
  return lastError;
}

/** Open `fname` with a C mode ("r", "w+", "ab", ...). Returns null on failure. */
export async function cp_open(fname: string, mode: string): Promise<CP_FILE | null> {
  inflight++;
  try {
    if (typeof mode !== 'string') throw new CpError('EINVAL', 'mode must be a string');
    const m = mode.replace(/b/g, '') as Mode;
    const s = await defaultStore();
    const f = await s.open(fname, m);
    const cpf: CP_FILE = { handle: f };
    open.add(cpf);
    return cpf;
  } catch (e) {
    remember(e);
  } finally {
    inflight--;
  }
  await closeIfIdle().catch(() => undefined);
  return null;
}

/** Close and check: the file's entry is completed durably. 0 or -1. */
export async function cp_close(cpf: CP_FILE): Promise<number> {
  try {
    const f = handleOf(cpf);
    const s = store;
    await f.close();
    cpf.handle = null;
    open.delete(cpf);
    if (s) await s.check();
    await closeIfIdle();
    return 0;
  } catch (e) {
    remember(e);
    return -1;
  }
}

/** Read `count` items of `size` bytes; returns the number of whole items read. */
export async function cp_read(cpf: CP_FILE, buf: Uint8Array, size: number, count: number): Promise<number> {
  try {
    const f = handleOf(cpf);
    const want = itemBytes(buf, size, count);
    if (want === 0) return 0;
    const { bytesRead } = await f.read(buf, 0, want);
    return Math.floor(bytesRead / size);
  } catch (e) {
    remember(e);
    return 0;
  }
}

/** Write `count` items of `size` bytes; returns the number of items written. */
export async function cp_write(cpf: CP_FILE, buf: Uint8Array, size: number, count: number): Promise<number> {
  try {
    const f = handleOf(cpf);
    const want = itemBytes(buf, size, count);
    if (want === 0) return 0;
    await f.write(buf, 0, want);
    return count;
  } catch (e) {
    remember(e);
    return 0;
  }
}

/** Durable checkpoint of every file of the default store. 0 or -1. */
export async function cp_check(cpf: CP_FILE): Promise<number> {
  try {
    await handleOf(cpf).check();
    return 0;
  } catch (e) {
    remember(e);
    return -1;
  }
}

/** The file position, or -1. */
export async function cp_tell(cpf: CP_FILE): Promise<number> {
  try {
    return handleOf(cpf).tell();
  } catch (e) {
    remember(e);
    return -1;
  }
}

/** Set the file position. 0 or -1. */
export async function cp_seek(cpf: CP_FILE, fpos: number): Promise<number> {
  try {
    handleOf(cpf).seek(fpos, 'set');
    return 0;
  } catch (e) {
    remember(e);
    return -1;
  }
}

/** Remove a file of the default store (durable at the next check). 0 or -1. */
export async function cp_unlink(fname: string): Promise<number> {
  let opened = false;
  let result = 0;
  inflight++;
  try {
    opened = store === null;
    const s = await defaultStore();
    await s.unlink(fname);
    if (opened && open.size === 0) await s.check();
  } catch (e) {
    remember(e);
    result = -1;
  } finally {
    inflight--;
  }
  if (opened) {
    try {
      await closeIfIdle();
    } catch (e) {
      remember(e);
      result = -1;
    }
  }
  return result;
}

/** A second CP_FILE sharing the file and its position; null on failure. */
export async function cp_dup(cpf: CP_FILE): Promise<CP_FILE | null> {
  try {
    const d: CP_FILE = { handle: handleOf(cpf).dup() };
    open.add(d);
    return d;
  } catch (e) {
    remember(e);
    return null;
  }
}

/** Make `target` a duplicate of `cpf`, closing what `target` had open first. 0 or -1. */
export async function cp_dup2(cpf: CP_FILE, target: CP_FILE): Promise<number> {
  try {
    const src = handleOf(cpf);
    if (cpf === target) return 0;
    if (!target || typeof target !== 'object') throw new CpError('EINVAL', 'cp_dup2 needs a target CP_FILE');
    if (target.handle) {
      const old = target.handle;
      target.handle = null;
      await old.close();
    }
    target.handle = src.dup();
    open.add(target);
    return 0;
  } catch (e) {
    remember(e);
    return -1;
  }
}

type HookFn = ((...args: never[]) => unknown) | null | undefined;

/**
 * Install checkpoint-store hooks for the default store, in the seed's order: insert, update, query,
 * commit, rollback, init, fini. Must come before the first cp_open. 0 or -1.
 */
export async function cp_hooks(ins: HookFn, upd: HookFn, qry: HookFn, com: HookFn, rbk: HookFn, ini?: HookFn, fin?: HookFn): Promise<number> {
  try {
    if (store || opening) throw new CpError('EBUSY', 'cp_hooks must be called before the first cp_open');
    const h: Record<string, unknown> = { insert: ins, update: upd, query: qry, commit: com, rollback: rbk, init: ini, fini: fin };
    for (const [k, v] of Object.entries(h)) {
      if (v === null || v === undefined) delete h[k];
      else if (typeof v !== 'function') throw new CpError('EINVAL', `cp_hooks: ${k} must be a function or null`);
    }
    hooks = h as Hooks;
    return 0;
  } catch (e) {
    remember(e);
    return -1;
  }
}
