/**
 * The flusher's logic, as plain functions over the I/O interface. The piscina worker
 * (workers/flusher.ts) runs it in production; tests and the torture suite run it inline.
 *
 * The main thread decides the journal's layout (which segment, which offset); the flusher executes
 * ordered actions: initialise a segment, write bytes, make them durable, apply committed epochs.
 * Tasks run strictly one after another, so a record of epoch E+1 is never written before the
 * COMMIT of epoch E was synced (FORMAT.md R4): recovery's torn-tail/corruption rule (R8) depends on it.
 * The task types are in protocol.ts.
 *
 * State held on both threads, and which copy is the source of truth:
 *   - the apply cursor: `control.state` here (the ControlWriter writes the control file, so it is
 *     the durable truth); the main thread only has what TaskResult.applied reported, never ahead.
 *   - the epoch's direct appends: the main thread decides which files are fenced
 *     (lib/journal/direct-appends.ts); `fences` here is the copy the 'fence' actions give, in order,
 *     kept because this side cuts the files back on rollback.
 *   - the live segments: the main thread lays them out (lib/journal/segment-allocator.ts); `segs`
 *     here is what the 'segment' actions (and the init) described, for writing and applying.
 */
import { type IO, writeFully } from '../io.js';
import { MARK_OFFSET, encodeMark, markStep, nextMark } from '../format.js';
import { ControlWriter } from '../journal/control.js';
import { SegmentFiles, type SegmentFile } from '../journal/segment-files.js';
import { initSegment, type SegmentInfo } from '../journal/segments.js';
import { metaPaths, segmentPath } from '../journal/paths.js';
import { applyCommitted } from '../store/applier.js';
import { CpError, errorToPlain } from '../errors.js';
import { storePath, openInStore } from '../names.js';
import { type Action, type FlusherInit, type PlainSegment, type TaskResult, type PlainError, failedResult } from './protocol.js';

/**
 * Commits that wrote at most this much since the previous sync get the journal ahead of them
 * pre-written with zeros (see FlusherCore.prefill); bigger ones allocate their blocks by writing them.
 */
const PREFILL_TASK_MAX = 256 * 1024;
/**
 * How far ahead of a small commit's records the journal is pre-written. The commit that prefills pays
 * about 1.3 ms per MiB for its fdatasync on this machine kind (docs/BENCHMARKS.md, P1): with 1 MiB,
 * one 4 KiB commit in 250 paid 1.4 ms, 0.4% of commits, enough to set P1's p99; with 4 MiB one in
 * 1,000 pays 5 ms. At most a sixteenth of the segment (the default segment: 64 MiB).
 */
const PREFILL_AHEAD = 4 * 1024 * 1024;

export class FlusherCore {
  private segs = new Map<number, SegmentInfo>(); // by seq
  private bySeqIndex = new Map<number, number>(); // index -> seq
  private dirty = new Set<number>();
  private dirtyDir = false;
  private broken: PlainError | null = null;
  /**
   * Segments whose file still has unallocated blocks (index -> offset from which nothing was ever
   * written). A write into unallocated blocks makes the next fdatasync commit their allocation too;
   * into blocks written before, it does not (measured: 0.67x the fdatasync time).
   */
  private sparse = new Map<number, number>();
  private zeros: Buffer | null = null;
  /** Journal bytes written since the last sync. */
  private sinceSync = 0;
  /**
   * The segment files this flusher writes, and those the applier reads: two instances of the one
   * segment cache (lib/journal/segment-files.ts), the worker's own (descriptors do not cross threads).
   * Two, as before the cache was shared: the applier's walk over old segments (read-only descriptors)
   * then never evicts the descriptors of the segments being written.
   */
  private writes: SegmentFiles;
  private files: SegmentFiles;
  private journalDir: string;
  private segFiles = new Map<number, SegmentFile>();
  /**
   * Files written directly in the epoch being built: name -> committed size (the fence). A copy of
   * the main thread's decision (DirectAppends), learnt from the 'fence' actions; the size is what
   * 'undoDirect' cuts the file back to.
   */
  private fences = new Map<string, number>();
  /** Write fds on those files. */
  private dataFds = new Map<string, number>();
  /**
   * The high-water marks of the version 5 segments written here (FORMAT.md R19), by index: the
   * durable mark (no record is written past it) and the end of the journal bytes written into the
   * segment, with the header fields the mark repeats.
   */
  private marks = new Map<number, MarkState>();

