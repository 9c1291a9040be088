/**
 * Store: a directory of ordinary files with atomic epochs. Every change is journaled (through the
 * JournalWriter to the flusher); check() commits an epoch durably; committed epochs are applied to the
 * real files in the background; recovery at open (lib/store/open.ts) brings everything to the last
 * durable epoch.
 *
 * Store is the facade over its parts (lib/store/parts.ts): every call is validated at the call, then
 * runs in call order through the call queue (queue.ts). Reads see the store's own pending changes
 * through per-file overlays (pending.ts, overlay.ts) whose data stays in the journal, not in memory.
 * The open entries are in the catalog (catalog.ts); writes go through write-path.ts; check() and
 * rollback() are checkpoint.ts; applies are scheduled by apply-schedule.ts.
 */
import { EventEmitter } from 'node:events';
import { CpError, ioError } from '../errors.js';
import { RecordType, type CatalogEntry } from '../format.js';
import type { IO } from '../io.js';
import type { RecoveryReport } from '../recovery/index.js';
import type { JournalWriter } from '../journal/writer.js';
import type { FlusherPort } from '../flusher/port.js';
import { normalizeName, describe } from '../names.js';
import type { Lock } from '../lock.js';
import type { Hooks } from '../hooks.js';
import { MODES, type CpFile, type Mode } from './file.js';
import { LAID_OUT, type FileHost } from './host.js';
import { CallQueue } from './queue.js';
import { Catalog } from './catalog.js';
import { PendingFiles } from './pending.js';
import { StoreLimits } from './limits.js';
import { WritePath } from './write-path.js';
import { ApplySchedule } from './apply-schedule.js';
import { Checkpoint } from './checkpoint.js';
import { TwoPhase, type PreparedEpoch } from './two-phase.js';
import { readPending } from './read-through.js';
import { openEntry } from './open-file.js';
import { unlinkNow, renameNow } from './name-changes.js';
import type { StoreParts } from './parts.js';
import { startClose } from './closing.js';
import { storeStats, type StoreStats } from './stats.js';
import * as surface from './surface.js';
import type { ReaddirOptions, ReaddirResult, FileStat } from './listing.js';
import type { ReadFileOptions, ReadFileResult, WriteFileOptions } from './whole-args.js';
import { publish, type StoreEventMap } from './events.js';
import { Transactions } from './transaction.js';
import { StoreHold, STORE_HOLD, type HoldView } from './hold.js';
import { nameReadStream, nameWriteStream, type CpReadStream, type CpWriteStream, type StoreReadStreamOptions, type StoreWriteStreamOptions } from './streams.js';
import type { StoreSettings } from './options.js';

export type { StoreStats } from './stats.js';

/** @internal What openStore hands a new Store. */
export interface StoreInit {
  dir: string;
  settings: Pick<StoreSettings, 'applyThreshold' | 'applyDelay' | 'applySlice' | 'directMin' | 'maxInflight'> & { maxSize: number };
  writer: JournalWriter;
  port: FlusherPort;
  lock: Lock | null;
  report: RecoveryReport;
  /** The control file's apply cursor. */
  cursorPos: number;
  io: IO;
  hooks: Hooks | undefined;
}

/** A store of files with atomic epochs; an EventEmitter of 'checkpoint', 'applied' and 'listenerError' (lib/store/events.ts). */
export class Store extends EventEmitter<StoreEventMap> implements FileHost {
  readonly dir: string;
  /** What open-time recovery did. */
  readonly recovery: RecoveryReport;

  private io: IO;
  private writer: JournalWriter;
  private port: FlusherPort;
  private lock: Lock | null;
  private hooks: Hooks | undefined;
  private queue: CallQueue;
  private catalog: Catalog;
  private pending: PendingFiles;
  private limits: StoreLimits;
  private schedule: ApplySchedule;
  private checkpoint: Checkpoint;
  private twoPhase: TwoPhase;
  private parts: StoreParts;
  private closing: Promise<void> | null = null;
  private transactions = new Transactions();
  /** Held by a transaction or a coordinated step while its epoch is open (hold.ts). */
  private hold: StoreHold;

