/**
 * A file's pending state as the store sees it, on the main thread: which byte ranges live in the
 * journal (not yet applied), the logical size, and how much of the on-disk base file still shows
 * through. Reads consult the extents first, then the base file below `baseLimit`, then zeros.
 */

export interface Extent {
  start: number;
  end: number;
  /** Journal segment (file index and seq) and byte offset of the byte at `start`. */
  index: number;
  seq: number;
  jOff: number;
}

export class Overlay {
  /** Sorted by start, non-overlapping. */
  extents: Extent[] = [];
  /** Base file bytes at or beyond this offset are not visible (a pending truncate or a new file). */
  baseLimit: number;
  /** Journal position of the last pending operation on this name; -1 when nothing is pending. */
  lastPos = -1;

  constructor(
    /** Read-only fd on the base file, or null when there is none (new file) or it is not open yet. */
    public baseFd: number | null,
    public size: number,
    public exists: boolean,
    baseVisible: boolean,
  ) {
    this.baseLimit = baseVisible ? Infinity : 0;
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
  insert(start: number, len: number, index: number, seq: number, jOff: number): void {
    if (len <= 0) return;
    const end = start + len;
    const fresh: Extent = { start, end, index, seq, jOff };
    let i = this.firstAfter(start);
    const replace: Extent[] = [];
    let j = i;
    while (j < this.extents.length && this.extents[j].start < end) {
      const e = this.extents[j];
      if (e.start < start) replace.push({ start: e.start, end: start, index: e.index, seq: e.seq, jOff: e.jOff });
      if (e.end > end) replace.push({ start: end, end: e.end, index: e.index, seq: e.seq, jOff: e.jOff + (end - e.start) });
      j++;
    }
    // Merge with a neighbour that continues in the same place of the journal (coalesced records).
    const left = replace.length && replace[0].end === start ? null : this.extents[i - 1];
    if (left && left.end === start && left.index === index && left.seq === seq && left.jOff + (left.end - left.start) === jOff) {
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

  truncate(len: number): void {
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

  /** Everything pending has been applied: the base file on disk is the whole truth again. */
  settle(): void {
    this.extents = [];
    this.baseLimit = Infinity;
    this.lastPos = -1;
  }
}
