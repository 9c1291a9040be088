/**
 * A handle's fs/promises calls over many buffers or the rest of the file: readv, writev, readFile,
 * writeFile (appendFile is its alias, as on a FileHandle) and readLines. Each one claims its whole
 * range at call time (CpFile.claimRead / claimWrite: the position moves at once, in call order),
 * then reads or writes its parts through the FileHost like read() and write() do.
 */
import { Readable } from 'node:stream';
import { createInterface, type Interface } from 'node:readline';
import { CpError } from '../errors.js';
import { abortError, fileData, parseFileOptions, parseLinesOptions, type LinesOptions } from './call-forms.js';
import type { CpFile } from './file.js';
import type { FileHost } from './host.js';

/** readFile's cap, as Store.readFile's (a Buffer of the whole rest of the file). */
const READ_FILE_MAX = 2 ** 31 - 1;

function total(chunks: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  return n;
}

/** readv: the buffers filled in turn from one claimed range, as one read would fill their concatenation. */
export async function readvAt(f: CpFile, host: FileHost, chunks: readonly Uint8Array[], at: number | null): Promise<number> {
  const { start, want } = f.claimRead(at, total(chunks));
  const reads: Promise<number>[] = [];
  let done = 0;
  for (const c of chunks) {
    if (done === want) break;
    const n = Math.min(c.byteLength, want - done);
    if (n === 0) continue;
    reads.push(host.readEntry(f, start + done, c, 0, n));
    done += n;
  }
  let got = 0;
  for (const n of await Promise.all(reads)) got += n;
  return got;
}

/** writev: the buffers written in turn over one claimed range (one range check, one position move). */
export function writevAt(f: CpFile, host: FileHost, chunks: readonly Uint8Array[], at: number | null): Promise<number> {
  const len = total(chunks);
  const start = f.claimWrite(at, len);
  const writes: Promise<void>[] = [];
  let done = 0;
  for (const c of chunks) {
    if (c.byteLength === 0) continue;
    writes.push(host.writeEntry(f, start + done, c));
    done += c.byteLength;
  }
  return Promise.all(writes).then(() => len);
}

/** readFile on a handle: from its position to the end (as of call order), which moves the position there. */
export async function readRest(f: CpFile, host: FileHost, options: unknown): Promise<Buffer | string> {
  const { encoding, signal } = parseFileOptions(options, 'readFile');
  if (signal?.aborted) throw abortError(signal);
  const left = Math.max(0, f.entry.size - f.entry.position);
  if (left > READ_FILE_MAX) throw new CpError('EINVAL', `${JSON.stringify(f.name)} has ${left} bytes from its position, too many for readFile: read it in parts`);
  const { start, want } = f.claimRead(null, left);
  const buf = Buffer.alloc(want);
  const n = want === 0 ? 0 : await host.readEntry(f, start, buf, 0, want);
  const out = n === want ? buf : buf.subarray(0, n);
  return encoding ? out.toString(encoding) : out;
}

/** writeFile / appendFile on a handle: the data written at its position (at the end in 'a' modes), which moves it. */
export function writeRest(f: CpFile, host: FileHost, data: unknown, options: unknown, call: string): Promise<void> {
  const { encoding, signal } = parseFileOptions(options, call);
  if (signal?.aborted) throw abortError(signal);
  const bytes = fileData(data, encoding, call);
  const start = f.claimWrite(null, bytes.byteLength);
  return bytes.byteLength === 0 ? Promise.resolve() : host.writeEntry(f, start, bytes);
}

/**
 * The bytes of a handle as a Readable, like the stream FileHandle.readLines reads: from `start` (the
 * handle's position, which it moves, when absent) to `end` inclusive, closing the handle at the end
 * when autoClose. Each chunk is one read() call, so it sees pending changes and takes its turn.
 */
class HandleBytes extends Readable {
  private pos: number | null;
  private got = 0;

  constructor(private f: CpFile, private o: LinesOptions) {
    super({ highWaterMark: o.highWaterMark, encoding: o.encoding ?? undefined });
    this.pos = o.start;
  }

  override _read(n: number): void {
    const left = this.o.end - (this.pos ?? this.got) + 1;
    const len = Math.min(n, this.o.highWaterMark, left);
    if (len <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(len);
    this.f.read(buf, 0, len, this.pos).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) return void this.push(null);
        this.got += bytesRead;
        if (this.pos !== null) this.pos += bytesRead;
        this.push(buf.subarray(0, bytesRead));
      },
      (e: unknown) => this.destroy(e as Error),
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (!this.o.autoClose || this.f.closed) return cb(err);
    // A handle whose store is closing is closed by the store: nothing more to do.
    this.f.close().then(() => cb(err), (e: unknown) => cb(err ?? (e instanceof CpError && (e.code === 'ECLOSED' || e.code === 'EBADF') ? null : (e as Error))));
  }
}

/** readLines: a readline interface over the handle's bytes (crlfDelay Infinity, as FileHandle.readLines). */
export function linesOf(f: CpFile, options: unknown): Interface {
  const input = new HandleBytes(f, parseLinesOptions(options));
  return createInterface({ input, crlfDelay: Infinity });
}
