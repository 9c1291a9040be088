/**
 * CpError: the one error type cpfile throws. `code` is stable and documented in the README.
 */
export type CpErrorCode =
  | 'EINVAL'       // bad arguments or mode
  | 'EBADF'        // wrong mode for the call, or the handle is closed
  | 'ENOENT'       // no such file in the store
  | 'EBUSY'        // the name is open in this store (use dup), or unlink/rename of an open name
  | 'EPATH'        // absolute name, '..' escape, reserved name, a symlink at any component, writing a hard-linked file
  | 'ECORRUPT'     // journal damage that is not a torn tail
  | 'ELOCKED'      // another live process owns the store
  | 'ECOMPROMISED' // the store's lock was lost while open; the store accepts no more work
  | 'ECLOSED'      // the store (or its compat default) is closed
  | 'EREOPEN'      // an earlier I/O failure left the store unusable: reopen it (recovery restores the last epoch)
  | 'EFORMAT'      // a journal or control file of another format or version
  | 'EHOOK'        // a user hook threw
  | 'EABORTED'     // cpfile/postgres: a coordinated step was rolled back everywhere (fn threw, a query or a prepare failed, COMMIT refused); .cause says why
  | 'EFBIG'        // a write or truncate would make a file larger than the store's file system allows
  | 'ENOTDIR'      // readdir of a file, or stat/readdir of a name below a file
  | 'EEXIST'       // copyFile with COPYFILE_EXCL onto a name that exists
  | 'EINDOUBT'     // the last epoch is prepared and its decision could not be learned (two-phase epochs; .details: id, epoch, storeId)
  | 'EPREPARED'    // a call that needs an undecided prepared epoch decided first (close, a second prepare), or a decision made twice
  | 'ENOSPC' | 'EIO' | 'EACCES' | 'EPERM' | 'EROFS' | 'EMFILE'; // I/O failures, passed through by kind

/**
 * The mark every CpError carries, in the registry shared by all module graphs of a thread. The
 * package ships two builds (ES modules and CommonJS); an app that loads both has two CpError
 * classes, and `instanceof` of either is true for an error of both (the library's own checks too:
 * a CpError passed from one build's code to the other's keeps its code rather than becoming EIO).
 */
const CP_ERROR = Symbol.for('cpfile.CpError');

export class CpError extends Error {
  /** True for a CpError made by either build of cpfile (see CP_ERROR); a subclass keeps the ordinary test. */
  static override [Symbol.hasInstance](this: unknown, value: unknown): boolean {
    if (this !== CpError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [CP_ERROR]?: unknown })[CP_ERROR] === true;
  }

  readonly code: CpErrorCode;
  /** Structured details (for ECORRUPT a CorruptionDetails, made by corruptError: its kind, whether --force applies, where). */
  readonly details?: Record<string, unknown>;
  constructor(code: CpErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CpError';
    this.code = code;
    if (options?.details) this.details = options.details;
  }
}
Object.defineProperty(CpError.prototype, CP_ERROR, { value: true });

const PASSTHROUGH = new Set(['ENOSPC', 'EIO', 'EACCES', 'EPERM', 'EROFS', 'EMFILE', 'ENOENT', 'EFBIG']);

