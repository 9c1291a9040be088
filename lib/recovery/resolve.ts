/**
 * Recovery of a store whose last epoch is prepared and undecided (two-phase epochs, FORMAT.md R18):
 * the walk ended right after a PREPARE, so the journal cannot say whether the epoch commits. The
 * decision was taken elsewhere (a coordinator's database, an operator); recovery asks for it and
 * never guesses: without an answer it stops with EINDOUBT, changing nothing.
 *
 * The decision is made durable before recovery acts on it (R17, V2b): the COMMIT_PREPARED (for a
 * 'commit') or the ABORT (for an 'abort') is written where its PREPARE kept room for it, before
 * anything of the epoch is applied and before its direct appends are cut back. (Ending the log
 * before the epoch, V5, comes after the cut-back: were the abort not recorded first, a crash in
 * between would leave the epoch in doubt again with its appended bytes gone.)
 */
import { MARK_OFFSET, MARK_SIZE, RECORD_HEADER_SIZE, RecordType, commitPreparedSize, encodeMark, encodeRecord, nextMark, posOffset } from '../format.js';
import { type IO, writeFully } from '../io.js';
import type { SegmentInfo } from '../journal/segments.js';
import { CpError } from '../errors.js';
import type { LogCollector, PreparedAtEnd } from './scan.js';
import type { InDoubtEpoch, InDoubtReport, RecoverOptions } from './types.js';

/**
 * Ask for the decision of the epoch the walk left prepared, if any, and fold a 'commit' into what the
 * walk collected (its entries, its replay). Returns what the report says of it; null when the log
 * holds no undecided PREPARE. A dry run asks nobody and reports the epoch as undecided.
 */
export async function decideInDoubt(log: LogCollector, opts: RecoverOptions, storeId: string): Promise<InDoubtReport | null> {
  const p = log.prepared;
  if (!p) return null;
  const q: InDoubtEpoch = { id: p.id, epoch: p.epoch, storeId, dir: opts.dir };
  if (opts.dryRun) return { ...q, decision: null };
  const how = `decide it with the openStore option resolveInDoubt, or with cp-recover --commit-prepared ${p.id} (or --abort-prepared ${p.id})`;
  const details = { id: p.id, epoch: p.epoch, storeId };
  if (!opts.resolveInDoubt) {
    throw new CpError('EINDOUBT', `${opts.dir}: epoch ${p.epoch} is prepared (id ${p.id}) and its decision is not in the journal: ${how}`, { details });
  }
  let decision: unknown;
  try {
    decision = await opts.resolveInDoubt(q);
  } catch (e) {
    throw new CpError('EINDOUBT', `${opts.dir}: epoch ${p.epoch} is prepared (id ${p.id}) and resolveInDoubt failed: ${(e as Error)?.message ?? String(e)}; ${how}`, { cause: e, details });
  }
  if (decision !== 'commit' && decision !== 'abort') {
    throw new CpError('EINDOUBT', `${opts.dir}: resolveInDoubt returned ${describe(decision)} for epoch ${p.epoch} (id ${p.id}), not 'commit' or 'abort'`, { details });
  }
  if (decision === 'commit') log.commitPrepared(commitPreparedSize(p.id));
  return { ...q, decision };
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined || v === null) return String(v);
  return `a ${typeof v}`;
}

/**
 * (R17, V2b) Make the decision durable: first the record header just past where the decision ends
 * is zeroed (fdatasynced), so that the log ends right after the decision whatever the earlier life
 * of those bytes; then the COMMIT_PREPARED or ABORT is written at the end of its PREPARE
 * (fdatasynced). A crash between the two leaves the epoch in doubt again, to be asked again.
 */
export async function writeDecision(io: IO, segs: Map<number, SegmentInfo>, p: PreparedAtEnd, decision: 'commit' | 'abort', sync: boolean): Promise<void> {
  const seg = segs.get(p.seq);
  if (!seg) throw new CpError('EIO', `segment ${p.seq} of the prepared epoch ${p.epoch} disappeared during recovery`);
  const offset = posOffset(p.end);
  const rec = encodeRecord(decision === 'commit' ? { type: RecordType.COMMIT_PREPARED, id: p.id } : { type: RecordType.ABORT }, seg.salt, p.epoch, offset);
  // The decision may not end past the segment's durable high-water mark (R19): a PREPARE may end
  // right at it. The raised mark is made durable with the zeroed header below, before the decision.
  const raise = seg.mark !== null && seg.mark !== undefined && offset + rec.length > seg.mark ? nextMark(offset + rec.length, seg.size) : null;
  const fd = await io.open(seg.file, 'readwrite');
  try {
    if (raise !== null) await writeFully(io, fd, encodeMark(seg.salt, seg.seq, raise), 0, MARK_SIZE, MARK_OFFSET);
    // The PREPARE kept room for its decision and a segment end record (R18): both writes fit.
    if (offset + rec.length + RECORD_HEADER_SIZE <= seg.size) {
      await writeFully(io, fd, Buffer.alloc(RECORD_HEADER_SIZE), 0, RECORD_HEADER_SIZE, offset + rec.length);
      if (sync) await io.fdatasync(fd);
    } else if (raise !== null && sync) await io.fdatasync(fd);
    if (raise !== null) seg.mark = raise;
    await writeFully(io, fd, rec, 0, rec.length, offset);
    if (sync) await io.fdatasync(fd);
  } finally {
    await io.close(fd);
  }
}
