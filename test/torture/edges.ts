/**
 * Edge units: workloads at the edges the ordinary workload (test/helpers/model.ts: five short names,
 * small positions, one polite caller) never reaches, on the simulated file system. Each unit draws a
 * plan of dimensions from its seed:
 *   - many:     1,000+ entries open in one epoch (catalogs past the 1 MiB record payload and past a
 *               64 KiB segment), with names of 200-255 bytes (ASCII and multi-byte);
 *   - odd:      odd names: lone surrogates, NFC vs NFD, emoji, components of exactly 255 and 256 bytes,
 *               paths over PATH_MAX, trailing slashes, '..' and '.cpfile' tricks;
 *   - big:      positions and sizes from 2^40 to 2^53, past what the file system takes (16 TiB: EFBIG);
 *   - links:    symlinks and hard links planted behind the store (before open, between a check and
 *               its apply, before recovery) pointing out of the store, at '.', into .cpfile;
 *   - readonly: files made unwritable behind the store (before open, between a check and its apply);
 *   - fdlimit:  a low limit of open file descriptors (a low `ulimit -n`: EMFILE);
 *   - misuse:   unawaited calls across f.close() and store.close(), calls after close, offsets past
 *               buffers, seek('end')/tell() while writes are in flight, checks in flight.
 * The oracle: every call either is refused at the call with a documented CpError code and changes
 * nothing, or succeeds and then survives exactly; nothing outside the store changes; after the
 * cause is removed (planted links gone, permissions back) the store reopens, with every acknowledged
 * epoch (the last acknowledged check, or a later issued one); ECORRUPT only for real damage. Where
 * the unit has no planted links and no sparse files, crash states along its trace are recovered too.
 * A unit that throws is a violation with its replay line.
 */
import { createHash } from 'node:crypto';
import { openStore, CpError } from '../../lib/index.js';
import { Rng, mixSeed, type Snapshot } from '../helpers/model.js';
import { SimFS, CrashModel, type ChoiceMode, type Image } from './simfs.js';
import { SparseFile } from './sparse.js';
import { judge } from './oracle.js';
import { errText } from './driver.js';
import { withSeededRandom } from './determinism.js';
import { recoverImage, directAppendMinOf, sig, STORE, type Violation, type KindName } from './common.js';

type Store = Awaited<ReturnType<typeof openStore>>;
type File = Awaited<ReturnType<Store['open']>>;
type Mode = 'r' | 'r+' | 'w' | 'w+' | 'a' | 'a+';

export const OUTSIDE = '/outside';

/** The dimensions, as the CLI counts them. */
export const DIMS = {
  many: 'entries >= 1000 in one epoch',
  longNames: 'names over 200 bytes',
  smallSeg: 'small segments (64 KiB)',
  odd: 'odd names (unicode, 255/256 bytes, PATH_MAX, slashes, ..)',
  big: 'positions/sizes over 2^40',
  links: 'planted links',
  readonly: 'read-only files',
  fdlimit: 'low fd limit (simfs EMFILE)',
  misuse: 'misuse sequences',
} as const;
export type Dim = keyof typeof DIMS;

export interface EdgeScale {
  /** largest count of open entries for the many dimension (default 3000; the CLI's --many-max) */
  manyMax: number;
  /** chance of each dimension in a unit (multiplied; 1 = default) */
  dimRate: Partial<Record<Dim, number>>;
  /** crash states per unit where they apply */
  states: number;
}

export const DEFAULT_SCALE: EdgeScale = { manyMax: 3000, dimRate: {}, states: 12 };

export type LinkMoment = 'before-open' | 'before-apply' | 'before-recovery';

export interface EdgePlan {
  segmentSize: number;
  many: number;
  nameLen: number;
  odd: boolean;
  big: boolean;
  links: LinkMoment[];
  hardLink: boolean;
  readonly: boolean;
  fdLimit: number;
  misuse: boolean;
  end: 'close' | 'discard' | 'crash';
  directAppendMin: number | false;
  applyThreshold: number;
  dims: Dim[];
}

/** Is unit `seed` an edge unit (a fraction `rate` of the units; drawn from the seed, so a replay of it is one too)? */
export function isEdgeUnit(seed: number, rate: number): boolean {
  return rate > 0 && new Rng(mixSeed(seed, 0xed1)).chance(rate);
}

export function edgePlan(seed: number, scale: EdgeScale = DEFAULT_SCALE): EdgePlan {
  const rng = new Rng(mixSeed(seed, 0xed9e));
  const rate = (d: Dim, p: number): boolean => rng.chance(Math.min(1, p * (scale.dimRate[d] ?? 1)));
  const plan: EdgePlan = {
    segmentSize: 64 * 1024, many: 0, nameLen: 0, odd: false, big: false, links: [], hardLink: false, readonly: false,
    fdLimit: Infinity, misuse: false, end: 'close', directAppendMin: directAppendMinOf(seed), applyThreshold: 2 ** 40, dims: [],
  };
  for (;;) {
    if (rate('many', 0.3)) plan.many = rng.chance(0.75) ? rng.range(1000, Math.max(1000, Math.min(scale.manyMax, 2000))) : rng.range(1000, Math.max(1000, scale.manyMax));
    if (plan.many || rate('longNames', 0.25)) plan.nameLen = rate('longNames', 0.7) ? rng.range(200, 255) : 0;
    plan.odd = rate('odd', 0.3);
    plan.big = rate('big', 0.3);
    if (rate('links', 0.3)) {
      const all: LinkMoment[] = ['before-open', 'before-apply', 'before-recovery'];
      plan.links = all.filter(() => rng.chance(0.5));
      if (plan.links.length === 0) plan.links = [rng.pick(all)];
      plan.hardLink = rng.chance(0.3);
    }
    plan.readonly = rate('readonly', 0.2);
    if (rate('fdlimit', 0.15)) {
      plan.fdLimit = rng.pick([32, 64, 128]);
      // a low fd limit matters with thousands of files in one epoch
      if (!plan.many) plan.many = rng.range(1000, Math.max(1000, Math.min(scale.manyMax, 1500)));
    }
    plan.misuse = rate('misuse', 0.3);
    if (plan.many || plan.nameLen || plan.odd || plan.big || plan.links.length || plan.readonly || plan.fdLimit < Infinity || plan.misuse) break;
  }
  plan.segmentSize = rate('smallSeg', 0.6) ? 64 * 1024 : rng.pick([256 * 1024, 1024 * 1024, 4 * 1024 * 1024]);
  plan.end = plan.misuse ? 'close' : rng.pick(['close', 'close', 'discard', 'crash'] as const);
  if (plan.links.includes('before-recovery')) plan.end = 'crash';
  // a link planted between a check and its apply needs an apply that waits: close() or recovery does it
  plan.applyThreshold = plan.links.includes('before-apply') || plan.links.includes('before-recovery') ? 2 ** 40 : rng.pick([0, 12 * 1024, 2 ** 40]);
  if (plan.many) plan.dims.push('many');
  if (plan.nameLen >= 200) plan.dims.push('longNames');
  if (plan.segmentSize === 64 * 1024) plan.dims.push('smallSeg');
  if (plan.odd) plan.dims.push('odd');
  if (plan.big) plan.dims.push('big');
  if (plan.links.length) plan.dims.push('links');
  if (plan.readonly) plan.dims.push('readonly');
  if (plan.fdLimit < Infinity) plan.dims.push('fdlimit');
  if (plan.misuse) plan.dims.push('misuse');
  return plan;
}

export function describePlan(p: EdgePlan): string {
  return `edge plan: segmentSize ${p.segmentSize}, many ${p.many}, nameLen ${p.nameLen}, odd ${p.odd}, big ${p.big}, links [${p.links.join(' ')}]` +
    `${p.hardLink ? ' + hard link' : ''}, readonly ${p.readonly}, fdLimit ${p.fdLimit}, misuse ${p.misuse}, end ${p.end}, ` +
    `directAppendMin ${p.directAppendMin}, applyThreshold ${p.applyThreshold}`;
}

