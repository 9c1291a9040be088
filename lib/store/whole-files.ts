/**
 * readFile, writeFile and appendFile, when their turn comes in the call queue: a whole file read
 * through its pending state, replaced (a TRUNCATE or CREATE, then its WRITE records) or appended to
 * (creating it), atomically at the next check like any change.
 */
import { CpError } from '../errors.js';
import { RecordType } from '../format.js';
import { readPending } from './read-through.js';
import type { Overlay } from './overlay.js';
import type { StoreParts } from './parts.js';

/** The whole content of `n` (normalized), pending changes included; the caller queues this (Store.readFile). */
export async function readWhole(parts: StoreParts, n: string): Promise<Buffer> {
  const { pending } = parts;
  const ov = await pending.overlayOf(n);
  if (!ov) throw absent(parts, n);
  if (ov.size > 2 ** 31 - 1) throw new CpError('EINVAL', `${JSON.stringify(n)} is too large for readFile (${ov.size} bytes): open it and read in parts`);
  const buf = Buffer.alloc(ov.size);
  await readPending(parts, ov, n, 0, buf, 0, buf.length);
  pending.release(n);
  return buf;
}

/** Replace the content of `n` (normalized) with `bytes`, creating it; the caller queues this (Store.writeFile). */
export async function writeWhole(parts: StoreParts, n: string, bytes: Buffer): Promise<void> {
  const ov = await writableOverlay(parts, n, true);
  parts.writes.journalPieces(n, ov, 0, bytes);
  parts.pending.release(n); // its base fd: nothing of the old content shows through
}

/** The error for a name with no file: EINVAL for a directory-to-be (as for one on disk), else ENOENT. */
export function absent(parts: StoreParts, n: string): CpError {
  if (parts.pending.overlays.hasUnder(n)) return new CpError('EINVAL', `${JSON.stringify(n)} is a directory (of pending names)`);
  return new CpError('ENOENT', `no such file ${JSON.stringify(n)} in store ${parts.dir}`);
}

/**
 * The overlay `n` (normalized) is written through by a whole-file call (appendFile, copyFile): an
 * open name is EBUSY (as writeFile); a missing file is created (CREATE), an existing one checked
 * writable (one link, mode bits) and, with `truncate`, cut to 0. The caller queues this and releases `n`.
 */
export async function writableOverlay(parts: StoreParts, n: string, truncate: boolean): Promise<Overlay> {
  const { catalog, pending, limits, writer } = parts;
  if (catalog.open.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: write through its handle`);
  await writer.drain();
  // With nothing pending for the name, it is looked up on disk (lstat), and where it is absent its
  // directory must take a new name (access): both are asked at once, one round trip through the
  // thread pool instead of two (P8: 1,000 writeFile calls went from 2 x ~100 us each). The access
  // answer is used only on the create path, and only after the lookup's own errors.
  const onDisk = pending.overlays.get(n) === undefined;
  const lookup = pending.overlayOf(n);
  const dirCheck = onDisk ? settled(limits.assertDirWritable(n)) : null;
  const ov = await lookup;
  if (!ov) {
    if (!pending.foundAbsent(n)) await pending.validate(n);
    pending.overlays.assertCanCreate(n);
    if (dirCheck) {
      const refusal = await dirCheck;
      if (refusal) throw refusal;
    } else {
      await limits.assertDirWritable(n);
    }
    pending.closeBase(n);
    return pending.created(n, writer.append({ type: RecordType.CREATE, name: n }, catalog.building));
  }
  await limits.assertOneLink(n, ov);
  if (ov.nsPos < 0) await limits.assertChangeable(n, false);
  if (truncate) {
    const p = writer.append({ type: RecordType.TRUNCATE, name: n, length: 0 }, catalog.building);
    ov.truncate(0, p);
    ov.touch(p);
  }
  return ov;
}

/** Append `bytes` to `n` (normalized), creating it; the caller queues this (Store.appendFile). */
export async function appendWhole(parts: StoreParts, n: string, bytes: Buffer): Promise<void> {
  if (bytes.length > parts.limits.maxFileSize) throw parts.limits.tooLarge(n, 'appendFile', bytes.length);
  const ov = await writableOverlay(parts, n, false);
  const end = ov.size + bytes.length;
  if (end > parts.limits.maxFileSize) {
    parts.pending.release(n);
    throw parts.limits.tooLarge(n, 'appendFile', end);
  }
  parts.writes.journalPieces(n, ov, ov.size, bytes);
  parts.pending.release(n);
}

/** `p`'s rejection as a value (null when it resolved): a check started early, whose answer may go unused, never rejects unhandled. */
function settled(p: Promise<void>): Promise<unknown> {
  return p.then(() => null, (e: unknown) => e);
}
