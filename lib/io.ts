/**
 * The one I/O interface every file-system call of cpfile goes through, on the main thread and in the
 * flusher worker alike. Tests put a recording, fault-injecting or simulated implementation in its
 * place (test/helpers and the torture suite); production uses nodeIO (asynchronous, libuv thread
 * pool: never blocks the event loop) on the main thread and syncNodeIO inside the worker, where
 * blocking is the point and saves a thread hop per call. The worker's implementation can be swapped
 * too (StoreOptions.workerIO), so tests record and fail the worker's own calls.
 *
 * One deliberate exception: the store lock (lib/lock.ts) and the owner files beside it (which
 * cp-recover reads through lib/recovery/inspect.ts) use node:fs directly: the lock belongs to the process, not
 * to the store's data, and must work the same under any injected IO. They hold no data and take no part in recovery; the torture suite
 * runs without them (noLock) and the locking tests exercise them on the real file system.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

export type OpenMode =
  | 'read'        // O_RDONLY
  | 'readwrite'   // O_RDWR, must exist
  | 'create'      // O_RDWR | O_CREAT
  | 'createExcl'; // O_RDWR | O_CREAT | O_EXCL

export interface StatInfo {
  size: number;
  isFile: boolean;
  isDirectory: boolean;
  isSymbolicLink: boolean;
  /** Hard links to the inode (a store file with more than one is refused for writing). */
  nlink: number;
}

export interface OpenOptions {
  /**
   * O_NOFOLLOW: when the last component of the path is a symlink, fail with code ELOOP instead of
   * opening (or, with a create mode, creating) whatever it points to. Parent components are the
   * caller's business (names.ts openInStore lstats them one by one).
   */
  noFollow?: boolean;
  /** O_DIRECTORY: fail with ENOTDIR unless the path is a directory (with 'read': a directory's fd). */
  directory?: boolean;
}

