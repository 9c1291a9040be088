/**
 * One process owns a store: proper-lockfile's lock directory inside the metadata directory, plus an
 * owner file with our pid so that a lock left behind by a killed process is reclaimed at once instead
 * of after `stale` milliseconds. A compromised lock (its refresh was delayed past `stale`, or someone
 * removed it) is reported to the store instead of crashing the process from a timer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import lockfile from 'proper-lockfile';
import { CpError } from './errors.js';
import { LOCK_NAME, OWNER_FILE } from './format.js';

export interface Lock {
  release(): Promise<void>;
}

function ownerAlive(ownerFile: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(ownerFile, 'utf8').split('\n')[0]);
  } catch {
    return true; // unknown owner: let staleness decide
  }
  if (!Number.isInteger(pid) || pid <= 0) return true;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function acquireLock(metaDir: string, stale: number, onCompromised: (err: CpError) => void): Promise<Lock> {
  const lockPath = path.join(metaDir, LOCK_NAME);
  const ownerFile = path.join(metaDir, OWNER_FILE);
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
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(metaDir, opts);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw new CpError('EIO', `cannot lock ${metaDir}: ${(e as Error).message}`, { cause: e });
    if (ownerAlive(ownerFile)) {
      throw new CpError('ELOCKED', `store ${path.dirname(metaDir)} is in use by another process`, { cause: e });
    }
    // The owner is dead: its lock is ours to take.
    fs.rmSync(lockPath, { recursive: true, force: true });
    try {
      release = await lockfile.lock(metaDir, opts);
    } catch (e2) {
      throw new CpError('ELOCKED', `store ${path.dirname(metaDir)} is in use by another process`, { cause: e2 });
    }
  }
  fs.writeFileSync(ownerFile, `${process.pid}\n`);
  return {
    release: async () => {
      try {
        fs.rmSync(ownerFile, { force: true });
        await release();
      } catch {
        // Already released or compromised: nothing left to do.
      }
    },
  };
}
