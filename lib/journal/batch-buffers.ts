/**
 * The journal writer's batch buffers: a zeroed buffer for the next batch of records, and the reuse of
 * buffers instead of allocating (and zeroing) `batchBytes` per batch. Buffers come back two ways: the
 * spare one the writer kept when it sent a right-sized copy, and full-size ones once the flusher wrote
 * them. Full-size buffers are SharedArrayBuffers: a task shares them instead of transferring them, and
 * this thread takes them back when the task ends (outbox.ts). A transferred buffer comes back as a new
 * ArrayBuffer each time, and V8 counts every one as new external memory: at 1 MiB per batch, bulk
 * writes made the main thread collect garbage (mark-compacts of 2-12 ms) for memory it was reusing.
 */

/** Full-size buffers kept for reuse at least (more when `maxInflight` holds more: see the constructor). */
const POOL_MIN = 8;

/**
 * A batch begun by a write smaller than this is laid out in a stage: a plain buffer that stays on
 * this thread, copied once into a sendable buffer when the batch is queued. Each copy into a
 * SharedArrayBuffer costs a fixed ~20 ns more than into a plain one (V8 copies shared memory with
 * relaxed atomics: 100 B took 38 ns against 16 ns here, 64 KiB 2.2 us against 1.5 us), which showed
 * at 100-byte writes (P4 +5-13% writes/s, A/B); the stage's second copy costs ~25 ns per KiB, so it
 * pays below about 1 KiB. Bigger writes go straight into the sendable buffer, as before.
 */
export const STAGE_BELOW = 1024;

export class BatchBuffers {
  /**
   * A batch buffer kept on this thread: when a chunk is handed over far from full (a caller that
   * yields to the event loop between writes gets one flush per write), a right-sized copy is
   * transferred and the big buffer is reused for the next chunk. `spareUsed` bytes of it hold old
   * data and are zeroed before reuse.
   */
  private spare: Buffer | null = null;
  private spareUsed = 0;
  /** Full-size batch buffers the flusher handed back after writing them (see TaskResult.recycled). */
  private pool: Buffer[] = [];

  /** Full-size buffers kept for reuse at most. */
  private poolMax: number;
  /**
   * Every stage made (plain, full-size; the record batch and the direct appends use one each), with
   * how many of its first bytes may hold old data: the most any user wrote since it was last zeroed
   * (a stage goes from one role to the other, and takeStage(false) does not zero it).
   */
  private stageDirty = new Map<Buffer, number>();
  /** The stages not in use. */
  private stages: Buffer[] = [];

  /**
   * `maxInflight`: the bytes that may be on their way to the flusher. A bulk writer keeps that many
   * in flight, so the pool holds as many full-size buffers (plus the two being filled): with fewer,
   * every P2-like epoch allocated (and the kernel zeroed) a new SharedArrayBuffer for each one over
   * the limit, 8% of the main thread's time at 16 MiB in flight.
   */
  constructor(private batchBytes: number, maxInflight = 0) {
    this.poolMax = Math.max(POOL_MIN, Math.ceil(maxInflight / batchBytes) + 2);
  }

  /** A zeroed batch buffer of at least `cap` bytes (the spare one when it is big enough). */
  take(cap: number): Buffer {
    const spare = this.spare;
    if (spare && spare.length >= cap) {
      this.spare = null;
      spare.fill(0, 0, this.spareUsed);
      return spare;
    }
    const pooled = this.pool.pop();
    if (pooled && pooled.length >= cap) return pooled.fill(0);
    return cap === this.batchBytes ? this.full() : Buffer.from(new ArrayBuffer(cap));
  }

  private full(): Buffer {
    return Buffer.from(new SharedArrayBuffer(this.batchBytes));
  }

  /** A full-size buffer for direct appends (its bytes are all overwritten before they are sent). */
  takeFull(): Buffer {
    return this.pool.pop() ?? this.full();
  }

  /** A stage (see STAGE_BELOW), zeroed when `zeroed`. */
  takeStage(zeroed: boolean): Buffer {
    const buf = this.stages.pop();
    if (!buf) {
      const fresh = Buffer.alloc(this.batchBytes);
      this.stageDirty.set(fresh, 0);
      return fresh;
    }
    if (zeroed) {
      buf.fill(0, 0, this.stageDirty.get(buf));
      this.stageDirty.set(buf, 0);
    }
    return buf;
  }

  isStage(buf: Buffer): boolean {
    return this.stageDirty.has(buf);
  }

  /** Stage `stage`, whose first `used` bytes were written, is free again. */
  returnStage(stage: Buffer, used: number): void {
    this.stageDirty.set(stage, Math.max(this.stageDirty.get(stage)!, used));
    this.stages.push(stage);
  }

  /**
   * The first `used` bytes of stage `stage`, copied into a buffer that can be sent (a right-sized one
   * when they are few, as keepSpare's copy; else a full-size shared one); the stage is kept for reuse.
   */
  sendStage(stage: Buffer, used: number): Buffer {
    let out: Buffer;
    if (used * 4 <= this.batchBytes) {
      out = rightSized(stage, used);
    } else {
      out = this.takeFull().subarray(0, used);
      stage.copy(out, 0, 0, used);
    }
    this.returnStage(stage, used);
    return out;
  }

  /** Keep `buf` (whose first `used` bytes were written) for the next batch; returns the copy of those bytes to send instead. */
  keepSpare(buf: Buffer, used: number): Buffer {
    this.spare = buf;
    this.spareUsed = used;
    return rightSized(buf, used);
  }

  /** A full-size buffer or a stage that was never sent (an empty direct buffer). */
  giveBack(buf: Buffer): void {
    if (this.isStage(buf)) this.returnStage(buf, 0);
    else if (buf.length === this.batchBytes) this.pool.push(buf);
  }

  /** Buffers the flusher handed back, or a task shared: the full-size ones are reused, up to poolMax. */
  recycle(buffers: ArrayBufferLike[]): void {
    for (const ab of buffers) {
      if (ab.byteLength === this.batchBytes && this.pool.length < this.poolMax && !this.pool.some((b) => b.buffer === ab)) this.pool.push(Buffer.from(ab));
    }
  }
}

/** A copy of the first `used` bytes of `buf` in a plain buffer of their size (transferred with its task). */
function rightSized(buf: Buffer, used: number): Buffer {
  const out = Buffer.from(new ArrayBuffer(used));
  buf.copy(out, 0, 0, used);
  return out;
}
