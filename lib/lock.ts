/**
 * One process owns a store. The lock is `.cpfile/lock`, a hard link to the owner's record
 * `.cpfile/owner.<pid>`: link(2) either creates it, whole, or fails with EEXIST, so a lock never exists
 * without the record of its holder. The record names the holder by pid, process start time, boot id,
 * pid namespace and host name.
 *
 * A held lock is never taken over because of its age. A process that is stopped (SIGSTOP, a debugger,
 * a long GC pause) cannot be told from a dead one by a time lease, so the lock is reclaimed only when
 * its holder is provably dead (`ownerLiveness`): same boot and pid namespace and no such pid, or a pid
 * with another start time (reused); or the same host booted since. A holder on another host or in
 * another pid namespace cannot be checked: the lock stays (ELOCKED says how to break it by hand).
 *
 * While the store is open the owner checks that the lock is still its own (the lock's inode is its
 * record's), every `stale / 2` ms and before every task it hands to the flusher (`fencePort`), and once
 * it is not refuses everything with ECOMPROMISED. A stall of the owner itself changes nothing.
 *
 * Owner records themselves (who this process is, reading a record back) are lib/owner-record.ts;
 * `ownerLiveness` here is the one test of whether a record's process is alive, used to take the
 * lock, to tidy records and by `ownerStatus` (cp-recover's read-only view).
 *
 * This file uses node:fs directly, not the IO interface: the lock is the process's, not the store
 * data's, and must work the same under any injected IO.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { CpError, ioError } from './errors.js';
import { LOCK_NAME, OWNER_FILE } from './format.js';
import { type FlusherPort } from './flusher/port.js';
import { OWNER_RE, TMP_RE, identity, procStat, readHolder, ownerFiles, type OwnerRecord, type Holder } from './owner-record.js';

export { parseOwnerRecord, readHolder, ownerFiles, type OwnerRecord } from './owner-record.js';

export interface Lock {
  /** Best effort and total: every step runs, nothing throws. */
  release(): Promise<void>;
  /** null while the lock is still ours; once it is not, the ECOMPROMISED error (from then on, always). */
  verify(): CpError | null;
}

export type Liveness = 'alive' | 'dead' | 'unknown' | 'self';
export interface Verdict {
  state: Liveness;
  /** Why, for messages: "no such process", "another host", ... */
  why: string;
}

// ---------------------------------------------------------------------------------------------
// is the owner alive

/** Tokens of locks this thread released but could not remove: its own leftovers, reclaimable. */
const leftovers = new Set<string>();

/**
 * The one rule for "is the process an owner record names still there": taking the lock, tidying
 * owner records and `ownerStatus` (cp-recover) all ask it. `dead` only when provably so; `unknown`
 * when this process cannot check (another host or pid namespace, no record); `self` for a record of
 * this very process (the caller decides), except a lock this thread released but could not remove,
 * which is its own leftover and so `dead` (reclaimable).
 */
