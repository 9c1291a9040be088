/**
 * cpfile: ordinary files with atomic epochs.
 *
 *   const store = await openStore(dir);
 *   const f = await store.open('ledger.dat', 'a+');
 *   await f.write('...');
 *   await store.check();      // one atomic, durable epoch for every file of the store
 */
export { Store, type StoreStats } from './store/store.js';
export { openStore } from './store/open.js';
export { type StoreOptions } from './store/options.js';
export { CpFile, type Mode, type Whence } from './store/file.js';
export { CpReadStream, CpWriteStream, type ReadStreamOptions, type WriteStreamOptions, type StoreReadStreamOptions, type StoreWriteStreamOptions } from './store/streams.js';
export { CpError, corruptionOf, type CpErrorCode, type CorruptionDetails, type CorruptionKind } from './errors.js';
export { type Hooks } from './hooks.js';
export { type RecoveryReport, type InDoubtEpoch, type InDoubtReport, type ResolveInDoubt } from './recovery/index.js';
export { type PreparedEpoch } from './store/two-phase.js';
export { type IO, nodeIO } from './io.js';
export { StoreDirent, FileStat, type ReaddirOptions } from './store/listing.js';
export { type ReadFileOptions, type WriteFileOptions } from './store/whole-args.js';
export { type CheckpointEvent, type AppliedEvent, type ListenerErrorInfo, type StoreEventMap } from './store/events.js';
