// Shared helpers for the public-API test suite: temp dirs, tracked stores, error assertions.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { CpError, openStore } from '../../lib/index.js';

export type Store = Awaited<ReturnType<typeof openStore>>;
export type CpFile = Awaited<ReturnType<Store['open']>>;
export type StoreOptions = NonNullable<Parameters<typeof openStore>[1]>;
export type Hooks = NonNullable<StoreOptions['hooks']>;
export type OpenMode = NonNullable<Parameters<Store['open']>[1]>;

/** Small journal segments keep the tests fast and exercise segment rollover. */
export const SMALL: StoreOptions = { segmentSize: 1 << 20 };

export async function makeTmpDir(prefix = 'cpfile-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Tracks the temp dirs and stores a test creates so afterEach can close every store
 * (discarding, ignoring errors) and delete every directory: no leftovers, no held locks.
 */
export class Sandbox {
  private dirs: string[] = [];
  private stores: Store[] = [];

  async dir(prefix?: string): Promise<string> {
    const d = await makeTmpDir(prefix);
    this.dirs.push(d);
    return d;
  }

  async open(dir: string, opts: StoreOptions = {}): Promise<Store> {
    const store = await openStore(dir, { ...SMALL, ...opts });
    this.stores.push(store);
    return store;
  }

  track(store: Store): Store {
    this.stores.push(store);
    return store;
  }

  async cleanup(): Promise<void> {
    for (const s of this.stores.splice(0)) {
      try {
        await s.close({ discard: true });
      } catch {
        /* already closed / compromised: fine for cleanup */
      }
    }
    for (const d of this.dirs.splice(0)) await removeDir(d);
  }
}

const NO_THROW = Symbol('no-throw');

/**
 * The one error assertion of the test suite. Runs fn (sync throw or async rejection both count) and
 * asserts it failed with a CpError carrying `code` and a non-empty one-line message. Returns the error.
 */
export async function expectCpError(fn: () => unknown, code: string): Promise<CpError> {
  let caught: unknown = NO_THROW;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  if (caught === NO_THROW) expect.fail(`expected CpError ${code}, but the call succeeded`);
  if (!(caught instanceof CpError)) {
    expect.fail(`expected CpError ${code}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  }
  const err = caught as CpError;
  expect(err).to.be.instanceOf(Error);
  expect(err.code, `error code (message: ${err.message})`).to.equal(code);
  expect(err.message, 'message').to.be.a('string').and.not.equal('');
  expect(err.message, 'message is one line').to.not.include('\n');
  return err;
}

export async function readAll(f: CpFile): Promise<Buffer> {
  const { size } = await f.stat();
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await f.read(buf, off, size - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return buf.subarray(0, off);
}

/** Finds a store's lock artefacts (a `*.lock` or `lock` entry). */
export async function findLockPaths(dir: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(d: string, depth: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n);
      if (n === 'lock' || n.endsWith('.lock')) found.push(p);
      else if (depth > 0 && (n === '.cpfile' || n.startsWith('.cpfile'))) {
        const st = await stat(p).catch(() => null);
        if (st?.isDirectory()) await walk(p, depth - 1);
      }
    }
  }
  await walk(dir, 2);
  // Also look one level above for `<dir>.lock` style locks.
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  for (const n of await readdir(parent)) if (n === `${base}.lock`) found.push(path.join(parent, n));
  return found;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
