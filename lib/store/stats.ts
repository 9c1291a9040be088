/** store.stats(): what the store has done so far, from its parts (each counter has one owner). */
import type { Checkpoint } from './checkpoint.js';
import type { StoreParts } from './parts.js';

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

export function storeStats(parts: StoreParts, checkpoint: Checkpoint): StoreStats {
  const s = parts.writer.stats;
  return {
    records: s.records,
    bytesJournaled: s.bytes,
    bytesDirect: s.directBytes,
    fsyncs: s.fsyncs,
    epochs: checkpoint.epochsDone,
    batches: s.batches,
    appliedEpoch: parts.schedule.appliedEpoch,
    applyLag: { epochs: checkpoint.epoch - parts.schedule.appliedEpoch, bytes: parts.schedule.lagBytes },
    openFiles: parts.catalog.open.size,
  };
}
