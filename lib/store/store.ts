/**
 * Store: a directory of ordinary files with atomic epochs. Every change is journaled (through the
 * JournalWriter to the flusher); check() commits an epoch durably; committed epochs are applied to the
 * real files in the background; recovery at open brings everything to the last durable epoch.
 *
 * All operations run in call order through one queue per store. Reads see the store's own pending
 * changes through per-file overlays (lib/store/overlay.ts) whose data stays in the journal, not in memory.
 */
import * as path from 'node:path';
import { CpError, ioError } from '../errors.js';
import {
  DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, MAX_CATALOG_BYTES, RecordType, entrySize, pos, posSeq, posOffset, type CatalogEntry,
} from '../format.js';
import { type IO, nodeIO, readFully, isENOENT } from '../io.js';
import { recover, type RecoveryReport } from '../recovery/index.js';
import { metaPaths } from '../journal/paths.js';
import { JournalWriter } from '../journal/writer.js';
import { InlinePort, WorkerPort, type FlusherPort } from '../flusher/port.js';
import { Namespace } from './namespace.js';
import { Overlay } from './overlay.js';
import { normalizeName, checkInside, describe, storePath, openInStore, quote } from '../names.js';
import { acquireLock, fencePort, type Lock } from '../lock.js';
import { CpFile, MODES, type Mode } from './file.js';
import { callHook, validateHooks, type Hooks } from '../hooks.js';

export interface StoreOptions {
  /** The seed's cp_hooks: mirror entries to an external checkpoint store. */
  hooks?: Hooks;
  /** fsync at all (default true). false trades every durability guarantee for speed. */
  sync?: boolean;
  /** Journal segment size in bytes (default 64 MiB). */
  segmentSize?: number;
  /** An open store checks every lockStale/2 ms that its lock is still its own (default 10000, min 2000); no lock is taken over by age. */
  lockStale?: number;
  /** Run the flusher on the main thread instead of a worker (deterministic tests). */
  inline?: boolean;
  /** The I/O implementation (tests and the torture suite); implies inline. */
  io?: IO;
  /**
   * Tests: the URL of a module exporting `io` (an IO) that the flusher worker uses instead of its
   * synchronous node:fs implementation, to record or fail the worker's own calls.
   */
  workerIO?: string;
  /** Journal batch buffer size (default 1 MiB). */
  batchBytes?: number;
  /** Bytes on their way to the flusher before write() waits (default 16 MiB). */
  maxInflight?: number;
  /**
   * Direct appends: once a file's appends in one epoch reach this many bytes, later appends to it in
   * that epoch go straight to the file instead of through the journal (written once, not twice), if
   * the last commit lists the file as open; recovery cuts them off (back to the committed size that
   * commit records) if the epoch does not commit. Default 1 MiB; false turns it off.
   */
  directAppendMin?: number | false;
  /** Committed but unapplied journal bytes that trigger an apply at once (default 8 MiB). */
  applyThreshold?: number;
  /** Idle delay before committed epochs are applied in the background, in ms (default 25). */
  applyDelay?: number;
  /** Proceed past journal corruption (copying the journal aside first). cp-recover --force uses it. */
  force?: boolean;
  /** Take no lock (only for tests that build crash states in memory). */
  noLock?: boolean;
}

/** @internal What writeEntry returns when the write was laid out at once (CpFile.write then skips a tick). */
export const LAID_OUT: Promise<void> = Promise.resolve();

/** @internal */
export interface Entry {
  name: string;
  /** Position and size as of call order: calls update them when they are made, not when they run. */
  position: number;
  size: number;
  /** Position and size as of the last check() called since the entry was opened (rollback returns to them); null: none. */
  checked: { position: number; size: number } | null;
  overlay: Overlay;
  handles: Set<CpFile>;
  /** Opened for writing (any mode but 'r'): only such entries carry a size in COMMIT records. */
  writable: boolean;
}

export interface StoreStats {
  records: number;
  bytesJournaled: number;
  /** Bytes appended straight to files (direct appends), not through the journal. */
  bytesDirect: number;
  fsyncs: number;
  epochs: number;
  batches: number;
  appliedEpoch: number;
  applyLag: { epochs: number; bytes: number };
  openFiles: number;
}

export class Store {
  readonly dir: string;
  /** The last durable checkpoint (0 for a new store). */
  epoch: number;
  /** What open-time recovery did. */
  readonly recovery: RecoveryReport;

  private io: IO;
  private rootReal: string;
  private building: number;
  private entries = new Map<string, Entry>();
  private overlays = new Namespace();
  /** Open entries as of the last COMMIT laid out in the journal (name -> position). */
  /**
   * `since`: the epoch of the first COMMIT (or recovered catalog) that listed the entry open, as it
   * stands now. Direct appends need it listed by two commits (directStart).
   */
  private logged = new Map<string, { position: number; size: number | null; since: number }>();
  /** Entries left unfinished by an earlier run, not reopened yet (name -> checkpointed position). */
  private unfinished = new Map<string, number>();
  private userdata = new Map<string, unknown>();
  /** Entries closed (or whose file was unlinked or renamed away) since the last commit: name -> position then. */
  private closedSince = new Map<string, number>();
  private tail: Promise<unknown> = Promise.resolve();
  /** No call is queued or running: a call that needs no I/O may run at once, keeping call order. */
  private idle = true;
  private failure: CpError | null = null;
  private closed = false;
  /** close() was called: every later call is refused with ECLOSED (the final check covers those before). */
  private closeCalled = false;
  /**
   * Opens called but not run yet. A check() called meanwhile must see the entry as the open leaves
   * it; a rollback() called meanwhile (with no check between) closes it.
   */
  private pendingOpens = new Set<{ checks: Map<Entry, number>[]; doomed: Set<Entry> | null }>();
  private closing: Promise<void> | null = null;
  private appliedPos: number;
  private appliedEpoch: number;
  private appliedSeq: number;
  private durableEnd: number;
  private lastCheck: Promise<unknown> = Promise.resolve();
  private applying: Promise<void> | null = null;
  private applyTimer: NodeJS.Timeout | null = null;
  private epochsDone = 0;
  /** measureCatalog() as of the last check, plus the entries opened since. */
  private catalogBytes = 0;

