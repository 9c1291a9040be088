/**
 * openStore: validate the arguments, make the store's directories, take the lock, recover the store
 * to its last durable checkpoint (lib/recovery), start the journal writer and its flusher, and hand
 * all of it to a Store.
 */
import * as path from 'node:path';
import { CpError, ioError } from '../errors.js';
import { pos } from '../format.js';
import { type IO, isENOENT } from '../io.js';
import { recover, metaPaths } from '../recovery/index.js';
import { JournalWriter } from '../journal/writer.js';
import { InlinePort, WorkerPort, type FlusherPort } from '../flusher/port.js';
import { describe } from '../names.js';
import { acquireLock, fencePort } from '../lock.js';
import { callHook, validateHooks } from '../hooks.js';
import { parseOptions, type StoreOptions, type StoreSettings } from './options.js';
import { Store, type StoreInit } from './store.js';

/** Open (creating if needed) the store in `dir`, recovering it to its last durable checkpoint. */
export async function openStore(dir: string, options: StoreOptions = {}): Promise<Store> {
  if (typeof dir !== 'string' || dir.length === 0) throw new CpError('EINVAL', `store directory must be a non-empty string, got ${describe(dir)}`);
  if (options === null || typeof options !== 'object') throw new CpError('EINVAL', 'options must be an object');
  const hooks = validateHooks(options.hooks);
  if (options.resolveInDoubt !== undefined && typeof options.resolveInDoubt !== 'function') {
    throw new CpError('EINVAL', `option resolveInDoubt must be a function, got ${describe(options.resolveInDoubt)}`);
  }
  const settings = parseOptions(options);
  const { io } = settings;
  const root = path.resolve(dir);
  const p = metaPaths(root);
  // (resolving the root also proves it is reachable; names are confined without following links)
  await makeStoreDirs(io, root, p.meta, settings.sync);

  let store: Store | null = null;
  let pendingCompromise: CpError | null = null;
  const lock = options.noLock ? null : await acquireLock(p.meta, settings.lockStale, (err) => {
    if (store) store.compromised(err);
    else pendingCompromise = err;
  });
  let port: FlusherPort | null = null;
  try {
    // The worker thread starts (loads its modules) while recovery runs.
    port = options.io || options.inline ? new InlinePort(io) : new WorkerPort(settings.flusherPoll);
    const inWorker = port instanceof WorkerPort;
    // Nothing reaches the flusher once the lock is not ours any more (removed or replaced by hand).
    if (lock) port = fencePort(port, lock);
    const rec = await recover({ io, dir: root, sync: settings.sync, create: true, force: options.force, segmentSize: settings.segmentSize, markStep: settings.markStep, resolveInDoubt: options.resolveInDoubt });
    let storeRef: Store | null = null;
    const writer = new JournalWriter(port, io, {
      segmentSize: settings.segmentSize, storeId: rec.control.storeId, batchBytes: settings.batchBytes, maxInflight: settings.maxInflight, journalDir: p.journal,
    }, { segment: rec.segment, writeOffset: rec.writeOffset, free: rec.free, nextIndex: rec.nextIndex, maxSeq: rec.maxSeq },
    () => storeRef!.catalogSnapshot());
    const init = await writer.init({
      dir: root, sync: settings.sync, control: rec.control, controlSlot: rec.controlSlot, sparseFrom: rec.sparseFrom, markStep: settings.markStep,
      ...(options.workerIO && inWorker ? { ioModule: options.workerIO } : {}),
    });
    if (!init.ok) throw new CpError((init.error?.code as 'EIO') ?? 'EIO', `starting the flusher: ${init.error?.message}`);
    // The largest file the file system takes, learnt once (a few dozen sparse ftruncates of a probe
    // file in .cpfile): writes and truncates past it are refused at the call with EFBIG.
    const maxSize = await io.maxFileSize(p.meta).catch(() => Number.MAX_SAFE_INTEGER);
    store = new Store({
      dir: root, settings: storeSettings(settings, maxSize), writer, port, lock, report: rec.report,
      cursorPos: pos(rec.control.cursorSeq, rec.control.cursorOffset), io, hooks,
    });
    storeRef = store;
    if (pendingCompromise) store.compromised(pendingCompromise);
    // (The store's id and directory, for a checkpoint store that keeps several stores: postgresHooks.)
    await callHook(hooks, 'init', { storeId: rec.control.storeId, dir: root });
    if (hooks && rec.report.entries.length) {
      for (const e of rec.report.entries) await callHook(hooks, 'update', e.name, e.position, undefined, 'open');
      await callHook(hooks, 'commit');
    }
    return store;
  } catch (e) {
    if (store) await store.close({ discard: true }).catch(() => undefined);
    else {
      if (port) await port.destroy().catch(() => undefined);
      if (lock) await lock.release();
    }
    throw e instanceof CpError ? e : ioError(e, `opening store ${root}`);
  }
}

function storeSettings(s: StoreSettings, maxSize: number): StoreInit['settings'] {
  return { applyThreshold: s.applyThreshold, applyDelay: s.applyDelay, applySlice: s.applySlice, directMin: s.directMin, maxInflight: s.maxInflight, maxSize };
}

/** Make the store directory and its `.cpfile` (durably, with sync); resolves with the store directory's real path. */
async function makeStoreDirs(io: IO, root: string, meta: string, sync: boolean): Promise<string> {
  try {
    await mkdirp(io, root, sync);
  } catch (e) {
    throw ioError(e, `creating store directory ${root}`);
  }
  try {
    if (await io.mkdir(meta) && sync) await io.fsyncDir(root);
  } catch (e) {
    throw ioError(e, `creating ${meta}`);
  }
  try {
    return await io.realpath(root);
  } catch (e) {
    throw ioError(e, `resolving ${root}`);
  }
}

/** mkdir -p; with `sync`, each directory it makes is made durable in its parent (fsync of the parent). */
async function mkdirp(io: IO, dir: string, sync: boolean): Promise<void> {
  try {
    const st = await io.stat(dir);
    if (!st.isDirectory) throw new CpError('EINVAL', `${dir} exists and is not a directory`);
    return;
  } catch (e) {
    if (!isENOENT(e)) throw e;
  }
  const parent = path.dirname(dir);
  if (parent !== dir) await mkdirp(io, parent, sync);
  if ((await io.mkdir(dir)) && sync) await io.fsyncDir(parent);
}