  private constructor(private io: IO, private init: FlusherInit, private control: ControlWriter) {
    this.writes = new SegmentFiles(io, 'readwrite');
    this.files = new SegmentFiles(io);
    this.journalDir = metaPaths(init.dir).journal;
    for (const s of init.segments) {
      this.remember(s);
      // Recovery wrote and synced this mark with the segment's header (initSegment).
      if (s.mark) this.trackMark(s, s.mark);
    }
    if (init.sparseFrom !== undefined && init.sparseFrom !== null && init.segments.length) this.sparse.set(init.segments[0].index, init.sparseFrom);
  }

  static async create(io: IO, init: FlusherInit): Promise<FlusherCore> {
    const control = await ControlWriter.open(io, metaPaths(init.dir).control, init.sync, init.control, init.controlSlot);
    return new FlusherCore(io, init, control);
  }

  private remember(s: PlainSegment): void {
    const old = this.bySeqIndex.get(s.index);
    if (old !== undefined) this.segs.delete(old);
    const info: SegmentInfo = { ...s, file: segmentPath(this.journalDir, s.index) };
    this.segs.set(s.seq, info);
    this.bySeqIndex.set(s.index, s.seq);
  }

  /** The file of segment `index` (by index only: a file keeps its path through its lives). */
  private segFile(index: number): SegmentFile {
    // Kept, not rebuilt per write: a path join per task was garbage on the commit path (one entry per
    // segment file, which the journal's size bounds).
    let f = this.segFiles.get(index);
    if (!f) this.segFiles.set(index, (f = { index, file: segmentPath(this.journalDir, index) }));
    return f;
  }

  private fd(index: number): Promise<number> {
    return this.writes.fd(this.segFile(index));
  }

  /**
   * Run a task's actions in order. Never throws: failures come back as { ok: false, error }. After a
   * failure every later task fails too, without touching the disk: tasks already queued behind the
   * failed one would otherwise write records of the next epoch after a hole (a failed write) or after
   * a COMMIT that never became durable, which recovery must then call corruption.
   */
  async run(actions: Action[]): Promise<TaskResult> {
    if (this.broken) {
      return failedResult({ ...this.broken, message: `an earlier flusher task failed (${this.broken.code}: ${this.broken.message})` });
    }
    const res: TaskResult = { ok: true, fsyncs: 0 };
    try {
      const small = this.sparse.size > 0 && isSmallCommit(actions, this.sinceSync);
      for (const a of actions) {
        switch (a.op) {
          case 'segment': {
            const file = segmentPath(this.journalDir, a.seg.index);
            const r = await initSegment(this.io, { ...a.seg, file }, false, null, 0, this.journalDir, this.writes, this.init.markStep);
            this.started(a.seg, r.created, r.sparseFrom);
            // Durable with the header, by the sync below (or the next barrier, and no record of
            // this life is durable before the header is, since none validates without its salt).
            if (r.mark !== null) this.trackMark(a.seg, r.mark);
            if (a.durable) res.fsyncs += await this.syncSegment(a.seg.index);
            break;
          }
          case 'write': {
            const fd = await this.fd(a.index);
            const end = a.offset + a.bytes.length;
            const m = this.marks.get(a.index);
            if (m) {
              // No record goes past the durable mark (R19): raise it first, with a barrier of its own.
              if (end > m.durable) res.fsyncs += await this.raiseMark(fd, m, end);
              if (end > m.end) m.end = end;
            }
            await this.prefill(fd, a.index, a.offset, end, small);
            await writeFully(this.io, fd, a.bytes, 0, a.bytes.length, a.offset);
            this.sinceSync += a.bytes.length;
            this.dirty.add(a.index);
            if (a.bytes.byteOffset === 0 && !(a.bytes.buffer instanceof SharedArrayBuffer)) (res.recycled ??= []).push(a.bytes.buffer as ArrayBuffer);
            break;
          }
          case 'sync': res.fsyncs += await this.syncAll(); break;
          case 'fence':
            if (!this.fences.has(a.name)) this.fences.set(a.name, a.size);
            break;
          case 'direct': {
            // Only after the file's fence: its committed size is known here before any direct byte
            // can reach it (docs/FORMAT.md, "Direct appends").
            if (!this.fences.has(a.name)) throw new CpError('EINVAL', `direct write to ${JSON.stringify(a.name)} without a fence`);
            await writeFully(this.io, await this.dataFd(a.name), a.bytes, 0, a.bytes.length, a.offset);
            if (a.bytes.byteOffset === 0 && !(a.bytes.buffer instanceof SharedArrayBuffer)) (res.recycled ??= []).push(a.bytes.buffer as ArrayBuffer);
            break;
          }
          case 'datasync': res.fsyncs += await this.endDirect(false, a.keep === true); break;
          case 'undoDirect': res.fsyncs += await this.endDirect(true); break;
          case 'apply': {
            // Records must be durable before they are applied: the data files may not run ahead
            // of the journal (FORMAT.md R12: the apply barriers start from durable records).
            res.fsyncs += await this.syncAll();
            const r = await applyCommitted(
              { io: this.io, root: this.init.dir, segs: this.segs, files: this.files, control: this.control, sync: this.init.sync, sliceBytes: a.sliceBytes },
              a.endPos,
            );
            // The control file (this.control.state) is the source of truth for the cursor; the
            // main thread learns it from here, only once it is durable.
            res.applied = {
              cursorSeq: this.control.state.cursorSeq, cursorOffset: this.control.state.cursorOffset,
              appliedEpoch: this.control.state.appliedEpoch, epochs: r.epochs, bytes: r.bytes,
            };
            break;
          }
        }
      }
    } catch (e) {
      res.ok = false;
      res.error = errorToPlain(e);
      this.broken = res.error;
    }
    return res;
  }

