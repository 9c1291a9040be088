/**
 * What the store refuses at the call rather than when the epoch is applied: files larger than the
 * file system takes, files or directories this process cannot change, files with other hard links.
 * Applying a committed epoch must not fail on something the call could have seen (FORMAT.md R12 runs
 * every record of a committed epoch).
 */
import * as path from 'node:path';
import { CpError, ioError } from '../errors.js';
import { type IO, isENOENT } from '../io.js';
import { storePath, quote } from '../names.js';
import type { Overlay } from './overlay.js';

export class StoreLimits {
  constructor(private io: IO, private dir: string, private maxSize: number) {}

  /** The largest file the store's file system takes (probed at open). */
  get maxFileSize(): number {
    return this.maxSize;
  }

  /** A write or truncate to `end` bytes, beyond what the file system (probed at open) accepts. */
  tooLarge(name: string, what: string, end: number): CpError {
    if (end > Number.MAX_SAFE_INTEGER && this.maxSize >= Number.MAX_SAFE_INTEGER) return new CpError('EINVAL', `${what} past the largest supported position (2^53 - 1) in ${JSON.stringify(name)}`);
    return new CpError('EFBIG', `${what} of ${JSON.stringify(name)} to ${end} bytes: the store's file system takes files of at most ${this.maxSize} bytes`);
  }

  /**
   * Refuse now what applying would be refused: `name`'s file on disk cannot be opened for writing
   * (mode bits, immutable, read-only file system). `removing` (unlink, rename): only what also
   * forbids removing or renaming it (EPERM: immutable or append-only; EROFS); mode bits do not.
   */
  async assertChangeable(name: string, removing: boolean): Promise<void> {
    let fd: number;
    try {
      fd = await this.io.open(storePath(this.dir, name), 'readwrite');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (isENOENT(e) || code === 'ENOTDIR' || (removing && code === 'EACCES')) return;
      throw ioError(e, `${JSON.stringify(name)} cannot be ${removing ? 'removed or renamed' : 'written'}`);
    }
    await this.io.close(fd);
  }

  /** Refuse now a name created or removed in a directory this process cannot change (its nearest existing one). */
  async assertDirWritable(name: string): Promise<void> {
    let d = path.dirname(storePath(this.dir, name));
    // ENOTDIR: a file pending unlink stands where a directory is to be (validate() allowed it); from
    // there on only a directory answers, so '/.' is asked for (a file says ENOTDIR to it).
    let underFile = false;
    for (;;) {
      try {
        await this.io.access(underFile ? `${d}/.` : d);
        return;
      } catch (e) {
        const notDir = (e as NodeJS.ErrnoException).code === 'ENOTDIR';
        if ((isENOENT(e) || notDir) && d.length > this.dir.length) {
          underFile ||= notDir;
          d = path.dirname(d);
          continue;
        }
        if (isENOENT(e)) return;
        throw ioError(e, `cannot create or remove names in ${d}`);
      }
    }
  }

  /** A file with other hard links is written by no store call (the other names would change too). */
  async assertOneLink(name: string, ov: Overlay): Promise<void> {
    let nlink = 1;
    if (ov.baseFd !== null) nlink = (await this.io.fstat(ov.baseFd)).nlink;
    else if (ov.nsPos < 0) nlink = (await this.io.lstat(storePath(this.dir, name)).catch(() => null))?.nlink ?? 1;
    if (nlink > 1) throw new CpError('EPATH', `${quote(name)} has ${nlink} hard links: cpfile opens such a file read-only (writing it would change the other names too)`);
  }
}
