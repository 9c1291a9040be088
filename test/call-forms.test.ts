// The fs/promises call forms of a handle, side by side with a real FileHandle: on the same inputs the
// same call runs on a cpfile handle and on a FileHandle of a temp file, and the results (bytes counts,
// buffer contents, file contents, the position afterwards) or the errors must agree. The one error
// mapping: fs's ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE, ERR_INVALID_ARG_VALUE (and an EINVAL from the
// system call) are cpfile's EINVAL; EBADF is EBADF. Rows marked `cp` are the documented differences
// (README "fs/promises call forms"): there cpfile's own outcome is asserted.
import { open as fsOpen, readFile as fsReadFile, writeFile as fsWriteFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { CpError } from '../lib/index.js';
import { Sandbox, expectCpError, type Store, type CpFile } from './helpers/sandbox.js';

type Mode = 'r' | 'r+' | 'w' | 'w+' | 'a' | 'a+';
/** What a call sees: a handle of either kind, typed loosely (the point is calling both the same way). */
type AnyHandle = Record<string, (...a: unknown[]) => unknown>;
type Call = (h: AnyHandle) => unknown;

const FS_EINVAL = new Set(['ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE', 'ERR_INVALID_ARG_VALUE', 'EINVAL']);

function view(b: unknown): string {
  if (typeof b === 'string') return `str:${b}`;
  if (ArrayBuffer.isView(b)) return `${b.constructor.name}(${b.byteLength}):${Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')}`;
  return String(b);
}

/** A call's outcome in comparable form: its result's fields, or its error mapped to cpfile's code. */
async function outcome(fn: () => unknown): Promise<string> {
  try {
    const r = await fn();
    if (r === undefined) return 'undefined';
    if (typeof r === 'string' || Buffer.isBuffer(r)) return view(r);
    const o = r as { bytesRead?: number; bytesWritten?: number; buffer?: unknown; buffers?: unknown[] };
    if (typeof (o as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function') {
      const lines: string[] = [];
      for await (const l of o as AsyncIterable<string>) lines.push(l);
      return `lines:${JSON.stringify(lines)}`;
    }
    return JSON.stringify({ n: o.bytesRead ?? o.bytesWritten, buffer: o.buffer === undefined ? undefined : view(o.buffer), buffers: o.buffers?.map(view) });
  } catch (e) {
    const code = (e as { code?: string }).code ?? String(e);
    if (e instanceof CpError) {
      expect(e.message).to.not.include('\n');
      return `error:${code}`;
    }
    return `error:${FS_EINVAL.has(code) ? 'EINVAL' : code}`;
  }
}

/** What a handle reads from its position on (then its position is at the end), or why it cannot. */
async function rest(h: AnyHandle): Promise<string> {
  try {
    const b = Buffer.alloc(64);
    const { bytesRead } = (await h.read(b, 0, 64, null)) as { bytesRead: number };
    return b.subarray(0, bytesRead).toString('latin1');
  } catch (e) {
    return `error:${(e as { code?: string }).code}`;
  }
}

interface Row {
  what: string;
  call: Call;
  mode?: Mode;
  init?: string;
  /** bytes read at the handle's position first, to move it (both kinds the same way) */
  at?: number;
  /** a documented difference: cpfile's own outcome ('error:EINVAL', or a result) */
  cp?: string;
  /** fs/promises cannot be run on this input (it aborts the process, or breaks its handle): why */
  noFs?: string;
}

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const dots = (n: number): Buffer => Buffer.alloc(n, 0x2e);
const ROWS: Row[] = [
  // read: the four forms
  { what: 'read() allocates 16 KiB and reads at the position', call: (h) => h.read(), at: 3 },
  { what: 'read({}) is read()', call: (h) => h.read({}) },
  { what: 'read(null) is read()', call: (h) => h.read(null) },
  { what: 'read({ buffer })', call: (h) => h.read({ buffer: dots(4) }), at: 2 },
  { what: 'read({ buffer, offset, length, position })', call: (h) => h.read({ buffer: dots(6), offset: 1, length: 3, position: 2 }) },
  { what: 'read({ length }) into the default buffer', call: (h) => h.read({ length: 3 }) },
  { what: 'read({ position }) at 8: a short read', call: (h) => h.read({ position: 8 }) },
  { what: 'read(buffer, {})', call: (h) => h.read(dots(4), {}) },
  { what: 'read(buffer, { offset, position })', call: (h) => h.read(dots(4), { offset: 1, position: 5 }) },
  { what: 'read(buffer, { offset: null, length: null, position: null })', call: (h) => h.read(dots(4), { offset: null, length: null, position: null }) },
  { what: 'read(buffer, null)', call: (h) => h.read(dots(4), null) },
  { what: 'read(buffer)', call: (h) => h.read(dots(4)) },
  { what: 'read(buffer, 1)', call: (h) => h.read(dots(4), 1) },
  { what: 'read(buffer, 2, null)', call: (h) => h.read(dots(4), 2, null) },
  { what: 'read(buffer, undefined, 2)', call: (h) => h.read(dots(4), undefined, 2) },
  { what: 'read at -1 is at the position', call: (h) => h.read(dots(4), 0, 2, -1), at: 4 },
  { what: 'read at 8 of 10: short', call: (h) => h.read(dots(4), 0, 4, 8) },
  { what: 'read at the end: 0 bytes', call: (h) => h.read(dots(4), 0, 4, 10) },
  { what: 'read past the end: 0 bytes', call: (h) => h.read(dots(4), 0, 4, 100) },
  { what: 'read at the position at the end: 0 bytes', call: (h) => h.read(dots(4)), at: 10 },
  { what: 'read at a bigint position', call: (h) => h.read(dots(4), 0, 2, 3n), cp: JSON.stringify({ n: 2, buffer: 'Buffer(4):33342e2e' }) },
  { what: 'read offset at the buffer end, length 0', call: (h) => h.read(dots(4), 4) },
  { what: 'read offset past the buffer', call: (h) => h.read(dots(4), 5) },
  { what: 'read offset + length past the buffer', call: (h) => h.read(dots(4), 1, 4) },
  { what: 'read offset 1.5', call: (h) => h.read(dots(4), 1.5, 1) },
  { what: 'read offset "1"', call: (h) => h.read(dots(4), '1', 1) },
  { what: 'read length -1', call: (h) => h.read(dots(4), 0, -1) },
  { what: 'read an empty buffer', call: (h) => h.read(dots(0)) },
  { what: 'read length 1 into an empty buffer', call: (h) => h.read(dots(0), 0, 1) },
  { what: 'read into a Uint16Array (bytes)', call: (h) => h.read(new Uint16Array(3)) },
  { what: 'read into a Uint16Array, offset and length in bytes', call: (h) => h.read(new Uint16Array(3), 1, 3) },
  { what: 'read into a DataView', call: (h) => h.read(new DataView(new ArrayBuffer(5))) },
  { what: 'read into a DataView on part of its buffer', call: (h) => h.read(new DataView(new ArrayBuffer(8), 2, 4), 1, 2, 3) },
  { what: 'read into a Float64Array', call: (h) => h.read(new Float64Array(1)) },
  { what: 'read into an ArrayBuffer', call: (h) => h.read(new ArrayBuffer(4)) },
  { what: 'read into a number', call: (h) => h.read(42) },
  { what: 'read into a string', call: (h) => h.read('x') },
  { what: 'read into an array', call: (h) => h.read([]) },
  { what: 'read({ buffer: 42 })', call: (h) => h.read({ buffer: 42 }) },
  { what: 'read(buffer, { offset: "x" })', call: (h) => h.read(dots(4), { offset: 'x' }) },
  { what: 'read on a write-only handle', call: (h) => h.read(dots(4)), mode: 'w' },
  { what: 'read on an append-only handle', call: (h) => h.read(), mode: 'a' },
  { what: 'read in a+ mode', call: (h) => h.read(), mode: 'a+', at: 4 },
  // read: where cpfile refuses what fs coerces (documented)
  { what: 'read at -2', call: (h) => h.read(dots(4), 0, 2, -2), cp: 'error:EINVAL' },
  { what: 'read at 1.5', call: (h) => h.read(dots(4), 0, 2, 1.5), cp: 'error:EINVAL' },
  { what: 'read at "3"', call: (h) => h.read(dots(4), 0, 2, '3'), cp: 'error:EINVAL' },
  { what: 'read length 0 with an offset past the buffer', call: (h) => h.read(dots(4), 9, 0), cp: 'error:EINVAL' },
  { what: 'read length 0 at -5', call: (h) => h.read(dots(4), 0, 0, -5), cp: 'error:EINVAL' },
  { what: 'read length 1.5', call: (h) => h.read(dots(4), 0, 1.5), cp: 'error:EINVAL', noFs: 'Node 20 aborts on an assertion' },
  { what: 'read length "2"', call: (h) => h.read(dots(4), 0, '2'), cp: 'error:EINVAL', noFs: 'Node 20 aborts on an assertion' },

  // write: buffers
  { what: 'write(buffer) at the position', call: (h) => h.write(B('ABCD')), at: 3 },
  { what: 'write(buffer, { offset, length, position })', call: (h) => h.write(B('ABCD'), { offset: 1, length: 2, position: 3 }) },
  { what: 'write(buffer, {})', call: (h) => h.write(B('ABCD'), {}) },
  { what: 'write(buffer, null)', call: (h) => h.write(B('ABCD'), null) },
  { what: 'write(buffer, { offset })', call: (h) => h.write(B('ABCD'), { offset: 1 }) },
  { what: 'write(buffer, offset, length, position) past the end: a hole', call: (h) => h.write(B('ABCD'), 1, 2, 14) },
  { what: 'write at -1 is at the position', call: (h) => h.write(B('ABCD'), 0, 4, -1), at: 2 },
  { what: 'write offset at the buffer end: 0 bytes', call: (h) => h.write(B('ABCD'), 4) },
  { what: 'write offset past the buffer', call: (h) => h.write(B('ABCD'), 5) },
  { what: 'write offset + length past the buffer', call: (h) => h.write(B('ABCD'), 1, 4, 0) },
  { what: 'write offset 4, length 1', call: (h) => h.write(B('ABCD'), 4, 1) },
  { what: 'write offset 1.5', call: (h) => h.write(B('ABCD'), 1.5) },
  { what: 'write offset "1"', call: (h) => h.write(B('ABCD'), '1') },
  { what: 'write offset -1', call: (h) => h.write(B('ABCD'), -1) },
  { what: 'write length 1.5', call: (h) => h.write(B('ABCD'), 0, 1.5, 0) },
  { what: 'write length -1', call: (h) => h.write(B('ABCD'), 0, -1, 0) },
  { what: 'write(buffer, "zz")', call: (h) => h.write(B('AB'), 'zz') },
  { what: 'write(buffer, { offset: "x" })', call: (h) => h.write(B('AB'), { offset: 'x' }) },
  { what: 'write a Uint16Array (bytes)', call: (h) => h.write(new Uint16Array([0x4241, 0x4443]), 1, 2, 0) },
  { what: 'write a DataView on part of its buffer', call: (h) => h.write(new DataView(new Uint8Array([46, 46, 88, 89, 90, 87]).buffer, 2, 4), 1, 2, 0) },
  { what: 'write a number', call: (h) => h.write(42) },
  { what: 'write an object', call: (h) => h.write({}) },
  { what: 'write null', call: (h) => h.write(null) },
  { what: 'write an ArrayBuffer', call: (h) => h.write(new ArrayBuffer(4)) },
  // fs/promises throws V8's TypeError (byteLength on an incompatible receiver); cpfile refuses the non-buffer with EINVAL.
  { what: 'write an object that only inherits from Uint8Array.prototype', call: (h) => h.write(Object.create(Uint8Array.prototype)), cp: 'error:EINVAL' },
  { what: 'write(a plain Uint8Array) at the position', call: (h) => h.write(new Uint8Array([65, 66, 67])), at: 2 },
  { what: 'write(a Uint8Array over a SharedArrayBuffer)', call: (h) => h.write(new Uint8Array(new SharedArrayBuffer(3)).fill(70)), at: 1 },
  { what: 'write(a zero-length buffer) moves nothing', call: (h) => h.write(Buffer.alloc(0)), at: 2 },
  { what: 'write on a read-only handle', call: (h) => h.write(B('AB')), mode: 'r' },
  { what: 'write in a mode appends, whatever the position', call: (h) => h.write(B('AB'), 0, 2, 0), mode: 'a' },
  { what: 'write in a+ mode appends', call: (h) => h.write(B('AB')), mode: 'a+', at: 3 },
  { what: 'write in w+ mode on the truncated file', call: (h) => h.write(B('AB'), 0, 2, 3), mode: 'w+' },
  // write: strings, position second
  { what: "write('ab', 6): the second argument is the position", call: (h) => h.write('ab', 6) },
  { what: "write('hello world', 6) on an empty file", call: (h) => h.write('hello world', 6), init: '' },
  { what: "write('ab') at the position", call: (h) => h.write('ab'), at: 5 },
  { what: "write('ab', null, 'latin1') at the position", call: (h) => h.write('AB', null, 'latin1'), at: 1 },
  { what: "write('ab', undefined, undefined)", call: (h) => h.write('AB', undefined, undefined) },
  { what: "write('ab', -1)", call: (h) => h.write('ab', -1), at: 3 },
  { what: 'write a utf8 string with multi-byte characters', call: (h) => h.write('xéy€', 2) },
  { what: 'write a utf8 string explicitly', call: (h) => h.write('xé', 1, 'utf8') },
  { what: 'write a hex string', call: (h) => h.write('4142ff', 1, 'hex') },
  { what: 'write an odd-length hex string', call: (h) => h.write('abc', 1, 'hex') },
  { what: 'write a base64 string', call: (h) => h.write('QUJD', 2, 'base64') },
  { what: 'write a base64url string', call: (h) => h.write('_-8', 2, 'base64url') },
  { what: 'write a latin1 string', call: (h) => h.write('\u00e9\u00ff', 0, 'latin1') },
  { what: 'write a binary (latin1) string', call: (h) => h.write('\u00e9', 0, 'binary') },
  { what: 'write a utf16le string', call: (h) => h.write('AB', 0, 'utf16le') },
  { what: 'write a ucs2 string', call: (h) => h.write('Aé', 1, 'ucs2') },
  { what: 'write an ascii string', call: (h) => h.write('AB', 4, 'ascii') },
  { what: 'write an empty string at a position', call: (h) => h.write('', 3) },
  { what: 'write a string past the end: a hole', call: (h) => h.write('Z', 13) },
  { what: 'write a string in a mode', call: (h) => h.write('Z', 0), mode: 'a' },
  { what: 'write a string on a read-only handle', call: (h) => h.write('Z', 0), mode: 'r' },
  // write: where cpfile refuses what fs coerces (documented)
  { what: 'write a buffer at -5', call: (h) => h.write(B('AB'), 0, 2, -5), cp: 'error:EINVAL' },
  { what: 'write a buffer at 1.5', call: (h) => h.write(B('AB'), 0, 2, 1.5), cp: 'error:EINVAL' },
  { what: 'write a buffer at "3"', call: (h) => h.write(B('AB'), 0, 2, '3'), cp: 'error:EINVAL' },
  { what: 'write a buffer at a bigint position', call: (h) => h.write(B('AB'), 0, 2, 3n), cp: JSON.stringify({ n: 2, buffer: 'Buffer(2):4142' }) },
  { what: 'write a buffer, length "2"', call: (h) => h.write(B('ABCD'), 0, '2', 0), cp: 'error:EINVAL' },
  { what: 'write(buffer, { position: "x" })', call: (h) => h.write(B('AB'), { position: 'x' }), cp: 'error:EINVAL' },
  { what: 'write(buffer, { length: "x" })', call: (h) => h.write(B('AB'), { length: 'x' }), cp: 'error:EINVAL' },
  { what: 'write an empty buffer with bad arguments', call: (h) => h.write(dots(0), -7, 'x', 'y'), cp: 'error:EINVAL' },
  { what: 'write a string at -5', call: (h) => h.write('ab', -5), cp: 'error:EINVAL' },
  { what: 'write a string at 1.5', call: (h) => h.write('ab', 1.5), cp: 'error:EINVAL' },
  { what: 'write a string at "3"', call: (h) => h.write('ab', '3'), cp: 'error:EINVAL' },
  { what: 'write a string with options', call: (h) => h.write('ab', { position: 3 }), cp: 'error:EINVAL' },
  { what: 'write a string, encoding 2 (the old offset/length form)', call: (h) => h.write('ab', 1, 2), cp: 'error:EINVAL' },
  { what: 'write a string, unknown encoding', call: (h) => h.write('ab', 1, 'bogus'), cp: 'error:EINVAL' },
  { what: 'write a string with a fourth argument', call: (h) => h.write('ab', null, null, 0), cp: 'error:EINVAL' },

  // readv / writev
  { what: 'readv across buffers, short at the end', call: (h) => h.readv([dots(3), dots(4), dots(0), dots(5)]) },
  { what: 'readv at a position', call: (h) => h.readv([dots(3), dots(4)], 5) },
  { what: 'readv at null', call: (h) => h.readv([dots(3), dots(4)], null), at: 2 },
  { what: 'readv at -1', call: (h) => h.readv([dots(3)], -1), at: 2 },
  { what: 'readv past the end', call: (h) => h.readv([dots(3)], 40) },
  { what: 'readv of no buffers', call: (h) => h.readv([]) },
  { what: 'readv of a buffer, not an array', call: (h) => h.readv(dots(3)) },
  { what: 'readv with a string in the array', call: (h) => h.readv([dots(3), 'x']) },
  { what: 'readv into a Uint16Array and a DataView', call: (h) => h.readv([new Uint16Array(2), new DataView(new ArrayBuffer(3))]) },
  { what: 'readv on a write-only handle', call: (h) => h.readv([dots(3)]), mode: 'w' },
  { what: 'writev at the position', call: (h) => h.writev([B('AB'), B(''), B('CDE')]), at: 1 },
  { what: 'writev at a position past the end', call: (h) => h.writev([B('AB'), B('CDE')], 12) },
  { what: 'writev at -1', call: (h) => h.writev([B('AB')], -1), at: 4 },
  { what: 'writev of no buffers', call: (h) => h.writev([]) },
  { what: 'writev with a string in the array', call: (h) => h.writev(['ab']) },
  { what: 'writev of a buffer, not an array', call: (h) => h.writev(B('AB')) },
  { what: 'writev a Uint16Array', call: (h) => h.writev([new Uint16Array([0x4241])]) },
  { what: 'writev in a mode', call: (h) => h.writev([B('AB'), B('C')], 0), mode: 'a' },
  { what: 'writev on a read-only handle', call: (h) => h.writev([B('AB')]), mode: 'r' },
  { what: 'readv at "1"', call: (h) => h.readv([dots(3)], '1'), cp: 'error:EINVAL' },
  { what: 'writev at 1.5', call: (h) => h.writev([B('AB')], 1.5), cp: 'error:EINVAL' },
  { what: 'writev at -3', call: (h) => h.writev([B('AB')], -3), cp: 'error:EINVAL' },

  // readFile / writeFile / appendFile: from the handle's position
  { what: 'readFile from the position', call: (h) => h.readFile(), at: 3 },
  { what: "readFile('utf8') from the position", call: (h) => h.readFile('utf8'), at: 3 },
  { what: 'readFile({ encoding: hex })', call: (h) => h.readFile({ encoding: 'hex' }), at: 1 },
  { what: 'readFile({ encoding: base64 })', call: (h) => h.readFile({ encoding: 'base64' }) },
  { what: 'readFile(null)', call: (h) => h.readFile(null) },
  { what: 'readFile at the end: empty', call: (h) => h.readFile(), at: 10 },
  { what: 'readFile({ flag }) ignores the flag', call: (h) => h.readFile({ flag: 'w' }) },
  { what: 'readFile, unknown encoding', call: (h) => h.readFile('bogus') },
  { what: 'readFile(42)', call: (h) => h.readFile(42) },
  { what: 'readFile({ encoding: 42 })', call: (h) => h.readFile({ encoding: 42 }) },
  { what: 'readFile on a write-only handle', call: (h) => h.readFile(), mode: 'w' },
  { what: 'readFile in a+ mode from the position', call: (h) => h.readFile(), mode: 'a+', at: 6 },
  { what: 'writeFile at the position: no truncation', call: (h) => h.writeFile('ab'), at: 3 },
  { what: 'writeFile a hex string', call: (h) => h.writeFile('4142', 'hex'), at: 3 },
  { what: 'writeFile({ encoding: base64 })', call: (h) => h.writeFile('QUI=', { encoding: 'base64' }) },
  { what: 'writeFile({ encoding: null })', call: (h) => h.writeFile('ab', { encoding: null }) },
  { what: 'writeFile a Uint16Array', call: (h) => h.writeFile(new Uint16Array([0x4241])) },
  { what: 'writeFile a DataView', call: (h) => h.writeFile(new DataView(new Uint8Array([65, 66, 67]).buffer, 1, 2)) },
  { what: 'writeFile a String object', call: (h) => h.writeFile(new String('ss')) },
  { what: 'writeFile an empty string', call: (h) => h.writeFile(''), at: 3 },
  { what: 'writeFile past the end of a shorter file', call: (h) => h.writeFile('tail'), at: 2, init: 'ab' },
  { what: 'writeFile, unknown encoding', call: (h) => h.writeFile('ab', 'bogus') },
  { what: 'writeFile a number', call: (h) => h.writeFile(42) },
  { what: 'writeFile an object', call: (h) => h.writeFile({}) },
  { what: 'writeFile on a read-only handle', call: (h) => h.writeFile('ab'), mode: 'r' },
  { what: 'writeFile in a+ mode appends', call: (h) => h.writeFile('ab'), mode: 'a+', at: 3 },
  { what: 'writeFile in w mode', call: (h) => h.writeFile('new'), mode: 'w' },
  { what: 'appendFile in r+ mode writes at the position (an alias of writeFile)', call: (h) => h.appendFile('ab'), at: 3 },
  { what: 'appendFile in a+ mode appends', call: (h) => h.appendFile('ab', 'latin1'), mode: 'a+', at: 3 },
  { what: 'appendFile on a read-only handle', call: (h) => h.appendFile('ab'), mode: 'r' },
  { what: 'writeFile of an array of strings (fs takes iterables)', call: (h) => h.writeFile(['ab', 'cd']), cp: 'error:EINVAL' },

  // readLines: from the handle's position; closes the handle at the end unless autoClose: false
  { what: 'readLines from the position (crlf, empty lines, no final newline)', call: (h) => h.readLines(), init: 'a\nbb\r\nccc\n\nd', at: 3 },
  { what: 'readLines({ autoClose: false }) leaves the handle at the end', call: (h) => h.readLines({ autoClose: false }), init: 'a\nbb\nccc', at: 2 },
  { what: 'readLines({ start, end }) leaves the position', call: (h) => h.readLines({ start: 2, end: 5, autoClose: false }), init: 'a\nbb\nccc' },
  { what: 'readLines({ end }) from the position', call: (h) => h.readLines({ end: 3, autoClose: false }), at: 2 },
  { what: 'readLines({ encoding: hex })', call: (h) => h.readLines({ encoding: 'hex', autoClose: false }), init: 'a\nbb\nccc' },
  { what: 'readLines of an empty file', call: (h) => h.readLines(), init: '' },
  { what: 'readLines of a file ending in a newline', call: (h) => h.readLines(), init: 'x\ny\n' },
  { what: 'readLines of multi-byte characters split across chunks', call: (h) => h.readLines({ highWaterMark: 1, autoClose: false }), init: 'é€\nü\n' },
  { what: 'readLines with an unknown encoding', call: (h) => h.readLines({ encoding: 'bogus' }) },
  { what: 'readLines({ start: -1 })', call: (h) => h.readLines({ start: -1 }), cp: 'error:EINVAL', noFs: 'ERR_OUT_OF_RANGE too, but then FileHandle.close() throws in Node 20' },
];

describe('call forms: a cpfile handle against a real fs/promises FileHandle', function () {
  const sb = new Sandbox();
  let store: Store;
  let fsDir: string;
  let n = 0;

  before(async function () {
    store = await sb.open(await sb.dir());
    fsDir = await sb.dir('cpfile-fs-');
  });
  after(async function () {
    await sb.cleanup();
  });

  /** A fresh pair: the same content and mode, both moved to `at` by the same read. */
  async function pair(init: string, mode: Mode, at: number): Promise<{ name: string; file: string; cp: CpFile; fh: FileHandle }> {
    const name = `c${n++}`;
    const file = path.join(fsDir, name);
    await store.writeFile(name, B(init));
    await fsWriteFile(file, B(init));
    const cp = await store.open(name, mode);
    const fh = await fsOpen(file, mode);
    if (at > 0) {
      await cp.read(Buffer.alloc(at), 0, at, null);
      await fh.read(Buffer.alloc(at), 0, at, null);
    }
    return { name, file, cp, fh };
  }

  async function closeQuietly(h: { close(): Promise<void> }): Promise<void> {
    await h.close().catch(() => undefined);
  }

  for (const row of ROWS) {
    it(`${row.what}${row.cp ? ' (documented difference)' : ''}`, async function () {
      const { name, file, cp, fh } = await pair(row.init ?? '0123456789', row.mode ?? 'r+', row.at ?? 0);
      try {
        const got = await outcome(() => row.call(cp as unknown as AnyHandle));
        if (row.cp !== undefined) {
          expect(got, 'cpfile outcome').to.equal(row.cp);
          if (row.noFs) return;
          const fsGot = await outcome(() => row.call(fh as unknown as AnyHandle));
          const cpState = `${got} ${await rest(cp as unknown as AnyHandle)} ${(await store.readFile(name)).toString('latin1')}`;
          const fsState = `${fsGot} ${await rest(fh as unknown as AnyHandle)} ${(await fsReadFile(file)).toString('latin1')}`;
          expect(cpState, 'fs/promises differs here (else the row is no difference)').to.not.equal(fsState);
          return;
        }
        const want = await outcome(() => row.call(fh as unknown as AnyHandle));
        expect(got, 'outcome').to.equal(want);
        // the position afterwards, and the file's content (pending in cpfile, on disk for fs)
        expect(await rest(cp as unknown as AnyHandle), 'read from the position afterwards').to.equal(await rest(fh as unknown as AnyHandle));
        expect((await store.readFile(name)).toString('latin1'), 'file content').to.equal((await fsReadFile(file)).toString('latin1'));
      } finally {
        await closeQuietly(cp);
        await closeQuietly(fh);
      }
    });
  }

  it('random sequences of call forms agree with a FileHandle (property)', async function () {
    this.timeout(120000);
    const pos = fc.oneof(fc.constant(null), fc.constant(undefined), fc.constant(-1), fc.nat(40));
    const bytes = fc.uint8Array({ maxLength: 12 });
    const enc = fc.constantFrom('utf8', 'hex', 'base64', 'latin1', 'utf16le', undefined);
    const call: fc.Arbitrary<[string, Call]> = fc.oneof(
      fc.tuple(bytes, fc.nat(14), fc.option(fc.nat(14)), pos).map(([b, o, l, p]): [string, Call] => [`write(buf${b.length}, ${o}, ${l}, ${p})`, (h) => h.write(Buffer.from(b), o % (b.length + 1), b.length === 0 ? null : l, p)]),
      fc.tuple(bytes, fc.nat(14), pos).map(([b, o, p]): [string, Call] => [`write(buf${b.length}, { offset: ${o}, position: ${p} })`, (h) => h.write(Buffer.from(b), { offset: o % (b.length + 1), position: p })]),
      fc.tuple(fc.string({ maxLength: 8 }), pos, enc).map(([s, p, e]): [string, Call] => {
        const str = e === 'hex' ? Buffer.from(s).toString('hex') : s;
        return [`write(${JSON.stringify(str)}, ${p}, ${e})`, (h) => h.write(str, p, e)];
      }),
      fc.tuple(fc.nat(16), fc.nat(16), fc.option(fc.nat(16)), pos).map(([size, o, l, p]): [string, Call] => [`read(buf${size}, ${o}, ${l}, ${p})`, (h) => h.read(dots(size), o % (size + 1), l, p)]),
      fc.tuple(fc.nat(16), pos).map(([size, p]): [string, Call] => [`read({ buffer${size}, position: ${p} })`, (h) => h.read({ buffer: dots(size), position: p })]),
      fc.tuple(fc.array(fc.nat(6), { maxLength: 4 }), pos).map(([sizes, p]): [string, Call] => [`readv(${sizes}, ${p})`, (h) => h.readv(sizes.map(dots), p)]),
      fc.tuple(fc.array(bytes, { maxLength: 3 }), pos).map(([bs, p]): [string, Call] => [`writev(${bs.length}, ${p})`, (h) => h.writev(bs.map((b) => Buffer.from(b)), p)]),
      enc.map((e): [string, Call] => [`readFile(${e})`, (h) => h.readFile(e === undefined ? undefined : { encoding: e })]),
      bytes.map((b): [string, Call] => [`writeFile(buf${b.length})`, (h) => h.writeFile(Buffer.from(b))]),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom<Mode>('r+', 'w+', 'a+'), fc.array(call, { minLength: 1, maxLength: 12 }), async (mode, calls) => {
        const { name, file, cp, fh } = await pair('0123456789', mode, 0);
        try {
          for (const [what, c] of calls) {
            const got = await outcome(() => c(cp as unknown as AnyHandle));
            expect(got, what).to.equal(await outcome(() => c(fh as unknown as AnyHandle)));
          }
          expect(await rest(cp as unknown as AnyHandle), 'position').to.equal(await rest(fh as unknown as AnyHandle));
          expect((await store.readFile(name)).toString('hex')).to.equal((await fsReadFile(file)).toString('hex'));
        } finally {
          await closeQuietly(cp);
          await closeQuietly(fh);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('call forms: closed handles, a closed store, pending state and call order', function () {
  const sb = new Sandbox();
  let store: Store;

  beforeEach(async function () {
    store = await sb.open(await sb.dir());
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  const CALLS: [string, (f: CpFile) => unknown][] = [
    ['read()', (f) => f.read()],
    ['read({ buffer })', (f) => f.read({ buffer: Buffer.alloc(2) })],
    ['read(buffer, {})', (f) => f.read(Buffer.alloc(2), {})],
    ['write(buffer, {})', (f) => f.write(Buffer.from('x'), {})],
    ["write('x', 0)", (f) => f.write('x', 0)],
    ['readv', (f) => f.readv([Buffer.alloc(2)])],
    ['writev', (f) => f.writev([Buffer.from('x')])],
    ['readFile', (f) => f.readFile()],
    ['writeFile', (f) => f.writeFile('x')],
    ['appendFile', (f) => f.appendFile('x')],
    ['readLines', (f) => f.readLines()],
  ];

  for (const [what, call] of CALLS) {
    it(`${what} on a closed handle rejects EBADF, after store.close() ECLOSED`, async function () {
      await store.writeFile('a', 'abc');
      const f = await store.open('a', 'r+');
      await f.close();
      await expectCpError(() => call(f), 'EBADF');
      const g = await store.open('a', 'r+');
      const closing = store.close();
      await expectCpError(() => call(g), 'ECLOSED');
      await closing;
    });
  }

  it('read-only and write-only handles refuse the other direction with EBADF, before looking at the arguments', async function () {
    await store.writeFile('a', 'abc');
    const r = await store.open('a', 'r');
    for (const c of [() => r.writev([Buffer.from('x')]), () => r.writeFile('x'), () => r.appendFile(42 as never), () => r.write('x', -7)]) await expectCpError(c, 'EBADF');
    await r.close();
    const w = await store.open('a', 'a');
    for (const c of [() => w.readv([]), () => w.readFile(), () => w.readLines(), () => w.read({ buffer: 42 as never })]) await expectCpError(c, 'EBADF');
    await w.close();
  });

  it('readFile, readv and readLines see pending changes; after rollback() the checked content; after check() the same', async function () {
    await store.writeFile('a', 'one\ntwo\n');
    await store.check();
    const f = await store.open('a', 'r+');
    await f.write('ONE', 0);
    await f.writev([Buffer.from('three\n'), Buffer.from('four\n')], 8);
    expect(await f.readFile('utf8')).to.equal('ONE\ntwo\nthree\nfour\n');
    const bufs = [Buffer.alloc(4), Buffer.alloc(20)];
    expect((await f.readv(bufs, 0)).bytesRead).to.equal(19);
    expect(Buffer.concat(bufs).subarray(0, 19).toString()).to.equal('ONE\ntwo\nthree\nfour\n');
    const lines: string[] = [];
    f.seek(4);
    for await (const l of f.readLines({ autoClose: false })) lines.push(l);
    expect(lines).to.deep.equal(['two', 'three', 'four']);
    expect(f.tell()).to.equal(19);
    await store.rollback();
    await expectCpError(() => f.readFile(), 'EBADF'); // opened since the last check: rollback closed it
    const g = await store.open('a', 'r+');
    expect(await g.readFile('utf8')).to.equal('one\ntwo\n');
    await g.appendFile('x'); // r+: at the position, which readFile moved to the end
    await store.check();
    expect((await store.readFile('a')).toString()).to.equal('one\ntwo\nx');
    await g.close();
  });

  it('readLines closes the handle at the end (autoClose), like FileHandle.readLines; the name can be opened again', async function () {
    await store.writeFile('a', 'x\ny');
    const f = await store.open('a', 'r');
    const lines: string[] = [];
    for await (const l of f.readLines()) lines.push(l);
    expect(lines).to.deep.equal(['x', 'y']);
    await new Promise((r) => setImmediate(r));
    await expectCpError(() => f.read(), 'EBADF');
    const g = await store.open('a', 'r');
    await g.close();
  });

  it('readLines over a file larger than its chunks, with lines across chunk edges, in bounded chunks', async function () {
    const f = await store.open('big', 'w+');
    const want: string[] = [];
    for (let i = 0; i < 3000; i++) want.push(`line ${i} ${'é'.repeat(i % 37)}`);
    await f.writeFile(want.join('\n') + '\n');
    f.seek(0);
    const got: string[] = [];
    for await (const l of f.readLines({ highWaterMark: 1000, autoClose: false })) got.push(l);
    expect(got).to.deep.equal(want);
    await f.close();
  });

  it('a read at the position, readv, writev, readFile and writeFile move it at once, in call order, awaited or not', async function () {
    const f = await store.open('a', 'w+');
    const w1 = f.writev([Buffer.from('abc'), Buffer.from('def')]);
    expect(f.tell()).to.equal(6);
    const w2 = f.writeFile('gh');
    expect(f.tell()).to.equal(8);
    f.seek(2);
    const r1 = f.readv([Buffer.alloc(2), Buffer.alloc(2)]);
    expect(f.tell()).to.equal(6);
    const r2 = f.readFile('latin1');
    expect(f.tell()).to.equal(8);
    const w3 = f.write('Z', 0); // after the reads in call order: they do not see it
    const r3 = f.read({ position: 0 });
    await Promise.all([w1, w2, w3]);
    expect(Buffer.concat((await r1).buffers).toString()).to.equal('cdef');
    expect(await r2).to.equal('gh');
    const r = await r3;
    expect(r.buffer.subarray(0, r.bytesRead).toString()).to.equal('Zbcdefgh');
    await f.close();
  });

  it('a call that rejects moves no position: bad buffers in readv/writev, an odd hex string, an aborted signal', async function () {
    const f = await store.open('a', 'w+');
    await f.write('0123456789');
    f.seek(3);
    await expectCpError(() => f.readv([Buffer.alloc(2), 'x' as never]), 'EINVAL');
    await expectCpError(() => f.writev([Buffer.from('ab'), null as never]), 'EINVAL');
    // eslint-disable-next-line no-sparse-arrays
    await expectCpError(() => f.writev([Buffer.from('ab'), , Buffer.from('cd')] as never), 'EINVAL'); // a hole: no buffer
    await expectCpError(() => f.write('abc', null, 'hex'), 'EINVAL');
    await expectCpError(() => f.writeFile('ab', { encoding: 'nope' as never }), 'EINVAL');
    await expectCpError(() => f.writev([Buffer.from('x')], 2 ** 53), 'EINVAL');
    await expectCpError(() => f.readLines({ start: 5, end: 2 }), 'EINVAL');
    await expectCpError(() => f.readLines({ highWaterMark: 0 }), 'EINVAL');
    const ac = new AbortController();
    ac.abort();
    let aborted: unknown;
    await f.writeFile('zz', { signal: ac.signal }).catch((e: unknown) => (aborted = e));
    expect((aborted as { name?: string }).name).to.equal('AbortError');
    expect(f.tell()).to.equal(3);
    expect((await store.readFile('a')).toString()).to.equal('0123456789');
    await f.close();
  });

  it('write(string, position) survives a check and a reopen: "hello world" at 6 of an empty file', async function () {
    const f = await store.open('h', 'w');
    expect(await f.write('hello world', 6)).to.deep.equal({ bytesWritten: 11, buffer: 'hello world' });
    expect(f.tell()).to.equal(0);
    await f.close();
    await store.check();
    expect((await store.readFile('h')).toString('latin1')).to.equal('\0\0\0\0\0\0hello world');
  });
});
