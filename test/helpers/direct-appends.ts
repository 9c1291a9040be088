/**
 * Helpers of the direct-append tests (test/direct-appends*.test.ts): deterministic blocks, damage
 * to the last record of a type in chosen epochs, and waiting for the flusher to write direct bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CpFile } from '../../lib/index.js';
import { type RecordType, segmentFileName } from '../../lib/format.js';
import { records } from './journal.js';

const KiB = 1024;

/** Deterministic, incompressible-looking bytes, different per (seed, index). */
export function block(seed: number, i: number, len = 64 * KiB): Buffer {
  const b = Buffer.alloc(Math.ceil(len / 4) * 4);
  let x = (seed * 2654435761 + i * 40503 + 1) >>> 0;
  for (let k = 0; k < len; k += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, k);
  }
  return b.subarray(0, len);
}

/** Zero the last record of `type` of each of `epochs` in `dir`'s journal (damage that looks like a torn write). */
export async function zeroRecords(dir: string, type: RecordType, epochs: number[]): Promise<void> {
  const recs = await records(dir);
  for (const e of epochs) {
    const r = recs.filter((x) => x.header.type === type && x.header.epoch === e).pop();
    if (!r) throw new Error(`no record of type ${type} epoch ${e}`);
    const fd = fs.openSync(path.join(dir, '.cpfile', 'journal', segmentFileName(r.index)), 'r+');
    fs.writeSync(fd, Buffer.alloc(r.size), 0, r.size, r.offset);
    fs.closeSync(fd);
  }
}

/** Wait until the flusher has written the direct bytes of `f` up to `at` (a read there waits for them). */
export async function flushed(f: CpFile, at: number): Promise<void> {
  await f.read(Buffer.alloc(1), 0, 1, at);
}
