/**
 * The catalog of entries: the entries open now, those the last COMMIT laid out lists as open
 * (`logged`, what the CATALOG opening each segment carries), those left unfinished by an earlier run,
 * and those closed since the last commit. It computes each COMMIT's entry list and the catalog's
 * size bound (FORMAT.md R7). It also numbers the epoch being built: one past the last COMMIT laid out.
 */
import { CpError } from '../errors.js';
import { MAX_CATALOG_BYTES, entrySize, type CatalogEntry } from '../format.js';
import type { RecoveryReport } from '../recovery/index.js';
import type { Entry } from './host.js';
import type { Overlay } from './overlay.js';

/** An entry as the last COMMIT laid out lists it. */
export interface LoggedEntry {
  position: number;
  /** The committed size; null for a read-only entry (never cut back) or a version 1 one. */
  size: number | null;
  /**
   * The epoch of the first COMMIT (or recovered catalog) that listed the entry open, as it stands
   * now. Direct appends need it listed by two commits, or since an applied epoch (WritePath.directStart;
   * a recovered entry's is the recovered epoch, which recovery applied: it may go direct at once).
   */
  since: number;
}

/** The catalog bytes of one open entry named `name` (its largest encoding). */
function openEntryBytes(name: string): number {
  return entrySize({ name, position: 0, state: 'open', size: 0 });
}

export class Catalog {
  /** The epoch being built: records are journaled with it; one past the last COMMIT laid out. */
  building: number;
  /** Open entries (name -> entry). */
  readonly open = new Map<string, Entry>();
  /** Open entries as of the last COMMIT laid out in the journal. */
  readonly logged = new Map<string, LoggedEntry>();
  /** Entries left unfinished by an earlier run, not reopened yet (name -> checkpointed position). */
  readonly unfinished = new Map<string, number>();
  /** The hooks' user data of each entry opened. */
  readonly userdata = new Map<string, unknown>();
  /** Entries closed (or whose file was unlinked or renamed away) since the last commit: name -> position then. */
  readonly closedSince = new Map<string, number>();
  /** measure() as of the last check, plus the entries opened since. */
  private bytes = 0;

  constructor(report: RecoveryReport) {
    this.building = report.epoch + 1;
    for (const e of report.entries) {
      this.logged.set(e.name, { position: e.position, size: e.size, since: report.epoch });
      this.unfinished.set(e.name, e.position);
    }
    this.bytes = this.measure();
  }

  /**
   * Count a name about to be opened against the catalog's bound: every open entry is in the
   * catalog that opens each journal segment, which must stay within MAX_CATALOG_BYTES (FORMAT.md R7).
   */
  admit(name: string): void {
    if (this.logged.has(name)) return;
    const add = openEntryBytes(name);
    if (this.bytes + add > MAX_CATALOG_BYTES) {
      throw new CpError('EINVAL', `too many open files: their names would take more than ${MAX_CATALOG_BYTES} bytes in the journal's catalog; close some first`);
    }
    this.bytes += add;
  }

  /** Catalog bytes of the logged entries and of the open ones not logged yet (an upper bound for admit's limit). */
  private measure(): number {
    let n = 0;
    for (const name of this.logged.keys()) n += openEntryBytes(name);
    for (const name of this.open.keys()) if (!this.logged.has(name)) n += openEntryBytes(name);
    return n;
  }

  /** The catalog as of the last COMMIT laid out, for the CATALOG record opening each segment (which the writer splits into parts: FORMAT.md R5). */
  snapshot(): { entries: CatalogEntry[]; epoch: number } {
    return { entries: [...this.logged].map(([name, l]) => ({ name, position: l.position, state: 'open' as const, size: l.size })), epoch: this.building - 1 };
  }

  /** The last handle of `e` closed at `position`: the entry ends, durably at the next commit. */
  closed(e: Entry, position: number): void {
    if (this.open.get(e.name) === e) this.open.delete(e.name);
    this.closedSince.set(e.name, position);
  }

  /** A name's unfinished entry ends when its file is unlinked or renamed away. */
  forget(name: string): void {
    this.unfinished.delete(name);
    if (this.logged.has(name)) this.closedSince.set(name, this.logged.get(name)!.position);
  }

  /**
   * The entry list of the next COMMIT: every entry whose position, size or state changed since the
   * last one. `positions`: the positions as of the check() call; `pendingOf`: a name's overlay.
   */
  deltas(positions: Map<Entry, number>, pendingOf: (name: string) => Overlay | undefined): CatalogEntry[] {
    const deltas: CatalogEntry[] = [];
    // Every open entry's COMMIT entry carries its committed size: recovery cuts the file back to
    // it (direct appends past it were never committed, FORMAT.md R11). Entries left open by an
    // earlier run and not reopened can still change size through writeFile.
    for (const e of this.open.values()) {
      const position = positions.get(e) ?? e.position;
      const l = this.logged.get(e.name);
      // A read-only entry carries no size: its file is never cut back (another program may append to it).
      const size = e.writable ? e.overlay.size : null;
      if (!l || l.position !== position || l.size !== size) deltas.push({ name: e.name, position, state: 'open', size });
    }
    for (const [n, l] of this.logged) {
      if (this.open.has(n) || this.closedSince.has(n)) continue;
      const ov = pendingOf(n);
      const size = ov && ov.exists ? ov.size : l.size;
      if (size !== l.size) deltas.push({ name: n, position: l.position, state: 'open', size });
    }
    for (const [n, position] of this.closedSince) {
      if (!this.open.has(n)) deltas.push({ name: n, position, state: 'closed', size: null });
    }
    return deltas;
  }

  /** The COMMIT of `epoch` listing `deltas` is laid out: the catalog moves to it, and the next epoch is built. */
  committed(deltas: CatalogEntry[], epoch: number): void {
    for (const d of deltas) {
      if (d.state === 'open') this.logged.set(d.name, { position: d.position, size: d.size, since: this.logged.get(d.name)?.since ?? epoch });
      else this.logged.delete(d.name);
    }
    this.bytes = this.measure();
    this.closedSince.clear();
    this.building++;
  }

  /** After a rollback reset: every logged entry not open is unfinished again. */
  resetUnfinished(): void {
    this.unfinished.clear();
    for (const [name, l] of this.logged) if (!this.open.has(name)) this.unfinished.set(name, l.position);
  }
}
