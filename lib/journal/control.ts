/**
 * The control file: two alternating 512-byte slots holding the apply cursor (docs/FORMAT.md,
 * "Control file"; the slot codec is in lib/format.ts). A write goes to the slot not holding the
 * current state and is fdatasynced before it counts, so a torn write never destroys the last good
 * cursor. The path is built in paths.ts (metaPaths().control).
 */
import { CONTROL_FILE_SIZE, CONTROL_SLOT_SIZE, decodeControlSlot, encodeControlSlot, type ControlState } from '../format.js';
import { type IO, readFully, writeFully, isENOENT } from '../io.js';
import { ioError } from '../errors.js';

export type ControlRead =
  | { kind: 'ok'; state: ControlState; slot: 0 | 1 }
  | { kind: 'empty' }                              // no valid slot, both zero or short: creation never finished
  | { kind: 'bad'; reasons: string[] };            // damaged or of another format/version

export async function readControl(io: IO, file: string): Promise<ControlRead> {
  const b = Buffer.alloc(CONTROL_FILE_SIZE);
  let n: number;
  try {
    const fd = await io.open(file, 'read');
    try {
      n = await readFully(io, fd, b, 0, b.length, 0);
    } finally {
      await io.close(fd);
    }
  } catch (e) {
    // Named, so that a message says which file (a control file that is a directory, say).
    throw isENOENT(e) ? e : ioError(e, `reading the control file ${file}`);
  }
  const slots = [decodeControlSlot(b.subarray(0, Math.min(n, CONTROL_SLOT_SIZE))),
    decodeControlSlot(n > CONTROL_SLOT_SIZE ? b.subarray(CONTROL_SLOT_SIZE, n) : Buffer.alloc(0))];
  let best: { state: ControlState; slot: 0 | 1 } | null = null;
  slots.forEach((s, i) => {
    if (s.ok && (!best || s.state.counter > best.state.counter)) best = { state: s.state, slot: i as 0 | 1 };
  });
  if (best) return { kind: 'ok', ...(best as { state: ControlState; slot: 0 | 1 }) };
  const reasons = slots.map((s) => (s.ok ? 'ok' : s.reason));
  if (reasons.every((r) => r === 'zero' || r === 'short')) return { kind: 'empty' };
  return { kind: 'bad', reasons };
}

/** Writer that alternates slots. Keeps its fd open for the life of the store. */
export class ControlWriter {
  private constructor(private io: IO, private fd: number, private sync: boolean, public state: ControlState, public slot: 0 | 1) {}

  static async open(io: IO, file: string, sync: boolean, state: ControlState, slot: 0 | 1): Promise<ControlWriter> {
    const fd = await io.open(file, 'readwrite');
    return new ControlWriter(io, fd, sync, state, slot);
  }

  /** Durably record a new cursor. */
  async write(next: Omit<ControlState, 'counter' | 'storeId'>): Promise<void> {
    const state: ControlState = { ...next, storeId: this.state.storeId, counter: this.state.counter + 1 };
    const slot: 0 | 1 = this.slot === 0 ? 1 : 0;
    const b = encodeControlSlot(state);
    await writeFully(this.io, this.fd, b, 0, b.length, slot * CONTROL_SLOT_SIZE);
    if (this.sync) await this.io.fdatasync(this.fd);
    this.state = state;
    this.slot = slot;
  }

  async close(): Promise<void> {
    await this.io.close(this.fd);
  }
}

/** Create a fresh control file (both slots: the state in slot 0, zeros in slot 1). */
export async function createControl(io: IO, file: string, state: ControlState, sync: boolean): Promise<void> {
  const fd = await io.open(file, 'create');
  try {
    const b = Buffer.alloc(CONTROL_FILE_SIZE);
    encodeControlSlot(state).copy(b, 0);
    await writeFully(io, fd, b, 0, b.length, 0);
    if (sync) await io.fsync(fd);
  } finally {
    await io.close(fd);
  }
}
