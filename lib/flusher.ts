/**
 * The flusher's logic, as plain functions over the I/O interface. The piscina worker
 * (workers/flusher.ts) runs it in production; tests and the torture suite run it inline.
 *
 * The main thread decides the journal's layout (which segment, which offset); the flusher executes
 * ordered actions: initialise a segment, write bytes, make them durable, apply committed epochs.
 * Tasks run strictly one after another, so a record of epoch E+1 is never written before the
 * COMMIT of epoch E was synced: recovery's torn-tail/corruption rule depends on it.
 */
import * as path from 'node:path';
import { SEGMENT_HEADER_AREA, encodeSegmentHeader, segmentFileName, type ControlState } from './format.js';
import { type IO, isENOENT, writeFully } from './io.js';
import { ControlWriter } from './control.js';
import { SegmentFiles, type SegmentInfo } from './journal-scan.js';
import { applyCommitted } from './apply.js';
import { errorToPlain } from './errors.js';
import { metaPaths } from './recovery.js';

export type PlainSegment = Omit<SegmentInfo, 'file'>;

export type Action =
  | { op: 'segment'; seg: PlainSegment }
  | { op: 'write'; index: number; offset: number; bytes: Uint8Array }
  | { op: 'sync' }
  | { op: 'apply'; endPos: number };

export interface FlusherInit {
  dir: string;
  sync: boolean;
  control: ControlState;
  controlSlot: 0 | 1;
  /** Segments of the live log, the current one included. */
  segments: PlainSegment[];
  /**
   * Worker only: the URL of a module whose `io` export the worker uses instead of syncNodeIO (tests
   * record or fail the worker's own calls with it). The inline flusher is given its IO directly.
   */
  ioModule?: string;
}

export interface Task {
  init?: FlusherInit;
  actions: Action[];
  close?: boolean;
}

export interface TaskResult {
  ok: boolean;
  error?: { code: string; message: string; details?: Record<string, unknown> };
  fsyncs: number;
  /**
   * The buffers of this task's write actions, handed back once written so the main thread can reuse
   * them for later batches (transferred back from the worker, not copied).
   */
  recycled?: ArrayBuffer[];
  applied?: { cursorSeq: number; cursorOffset: number; appliedEpoch: number; epochs: number; bytes: number };
}

export class FlusherCore {
  private segs = new Map<number, SegmentInfo>(); // by seq
  private bySeqIndex = new Map<number, number>(); // index -> seq
  private fds = new Map<number, number>(); // index -> write fd
  private dirty = new Set<number>();
  private dirtyDir = false;
  private broken: TaskResult['error'] | null = null;
  private files: SegmentFiles;
  private journalDir: string;

  private constructor(private io: IO, private init: FlusherInit, private control: ControlWriter) {
    this.files = new SegmentFiles(io);
    this.journalDir = metaPaths(init.dir).journal;
    for (const s of init.segments) this.remember(s);
  }

  static async create(io: IO, init: FlusherInit): Promise<FlusherCore> {
    const control = await ControlWriter.open(io, metaPaths(init.dir).control, init.sync, init.control, init.controlSlot);
    return new FlusherCore(io, init, control);
  }

  private remember(s: PlainSegment): void {
    const old = this.bySeqIndex.get(s.index);
    if (old !== undefined) this.segs.delete(old);
    const info: SegmentInfo = { ...s, file: path.join(this.journalDir, segmentFileName(s.index)) };
    this.segs.set(s.seq, info);
    this.bySeqIndex.set(s.index, s.seq);
  }

  private async fd(index: number): Promise<number> {
    let fd = this.fds.get(index);
    if (fd === undefined) {
      fd = await this.io.open(path.join(this.journalDir, segmentFileName(index)), 'readwrite');
      this.fds.set(index, fd);
    }
    return fd;
  }

  /**
   * Run a task's actions in order. Never throws: failures come back as { ok: false, error }. After a
   * failure every later task fails too, without touching the disk: tasks already queued behind the
   * failed one would otherwise write records of the next epoch after a hole (a failed write) or after
   * a COMMIT that never became durable, which recovery must then call corruption.
   */
  async run(actions: Action[]): Promise<TaskResult> {
    if (this.broken) {
      return { ok: false, fsyncs: 0, error: { ...this.broken, message: `an earlier flusher task failed (${this.broken.code}: ${this.broken.message})` } };
    }
    const res: TaskResult = { ok: true, fsyncs: 0 };
    try {
      for (const a of actions) {
        switch (a.op) {
          case 'segment': await this.initSegment(a.seg); break;
          case 'write': {
            const fd = await this.fd(a.index);
            await writeFully(this.io, fd, a.bytes, 0, a.bytes.length, a.offset);
            this.dirty.add(a.index);
            if (a.bytes.byteOffset === 0) (res.recycled ??= []).push(a.bytes.buffer as ArrayBuffer);
            break;
          }
          case 'sync': res.fsyncs += await this.syncAll(); break;
          case 'apply': {
            // Records must be durable before they are applied: the data files may not run ahead
            // of the journal.
            res.fsyncs += await this.syncAll();
            const r = await applyCommitted(
              { io: this.io, root: this.init.dir, segs: this.segs, files: this.files, control: this.control, sync: this.init.sync },
              a.endPos,
            );
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

  private async initSegment(seg: PlainSegment): Promise<void> {
    const file = path.join(this.journalDir, segmentFileName(seg.index));
    let fd = this.fds.get(seg.index);
    if (fd === undefined) {
      try {
        fd = await this.io.open(file, 'readwrite');
      } catch (e) {
        if (!isENOENT(e)) throw e;
        fd = await this.io.open(file, 'create');
        this.dirtyDir = true;
      }
      this.fds.set(seg.index, fd);
    }
    const st = await this.io.fstat(fd);
    if (st.size !== seg.size) await this.io.ftruncate(fd, seg.size);
    const area = Buffer.alloc(SEGMENT_HEADER_AREA);
    encodeSegmentHeader(seg).copy(area, 0);
    await writeFully(this.io, fd, area, 0, area.length, 0);
    this.dirty.add(seg.index);
    this.remember(seg);
  }

  private async syncAll(): Promise<number> {
    let n = 0;
    if (this.init.sync) {
      for (const index of this.dirty) {
        await this.io.fdatasync(this.fds.get(index)!);
        n++;
      }
      if (this.dirtyDir) {
        await this.io.fsyncDir(this.journalDir);
        n++;
      }
    }
    this.dirty.clear();
    this.dirtyDir = false;
    return n;
  }

  async close(): Promise<void> {
    for (const fd of this.fds.values()) await this.io.close(fd);
    this.fds.clear();
    await this.files.closeAll();
    await this.control.close();
  }
}