export function ownerLiveness(rec: OwnerRecord | null): Verdict {
  if (!rec) return { state: 'unknown', why: 'it names no owner that this version of cpfile can read' };
  const me = identity();
  if (rec.host !== me.host) return { state: 'unknown', why: `it is held from host ${rec.host}, whose processes this host cannot check` };
  if (me.boot && rec.boot && rec.boot !== me.boot) return { state: 'dead', why: 'its owner ran before this host was last booted' };
  if (me.boot || rec.boot) {
    if (!me.boot || !rec.boot) return { state: 'unknown', why: 'its owner record and this process disagree on having a boot id' };
    if (rec.pidns !== me.pidns) return { state: 'unknown', why: `its owner runs in another pid namespace (${rec.pidns}), which this process cannot check` };
  }
  // Same boot, same pid namespace (or a host without /proc: the pid alone, the best there is).
  if (rec.pid === me.pid) {
    if (rec.start !== me.start) return { state: 'dead', why: 'its owner had this process\'s pid before it' };
    if (rec.thread === threadId && leftovers.has(rec.token)) return { state: 'dead', why: 'this process released it but could not remove it' };
    return { state: 'self', why: 'this process holds it' };
  }
  const st = procStat(rec.pid);
  if (!st) {
    // No /proc entry: no such process, or /proc hides it (hidepid): ask the kernel.
    try {
      process.kill(rec.pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return { state: 'dead', why: `process ${rec.pid} no longer exists` };
    }
    return { state: 'alive', why: `process ${rec.pid} is running` };
  }
  if (st.state === 'Z' || st.state === 'X') return { state: 'dead', why: `process ${rec.pid} has exited` };
  if (rec.start !== null && st.start !== rec.start) return { state: 'dead', why: `process ${rec.pid} exited and its pid was reused` };
  return { state: 'alive', why: `process ${rec.pid} is running${st.state === 'T' || st.state === 't' ? ' (stopped)' : ''}` };
}

// ---------------------------------------------------------------------------------------------
// taking and giving back

/** Stores (st_dev:st_ino of their .cpfile directory) this thread holds, or is opening, the lock of. */
const heldHere = new Set<string>();
function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Remove `file` if it still is the inode `ino` (never someone else's file of the same name). */
function unlinkIfOurs(file: string, ino: bigint): void {
  const st = fs.lstatSync(file, { bigint: true, throwIfNoEntry: false });
  if (st && st.ino === ino) fs.unlinkSync(file);
}

type Taken = { ok: true } | { ok: false; holder: Holder | null; verdict: Verdict; busy?: boolean };

/**
 * Link our record to `name`. A holder that is provably dead is broken under `<name>.break` (itself a
 * lock of the same kind), so that two reclaimers cannot both remove a dead holder's lock and the
 * second one the first's fresh lock (Mercurial's lock breaking, the same idea).
 */
function take(metaDir: string, name: string, mine: string, myIno: bigint, depth: number): Taken {
  const target = path.join(metaDir, name);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.linkSync(mine, target);
      return { ok: true };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const h = readHolder(target);
    if (!h) continue; // released meanwhile: try again
    if (h.ino === myIno) return { ok: true }; // ours already (a retried link)
    const verdict = ownerLiveness(h.rec);
    if (verdict.state !== 'dead') return { ok: false, holder: h, verdict };
    if (depth >= 2) return { ok: false, holder: h, verdict, busy: true };
    const brk = take(metaDir, `${name}.break`, mine, myIno, depth + 1);
    if (!brk.ok) return { ok: false, holder: h, verdict, busy: true };
    try {
      // Under the break lock, nobody else removes `target`: remove it only if it still is the dead one.
      const again = readHolder(target);
      if (again && again.ino === h.ino) fs.unlinkSync(target);
    } finally {
      unlinkIfOurs(path.join(metaDir, `${name}.break`), myIno);
    }
  }
  return { ok: false, holder: null, verdict: { state: 'unknown', why: 'it changed hands while this process tried to take it' }, busy: true };
}

function lockedError(root: string, lockPath: string, t: Extract<Taken, { ok: false }>): CpError {
  const rec = t.holder?.rec ?? null;
  const who = rec ? `process ${rec.pid} on host ${rec.host}` : 'an unknown process';
  if (t.verdict.state === 'self') {
    return new CpError('ELOCKED', `store ${root} is already open in this process (pid ${process.pid}${rec && rec.thread !== threadId ? `, thread ${rec.thread}` : ''}): close that store first`);
  }
  if (t.verdict.state === 'alive') {
    return new CpError('ELOCKED', `store ${root} is in use by ${who} (${t.verdict.why}): stop that process or let it close the store; ` +
      'a stopped or paused owner keeps its lock');
  }
  if (t.busy) return new CpError('ELOCKED', `store ${root} is being reclaimed by another process from ${who} (${t.verdict.why}); try again`);
  return new CpError('ELOCKED', `store ${root} is locked by ${who}, and ${t.verdict.why}; ` +
    `if that process is truly gone, remove ${lockPath} and open the store again`);
}

/** Refuse: the flusher's answer to a task it was never given. */
function refused(err: CpError): { ok: false; fsyncs: 0; error: { code: string; message: string } } {
  return { ok: false, fsyncs: 0, error: { code: err.code, message: err.message } };
}

/**
 * The flusher behind a fence: before each task that writes (journal batches, commits, applies, direct
 * appends, segment set-up) the lock is verified; once it is not ours the task is refused, unsent.
 * A task already handed over when the lock was removed still runs (README: the remaining gap).
 */
export function fencePort(port: FlusherPort, lock: Lock): FlusherPort {
  return {
    run(task, transfer) {
      if (task.init || task.actions.length) {
        const err = lock.verify();
        if (err) return Promise.resolve(refused(err));
      }
      return port.run(task, transfer);
    },
    destroy: () => port.destroy(),
  };
}

interface Claim {
  root: string;
  /** The real path of the metadata directory. */
  meta: string;
  /** st_dev:st_ino of the metadata directory (heldHere). */
  key: string;
}

/** Mark the store as held (or being opened) by this thread: the store is what its .cpfile directory is on disk. */
function claimInThread(metaDir: string): Claim {
  const root = path.dirname(metaDir);
  let meta: string;
  let key: string;
  try {
    meta = fs.realpathSync(metaDir);
    const st = fs.statSync(meta, { bigint: true });
    key = `${st.dev}:${st.ino}`;
  } catch (e) {
    throw ioError(e, `cannot lock ${root}`);
  }
  // The store is what its .cpfile directory is on disk, whatever path (symlink, bind mount) led here.
  if (heldHere.has(key)) {
    throw new CpError('ELOCKED', `store ${root} is already open in this process (pid ${process.pid}), perhaps through another path: close that store first`);
  }
  heldHere.add(key);
  return { root, meta, key };
}

/** Write this process's record whole (temp, fsync) before any link to it: a lock never exists without it. Returns its inode. */
function writeOwnerRecord(c: Claim, tmp: string, rec: OwnerRecord): bigint {
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      fs.writeFileSync(fd, `${JSON.stringify(rec)}\n`);
      fs.fsyncSync(fd);
      return fs.fstatSync(fd, { bigint: true }).ino;
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    heldHere.delete(c.key);
    try { fs.rmSync(tmp, { force: true }); } catch { /* best effort */ }
    // EACCES on a read-only store, ENOENT without a metadata directory, ...: a CpError like every failure.
    throw ioError(e, `cannot write the owner record of ${c.root}`);
  }
}

