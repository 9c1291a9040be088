/**
 * One process owns a store: proper-lockfile's lock directory inside the metadata directory, plus an
 * owner file with our pid so that a lock left behind by a killed process is reclaimed at once instead
 * of after `stale` milliseconds. A compromised lock (its refresh was delayed past `stale`, or someone
 * removed it) is reported to the store instead of crashing the process from a timer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import lockfile from 'proper-lockfile';
import { CpError, ioError } from './errors.js';
import { LOCK_NAME, OWNER_FILE } from './format.js';

export interface Lock {
  release(): Promise<void>;
}

const OWNER_RE = new RegExp(`^${OWNER_FILE}\\.(\\d+)$`);

/**
 * Metadata directories this process holds the lock of. An `owner.<our pid>` file alone does not say
 * that: after a reboot or in a new container a dead process may have had our pid.
 */
const heldHere = new Set<string>();

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids that announced themselves as (would-be) owners, from the owner.<pid> files. */
function owners(metaDir: string): number[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(metaDir);
  } catch {
    return [];
  }
  return names.map((n) => OWNER_RE.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
}

function removeOwner(metaDir: string, pid: number): void {
  fs.rmSync(path.join(metaDir, `${OWNER_FILE}.${pid}`), { force: true });
}

/**
 * Every process writes `owner.<pid>` before it tries the lock, so a process that holds the lock always
 * has its file: when the lock is taken and none of the announced pids is alive, the holder is dead and
 * the lock is reclaimed at once instead of after `stale` milliseconds.
 */
export async function acquireLock(metaDir: string, stale: number, onCompromised: (err: CpError) => void): Promise<Lock> {
  const lockPath = path.join(metaDir, LOCK_NAME);
  const mine = path.join(metaDir, `${OWNER_FILE}.${process.pid}`);
  const opts = {
    lockfilePath: lockPath,
    stale,
    update: Math.max(1000, Math.floor(stale / 2)),
    realpath: false,
    retries: 0,
    onCompromised: (err: Error) => {
      onCompromised(new CpError('ECOMPROMISED', `the store's lock was lost (${err.message}); reopen the store`, { cause: err }));
    },
  };
  const locked = (cause: unknown): CpError => new CpError('ELOCKED', `store ${path.dirname(metaDir)} is in use by another process`, { cause });
  const key = path.resolve(metaDir);
  const hadMine = heldHere.has(key);
  try {
    fs.writeFileSync(mine, `${process.pid}\n`);
  } catch (e) {
    // EACCES on a read-only store, ENOENT without a metadata directory, ...: a CpError like every failure.
    throw ioError(e, `cannot announce this process as the owner of ${path.dirname(metaDir)}`);
  }
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(metaDir, opts);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') {
      if (!hadMine) removeOwner(metaDir, process.pid);
      throw new CpError('EIO', `cannot lock ${metaDir}: ${(e as Error).message}`, { cause: e });
    }
    const others = owners(metaDir).filter((pid) => pid !== process.pid);
    // Another store object of this process holds it.
    if (hadMine || others.some(alive)) {
      if (!hadMine) removeOwner(metaDir, process.pid);
      throw locked(e);
    }
    // Every announced owner is dead: the lock is ours to take.
    fs.rmSync(lockPath, { recursive: true, force: true });
    try {
      release = await lockfile.lock(metaDir, opts);
    } catch (e2) {
      removeOwner(metaDir, process.pid);
      throw locked(e2);
    }
  }
  for (const pid of owners(metaDir)) if (pid !== process.pid && !alive(pid)) removeOwner(metaDir, pid);
  heldHere.add(key);
  return {
    release: async () => {
      heldHere.delete(key);
      removeOwner(metaDir, process.pid);
      try {
        await release();
      } catch {
        // Already released or compromised: nothing left to do.
      }
    },
  };
}