  /**
   * Keep small commits out of unallocated journal blocks: before a small commit's write reaches
   * past what the segment file ever had written, write zeros from there to PREFILL_AHEAD beyond it
   * (zeros read as the end of the log, exactly like the unallocated blocks they replace). This
   * commit's fdatasync then allocates a megabyte at once and the next few hundred small commits
   * overwrite allocated blocks. Never writes below the frontier, so no record is ever touched.
   */
  private async prefill(fd: number, index: number, start: number, end: number, small: boolean): Promise<void> {
    const frontier = this.sparse.get(index);
    if (frontier === undefined || end <= frontier) return;
    const size = this.segs.get(this.bySeqIndex.get(index)!)?.size ?? end;
    let next = end;
    if (small) {
      // (at most a sixteenth of the segment: a store with small segments does not reserve its whole journal at once)
      next = Math.min(size, end + Math.min(PREFILL_AHEAD, Math.floor(size / 16)));
      const from = Math.max(frontier, start);
      this.zeros ??= Buffer.alloc(PREFILL_AHEAD + PREFILL_TASK_MAX);
      await writeFully(this.io, fd, this.zeros, 0, next - from, from);
    }
    if (next >= size) this.sparse.delete(index);
    else this.sparse.set(index, next);
  }

  private async dataFd(name: string): Promise<number> {
    let fd = this.dataFds.get(name);
    if (fd === undefined) {
      // The file exists: the main thread only writes directly to a file with no pending create,
      // rename or truncate, whose creation was therefore applied and made durable.
      // No symlink followed (names.ts openInStore): one planted since the call fails the write (EPATH).
      fd = await openInStore(this.io, this.init.dir, name, 'readwrite') ?? undefined;
      if (fd === undefined) throw Object.assign(new Error(`store file ${storePath(this.init.dir, name)} is missing`), { code: 'ENOENT' });
      this.dataFds.set(name, fd);
    }
    return fd;
  }

  /**
   * End the epoch's direct writes: make them durable (before the COMMIT is written), or, on rollback,
   * cut every directly written file back to its fence, durably, before anything later is journaled.
   */
  private async endDirect(undo: boolean, keep = false): Promise<number> {
    let n = 0;
    try {
      for (const [name, size] of this.fences) {
        if (undo) {
          const fd = await this.dataFd(name);
          await this.io.ftruncate(fd, size);
        }
        const fd = this.dataFds.get(name);
        if (fd !== undefined && this.init.sync) {
          await this.io.fdatasync(fd);
          n++;
        }
      }
    } finally {
      // The epoch's direct writes are over, unless `keep` (a PREPARE, whose decision ends them): the fences go, the files are closed.
      const fds = keep ? [] : [...this.dataFds.values()];
      if (!keep) {
        this.dataFds.clear();
        this.fences.clear();
      }
      for (const fd of fds) await this.io.close(fd);
    }
    return n;
  }

