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
  | 'EFBIG'        // a write or truncate would make a file larger than the store's file system allows
  | 'ENOSPC' | 'EIO' | 'EACCES' | 'EPERM' | 'EROFS' | 'EMFILE'; // I/O failures, passed through by kind

export class CpError extends Error {
  readonly code: CpErrorCode;
  /** Structured details (for ECORRUPT: segment, offset, reason, lost epochs). */
  readonly details?: Record<string, unknown>;
  constructor(code: CpErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CpError';
    this.code = code;
    if (options?.details) this.details = options.details;
  }
}

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
