/**
 * An owner's record, `.cpfile/owner.<pid>` (the lock, `.cpfile/lock`, is a hard link to its holder's):
 * who this process is (pid, process start time, boot id, pid namespace, host, thread), and reading
 * records back. Whether the process a record names is still there is lib/lock.ts ownerLiveness.
 * Uses node:fs directly, as lib/lock.ts does.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import { OWNER_FILE } from './format.js';

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

export const OWNER_RE = new RegExp(`^${OWNER_FILE}\\.(\\d+)$`);
export const TMP_RE = new RegExp(`^${OWNER_FILE}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);

function readOr<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

/** State (field 3) and start time (field 22) of /proc/<pid>/stat; null when there is no such entry. */
export function procStat(pid: number | 'self'): { state: string; start: string } | null {
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
export function identity(): Omit<OwnerRecord, 'token'> {
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

export interface Holder {
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