/** Wrap an I/O failure from node:fs (or an injected fault) as a CpError, keeping its kind. */
export function ioError(err: unknown, what: string): CpError {
  if (err instanceof CpError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = (e && typeof e.code === 'string' && PASSTHROUGH.has(e.code) ? e.code : 'EIO') as CpErrorCode;
  const msg = e && e.message ? e.message : String(err);
  return new CpError(code, `${what}: ${msg}`, { cause: err });
}

/** Serialize a CpError so it crosses the worker boundary with its code intact. */
export function errorToPlain(err: unknown): { code: string; message: string; details?: Record<string, unknown> } {
  if (err instanceof CpError) return { code: err.code, message: err.message, details: err.details };
  const e = err as NodeJS.ErrnoException;
  return { code: (e && e.code) || 'EIO', message: e && e.message ? e.message : String(err) };
}

// ---------------------------------------------------------------------------------------------
// ECORRUPT details: one typed shape per kind of damage, built only by `corruptError`

/**
 * What an ECORRUPT is about (`.details.kind`). The forceable kinds carry the epochs that
 * `force` (`cp-recover --force`) would lose; the others leave nothing a forced recovery could keep
 * (docs/FORMAT.md R8 lists the proofs of corruption these stand for).
 */
export type CorruptionKind = UnforceableKind | ForceableKind;
export type UnforceableKind =
  | 'control-file' | 'cursor-segment-missing' | 'cursor-segment-short' | 'cursor-catalog' | 'undecodable-at-apply';
export type ForceableKind =
  | 'damaged-record-before-commits' | 'cursor-past-damage' | 'control-older-than-journal' | 'damaged-cursor-catalog'
  | 'epoch-order' | 'undecodable-record' | 'missing-segment';

/** Where a forceable damage is, and the epochs a forced recovery would lose. */
export type LostEpochs = {
  seq: number;
  offset: number;
  reason: string;
  /**
   * First epoch that would be lost, and the highest epoch seen after the damage (FORMAT.md R8).
   * lostTo below lostFrom: no epoch would be lost (every epoch up to lostFrom - 1 is kept).
   */
  lostFrom: number;
  lostTo: number;
  evidence: string;
};

export type CorruptionDetails =
  /** The control file is missing while the journal has segments, holds no valid slot, or is unreadable. */
  | { kind: 'control-file'; forceable: false; file: string; reason: string }
  /** The segment holding the apply cursor is missing, or its header is unusable (R8). */
  | { kind: 'cursor-segment-missing'; forceable: false; seq: number; offset: number; invalid: { index: number; file: string; reason: string }[] }
  /** The segment holding the apply cursor is shorter than its header says (R8). */
  | { kind: 'cursor-segment-short'; forceable: false; seq: number; size: number; expected: number }
  /**
   * The catalog opening the cursor's segment is missing (another record stands there), damaged,
   * undecodable, or ends before its last part (R3, R5): the walk has nothing to start from.
   */
  | { kind: 'cursor-catalog'; forceable: false; seq: number; offset: number; reason?: string }
  /** The background applier met a record with a valid checksum and an undecodable payload. */
  | { kind: 'undecodable-at-apply'; forceable: false; seq: number; offset: number; reason: string }
  | ({ kind: ForceableKind; forceable: true } & LostEpochs);

/** Every kind and whether `force` applies to it: the one table cp-recover's exit codes follow. */
const FORCEABLE: Record<CorruptionKind, boolean> = {
  'control-file': false, 'cursor-segment-missing': false, 'cursor-segment-short': false, 'cursor-catalog': false,
  'undecodable-at-apply': false, 'damaged-record-before-commits': true, 'cursor-past-damage': true,
  'control-older-than-journal': true, 'damaged-cursor-catalog': true, 'epoch-order': true, 'undecodable-record': true,
  'missing-segment': true,
};

/** The epochs a forced recovery loses, in words: "epochs 2..4", or "no epoch" for an empty range. */
export const lostEpochsText = (c: { lostFrom: number; lostTo: number }): string =>
  c.lostTo >= c.lostFrom ? `epochs ${c.lostFrom}..${c.lostTo}` : 'no epoch';

/** A CorruptionDetails without `forceable`, which the kind decides. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type CorruptionFacts = DistributiveOmit<CorruptionDetails, 'forceable'>;

/** The one constructor of ECORRUPT errors: `.details` is a CorruptionDetails. */
export function corruptError(message: string, facts: CorruptionFacts, cause?: unknown): CpError {
  const { kind, ...rest } = facts;
  const details = { kind, forceable: FORCEABLE[kind], ...rest } as CorruptionDetails;
  return new CpError('ECORRUPT', message, { details, ...(cause !== undefined ? { cause } : {}) });
}

/** The typed details of an ECORRUPT (null for any other error, or one that crossed no factory). */
export function corruptionOf(err: unknown): CorruptionDetails | null {
  if (!(err instanceof CpError) || err.code !== 'ECORRUPT' || !err.details) return null;
  const kind = err.details.kind;
  return typeof kind === 'string' && kind in FORCEABLE ? (err.details as CorruptionDetails) : null;
}
