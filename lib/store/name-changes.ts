/**
 * Unlink and rename, when their turn comes in the call queue: refused now what applying would refuse,
 * then journaled, with a tombstone for the name that goes away (lib/store/namespace.ts). An open
 * entry's file is never renamed or unlinked (which direct appends rely on: FORMAT.md "Direct appends").
 */
import { CpError } from '../errors.js';
import { RecordType } from '../format.js';
import { isENOENT } from '../io.js';
import { openInStore } from '../names.js';
import type { StoreParts } from './parts.js';

/** Unlink the file `n` (normalized); the caller queues this (Store.unlink). */
export async function unlinkNow(parts: StoreParts, n: string): Promise<void> {
  const { catalog, pending, limits, writer } = parts;
  if (catalog.open.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: close it before unlinking`);
  const ov = await pending.overlayOf(n);
  if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(n)} in store ${parts.dir}`);
  if (ov.nsPos < 0) {
    await limits.assertChangeable(n, true);
    await limits.assertDirWritable(n);
  }
  pending.closeFd(ov.baseFd);
  const tomb = pending.tombstone(n);
  tomb.touch(writer.append({ type: RecordType.UNLINK, name: n }, catalog.building));
  catalog.forget(n);
}

/** Rename the file `a` to `b` (both normalized), replacing `b`; the caller queues this (Store.rename). */
export async function renameNow(parts: StoreParts, a: string, b: string): Promise<void> {
  const { catalog, pending, limits, writer, io } = parts;
  for (const n of [a, b]) if (catalog.open.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: close it before renaming`);
  const ov = await pending.overlayOf(a);
  if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(a)} in store ${parts.dir}`);
  if (a === b) return;
  await pending.validate(b);
  pending.overlays.assertCanCreate(b);
  const target = await pending.overlayOf(b).catch((e) => {
    if (e instanceof CpError && e.code === 'EINVAL') throw new CpError('EINVAL', `cannot rename onto ${JSON.stringify(b)}: ${e.message}`);
    throw e;
  });
  if (ov.nsPos < 0) {
    await limits.assertChangeable(a, true);
    await limits.assertDirWritable(a);
  }
  if (target && target.nsPos < 0) await limits.assertChangeable(b, true);
  await limits.assertDirWritable(b);
  if (target) pending.closeFd(target.baseFd);
  // After the move the file is not at its new name on disk until the rename is applied: hold
  // its content by fd from now on.
  if (ov.baseFd === null && ov.nsPos < 0 && ov.baseLimit > 0) {
    try {
      ov.baseFd = await openInStore(io, parts.dir, a, 'read');
    } catch (e) {
      if (!isENOENT(e)) throw e;
    }
  }
  const p = writer.append({ type: RecordType.RENAME, from: a, to: b }, catalog.building);
  // Until the RENAME is applied (behind its fence, FORMAT.md R12) the file is not at `b` on disk:
  // the overlay serves it (Overlay.settle keeps it while nsPos is pending).
  ov.nsPos = p;
  const tomb = pending.tombstone(a);
  pending.overlays.set(b, ov);
  tomb.touch(p);
  ov.touch(p);
  catalog.forget(a);
  catalog.forget(b);
}
