/**
 * The one place that builds the paths of a store's metadata (docs/FORMAT.md, "Store layout"): the
 * metadata directory, the control file, the journal directory, the lock, and each segment file. The
 * names themselves are format constants (lib/format.ts); this file only joins them to a directory.
 */
import * as path from 'node:path';
import { CONTROL_FILE, JOURNAL_DIR, LOCK_NAME, META_DIR, segmentFileName } from '../format.js';

export interface MetaPaths {
  /** <dir>/.cpfile */
  meta: string;
  /** <dir>/.cpfile/control */
  control: string;
  /** <dir>/.cpfile/journal */
  journal: string;
  /** <dir>/.cpfile/lock */
  lock: string;
}

export function metaPaths(dir: string): MetaPaths {
  const meta = path.join(dir, META_DIR);
  return { meta, control: path.join(meta, CONTROL_FILE), journal: path.join(meta, JOURNAL_DIR), lock: path.join(meta, LOCK_NAME) };
}

/** <journalDir>/seg-NNNNNN.cpj: the file of segment `index`. */
export const segmentPath = (journalDir: string, index: number): string => path.join(journalDir, segmentFileName(index));

/** A file of the journal directory by the name a listing returned (a segment file, or any file a copy takes). */
export const journalFilePath = (journalDir: string, name: string): string => path.join(journalDir, name);
