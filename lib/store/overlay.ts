/**
 * A file's pending state as the store sees it, on the main thread: which byte ranges live in the
 * journal (not yet applied), the logical size, and how much of the on-disk base file still shows
 * through. Reads consult the extents first, then the base file below `baseLimit`, then zeros.
 *
 * The applier works through the journal in order, so at any moment the file on disk is the state
 * after every applied operation, and the overlay only needs what comes after: settle(appliedPos)
 * drops the extents and truncates that are applied. It cannot do that while a namespace operation
 * (create, rename into this name) is pending: until that is applied the file is not at this name on
 * disk, and the base must keep coming from the extents or the fd opened before.
 */

export interface Extent {
  start: number;
  end: number;
  /** Journal segment (file index and seq) and byte offset of the byte at `start`. */
  index: number;
  seq: number;
  jOff: number;
  /** Journal position of the record holding it. */
  pos: number;
}

export class Overlay {
  /** Sorted by start, non-overlapping. */
  extents: Extent[] = [];
  /** Base file bytes at or beyond this offset are not visible (a pending truncate or a new file). */
  baseLimit: number;
  /** Journal position of the last pending operation on this name; -1 when nothing is pending. */
  lastPos = -1;
  /** Pending truncates (a create counts as a truncate to 0). */
  truncs: { pos: number; len: number }[] = [];
  /** Position of a pending create of, or rename into, this name; -1 when none is pending. */
  nsPos = -1;
  /** The epoch in which a write last changed this file, and the size before it (the committed size). */
  modEpoch = -1;
  startSize = 0;
  /**
   * Direct appends (WritePath.directStart, lib/store/write-path.ts): in epoch `directEpoch`, bytes at or past `directFrom` go
   * straight to the data file, which is cut back to `startSize` (the committed size) if the epoch
   * does not commit. Nothing pending touches the file at or past directFrom, so reads there come from
   * the base file, once the flusher has written up to `directMark` (JournalWriter.directMark).
   */
  directEpoch = -1;
  /** Bytes appended directly in directEpoch. */
  directBytes = 0;
  directFrom = 0;
  directMark = 0;

  constructor(
    /** Read-only fd on the base file, or null when there is none (new file) or it is not open yet. */
    public baseFd: number | null,
    public size: number,
    public exists: boolean,
    baseVisible: boolean,
  ) {
    this.baseLimit = baseVisible ? Infinity : 0;
  }

  /** A pending operation on this name was journaled at `p`. */
  touch(p: number): void {
    if (p > this.lastPos) this.lastPos = p;
  }

  /** Index of the first extent whose end is after `at`. */
  private firstAfter(at: number): number {
    let lo = 0;
    let hi = this.extents.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.extents[mid].end <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Record that [start, start+len) now lives at (index, jOff). */
  insert(start: number, len: number, index: number, seq: number, jOff: number, pos: number): void {
    if (len <= 0) return;
    const end = start + len;
    // Fast path: a write at or past the end of the last extent (appends, sequential writes).
    const last = this.extents[this.extents.length - 1];
    if (!last || last.end <= start) {
      if (last && last.end === start && last.pos === pos && last.index === index && last.seq === seq && last.jOff + (last.end - last.start) === jOff) {
        last.end = end;
      } else {
        this.extents.push({ start, end, index, seq, jOff, pos });
      }
      if (end > this.size) this.size = end;
      return;
    }
    const fresh: Extent = { start, end, index, seq, jOff, pos };
    let i = this.firstAfter(start);
    const replace: Extent[] = [];
    let j = i;
    while (j < this.extents.length && this.extents[j].start < end) {
      const e = this.extents[j];
      if (e.start < start) replace.push({ ...e, end: start });
      if (e.end > end) replace.push({ ...e, start: end, jOff: e.jOff + (end - e.start) });
      j++;
    }
    // Merge with a neighbour that continues in the same place of the journal (coalesced records).
    const left = replace.length && replace[0].end === start ? null : this.extents[i - 1];
    if (left && left.end === start && left.pos === pos && left.index === index && left.seq === seq && left.jOff + (left.end - left.start) === jOff) {
      i--;
      fresh.start = left.start;
      fresh.jOff = left.jOff;
    }
    const out = replace.filter((r) => r.end <= start);
    out.push(fresh);
    for (const r of replace) if (r.start >= end) out.push(r);
    this.extents.splice(i, j - i, ...out);
    if (end > this.size) this.size = end;
  }

  truncate(len: number, pos: number): void {
    this.truncs.push({ pos, len });
    const i = this.firstAfter(len);
    if (i < this.extents.length) {
      const e = this.extents[i];
      if (e.start < len) {
        this.extents[i] = { ...e, end: len };
        this.extents.length = i + 1;
      } else {
        this.extents.length = i;
      }
    }
    if (len < this.baseLimit) this.baseLimit = len;
    this.size = len;
  }

  /** Split [start, end) into pieces served by an extent or by the base/zeros. */
  pieces(start: number, end: number): { start: number; end: number; ext: Extent | null }[] {
    const out: { start: number; end: number; ext: Extent | null }[] = [];
    let at = start;
    let i = this.firstAfter(start);
    while (at < end) {
      const e = this.extents[i];
      if (!e || e.start >= end) {
        out.push({ start: at, end, ext: null });
        break;
      }
      if (e.start > at) {
        out.push({ start: at, end: e.start, ext: null });
        at = e.start;
      }
      const stop = Math.min(end, e.end);
      out.push({ start: at, end: stop, ext: e });
      at = stop;
      i++;
    }
    return out;
  }

  /**
   * Forget what the applier has made durable on disk (everything before `appliedPos`). Returns true
   * when nothing is pending any more.
   */
  settle(appliedPos: number): boolean {
    if (this.nsPos >= appliedPos) return false;
    this.nsPos = -1;
    this.extents = this.extents.filter((e) => e.pos >= appliedPos);
    this.truncs = this.truncs.filter((t) => t.pos >= appliedPos);
    this.baseLimit = this.truncs.reduce((m, t) => Math.min(m, t.len), Infinity);
    if (this.lastPos < appliedPos) this.lastPos = -1;
    return this.lastPos === -1;
  }
}
