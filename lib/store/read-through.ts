/**
 * Reading a file as the store's calls see it: its pending overlay's pieces come from the journal
 * (bytes written but not applied yet), from the file itself (its base, and direct appends once the
 * flusher has written them), or are zeros (past a truncate, or a hole).
 */
import { CpError, ioError } from '../errors.js';
import { pos } from '../format.js';
import { type IO, readFully, isENOENT } from '../io.js';
import type { JournalWriter } from '../journal/writer.js';
import { openInStore } from '../names.js';
import type { Overlay } from './overlay.js';

export interface ReadDeps {
  io: IO;
  dir: string;
  writer: JournalWriter;
}

/** Read `len` bytes of `name` (whose overlay is `ov`) from `start` into buf[off..]; resolves with the count read. */
export async function readPending(deps: ReadDeps, ov: Overlay, name: string, start: number, buf: Uint8Array, off: number, len: number): Promise<number> {
  const { io, dir, writer } = deps;
  const end = Math.min(start + len, ov.size);
  if (start >= end) return 0;
  // Direct appends are read back from the file itself, once the flusher has written them.
  if (ov.directMark > writer.directDone) await writer.whenDirect(ov.directMark);
  for (const piece of ov.pieces(start, end)) {
    const into = off + (piece.start - start);
    const n = piece.end - piece.start;
    if (piece.ext) {
      const e = piece.ext;
      const jAt = e.jOff + (piece.start - e.start);
      await writer.whenWritten(pos(e.seq, jAt + n));
      await writer.read(e.index, jAt, buf, into, n);
      continue;
    }
    const baseEnd = Math.min(piece.end, ov.baseLimit);
    let got = 0;
    if (piece.start < baseEnd) {
      // No base fd yet: a new file whose creation has been applied since (settled). Its name is
      // stable: an open entry's name can only see data operations.
      if (ov.baseFd === null && ov.nsPos < 0) {
        try {
          ov.baseFd = await openInStore(io, dir, name, 'read');
        } catch (e) {
          if (e instanceof CpError) throw e;
          if (!isENOENT(e)) throw ioError(e, `opening ${name}`);
        }
      }
      if (ov.baseFd !== null) got = await readFully(io, ov.baseFd, buf, into, baseEnd - piece.start, piece.start);
    }
    if (got < n) buf.fill(0, into + got, into + n);
  }
  return end - start;
}
