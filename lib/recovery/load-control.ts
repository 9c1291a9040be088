/**
 * Recovery phase 1: the store directory and its control file (the apply cursor). Creates the store
 * when asked and none exists (or its creation never finished); refuses a control file that is
 * missing beside a journal, or damaged, since without it the apply cursor would be a guess.
 */
import * as crypto from 'node:crypto';
import { CONTROL_FILE, META_DIR, SEGMENT_HEADER_AREA, READABLE_VERSIONS_TEXT, type ControlState } from '../format.js';
import { type IO, isENOENT } from '../io.js';
import { readControl, createControl } from '../journal/control.js';
import { listSegments } from '../journal/segments.js';
import type { MetaPaths } from '../journal/paths.js';
import { CpError, ioError, corruptError } from '../errors.js';
import type { RecoverOptions } from './types.js';

export type { MetaPaths } from '../journal/paths.js';

export interface LoadedControl {
  /** No store existed (or its creation never finished) and one was created. */
  created: boolean;
  control: ControlState;
  /** The control file slot holding `control`. */
  slot: 0 | 1;
  /**
   * Counter 1: the control file as createStore wrote it; the cursor has never moved, so segment 1
   * and its catalog may never have been written. Every later cursor points into a segment that was
   * sized, written and synced (header and catalog) before the cursor moved there (FORMAT.md R8).
   */
  fresh: boolean;
}

const storeIdNew = (): string => crypto.randomBytes(8).toString('hex');

async function exists(io: IO, p: string): Promise<boolean> {
  try {
    await io.lstat(p);
    return true;
  } catch (e) {
    if (isENOENT(e)) return false;
    throw e;
  }
}

/** Create the metadata of a new store, durably. */
async function createStore(io: IO, dir: string, p: MetaPaths, sync: boolean): Promise<void> {
  const madeMeta = await io.mkdir(p.meta);
  await io.mkdir(p.journal);
  // The journal directory must be durable before the control file can be: a control file without
  // its journal directory is a store that can never be opened.
  if (sync) await io.fsyncDir(p.meta);
  const state: ControlState = { counter: 1, storeId: storeIdNew(), cursorSeq: 1, cursorOffset: SEGMENT_HEADER_AREA, appliedEpoch: 0 };
  await createControl(io, p.control, state, sync);
  if (sync) {
    await io.fsyncDir(p.journal);
    await io.fsyncDir(p.meta);
    if (madeMeta) await io.fsyncDir(dir);
  }
}

async function assertStoreDir(io: IO, dir: string): Promise<void> {
  try {
    const st = await io.stat(dir);
    if (!st.isDirectory) throw new CpError('EINVAL', `${dir} is not a directory`);
  } catch (e) {
    if (isENOENT(e)) throw new CpError('ENOENT', `store directory ${dir} does not exist`);
    throw ioError(e, `reading ${dir}`);
  }
}

const hasSegments = async (io: IO, p: MetaPaths): Promise<boolean> => (await listSegments(io, p.journal, null)).indexes.length > 0;

/** Read the control file, creating the store first when `opts.create` allows it. */
export async function loadControl(opts: RecoverOptions, p: MetaPaths, sync: boolean): Promise<LoadedControl> {
  const { io, dir } = opts;
  let created = false;
  await assertStoreDir(io, dir);
  if (!(await exists(io, p.control))) {
    if (await hasSegments(io, p)) {
      throw corruptError(`${p.control} is missing but the journal has segments: refusing to guess the apply cursor`, { kind: 'control-file', file: p.control, reason: 'missing' });
    }
    if (!opts.create) throw new CpError('ENOENT', `${dir} is not a cpfile store (no ${META_DIR}/${CONTROL_FILE})`);
    if (opts.dryRun) throw new CpError('ENOENT', `${dir} is not a cpfile store yet`);
    await createStore(io, dir, p, sync);
    created = true;
  }

  let ctl = await readControl(io, p.control);
  if (ctl.kind === 'empty') {
    // The creation of the store never finished: nothing was ever written to it.
    const segments = await hasSegments(io, p);
    if (segments || !opts.create || opts.dryRun) {
      throw corruptError(`${p.control} holds no valid slot${segments ? ' but the journal has segments' : ''}`, { kind: 'control-file', file: p.control, reason: 'empty' });
    }
    await io.unlink(p.control);
    await createStore(io, dir, p, sync);
    created = true;
    ctl = await readControl(io, p.control);
  }
  if (ctl.kind === 'bad') {
    const reason = ctl.reasons.join(', ');
    if (ctl.reasons.some((r) => r === 'version' || r === 'magic')) {
      throw new CpError('EFORMAT', `${p.control}: no valid slot (${reason}); this cpfile reads ${READABLE_VERSIONS_TEXT}`, { details: { file: p.control, reason } });
    }
    throw corruptError(`${p.control}: no valid slot (${reason})`, { kind: 'control-file', file: p.control, reason });
  }
  if (ctl.kind !== 'ok') throw corruptError('unreadable control file', { kind: 'control-file', file: p.control, reason: 'unreadable' });
  // A store created before its journal directory was durable (older createStore): re-create it.
  if (!opts.dryRun && (await io.mkdir(p.journal)) && sync) await io.fsyncDir(p.meta);
  return { created, control: ctl.state, slot: ctl.slot, fresh: ctl.state.counter === 1 };
}
