/**
 * readFile and writeFile, when their turn comes in the call queue: a whole file read through its
 * pending state, or replaced (a TRUNCATE or CREATE, then its WRITE records), atomically at the next
 * check like any change.
 */
import { CpError } from '../errors.js';
import { RecordType } from '../format.js';
import { readPending } from './read-through.js';
import type { StoreParts } from './parts.js';

/** The whole content of `n` (normalized), pending changes included; the caller queues this (Store.readFile). */
export async function readWhole(parts: StoreParts, n: string): Promise<Buffer> {
  const { pending } = parts;
  const ov = await pending.overlayOf(n);
  if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(n)} in store ${parts.dir}`);
  if (ov.size > 2 ** 31 - 1) throw new CpError('EINVAL', `${JSON.stringify(n)} is too large for readFile (${ov.size} bytes): open it and read in parts`);
  const buf = Buffer.alloc(ov.size);
  await readPending(parts, ov, n, 0, buf, 0, buf.length);
  pending.release(n);
  return buf;
}

/** Replace the content of `n` (normalized) with `bytes`, creating it; the caller queues this (Store.writeFile). */
export async function writeWhole(parts: StoreParts, n: string, bytes: Buffer): Promise<void> {
  const { catalog, pending, limits, writer, writes } = parts;
  if (catalog.open.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: write through its handle`);
  await writer.drain();
  let ov = await pending.overlayOf(n);
  if (!ov) {
    if (!pending.foundAbsent(n)) await pending.validate(n);
    pending.overlays.assertCanCreate(n);
    await limits.assertDirWritable(n);
    pending.closeBase(n);
    ov = pending.created(n, writer.append({ type: RecordType.CREATE, name: n }, catalog.building));
  } else {
    await limits.assertOneLink(n, ov);
    if (ov.nsPos < 0) await limits.assertChangeable(n, false);
    const p = writer.append({ type: RecordType.TRUNCATE, name: n, length: 0 }, catalog.building);
    ov.truncate(0, p);
    ov.touch(p);
  }
  writes.journalPieces(n, ov, 0, bytes);
  pending.release(n); // its base fd: nothing of the old content shows through
}