// ---------------------------------------------------------------------------------------------
// names

/** A file name component of exactly `bytes` UTF-8 bytes (ASCII, 2-byte and 4-byte characters mixed), unique by `tag`. */
export function nameOfBytes(tag: string, bytes: number, rng: Rng): string {
  let s = tag;
  const pieces = ['x', 'é', 'ß', '😀', 'ж', '-'];
  while (Buffer.byteLength(s) < bytes) {
    const left = bytes - Buffer.byteLength(s);
    const p = rng.pick(pieces.filter((c) => Buffer.byteLength(c) <= left));
    s += p;
  }
  return s;
}

/** The name the oracle expects for `name` (its own rules, not the library's): null when it must be refused; the codes. */
export function expectName(name: string, storeDir = STORE): { name: string } | { refuse: string[] } {
  if (name.length === 0 || name.includes('\0')) return { refuse: ['EINVAL'] };
  if (name.startsWith('/')) return { refuse: ['EPATH'] };
  // a lone surrogate has no UTF-8 form: two such names would become one file
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(name)) return { refuse: ['EINVAL'] };
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) return { refuse: ['EPATH'] };
      parts.pop();
      continue;
    }
    parts.push(p);
  }
  if (parts.length === 0) return { refuse: ['EINVAL'] };
  if (parts[0] === '.cpfile') return { refuse: ['EPATH'] };
  // the file system's limits: the library must refuse at the call what it could never apply
  for (const p of name.split('/')) if (Buffer.byteLength(p) > 255) return { refuse: ['EINVAL'] };
  if (Buffer.byteLength(storeDir) + 1 + Buffer.byteLength(parts.join('/')) >= 4096) return { refuse: ['EINVAL'] };
  return { name: parts.join('/') };
}

// ---------------------------------------------------------------------------------------------
// the driver: calls with expectations, and a model of what must survive

export class EdgeViolation extends Error {}
/** The store is unusable (EREOPEN, a failed check): the script ends, the oracle still judges. */
class Stop extends Error {}

interface MEntry {
  pos: number;
  mode: Mode;
  handles: Set<number>;
}

const APPENDING = new Set<Mode>(['a', 'a+']);

export interface EdgeRunResult {
  snaps: Map<number, Snapshot>;
  issued: number;
  acked: number;
  calls: number;
  refused: Record<string, number>;
  stopped: string | null;
}

/** Codes that end the script when a call gets them where the plan allows them (the oracle judges the rest). */
const TERMINAL = new Set(['EREOPEN']);

class Ctx {
  files = new Map<string, SparseFile>();
  entries = new Map<string, MEntry>();
  handles = new Map<number, { f: File; name: string }>();
  nextH = 1;
  k = 0;
  res: EdgeRunResult;
  recent: string[] = [];
  pending: Promise<void>[] = [];
  /** I/O codes any call may be refused with in this unit (EMFILE with an fd limit, ...) */
  ioCodes = new Set<string>();
  planted: Planted = { links: [], moved: [], readonly: [] };

  constructor(public store: Store, public sim: SimFS, public rng: Rng, initial: Map<string, SparseFile>) {
    for (const [n, f] of initial) this.files.set(n, f.clone());
    this.res = { snaps: new Map([[0, this.snapshot(0)]]), issued: 0, acked: 0, calls: 0, refused: {}, stopped: null };
  }

  snapshot(k: number): Snapshot {
    const files = new Map<string, Buffer>();
    for (const [n, f] of this.files) files.set(n, f.flat());
    const open = new Map<string, number>();
    for (const [n, e] of this.entries) open.set(n, e.pos);
    return { k, files, open };
  }

  note(s: string): void {
    this.recent.push(s);
    if (this.recent.length > 30) this.recent.shift();
  }

  fail(msg: string): never {
    throw new EdgeViolation(`${msg}\n  last calls: ${this.recent.slice(-12).join(' | ')}`);
  }

  /** A rejection: a CpError with one of `codes` (or an I/O code the plan allows); EREOPEN ends the script. */
  private refusal(desc: string, e: unknown, codes: readonly string[]): string {
    if (!(e instanceof CpError)) this.fail(`${desc}: rejected with a non-CpError: ${errText(e)}`);
    if (codes.includes(e.code) || this.ioCodes.has(e.code)) {
      this.res.refused[e.code] = (this.res.refused[e.code] ?? 0) + 1;
      return e.code;
    }
    if (TERMINAL.has(e.code) && this.ioCodes.size) throw new Stop(`${desc}: ${errText(e)}`);
    this.fail(`${desc}: rejected with ${e.code}${codes.length ? ` (expected success or ${codes.join('/')})` : ' (expected success)'}: ${e.message}`);
  }

  /** Run a call that must succeed (or be refused with one of `either`, in which case `onOk` is skipped). */
  async call<T>(desc: string, fn: () => Promise<T> | T, either: readonly string[] = []): Promise<{ ok: true; v: T } | { ok: false; code: string }> {
    this.res.calls++;
    this.note(desc);
    try {
      return { ok: true, v: await fn() };
    } catch (e) {
      return { ok: false, code: this.refusal(desc, e, either) };
    }
  }

  /** A call that must be refused with one of `codes`, changing nothing. */
  async refuse(desc: string, codes: readonly string[], fn: () => Promise<unknown> | unknown): Promise<void> {
    this.res.calls++;
    this.note(`${desc} (must refuse ${codes.join('/')})`);
    let v: unknown;
    try {
      v = await fn();
    } catch (e) {
      if (e instanceof CpError && TERMINAL.has(e.code) && this.ioCodes.size) throw new Stop(`${desc}: ${errText(e)}`);
      this.refusal(desc, e, codes);
      return;
    }
    // accepted: a violation, but the workload goes on (a handle it got is closed again), so that one
    // unit finds more than its first class; what the accepted call did shows in the final oracle
    this.softFail(`${desc}: accepted (resolved ${describeValue(v)}), expected a refusal with ${codes.join('/')}`);
    if (v && typeof v === 'object' && typeof (v as { close?: unknown }).close === 'function') await (v as File).close().catch(() => undefined);
  }

  /** Violations that do not end the workload. */
  soft: string[] = [];
  maxOpen = 0;

  softFail(msg: string): void {
    this.soft.push(`${msg}\n  last calls: ${this.recent.slice(-8).join(' | ')}`);
  }

  // --- the store's calls, with the model --------------------------------------------------------

  async open(name: string, mode: Mode, either: readonly string[] = []): Promise<number | null> {
    const x = expectName(name);
    if ('refuse' in x) {
      await this.refuse(`open(${show(name)}, '${mode}')`, x.refuse, () => this.store.open(name, mode));
      return null;
    }
    const n = x.name;
    const exists = this.files.has(n);
    if (this.entries.has(n)) {
      await this.refuse(`open(${show(name)}, '${mode}') of an open name`, ['EBUSY'], () => this.store.open(name, mode));
      return null;
    }
    if (!exists && (mode === 'r' || mode === 'r+')) {
      await this.refuse(`open(${show(name)}, '${mode}') of a missing file`, ['ENOENT'], () => this.store.open(name, mode));
      return null;
    }
    const r = await this.call(`open(${show(name)}, '${mode}')`, () => this.store.open(name, mode), either);
    if (!r.ok) return null;
    if (mode === 'w' || mode === 'w+' || !exists) this.files.set(n, new SparseFile());
    const h = this.nextH++;
    this.entries.set(n, { pos: 0, mode, handles: new Set([h]) });
    this.handles.set(h, { f: r.v, name: n });
    if (r.v.tell() !== 0) this.fail(`open(${show(name)}): tell() ${r.v.tell()}, expected 0`);
    return h;
  }

