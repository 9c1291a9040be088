/**
 * Where a handle's write goes: into the journal (records the overlay then reads back), or, for bulk
 * appends past a file's committed end, straight to the file (direct appends: FORMAT.md "Direct
 * appends"). Called in call order, when the write's turn comes (Store.writeEntry).
 */
import { posSeq } from '../format.js';
import type { JournalWriter } from '../journal/writer.js';
import type { Catalog } from './catalog.js';
import type { Entry } from './host.js';
import type { Overlay } from './overlay.js';

/** What the write path needs of the apply schedule (lib/store/apply-schedule.ts). */
export interface AppliedState {
  /** The last epoch the control file durably records as applied. */
  readonly appliedEpoch: number;
  /** The end of the last COMMIT known durable. */
  readonly durableEnd: number;
  /** The epoch of that COMMIT. */
  readonly durableEpoch: number;
  /** Whether a write may wait for an apply of the durable epochs now (ApplySchedule.mayWait). */
  mayWait(): boolean;
  /** Start that apply in the background, at most once per commit. */
  applySoon(): void;
}

export class WritePath {
  /**
   * `directMin`: StoreOptions.directAppendMin (Infinity when off). `applied`: the apply schedule
   * (ApplySchedule), for the last epoch the control file durably records as applied (learnt only
   * once durable) and for a bulk append that only an apply of committed epochs keeps out of the file.
   */
  constructor(private writer: JournalWriter, private catalog: Catalog, private directMin: number, private applied: AppliedState) {}

  /** Lay out the write of `data` at `at` in `e`'s file. */
  writeNow(e: Entry, at: number, data: Uint8Array): void {
    this.writer.throwIfFailed();
    const ov = e.overlay;
    const n = data.length;
    if (n > 0) {
      const building = this.catalog.building;
      if (ov.modEpoch !== building) {
        ov.modEpoch = building;
        ov.startSize = ov.size;
      }
      const from = this.directStart(e.name, ov, at + n);
      if (from >= at + n) {
        this.journalWrite(e.name, ov, at, data);
      } else if (from <= at) {
        this.directWrite(e.name, ov, at, data);
      } else {
        // A write straddling directFrom is split.
        this.journalWrite(e.name, ov, at, data.subarray(0, from - at));
        this.directWrite(e.name, ov, from, data.subarray(from - at));
      }
    }
  }

  /**
   * Where bytes of a write ending at `end` may go straight to the file in this epoch: from the
   * returned offset on (Infinity: nowhere). Allowed only (FORMAT.md "Direct appends")
   *   - while nothing pending creates, renames or truncates the file, and only past its size when
   *     direct appends began in the epoch: every pending record of the file then touches bytes below
   *     that point, so the direct bytes can be written before those records are applied without
   *     either overwriting the other;
   *   - for a file the last COMMIT (or CATALOG) lists as open with its committed size: recovery cuts
   *     it back to that size (R11), which is how an epoch that does not commit loses its direct bytes;
   *   - for a file the commit before the last one listed as open too, or listed open since an epoch
   *     the control file durably records as applied.
   */
  private directStart(name: string, ov: Overlay, end: number): number {
    const building = this.catalog.building;
    if (ov.directEpoch === building) return ov.truncs.length === 0 && ov.nsPos < 0 ? ov.directFrom : Infinity;
    if (!this.bulkAppend(ov, end)) return Infinity;
    const why = this.blocked(name, ov);
    if (why !== 'no') {
      // Only pending records of committed epochs (the create of a file opened 'w' in the previous
      // epoch, a truncate), or an apply not yet recorded, keep this bulk append in the journal:
      // applying them now, not after the idle delay, lets the rest of the epoch go direct.
      if (why === 'apply') this.applied.applySoon();
      return Infinity;
    }
    ov.directEpoch = building;
    ov.directBytes = 0;
    ov.directFrom = ov.size;
    return ov.directFrom;
  }

  /**
   * Small appends stay in the journal (one fsync per check); a file's appends go direct once they
   * reach directMin past its committed size in the epoch (committedSize), or from the first one when
   * the previous epoch appended at least that much directly (a stream of bulk appends). Also asked
   * before writeNow has marked the file written in this epoch (waitsForApply).
   */
  private bulkAppend(ov: Overlay, end: number): boolean {
    if (end <= ov.size || !ov.exists) return false;
    const streaming = ov.directEpoch === this.catalog.building - 1 && ov.directBytes >= this.directMin;
    return streaming || end - this.committedSize(ov) >= this.directMin;
  }