  /** @internal */
  constructor(
    dir: string, rootReal: string, private opts: Required<Pick<StoreOptions, 'applyThreshold' | 'applyDelay'>> & StoreOptions & { directMin: number; maxSize: number },
    private writer: JournalWriter, private port: FlusherPort, private lock: Lock | null, report: RecoveryReport,
    cursorPos: number, io: IO, private hooks: Hooks | undefined,
  ) {
    this.dir = dir;
    this.rootReal = rootReal;
    this.io = io;
    this.recovery = report;
    this.epoch = report.epoch;
    this.building = report.epoch + 1;
    this.appliedEpoch = report.epoch;
    this.appliedPos = cursorPos;
    this.appliedSeq = posSeq(cursorPos);
    this.durableEnd = cursorPos;
    for (const e of report.entries) {
      this.logged.set(e.name, { position: e.position, size: e.size, since: report.epoch });
      this.unfinished.set(e.name, e.position);
    }
    this.catalogBytes = this.measureCatalog();
  }

  // ------------------------------------------------------------------------------------------
  // plumbing

  /** @internal At call time: refuses calls made after close() was called (ECLOSED), and on a failed store. */
  assertCallable(): void {
    if (this.closeCalled) throw new CpError('ECLOSED', `store ${this.dir} is closed`);
    this.assertUsable();
  }

  /** @internal close() was not called yet. */
  get callable(): boolean {
    return !this.closeCalled;
  }

  /** @internal */
  assertUsable(): void {
    if (this.closed) throw new CpError('ECLOSED', `store ${this.dir} is closed`);
    if (this.failure) throw this.failure;
  }