  ent(h: number): { f: File; name: string; e: MEntry } {
    const x = this.handles.get(h)!;
    return { ...x, e: this.entries.get(x.name)! };
  }

  /** write at the handle's position (position null) or at `position`; `either`: codes the call may be refused with instead. */
  async write(h: number, data: Buffer, position: number | null, either: readonly string[] = []): Promise<boolean> {
    const { f, name, e } = this.ent(h);
    const app = APPENDING.has(e.mode);
    const size = this.files.get(name)!.size;
    const at = app ? size : position ?? e.pos;
    const desc = `write(${show(name)}, ${data.length}B at ${position ?? `pos ${e.pos}`})`;
    const r = await this.call(desc, () => f.write(data, 0, data.length, position), either);
    if (!r.ok) return false;
    if (r.v.bytesWritten !== data.length) this.fail(`${desc}: bytesWritten ${r.v.bytesWritten}`);
    this.files.get(name)!.write(at, data);
    if (position === null || app) e.pos = app ? size + data.length : at + data.length;
    if (f.tell() !== e.pos) this.fail(`${desc}: tell() ${f.tell()}, expected ${e.pos}`);
    return true;
  }

  async read(h: number, len: number, position: number | null): Promise<void> {
    const { f, name, e } = this.ent(h);
    const file = this.files.get(name)!;
    const at = position ?? e.pos;
    const want = Buffer.alloc(len);
    const n = file.read(at, want, 0, len);
    const buf = Buffer.alloc(len);
    const desc = `read(${show(name)}, ${len}B at ${position ?? `pos ${e.pos}`})`;
    const r = await this.call(desc, () => f.read(buf, 0, len, position));
    if (!r.ok) return;
    if (r.v.bytesRead !== n || !buf.subarray(0, n).equals(want.subarray(0, n))) this.fail(`${desc}: got ${r.v.bytesRead} bytes${r.v.bytesRead === n ? ' (different content)' : ''}, expected ${n}`);
    if (position === null) e.pos = at + n;
    if (f.tell() !== e.pos) this.fail(`${desc}: tell() ${f.tell()}, expected ${e.pos}`);
  }

  async truncate(h: number, len: number, either: readonly string[] = []): Promise<boolean> {
    const { f, name } = this.ent(h);
    const r = await this.call(`truncate(${show(name)}, ${len})`, () => f.truncate(len), either);
    if (!r.ok) return false;
    this.files.get(name)!.truncate(len);
    return true;
  }

  seek(h: number, offset: number, whence: 'set' | 'cur' | 'end'): void {
    const { f, name, e } = this.ent(h);
    const base = whence === 'set' ? 0 : whence === 'cur' ? e.pos : this.files.get(name)!.size;
    const want = base + offset;
    this.note(`seek(${show(name)}, ${offset}, ${whence})`);
    this.res.calls++;
    let got: number;
    try {
      got = f.seek(offset, whence);
    } catch (err) {
      this.fail(`seek(${show(name)}, ${offset}, '${whence}'): threw ${errText(err)}, expected ${want}`);
    }
    if (got !== want) this.fail(`seek(${show(name)}, ${offset}, '${whence}') returned ${got}, expected ${want}`);
    e.pos = want;
  }

  async stat(h: number): Promise<void> {
    const { f, name } = this.ent(h);
    const r = await this.call(`stat(${show(name)})`, () => f.stat());
    if (r.ok && r.v.size !== this.files.get(name)!.size) this.fail(`stat(${show(name)}): size ${r.v.size}, expected ${this.files.get(name)!.size}`);
  }

  async close(h: number): Promise<void> {
    const { f, name, e } = this.ent(h);
    const r = await this.call(`close(${show(name)})`, () => f.close());
    if (!r.ok) return;
    this.dropHandle(h, name, e);
  }

  dropHandle(h: number, name: string, e: MEntry): void {
    e.handles.delete(h);
    this.handles.delete(h);
    if (e.handles.size === 0) this.entries.delete(name);
  }

  async writeFile(name: string, data: Buffer, either: readonly string[] = []): Promise<boolean> {
    const x = expectName(name);
    if ('refuse' in x) {
      await this.refuse(`writeFile(${show(name)})`, x.refuse, () => this.store.writeFile(name, data));
      return false;
    }
    if (this.entries.has(x.name)) {
      await this.refuse(`writeFile(${show(name)}) of an open name`, ['EBUSY'], () => this.store.writeFile(name, data));
      return false;
    }
    const r = await this.call(`writeFile(${show(name)}, ${data.length}B)`, () => this.store.writeFile(name, data), either);
    if (!r.ok) return false;
    this.files.set(x.name, new SparseFile(Buffer.from(data)));
    return true;
  }

  async readFile(name: string, either: readonly string[] = []): Promise<void> {
    const x = expectName(name);
    if ('refuse' in x) {
      await this.refuse(`readFile(${show(name)})`, x.refuse, () => this.store.readFile(name));
      return;
    }
    const want = this.files.get(x.name);
    if (!want) {
      await this.refuse(`readFile(${show(name)}) of a missing file`, ['ENOENT'], () => this.store.readFile(name));
      return;
    }
    if (want.sparse) return;
    const r = await this.call(`readFile(${show(name)})`, () => this.store.readFile(name), either);
    if (r.ok && !Buffer.from(r.v).equals(want.denseCopy())) this.fail(`readFile(${show(name)}): ${r.v.length} bytes, expected ${want.size} (or different content)`);
  }

  async unlink(name: string): Promise<void> {
    const x = expectName(name);
    if ('refuse' in x) return this.refuse(`unlink(${show(name)})`, x.refuse, () => this.store.unlink(name));
    if (!this.files.has(x.name)) return this.refuse(`unlink(${show(name)}) of a missing file`, ['ENOENT'], () => this.store.unlink(name));
    if (this.entries.has(x.name)) return this.refuse(`unlink(${show(name)}) of an open name`, ['EBUSY'], () => this.store.unlink(name));
    const r = await this.call(`unlink(${show(name)})`, () => this.store.unlink(name));
    if (r.ok) this.files.delete(x.name);
  }

  async rename(from: string, to: string): Promise<void> {
    const a = expectName(from);
    const b = expectName(to);
    if ('refuse' in a || 'refuse' in b) {
      return this.refuse(`rename(${show(from)}, ${show(to)})`, [...('refuse' in a ? a.refuse : []), ...('refuse' in b ? b.refuse : [])], () => this.store.rename(from, to));
    }
    if (!this.files.has(a.name)) return this.refuse(`rename(${show(from)}) of a missing file`, ['ENOENT'], () => this.store.rename(from, to));
    if (this.entries.has(a.name) || this.entries.has(b.name)) return this.refuse(`rename(${show(from)}, ${show(to)}) of an open name`, ['EBUSY'], () => this.store.rename(from, to));
    const r = await this.call(`rename(${show(from)}, ${show(to)})`, () => this.store.rename(from, to));
    if (!r.ok) return;
    if (a.name !== b.name) {
      this.files.set(b.name, this.files.get(a.name)!);
      this.files.delete(a.name);
    }
  }

  /** store.check() (or f.check()); `wait` false: left in flight, settled by settle(). */
  async check(via: number | null = null, wait = true): Promise<void> {
    const k = ++this.k;
    this.res.snaps.set(k, this.snapshot(k));
    this.res.issued = k;
    this.maxOpen = Math.max(this.maxOpen, this.entries.size);
    this.sim.mark({ kind: 'issue', k });
    this.note(`check k=${k}`);
    this.res.calls++;
    const f = via !== null ? this.handles.get(via)?.f : undefined;
    const p = (f ? f.check() : this.store.check()).then((epoch) => {
      this.sim.mark({ kind: 'ack', k });
      if (k > this.res.acked) this.res.acked = k;
      if (epoch !== k) this.fail(`check ${k} resolved with epoch ${epoch}`);
    }, (e) => {
      if (e instanceof EdgeViolation) throw e;
      if (e instanceof CpError && (this.ioCodes.has(e.code) || TERMINAL.has(e.code)) && this.ioCodes.size) throw new Stop(`check ${k}: ${errText(e)}`);
      this.fail(`check ${k} rejected: ${errText(e)}`);
    });
    if (wait) await p;
    else this.pending.push(p);
  }