  /** The file's committed size: ov.startSize once this epoch wrote it (writeNow), else its size. */
  private committedSize(ov: Overlay): number {
    return ov.modEpoch === this.catalog.building ? ov.startSize : ov.size;
  }

  /**
   * What keeps a bulk append of `name` out of the file: nothing ('no'), only what an apply of the
   * durable epochs removes ('apply'), or something no apply removes now ('yes').
   */
  private blocked(name: string, ov: Overlay): 'no' | 'apply' | 'yes' {
    const logged = this.catalog.logged.get(name);
    if (!logged || logged.size !== this.committedSize(ov)) return 'yes';
    // Pending creates, renames or truncates: they end at their apply if their epochs committed.
    let why: 'no' | 'apply' = 'no';
    if (ov.truncs.length !== 0 || ov.nsPos >= 0) {
      const end = this.applied.durableEnd;
      if (ov.nsPos >= end || ov.truncs.some((t) => t.pos >= end)) return 'yes';
      why = 'apply';
    }
    // Listed open by the commit before the last one too: if damage to the last epoch's records
    // (indistinguishable from a torn write, R8) rolls recovery back past it, the catalog recovered
    // still has the file with a committed size to cut these bytes back to (FORMAT.md, direct appends).
    // Or listed open since an epoch that is applied, durably: recovery never ends before the applied
    // epoch the control file records (R8), so the catalog it recovers lists the file too. That is
    // what lets a file created one epoch ago (P2's new file) go direct once its creation is applied.
    if (logged.since >= this.catalog.building - 1 && logged.since > this.applied.appliedEpoch) {
      // Only an apply through `since` helps, and only a durable COMMIT is applied.
      if (logged.since > this.applied.durableEpoch) return 'yes';
      why = 'apply';
    }
    return why;
  }

  /**
   * Whether the write of `n` bytes at `at` of `e`'s file should wait for an apply of the durable
   * epochs first (Store.writeEntry): it is a bulk append that nothing but that apply keeps out of
   * the file, and the lag is small enough to apply at once (ApplySchedule.mayWait). Waiting costs
   * the apply, which runs anyway; journaling instead writes the epoch's bytes twice (P2 with a file
   * created in the timed loop journaled its second epoch whole while the first was applied).
   */
  waitsForApply(e: Entry, at: number, n: number): boolean {
    const ov = e.overlay;
    if (n === 0 || ov.directEpoch === this.catalog.building || !this.bulkAppend(ov, at + n)) return false;
    return this.blocked(e.name, ov) === 'apply' && this.applied.mayWait();
  }

  private journalWrite(name: string, ov: Overlay, at: number, data: Uint8Array): void {
    // Small sequential writes continue the last record: no piece objects on this path.
    const jOff = this.writer.continueWrite(name, at, data);
    if (jOff >= 0) {
      const p = this.writer.lastRecordPos;
      ov.insert(at, data.length, this.writer.lastRecordIndex, posSeq(p), jOff, p);
      ov.touch(p);
    } else this.journalPieces(name, ov, at, data);
  }

  /** Journal `data` at `at` of `name` in new WRITE records (split at the payload cap) and point the overlay at them. */
  journalPieces(name: string, ov: Overlay, at: number, data: Uint8Array): void {
    for (const p of this.writer.appendWrite(name, at, data, this.catalog.building)) {
      ov.insert(p.fileStart, p.len, p.index, posSeq(p.pos), p.jOff, p.pos);
      ov.touch(p.pos);
    }
  }

  private directWrite(name: string, ov: Overlay, at: number, data: Uint8Array): void {
    // ov.startSize is the committed size all through a direct epoch (checked in directStart).
    if (!this.writer.continueDirect(name, at, data)) this.writer.appendDirect(name, ov.startSize, at, data);
    ov.directMark = this.writer.directMark;
    ov.directBytes += data.length;
    if (at + data.length > ov.size) ov.size = at + data.length;
    // Keep the overlay (and its size) until the epoch is applied, like any pending change.
    ov.touch(this.writer.position);
  }
}
