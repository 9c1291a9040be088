/**
 * The copy of a damaged journal that a forced recovery makes before it acts (FORMAT.md R8:
 * `.cpfile/journal.broken-<time>/`), so that nothing `force` gives up is gone for good.
 */
import * as path from 'node:path';
import { type IO, isENOENT, writeFully } from '../io.js';
import { journalFilePath } from '../journal/paths.js';

/** Where copyJournalAside builds its copy before renaming it into place. */
export const PARTIAL_COPY = 'journal.broken-partial';

/**
 * Copy the journal to .cpfile/journal.broken-<time>/ before forcing past corruption. Sparse: only
 * the non-zero 4 KiB blocks are written and each copy is cut to its source's size, so a mostly
 * unwritten segment costs what it holds, not its size. Built under a temporary name, synced, then
 * renamed into place: a killed run leaves no copy that looks complete, and the next run removes
 * what it left.
 */
export async function copyJournalAside(io: IO, journalDir: string, metaDir: string, sync: boolean): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dest = path.join(metaDir, `journal.broken-${stamp}`);
  const tmp = path.join(metaDir, PARTIAL_COPY);
  await removeTree(io, tmp);
  await io.mkdir(tmp);
  const BLOCK = 4096;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const name of await io.readdir(journalDir)) {
    const src = await io.open(journalFilePath(journalDir, name), 'read');
    try {
      const dst = await io.open(path.join(tmp, name), 'createExcl');
      try {
        const st = await io.fstat(src);
        for (let off = 0; off < st.size;) {
          const n = await io.read(src, buf, 0, Math.min(buf.length, st.size - off), off);
          if (n <= 0) break;
          // Write each run of blocks holding a non-zero byte; all-zero blocks stay holes.
          let run = -1;
          for (let b = 0; b < n; b += BLOCK) {
            const nonZero = !isZero(buf, b, Math.min(b + BLOCK, n));
            if (nonZero && run < 0) run = b;
            if (!nonZero && run >= 0) {
              await writeFully(io, dst, buf, run, b - run, off + run);
              run = -1;
            }
          }
          if (run >= 0) await writeFully(io, dst, buf, run, n - run, off + run);
          off += n;
        }
        await io.ftruncate(dst, st.size);
        if (sync) await io.fsync(dst);
      } finally {
        await io.close(dst);
      }
    } finally {
      await io.close(src);
    }
  }
  if (sync) await io.fsyncDir(tmp);
  await io.rename(tmp, dest);
  if (sync) await io.fsyncDir(metaDir);
  return dest;
}

const ZERO_BLOCK = Buffer.alloc(4096);
function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.compare(ZERO_BLOCK, 0, end - start, start, end) === 0;
}

/** Remove a directory of files (a partial copy a killed run left), if it exists. */
async function removeTree(io: IO, dir: string): Promise<void> {
  let names: string[];
  try {
    names = await io.readdir(dir);
  } catch (e) {
    if (isENOENT(e)) return;
    throw e;
  }
  for (const n of names) await io.unlink(path.join(dir, n));
  await io.rmdir(dir);
}