/** Link the lock to our record (waiting while another process breaks a dead holder's lock), then name the record owner.<pid>. */
async function linkLock(c: Claim, tmp: string, mine: string, myIno: bigint): Promise<void> {
  const lockPath = path.join(c.meta, LOCK_NAME);
  let lockErr: CpError | null = null;
  try {
    for (let round = 0; ; round++) {
      const t = take(c.meta, LOCK_NAME, tmp, myIno, 0);
      if (t.ok) break;
      if (!t.busy || round >= 50) {
        lockErr = lockedError(c.root, lockPath, t);
        break;
      }
      await new Promise((r) => setTimeout(r, 20)); // another process is breaking a dead holder's lock
    }
    // The lock is ours: its record also goes by the name owner.<pid> (cp-recover and people read it).
    if (!lockErr) {
      fs.renameSync(tmp, mine);
      fsyncDir(c.meta);
    }
  } catch (e) {
    lockErr = e instanceof CpError ? e : ioError(e, `cannot lock ${c.root}`);
  }
  if (lockErr) {
    heldHere.delete(c.key);
    try { unlinkIfOurs(lockPath, myIno); } catch { /* best effort */ }
    try { unlinkIfOurs(tmp, myIno); } catch { /* best effort */ }
    try { unlinkIfOurs(mine, myIno); } catch { /* best effort */ }
    throw lockErr;
  }
}

/**
 * Records of provably dead owners are left-overs once the lock is ours (a temp that never got renamed
 * is left alone: without a whole record nothing proves its writer dead).
 */
function removeDeadOwners(meta: string, mine: string): void {
  try {
    for (const n of fs.readdirSync(meta)) {
      if (!OWNER_RE.test(n) && !TMP_RE.test(n)) continue;
      const f = path.join(meta, n);
      if (f === mine) continue;
      const h = readHolder(f);
      if (h && h.rec && ownerLiveness(h.rec).state === 'dead') unlinkIfOurs(f, h.ino);
    }
  } catch {
    // Tidying only.
  }
}

/**
 * Take the lock of the store whose metadata directory is `metaDir`. `stale` (ms) is how often an
 * open store checks in the background that its lock is still its own; no lock is ever taken over by
 * age. `onCompromised` is told (once) when the lock is found removed or replaced.
 */
