/**
 * cp-recover's exit codes, and the one-line failure each error maps to (tools/cp-recover.ts runs,
 * this file classifies what was thrown).
 */
import { CommanderError } from 'commander';
import type { InDoubtReport } from '../lib/recovery/index.js';
import { CpError, corruptionOf } from '../lib/errors.js';
import { READABLE_VERSIONS_TEXT } from '../lib/format.js';
import { fsError, type StorePaths } from '../lib/recovery/inspect.js';
import { decideCommands, type Decide } from './cp-recover-output.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, LOCKED: 3, NEEDS_FORCE: 4, IN_DOUBT: 5, NOT_IN_DOUBT: 6 } as const;

export interface Failure {
  exit: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
  cause?: unknown;
}

const flagOf = (want: Decide): string => (want.decision === 'commit' ? '--commit-prepared' : '--abort-prepared');

/** --commit-prepared/--abort-prepared names no epoch in doubt: the store's has another id, or there is none (exit 6). */
export class NotInDoubt extends Error {
  readonly details: Record<string, unknown>;
  constructor(root: string, want: Decide, found: { id: string; epoch: number; storeId: string } | null) {
    super(`${root}: ${flagOf(want)} ${JSON.stringify(want.id)}: ${found
      ? `the epoch in doubt, epoch ${found.epoch}, was prepared as ${JSON.stringify(found.id)}, not ${JSON.stringify(want.id)}`
      : 'no epoch of this store is in doubt (none is prepared and undecided)'}; nothing was changed`);
    this.details = { id: want.id, decision: want.decision, inDoubt: found ? { id: found.id, epoch: found.epoch, storeId: found.storeId } : null };
  }
}

/** Exit 5: the epoch in doubt `d` needs a decision. */
export function inDoubtFailure(root: string, d: { id: string; epoch: number; storeId: string }, dry: boolean, cause?: unknown): Failure {
  return {
    exit: EXIT.IN_DOUBT, code: 'EINDOUBT', details: { id: d.id, epoch: d.epoch, storeId: d.storeId }, cause,
    message: `${root}: epoch ${d.epoch} is in doubt: it was prepared as ${JSON.stringify(d.id)} and its decision is not in the journal; ` +
      `${dry ? 'recovery would stop until it is decided' : 'nothing was changed; decide it'} as its coordinator did: ${decideCommands(d, root)}`,
  };
}

/** The epoch an EINDOUBT names (its details), as the JSON's inDoubt reports it. */
export function inDoubtOf(e: unknown, root: string): InDoubtReport | null {
  if (!(e instanceof CpError) || e.code !== 'EINDOUBT' || !e.details) return null;
  const { id, epoch, storeId } = e.details as { id: string; epoch: number; storeId: string };
  return { id, epoch, storeId, dir: root, decision: null };
}

/** Map anything thrown to an exit code and a one-line message. */
export function classify(e: unknown, force: boolean, root = '', dry = false): Failure {
  if (e instanceof CommanderError) return { exit: EXIT.USAGE, code: 'EUSAGE', message: e.message.replace(/^error: /, ''), cause: e };
  if (e instanceof NotInDoubt) return { exit: EXIT.NOT_IN_DOUBT, code: 'ENOTINDOUBT', message: e.message, details: e.details, cause: e };
  const err = e instanceof CpError ? e : fsError(e, (e as NodeJS.ErrnoException)?.path ?? 'I/O failure');
  const details = err.details;
  const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ');
  if (err.code === 'ELOCKED') return { exit: EXIT.LOCKED, code: err.code, message: oneLine(err.message), details, cause: err };
  if (err.code === 'EINDOUBT') {
    // The resolver of --commit-prepared/--abort-prepared refused another epoch's id.
    if (err.cause instanceof NotInDoubt) return classify(err.cause, force);
    const d = inDoubtOf(err, root);
    if (d) return inDoubtFailure(root, d, dry, err);
  }
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
