/**
 * Real file systems for fault tests: a loop-mounted ext4 image of a given size (or a tmpfs with
 * size=), mounted in a fresh directory and unmounted and removed by cleanup() (call it in an
 * after/afterEach hook: it runs when a test fails too). Needs root and a kernel that allows loop
 * mounts; where that is not so, mountReal() skips the calling test with a visible reason.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RealFs {
  /** The mount point: an empty directory on the new file system. */
  dir: string;
  kind: 'ext4' | 'tmpfs';
  /** Bytes free for this process right now (statfs). */
  free(): number;
  /** Fill the file system with a filler file until `leave` bytes (at most) are free; returns its path. */
  fill(leave?: number, name?: string): string;
  /** ext4's emergency read-only (mount -o remount,abort): every later change fails with EROFS. */
  abort(): void;
  /** Unmount and mount again (after abort: the way back to a writable file system). */
  remount(): void;
  cleanup(): void;
}

const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** Every mount made here and not yet cleaned up (a last-resort exit hook unmounts them). */
const live = new Set<RealFs>();
process.on('exit', () => {
  for (const r of live) r.cleanup();
});

/**
 * Mount a fresh file system of `sizeMiB` MiB. In a mocha test, `ctx` (this) is used to skip with
 * the reason when mounting is impossible; the reason is also printed, so a skip is never silent.
 * Without a test (ctx null: the torture CLI) it throws an Error with the reason instead.
 */
export function mountReal(ctx: Mocha.Context | null, sizeMiB: number, kind: 'ext4' | 'tmpfs' = 'ext4'): RealFs {
  const why = cannotMount();
  if (why) {
    if (!ctx) throw new Error(`cannot mount a file system: ${why}`);
    console.log(`      SKIPPED (real file system): ${why}`);
    ctx.skip();
  }
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'cpfile-realfs-'));
  const img = path.join(base, 'fs.img');
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(dir);
  let mounted = false;
  const cleanup = (): void => {
    if (mounted) {
      try {
        // Immutable files left by a failed test would survive in the image: clear them, then unmount.
        run('chattr', ['-R', '-i', dir]);
      } catch { /* tmpfs, or an aborted fs */ }
      for (let i = 0; i < 3 && mounted; i++) {
        try {
          run('umount', [dir]);
          mounted = false;
        } catch {
          try { run('umount', ['-l', dir]); mounted = false; } catch { /* try again */ }
        }
      }
    }
    fs.rmSync(base, { recursive: true, force: true });
    live.delete(r);
  };
  const mount = (): void => {
    if (kind === 'ext4') run('mount', ['-o', 'loop', img, dir]);
    else run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
    mounted = true;
  };
  const r: RealFs = {
    dir, kind,
    free: () => {
      const s = fs.statfsSync(dir);
      return s.bavail * s.bsize;
    },
    fill: (leave = 0, name = 'filler') => {
      const p = path.join(dir, name);
      const fd = fs.openSync(p, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0xaa);
      try {
        for (;;) {
          const room = r.free() - leave;
          if (room <= 0) break;
          try {
            fs.writeSync(fd, chunk, 0, Math.min(chunk.length, Math.max(4096, room - (room % 4096))));
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw e;
          }
          fs.fsyncSync(fd);
        }
      } finally {
        fs.closeSync(fd);
      }
      return p;
    },
    abort: () => {
      if (kind !== 'ext4') throw new Error('abort needs ext4');
      run('mount', ['-o', 'remount,abort', dir]);
    },
    remount: () => {
      run('umount', [dir]);
      mounted = false;
      mount();
    },
    cleanup,
  };
  try {
    if (kind === 'ext4') {
      fs.writeFileSync(img, '');
      fs.truncateSync(img, sizeMiB * 1024 * 1024);
      // -m 0: no blocks reserved for root (the tests run as root), so "full" means full.
      run('mkfs.ext4', ['-q', '-F', '-m', '0', img]);
    }
    mount();
  } catch (e) {
    cleanup();
    const msg = `mounting ${kind} failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
    if (!ctx) throw new Error(msg);
    console.log(`      SKIPPED (real file system): ${msg}`);
    ctx.skip();
  }
  live.add(r);
  return r;
}

function cannotMount(): string | null {
  if (process.platform !== 'linux') return `needs Linux, this is ${process.platform}`;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root (mount)';
  return null;
}

/** chattr +i / -i; null when the file system does not support it (the reason otherwise thrown). */
export function chattr(p: string, flag: '+i' | '-i'): void {
  run('chattr', [flag, p]);
}

/** A non-root user to run child processes as (setpriv), created if needed; null with the reason printed. */
export function testUser(): { uid: number; gid: number } | null {
  const lookup = (name: string): { uid: number; gid: number } | null => {
    try {
      const [uid, gid] = run('id', ['-u', name]).trim() ? [Number(run('id', ['-u', name]).trim()), Number(run('id', ['-g', name]).trim())] : [NaN, NaN];
      return Number.isInteger(uid) && uid !== 0 ? { uid, gid } : null;
    } catch {
      return null;
    }
  };
  const found = lookup('cpfiletest') ?? lookup('nobody');
  if (found) return found;
  try {
    run('useradd', ['-M', '-r', 'cpfiletest']);
  } catch { /* reported below */ }
  const made = lookup('cpfiletest');
  if (!made) console.log('      SKIPPED: no non-root user (nobody, cpfiletest) and useradd failed');
  return made;
}