  async settle(): Promise<void> {
    const ps = this.pending;
    this.pending = [];
    const rs = await Promise.allSettled(ps);
    for (const r of rs) if (r.status === 'rejected') throw r.reason;
  }

  /** A dense file's content: deterministic bytes. */
  bytes(n: number): Buffer {
    return this.rng.bytes(n);
  }
}

function show(name: string): string {
  const j = JSON.stringify(name);
  return j.length > 60 ? `${j.slice(0, 40)}…(${Buffer.byteLength(name)}B)` : j;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return String(v);
  if (v && typeof v === 'object' && 'bytesWritten' in v) return `{ bytesWritten: ${(v as { bytesWritten: number }).bytesWritten} }`;
  if (v && typeof v === 'object' && 'bytesRead' in v) return `{ bytesRead: ${(v as { bytesRead: number }).bytesRead} }`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return typeof v;
}

// ---------------------------------------------------------------------------------------------
// the phases

async function phaseBase(c: Ctx): Promise<void> {
  await c.writeFile('base.dat', c.bytes(c.rng.range(100, 3000)));
  const h = await c.open('sub/one.dat', 'w+');
  if (h !== null) {
    await c.write(h, c.bytes(c.rng.range(1, 5000)), null);
    await c.close(h);
  }
  await c.check();
}

/** Files with pending changes at the next check, in a directory and at the top (links and chmods aim at them). */
async function phasePending(c: Ctx): Promise<void> {
  await c.writeFile('d/f.dat', c.bytes(c.rng.range(10, 4000)));
  const h = await c.open('e.dat', c.files.has('e.dat') ? 'r+' : 'w');
  if (h !== null) {
    await c.write(h, c.bytes(c.rng.range(10, 4000)), null);
    await c.close(h);
  }
  if (c.files.has('base.dat')) {
    const b = await c.open('base.dat', 'r+');
    if (b !== null) {
      await c.write(b, c.bytes(c.rng.range(10, 700)), c.rng.int(2000));
      await c.close(b);
    }
  }
}

async function phaseMany(c: Ctx, plan: EdgePlan): Promise<void> {
  const n = plan.many;
  const dirs = c.rng.range(1, 4);
  const hs: number[] = [];
  for (let i = 0; i < n; i++) {
    const tag = `${String(i).padStart(5, '0')}-`;
    const comp = plan.nameLen ? nameOfBytes(tag, plan.nameLen, c.rng) : `${tag}m.dat`;
    const h = await c.open(`m${i % dirs}/${comp}`, c.rng.chance(0.2) ? 'a' : 'w');
    if (h === null) continue;
    hs.push(h);
    await c.write(h, c.bytes(c.rng.range(1, 48)), null);
  }
  await c.check();
  for (let j = 0; j < Math.min(hs.length, 200); j++) {
    const h = c.rng.pick(hs);
    if (c.handles.has(h)) await c.write(h, c.bytes(c.rng.range(1, 300)), null);
  }
  await c.check();
  // close most; the rest stay open across the next epochs (resumed entries after recovery)
  for (const h of hs) if (c.handles.has(h) && c.rng.chance(0.8)) await c.close(h);
  await c.check();
}

async function phaseLongNames(c: Ctx, plan: EdgePlan): Promise<void> {
  const len = plan.nameLen || 250;
  for (let i = 0; i < 12; i++) {
    const depth = c.rng.range(1, 3);
    const parts = Array.from({ length: depth }, (_, j) => nameOfBytes(`L${i}${j}-`, c.rng.range(Math.min(len, 200), len), c.rng));
    await c.writeFile(parts.join('/'), c.bytes(c.rng.range(0, 600)));
  }
  // paths far over PATH_MAX (refused at the call) and just under it (accepted)
  const deep = Array.from({ length: 18 }, (_, j) => nameOfBytes(`P${j}-`, 250, c.rng)).join('/');
  await c.writeFile(deep, c.bytes(10));
  const under = Array.from({ length: 15 }, (_, j) => nameOfBytes(`Q${j}-`, 250, c.rng)).join('/');
  await c.writeFile(under, c.bytes(10));
  await c.readFile(under);
  await c.check();
}

/** Names with what the oracle expects of them (expectName decides). */
function oddNames(c: Ctx): string[] {
  return [
    'caf\u00e9.txt', 'cafe\u0301.txt', '😀/🎉.dat', nameOfBytes('e', 255, c.rng), `sub/${'x'.repeat(255)}`,
    'a/../ok1.dat', 'sub/./ok2.dat', 'dir2//x.dat', '.CPFILE.dat', ' lead space', 'tab\tname', '\u202Ertl.txt', 'back\\slash',
    'x'.repeat(256), 'é'.repeat(128), '😀'.repeat(64), `ok/${'😀'.repeat(63)}abc`,
    '\uD800.dat', 'x\uDC00y', '\uDBFF', '\uD83D\uDE00-pair.dat', '', 'nul\0x',
    '../esc', 'q/../../esc', '.cpfile/x', 'q/../.cpfile/journal/x', './.cpfile', '.cpfile', '/abs',
  ];
}

async function phaseOdd(c: Ctx): Promise<void> {
  const names = oddNames(c);
  // control and bidi characters: a library may refuse them (EINVAL); otherwise they are names like others
  for (const n of names) await c.writeFile(n, c.bytes(c.rng.range(1, 200)), /[\u0000-\u001f\u202a-\u202e]/.test(n) ? ['EINVAL'] : []);
  // two lone surrogates that UTF-8 would turn into the same name: both refused, neither overwrites the other
  await c.writeFile('\uD800-s.dat', c.bytes(5));
  await c.writeFile('\uDBFF-s.dat', c.bytes(7));
  // the NFC and NFD spellings are two files
  await c.readFile('caf\u00e9.txt');
  await c.readFile('cafe\u0301.txt');
  // a trailing slash: refused, or the file without it
  const t = expectName('trail.dat');
  if ('name' in t) {
    const r = await c.call("writeFile('trail.dat/')", () => c.store.writeFile('trail.dat/', Buffer.from('T')), ['EINVAL', 'EPATH', 'ENOENT', 'EISDIR']);
    if (r.ok) c.files.set('trail.dat', new SparseFile(Buffer.from('T')));
  }
  const h = await c.open('😀/🎉.dat', 'a+');
  if (h !== null) {
    await c.write(h, c.bytes(33), null);
    await c.read(h, 40, 0);
    await c.close(h);
  }
  await c.rename('caf\u00e9.txt', 'sub/caf\u00e9-moved.txt');
  await c.rename('sub/ok2.dat', 'x'.repeat(256));
  await c.rename('sub/ok2.dat', '../out');
  await c.unlink('cafe\u0301.txt');
  await c.unlink('\uD800.dat');
  await c.check();
  for (const n of names.slice(0, 8)) await c.readFile(n);
}

