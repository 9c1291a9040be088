/**
 * copyFile, when its turn comes in the call queue: the source's content as this store sees it
 * (pending changes included) replaces the target's (created when missing), journaled like a
 * writeFile, atomically at the next check. The content moves in chunks of COPY_CHUNK bytes, each
 * handed to the journal before the next is read, waiting on the writer's back-pressure: a copy of
 * any size holds a bounded amount of memory.
 */
import { CpError } from '../errors.js';
import { readPending } from './read-through.js';
import { absent, writableOverlay } from './whole-files.js';
import type { StoreParts } from './parts.js';

export const COPY_CHUNK = 1 << 20;

/** Copy `a` to `b` (both normalized); `excl`: COPYFILE_EXCL (EEXIST when `b` exists). */
export async function copyNow(parts: StoreParts, a: string, b: string, excl: boolean): Promise<void> {
  const { catalog, pending, writer, writes } = parts;
  if (catalog.open.has(b)) throw new CpError('EBUSY', `${JSON.stringify(b)} is open: write through its handle`);
  const src = await pending.overlayOf(a);
  if (!src) throw absent(parts, a);
  try {
    if (excl && (a === b || (await pending.overlayOf(b)) !== null)) {
      throw new CpError('EEXIST', `copyFile with COPYFILE_EXCL: ${JSON.stringify(b)} exists in store ${parts.dir}`);
    }
    // As fs (libuv): copying a file onto itself changes nothing.
    if (a === b) return;
    const size = src.size;
    const ov = await writableOverlay(parts, b, true);
    for (let at = 0; at < size; at += COPY_CHUNK) {
      // A fresh buffer each time: the journal may still hold the last one until the flusher wrote it.
      const chunk = Buffer.allocUnsafe(Math.min(COPY_CHUNK, size - at));
      await readPending(parts, src, a, at, chunk, 0, chunk.length);
      writes.journalPieces(b, ov, at, chunk);
      if (writer.congested) await writer.drain();
    }
  } finally {
    pending.release(b);
    pending.release(a);
  }
}
