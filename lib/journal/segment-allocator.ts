/**
 * Which segment file the log continues in, and which files are free again. A segment is live while
 * it holds records not yet applied (or is the current one); once the durable apply cursor has passed
 * it, and no read or pending overlay still needs its bytes, its file is recycled for a later segment
 * with a new seq and salt (docs/FORMAT.md, "Writing" and "Segment header").
 */
import { FORMAT_VERSION } from '../format.js';
import { type PlainSegment } from '../flusher/protocol.js';
import { randomSalt } from './segments.js';

export interface AllocatorStart {
  segment: PlainSegment;
  free: number[];
  nextIndex: number;
  maxSeq: number;
}

export class SegmentAllocator {
  /** Segments holding records not yet applied (index -> seq), the current one included. */
  private live = new Map<number, number>();
  /** Segment files free for reuse, the first one next. */
  private free: number[];
  /** The index of the next new segment file. */
  private nextIndex: number;
  /** The highest seq given so far: seqs strictly increase and are never reused. */
  private maxSeq: number;

  constructor(start: AllocatorStart) {
    this.free = [...start.free];
    this.nextIndex = start.nextIndex;
    this.maxSeq = start.maxSeq;
    this.live.set(start.segment.index, start.segment.seq);
  }

  /** The next segment of the log (`size` bytes, FORMAT.md R7): a free file or a new one, the next seq, a fresh salt. */
  allocate(size: number, storeId: string): PlainSegment {
    const seq = this.maxSeq + 1;
    const index = this.free.length ? this.free.shift()! : this.nextIndex++;
    this.maxSeq = seq;
    const next: PlainSegment = { version: FORMAT_VERSION, salt: randomSalt(), seq, storeId, size, index };
    this.live.set(index, seq);
    return next;
  }

  /**
   * Called with the durable apply cursor's seq: segments entirely before it are free again, except
   * the current one (`current`) and those `busy` says are still read from.
   */
  release(cursorSeq: number, current: number, busy: (index: number) => boolean): void {
    for (const [index, seq] of this.live) {
      if (seq < cursorSeq && index !== current && !busy(index)) {
        this.live.delete(index);
        this.free.push(index);
      }
    }
  }
}
