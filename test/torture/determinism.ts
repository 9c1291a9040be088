/**
 * Exact replay of in-process torture units: cpfile draws its store ids and segment salts from
 * crypto.randomBytes. While a unit runs, this module makes that function a seeded generator, so the
 * same seed gives byte-for-byte the same journal. Restored afterwards.
 */
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { mulberry32 } from '../helpers/model.js';

type RandomBytes = typeof crypto.randomBytes;
const original: RandomBytes = crypto.randomBytes;
let depth = 0;

function seeded(seed: number): RandomBytes {
  const f = mulberry32(seed ^ 0x2545f491);
  const fill = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(f() * 256);
    return b;
  };
  return ((size: number, cb?: (err: Error | null, buf: Buffer) => void) => {
    const b = fill(size);
    if (cb) {
      queueMicrotask(() => cb(null, b));
      return undefined;
    }
    return b;
  }) as unknown as RandomBytes;
}

/** Run `fn` with crypto.randomBytes seeded (nesting keeps the outermost seed). */
export async function withSeededRandom<T>(seed: number, fn: () => Promise<T>): Promise<T> {
  if (depth > 0) return fn();
  depth++;
  (crypto as { randomBytes: RandomBytes }).randomBytes = seeded(seed);
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    (crypto as { randomBytes: RandomBytes }).randomBytes = original;
    syncBuiltinESMExports();
    depth--;
  }
}
