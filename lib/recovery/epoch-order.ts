/**
 * The order rules of a journal's records (docs/FORMAT.md R3, R5 and R6), coded here only, for
 * recovery (lib/recovery/scan.ts) and for cp-recover's inspection (lib/recovery/inspect.ts): which
 * epoch each record must carry (R3), and how an entry list continues across CATALOG, ENTRIES and
 * COMMIT records (R5, R6), and how a PREPARE is followed by its decision (R18). A torn write never produces a valid record that breaks them; a copied,
 * misdirected or stale-but-valid one does (R8).
 */
import { RECORD_FLAG_MORE, RecordType } from '../format.js';

/** What a valid record is, in the walk's terms; or why it cannot be where it is. */
export type OrderVerdict =
  /** The cursor segment's CATALOG (`more`: its list continues) or one of its ENTRIES continuations. */
  | { ok: true; role: 'catalog' | 'catalog-part'; more: boolean; first: boolean }
  /** Part of the entry list of the COMMIT of the current epoch, which follows. */
  | { ok: true; role: 'commit-part' }
  | { ok: true; role: 'record' | 'commit' | 'abort' | 'segend' | 'prepare' | 'commit-prepared' }
  | { ok: false; reason: 'catalog' | 'epoch' | 'entries'; want: number; message: string };

export class EpochOrder {
  /** The epoch the next data record or COMMIT carries; -1 before the first CATALOG. */
  expect = -1;
  private started = false;
  /** The CATALOG (or ENTRIES part of one) just read said MORE: its next part must follow at once. */
  private catalogMore = false;
  /** That catalog is the first record of the walk (the cursor segment's catalog). */
  private inFirst = false;
  /** ENTRIES records of the current epoch were read and their COMMIT has not come yet. */
  commitPending = false;
  /** A PREPARE of the current epoch was read and its decision has not come yet (R18): the epoch is in doubt. */
  prepared = false;

  /** The walk ended in the middle of the first catalog's entry list. */
  get firstCatalogIncomplete(): boolean {
    return this.catalogMore && this.inFirst;
  }

  next(type: number, epoch: number, flags: number): OrderVerdict {
    const more = (flags & RECORD_FLAG_MORE) !== 0;
    if (!this.started) {
      this.started = true;
      // The walk starts at a CATALOG (R3).
      if (type !== RecordType.CATALOG) return { ok: false, reason: 'catalog', want: -1, message: 'the segment does not begin with a catalog record' };
      this.expect = epoch + 1;
      this.catalogMore = more;
      this.inFirst = true;
      return { ok: true, role: 'catalog', more, first: true };
    }
    if (this.catalogMore) {
      // A catalog's list continues in the very next record (R5).
      const want = this.expect - 1;
      if (type !== RecordType.ENTRIES || epoch !== want) {
        return { ok: false, reason: 'entries', want, message: `a catalog's entry list continues with an entries record of epoch ${want}` };
      }
      this.catalogMore = more;
      const first = this.inFirst;
      if (!more) this.inFirst = false;
      return { ok: true, role: 'catalog-part', more, first };
    }
    this.inFirst = false;
    if (this.prepared) return this.decision(type, epoch);
    if (type === RecordType.SEGEND) {
      if (this.commitPending) return { ok: false, reason: 'entries', want: this.expect, message: 'a commit\'s entry list straddles a segment end' };
      return { ok: true, role: 'segend' };
    }
    // R3: records carry the epoch after the last COMMIT; a later segment's CATALOG the last committed one.
    const want = type === RecordType.CATALOG ? this.expect - 1 : this.expect;
    if (epoch !== want) return { ok: false, reason: 'epoch', want, message: `the log continues with epoch ${want}` };
    switch (type) {
      case RecordType.CATALOG:
        // A catalog inside a commit's list: the list may not straddle segments (R6).
        if (this.commitPending) return { ok: false, reason: 'entries', want, message: 'a commit\'s entry list is interrupted by a catalog' };
        this.catalogMore = more;
        return { ok: true, role: 'catalog', more, first: false };
      case RecordType.ENTRIES:
        if (!more) return { ok: false, reason: 'entries', want, message: 'an entries record of a commit without the MORE flag' };
        this.commitPending = true;
        return { ok: true, role: 'commit-part' };
      case RecordType.COMMIT:
        this.commitPending = false;
        this.expect++;
        return { ok: true, role: 'commit' };
      case RecordType.PREPARE:
        // Ends the epoch like a COMMIT (its list's parts before it, R6), but undecided (R18).
        this.commitPending = false;
        this.prepared = true;
        return { ok: true, role: 'prepare' };
      case RecordType.COMMIT_PREPARED:
        return { ok: false, reason: 'epoch', want, message: 'a commit-prepared record follows no prepare' };
      case RecordType.ABORT:
        if (this.commitPending) return { ok: false, reason: 'entries', want, message: 'a commit\'s entry list is interrupted by an abort' };
        return { ok: true, role: 'abort' };
      default:
        if (this.commitPending) return { ok: false, reason: 'entries', want, message: 'a commit\'s entry list is interrupted by a data record' };
        return { ok: true, role: 'record' };
    }
  }

  /** The record after a PREPARE: its decision, COMMIT_PREPARED or ABORT of the same epoch, and nothing else (R18). */
  private decision(type: number, epoch: number): OrderVerdict {
    const want = this.expect;
    if (epoch !== want || (type !== RecordType.COMMIT_PREPARED && type !== RecordType.ABORT)) {
      return { ok: false, reason: 'epoch', want, message: `the prepared epoch ${want} is followed by its decision (commit-prepared or abort of epoch ${want})` };
    }
    this.prepared = false;
    if (type === RecordType.ABORT) return { ok: true, role: 'abort' };
    this.expect++;
    return { ok: true, role: 'commit-prepared' };
  }
}
