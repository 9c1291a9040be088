/**
 * Helpers for tests that look at or damage the journal on purpose: a store that keeps everything in
 * the journal (nothing applied), a way to stop it as a crash would, and record locations.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, type Store, type StoreOptions } from '../../lib/index.js';
import { walkLog, type ScannedRecord } from '../../lib/journal/reader.js';
import { listSegments } from '../../lib/journal/segments.js';
import { SegmentFiles } from '../../lib/journal/segment-files.js';
import { readControl } from '../../lib/journal/control.js';
import { metaPaths } from '../../lib/journal/paths.js';
import { nodeIO } from '../../lib/io.js';

export function tempDir(prefix = 'cpfile-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Options for a store whose committed epochs stay in the journal until it is closed. */
export const NO_APPLY: StoreOptions = { inline: true, noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40, segmentSize: 1 << 20 };

export async function openHeld(dir: string, extra: StoreOptions = {}): Promise<Store> {
  return openStore(dir, { ...NO_APPLY, ...extra });
}

/** Stop a store the way a crash would: whatever was handed to the flusher is written, nothing else happens. */
export async function crash(store: Store): Promise<void> {
  const s = store as unknown as { writer: { flush(): Promise<unknown> }; port: { destroy(): Promise<void> }; closed: boolean; applyTimer: NodeJS.Timeout | null };
  await s.writer.flush();
  if (s.applyTimer) clearTimeout(s.applyTimer);
  await s.port.destroy();
  s.closed = true;
}

/** Every valid record of the live log, from the start of the cursor's segment. */
export async function records(dir: string): Promise<ScannedRecord[]> {
  const p = metaPaths(dir);
  const ctl = await readControl(nodeIO, p.control);
  if (ctl.kind !== 'ok') throw new Error('no control');
  const listing = await listSegments(nodeIO, p.journal, ctl.state.storeId);
  const files = new SegmentFiles(nodeIO);
  const out: ScannedRecord[] = [];
  try {
    await walkLog(listing.bySeq, files, ctl.state.cursorSeq, 4096, (r) => {
      out.push({ ...r, payload: Buffer.from(r.payload) });
    });
  } finally {
    await files.closeAll();
  }
  return out;
}

/** The segment file holding a record. */
export function segmentPath(dir: string, rec: ScannedRecord): string {
  return path.join(metaPaths(dir).journal, `seg-${String(rec.index).padStart(6, '0')}.cpj`);
}

/** XOR one byte of a file. */
export function flipByte(file: string, at: number, mask = 0x01): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= mask;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** name -> content of every user file under dir (the metadata directory excluded). */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, prefix: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (prefix === '' && e.name === '.cpfile') continue;
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full, `${prefix}${e.name}/`);
      else out.set(`${prefix}${e.name}`, fs.readFileSync(full).toString('hex'));
    }
  };
  walk(dir, '');
  return out;
}
