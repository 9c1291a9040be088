/**
 * The parts a Store is made of, as its operations (open-file.ts, name-changes.ts, whole-files.ts,
 * checkpoint.ts) see them. Store (lib/store/store.ts) builds them once and is the facade over them.
 */
import type { IO } from '../io.js';
import type { Hooks } from '../hooks.js';
import type { JournalWriter } from '../journal/writer.js';
import type { ApplySchedule } from './apply-schedule.js';
import type { Catalog } from './catalog.js';
import type { StoreLimits } from './limits.js';
import type { PendingFiles } from './pending.js';
import type { CallQueue } from './queue.js';
import type { WritePath } from './write-path.js';
import type { CheckpointEvent } from './events.js';

export interface StoreParts {
  /** The store directory, as given to openStore (resolved). */
  readonly dir: string;
  readonly io: IO;
  readonly writer: JournalWriter;
  readonly hooks: Hooks | undefined;
  readonly queue: CallQueue;
  readonly catalog: Catalog;
  readonly pending: PendingFiles;
  readonly limits: StoreLimits;
  readonly writes: WritePath;
  readonly schedule: ApplySchedule;
  /** Store.applyNow: the one way to run an apply (ApplySchedule, ScheduleDeps.applyNow). */
  applyNow(inQueue: boolean): Promise<void>;
  /** Tell the store's listeners that an epoch is durable (lib/store/events.ts; guarded, synchronous). */
  checkpointed?(e: CheckpointEvent): void;
}