export interface IO {
  open(path: string, mode: OpenMode, opts?: OpenOptions): Promise<number>;
  /**
   * A path that names the directory open as `fd` itself, whatever has been renamed or linked since
   * (Linux: /proc/self/fd/N), so that `dirRef(fd) + '/x'` looks `x` up in that directory, as
   * openat(2) would. Absent where there is no such path (the simulator): names.ts then checks each
   * component by path instead.
   */
  dirRef?(fd: number): Promise<string>;
  close(fd: number): Promise<void>;
  /** May return fewer bytes than asked (end of file). */
  read(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number>;
  /** May write fewer bytes than asked: use writeFully. */
  write(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number>;
  fsync(fd: number): Promise<void>;
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, len: number): Promise<void>;
  fstat(fd: number): Promise<StatInfo>;
  /** Follows symlinks. Rejects with code ENOENT when missing. */
  stat(path: string): Promise<StatInfo>;
  lstat(path: string): Promise<StatInfo>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Creates one directory; resolves false if it already existed. */
  mkdir(path: string): Promise<boolean>;
  readdir(path: string): Promise<string[]>;
  /** fsync a directory, making creates, renames and unlinks inside it durable. */
  fsyncDir(path: string): Promise<void>;
  realpath(path: string): Promise<string>;
  /**
   * access(path, W_OK): resolves when the process may change `path` (a file's content, or a
   * directory's entries); rejects with EACCES (mode bits), EPERM (immutable), EROFS or ENOENT.
   */
  access(path: string): Promise<void>;
  /** Removes one empty directory. */
  rmdir(path: string): Promise<void>;
  /**
   * The largest file size the file system holding directory `dir` accepts (Number.MAX_SAFE_INTEGER
   * when it accepts that, or when it cannot be learnt). Real file systems: probeMaxFileSize.
   */
  maxFileSize(dir: string): Promise<number>;
}

const FLAGS: Record<OpenMode, number> = {
  read: fs.constants.O_RDONLY,
  readwrite: fs.constants.O_RDWR,
  create: fs.constants.O_RDWR | fs.constants.O_CREAT,
  createExcl: fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL,
};

const toStat = (s: fs.Stats): StatInfo => ({
  size: s.size,
  isFile: s.isFile(),
  isDirectory: s.isDirectory(),
  isSymbolicLink: s.isSymbolicLink(),
  nlink: s.nlink,
});

const flagsOf = (m: OpenMode, o?: OpenOptions): number =>
  FLAGS[m] | (o?.noFollow ? fs.constants.O_NOFOLLOW : 0) | (o?.directory ? fs.constants.O_DIRECTORY : 0);

/** Whether this system names open directories by path (procfs): see IO.dirRef. */
const PROC_FD = ((): boolean => {
  try {
    return fs.statSync('/proc/self/fd').isDirectory();
  } catch {
    return false;
  }
})();
// Asynchronous like every IO call, so that wrappers of the interface (tests) treat it as the rest.
const procDirRef = PROC_FD ? async (fd: number): Promise<string> => `/proc/self/fd/${fd}` : undefined;

const pOpen = promisify(fs.open);
const pClose = promisify(fs.close);
const pRead = promisify(fs.read);
const pFsync = promisify(fs.fsync);
const pFdatasync = promisify(fs.fdatasync);
const pFtruncate = promisify(fs.ftruncate);
const pFstat = promisify(fs.fstat);

/** Asynchronous node:fs: for the main thread. */
export const nodeIO: IO = {
  open: (p, m, o) => pOpen(p, flagsOf(m, o), 0o666),
  ...(procDirRef ? { dirRef: procDirRef } : {}),
  close: (fd) => pClose(fd),
  read: async (fd, b, o, l, p) => (await pRead(fd, b, o, l, p)).bytesRead,
  write: (fd, b, o, l, p) =>
    new Promise((resolve, reject) => fs.write(fd, b, o, l, p, (err, n) => (err ? reject(err) : resolve(n)))),
  fsync: (fd) => pFsync(fd),
  fdatasync: (fd) => pFdatasync(fd),
  ftruncate: (fd, l) => pFtruncate(fd, l),
  fstat: async (fd) => toStat(await pFstat(fd)),
  stat: async (p) => toStat(await fs.promises.stat(p)),
  lstat: async (p) => toStat(await fs.promises.lstat(p)),
  rename: (a, b) => fs.promises.rename(a, b),
  unlink: (p) => fs.promises.unlink(p),
  mkdir: async (p) => {
    try {
      await fs.promises.mkdir(p);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  },
  readdir: (p) => fs.promises.readdir(p),
  fsyncDir: async (p) => {
    const fd = await pOpen(p, fs.constants.O_RDONLY);
    try {
      await pFsync(fd);
    } finally {
      await pClose(fd);
    }
  },
  realpath: (p) => fs.promises.realpath(p),
  access: (p) => fs.promises.access(p, fs.constants.W_OK),
  rmdir: (p) => fs.promises.rmdir(p),
  maxFileSize: (d) => probeMaxFileSize(nodeIO, d),
};

/** Synchronous node:fs behind the same promise interface: for the flusher worker thread. */
export const syncNodeIO: IO = {
  open: async (p, m, o) => fs.openSync(p, flagsOf(m, o), 0o666),
  ...(procDirRef ? { dirRef: procDirRef } : {}),
  close: async (fd) => fs.closeSync(fd),
  read: async (fd, b, o, l, p) => fs.readSync(fd, b, o, l, p),
  write: async (fd, b, o, l, p) => fs.writeSync(fd, b, o, l, p),
  fsync: async (fd) => fs.fsyncSync(fd),
  fdatasync: async (fd) => fs.fdatasyncSync(fd),
  ftruncate: async (fd, l) => fs.ftruncateSync(fd, l),
  fstat: async (fd) => toStat(fs.fstatSync(fd)),
  stat: async (p) => toStat(fs.statSync(p)),
  lstat: async (p) => toStat(fs.lstatSync(p)),
  rename: async (a, b) => fs.renameSync(a, b),
  unlink: async (p) => fs.unlinkSync(p),
  mkdir: async (p) => {
    try {
      fs.mkdirSync(p);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  },
  readdir: async (p) => fs.readdirSync(p),
  fsyncDir: async (p) => {
    const fd = fs.openSync(p, fs.constants.O_RDONLY);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  realpath: async (p) => fs.realpathSync(p),
  access: async (p) => fs.accessSync(p, fs.constants.W_OK),
  rmdir: async (p) => fs.rmdirSync(p),
  maxFileSize: (d) => probeMaxFileSize(syncNodeIO, d),
};

/** The probe file probeMaxFileSize creates in the directory it is given (a store's .cpfile). */
export const SIZE_PROBE_FILE = 'size-probe';

/**
 * Learn the largest file size the file system of `dir` accepts: ftruncate a probe file by binary
 * search (sparse: no data block is allocated; about 55 calls on ext4, 4 where 2^53 - 1 is accepted),
 * then remove it. Any failure other than EFBIG/EINVAL (a full disk, a read-only file system) gives
 * Number.MAX_SAFE_INTEGER: the limit is then not known, and the file system refuses at apply time.
 * A probe file left by a crash is harmless: the next probe reuses and removes it.
 */
export async function probeMaxFileSize(io: IO, dir: string): Promise<number> {
  const MAX = Number.MAX_SAFE_INTEGER;
  const file = path.join(dir, SIZE_PROBE_FILE);
  let fd: number;
  try {
    fd = await io.open(file, 'create');
  } catch {
    return MAX;
  }
  let limit = MAX;
  try {
    const fits = async (len: number): Promise<boolean> => {
      try {
        await io.ftruncate(fd, len);
        return true;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EFBIG' || code === 'EINVAL') return false;
        throw e;
      }
    };
    if (!(await fits(MAX))) {
      let lo = 0; // accepted
      let hi = MAX; // refused
      while (hi - lo > 1) {
        const mid = lo + Math.floor((hi - lo) / 2);
        if (await fits(mid)) lo = mid;
        else hi = mid;
      }
      limit = lo;
    }
  } catch {
    limit = MAX;
  } finally {
    await io.close(fd).catch(() => undefined);
    await io.unlink(file).catch(() => undefined);
  }
  return limit;
}

/** Write all of buf[off, off+len) at position, looping over short writes. */
export async function writeFully(io: IO, fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<void> {
  while (len > 0) {
    const n = await io.write(fd, buf, off, len, position);
    if (n <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    off += n;
    len -= n;
    position += n;
  }
}

/** Read up to len bytes at position, looping over short reads; returns bytes read (less only at EOF). */
export async function readFully(io: IO, fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number> {
  let total = 0;
  while (len > 0) {
    const n = await io.read(fd, buf, off, len, position);
    if (n <= 0) break;
    total += n;
    off += n;
    len -= n;
    position += n;
  }
  return total;
}

export const isENOENT = (e: unknown): boolean => (e as NodeJS.ErrnoException)?.code === 'ENOENT';