async function phaseBig(c: Ctx): Promise<void> {
  const T40 = 2 ** 40;
  const FS_MAX = 16 * T40;
  const h = await c.open('big.dat', 'w+');
  if (h === null) return;
  await c.write(h, c.bytes(100), null);
  const x = c.rng;
  // seeks and reads anywhere up to 2^53 - 1 are fine
  c.seek(h, 2 ** 50 + x.int(1000), 'set');
  await c.read(h, 16, null);
  c.seek(h, 2 ** 53 - 1, 'set');
  await c.read(h, 16, null);
  c.seek(h, 0, 'set');
  await c.refuse('seek(big.dat, 2^53)', ['EINVAL'], () => c.handles.get(h)!.f.seek(2 ** 53, 'set'));
  // writes and truncates past what the file system takes: refused at the call (EFBIG), nothing changes
  const far = [2 ** 50, FS_MAX, FS_MAX - 10, 2 ** 52 + x.int(1 << 20), 2 ** 53 - 64];
  for (const p of far) {
    const len = x.range(16, 100);
    if (p + len <= FS_MAX) continue;
    await c.refuse(`write(big.dat, ${len}B at ${p})`, p + len > 2 ** 53 ? ['EFBIG', 'EINVAL'] : ['EFBIG'], () => c.handles.get(h)!.f.write(c.bytes(len), 0, len, p));
  }
  await c.refuse('truncate(big.dat, 2^50)', ['EFBIG'], () => c.handles.get(h)!.f.truncate(2 ** 50));
  await c.refuse('truncate(big.dat, 16 TiB + 1)', ['EFBIG'], () => c.handles.get(h)!.f.truncate(FS_MAX + 1));
  // at the handle's position past the limit
  c.seek(h, FS_MAX - 8, 'set');
  await c.refuse('write(big.dat, 64B at pos 16 TiB - 8)', ['EFBIG'], () => c.handles.get(h)!.f.write(c.bytes(64)));
  c.seek(h, 0, 'end');
  await c.check();
  // within the file system's limit (2^40 .. 16 TiB): accepted and then exact, or refused with EFBIG
  const near = T40 + x.int(2 ** 30);
  await c.write(h, c.bytes(x.range(1, 5000)), near, ['EFBIG']);
  await c.stat(h);
  await c.read(h, 64, near);
  if (x.chance(0.5)) await c.truncate(h, 2 ** 42 + x.int(1 << 20), ['EFBIG']);
  await c.stat(h);
  c.seek(h, 0, 'end');
  await c.check();
  if (x.chance(0.5)) await c.truncate(h, x.int(200));
  await c.close(h);
  await c.check();
}

async function phaseMisuse(c: Ctx): Promise<void> {
  const x = c.rng;
  // (a) calls after an unawaited f.close(): call order says they come after it
  const h = await c.open('mu.dat', 'w');
  if (h !== null) {
    const { f, name, e } = c.ent(h);
    const a = c.bytes(x.range(1, 300));
    const p1 = f.write(a);
    const p2 = f.close();
    const p3 = f.write(c.bytes(10));
    const p4 = f.truncate(0);
    for (const p of [p1, p2, p3, p4] as Promise<unknown>[]) quiet(p);
    c.note('mu.dat: write, close, write, truncate, unawaited');
    c.res.calls += 4;
    await expectOutcome(c, 'write before an unawaited close', p1, null);
    await expectOutcome(c, 'the unawaited close', p2, null);
    await expectOutcome(c, 'write after an unawaited close', p3, ['EBADF']);
    await expectOutcome(c, 'truncate after an unawaited close', p4, ['EBADF']);
    c.files.get(name)!.write(0, a);
    c.dropHandle(h, name, e);
    await c.refuse('tell() after close', ['EBADF'], () => f.tell());
    await c.refuse('seek() after close', ['EBADF'], () => f.seek(0));
    await c.refuse('close() twice', ['EBADF'], () => f.close());
  }
  // (b) seek('end') and tell() while writes are in flight: they see the writes called before them
  const g = await c.open('mv.dat', x.chance(0.5) ? 'a+' : 'w+');
  if (g !== null) {
    const { f, name, e } = c.ent(g);
    const file = c.files.get(name)!;
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < x.range(2, 6); i++) {
      const d = c.bytes(x.range(1, 3000));
      const at = APPENDING.has(e.mode) ? file.size : e.pos;
      ps.push(quiet(f.write(d)));
      file.write(at, d);
      e.pos = at + d.length;
      c.res.calls++;
      const t = f.tell();
      if (t !== e.pos) c.fail(`tell() right after an unawaited write: ${t}, expected ${e.pos}`);
      if (x.chance(0.5)) {
        const s = f.seek(0, 'end');
        if (s !== file.size) c.fail(`seek(0, 'end') right after an unawaited write: ${s}, expected ${file.size}`);
        e.pos = file.size;
      }
    }
    for (const p of ps) await expectOutcome(c, 'an unawaited write', p, null);
    // (c) offsets and lengths past the buffer: refused, nothing written
    const buf = c.bytes(32);
    await c.refuse('write(buf, offset past its end)', ['EINVAL'], () => f.write(buf, buf.length + 5));
    await c.refuse('write(buf, offset, length past its end)', ['EINVAL'], () => f.write(buf, 2, buf.length));
    await c.refuse('write(buf, -1)', ['EINVAL'], () => f.write(buf, -1));
    await c.refuse('write(buf, 0, 1, -5)', ['EINVAL'], () => f.write(buf, 0, 1, -5));
    await c.refuse('write(buf, 0, 1.5)', ['EINVAL'], () => f.write(buf, 0, 1.5));
    await c.refuse('read(buf, 0, length past its end)', ['EINVAL'], () => f.read(Buffer.alloc(8), 0, 9));
    await c.refuse('read(buf, offset past its end)', ['EINVAL'], () => f.read(Buffer.alloc(8), 9));
    await c.refuse('read(buf, offset at its end, 1)', ['EINVAL'], () => f.read(Buffer.alloc(8), 8, 1));
    await c.stat(g);
    // (d) checks in flight with writes between them
    await c.check(null, false);
    await c.write(g, c.bytes(x.range(1, 500)), null);
    await c.check(g, false);
    await c.settle();
    await c.read(g, 100, 0);
    await c.close(g);
  }
  await c.check();
}

/**
 * The store's close() left in flight, then calls after it: ECLOSED (or EBADF on a handle); everything
 * before it stands. `applyPlant`: something planted behind the store's back makes the final apply
 * fail, so close() may reject with that (EPATH, EACCES, EPERM, or EREOPEN wrapping it); so may an
 * injected I/O fault (the plan's ioCodes).
 */
async function endMisuse(c: Ctx, applyPlant = ''): Promise<void> {
  const h = await c.open('late-open.dat', 'w');
  if (h !== null) await c.write(h, c.bytes(20), null);
  const f = h !== null ? c.handles.get(h)!.f : null;
  const k = ++c.k;
  c.res.snaps.set(k, c.snapshot(k));
  c.res.issued = k;
  c.sim.mark({ kind: 'issue', k });
  c.note(`store.close() unawaited (check k=${k})`);
  const pc = quiet(c.store.close());
  c.res.calls += 5;
  const late = [
    expectOutcome(c, 'writeFile after store.close()', c.store.writeFile('late.dat', Buffer.from('late')), ['ECLOSED']),
    expectOutcome(c, 'check after store.close()', c.store.check(), ['ECLOSED']),
    expectOutcome(c, 'open after store.close()', c.store.open('late2.dat', 'w'), ['ECLOSED']),
    expectOutcome(c, 'unlink after store.close()', c.store.unlink('base.dat'), ['ECLOSED']),
    ...(f ? [expectOutcome(c, 'write on a handle after store.close()', f.write(Buffer.from('late')), ['ECLOSED', 'EBADF'])] : []),
  ];
  for (const p of late) quiet(p);
  let closed = true;
  if (applyPlant) {
    try {
      await pc;
    } catch (e) {
      if (!(e instanceof CpError) || !['EPATH', 'EREOPEN', 'EACCES', 'EPERM'].includes(e.code)) c.fail(`store.close() with ${applyPlant}: rejected with ${errText(e)}`);
      c.res.refused[e.code] = (c.res.refused[e.code] ?? 0) + 1;
      closed = false;
    }
  } else {
    try {
      await pc;
    } catch (e) {
      // An I/O fault the plan injects (the faults kind) may hit the final apply: close() rejects with
      // it or with EREOPEN, the check it makes is not acknowledged, and the end judges what stands.
      if (!(e instanceof CpError) || !c.ioCodes.size || !(c.ioCodes.has(e.code) || TERMINAL.has(e.code))) c.fail(`store.close(): rejected: ${errText(e)}`);
      c.res.refused[e.code] = (c.res.refused[e.code] ?? 0) + 1;
      closed = false;
    }
  }
  if (closed) {
    c.sim.mark({ kind: 'ack', k });
    c.res.acked = k;
  }
  for (const p of late) await p;
}

