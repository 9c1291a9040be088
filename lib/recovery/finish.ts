/**
 * Recovery phase 5, what it does to the store (the fresh segment is started by the orchestrator,
 * lib/recovery/index.ts): make what was read durable (FORMAT.md R10), apply the committed epochs
 * after the cursor (R11, R12), cut open files back to their committed sizes (R11), and make the log
 * end at the last COMMIT kept (R9). A dry run only measures what would be cut.
 */
import { RECORD_HEADER_SIZE, isZero as isAllZero, posSeq, posOffset } from '../format.js';
import { type IO, isENOENT, writeFully, readFully } from '../io.js';
import type { ControlWriter } from '../journal/control.js';
import type { SegmentFiles } from '../journal/segment-files.js';
import type { SegmentInfo } from '../journal/segments.js';
import { applyCommitted, EARLY_SYNC_BYTES } from '../store/applier.js';
import { CpError, ioError } from '../errors.js';
import { openInStore, inParent } from '../names.js';
import type { MetaPaths } from '../journal/paths.js';
import type { LogCollector } from './scan.js';
import type { ReplayPlan } from './plan.js';
import type { RecoveryReport } from './types.js';

/** A dry run: list the open entries whose file is longer than committed (the cut-backs a recovery would make). */
export async function previewCutBack(io: IO, dir: string, report: RecoveryReport, plan: ReplayPlan): Promise<void> {
  for (const e of report.entries) {
    // A file a replayed record reshapes takes no direct appends, and its size after the replay is the replay's.
    if (e.size === null || plan.reshaped.has(e.name)) continue;
    const len = await fileLength(io, dir, e.name);
    if (len !== null && len > e.size) report.cutBack.push({ name: e.name, size: e.size, from: len });
  }
  if (report.cutBack.length) {
    report.clean = false;
    for (const c of report.cutBack) plan.touched.add(c.name);
    report.filesTouched = [...plan.touched].sort();
  }
}

export interface ApplyInput {
  io: IO;
  dir: string;
  sync: boolean;
  segs: Map<number, SegmentInfo>;
  files: SegmentFiles;
  writer: ControlWriter;
  log: LogCollector;
  plan: ReplayPlan;
  report: RecoveryReport;
}

/** Apply the committed epochs after the replay's start (FORMAT.md R11, R12), then cut back (R11). */
export async function applyAndCutBack(a: ApplyInput): Promise<void> {
  const { plan, log, writer } = a;
  if (plan.staleControl) {
    const h = plan.hint!;
    await writer.write({ cursorSeq: h.cursorSeq, cursorOffset: h.cursorOffset, appliedEpoch: h.appliedEpoch });
  }
  if (log.lastCommitEnd > plan.startPos) {
    // Everything up to lastCommitEnd was validated by the walk; without an ABORT in the range,
    // every record there belongs to an epoch that commits (R12: the replay streams them).
    const validated = !log.aborts.some((p) => p >= plan.startPos && p < log.lastCommitEnd);
    const applied = await applyCommitted({ io: a.io, root: a.dir, segs: a.segs, files: a.files, control: writer, sync: a.sync, validated, dirsAt: plan.dirsAt, earlySync: EARLY_SYNC_BYTES }, log.lastCommitEnd)
      .catch((err) => { throw applyNeeds(err, plan.bytes, plan.touched.size); });
    for (const n of applied.names) plan.touched.add(n);
  }
  await cutBackEntries(a);
  a.report.filesTouched = [...plan.touched].sort();
}

/**
 * Direct appends of an epoch that did not commit lie past the committed size of an open entry: cut
 * every such file back, durably, before the cursor moves on (R11). (Without direct appends the
 * applied file has exactly its committed size and nothing is cut.) A version 1 entry carries no
 * size: its file is measured instead, for the catalog the fresh segment opens with.
 */
async function cutBackEntries(a: ApplyInput): Promise<void> {
  const { io, dir, report } = a;
  for (const e of report.entries) {
    if (e.size === null) {
      e.size = (await fileLength(io, dir, e.name)) ?? null;
      continue;
    }
    const from = await cutBack(io, dir, e.name, e.size, a.sync).catch((err) => {
      const c = ioError(err, `cutting ${JSON.stringify(e.name)} back to its committed size ${e.size} (uncommitted direct appends past it); the committed epochs stay in the journal until it can be done`);
      throw new CpError(c.code, c.message, { cause: err, details: { file: e.name, op: 'truncate' } });
    });
    if (from !== null) {
      report.cutBack.push({ name: e.name, size: e.size, from });
      a.plan.touched.add(e.name);
      report.clean = false;
    }
  }
}
/**
 * The length of the store file `name`, or null when it is missing or not a regular file. No symlink
 * is followed (names.ts): one in a parent directory is refused with EPATH, one at the name is no file.
 */
