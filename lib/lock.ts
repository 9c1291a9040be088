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
 * This file uses node:fs directly, not the IO interface: the lock is the process's, not the store
 * data's, and must work the same under any injected IO.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { CpError, ioError } from './errors.js';
import { LOCK_NAME, OWNER_FILE } from './format.js';
import { type FlusherPort } from './flusher/port.js';

export interface Lock {
  /** Best effort and total: every step runs, nothing throws. */
  release(): Promise<void>;
  /** null while the lock is still ours; once it is not, the ECOMPROMISED error (from then on, always). */
  verify(): CpError | null;
}

/** What `.cpfile/owner.<pid>` (and so `.cpfile/lock`) holds, as one line of JSON. */
export interface OwnerRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); null where there is no /proc. */
  start: string | null;
  /** /proc/sys/kernel/random/boot_id. */
  boot: string | null;
  /** readlink /proc/self/ns/pid, e.g. `pid:[4026531836]`. */
  pidns: string | null;
  host: string;
  /** worker_threads threadId of the opener. */
  thread: number;
  /** Random, one per acquisition. */
  token: string;
}

export type Liveness = 'alive' | 'dead' | 'unknown' | 'self';
export interface Verdict {
  state: Liveness;
  /** Why, for messages: "no such process", "another host", ... */
  why: string;
}