/** Mark a promise handled now (it is awaited later, maybe after an earlier await threw). */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

async function expectOutcome(c: Ctx, desc: string, p: Promise<unknown>, refuse: string[] | null): Promise<void> {
  try {
    const v = await p;
    if (refuse) c.softFail(`${desc}: accepted (resolved ${describeValue(v)}), expected a refusal with ${refuse.join('/')}`);
  } catch (e) {
    if (e instanceof EdgeViolation) throw e;
    if (!refuse) c.fail(`${desc}: rejected: ${errText(e)}`);
    if (!(e instanceof CpError) || !refuse.includes(e.code)) c.fail(`${desc}: rejected with ${errText(e)}, expected ${refuse.join('/')}`);
    c.res.refused[e.code] = (c.res.refused[e.code] ?? 0) + 1;
  }
}

// ---------------------------------------------------------------------------------------------
// planting: another program changes the store directory behind the store's back

interface Planted {
  /** symlinks and hard links made (removed when the cause is removed) */
  links: string[];
  /** renames to undo: [moved to, original] */
  moved: [string, string][];
  readonly: string[];
}

function outsideTree(sim: SimFS): Map<string, Buffer> {
  return sim.tree(OUTSIDE, '\0');
}

function plantBeforeOpen(sim: SimFS, rng: Rng, p: Planted, hard: boolean): void {
  const L = (target: string, at: string): void => {
    sim.symlinkSync(target, at);
    p.links.push(at);
  };
  L(OUTSIDE, `${STORE}/out`);
  L('.', `${STORE}/self`);
  L('.cpfile', `${STORE}/meta`);
  L(`${OUTSIDE}/victim`, `${STORE}/victim.dat`);
  L(`${OUTSIDE}/new-file`, `${STORE}/dangling.dat`);
  if (rng.chance(0.5)) L('../outside', `${STORE}/rel-out`);
  if (hard) {
    sim.linkSync(`${OUTSIDE}/secret`, `${STORE}/hard.dat`);
    p.links.push(`${STORE}/hard.dat`);
  }
}

/** Calls through the links planted before open: every one that leaves the store or reaches .cpfile is refused with EPATH. */
async function probeLinks(c: Ctx, hard: boolean): Promise<void> {
  const E = ['EPATH'];
  const s = c.store;
  await c.refuse("writeFile('out/x')", E, () => s.writeFile('out/x', Buffer.from('x')));
  await c.refuse("open('out/secret', 'r+')", E, () => s.open('out/secret', 'r+'));
  await c.refuse("readFile('out/secret')", E, () => s.readFile('out/secret'));
  await c.refuse("open('victim.dat', 'r+')", E, () => s.open('victim.dat', 'r+'));
  await c.refuse("writeFile('victim.dat')", E, () => s.writeFile('victim.dat', Buffer.from('v')));
  await c.refuse("open('dangling.dat', 'w')", E, () => s.open('dangling.dat', 'w'));
  await c.refuse("writeFile('self/.cpfile/control')", E, () => s.writeFile('self/.cpfile/control', Buffer.alloc(64)));
  await c.refuse("open('self/.cpfile/journal/x', 'w')", E, () => s.open('self/.cpfile/journal/x', 'w'));
  await c.refuse("writeFile('meta/control')", E, () => s.writeFile('meta/control', Buffer.alloc(64)));
  await c.refuse("readFile('meta/control')", E, () => s.readFile('meta/control'));
  if (c.files.has('base.dat')) await c.refuse("rename('base.dat', 'out/stolen')", E, () => s.rename('base.dat', 'out/stolen'));
  await c.refuse("rename('out/secret', 'stolen.dat')", E, () => s.rename('out/secret', 'stolen.dat'));
  // an alias inside the store: refused, or the same bytes
  const r = await c.call("readFile('self/base.dat')", () => s.readFile('self/base.dat'), ['EPATH', 'ENOENT']);
  if (r.ok && !Buffer.from(r.v).equals(c.files.get('base.dat')?.denseCopy() ?? Buffer.alloc(0))) c.fail("readFile('self/base.dat') through the alias differs from base.dat");
  if (hard) {
    // a hard link to a file outside: refused, or written (then the outside file changed: the oracle says so)
    const w = await c.call("writeFile('hard.dat')", () => s.writeFile('hard.dat', Buffer.from('overwritten through a hard link')), ['EPATH', 'EINVAL', 'EPERM']);
    if (w.ok) {
      c.files.set('hard.dat', new SparseFile(Buffer.from('overwritten through a hard link')));
      // the store's file now: not removed with the planted links
      c.planted.links = c.planted.links.filter((l) => !l.endsWith('/hard.dat'));
    }
  }
}

/** Between a check and its apply (or before recovery): swap d/ and e.dat for links out of the store, at '.', into .cpfile. */
function plantOverPending(sim: SimFS, rng: Rng, p: Planted): string {
  const what: string[] = [];
  const swap = (name: string, target: string): void => {
    const at = `${STORE}/${name}`;
    if (sim.kindSync(at) !== null) {
      // (an earlier plant of the same unit may have left one aside already: the first free name)
      let aside = `${STORE}/${name}.aside`;
      for (let i = 2; sim.kindSync(aside) !== null; i++) aside = `${STORE}/${name}.aside${i}`;
      sim.renameSync(at, aside);
      p.moved.push([aside, at]);
    }
    sim.symlinkSync(target, at);
    p.links.push(at);
    what.push(`${name} -> ${target}`);
  };
  const dTarget = rng.pick([OUTSIDE, '.', '.cpfile', `${OUTSIDE}/sub`]);
  if (rng.chance(0.8)) swap('d', dTarget);
  if (rng.chance(0.7) || what.length === 0) swap('e.dat', rng.pick([`${OUTSIDE}/victim`, `${OUTSIDE}/e-new`, '.cpfile/control', 'base.dat']));
  if (rng.chance(0.3)) swap('sub', OUTSIDE);
  return what.join(', ');
}

function unplant(sim: SimFS, p: Planted): void {
  for (const l of [...p.links].reverse()) if (sim.kindSync(l) !== null) sim.removeSync(l);
  for (const [aside, at] of [...p.moved].reverse()) {
    if (sim.kindSync(at) !== null) {
      // something was created where the original was: the original wins (the store's data is in it or in the journal)
      continue;
    }
    if (sim.kindSync(aside) !== null) sim.renameSync(aside, at);
  }
  for (const r of p.readonly) if (sim.kindSync(r) === 'file') sim.setReadonlySync(r, false);
}

// ---------------------------------------------------------------------------------------------
// the unit

export interface EdgeUnitResult {
  cases: number;
  violations: Violation[];
  dims: Dim[];
  plan: EdgePlan;
  refused: Record<string, number>;
  calls: number;
  acked: number;
  states: number;
  /** the largest count of entries open at one check */
  maxOpen: number;
  /** sha1 of the journal and control file the workload left (determinism.ts: a seed replays byte for byte) */
  journalDigest: string;
}

/**
 * `fault`: one I/O call of the workload (the n-th, drawn from the seed) fails with ENOSPC, EIO or
 * EACCES (the faults kind): calls may then be refused with that code, later ones with EREOPEN; the
 * store must reopen (the fault gone: space freed) with every acknowledged epoch.
 */