async function fileLength(io: IO, dir: string, name: string): Promise<number | null> {
  try {
    const st = await inParent(io, dir, name, (at) => io.lstat(at));
    return st !== null && st.isFile ? st.size : null;
  } catch (e) {
    if (e instanceof CpError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (isENOENT(e) || code === 'ENOTDIR') return null;
    throw ioError(e, `reading the size of ${name}`);
  }
}

/**
 * Truncate the store file `name` to `size` if it is longer; returns the length before, or null. The
 * file is opened as the applier opens it (names.ts openInStore: no symlink followed, one link), so a
 * symlink planted above it makes recovery fail with EPATH instead of cutting another file (a symlink
 * at the name is no file to cut).
 */
async function cutBack(io: IO, dir: string, name: string, size: number, sync: boolean): Promise<number | null> {
  const len = await fileLength(io, dir, name);
  if (len === null || len <= size) return null;
  const fd = await openInStore(io, dir, name, 'readwrite');
  if (fd === null) return null;
  try {
    const st = await io.fstat(fd);
    if (st.size <= size) return null;
    await io.ftruncate(fd, size);
    if (sync) await io.fdatasync(fd);
    return st.size;
  } finally {
    await io.close(fd);
  }
}

/**
 * A full disk while applying: at most the replayed bytes (in 4 KiB blocks) and a block per file
 * more are needed; say so. Other failures pass as they are (they name the file and the operation).
 */
function applyNeeds(err: unknown, replayBytes: number, files: number): unknown {
  if (!(err instanceof CpError) || err.code !== 'ENOSPC') return err;
  const BLOCK = 4096;
  const need = (Math.ceil(replayBytes / BLOCK) + files + 1) * BLOCK;
  return new CpError('ENOSPC', `${err.message}; free up to ${need} bytes (${Math.ceil(need / 1024)} KiB) and open the store again`, {
    cause: err.cause ?? err, details: { ...err.details, need },
  });
}

/**
 * Make the log end at global position `at` (the end of the last COMMIT kept): an all-zero record
 * header there reads as the log's end (R2, reason 'zero'), so nothing after it is ever walked
 * again. Blocks that are already zero (a hole, or never written) are left alone.
 */
export async function endLogAt(io: IO, segs: Map<number, SegmentInfo>, files: SegmentFiles, at: number, sync: boolean): Promise<void> {
  const seg = segs.get(posSeq(at));
  const offset = posOffset(at);
  if (!seg || offset + RECORD_HEADER_SIZE > seg.size) return;
  const head = Buffer.alloc(RECORD_HEADER_SIZE);
  await readFully(io, await files.fd(seg), head, 0, head.length, offset);
  if (isAllZero(head)) return;
  const fd = await io.open(seg.file, 'readwrite');
  try {
    await writeFully(io, fd, Buffer.alloc(RECORD_HEADER_SIZE), 0, RECORD_HEADER_SIZE, offset);
    if (sync) await io.fdatasync(fd);
  } finally {
    await io.close(fd);
  }
}

/** fdatasync the live log's segments and the control file, fsync the metadata directories (FORMAT.md R10). */
export async function syncLog(io: IO, dir: string, p: MetaPaths, segs: Map<number, SegmentInfo>, fromSeq: number): Promise<void> {
  for (const s of [...segs.values()].sort((a, b) => a.seq - b.seq)) {
    if (s.seq < fromSeq) continue;
    const fd = await io.open(s.file, 'readwrite');
    try {
      // A segment the flusher had just started may have lost its (unsynced) sizing while writes into
      // it survived: give it its size back before the cursor can move into it.
      const st = await io.fstat(fd);
      if (st.size < s.size) {
        await io.ftruncate(fd, s.size);
        await io.fsync(fd);
      } else {
        await io.fdatasync(fd);
      }
    } finally {
      await io.close(fd);
    }
  }
  const fd = await io.open(p.control, 'readwrite');
  try {
    await io.fdatasync(fd);
  } finally {
    await io.close(fd);
  }
  await io.fsyncDir(p.journal);
  await io.fsyncDir(p.meta);
  await io.fsyncDir(dir);
}