const OWNER_RE = new RegExp(`^${OWNER_FILE}\\.(\\d+)$`);
const TMP_RE = new RegExp(`^${OWNER_FILE}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);

// ---------------------------------------------------------------------------------------------
// who we are, who a record names

function readOr<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

/** State (field 3) and start time (field 22) of /proc/<pid>/stat; null when there is no such entry. */
function procStat(pid: number | 'self'): { state: string; start: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // comm (field 2) is in parentheses and may itself hold spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest.length > 19 ? { state: rest[0], start: rest[19] } : null;
}

let self: Omit<OwnerRecord, 'token'> | null = null;
function identity(): Omit<OwnerRecord, 'token'> {
  if (!self) {
    self = {
      pid: process.pid,
      start: procStat('self')?.start ?? null,
      boot: readOr(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim()) || null,
      pidns: readOr(() => fs.readlinkSync('/proc/self/ns/pid')),
      host: os.hostname(),
      thread: threadId,
    };
  }
  return self;
}

/** A record read from disk, or null when it is not one (damaged, or written by an older cpfile). */
export function parseOwnerRecord(text: string): OwnerRecord | null {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return null;
  }
  if (!o || typeof o !== 'object') return null;
  const r = o as Record<string, unknown>;
  const strOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
  if (!Number.isSafeInteger(r.pid) || (r.pid as number) <= 0 || typeof r.host !== 'string' || typeof r.token !== 'string'
    || !strOrNull(r.start) || !strOrNull(r.boot) || !strOrNull(r.pidns) || !Number.isSafeInteger(r.thread)) return null;
  return { pid: r.pid as number, start: r.start as string | null, boot: r.boot as string | null, pidns: r.pidns as string | null,
    host: r.host, thread: r.thread as number, token: r.token };
}

/**
 * The one rule for "is the process an owner record names still there" (lib/recovery/inspect.ts uses it too).
 * `dead` only when provably so; `unknown` when this process cannot check (another host or pid
 * namespace, no record); `self` for a record of this very process (the caller decides).
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
    return rec.start === me.start ? { state: 'self', why: 'this process holds it' } : { state: 'dead', why: 'its owner had this process\'s pid before it' };
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

interface Holder {
  rec: OwnerRecord | null;
  dev: bigint;
  ino: bigint;
}

/** The record a lock (or owner) file holds, with its inode; null when there is no such file. */
export function readHolder(file: string): Holder | null {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') {
      const st = fs.lstatSync(file, { bigint: true });
      return { rec: null, dev: st.dev, ino: st.ino };
    }
    throw e;
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    let rec: OwnerRecord | null = null;
    if (st.isFile() && st.size <= 4096n) rec = parseOwnerRecord(fs.readFileSync(fd, 'utf8'));
    return { rec, dev: st.dev, ino: st.ino };
  } finally {
    fs.closeSync(fd);
  }
}

/** Pids named by `owner.<pid>` files (would-be owners announce themselves before they take the lock). */
export function ownerFiles(metaDir: string, names: string[] = fs.readdirSync(metaDir)): { pid: number; file: string }[] {
  return names.map((n) => ({ n, m: OWNER_RE.exec(n) })).filter((x) => x.m !== null)
    .map((x) => ({ pid: Number(x.m![1]), file: path.join(metaDir, x.n) }));
}

// ---------------------------------------------------------------------------------------------
// taking and giving back

/** Stores (st_dev:st_ino of their .cpfile directory) this thread holds, or is opening, the lock of. */
const heldHere = new Set<string>();
/** Tokens of locks this thread released but could not remove: its own leftovers, reclaimable. */
const leftovers = new Set<string>();

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

/** The verdict on a holder, for taking: a `self` record is reclaimable only as this thread's own leftover. */
function judge(rec: OwnerRecord | null): Verdict {
  const v = ownerLiveness(rec);
  if (v.state === 'self' && rec && rec.thread === threadId && leftovers.has(rec.token)) return { state: 'dead', why: 'this process released it but could not remove it' };
  return v;
}

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
    const verdict = judge(h.rec);
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

/**
 * Take the lock of the store whose metadata directory is `metaDir`. `stale` (ms) is how often an
 * open store checks in the background that its lock is still its own; no lock is ever taken over by
 * age. `onCompromised` is told (once) when the lock is found removed or replaced.
 */
export async function acquireLock(metaDir: string, stale: number, onCompromised: (err: CpError) => void): Promise<Lock> {
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
  const lockPath = path.join(meta, LOCK_NAME);
  const mine = path.join(meta, `${OWNER_FILE}.${process.pid}`);
  const token = randomBytes(8).toString('hex');
  const rec: OwnerRecord = { ...identity(), token };
  let myIno: bigint;
  // The record is written whole (temp, fsync) before any link to it: a lock never exists without it.
  const tmp = path.join(meta, `${OWNER_FILE}.${process.pid}.${token}.tmp`);
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      fs.writeFileSync(fd, `${JSON.stringify(rec)}\n`);
      fs.fsyncSync(fd);
      myIno = fs.fstatSync(fd, { bigint: true }).ino;
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    heldHere.delete(key);
    try { fs.rmSync(tmp, { force: true }); } catch { /* best effort */ }
    // EACCES on a read-only store, ENOENT without a metadata directory, ...: a CpError like every failure.
    throw ioError(e, `cannot write the owner record of ${root}`);
  }
  let lockErr: CpError | null = null;
  try {
    for (let round = 0; ; round++) {
      const t = take(meta, LOCK_NAME, tmp, myIno, 0);
      if (t.ok) break;
      if (!t.busy || round >= 50) {
        lockErr = lockedError(root, lockPath, t);
        break;
      }
      await new Promise((r) => setTimeout(r, 20)); // another process is breaking a dead holder's lock
    }
    // The lock is ours: its record also goes by the name owner.<pid> (cp-recover and people read it).
    if (!lockErr) {
      fs.renameSync(tmp, mine);
      fsyncDir(meta);
    }
  } catch (e) {
    lockErr = e instanceof CpError ? e : ioError(e, `cannot lock ${root}`);
  }
  if (lockErr) {
    heldHere.delete(key);
    try { unlinkIfOurs(lockPath, myIno); } catch { /* best effort */ }
    try { unlinkIfOurs(tmp, myIno); } catch { /* best effort */ }
    try { unlinkIfOurs(mine, myIno); } catch { /* best effort */ }
    throw lockErr;
  }
  // Records of provably dead owners are left-overs now (a temp that never got renamed is left alone:
  // without a whole record nothing proves its writer dead).
  try {
    for (const n of fs.readdirSync(meta)) {
      if (!OWNER_RE.test(n) && !TMP_RE.test(n)) continue;
      const f = path.join(meta, n);
      if (f === mine) continue;
      const h = readHolder(f);
      if (h && h.rec && judge(h.rec).state === 'dead') unlinkIfOurs(f, h.ino);
    }
  } catch {
    // Tidying only.
  }

  let compromised: CpError | null = null;
  let released = false;
  const verify = (): CpError | null => {
    if (compromised || released) return compromised;
    let why: string | null = null;
    try {
      const st = fs.lstatSync(lockPath, { bigint: true, throwIfNoEntry: false });
      if (!st) why = 'it was removed';
      else if (st.ino !== myIno) why = 'it was replaced';
    } catch (e) {
      why = `it cannot be checked: ${(e as Error).message}`;
    }
    if (why === null) return null;
    compromised = new CpError('ECOMPROMISED', `the lock ${lockPath} of store ${root} is no longer this process's (${why}): ` +
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
      heldHere.delete(key);
      // Every step runs even when an earlier one fails (a read-only file system after EIO): best effort.
      try {
        unlinkIfOurs(lockPath, myIno);
      } catch {
        leftovers.add(token); // still ours on disk: this process may reclaim it later
      }
      try { unlinkIfOurs(mine, myIno); } catch { /* best effort */ }
      try { fsyncDir(meta); } catch { /* best effort */ }
    },
  };
}
