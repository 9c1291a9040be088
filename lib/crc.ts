/**
 * CRC-32 (IEEE, the zlib/PNG polynomial) for journal records.
 * Node's zlib.crc32 (Node >= 20.15) is native and several times faster than the crc-32 package;
 * the package is the fallback for older Node 20 releases. test/format.test.ts proves both agree.
 */
import * as zlib from 'node:zlib';
// The package is CommonJS: its module.exports is the default import in both builds.
import CRC32 from 'crc-32';

type Crc = (data: Uint8Array, seed?: number) => number;

/** The pure-JS implementation from the crc-32 package, as an unsigned 32-bit value. */
export const crc32Js: Crc = (data, seed = 0) => CRC32.buf(data, seed) >>> 0;

const native = (zlib as unknown as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/** The native implementation, or undefined on Node releases that lack zlib.crc32. */
export const crc32Native: Crc | undefined = native ? (data, seed = 0) => native(data, seed) >>> 0 : undefined;

/**
 * The implementation cpfile uses: native from 256 bytes up, where it wins; below that the call into
 * C++ costs more than the pure-JS loop. Measured on the 2-core development VM (Node 20.20): 64 B
 * 35 ns JS / 106 ns native, 256 B 135 / 136, 1 KiB 520 / 273, 4 KiB 2.1 us / 0.71 us, 1 MiB
 * 1.96 / 6.65 GB/s (3.4x).
 */
const NATIVE_FROM = 256;
export const crc32: Crc = crc32Native ? (data, seed = 0) => (data.length >= NATIVE_FROM ? crc32Native(data, seed) : crc32Js(data, seed)) : crc32Js;
