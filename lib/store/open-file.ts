/**
 * Opening an entry, when the open's turn comes in the call queue: the catalog's bound, the checks an
 * fopen would make now rather than when the epoch is applied, the hooks, and the CREATE or TRUNCATE
 * record that 'w' and new files need.
 */
import { CpError } from '../errors.js';
import { RecordType } from '../format.js';
import { callHook } from '../hooks.js';
import { CpFile, type Mode } from './file.js';
import type { Entry, FileHost } from './host.js';
import type { StoreParts } from './parts.js';

/** Open `name` (normalized) with `mode` in the store `host`; the caller queues this (Store.open). */
export async function openEntry(parts: StoreParts, host: FileHost, name: string, mode: Mode): Promise<CpFile> {
  const { catalog, pending, limits, writer, hooks } = parts;
  if (catalog.open.has(name)) throw new CpError('EBUSY', `${JSON.stringify(name)} is already open in this store: use dup()`);
  // Every open entry is in the catalog that opens each journal segment (FORMAT.md R7).
  catalog.admit(name);
  let ov = await pending.overlayOf(name);
  if (ov && mode !== 'r') await limits.assertOneLink(name, ov);
  const resumedPos = ov ? catalog.unfinished.get(name) : undefined;
  const resumed = resumedPos !== undefined;
  if (!ov) {
    if (mode === 'r' || mode === 'r+') throw new CpError('ENOENT', `no such file ${JSON.stringify(name)} in store ${parts.dir}`);
    if (!pending.foundAbsent(name)) await pending.validate(name);
    pending.overlays.assertCanCreate(name);
    await limits.assertDirWritable(name);
  } else if (mode !== 'r' && ov.nsPos < 0) {
    // As fopen: a file that cannot be written is refused at the open, not when the epoch is applied.
    await limits.assertChangeable(name, false);
  }
  // The hooks may refuse the open (EHOOK): ask them before anything is journaled, so that a
  // refused open neither creates nor truncates the file.
  let userdata: unknown;
  if (hooks) {
    const q = (await callHook(hooks, 'query', name)) as { userdata?: unknown } | null | undefined;
    if (q) userdata = q.userdata;
    else userdata = await callHook(hooks, 'insert', name);
  }
  if (!ov) {
    pending.closeBase(name);
    ov = pending.created(name, writer.append({ type: RecordType.CREATE, name }, catalog.building));
  } else if ((mode === 'w' || mode === 'w+') && !resumed) {
    const p = writer.append({ type: RecordType.TRUNCATE, name, length: 0 }, catalog.building);
    ov.truncate(0, p);
    ov.touch(p);
  }
  catalog.unfinished.delete(name);
  catalog.userdata.set(name, userdata);
  const entry: Entry = { name, position: resumed ? resumedPos! : 0, size: ov.size, checked: null, overlay: ov, handles: new Set(), writable: mode !== 'r' };
  const f = new CpFile(host, entry, mode, resumed);
  entry.handles.add(f);
  catalog.open.set(name, entry);
  return f;
}