  /** After initSegment() started segment `seg`: it is made durable by the next barrier. */
  private started(seg: PlainSegment, created: boolean, sparseFrom: number | null): void {
    if (created) this.dirtyDir = true;
    this.dirty.add(seg.index);
    this.remember(seg);
    if (sparseFrom !== null) this.sparse.set(seg.index, sparseFrom);
    else this.sparse.delete(seg.index);
  }

  /**
   * Make a new segment durable: its header and size, and its name in the journal directory, before
   * the next action writes the SEGEND naming it (FORMAT.md R9).
   */
  private async syncSegment(index: number): Promise<number> {
    if (!this.init.sync) return 0;
    // fsync, not fdatasync: the file may be new, or have just changed size.
    await this.io.fsync(this.writes.cachedFd(index) ?? await this.fd(index));
    this.dirty.delete(index);
    if (!this.dirtyDir) return 1;
    await this.io.fsyncDir(this.journalDir);
    this.dirtyDir = false;
    return 2;
  }

  /**
   * Raise a segment's mark (`m`, its file `fd`) past `end` before a write reaches beyond it (R19):
   * write the new mark and make it durable before anything is written past the old one (torn, the
   * mark reads as none, and a scan reads the whole segment). Rare: syncAll raises a mark on its way
   * (at no extra sync) once the journal is within half a step of it, so only a run of unsynced
   * writes longer than that gets here.
   */
  private async raiseMark(fd: number, m: MarkState, end: number): Promise<number> {
    const next = nextMark(Math.max(end, m.end), m.size, m.step);
    await this.writeMark(fd, m, next);
    let n = 0;
    if (this.init.sync) {
      await this.io.fdatasync(fd);
      n = 1;
    }
    m.durable = next;
    return n;
  }

  private async writeMark(fd: number, m: MarkState, mark: number): Promise<void> {
    const b = encodeMark(m.salt, m.seq, mark);
    await writeFully(this.io, fd, b, 0, b.length, MARK_OFFSET);
  }

  private trackMark(seg: PlainSegment, mark: number): void {
    this.marks.set(seg.index, { durable: mark, end: 0, size: seg.size, salt: seg.salt, seq: seg.seq, step: this.init.markStep ?? markStep(seg.size) });
  }

  private async syncAll(): Promise<number> {
    let n = 0;
    if (this.init.sync) {
      for (const index of this.dirty) {
        const fd = this.writes.cachedFd(index) ?? await this.fd(index);
        // Nearing the durable mark: raise it with this sync, before a write would need a sync of its own (R19).
        const m = this.marks.get(index);
        let raised = 0;
        if (m && m.durable < m.size && m.end + m.step / 2 > m.durable) {
          raised = nextMark(m.end, m.size, m.step);
          await this.writeMark(fd, m, raised);
        }
        await this.io.fdatasync(fd);
        if (m && raised > m.durable) m.durable = raised;
        n++;
      }
      if (this.dirtyDir) {
        await this.io.fsyncDir(this.journalDir);
        n++;
      }
    }
    this.dirty.clear();
    this.dirtyDir = false;
    this.sinceSync = 0;
    return n;
  }

  async close(): Promise<void> {
    for (const fd of this.dataFds.values()) await this.io.close(fd);
    this.dataFds.clear();
    await this.writes.closeAll();
    await this.files.closeAll();
    await this.control.close();
  }
}

type MarkState = { durable: number; end: number; size: number; salt: number; seq: number; step: number };

/** A task that ends a commit (it syncs) that wrote little since the last sync: its latency is what matters. */
function isSmallCommit(actions: Action[], sinceSync: number): boolean {
  let bytes = sinceSync;
  let sync = false;
  for (const a of actions) {
    if (a.op === 'write') bytes += a.bytes.length;
    else if (a.op === 'sync') sync = true;
  }
  return sync && bytes <= PREFILL_TASK_MAX;
}