export async function acquireLock(metaDir: string, stale: number, onCompromised: (err: CpError) => void): Promise<Lock> {
  const c = claimInThread(metaDir);
  const mine = path.join(c.meta, `${OWNER_FILE}.${process.pid}`);
  const token = randomBytes(8).toString('hex');
  const tmp = path.join(c.meta, `${OWNER_FILE}.${process.pid}.${token}.tmp`);
  const myIno = writeOwnerRecord(c, tmp, { ...identity(), token });
  await linkLock(c, tmp, mine, myIno);
  removeDeadOwners(c.meta, mine);
  return heldLock(c, mine, myIno, token, stale, onCompromised);
}

/** The lock we hold: verified every `stale / 2` ms (and on demand), released at most once. */
function heldLock(c: Claim, mine: string, myIno: bigint, token: string, stale: number, onCompromised: (err: CpError) => void): Lock {
  const lockPath = path.join(c.meta, LOCK_NAME);
  let compromised: CpError | null = null;
  let released = false;
  // Every commit verifies the lock: a number stat when the inode number fits a double exactly (a
  // BigIntStats costs the commit path about 1.4 KB of garbage: its dates are built eagerly).
  const inoNumber = myIno <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(myIno) : null;
  const verify = (): CpError | null => {
    if (compromised || released) return compromised;
    let why: string | null = null;
    try {
      const st = inoNumber === null ? fs.lstatSync(lockPath, { bigint: true, throwIfNoEntry: false }) : fs.lstatSync(lockPath, { throwIfNoEntry: false });
      if (!st) why = 'it was removed';
      else if (inoNumber === null ? st.ino !== myIno : st.ino !== inoNumber) why = 'it was replaced';
    } catch (e) {
      why = `it cannot be checked: ${(e as Error).message}`;
    }
    if (why === null) return null;
    compromised = new CpError('ECOMPROMISED', `the lock ${lockPath} of store ${c.root} is no longer this process's (${why}): ` +
      'nothing more is written; reopen the store');
    onCompromised(compromised);
    return compromised;
  };
  const timer = setInterval(verify, Math.max(1000, Math.floor(stale / 2)));
  timer.unref();
  return {
    verify,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      heldHere.delete(c.key);
      // Every step runs even when an earlier one fails (a read-only file system after EIO): best effort.
      try {
        unlinkIfOurs(lockPath, myIno);
      } catch {
        leftovers.add(token); // still ours on disk: this process may reclaim it later
      }
      try { unlinkIfOurs(mine, myIno); } catch { /* best effort */ }
      try { fsyncDir(c.meta); } catch { /* best effort */ }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// who owns a store, read without taking the lock (cp-recover)

export interface OwnerStatus {
  /** The lock (.cpfile/lock) exists. */
  lockDir: boolean;
  /**
   * Pids from the lock's record and the .cpfile/owner.<pid> files, and whether each process may be
   * alive: false only when it is provably dead (ownerLiveness, the rule acquireLock uses).
   */
  owners: { pid: number; alive: boolean }[];
  /** Pids other than this process's that are not provably dead: the store is (or may be) in use. */
  live: number[];
  /** The lock exists and its holder is provably dead: openStore (or cp-recover) reclaims it. */
  staleLock: boolean;
}

/**
 * Who owns the store, read without taking the lock and without writing anything. The lock is a link
 * to its holder's record; owner.<pid> files are the records of owners, live or not.
 */
export function ownerStatus(metaDir: string): OwnerStatus {
  const names = fs.readdirSync(metaDir);
  const byPid = new Map<number, boolean>();
  const note = (pid: number, state: Liveness): void => {
    const alive = state === 'alive' || state === 'unknown';
    byPid.set(pid, (byPid.get(pid) ?? false) || alive);
  };
  for (const o of ownerFiles(metaDir, names)) {
    const h = readHolder(o.file);
    note(o.pid, h ? ownerLiveness(h.rec).state : 'dead');
  }
  const lockDir = names.includes(LOCK_NAME);
  let holderDead = false;
  let unnamed = false;
  if (lockDir) {
    const h = readHolder(path.join(metaDir, LOCK_NAME));
    const state = h ? ownerLiveness(h.rec).state : 'dead';
    holderDead = state === 'dead';
    if (h?.rec) note(h.rec.pid, state);
    else if (h) unnamed = true;
  }
  const owners = [...byPid].sort((x, y) => x[0] - y[0]).map(([pid, alive]) => ({ pid, alive }));
  const live = owners.filter((o) => o.alive && o.pid !== process.pid).map((o) => o.pid);
  return { lockDir, owners, live, staleLock: lockDir && holderDead && !unnamed && live.length === 0 };
}
