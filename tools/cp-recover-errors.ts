/**
 * cp-recover's exit codes, and the one-line failure each error maps to (tools/cp-recover.ts runs,
 * this file classifies what was thrown).
 */
import { CommanderError } from 'commander';
import { CpError, corruptionOf } from '../lib/errors.js';
import { READABLE_VERSIONS_TEXT } from '../lib/format.js';
import { fsError, type StorePaths } from '../lib/recovery/inspect.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, LOCKED: 3, NEEDS_FORCE: 4 } as const;

export interface Failure {
  exit: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** Map anything thrown to an exit code and a one-line message. */
export function classify(e: unknown, force: boolean): Failure {
  if (e instanceof CommanderError) return { exit: EXIT.USAGE, code: 'EUSAGE', message: e.message.replace(/^error: /, ''), cause: e };
  const err = e instanceof CpError ? e : fsError(e, (e as NodeJS.ErrnoException)?.path ?? 'I/O failure');
  const details = err.details;
  const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ');
  if (err.code === 'ELOCKED') return { exit: EXIT.LOCKED, code: err.code, message: oneLine(err.message), details, cause: err };
  if (err.code === 'ECORRUPT') {
    // The kind of damage decides (lib/errors.ts CorruptionDetails): only a forceable one needs --force.
    const corruption = corruptionOf(err);
    const forceable = corruption?.forceable === true;
    if (forceable && !force) {
      return { exit: EXIT.NEEDS_FORCE, code: err.code, message: oneLine(err.message), details, cause: err };
    }
    // A journal segment of another format version is reported by recover() as an unusable header.
    const version = corruption?.kind === 'cursor-segment-missing' ? corruption.invalid.find((x) => x.reason === 'version') : undefined;
    if (version) {
      return {
        exit: EXIT.FAILURE, code: 'EFORMAT', details, cause: err,
        message: `${version.file}: journal segment of another format version; this cpfile reads ${READABLE_VERSIONS_TEXT} (${oneLine(err.message)})`,
      };
    }
    return {
      exit: EXIT.FAILURE, code: err.code, details, cause: err,
      message: `${oneLine(err.message)}${forceable ? '' : ' (--force cannot repair this damage; --inspect shows the journal)'}`,
    };
  }
  return { exit: EXIT.FAILURE, code: err.code, message: oneLine(err.message), details, cause: err };
}

export function lockedError(p: StorePaths, live: number[], cause?: unknown): CpError {
  return new CpError('ELOCKED',
    `store ${p.root} is in use by live process${live.length === 1 ? '' : 'es'} ${live.length ? live.join(', ') : '(unknown pid)'}; ` +
    'stop it (or let it close the store) and run cp-recover again', { cause });
}