  /** @internal */
  constructor(init: StoreInit) {
    super();
    const { dir, io, writer, hooks, report } = init;
    this.dir = dir;
    this.io = io;
    this.recovery = report;
    this.writer = writer;
    this.port = init.port;
    this.lock = init.lock;
    this.hooks = hooks;
    this.queue = new CallQueue({ dir, writerFailure: () => writer.failure, durableEpoch: () => this.checkpoint.epoch });
    this.catalog = new Catalog(report);
    this.pending = new PendingFiles({ io, dir, open: this.catalog.open });
    this.limits = new StoreLimits(io, dir, init.settings.maxSize);
    this.schedule = new ApplySchedule({
      writer, queue: this.queue, pending: this.pending, applyThreshold: init.settings.applyThreshold, applyDelay: init.settings.applyDelay, applySlice: init.settings.applySlice,
      // A write waits for an apply of up to 4x the bytes it may have in flight rather than journal its epoch.
      waitBytes: 4 * init.settings.maxInflight,
      cursorPos: init.cursorPos, appliedEpoch: report.epoch, applyNow: (inQueue) => this.applyNow(inQueue),
      applied: (e) => publish(this, dir, 'applied', e),
    });
    this.parts = {
      dir, io, writer, hooks, queue: this.queue, catalog: this.catalog, pending: this.pending, limits: this.limits,
      writes: new WritePath(writer, this.catalog, init.settings.directMin, this.schedule),
      schedule: this.schedule,
      applyNow: (inQueue) => this.applyNow(inQueue), checkpointed: (e) => publish(this, dir, 'checkpoint', e),
    };
    this.checkpoint = new Checkpoint(this.parts, report.epoch);
    this.hold = new StoreHold(dir);
    this.twoPhase = new TwoPhase(this.parts, this.checkpoint, report.storeId, this.hold);
  }

  /** The epoch prepare() made durable and nobody decided yet, or null (a PREPARE on its way is not one yet). */
  get prepared(): PreparedEpoch | null {
    return this.twoPhase.prepared;
  }

  /** The store's id: 16 hex digits, made when the store was created, the same for its whole life. */
  get id(): string {
    return this.recovery.storeId;
  }

  /** The last durable checkpoint (0 for a new store). */
  get epoch(): number {
    return this.checkpoint.epoch;
  }

  set epoch(v: number) {
    this.checkpoint.epoch = v;
  }

  // ------------------------------------------------------------------------------------------
  // plumbing

  /** @internal At call time: refuses calls made after close() was called (ECLOSED), and on a failed store. */
  assertCallable(): void {
    this.queue.assertCallable();
  }

  /** @internal The hold and the two-phase state, for transactions and cpfile/postgres steps. */
  get [STORE_HOLD](): HoldView {
    return { hold: this.hold, preparing: this.twoPhase.busy };
  }