export async function edgeUnit(kind: KindName, seed: number, scale: EdgeScale = DEFAULT_SCALE, limit = Infinity, fault = false): Promise<EdgeUnitResult> {
  return withSeededRandom(seed, () => edgeUnitInner(kind, seed, scale, limit, fault));
}

const FAULTS = ['ENOSPC', 'EIO', 'EACCES'] as const;

/** An IO over `inner` whose call number `at` (counting every call but close) fails with `code`. */
function faultyIO(inner: SimFS, at: number, code: string, hit: { site: string | null }): import('../../lib/io.js').IO {
  let n = 0;
  const o: Record<string, unknown> = {};
  // Every method of the IO interface (a missing one fails openStore): maxFileSize, the probe at open,
  // is passed through without counting.
  for (const m of ['open', 'close', 'read', 'write', 'fsync', 'fdatasync', 'ftruncate', 'fstat', 'stat', 'lstat', 'rename', 'unlink', 'mkdir', 'readdir', 'fsyncDir', 'realpath', 'access', 'rmdir', 'maxFileSize']) {
    const f = (inner as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m].bind(inner);
    o[m] = async (...args: unknown[]) => {
      if (m !== 'close' && m !== 'maxFileSize' && n++ === at) {
        hit.site = `${m} ${typeof args[0] === 'string' ? args[0] : `fd ${String(args[0])}`}`;
        throw Object.assign(new Error(`${code}: injected fault in ${m}`), { code, syscall: m });
      }
      return f(...args);
    };
  }
  return o as unknown as import('../../lib/io.js').IO;
}

