/**
 * File content that may be sparse and huge: the simulated file system (simfs.ts) and the edge
 * workload's model (edges.ts) keep file bytes in this one layout, so that a write at 2^42 costs a
 * chunk of memory, not 4 TiB. Bytes below DENSE live in one growable buffer (the common case, as
 * fast as before); bytes at or above DENSE in CHUNK-sized buffers, by chunk index; missing chunks
 * read as zeros. flat() gives a Buffer for the oracle: the bytes themselves for a dense file, a
 * digest marker for a sparse one (equal markers <=> equal content and size).
 */
import { createHash } from 'node:crypto';

export const DENSE = 64 * 1024 * 1024;
export const CHUNK = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export class SparseFile {
  /** bytes [0, min(size, DENSE)) live in data[0, ...) (data may be longer: capacity) */
  data: Buffer;
  size: number;
  /** chunk index (of DENSE + i * CHUNK) -> CHUNK bytes */
  hi: Map<number, Buffer> | null = null;

  constructor(data: Buffer = EMPTY, size = data.length, hi: Map<number, Buffer> | null = null) {
    this.data = data;
    this.size = size;
    this.hi = hi && hi.size ? hi : null;
  }

  get sparse(): boolean {
    return this.size > DENSE || this.hi !== null;
  }

  private growDense(len: number): void {
    if (len <= this.data.length) return;
    const cap = Math.min(DENSE, Math.max(len, Math.min(this.data.length * 2, len + (1 << 20))));
    const nb = Buffer.alloc(cap);
    this.data.copy(nb, 0, 0, Math.min(this.size, this.data.length));
    this.data = nb;
  }

  /**
   * Set the logical size (zero-filling on growth, dropping bytes on shrink). Invariant: every byte of
   * the dense region past data.length, and past size, is zero; so growth allocates nothing.
   */
  truncate(len: number): void {
    if (len < this.size) {
      const denseEnd = Math.min(this.size, this.data.length);
      if (len < denseEnd) this.data.fill(0, len, denseEnd);
      if (this.hi) {
        for (const [i, c] of [...this.hi]) {
          const start = DENSE + i * CHUNK;
          if (start >= len) this.hi.delete(i);
          else if (start + CHUNK > len) c.fill(0, len - start);
        }
        if (this.hi.size === 0) this.hi = null;
      }
    }
    this.size = len;
  }

  write(pos: number, src: Uint8Array): void {
    const end = pos + src.length;
    if (end > this.size) this.truncate(end);
    let i = 0;
    if (pos < DENSE) {
      const n = Math.min(src.length, DENSE - pos);
      this.growDense(pos + n);
      this.data.set(src.subarray(0, n), pos);
      i = n;
    }
    while (i < src.length) {
      const at = pos + i;
      const ci = Math.floor((at - DENSE) / CHUNK);
      const co = at - DENSE - ci * CHUNK;
      const n = Math.min(src.length - i, CHUNK - co);
      this.hi ??= new Map();
      let c = this.hi.get(ci);
      if (!c) this.hi.set(ci, (c = Buffer.alloc(CHUNK)));
      c.set(src.subarray(i, i + n), co);
      i += n;
    }
  }

  /** Read up to len bytes at pos into dst[off...]; returns the count (0 at or past the end). */
  read(pos: number, dst: Uint8Array, off: number, len: number): number {
    if (pos >= this.size || len <= 0) return 0;
    const m = Math.min(len, this.size - pos);
    let i = 0;
    if (pos < DENSE) {
      const n = Math.min(m, DENSE - pos);
      const have = Math.max(0, Math.min(n, this.data.length - pos));
      if (have > 0) dst.set(this.data.subarray(pos, pos + have), off);
      if (have < n) dst.fill(0, off + have, off + n);
      i = n;
    }
    while (i < m) {
      const at = pos + i;
      const ci = Math.floor((at - DENSE) / CHUNK);
      const co = at - DENSE - ci * CHUNK;
      const n = Math.min(m - i, CHUNK - co);
      const c = this.hi?.get(ci);
      if (c) dst.set(c.subarray(co, co + n), off + i);
      else dst.fill(0, off + i, off + i + n);
      i += n;
    }
    return m;
  }

  /** The dense bytes (a copy); only for files that are not sparse. */
  denseCopy(): Buffer {
    const n = Math.min(this.size, DENSE);
    if (n <= this.data.length) return Buffer.from(this.data.subarray(0, n));
    const b = Buffer.alloc(n);
    this.data.copy(b, 0, 0, this.data.length);
    return b;
  }

  clone(): SparseFile {
    const hi = this.hi ? new Map([...this.hi].map(([i, c]) => [i, Buffer.from(c)])) : null;
    const d = this.sparse ? Buffer.from(this.data.subarray(0, Math.min(this.size, this.data.length))) : this.denseCopy();
    return new SparseFile(d, this.size, hi);
  }

  /** What the oracle compares: the bytes of a dense file, a digest marker for a sparse one. */
  flat(): Buffer {
    if (!this.sparse) return this.denseCopy();
    const h = createHash('sha1');
    // the dense region without its trailing zeros (its buffer may be shorter than the region)
    let n = Math.min(this.size, this.data.length);
    while (n > 0 && this.data[n - 1] === 0) n--;
    h.update(this.data.subarray(0, n));
    if (this.hi) {
      for (const i of [...this.hi.keys()].sort((a, b) => a - b)) {
        const c = this.hi.get(i)!;
        if (c.every((b) => b === 0)) continue;
        h.update(`@${i}`);
        h.update(c);
      }
    }
    return Buffer.from(`\0sparse file of ${this.size} bytes, sha1 ${h.digest('hex')}`);
  }
}