  /** Run `fn` after every earlier call of this store: calls take effect in call order. */
  private run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.idle = false;
    const p = this.tail.then(async () => {
      if (this.writer.failure && !this.closed) this.fail(this.writer.failure);
      this.assertUsable();
      try {
        return await fn();
      } catch (e) {
        // Whatever fails below (fs, the flusher), callers only ever see a CpError.
        throw e instanceof CpError ? e : ioError(e, 'cpfile');
      }
    });
    const settled = (): void => {
      if (this.tail === t) this.idle = true;
    };
    const t: Promise<unknown> = p.then(settled, settled);
    this.tail = t;
    return p;
  }

  /** A flusher failure leaves the journal in an unknown state: only reopening (recovery) is safe. */
  private fail(err: CpError): CpError {
    if (!this.failure) {
      this.failure = err.code === 'ECOMPROMISED' ? err
        : new CpError('EREOPEN', `store ${this.dir} must be reopened after an I/O failure (${err.code}: ${err.message}); recovery restores epoch ${this.epoch}`, { cause: err });
    }
    return err;
  }

  /** @internal lock lost */
  compromised(err: CpError): void {
    if (!this.failure && !this.closed) this.failure = err;
  }

  private full(name: string): string {
    return storePath(this.dir, name);
  }

  private closeFd(fd: number | null): void {
    if (fd !== null) this.io.close(fd).catch(() => undefined);
  }

  /** @internal The largest file the store's file system takes (probed at open). */
  get maxFileSize(): number {
    return this.opts.maxSize;
  }

  /** @internal A write or truncate to `end` bytes, beyond what the file system (probed at open) accepts. */
  tooLarge(name: string, what: string, end: number): CpError {
    if (end > Number.MAX_SAFE_INTEGER && this.opts.maxSize >= Number.MAX_SAFE_INTEGER) return new CpError('EINVAL', `${what} past the largest supported position (2^53 - 1) in ${JSON.stringify(name)}`);
    return new CpError('EFBIG', `${what} of ${JSON.stringify(name)} to ${end} bytes: the store's file system takes files of at most ${this.opts.maxSize} bytes`);
  }

  /**
   * Refuse now what applying would be refused: `name`'s file on disk cannot be opened for writing
   * (mode bits, immutable, read-only file system). `removing` (unlink, rename): only what also
   * forbids removing or renaming it (EPERM: immutable or append-only; EROFS); mode bits do not.
   */
  private async assertChangeable(name: string, removing: boolean): Promise<void> {
    let fd: number;
    try {
      fd = await this.io.open(this.full(name), 'readwrite');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (isENOENT(e) || code === 'ENOTDIR' || (removing && code === 'EACCES')) return;
      throw ioError(e, `${JSON.stringify(name)} cannot be ${removing ? 'removed or renamed' : 'written'}`);
    }
    await this.io.close(fd);
  }

  /** Refuse now a name created or removed in a directory this process cannot change (its nearest existing one). */
  private async assertDirWritable(name: string): Promise<void> {
    let d = path.dirname(this.full(name));
    for (;;) {
      try {
        await this.io.access(d);
        return;
      } catch (e) {
        if (isENOENT(e) && d.length > this.dir.length) {
          d = path.dirname(d);
          continue;
        }
        if (isENOENT(e)) return;
        throw ioError(e, `cannot create or remove names in ${d}`);
      }
    }
  }

  /** Whether `name`'s file is pending unlink or rename away (a tombstone): names under it may be created. */
  private unlinkedPending = (name: string): boolean => {
    const ov = this.overlays.get(name);
    return ov !== undefined && !ov.exists;
  };

  /** The name overlayOf() just found absent, having checked it with checkInside(). */
  private checkedAbsent: string | null = null;

  /** The overlay of `name`, opening the on-disk file when nothing is pending; null when it does not exist. */
  private async overlayOf(name: string): Promise<Overlay | null> {
    this.checkedAbsent = null;
    const ov = this.overlays.get(name);
    if (ov) return ov.exists ? ov : null;
    if (!(await checkInside(this.io, this.rootReal, this.dir, name, this.unlinkedPending))) {
      // lstat found no such file: no need to try opening it, nor for the caller to check again.
      this.checkedAbsent = name;
      return null;
    }
    let fd: number | null;
    try {
      // No symlink followed here either (one planted since checkInside: EPATH).
      fd = await openInStore(this.io, this.dir, name, 'read');
    } catch (e) {
      if (e instanceof CpError) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw ioError(e, `opening ${name}`);
    }
    if (fd === null) return null;
    const st = await this.io.fstat(fd);
    if (!st.isFile) {
      await this.io.close(fd);
      throw new CpError('EINVAL', `${JSON.stringify(name)} is ${st.isDirectory ? 'a directory' : 'not a regular file'}`);
    }
    const fresh = new Overlay(fd, st.size, true, true);
    this.overlays.set(name, fresh);
    return fresh;
  }

  /**
   * Drop an overlay nobody uses and nothing is pending on. One with pending changes stays, but not its
   * base fd while the file is at its name on disk (reads reopen it there, readOverlay): an epoch that
   * changes thousands of files holds no descriptor per file.
   */
  private release(name: string): void {
    const ov = this.overlays.get(name);
    if (!ov || this.entries.has(name)) return;
    if (ov.lastPos >= 0) {
      if (ov.nsPos < 0 && ov.baseFd !== null) {
        this.closeFd(ov.baseFd);
        ov.baseFd = null;
      }
      return;
    }
    this.overlays.delete(name);
    this.closeFd(ov.baseFd);
  }

  /** A file with other hard links is written by no store call (the other names would change too). */
  private async assertOneLink(name: string, ov: Overlay): Promise<void> {
    let nlink = 1;
    if (ov.baseFd !== null) nlink = (await this.io.fstat(ov.baseFd)).nlink;
    else if (ov.nsPos < 0) nlink = (await this.io.lstat(this.full(name)).catch(() => null))?.nlink ?? 1;
    if (nlink > 1) throw new CpError('EPATH', `${quote(name)} has ${nlink} hard links: cpfile opens such a file read-only (writing it would change the other names too)`);
  }

  /** The overlay of a file created by the CREATE record at `p` (replacing any tombstone). */
  private created(name: string, p: number): Overlay {
    const ov = new Overlay(null, 0, true, false);
    ov.truncate(0, p);
    ov.nsPos = p;
    this.touch(ov, p);
    this.overlays.set(name, ov);
    return ov;
  }

  private touch(ov: Overlay, p: number): void {
    if (p > ov.lastPos) ov.lastPos = p;
  }

  private async readOverlay(ov: Overlay, name: string, start: number, buf: Uint8Array, off: number, len: number): Promise<number> {
    const end = Math.min(start + len, ov.size);
    if (start >= end) return 0;
    // Direct appends are read back from the file itself, once the flusher has written them.
    if (ov.directMark > this.writer.directDone) await this.writer.whenDirect(ov.directMark);
    for (const piece of ov.pieces(start, end)) {
      const into = off + (piece.start - start);
      const n = piece.end - piece.start;
      if (piece.ext) {
        const e = piece.ext;
        const jAt = e.jOff + (piece.start - e.start);
        await this.writer.whenWritten(pos(e.seq, jAt + n));
        await this.writer.read(e.index, jAt, buf, into, n);
        continue;
      }
      const baseEnd = Math.min(piece.end, ov.baseLimit);
      let got = 0;
      if (piece.start < baseEnd) {
        // No base fd yet: a new file whose creation has been applied since (settled). Its name is
        // stable: an open entry's name can only see data operations.
        if (ov.baseFd === null && ov.nsPos < 0) {
          try {
            ov.baseFd = await openInStore(this.io, this.dir, name, 'read');
          } catch (e) {
            if (e instanceof CpError) throw e;
            if (!isENOENT(e)) throw ioError(e, `opening ${name}`);
          }
        }
        if (ov.baseFd !== null) got = await readFully(this.io, ov.baseFd, buf, into, baseEnd - piece.start, piece.start);
      }
      if (got < n) buf.fill(0, into + got, into + n);
    }
    return end - start;
  }

  // ------------------------------------------------------------------------------------------
  // files

  /** Open `name` with an fopen mode ('r' by default). */
  open(name: string, mode: Mode = 'r'): Promise<CpFile> {
    try {
      this.assertCallable();
      if (!MODES.includes(mode)) throw new CpError('EINVAL', `mode must be one of ${MODES.join(', ')}, got ${describe(mode)}`);
      const n = normalizeName(name, this.dir);
      const po = { checks: [] as Map<Entry, number>[], doomed: null as Set<Entry> | null };
      this.pendingOpens.add(po);
      const opened = this.run(async () => {
        try {
          const f = await this.openNow(n, mode);
          // What check() and rollback() called since this open was called do to the entry.
          const e = f.entry;
          for (const positions of po.checks) positions.set(e, e.position);
          if (po.checks.length > 0) e.checked = { position: e.position, size: e.size };
          if (po.doomed) {
            po.doomed.add(e);
            f.closed = true;
          }
          return f;
        } finally {
          this.pendingOpens.delete(po);
        }
      });
      // Also when the queue refuses the open before it runs (a failed store).
      opened.catch(() => this.pendingOpens.delete(po));
      return opened;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private async openNow(name: string, mode: Mode): Promise<CpFile> {
    if (this.entries.has(name)) throw new CpError('EBUSY', `${JSON.stringify(name)} is already open in this store: use dup()`);
    if (!this.logged.has(name)) {
      // Every open entry is in the catalog that opens each journal segment (FORMAT.md rule 7).
      const add = entrySize({ name, position: 0, state: 'open', size: 0 });
      if (this.catalogBytes + add > MAX_CATALOG_BYTES) {
        throw new CpError('EINVAL', `too many open files: their names would take more than ${MAX_CATALOG_BYTES} bytes in the journal's catalog; close some first`);
      }
      this.catalogBytes += add;
    }
    let ov = await this.overlayOf(name);
    if (ov && mode !== 'r') await this.assertOneLink(name, ov);
    const resumedPos = ov ? this.unfinished.get(name) : undefined;
    const resumed = resumedPos !== undefined;
    if (!ov) {
      if (mode === 'r' || mode === 'r+') throw new CpError('ENOENT', `no such file ${JSON.stringify(name)} in store ${this.dir}`);
      if (this.checkedAbsent !== name) await checkInside(this.io, this.rootReal, this.dir, name, this.unlinkedPending);
      this.overlays.assertCanCreate(name);
      await this.assertDirWritable(name);
    } else if (mode !== 'r' && ov.nsPos < 0) {
      // As fopen: a file that cannot be written is refused at the open, not when the epoch is applied.
      await this.assertChangeable(name, false);
    }
    // The hooks may refuse the open (EHOOK): ask them before anything is journaled, so that a
    // refused open neither creates nor truncates the file.
    let userdata: unknown;
    if (this.hooks) {
      const q = (await callHook(this.hooks, 'query', name)) as { userdata?: unknown } | null | undefined;
      if (q) userdata = q.userdata;
      else userdata = await callHook(this.hooks, 'insert', name);
    }
    if (!ov) {
      const old = this.overlays.get(name);
      if (old) this.closeFd(old.baseFd);
      ov = this.created(name, this.writer.append({ type: RecordType.CREATE, name }, this.building));
    } else if ((mode === 'w' || mode === 'w+') && !resumed) {
      const p = this.writer.append({ type: RecordType.TRUNCATE, name, length: 0 }, this.building);
      ov.truncate(0, p);
      this.touch(ov, p);
    }
    this.unfinished.delete(name);
    this.userdata.set(name, userdata);
    const entry: Entry = { name, position: resumed ? resumedPos! : 0, size: ov.size, checked: null, overlay: ov, handles: new Set(), writable: mode !== 'r' };
    const f = new CpFile(this, entry, mode, resumed);
    entry.handles.add(f);
    this.entries.set(name, entry);
    return f;
  }

  /**
   * @internal The handle calls below were checked when they were made (CpFile.live: a call made
   * after f.close() or store.close() never gets here), and take effect in call order.
   */
  readEntry(f: CpFile, start: number, buf: Uint8Array, off: number, len: number): Promise<number> {
    return this.run(() => this.readOverlay(f.entry.overlay, f.entry.name, start, buf, off, len));
  }

  /** @internal `start`: where the caller decided, in call order (the entry's size then, for appends). */
  writeEntry(f: CpFile, start: number, data: Uint8Array): Promise<void> {
    if (this.idle && !this.writer.congested) {
      // Nothing queued and no back-pressure: lay the write out now (no queue round trip).
      try {
        if (this.writer.failure && !this.closed) this.fail(this.writer.failure);
        this.assertUsable();
        this.writeNow(f, start, data);
        return LAID_OUT;
      } catch (e) {
        return Promise.reject(e instanceof CpError ? e : ioError(e, 'cpfile'));
      }
    }
    return this.run(async () => {
      if (this.writer.congested) await this.writer.drain();
      this.writeNow(f, start, data);
    });
  }

  private writeNow(f: CpFile, at: number, data: Uint8Array): void {
    this.writer.throwIfFailed();
    const e = f.entry;
    const ov = e.overlay;
    const n = data.length;
    if (n > 0) {
      if (ov.modEpoch !== this.building) {
        ov.modEpoch = this.building;
        ov.startSize = ov.size;
      }
      const from = this.directStart(e.name, ov, at + n);
      if (from >= at + n) {
        this.journalWrite(e.name, ov, at, data);
      } else if (from <= at) {
        this.directWrite(e.name, ov, at, data);
      } else {
        this.journalWrite(e.name, ov, at, data.subarray(0, from - at));
        this.directWrite(e.name, ov, from, data.subarray(from - at));
      }
    }
  }

  /**
   * Where bytes of a write ending at `end` may go straight to the file in this epoch: from the
   * returned offset on (Infinity: nowhere). Allowed only
   *   - while nothing pending creates, renames or truncates the file, and only past its size when
   *     direct appends began in the epoch: every pending record of the file then touches bytes below
   *     that point, so the direct bytes can be written before those records are applied without
   *     either overwriting the other;
   *   - for a file the last COMMIT (or CATALOG) lists as open with its committed size: recovery cuts
   *     it back to that size, which is how an epoch that does not commit loses its direct bytes.
   */
  private directStart(name: string, ov: Overlay, end: number): number {
    if (ov.directEpoch === this.building) return ov.truncs.length === 0 && ov.nsPos < 0 ? ov.directFrom : Infinity;
    if (end <= ov.size || ov.truncs.length !== 0 || ov.nsPos >= 0 || !ov.exists) return Infinity;
    // Small appends stay in the journal (one fsync per check); a file's appends go direct once they
    // reach directMin in the epoch (ov.startSize is the committed size: ov.modEpoch is this epoch),
    // or from the first one when the previous epoch appended at least that much directly (a stream
    // of bulk appends).
    const streaming = ov.directEpoch === this.building - 1 && ov.directBytes >= this.opts.directMin;
    if (!streaming && end - ov.startSize < this.opts.directMin) return Infinity;
    const logged = this.logged.get(name);
    if (!logged || logged.size !== ov.startSize) return Infinity;
    // Listed open by the commit before the last one too: if damage to the last epoch's records
    // (indistinguishable from a torn write) rolls recovery back past it, the catalog recovered still
    // has the file with a committed size to cut these bytes back to (FORMAT.md, direct appends).
    if (logged.since >= this.building - 1) return Infinity;
    ov.directEpoch = this.building;
    ov.directBytes = 0;
    ov.directFrom = ov.size;
    return ov.directFrom;
  }

  private journalWrite(name: string, ov: Overlay, at: number, data: Uint8Array): void {
    // Small sequential writes continue the last record: no piece objects on this path.
    const jOff = this.writer.continueWrite(name, at, data);
    if (jOff >= 0) {
      const p = this.writer.lastRecordPos;
      ov.insert(at, data.length, this.writer.lastRecordIndex, posSeq(p), jOff, p);
      this.touch(ov, p);
    } else for (const p of this.writer.appendWrite(name, at, data, this.building)) {
      ov.insert(p.fileStart, p.len, p.index, posSeq(p.pos), p.jOff, p.pos);
      this.touch(ov, p.pos);
    }
  }

  private directWrite(name: string, ov: Overlay, at: number, data: Uint8Array): void {
    // ov.startSize is the committed size all through a direct epoch (checked in directStart).
    if (!this.writer.continueDirect(name, at, data)) this.writer.appendDirect(name, ov.startSize, at, data);
    ov.directMark = this.writer.directMark;
    ov.directBytes += data.length;
    if (at + data.length > ov.size) ov.size = at + data.length;
    // Keep the overlay (and its size) until the epoch is applied, like any pending change.
    this.touch(ov, this.writer.position);
  }

  /** @internal */
  statEntry(f: CpFile): Promise<{ size: number }> {
    return this.run(() => ({ size: f.entry.overlay.size }));
  }

  /** @internal */
  truncateEntry(f: CpFile, len: number): Promise<void> {
    return this.run(() => {
      const e = f.entry;
      // The size limit was checked at the call (CpFile.truncate), and the open refused a file with
      // other hard links; one made since is refused when the truncate is applied (EPATH).
      const p = this.writer.append({ type: RecordType.TRUNCATE, name: e.name, length: len }, this.building);
      e.overlay.truncate(len, p);
      this.touch(e.overlay, p);
    });
  }

  /** @internal */
  closeHandle(f: CpFile): Promise<void> {
    f.closed = true;
    const position = f.entry.position;
    return this.run(() => {
      const e = f.entry;
      e.handles.delete(f);
      if (e.handles.size > 0) return;
      if (this.entries.get(e.name) === e) this.entries.delete(e.name);
      this.closedSince.set(e.name, position);
      this.release(e.name);
    });
  }

  // ------------------------------------------------------------------------------------------
  // names

  unlink(name: string): Promise<void> {
    try {
      this.assertCallable();
      const n = normalizeName(name, this.dir);
      return this.run(async () => {
        if (this.entries.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: close it before unlinking`);
        const ov = await this.overlayOf(n);
        if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(n)} in store ${this.dir}`);
        if (ov.nsPos < 0) {
          await this.assertChangeable(n, true);
          await this.assertDirWritable(n);
        }
        this.closeFd(ov.baseFd);
        const tomb = new Overlay(null, 0, false, false);
        this.overlays.set(n, tomb);
        this.touch(tomb, this.writer.append({ type: RecordType.UNLINK, name: n }, this.building));
        this.forget(n);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Rename `from` to `to`, replacing `to` if it exists (as POSIX rename). */
  rename(from: string, to: string): Promise<void> {
    try {
      this.assertCallable();
      const a = normalizeName(from, this.dir);
      const b = normalizeName(to, this.dir);
      return this.run(async () => {
        for (const n of [a, b]) if (this.entries.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: close it before renaming`);
        const ov = await this.overlayOf(a);
        if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(a)} in store ${this.dir}`);
        if (a === b) return;
        await checkInside(this.io, this.rootReal, this.dir, b, this.unlinkedPending);
        this.overlays.assertCanCreate(b);
        const target = await this.overlayOf(b).catch((e) => {
          if (e instanceof CpError && e.code === 'EINVAL') throw new CpError('EINVAL', `cannot rename onto ${JSON.stringify(b)}: ${e.message}`);
          throw e;
        });
        if (ov.nsPos < 0) {
          await this.assertChangeable(a, true);
          await this.assertDirWritable(a);
        }
        if (target && target.nsPos < 0) await this.assertChangeable(b, true);
        await this.assertDirWritable(b);
        if (target) this.closeFd(target.baseFd);
        // After the move the file is not at its new name on disk until the rename is applied: hold
        // its content by fd from now on.
        if (ov.baseFd === null && ov.nsPos < 0 && ov.baseLimit > 0) {
          try {
            ov.baseFd = await openInStore(this.io, this.dir, a, 'read');
          } catch (e) {
            if (!isENOENT(e)) throw e;
          }
        }
        const p = this.writer.append({ type: RecordType.RENAME, from: a, to: b }, this.building);
        ov.nsPos = p;
        const tomb = new Overlay(null, 0, false, false);
        this.overlays.set(a, tomb);
        this.overlays.set(b, ov);
        this.touch(tomb, p);
        this.touch(ov, p);
        this.forget(a);
        this.forget(b);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** A name's unfinished entry ends when its file is unlinked or renamed away. */
  private forget(name: string): void {
    this.unfinished.delete(name);
    if (this.logged.has(name)) this.closedSince.set(name, this.logged.get(name)!.position);
  }

  /** The whole content of `name`, pending changes included. */
  readFile(name: string): Promise<Buffer> {
    try {
      this.assertCallable();
      const n = normalizeName(name, this.dir);
      return this.run(async () => {
        const ov = await this.overlayOf(n);
        if (!ov) throw new CpError('ENOENT', `no such file ${JSON.stringify(n)} in store ${this.dir}`);
        if (ov.size > 2 ** 31 - 1) throw new CpError('EINVAL', `${JSON.stringify(n)} is too large for readFile (${ov.size} bytes): open it and read in parts`);
        const buf = Buffer.alloc(ov.size);
        await this.readOverlay(ov, n, 0, buf, 0, buf.length);
        this.release(n);
        return buf;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Replace the content of `name` (creating it), atomically at the next check. */
  writeFile(name: string, data: Uint8Array | string): Promise<void> {
    try {
      this.assertCallable();
      const n = normalizeName(name, this.dir);
      let bytes: Buffer;
      if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
      else if (data instanceof Uint8Array) bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      else throw new CpError('EINVAL', 'writeFile needs a Buffer, Uint8Array or string');
      return this.run(async () => {
        if (this.entries.has(n)) throw new CpError('EBUSY', `${JSON.stringify(n)} is open: write through its handle`);
        await this.writer.drain();
        let ov = await this.overlayOf(n);
        if (!ov) {
          if (this.checkedAbsent !== n) await checkInside(this.io, this.rootReal, this.dir, n, this.unlinkedPending);
          this.overlays.assertCanCreate(n);
          await this.assertDirWritable(n);
          const old = this.overlays.get(n);
          if (old) this.closeFd(old.baseFd);
          ov = this.created(n, this.writer.append({ type: RecordType.CREATE, name: n }, this.building));
        } else {
          await this.assertOneLink(n, ov);
          if (ov.nsPos < 0) await this.assertChangeable(n, false);
          const p = this.writer.append({ type: RecordType.TRUNCATE, name: n, length: 0 }, this.building);
          ov.truncate(0, p);
          this.touch(ov, p);
        }
        for (const p of this.writer.appendWrite(n, 0, bytes, this.building)) {
          ov.insert(p.fileStart, p.len, p.index, posSeq(p.pos), p.jOff, p.pos);
          this.touch(ov, p.pos);
        }
        this.release(n); // its base fd: nothing of the old content shows through
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ------------------------------------------------------------------------------------------
  // epochs

  /** Catalog bytes of the logged entries and of the open ones not logged yet (an upper bound for openNow's limit). */
  private measureCatalog(): number {
    let n = 0;
    for (const name of this.logged.keys()) n += entrySize({ name, position: 0, state: 'open', size: 0 });
    for (const name of this.entries.keys()) if (!this.logged.has(name)) n += entrySize({ name, position: 0, state: 'open', size: 0 });
    return n;
  }

  /** The catalog as of the last COMMIT laid out (for the CATALOG record opening each segment). */
  /** @internal */
  catalogSnapshot(): { entries: CatalogEntry[]; epoch: number } {
    return { entries: [...this.logged].map(([name, l]) => ({ name, position: l.position, state: 'open' as const, size: l.size })), epoch: this.building - 1 };
  }

  /** Make one atomic, durable epoch of every change so far; resolves with its number. */
  check(): Promise<number> {
    try {
      this.assertCallable();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.checkNow();
  }

  private checkNow(): Promise<number> {
    let commit: { p: Promise<{ ok: boolean }>; task: number; epoch: number; deltas: CatalogEntry[]; end: number };
    // Positions move when a call is made (that is what makes unawaited calls line up), so the epoch
    // takes them as they are now, not when its turn in the queue comes; so does a rollback called
    // later. An entry whose open was called but has not run yet gets its position when it does.
    const positions = new Map<Entry, number>();
    for (const e of this.entries.values()) {
      positions.set(e, e.position);
      e.checked = { position: e.position, size: e.size };
    }
    for (const po of this.pendingOpens) if (!po.doomed) po.checks.push(positions);
    const queued = this.run(() => {
      const deltas: CatalogEntry[] = [];
      // Every open entry's COMMIT entry carries its committed size: recovery cuts the file back to
      // it (direct appends past it were never committed). Entries left open by an earlier run and not
      // reopened can still change size through writeFile.
      for (const e of this.entries.values()) {
        const position = positions.get(e) ?? e.position;
        const l = this.logged.get(e.name);
        // A read-only entry carries no size: its file is never cut back (another program may append to it).
        const size = e.writable ? e.overlay.size : null;
        if (!l || l.position !== position || l.size !== size) deltas.push({ name: e.name, position, state: 'open', size });
      }
      for (const [n, l] of this.logged) {
        if (this.entries.has(n) || this.closedSince.has(n)) continue;
        const ov = this.overlays.get(n);
        const size = ov && ov.exists ? ov.size : l.size;
        if (size !== l.size) deltas.push({ name: n, position: l.position, state: 'open', size });
      }
      for (const [n, position] of this.closedSince) {
        if (!this.entries.has(n)) deltas.push({ name: n, position, state: 'closed', size: null });
      }
      const epoch = this.building;
      try {
        this.writer.commitDirect();
        // The apply cursor this thread knows is durable in the control file: recovery never replays from
        // before it, even when the control file's newest slot is lost (direct appends made since are in
        // no record, and a truncate replayed after them would destroy them).
        const applied = { cursorSeq: this.appliedSeq, cursorOffset: posOffset(this.appliedPos), appliedEpoch: this.appliedEpoch };
        this.writer.append({ type: RecordType.COMMIT, entries: deltas, applied }, epoch);
      } catch (e) {
        // The epoch's direct appends were handed to their datasync, and part of a COMMIT may be laid
        // out: only recovery can tell what stands now. (Positions and sizes are checked when calls are
        // made, so this is a bug or an I/O failure, never bad input.)
        this.fail(e instanceof CpError ? e : ioError(e, `laying out the commit of epoch ${epoch}`));
        throw this.failure!;
      }
      for (const d of deltas) {
        if (d.state === 'open') this.logged.set(d.name, { position: d.position, size: d.size, since: this.logged.get(d.name)?.since ?? epoch });
        else this.logged.delete(d.name);
      }
      this.catalogBytes = this.measureCatalog();
      this.closedSince.clear();
      this.building++;
      const end = this.writer.position;
      commit = { p: this.writer.flush([{ op: 'sync' }]), task: this.writer.tasksSent, epoch, deltas, end };
      return commit;
    });
    const done = queued.then(async (c) => {
      const res = await c.p;
      // An earlier batch that failed leaves a hole before this COMMIT: the flusher refuses every task
      // after a failure, and the check does not count on that alone. A task after this one (a
      // background apply) that failed does not undo it: the COMMIT is durable, the store fails later.
      if (!res.ok || this.writer.failedBy(c.task)) {
        const err = this.writer.failure ?? new CpError('EIO', 'check failed');
        this.fail(err);
        await callHook(this.hooks, 'rollback').catch(() => undefined);
        throw new CpError(err.code, `check of epoch ${c.epoch} failed: ${err.message}; the store stays at epoch ${this.epoch}`, { cause: err });
      }
      if (c.epoch > this.epoch) this.epoch = c.epoch;
      if (c.end > this.durableEnd) this.durableEnd = c.end;
      this.epochsDone++;
      this.scheduleApply();
      if (this.hooks) {
        try {
          for (const d of c.deltas) await callHook(this.hooks, 'update', d.name, d.position, this.userdata.get(d.name), d.state);
          await callHook(this.hooks, 'commit');
        } catch (e) {
          // The epoch is durable whatever the hooks say (the journal is the source of truth): say so,
          // so that the caller does not take the check for failed. Recovery passes every entry to
          // the hooks again.
          const err = e as CpError;
          throw new CpError('EHOOK', `epoch ${c.epoch} is durable, but ${err.message}`, { cause: err.cause ?? err, details: { epoch: c.epoch, durable: true } });
        }
      }
      return c.epoch;
    });
    this.lastCheck = done.catch(() => undefined);
    return done;
  }

  private scheduleApply(): void {
    if (this.failure || this.writer.failure || this.closed) return; // only reopening is safe now
    const lag = this.durableEnd - this.appliedPos;
    if (lag <= 0) return;
    const bigLag = posSeq(this.durableEnd) !== posSeq(this.appliedPos) || lag >= this.opts.applyThreshold;
    if (bigLag) {
      void this.applyNow(false).catch(() => undefined);
      return;
    }
    if (this.applyTimer) return;
    this.applyTimer = setTimeout(() => {
      this.applyTimer = null;
      if (!this.closed && !this.failure) void this.applyNow(false).catch(() => undefined);
    }, this.opts.applyDelay);
    this.applyTimer.unref();
  }

  /**
   * Apply every durable epoch to the files now; resolves when done. The overlays are settled inside
   * the call queue, never in the middle of another call: `inQueue` says the caller already is in it.
   */
  private async applyNow(inQueue: boolean): Promise<void> {
    while (this.applying) await this.applying;
    const end = this.durableEnd;
    if (end <= this.appliedPos) return;
    this.applying = (async () => {
      const res = await this.writer.flush([{ op: 'apply', endPos: end }]);
      if (!res.ok) {
        this.fail(this.writer.failure ?? new CpError('EIO', 'apply failed'));
        return;
      }
      if (!res.applied) return;
      this.appliedPos = pos(res.applied.cursorSeq, res.applied.cursorOffset);
      this.appliedSeq = res.applied.cursorSeq;
      this.appliedEpoch = res.applied.appliedEpoch;
      if (inQueue) this.settleAll();
      else void this.run(() => this.settleAll()).catch(() => undefined);
    })();
    try {
      await this.applying;
    } finally {
      this.applying = null;
    }
  }

  /** Drop what the applier made durable from every overlay; free journal segments nothing points into. */
  private settleAll(): void {
    const applied = this.appliedPos;
    const pinned = new Set<number>();
    for (const [name, ov] of this.overlays) {
      if (!ov.exists) {
        if (ov.lastPos < applied) this.overlays.delete(name);
        continue;
      }
      if (ov.settle(applied)) this.release(name);
      for (const e of ov.extents) pinned.add(e.index);
    }
    this.writer.applied(this.appliedSeq, pinned);
  }

  /**
   * Discard every change since the last check: files, names and positions return to it. In call
   * order, at once: positions and sizes go back to those of the last check() called, and handles
   * opened since it are closed.
   */
  rollback(): Promise<void> {
    try {
      this.assertCallable();
    } catch (e) {
      return Promise.reject(e);
    }
    const doomed = new Set<Entry>();
    for (const e of this.entries.values()) {
      if (e.checked) {
        e.position = e.checked.position;
        e.size = e.checked.size;
      } else {
        doomed.add(e);
        for (const h of e.handles) h.closed = true;
      }
    }
    for (const po of this.pendingOpens) if (!po.doomed && po.checks.length === 0) po.doomed = doomed;
    // The checks called before this rollback (not one called after it: that one waits for this).
    const priorCheck = this.lastCheck;
    return this.run(async () => {
      this.appendAbort();
      await priorCheck;
      this.assertUsable();
      await this.resetToDisk(doomed);
      await callHook(this.hooks, 'rollback');
    });
  }

  /** Drop the epoch being built: an ABORT record, and its direct appends cut back. */
  private appendAbort(): void {
    this.writer.append({ type: RecordType.ABORT }, this.building);
    this.writer.abortDirect();
  }

  /**
   * After an ABORT: apply all that is committed, then let the disk be the whole truth again. The
   * positions were reset when rollback() was called; the entries in `doomed` (opened since the last
   * check) are dropped.
   */
  private async resetToDisk(doomed: Set<Entry>): Promise<void> {
    const flushed = await this.writer.flush();
    if (!flushed.ok) throw this.fail(this.writer.failure ?? new CpError('EIO', 'flush failed'));
    await this.applyNow(true);
    this.assertUsable();
    if (this.durableEnd > this.appliedPos) throw new CpError('EIO', 'committed epochs could not be applied');
    for (const ov of this.overlays.values()) this.closeFd(ov.baseFd);
    this.overlays.clear();
    this.closedSince.clear();
    for (const [name, e] of [...this.entries]) {
      const ov = doomed.has(e) || !this.logged.has(name) ? null : await this.overlayOf(name);
      if (!ov) {
        for (const h of e.handles) h.closed = true;
        this.entries.delete(name);
        continue;
      }
      e.overlay = ov;
    }
    this.unfinished.clear();
    for (const [name, l] of this.logged) if (!this.entries.has(name)) this.unfinished.set(name, l.position);
  }

  /** Final check (unless discard), apply everything, release the lock and the worker. */
  close(opts: { discard?: boolean } = {}): Promise<void> {
    if (this.closing) return this.closing;
    if (this.closed) return Promise.resolve();
    this.closeCalled = true;
    this.closing = (async () => {
      let firstErr: unknown = null;
      try {
        if (this.failure) throw this.failure;
        if (opts.discard) {
          await this.run(() => this.appendAbort());
        } else {
          await this.checkNow();
        }
        await this.tail;
        await this.lastCheck;
        await this.run(async () => {
          const r = await this.writer.flush();
          if (!r.ok) throw this.writer.failure ?? new CpError('EIO', 'flush failed');
          await this.applyNow(true);
        });
        if (this.failure) throw this.failure;
        await callHook(this.hooks, 'fini');
      } catch (e) {
        firstErr = e;
      } finally {
        if (this.applyTimer) clearTimeout(this.applyTimer);
        this.closed = true;
        await this.port.run({ actions: [], close: true }).catch(() => undefined);
        await this.port.destroy().catch(() => undefined);
        await this.writer.closeReads();
        for (const ov of this.overlays.values()) if (ov.baseFd !== null) await this.io.close(ov.baseFd).catch(() => undefined);
        this.overlays.clear();
        for (const e of this.entries.values()) for (const h of e.handles) h.closed = true;
        this.entries.clear();
        // A lock that cannot be removed (a read-only file system) must not hide the first error.
        if (this.lock) await this.lock.release().catch((e) => { firstErr ??= ioError(e, `releasing the lock of store ${this.dir}`); });
      }
      if (firstErr) throw firstErr;
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  stats(): StoreStats {
    const s = this.writer.stats;
    return {
      records: s.records,
      bytesJournaled: s.bytes,
      bytesDirect: s.directBytes,
      fsyncs: s.fsyncs,
      epochs: this.epochsDone,
      batches: s.batches,
      appliedEpoch: this.appliedEpoch,
      applyLag: { epochs: this.epoch - this.appliedEpoch, bytes: Math.max(0, this.durableEnd - this.appliedPos) },
      openFiles: this.entries.size,
    };
  }
}

function intOption(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new CpError('EINVAL', `option ${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

/** Open (creating if needed) the store in `dir`, recovering it to its last durable checkpoint. */
export async function openStore(dir: string, options: StoreOptions = {}): Promise<Store> {
  if (typeof dir !== 'string' || dir.length === 0) throw new CpError('EINVAL', `store directory must be a non-empty string, got ${describe(dir)}`);
  if (options === null || typeof options !== 'object') throw new CpError('EINVAL', 'options must be an object');
  const hooks = validateHooks(options.hooks);
  const segmentSize = intOption(options.segmentSize, 'segmentSize', MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE);
  const lockStale = intOption(options.lockStale, 'lockStale', 2000, 24 * 3600 * 1000, 10000);
  const batchBytes = intOption(options.batchBytes, 'batchBytes', 4096, 64 * 1024 * 1024, 1024 * 1024);
  const maxInflight = intOption(options.maxInflight, 'maxInflight', batchBytes, 2 ** 31, 16 * 1024 * 1024);
  const applyThreshold = intOption(options.applyThreshold, 'applyThreshold', 0, 2 ** 40, 8 * 1024 * 1024);
  const applyDelay = intOption(options.applyDelay, 'applyDelay', 0, 3600 * 1000, 25);
  const directMin = options.directAppendMin === false ? Infinity
    : intOption(options.directAppendMin, 'directAppendMin', 1, Number.MAX_SAFE_INTEGER, 1024 * 1024);
  const sync = options.sync !== false;
  const io = options.io ?? nodeIO;
  const root = path.resolve(dir);

  try {
    await mkdirp(io, root, sync);
  } catch (e) {
    throw ioError(e, `creating store directory ${root}`);
  }
  const p = metaPaths(root);
  try {
    if (await io.mkdir(p.meta) && sync) await io.fsyncDir(root);
  } catch (e) {
    throw ioError(e, `creating ${p.meta}`);
  }
  let rootReal: string;
  try {
    rootReal = await io.realpath(root);
  } catch (e) {
    throw ioError(e, `resolving ${root}`);
  }

  let store: Store | null = null;
  let pendingCompromise: CpError | null = null;
  const lock = options.noLock ? null : await acquireLock(p.meta, lockStale, (err) => {
    if (store) store.compromised(err);
    else pendingCompromise = err;
  });
  let port: FlusherPort | null = null;
  try {
    // The worker thread starts (loads its modules) while recovery runs.
    port = options.io || options.inline ? new InlinePort(io) : new WorkerPort();
    const inWorker = port instanceof WorkerPort;
    // Nothing reaches the flusher once the lock is not ours any more (removed or replaced by hand).
    if (lock) port = fencePort(port, lock);
    const rec = await recover({ io, dir: root, sync, create: true, force: options.force, segmentSize });
    let storeRef: Store | null = null;
    const writer = new JournalWriter(port, io, {
      segmentSize, storeId: rec.control.storeId, batchBytes, maxInflight, journalDir: p.journal,
    }, { segment: rec.segment, writeOffset: rec.writeOffset, free: rec.free, nextIndex: rec.nextIndex, maxSeq: rec.maxSeq },
    () => storeRef!.catalogSnapshot());
    const init = await writer.init({
      dir: root, sync, control: rec.control, controlSlot: rec.controlSlot, sparseFrom: rec.sparseFrom,
      ...(options.workerIO && inWorker ? { ioModule: options.workerIO } : {}),
    });
    if (!init.ok) throw new CpError((init.error?.code as 'EIO') ?? 'EIO', `starting the flusher: ${init.error?.message}`);
    // The largest file the file system takes, learnt once (a few dozen sparse ftruncates of a probe
    // file in .cpfile): writes and truncates past it are refused at the call with EFBIG.
    const maxSize = await io.maxFileSize(p.meta).catch(() => Number.MAX_SAFE_INTEGER);
    store = new Store(root, rootReal, { ...options, applyThreshold, applyDelay, directMin, maxSize }, writer, port, lock, rec.report,
      pos(rec.control.cursorSeq, rec.control.cursorOffset), io, hooks);
    storeRef = store;
    if (pendingCompromise) store.compromised(pendingCompromise);
    await callHook(hooks, 'init');
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


/** mkdir -p through the I/O interface. */
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