async function edgeUnitInner(kind: KindName, seed: number, scale: EdgeScale, limit: number, withFault: boolean): Promise<EdgeUnitResult> {
  const plan = edgePlan(seed, scale);
  const frng = new Rng(mixSeed(seed, 0xfa17));
  const fault = withFault ? { at: frng.int(plan.many ? plan.many * 4 : 300), code: frng.pick(FAULTS), hit: { site: null as string | null } } : null;
  const rng = new Rng(mixSeed(seed, 0xed6e5));
  const res: EdgeUnitResult = { cases: 0, violations: [], dims: plan.dims, plan, refused: {}, calls: 0, acked: 0, states: 0, maxOpen: 0, journalDigest: '' };
  const desc = `${describePlan(plan)}${fault ? `; fault ${fault.code} at I/O call ${fault.at}` : ''}`;
  const fail = (what: string, where = ''): void => {
    res.violations.push({ kind, seed, cases: res.cases, what: `edge: ${sig(what)}`, detail: `${desc}\n${what}${where ? `\n${where}` : ''}`, dims: plan.dims });
  };

  const sim = new SimFS();
  sim.mkdirSync(STORE);
  sim.putFileSync(`${OUTSIDE}/secret`, Buffer.from('outside the store: never written by it'));
  sim.putFileSync(`${OUTSIDE}/victim`, Buffer.from('victim of a planted symlink'));
  sim.putFileSync(`${OUTSIDE}/sub/keep`, Buffer.from('keep'));
  const planted: Planted = { links: [], moved: [], readonly: [] };
  const initial = new Map<string, SparseFile>();
  if (plan.links.includes('before-open')) plantBeforeOpen(sim, rng, planted, plan.hardLink);
  if (plan.readonly) {
    const ro = rng.bytes(rng.range(10, 500));
    sim.putFileSync(`${STORE}/ro.dat`, ro);
    sim.setReadonlySync(`${STORE}/ro.dat`, true);
    planted.readonly.push(`${STORE}/ro.dat`);
    initial.set('ro.dat', new SparseFile(ro));
  }
  const outsideBefore = outsideTree(sim);
  const base: Image = sim.image();
  const traceStart = sim.trace.length;
  sim.allowedRoot = STORE;
  sim.fdLimit = plan.fdLimit;

  let store: Store;
  const opts = { io: fault ? faultyIO(sim, fault.at, fault.code, fault.hit) : sim, noLock: true, segmentSize: plan.segmentSize, applyThreshold: plan.applyThreshold, applyDelay: 3600_000, directAppendMin: plan.directAppendMin };
  try {
    store = await openStore(STORE, opts);
  } catch (e) {
    res.cases++;
    // The injected fault hit the store's creation: refusing to open with that code is right (nothing
    // was acknowledged). Anything else is a violation.
    if (fault && fault.hit.site !== null && e instanceof CpError && e.code === fault.code) return res;
    fail(`openStore of a new store rejected: ${errText(e)}`);
    return res;
  }
  const c = new Ctx(store, sim, new Rng(mixSeed(seed, 0x5c41)), initial);
  c.planted = planted;
  if (plan.fdLimit < Infinity) c.ioCodes.add('EMFILE');
  if (fault) c.ioCodes.add(fault.code);
  let stopped: string | null = null;
  let applyPlant = '';
  try {
    await phaseBase(c);
    if (plan.links.includes('before-open')) await probeLinks(c, plan.hardLink);
    if (plan.readonly) {
      const ro = await c.open('ro.dat', 'r');
      if (ro !== null) {
        await c.read(ro, 100, 0);
        await c.close(ro);
      }
      for (const m of ['r+', 'a', 'w', 'a+', 'w+'] as Mode[]) await c.refuse(`open('ro.dat', '${m}') of a read-only file`, ['EACCES', 'EPERM'], () => store.open('ro.dat', m));
      await c.check();
    }
    const phases: (() => Promise<void>)[] = [];
    if (plan.many) phases.push(() => phaseMany(c, plan));
    if (plan.nameLen && !plan.many) phases.push(() => phaseLongNames(c, plan));
    if (plan.odd) phases.push(() => phaseOdd(c));
    if (plan.big) phases.push(() => phaseBig(c));
    if (plan.misuse) phases.push(() => phaseMisuse(c));
    for (let i = phases.length - 1; i > 0; i--) {
      const j = c.rng.int(i + 1);
      [phases[i], phases[j]] = [phases[j], phases[i]];
    }
    for (const ph of phases) await ph();
    if (plan.links.includes('before-apply') || plan.links.includes('before-recovery') || (plan.readonly && c.rng.chance(0.5))) {
      await phasePending(c);
      await c.check();
    }
    if (plan.readonly && c.files.has('e.dat') && !plan.links.length && sim.kindSync(`${STORE}/e.dat`) === 'file') {
      // made read-only between the check and its apply
      sim.setReadonlySync(`${STORE}/e.dat`, true);
      planted.readonly.push(`${STORE}/e.dat`);
      applyPlant = 'e.dat made read-only';
    }
    if (plan.links.includes('before-apply')) applyPlant = plantOverPending(sim, c.rng, planted);
    if (plan.misuse) await endMisuse(c, applyPlant);
    else if (plan.end === 'close') {
      const k = ++c.k;
      c.res.snaps.set(k, c.snapshot(k));
      c.res.issued = k;
      c.sim.mark({ kind: 'issue', k });
      const r = await c.call('store.close()', () => store.close(), applyPlant ? ['EPATH', 'EREOPEN', 'EACCES', 'EPERM'] : []);
      if (r.ok) {
        c.sim.mark({ kind: 'ack', k });
        c.res.acked = k;
      }
    } else if (plan.end === 'discard') {
      await c.call('store.close({ discard: true })', () => store.close({ discard: true }), applyPlant ? ['EPATH', 'EREOPEN', 'EACCES', 'EPERM'] : []);
    }
  } catch (e) {
    if (e instanceof Stop) stopped = e.message;
    else if (e instanceof EdgeViolation) {
      res.cases++;
      fail(e.message);
    } else if (e instanceof CpError && e.code === 'EREOPEN' && c.soft.length) {
      // the store was poisoned by a call accepted against the oracle (reported): only the end judges now
      stopped = `${errText(e)}`;
    } else if (e instanceof CpError && e.code === 'EREOPEN' && fault && fault.hit.site !== null && (e.cause as CpError | undefined)?.code === fault.code) {
      // the injected fault hit the background apply: the store must be reopened; the end judges
      stopped = `${errText(e)}`;
    } else {
      res.cases++;
      fail(`the workload threw ${errText(e)}\n  last calls: ${c.recent.slice(-8).join(' | ')}`);
    }
  }
  // the process state the workload leaves (a crash now); then the store goes away
  await c.settle().catch(() => undefined);
  const crashImg = sim.image();
  const traceEnd = sim.trace.length;
  {
    const h = createHash('sha1');
    for (const [n, b] of [...sim.tree(`${STORE}/.cpfile`, '\0')].sort((a, b) => (a[0] < b[0] ? -1 : 1))) h.update(`${n}\0`).update(b);
    res.journalDigest = h.digest('hex');
  }
  const crashable = !plan.links.length && !plan.readonly && sim.sparseWrites === 0 && !fault;
  await store.close({ discard: true }).catch(() => undefined);
  res.calls = c.res.calls;
  res.maxOpen = c.maxOpen;
  for (const m of c.soft) fail(m);
  res.refused = c.res.refused;
  res.acked = c.res.acked;
  res.cases++;
  const x = { snaps: c.res.snaps, lo: c.res.acked, hi: c.res.issued };
  const where = `acked ${x.lo}, issued ${x.hi}${fault ? `; the fault ${fault.hit.site ? `hit ${fault.hit.site}` : 'was never reached'}` : ''}${stopped ? `; the workload stopped: ${stopped}` : ''}${applyPlant ? `; planted before the apply: ${applyPlant}` : ''}`;

  // changes outside the store since the last look at that file system (each reported once)
  const seenOutside = new Map<SimFS, Map<string, Buffer>>([[sim, outsideBefore]]);
  const checkOutside = (s: SimFS, when: string): void => {
    const now = outsideTree(s);
    const before = seenOutside.get(s) ?? now;
    seenOutside.set(s, now);
    const diff: string[] = [];
    for (const [n, b] of now) if (!before.get(n)?.equals(b)) diff.push(before.has(n) ? `${OUTSIDE}/${n} changed` : `${OUTSIDE}/${n} created`);
    for (const n of before.keys()) if (!now.has(n)) diff.push(`${OUTSIDE}/${n} removed`);
    if (diff.length) fail(`${when}: a file outside the store changed${planted.links.some((l) => l.endsWith('hard.dat')) ? ' (a hard link was planted)' : ''}: ${diff.join(', ')}`, where);
    if (s.violations.length) fail(`${when}: I/O outside the store or into .cpfile: ${[...new Set(s.violations)].slice(0, 4).join('; ')}`, where);
    s.violations.length = 0;
  };
  checkOutside(sim, 'during the workload (and its close)');
  const fresh = (): SimFS => {
    const s = new SimFS(crashImg);
    s.allowedRoot = STORE;
    s.fdLimit = plan.fdLimit;
    seenOutside.set(s, outsideTree(s));
    return s;
  };

  // the same file system after a crash, with the cause removed (links gone, permissions back); the fd limit stays
  const reopen = async (s: SimFS, when: string, floor = x.lo): Promise<number | null> => {
    res.cases++;
    try {
      const st = await openStore(STORE, { io: s, noLock: true, segmentSize: plan.segmentSize, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
      try {
        const bad = judge({ files: s.tree(STORE), epoch: st.epoch, entries: st.recovery.entries }, { ...x, lo: floor });
        if (bad) fail(`${when}: ${bad}`, where);
        else {
          // the store's own reads agree (a sample of the files)
          const snap = x.snaps.get(st.epoch)!;
          const names = [...snap.files.keys()].filter((n) => !snap.files.get(n)!.subarray(0, 8).equals(Buffer.from('\0sparse ')));
          for (let i = 0; i < Math.min(12, names.length); i++) {
            const n = names[rng.int(names.length)];
            const want = snap.files.get(n)!;
            const got = Buffer.from(await st.readFile(n));
            if (!got.equals(want)) {
              fail(`${when}: store.readFile(${show(n)}) after recovery: ${got.length} bytes, expected ${want.length}`, where);
              break;
            }
          }
        }
        return st.epoch;
      } finally {
        await st.close({ discard: true }).catch(() => undefined);
      }
    } catch (e) {
      fail(`${when}: reopening rejected: ${errText(e)}`, where);
      return null;
    } finally {
      checkOutside(s, when);
    }
  };

  if (plan.links.includes('before-recovery')) {
    // a crash, then links planted over the unapplied epochs' files before recovery runs
    const s = fresh();
    const p2: Planted = { links: [], moved: [], readonly: [] };
    const what = plantOverPending(s, rng, p2);
    res.cases++;
    try {
      const st = await openStore(STORE, { io: s, noLock: true, segmentSize: plan.segmentSize, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
      await st.close({ discard: true }).catch(() => undefined);
    } catch (e) {
      if (!(e instanceof CpError) || !['EPATH'].includes(e.code)) fail(`recovery with links planted before it (${what}) rejected with ${errText(e)}, expected success or EPATH`, where);
    }
    checkOutside(s, `recovery with links planted before it (${what})`);
    unplant(s, p2);
    unplant(s, planted);
    await reopen(s, `reopened after recovery met planted links (${what}) and they were removed`);
  }
  const s1 = fresh();
  unplant(s1, planted);
  const first = await reopen(s1, 'reopened with the cause removed');
  if (first !== null && res.cases < limit) {
    // and once more, now that recovery ran (idempotent)
    await reopen(s1, 'reopened a second time', first);
  }

  // crash states along the trace (where the power-loss model applies)
  if (crashable && scale.states > 0) {
    const trace = sim.trace.slice(traceStart, traceEnd);
    const model = new CrashModel(base, trace);
    const points: number[] = [];
    const budget = Math.min(scale.states, Math.max(0, limit - res.cases));
    for (let i = 0; i < budget; i++) points.push(rng.int(trace.length + 1));
    points.sort((a, b) => a - b);
    const modes: ChoiceMode[] = ['durable', 'all', 'random', 'ordered'];
    for (const pt of points) {
      while (model.pos < pt) model.step();
      const mode = rng.pick(modes);
      const choice = model.randomChoice(rng, mode);
      const r = await recoverImage(model.materialize(choice), true, { segmentSize: plan.segmentSize });
      res.cases++;
      res.states++;
      const w = `crash at trace point ${model.pos}/${trace.length} (acked ${model.acked}, issued ${model.issued}, mode ${mode}); ${model.explain(choice)}`;
      if (r.epoch === null) {
        fail(`recovery rejected: ${errText(r.error)}`, w);
        continue;
      }
      if (r.sim.violations.length) fail(`I/O outside the store: ${r.sim.violations.join('; ')}`, w);
      const bad = judge({ files: r.files, epoch: r.epoch, entries: r.entries }, { snaps: c.res.snaps, lo: model.acked, hi: model.issued });
      if (bad) fail(bad, w);
    }
  }
  return res;
}

/**
 * A journal for the fuzzer (fuzz.ts) from an edge workload: many entries open (long names or short),
 * some of them across checks, and pending changes at the end; every check acknowledged.
 */
export async function edgeFuzzWorkload(store: Store, sim: SimFS, seed: number, many: number, nameLen: number): Promise<{ snaps: Map<number, Snapshot>; acked: number; error: string | null }> {
  const c = new Ctx(store, sim, new Rng(mixSeed(seed, 0xf022)), new Map());
  try {
    await phaseBase(c);
    const plan = { ...edgePlan(seed), many, nameLen };
    await phaseMany(c, plan);
    await phasePending(c);
    await c.check();
  } catch (e) {
    return { snaps: c.res.snaps, acked: c.res.acked, error: e instanceof Error ? e.message : String(e) };
  }
  return { snaps: c.res.snaps, acked: c.res.acked, error: c.soft[0] ?? null };
}
