/**
 * What a file handle (CpFile, lib/store/file.ts) needs from its store, as an interface that Store
 * implements: the handle depends on this file, never on store.ts, so the two do not import each
 * other. Also the open entry that the handles of one name share.
 */
import type { CpError } from '../errors.js';
import type { CpFile } from './file.js';
import type { Overlay } from './overlay.js';

/** What FileHost.writeEntry returns when the write was laid out at once (CpFile.write then skips a tick). */
export const LAID_OUT: Promise<void> = Promise.resolve();

/** An open entry: one per open name, shared by the handles dup() makes. */
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

/**
 * The store as its handles see it. The entry calls below were validated when they were made
 * (CpFile.live: a call made after f.close() or store.close() never gets here), and take effect in
 * call order.
 */
export interface FileHost {
  /** At call time: refuses calls made after close() was called (ECLOSED), and on a failed store. */
  assertCallable(): void;
  /** close() was not called yet. */
  readonly callable: boolean;
  /** The largest file the store's file system takes (probed at open). */
  readonly maxFileSize: number;
  /** The error for a write or truncate of `name` to `end` bytes, past what the file system takes. */
  tooLarge(name: string, what: string, end: number): CpError;
  readEntry(f: CpFile, start: number, buf: Uint8Array, off: number, len: number): Promise<number>;
  /** `start`: where the caller decided, in call order (the entry's size then, for appends). */
  writeEntry(f: CpFile, start: number, data: Uint8Array): Promise<void>;
  statEntry(f: CpFile): Promise<{ size: number }>;
  truncateEntry(f: CpFile, len: number): Promise<void>;
  closeHandle(f: CpFile): Promise<void>;
  /** The store's commit: one atomic, durable epoch of every change so far. */
  check(): Promise<number>;
}