  /**
   * A call's checks at call time (assertCallable; for a call that ends the epoch, `held`, EBUSY
   * while a holder other than the caller holds the store: hold.ts; then `fn`'s own): what they
   * throw is the call's rejection.
   */
  private atCall<T>(fn: () => Promise<T>, held?: string): Promise<T> {
    try {
      this.assertCallable();
      const refusal = held ? this.hold.refusal(held) : null;
      if (refusal) throw refusal;
      return fn();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal close() was not called yet. */
  get callable(): boolean {
    return !this.queue.closeCalled;
  }

  /** @internal */
  assertUsable(): void {
    this.queue.assertUsable();
  }

  /** @internal lock lost */
  compromised(err: CpError): void {
    this.queue.compromised(err);
  }

  /** @internal The largest file the store's file system takes (probed at open). */
  get maxFileSize(): number {
    return this.limits.maxFileSize;
  }

  /** @internal A write or truncate to `end` bytes, beyond what the file system (probed at open) accepts. */
  tooLarge(name: string, what: string, end: number): CpError {
    return this.limits.tooLarge(name, what, end);
  }

  /** Test seam (test/helpers/journal.ts crash): the store is closed, as after a crash. */
  private get closed(): boolean {
    return this.queue.closed;
  }

  private set closed(v: boolean) {
    this.queue.closed = v;
  }

  /** Test seam (test/helpers/journal.ts crash): the background apply's timer. */
  private get applyTimer(): NodeJS.Timeout | null {
    return this.schedule.timer;
  }

  /**
   * Apply every durable epoch now (ApplySchedule.applyNow). Every apply, background ones too, starts
   * here: tests replace it on a store to keep committed epochs in the journal.
   */
  private applyNow(inQueue: boolean): Promise<void> {
    return this.schedule.applyNow(inQueue);
  }

  // ------------------------------------------------------------------------------------------
  // files

  /** Open `name` with an fopen mode ('r' by default). */
  open(name: string, mode: Mode = 'r'): Promise<CpFile> {
    return this.atCall(() => {
      if (!MODES.includes(mode)) throw new CpError('EINVAL', `mode must be one of ${MODES.join(', ')}, got ${describe(mode)}`);
      const n = normalizeName(name, this.dir);
      const po = this.checkpoint.openCalled();
      const opened = this.queue.run(async () => {
        try {
          // What check() and rollback() called since this open was called do to the entry.
          return this.checkpoint.openRan(po, await openEntry(this.parts, this, n, mode));
        } finally {
          this.checkpoint.openDone(po);
        }
      });
      // Also when the queue refuses the open before it runs (a failed store).
      opened.catch(() => this.checkpoint.openDone(po));
      return opened;
    });
  }

  /**
   * @internal The handle calls below were validated when they were made (CpFile.live: a call made
   * after f.close() or store.close() never gets here), and take effect in call order.
   */
  readEntry(f: CpFile, start: number, buf: Uint8Array, off: number, len: number): Promise<number> {
    return this.queue.run(() => readPending(this.parts, f.entry.overlay, f.entry.name, start, buf, off, len));
  }

  /** @internal `start`: where the caller decided, in call order (the entry's size then, for appends). */
  writeEntry(f: CpFile, start: number, data: Uint8Array): Promise<void> {
    if (this.queue.idle && !this.writer.congested && !this.parts.writes.waitsForApply(f.entry, start, data.length)) {
      // Nothing queued and no back-pressure: lay the write out now (no queue round trip).
      try {
        this.queue.admit();
        this.parts.writes.writeNow(f.entry, start, data);
        return LAID_OUT;
      } catch (e) {
        return Promise.reject(e instanceof CpError ? e : ioError(e, 'cpfile'));
      }
    }
    return this.queue.run(async () => {
      if (this.parts.writes.waitsForApply(f.entry, start, data.length)) {
        await this.schedule.applyForWrite();
        this.queue.admit(); // a flusher that failed in that apply: EREOPEN, as for any later call
      }
      if (this.writer.congested) await this.writer.drain();
      this.parts.writes.writeNow(f.entry, start, data);
    });
  }

  /** @internal */
  statEntry(f: CpFile): Promise<{ size: number }> {
    return this.queue.run(() => ({ size: f.entry.overlay.size }));
  }

  /** @internal */
  truncateEntry(f: CpFile, len: number): Promise<void> {
    return this.queue.run(() => {
      const e = f.entry;
      // The size limit was validated at the call (CpFile.truncate), and the open refused a file with
      // other hard links; one made since is refused when the truncate is applied (EPATH).
      const p = this.writer.append({ type: RecordType.TRUNCATE, name: e.name, length: len }, this.catalog.building);
      e.overlay.truncate(len, p);
      e.overlay.touch(p);
    });
  }

  /** @internal */
  closeHandle(f: CpFile): Promise<void> {
    f.closed = true;
    const position = f.entry.position;
    return this.queue.run(() => {
      const e = f.entry;
      e.handles.delete(f);
      if (e.handles.size > 0) return;
      this.catalog.closed(e, position);
      this.pending.release(e.name);
    });
  }

  // ------------------------------------------------------------------------------------------
  // names

  unlink(name: string): Promise<void> {
    return this.atCall(() => {
      const n = normalizeName(name, this.dir);
      return this.queue.run(() => unlinkNow(this.parts, n));
    });
  }

  /** Rename `from` to `to`, replacing `to` if it exists (as POSIX rename). */
  rename(from: string, to: string): Promise<void> {
    return this.atCall(() => {
      const a = normalizeName(from, this.dir);
      const b = normalizeName(to, this.dir);
      return this.queue.run(() => renameNow(this.parts, a, b));
    });
  }

  /** The whole content of `name`, pending changes included: a string when `options` give an encoding. */
  readFile<O extends ReadFileOptions | undefined = undefined>(name: string, options?: O): Promise<ReadFileResult<O>> {
    return surface.readFile(this.parts, name, options) as Promise<ReadFileResult<O>>;
  }

  /** Replace the content of `name` (creating it), atomically at the next check. */
  writeFile(name: string, data: string | NodeJS.ArrayBufferView, options?: WriteFileOptions): Promise<void> {
    return surface.writeFile(this.parts, name, data, options);
  }

  // ------------------------------------------------------------------------------------------
  // epochs

  /** @internal The catalog as of the last COMMIT laid out (for the CATALOG record opening each segment). */
  catalogSnapshot(): { entries: CatalogEntry[]; epoch: number } {
    return this.catalog.snapshot();
  }

  /** Make one atomic, durable epoch of every change so far; resolves with its number. */
  check(): Promise<number> {
    // While an epoch is prepared, a check runs after its decision, and not at all after an abort (two-phase.ts).
    return this.atCall(() => this.checkpoint.check(this.twoPhase.guard('check()')), 'check()');
  }

  /**
   * Two-phase check: make the epoch's records and a PREPARE durable, and leave its decision to the
   * caller (commit() or abort() of what this resolves with). See PreparedEpoch; FORMAT.md R18.
   */
  prepare(opts?: { id?: string }): Promise<PreparedEpoch> {
    return this.atCall(() => this.twoPhase.prepare(opts === undefined ? {} : opts), 'prepare()');
  }

  /**
   * Discard every change since the last check: files, names and positions return to it. In call
   * order, at once: positions and sizes go back to those of the last check() called, and handles
   * opened since it are closed.
   */
  rollback(): Promise<void> {
    return this.atCall(() => this.checkpoint.rollback(), 'rollback()');
  }

  /** Final check (unless discard), apply everything, release the lock and the worker. */
  close(opts: { discard?: boolean } = {}): Promise<void> {
    if (this.closing) return this.closing;
    if (this.queue.closed) return Promise.resolve();
    // While a transaction or a coordinated step holds the store, close waits for it (hold.ts).
    const wait = this.hold.closeLater(!!opts.discard, this.twoPhase.busy, (discard) => this.close({ discard }));
    if (wait) return wait;
    const { dir, io, writer, port, lock, hooks, queue, catalog, pending, schedule, checkpoint } = this;
    const parts = { dir, io, writer, port, lock, hooks, queue, catalog, pending, schedule, checkpoint, applyNow: (b: boolean) => this.applyNow(b) };
    const closing = startClose(parts, this.twoPhase, dir, !!opts.discard);
    // (an EPREPARED refusal closes nothing: a later close() may still succeed)
    if (this.queue.closeCalled) {
      this.closing = closing;
      this.hold.closedNow(closing); // closes that waited for the holder end with this one (a discard)
    }
    return closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  stats(): StoreStats {
    return storeStats(this.parts, this.checkpoint);
  }

  // --- listing, stat by name, whole files, transactions (surface.ts; README "Listing, whole files, events and transactions")
  /** Names under `dir` as this store sees them now (pending changes included), sorted. */
  readdir<O extends ReaddirOptions | undefined = undefined>(dir = '', options?: O): Promise<ReaddirResult<O>> {
    return surface.readdir(this.parts, dir, options) as Promise<ReaddirResult<O>>;
  }
  /** `{ size, isFile(), isDirectory() }` of `name` as this store sees it; ENOENT if absent. */
  stat(name: string): Promise<FileStat> { return surface.stat(this.parts, name); }
  /** Whether `name` is a file or directory of the store now; rejects only for a bad name (EINVAL, EPATH). */
  exists(name: string): Promise<boolean> { return surface.exists(this.parts, name); }
  /** Append to `name` (creating it), atomically at the next check. */
  appendFile(name: string, data: string | NodeJS.ArrayBufferView, options?: WriteFileOptions): Promise<void> {
    return surface.appendFile(this.parts, name, data, options);
  }
  /** Copy `from`'s content as the store sees it to `to`, atomically at the next check; `mode`: fs.constants.COPYFILE_EXCL. */
  copyFile(from: string, to: string, mode?: number): Promise<void> { return surface.copyFile(this.parts, from, to, mode); }
  /** Run `fn`, then check() (resolving with fn's result), or rollback() if it throws (rejecting with its error). */
  transaction<T>(fn: () => T | Promise<T>): Promise<Awaited<T>> { return this.transactions.run(this, fn); }
  // streams (lib/store/streams.ts): the name is opened now (call order) and closed at the stream's end
  createReadStream(name: string, options?: StoreReadStreamOptions | BufferEncoding): CpReadStream {
    return nameReadStream(this, name, options);
  }
  createWriteStream(name: string, options?: StoreWriteStreamOptions | BufferEncoding): CpWriteStream {
    return nameWriteStream(this, name, options);
  }
}
