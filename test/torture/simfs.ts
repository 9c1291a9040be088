/**
 * A simulated in-memory POSIX file system behind cpfile's IO interface (lib/io.ts), and the model of
 * what such a file system may leave behind after a power loss.
 *
 * SimFS is an ordinary in-memory file system (inodes, directories, file descriptors) that records every
 * call, and in its trace every operation that matters for durability: data writes and truncates per
 * inode, fsync/fdatasync per inode, directory operations (create, mkdir, unlink, rename) and directory
 * fsyncs, plus marks the workload driver puts in (a check was issued, a check resolved).
 *
 * CrashModel replays such a trace from a base image and knows, at every point of it:
 *   - per file inode: the durable content (as of its last fsync/fdatasync) and the data operations
 *     issued since (writes and truncates), any subset of which may have reached the disk; a write may
 *     also be torn: only a prefix of it, cut at a 512-byte sector boundary of the file, persisted;
 *   - per directory: the durable entries (as of its last fsyncDir) and the directory operations since.
 *     A directory operation either happened or not (ext4-like metadata): never half a rename. A
 *     rename is durable only once both of its directories were fsynced after it. Operations on one
 *     name (or inside a directory created since) depend on each other: a later one is only chosen
 *     together with the earlier ones it builds on, and making one durable makes those durable too.
 * materialize(choice) builds the image of one crash state; randomChoice() draws a choice.
 */
import * as path from 'node:path';
import type { IO, OpenMode, OpenOptions, StatInfo } from '../../lib/io.js';
import { SparseFile } from './sparse.js';

export type Kind = 'file' | 'dir' | 'symlink';

export interface ImageNode {
  kind: Kind;
  data?: Buffer;
  entries?: Map<string, number>;
  /** symlinks: the link's target */
  target?: string;
  /** sparse files (see sparse.ts): logical size and the chunks above DENSE */
  size?: number;
  hi?: Map<number, Buffer>;
  /** files: opening for writing fails with EACCES */
  readonly?: boolean;
}

/** A whole file system: every inode reachable from the root. */
export interface Image {
  root: number;
  nextIno: number;
  nodes: Map<number, ImageNode>;
}

export type Mark = { kind: 'issue' | 'ack'; k: number } | { kind: 'note'; text: string }
  /**
   * Two-phase epochs: prepare() of check k called; it resolved; the coordinator recorded 'commit' for it (from
   * here on it must commit: as an ack of k); abort() called (presumed abort: nothing recorded); the
   * decision resolved (`sync`: a commit({ sync: true }), durable then).
   */
  | { kind: 'prepare' | 'prepared' | 'decide' | 'abort'; k: number; id: string }
  | { kind: 'decided'; k: number; id: string; sync: boolean };

/** What the marks up to a point of a trace say (CrashModel). */
export interface MarkState {
  acked: number;
  issued: number;
  /** prepare ids the coordinator recorded 'commit' for */
  decided?: Set<string>;
  /**
   * The prepares that recovery may find in doubt: called, and no durable point after their decision
   * since (the resolution of a commit({ sync: true }), of a check called after the decision, or of
   * a later prepare). Recovery may only ask about these; with none it must not call the resolver.
   */
  open?: OpenPrepare[];
  /** the id of the last prepare called, and where its epoch stands (for the counts) */
  prepId?: string | null;
  stage?: TwoPhaseStage;
}

export interface OpenPrepare {
  id: string;
  /** its check number (a check from this number on was called after its decision) */
  k: number;
  /** its decision was made (commit recorded, or abort called) */
  decisionMade: boolean;
}

/** Where the last prepared epoch stands at a point of a trace. */
export type TwoPhaseStage = 'none' | 'preparing' | 'prepared' | 'committing' | 'committing (sync: false)' | 'aborting' | 'committed (sync: false), no sync since' | 'aborted, no sync since' | 'settled';

export type TraceEv =
  | { t: 'write'; ino: number; pos: number; data: Buffer }
  | { t: 'trunc'; ino: number; len: number }
  | { t: 'fsync'; ino: number }
  | { t: 'link'; dir: number; name: string; ino: number; kind: Kind; target?: string }
  | { t: 'unlink'; dir: number; name: string; ino: number }
  | { t: 'rename'; fdir: number; fname: string; tdir: number; tname: string; ino: number }
  | { t: 'fsyncdir'; dir: number }
  | { t: 'mark'; m: Mark };

interface Node {
  id: number;
  kind: Kind;
  /** file content (files only) */
  file: SparseFile | null;
  entries: Map<string, number> | null;
  target: string | null;
  readonly: boolean;
}

interface Fd {
  ino: number;
  writable: boolean;
  path: string;
  /** the path the open resolved to (symlinks followed) */
  real: string;
}

export function fsError(code: string, syscall: string, p: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated ${syscall} '${p}'`), { code, syscall, path: p, errno: -1 });
}

const EMPTY = Buffer.alloc(0);

/** ext4's limits: a file name component of at most 255 bytes, a path of at most PATH_MAX - 1 bytes. */
export const NAME_MAX = 255;
export const PATH_MAX = 4096;
/** ext4 with 4 KiB blocks: files up to 16 TiB; writes and truncates past it fail with EFBIG. */
export const MAX_FILE_SIZE = 16 * 2 ** 40;

/** Opening with one of these (a mode string ending in NoFollow, or flags { nofollow: true }) refuses a symlink as the last component with ELOOP. */
function noFollow(mode: string, flags: unknown): boolean {
  if (mode.endsWith('NoFollow') || mode.endsWith('Nofollow')) return true;
  if (typeof flags === 'object' && flags !== null && ((flags as { nofollow?: unknown }).nofollow || (flags as OpenOptions).noFollow)) return true;
  return false;
}

export class SimFS implements IO {
  private nodes = new Map<number, Node>();
  private root: number;
  private nextIno: number;
  private fds = new Map<number, Fd>();
  private nextFd = 3;
  /** Durability-relevant events, in call order. */
  trace: TraceEv[] = [];
  /** Number of IO calls made (all kinds). */
  calls = 0;
  /** Mutations attempted outside `allowedRoot`, or into its .cpfile through another name. */
  violations: string[] = [];
  /** When set, every mutation must stay inside this directory. */
  allowedRoot: string | null = null;
  /** The largest file size this file system accepts (ext4's, by default): writes and truncates past it fail with EFBIG. */
  fileSizeLimit = MAX_FILE_SIZE;
  /** Open file descriptors allowed at once (a low `ulimit -n`): open fails with EMFILE past it. */
  fdLimit = Infinity;
  /** Writes or truncates that reached past the dense region (sparse files exist: no crash model). */
  sparseWrites = 0;
  /** A hard link was made (linkSync): stat then counts a file's names. */
  private linked = false;

  /** `adopt`: take the image's buffers instead of copying them (the caller gives them up). */
  constructor(img?: Image, adopt = false) {
    if (!img) {
      this.root = 1;
      this.nextIno = 2;
      this.nodes.set(1, this.mk(1, 'dir'));
      return;
    }
    this.root = img.root;
    this.nextIno = img.nextIno;
    for (const [id, n] of img.nodes) {
      const node = this.mk(id, n.kind);
      if (n.kind === 'dir') node.entries = new Map(n.entries);
      else if (n.kind === 'symlink') node.target = n.target ?? '';
      else {
        const d = n.data ?? EMPTY;
        const hi = n.hi ? (adopt ? n.hi : new Map([...n.hi].map(([i, c]) => [i, Buffer.from(c)]))) : null;
        node.file = new SparseFile(adopt ? d : Buffer.from(d), n.size ?? d.length, hi);
        node.readonly = n.readonly ?? false;
      }
      this.nodes.set(id, node);
    }
  }

  private mk(id: number, kind: Kind): Node {
    return { id, kind, file: kind === 'file' ? new SparseFile() : null, entries: kind === 'dir' ? new Map() : null, target: null, readonly: false };
  }

  // ------------------------------------------------------------------------------------------
  // helpers

  /** The current (volatile) view as an image: what a process crash (not a power loss) leaves. */
  image(): Image {
    const nodes = new Map<number, ImageNode>();
    const visit = (id: number): void => {
      if (nodes.has(id)) return;
      const n = this.nodes.get(id)!;
      if (n.kind === 'dir') {
        nodes.set(id, { kind: 'dir', entries: new Map(n.entries!) });
        for (const c of n.entries!.values()) visit(c);
      } else if (n.kind === 'symlink') {
        nodes.set(id, { kind: 'symlink', target: n.target! });
      } else {
        const f = n.file!;
        const node: ImageNode = f.sparse
          ? { kind: 'file', ...(() => { const c = f.clone(); return { data: c.data, size: c.size, hi: c.hi ?? undefined }; })() }
          : { kind: 'file', data: f.denseCopy() };
        if (n.readonly) node.readonly = true;
        nodes.set(id, node);
      }
    };
    visit(this.root);
    return { root: this.root, nextIno: this.nextIno, nodes };
  }

  mark(m: Mark): void {
    this.trace.push({ t: 'mark', m });
  }

  /**
   * Components of an absolute path, lexically normalised, as the kernel sees them: names are UTF-8
   * bytes (a lone surrogate becomes U+FFFD, as node's string-to-path conversion does), a component
   * longer than NAME_MAX bytes or a path of PATH_MAX bytes or more is ENAMETOOLONG.
   */
  private parts(p: string): string[] {
    if (!p.startsWith('/')) throw fsError('EINVAL', 'resolve', p);
    if (Buffer.byteLength(p) >= PATH_MAX) throw fsError('ENAMETOOLONG', 'resolve', p);
    const out = path.posix.normalize(p).split('/').filter((x) => x.length > 0).map((x) => Buffer.from(x, 'utf8').toString('utf8'));
    for (const x of out) if (Buffer.byteLength(x) > NAME_MAX) throw fsError('ENAMETOOLONG', 'resolve', p);
    return out;
  }

  /** Walk a path, following symlinks (the last component only with followLast); its real path too. */
  private resolve(p: string, syscall: string, followLast: boolean): { node: Node; real: string } {
    const stack: Node[] = [this.nodes.get(this.root)!];
    const names: string[] = [];
    const queue = this.parts(p);
    let hops = 0;
    while (queue.length) {
      const part = queue.shift()!;
      if (part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) {
          stack.pop();
          names.pop();
        }
        continue;
      }
      const cur = stack[stack.length - 1];
      if (cur.kind !== 'dir') throw fsError('ENOTDIR', syscall, p);
      const id = cur.entries!.get(part);
      if (id === undefined) throw fsError('ENOENT', syscall, p);
      const n = this.nodes.get(id)!;
      if (n.kind === 'symlink' && (queue.length > 0 || followLast)) {
        if (++hops > 40) throw fsError('ELOOP', syscall, p);
        const t = n.target!;
        if (t.startsWith('/')) {
          stack.length = 1;
          names.length = 0;
        }
        queue.unshift(...t.split('/').filter((x) => x.length > 0));
        continue;
      }
      stack.push(n);
      names.push(part);
    }
    return { node: stack[stack.length - 1], real: '/' + names.join('/') };
  }

  private lookup(p: string, syscall: string): Node {
    return this.resolve(p, syscall, true).node;
  }

  private tryLookup(p: string): Node | null {
    try {
      return this.lookup(p, 'lookup');
    } catch {
      return null;
    }
  }

  /** The directory holding the last component of `p` (symlinks before it followed), and its real path. */
  private parentOf(p: string, syscall: string): { dir: Node; name: string; real: string } {
    const parts = this.parts(p);
    if (parts.length === 0) throw fsError('EBUSY', syscall, p);
    const name = parts.pop()!;
    const r = this.resolve('/' + parts.join('/'), syscall, true);
    if (r.node.kind !== 'dir') throw fsError('ENOTDIR', syscall, p);
    return { dir: r.node, name, real: r.real === '/' ? `/${name}` : `${r.real}/${name}` };
  }

  /**
   * A mutation of `p`, which resolved to `real`: inside allowedRoot, and inside its .cpfile only when
   * the name given was (a store name that reaches the metadata directory is a violation).
   */
  private guard(p: string, syscall: string, real = p): void {
    if (this.allowedRoot === null) return;
    const root = this.allowedRoot;
    const inside = (x: string): boolean => x === root || x.startsWith(root + '/');
    const norm = path.posix.normalize(p);
    if (!inside(norm) || !inside(real)) {
      this.violations.push(`${syscall} outside the store: ${p}${real !== norm ? ` (resolves to ${real})` : ''}`);
      return;
    }
    const meta = root + '/.cpfile';
    const inMeta = (x: string): boolean => x === meta || x.startsWith(meta + '/');
    if (inMeta(real) && !inMeta(norm)) this.violations.push(`${syscall} of a store name reached .cpfile: ${p} (resolves to ${real})`);
  }

  private fd(fd: number, syscall: string): Fd {
    const f = this.fds.get(fd);
    if (!f) throw fsError('EBADF', syscall, String(fd));
    return f;
  }

  /** The names of inode `id` (1 unless a hard link was ever made: then counted over every directory). */
  private linksTo(id: number): number {
    if (!this.linked) return 1;
    let n = 0;
    for (const d of this.nodes.values()) if (d.kind === 'dir') for (const ino of d.entries!.values()) if (ino === id) n++;
    return n;
  }

  private newNode(kind: Kind): Node {
    const n = this.mk(this.nextIno++, kind);
    this.nodes.set(n.id, n);
    return n;
  }

  private info(n: Node): StatInfo {
    return {
      size: n.kind === 'file' ? n.file!.size : n.kind === 'symlink' ? Buffer.byteLength(n.target!) : 4096,
      isFile: n.kind === 'file', isDirectory: n.kind === 'dir', isSymbolicLink: n.kind === 'symlink', nlink: n.kind === 'dir' ? 2 : this.linksTo(n.id),
    };
  }

  /** Create a directory synchronously, outside the trace (for building base images). */
  mkdirSync(p: string): void {
    const { dir, name } = this.parentOf(p, 'mkdir');
    if (dir.entries!.has(name)) return;
    const n = this.newNode('dir');
    dir.entries!.set(name, n.id);
  }

  /** Content of a file (null when missing), synchronously. */
  readFileSync(p: string): Buffer | null {
    const n = this.tryLookup(p);
    if (!n || n.kind !== 'file') return null;
    return n.file!.flat();
  }

  /**
   * Every regular file under `dir` ('/'-separated names relative to it), skipping `skip` at the top;
   * symlinks are not followed nor listed. A sparse file's content is a digest marker (sparse.ts).
   */
  tree(dir: string, skip = '.cpfile'): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    const start = this.tryLookup(dir);
    if (!start || start.kind !== 'dir') return out;
    const walk = (n: Node, prefix: string): void => {
      for (const [name, id] of n.entries!) {
        if (prefix === '' && name === skip) continue;
        const c = this.nodes.get(id)!;
        if (c.kind === 'dir') walk(c, `${prefix}${name}/`);
        else if (c.kind === 'file') out.set(`${prefix}${name}`, c.file!.flat());
      }
    };
    walk(start, '');
    return out;
  }

  /** Replace a file's whole content in place (fuzzing); not traced. */
  writeFileSync(p: string, data: Buffer): void {
    const n = this.lookup(p, 'write');
    if (n.kind !== 'file') throw fsError('EISDIR', 'write', p);
    n.file = new SparseFile(Buffer.from(data));
  }

  listSync(p: string): string[] {
    const n = this.lookup(p, 'readdir');
    if (n.kind !== 'dir') throw fsError('ENOTDIR', 'readdir', p);
    return [...n.entries!.keys()];
  }

  openFds(): number {
    return this.fds.size;
  }

  // ------------------------------------------------------------------------------------------
  // another program, behind the store's back: made durable at once (traced, then a directory fsync)

  /** `ln -s target p` */
  symlinkSync(target: string, p: string): void {
    const { dir, name } = this.parentOf(p, 'symlink');
    if (dir.entries!.has(name)) throw fsError('EEXIST', 'symlink', p);
    const n = this.newNode('symlink');
    n.target = target;
    dir.entries!.set(name, n.id);
    this.trace.push({ t: 'link', dir: dir.id, name, ino: n.id, kind: 'symlink', target });
    this.trace.push({ t: 'fsyncdir', dir: dir.id });
  }

  /** `ln existing p` (a hard link to a file) */
  linkSync(existing: string, p: string): void {
    const src = this.resolve(existing, 'link', false).node;
    if (src.kind !== 'file') throw fsError('EPERM', 'link', existing);
    const { dir, name } = this.parentOf(p, 'link');
    if (dir.entries!.has(name)) throw fsError('EEXIST', 'link', p);
    dir.entries!.set(name, src.id);
    this.linked = true;
    this.trace.push({ t: 'link', dir: dir.id, name, ino: src.id, kind: 'file' });
    this.trace.push({ t: 'fsyncdir', dir: dir.id });
  }

  /** `rm p` (a file or a symlink) or `rmdir p` (an empty directory) */
  removeSync(p: string): void {
    const { dir, name } = this.parentOf(p, 'unlink');
    const id = dir.entries!.get(name);
    if (id === undefined) throw fsError('ENOENT', 'unlink', p);
    const n = this.nodes.get(id)!;
    if (n.kind === 'dir' && n.entries!.size) throw fsError('ENOTEMPTY', 'rmdir', p);
    dir.entries!.delete(name);
    this.trace.push({ t: 'unlink', dir: dir.id, name, ino: id });
    this.trace.push({ t: 'fsyncdir', dir: dir.id });
  }

  /** `mv a b` (b must not exist) */
  renameSync(a: string, b: string): void {
    const x = this.parentOf(a, 'rename');
    const id = x.dir.entries!.get(x.name);
    if (id === undefined) throw fsError('ENOENT', 'rename', a);
    const y = this.parentOf(b, 'rename');
    if (y.dir.entries!.has(y.name)) throw fsError('EEXIST', 'rename', b);
    x.dir.entries!.delete(x.name);
    y.dir.entries!.set(y.name, id);
    this.trace.push({ t: 'rename', fdir: x.dir.id, fname: x.name, tdir: y.dir.id, tname: y.name, ino: id });
    this.trace.push({ t: 'fsyncdir', dir: x.dir.id });
    this.trace.push({ t: 'fsyncdir', dir: y.dir.id });
  }

  /** A file with `data` (created, or replaced in place), durable at once; made with mkdir -p. */
  putFileSync(p: string, data: Buffer): void {
    const parts = this.parts(p);
    for (let i = 1; i < parts.length; i++) this.mkdirSync('/' + parts.slice(0, i).join('/'));
    const { dir, name } = this.parentOf(p, 'open');
    let id = dir.entries!.get(name);
    if (id === undefined) {
      const n = this.newNode('file');
      dir.entries!.set(name, n.id);
      id = n.id;
      this.trace.push({ t: 'link', dir: dir.id, name, ino: id, kind: 'file' });
      this.trace.push({ t: 'fsyncdir', dir: dir.id });
    }
    const n = this.nodes.get(id)!;
    if (n.kind !== 'file') throw fsError('EISDIR', 'open', p);
    n.file = new SparseFile(Buffer.from(data));
    this.trace.push({ t: 'trunc', ino: id, len: 0 });
    if (data.length) this.trace.push({ t: 'write', ino: id, pos: 0, data: Buffer.from(data) });
    this.trace.push({ t: 'fsync', ino: id });
  }

  /** `chmod a-w p` (readonly) or `chmod u+w p`: opening it for writing fails with EACCES. */
  setReadonlySync(p: string, readonly: boolean): void {
    const n = this.lookup(p, 'chmod');
    n.readonly = readonly;
  }

  /** What kind of node `p` is, not following a last symlink (null: missing). */
  kindSync(p: string): Kind | null {
    try {
      return this.resolve(p, 'lstat', false).node.kind;
    } catch {
      return null;
    }
  }

  /**
   * Re-issue a traced event (by inode ids) and trace it again. Replaying the operations pending at a
   * point on top of the durable state there rebuilds what a *process* crash leaves: the same files,
   * with the same operations still waiting to become durable.
   */
  replay(ev: TraceEv): void {
    const node = (id: number, kind: Kind): Node => {
      let n = this.nodes.get(id);
      if (!n) {
        n = this.mk(id, kind);
        this.nodes.set(id, n);
        if (id >= this.nextIno) this.nextIno = id + 1;
      }
      return n;
    };
    switch (ev.t) {
      case 'write':
        node(ev.ino, 'file').file!.write(ev.pos, ev.data);
        break;
      case 'trunc':
        node(ev.ino, 'file').file!.truncate(ev.len);
        break;
      case 'link': {
        const n = node(ev.ino, ev.kind);
        if (ev.kind === 'symlink') n.target = ev.target ?? '';
        node(ev.dir, 'dir').entries!.set(ev.name, n.id);
        break;
      }
      case 'unlink':
        node(ev.dir, 'dir').entries!.delete(ev.name);
        break;
      case 'rename':
        node(ev.fdir, 'dir').entries!.delete(ev.fname);
        node(ev.tdir, 'dir').entries!.set(ev.tname, ev.ino);
        break;
      default:
        break;
    }
    this.trace.push(ev);
  }

  // ------------------------------------------------------------------------------------------
  // IO

  async open(p: string, mode: OpenMode, flags?: OpenOptions | unknown): Promise<number> {
    this.calls++;
    return this.openAt(p, String(mode), flags, 0);
  }

  private openAt(p: string, mode: string, flags: unknown, hops: number): number {
    const base = mode.replace(/No[Ff]ollow$/, '');
    const { dir, name, real } = this.parentOf(p, 'open');
    const id = dir.entries!.get(name);
    let n: Node;
    let realPath = real;
    if (id !== undefined) {
      n = this.nodes.get(id)!;
      if (n.kind === 'symlink') {
        if (noFollow(mode, flags)) throw fsError('ELOOP', 'open', p);
        if (hops >= 40) throw fsError('ELOOP', 'open', p);
        if (base === 'createExcl') throw fsError('EEXIST', 'open', p);
        const t = n.target!;
        const dirReal = real.slice(0, real.lastIndexOf('/')) || '/';
        const fd = this.openAt(t.startsWith('/') ? t : path.posix.join(dirReal, t), mode, flags, hops + 1);
        // the guard saw the link's target; remember the name the caller gave
        this.fds.get(fd)!.path = p;
        return fd;
      }
      if (base === 'createExcl') throw fsError('EEXIST', 'open', p);
      if (n.kind === 'dir' && base !== 'read') throw fsError('EISDIR', 'open', p);
      if (n.readonly && base !== 'read') throw fsError('EACCES', 'open', p);
    } else {
      if (base === 'read' || base === 'readwrite') throw fsError('ENOENT', 'open', p);
      this.guard(p, 'open(create)', real);
      n = this.newNode('file');
      dir.entries!.set(name, n.id);
      this.trace.push({ t: 'link', dir: dir.id, name, ino: n.id, kind: 'file' });
      realPath = real;
    }
    if (this.fds.size >= this.fdLimit) throw fsError('EMFILE', 'open', p);
    const fd = this.nextFd++;
    this.fds.set(fd, { ino: n.id, writable: base !== 'read', path: p, real: realPath });
    return fd;
  }

  async close(fd: number): Promise<void> {
    this.calls++;
    this.fd(fd, 'close');
    this.fds.delete(fd);
  }

  async read(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number> {
    this.calls++;
    const f = this.fd(fd, 'read');
    const n = this.nodes.get(f.ino)!;
    if (n.kind === 'dir') throw fsError('EISDIR', 'read', f.path);
    if (!Number.isSafeInteger(position) || position < 0) throw fsError('EINVAL', 'read', f.path);
    return n.file!.read(position, buf, off, len);
  }

  async write(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number> {
    this.calls++;
    const f = this.fd(fd, 'write');
    if (!f.writable) throw fsError('EBADF', 'write', f.path);
    this.guard(f.path, 'write', f.real);
    const n = this.nodes.get(f.ino)!;
    if (len <= 0) return 0;
    if (!Number.isSafeInteger(position) || position < 0) throw fsError('EINVAL', 'write', f.path);
    if (position + len > this.fileSizeLimit) throw fsError('EFBIG', 'write', f.path);
    const src = buf.subarray(off, off + len);
    n.file!.write(position, src);
    if (n.file!.sparse) this.sparseWrites++;
    this.trace.push({ t: 'write', ino: n.id, pos: position, data: Buffer.from(src) });
    return len;
  }

  private syncFd(fd: number, syscall: string): void {
    const f = this.fd(fd, syscall);
    const n = this.nodes.get(f.ino)!;
    if (n.kind === 'dir') this.trace.push({ t: 'fsyncdir', dir: n.id });
    else this.trace.push({ t: 'fsync', ino: n.id });
  }

  async fsync(fd: number): Promise<void> {
    this.calls++;
    this.syncFd(fd, 'fsync');
  }

  async fdatasync(fd: number): Promise<void> {
    this.calls++;
    this.syncFd(fd, 'fdatasync');
  }

  async ftruncate(fd: number, len: number): Promise<void> {
    this.calls++;
    const f = this.fd(fd, 'ftruncate');
    if (!f.writable) throw fsError('EINVAL', 'ftruncate', f.path);
    this.guard(f.path, 'ftruncate', f.real);
    if (!Number.isSafeInteger(len) || len < 0) throw fsError('EINVAL', 'ftruncate', f.path);
    if (len > this.fileSizeLimit) throw fsError('EFBIG', 'ftruncate', f.path);
    const n = this.nodes.get(f.ino)!;
    n.file!.truncate(len);
    if (n.file!.sparse) this.sparseWrites++;
    this.trace.push({ t: 'trunc', ino: n.id, len });
  }

  async fstat(fd: number): Promise<StatInfo> {
    this.calls++;
    return this.info(this.nodes.get(this.fd(fd, 'fstat').ino)!);
  }

  async stat(p: string): Promise<StatInfo> {
    this.calls++;
    return this.info(this.lookup(p, 'stat'));
  }

  async lstat(p: string): Promise<StatInfo> {
    this.calls++;
    return this.info(this.resolve(p, 'lstat', false).node);
  }

  async rename(from: string, to: string): Promise<void> {
    this.calls++;
    const a = this.parentOf(from, 'rename');
    const b = this.parentOf(to, 'rename');
    this.guard(from, 'rename', a.real);
    this.guard(to, 'rename', b.real);
    const id = a.dir.entries!.get(a.name);
    if (id === undefined) throw fsError('ENOENT', 'rename', from);
    const moving = this.nodes.get(id)!;
    const old = b.dir.entries!.get(b.name);
    if (old === id) return;
    if (old !== undefined) {
      const o = this.nodes.get(old)!;
      if (o.kind === 'dir' && moving.kind !== 'dir') throw fsError('EISDIR', 'rename', to);
      if (o.kind !== 'dir' && moving.kind === 'dir') throw fsError('ENOTDIR', 'rename', to);
      if (o.kind === 'dir' && o.entries!.size > 0) throw fsError('ENOTEMPTY', 'rename', to);
    }
    a.dir.entries!.delete(a.name);
    b.dir.entries!.set(b.name, id);
    this.trace.push({ t: 'rename', fdir: a.dir.id, fname: a.name, tdir: b.dir.id, tname: b.name, ino: id });
  }

  async unlink(p: string): Promise<void> {
    this.calls++;
    const { dir, name, real } = this.parentOf(p, 'unlink');
    this.guard(p, 'unlink', real);
    const id = dir.entries!.get(name);
    if (id === undefined) throw fsError('ENOENT', 'unlink', p);
    if (this.nodes.get(id)!.kind === 'dir') throw fsError('EISDIR', 'unlink', p);
    dir.entries!.delete(name);
    this.trace.push({ t: 'unlink', dir: dir.id, name, ino: id });
  }

  async mkdir(p: string): Promise<boolean> {
    this.calls++;
    const { dir, name, real } = this.parentOf(p, 'mkdir');
    if (dir.entries!.has(name)) return false;
    this.guard(p, 'mkdir', real);
    const n = this.newNode('dir');
    dir.entries!.set(name, n.id);
    this.trace.push({ t: 'link', dir: dir.id, name, ino: n.id, kind: 'dir' });
    return true;
  }

  async readdir(p: string): Promise<string[]> {
    this.calls++;
    const n = this.lookup(p, 'readdir');
    if (n.kind !== 'dir') throw fsError('ENOTDIR', 'readdir', p);
    return [...n.entries!.keys()];
  }

  async fsyncDir(p: string): Promise<void> {
    this.calls++;
    const n = this.lookup(p, 'open');
    if (n.kind !== 'dir') throw fsError('ENOTDIR', 'fsyncDir', p);
    this.trace.push({ t: 'fsyncdir', dir: n.id });
  }

  async realpath(p: string): Promise<string> {
    this.calls++;
    return this.resolve(p, 'realpath', true).real;
  }

  /** The simulator has no permissions: every existing name may be changed. */
  async access(p: string): Promise<void> {
    this.calls++;
    this.lookup(p, 'access');
  }

  async rmdir(p: string): Promise<void> {
    this.calls++;
    this.guard(p, 'rmdir');
    const { dir, name } = this.parentOf(p, 'rmdir');
    const id = dir.entries!.get(name);
    if (id === undefined) throw fsError('ENOENT', 'rmdir', p);
    const n = this.nodes.get(id)!;
    if (n.kind !== 'dir') throw fsError('ENOTDIR', 'rmdir', p);
    if (n.entries!.size > 0) throw fsError('ENOTEMPTY', 'rmdir', p);
    dir.entries!.delete(name);
    // The crash model removes a directory entry the same way for files and (empty) directories.
    this.trace.push({ t: 'unlink', dir: dir.id, name, ino: id });
  }

  /** The configured limit (no probe: a simulated file is a buffer, not sparse). */
  async maxFileSize(_dir: string): Promise<number> {
    this.calls++;
    return this.fileSizeLimit;
  }
}

// ---------------------------------------------------------------------------------------------
// the power-loss model

interface PendData {
  id: number;
  ev: Extract<TraceEv, { t: 'write' } | { t: 'trunc' }>;
}

interface PendDir {
  id: number;
  ev: Extract<TraceEv, { t: 'link' } | { t: 'unlink' } | { t: 'rename' }>;
  provides: string[];
  needs: string[];
  /** ids of earlier pending directory operations this one builds on */
  deps: number[];
  /** directories still to be fsynced before this operation is durable */
  unsynced: Set<number>;
}

/** Which pending operations reached the disk in one crash state. */
export interface Choice {
  /** trace id of a pending data op -> bytes of it that persisted (Infinity: all) */
  data: Map<number, number>;
  /** trace ids of pending directory operations that happened (closed under dependencies) */
  dir: Set<number>;
  /** a short description, unique per distinct state at one model version */
  key: string;
}

export type ChoiceMode = 'durable' | 'all' | 'random' | 'ordered';

export const SECTOR = 512;

function applyData(buf: Buffer, ev: PendData['ev'], persisted = Infinity): Buffer {
  if (ev.t === 'trunc') {
    if (ev.len === buf.length) return buf;
    const nb = Buffer.alloc(ev.len);
    buf.copy(nb, 0, 0, Math.min(ev.len, buf.length));
    return nb;
  }
  const n = Math.min(ev.data.length, persisted);
  if (n <= 0) return buf;
  let out = buf;
  if (ev.pos + n > buf.length) {
    out = Buffer.alloc(ev.pos + n);
    buf.copy(out, 0);
  }
  ev.data.copy(out, ev.pos, 0, n);
  return out;
}

function dirKeys(ev: PendDir['ev']): { provides: string[]; needs: string[]; dirs: number[] } {
  switch (ev.t) {
    case 'link': {
      const e = `e:${ev.dir}/${ev.name}`;
      return { provides: ev.kind === 'dir' ? [e, `d:${ev.ino}`] : [e], needs: [e, `d:${ev.dir}`], dirs: [ev.dir] };
    }
    case 'unlink': {
      const e = `e:${ev.dir}/${ev.name}`;
      return { provides: [e], needs: [e, `d:${ev.dir}`], dirs: [ev.dir] };
    }
    case 'rename': {
      const a = `e:${ev.fdir}/${ev.fname}`;
      const b = `e:${ev.tdir}/${ev.tname}`;
      return { provides: [a, b], needs: [a, b, `d:${ev.fdir}`, `d:${ev.tdir}`], dirs: [ev.fdir, ev.tdir] };
    }
  }
}

function applyDir(dirs: Map<number, Map<string, number>>, ev: PendDir['ev']): void {
  const get = (d: number): Map<string, number> => {
    let m = dirs.get(d);
    if (!m) {
      m = new Map();
      dirs.set(d, m);
    }
    return m;
  };
  switch (ev.t) {
    case 'link':
      get(ev.dir).set(ev.name, ev.ino);
      if (ev.kind === 'dir') get(ev.ino);
      break;
    case 'unlink':
      get(ev.dir).delete(ev.name);
      break;
    case 'rename':
      get(ev.fdir).delete(ev.fname);
      get(ev.tdir).set(ev.tname, ev.ino);
      break;
  }
}

export interface Rand {
  next(): number;
  int(n: number): number;
  chance(p: number): boolean;
}

/**
 * Durable state of a traced run, advanced one trace event at a time. After `step()` has processed
 * events [0, pos), `materialize()` gives crash states at that point.
 */
export class CrashModel {
  pos = 0;
  /** Bumped whenever the durable state changes. */
  version = 0;
  acked = 0;
  issued = 0;
  /** two-phase marks (MarkState) */
  decided = new Set<string>();
  /** MarkState.open */
  open: OpenPrepare[] = [];
  prepId: string | null = null;
  stage: TwoPhaseStage = 'none';
  private root: number;
  private nextIno: number;
  private kinds = new Map<number, Kind>();
  private files = new Map<number, Buffer>();
  private targets = new Map<number, string>();
  private dirs = new Map<number, Map<string, number>>();
  private pendData = new Map<number, PendData[]>();
  private pendDir: PendDir[] = [];
  /** inode -> its path when last linked (for explanations) */
  private names = new Map<number, string>();

  constructor(base: Image, private trace: TraceEv[], marksFrom?: MarkState) {
    this.root = base.root;
    this.nextIno = base.nextIno;
    for (const [id, n] of base.nodes) {
      this.kinds.set(id, n.kind);
      if (n.kind === 'dir') this.dirs.set(id, new Map(n.entries));
      else if (n.kind === 'symlink') this.targets.set(id, n.target ?? '');
      else this.files.set(id, n.data ?? EMPTY);
    }
    const walk = (id: number, p: string): void => {
      this.names.set(id, p || '/');
      const n = base.nodes.get(id);
      if (n?.kind === 'dir') for (const [name, c] of n.entries!) walk(c, `${p}/${name}`);
    };
    walk(base.root, '');
    if (marksFrom) {
      this.acked = marksFrom.acked;
      this.issued = marksFrom.issued;
      if (marksFrom.decided) this.decided = new Set(marksFrom.decided);
      this.open = (marksFrom.open ?? []).map((p) => ({ ...p }));
      this.prepId = marksFrom.prepId ?? null;
      this.stage = marksFrom.stage ?? 'none';
    }
  }

  get done(): boolean {
    return this.pos >= this.trace.length;
  }

  /** What the marks so far say (for a model of a later trace that continues from here). */
  markState(): MarkState {
    return { acked: this.acked, issued: this.issued, decided: new Set(this.decided), open: this.open.map((p) => ({ ...p })), prepId: this.prepId, stage: this.stage };
  }

  /** The next event, if it is a mark (without processing it). */
  peekMark(): Mark | null {
    const ev = this.trace[this.pos];
    return ev && ev.t === 'mark' ? ev.m : null;
  }

  get pendingCount(): number {
    let n = this.pendDir.length;
    for (const l of this.pendData.values()) n += l.length;
    return n;
  }

  /** Process one trace event; returns it. */
  step(): TraceEv {
    const id = this.pos;
    const ev = this.trace[this.pos++];
    switch (ev.t) {
      case 'mark': {
        const m = ev.m;
        const mine = (id: string): OpenPrepare | undefined => this.open.find((p) => p.id === id);
        if (m.kind === 'ack') {
          this.acked = Math.max(this.acked, m.k);
          this.open = this.open.filter((p) => !(p.decisionMade && m.k >= p.k));
          if (this.open.length === 0 && this.stage !== 'none') this.stage = 'settled';
        }
        if (m.kind === 'issue') this.issued = Math.max(this.issued, m.k);
        if (m.kind === 'prepare') {
          this.open.push({ id: m.id, k: m.k, decisionMade: false });
          this.prepId = m.id;
          this.stage = 'preparing';
        }
        if (m.kind === 'prepared') {
          // its PREPARE is durable, and so is every decision before it
          this.open = this.open.filter((p) => p.id === m.id);
          this.stage = 'prepared';
        }
        if (m.kind === 'decide') {
          this.decided.add(m.id);
          this.acked = Math.max(this.acked, m.k);
          this.issued = Math.max(this.issued, m.k);
          const p = mine(m.id);
          if (p) p.decisionMade = true;
          this.stage = 'committing';
        }
        if (m.kind === 'abort') {
          const p = mine(m.id);
          if (p) p.decisionMade = true;
          this.stage = 'aborting';
        }
        if (m.kind === 'decided') {
          if (m.sync && this.decided.has(m.id)) {
            this.open = [];
            this.stage = 'settled';
          } else {
            this.stage = this.decided.has(m.id) ? 'committed (sync: false), no sync since' : 'aborted, no sync since';
          }
        }
        break;
      }
      case 'write':
      case 'trunc': {
        if (!this.kinds.has(ev.ino)) {
          this.kinds.set(ev.ino, 'file');
          this.files.set(ev.ino, EMPTY);
        }
        let l = this.pendData.get(ev.ino);
        if (!l) this.pendData.set(ev.ino, (l = []));
        l.push({ id, ev });
        break;
      }
      case 'fsync': {
        const l = this.pendData.get(ev.ino);
        if (l && l.length) {
          let b = this.files.get(ev.ino) ?? EMPTY;
          for (const p of l) b = applyData(b === this.files.get(ev.ino) ? Buffer.from(b) : b, p.ev);
          this.files.set(ev.ino, b);
          this.pendData.delete(ev.ino);
          this.version++;
        }
        break;
      }
      case 'link':
      case 'unlink':
      case 'rename': {
        if (ev.t === 'link') this.names.set(ev.ino, `${this.nameOf(ev.dir)}/${ev.name}`);
        if (ev.t === 'rename') this.names.set(ev.ino, `${this.nameOf(ev.tdir)}/${ev.tname}`);
        if (ev.t === 'link' && !this.kinds.has(ev.ino)) {
          this.kinds.set(ev.ino, ev.kind);
          if (ev.kind === 'dir') this.dirs.set(ev.ino, new Map());
          else if (ev.kind === 'symlink') this.targets.set(ev.ino, ev.target ?? '');
          else this.files.set(ev.ino, EMPTY);
        }
        const k = dirKeys(ev);
        const deps: number[] = [];
        for (const p of this.pendDir) if (p.provides.some((x) => k.needs.includes(x))) deps.push(p.id);
        this.pendDir.push({ id, ev, provides: k.provides, needs: k.needs, deps, unsynced: new Set(k.dirs) });
        break;
      }
      case 'fsyncdir': {
        const durable = new Set<number>();
        for (const p of this.pendDir) {
          if (!p.unsynced.delete(ev.dir)) continue;
          if (p.unsynced.size === 0) this.closure(p.id, durable);
        }
        if (durable.size) {
          for (const p of this.pendDir) if (durable.has(p.id)) applyDir(this.dirs, p.ev);
          this.pendDir = this.pendDir.filter((p) => !durable.has(p.id));
          this.version++;
        }
        break;
      }
    }
    return ev;
  }

  private nameOf(ino: number): string {
    const n = this.names.get(ino);
    return n === '/' ? '' : n ?? `#${ino}`;
  }

  /** The pending operations at this point, each marked persisted, torn or lost in `choice`. */
  explain(choice: Choice, max = 14): string {
    const lines: { id: number; s: string }[] = [];
    for (const [ino, l] of this.pendData) {
      for (const d of l) {
        const n = choice.data.get(d.id);
        const what = d.ev.t === 'write' ? `write ${d.ev.data.length}B at ${d.ev.pos}` : `truncate to ${d.ev.len}`;
        const fate = n === undefined ? 'lost' : n === Infinity ? 'persisted' : `torn: first ${n}B persisted`;
        lines.push({ id: d.id, s: `#${d.id} ${what} of ${this.nameOf(ino)}: ${fate}` });
      }
    }
    for (const p of this.pendDir) {
      const ev = p.ev;
      const what = ev.t === 'link' ? `${ev.kind === 'dir' ? 'mkdir' : ev.kind === 'symlink' ? `symlink (-> ${ev.target})` : 'create'} ${this.nameOf(ev.dir)}/${ev.name}`
        : ev.t === 'unlink' ? `unlink ${this.nameOf(ev.dir)}/${ev.name}` : `rename ${this.nameOf(ev.fdir)}/${ev.fname} -> ${this.nameOf(ev.tdir)}/${ev.tname}`;
      lines.push({ id: p.id, s: `#${p.id} ${what}: ${choice.dir.has(p.id) ? 'happened' : 'lost'}` });
    }
    lines.sort((a, b) => a.id - b.id);
    const shown = lines.length > max ? [...lines.slice(0, 4), { id: -1, s: `... ${lines.length - max + 1} more` }, ...lines.slice(-(max - 5))] : lines;
    return shown.length ? `pending since the last syncs: ${shown.map((l) => l.s).join('; ')}` : 'nothing pending: the durable state';
  }

  /** Add `id` and every pending directory operation it depends on (transitively) to `into`. */
  private closure(id: number, into: Set<number>): void {
    if (into.has(id)) return;
    into.add(id);
    const p = this.pendDir.find((x) => x.id === id);
    if (p) for (const d of p.deps) this.closure(d, into);
  }

  /** Draw which pending operations reached the disk. */
  randomChoice(rng: Rand, mode: ChoiceMode, tearRate = 0.35): Choice {
    const data = new Map<number, number>();
    const dir = new Set<number>();
    const ordered: ({ id: number; d: PendData } | { id: number; p: PendDir })[] = [];
    if (mode === 'all') {
      for (const l of this.pendData.values()) for (const d of l) data.set(d.id, Infinity);
      for (const p of this.pendDir) dir.add(p.id);
    } else if (mode === 'random') {
      const pr = [0.15, 0.5, 0.85][rng.int(3)];
      for (const l of this.pendData.values()) {
        for (const d of l) {
          if (!rng.chance(pr)) continue;
          data.set(d.id, this.tear(rng, d, tearRate));
        }
      }
      for (const p of this.pendDir) if (rng.chance(pr)) this.closure(p.id, dir);
    } else if (mode === 'ordered') {
      for (const l of this.pendData.values()) for (const d of l) ordered.push({ id: d.id, d });
      for (const p of this.pendDir) ordered.push({ id: p.id, p });
      ordered.sort((a, b) => a.id - b.id);
      const cut = rng.int(ordered.length + 1);
      for (let i = 0; i < cut; i++) {
        const o = ordered[i];
        if ('d' in o) data.set(o.id, i === cut - 1 ? this.tear(rng, o.d, 0.7) : Infinity);
        else this.closure(o.id, dir);
      }
    }
    const keyData = [...data].sort((a, b) => a[0] - b[0]).map(([i, n]) => (n === Infinity ? `${i}` : `${i}:${n}`)).join(',');
    const keyDir = [...dir].sort((a, b) => a - b).join(',');
    return { data, dir, key: `${this.version}|${keyData}|${keyDir}` };
  }

  /** Bytes of a pending write that persist: all, or a prefix ending at a sector boundary of the file. */
  private tear(rng: Rand, d: PendData, rate: number): number {
    if (d.ev.t !== 'write' || !rng.chance(rate)) return Infinity;
    const start = d.ev.pos;
    const end = start + d.ev.data.length;
    const first = Math.floor(start / SECTOR) * SECTOR + SECTOR;
    if (first >= end) return Infinity;
    const bounds = Math.floor((end - 1 - first) / SECTOR) + 1;
    const cutAt = first + rng.int(bounds) * SECTOR;
    return cutAt - start;
  }

  /** The image of one crash state at the current point. */
  materialize(choice: Choice, everyInode = false): Image {
    const dirs = new Map<number, Map<string, number>>();
    for (const [id, m] of this.dirs) dirs.set(id, new Map(m));
    if (choice.dir.size) for (const p of this.pendDir) if (choice.dir.has(p.id)) applyDir(dirs, p.ev);
    const nodes = new Map<number, ImageNode>();
    const visit = (id: number): void => {
      if (nodes.has(id)) return;
      const kind = this.kinds.get(id);
      if (kind === 'dir') {
        const entries = dirs.get(id) ?? new Map<string, number>();
        nodes.set(id, { kind: 'dir', entries });
        for (const c of entries.values()) visit(c);
        return;
      }
      if (kind === 'symlink') {
        nodes.set(id, { kind: 'symlink', target: this.targets.get(id) ?? '' });
        return;
      }
      let b: Buffer = Buffer.from(this.files.get(id) ?? EMPTY);
      for (const d of this.pendData.get(id) ?? []) {
        const n = choice.data.get(d.id);
        if (n === undefined) continue;
        b = applyData(b, d.ev, n);
      }
      nodes.set(id, { kind: 'file', data: b });
    };
    visit(this.root);
    if (everyInode) for (const id of this.kinds.keys()) visit(id);
    return { root: this.root, nextIno: Math.max(this.nextIno, ...this.kinds.keys()) + 1, nodes };
  }

  /** The operations pending at this point, in trace order. */
  pendingEvents(): TraceEv[] {
    const out: { id: number; ev: TraceEv }[] = [];
    for (const l of this.pendData.values()) for (const d of l) out.push(d);
    for (const p of this.pendDir) out.push(p);
    return out.sort((a, b) => a.id - b.id).map((x) => x.ev);
  }

  /**
   * What a process crash at this point leaves, as a live SimFS whose trace starts with the pending
   * operations (still not durable), and the durable base image to model later power losses from.
   */
  processCrash(): { sim: SimFS; base: Image } {
    const durable: Choice = { data: new Map(), dir: new Set(), key: '' };
    const base = this.materialize(durable, true);
    const sim = new SimFS(cloneImage(base), true);
    for (const ev of this.pendingEvents()) sim.replay(ev);
    return { sim, base };
  }
}

/** Deep copy of an image (file buffers included). */
export function cloneImage(img: Image): Image {
  const nodes = new Map<number, ImageNode>();
  for (const [id, n] of img.nodes) {
    if (n.kind === 'dir') nodes.set(id, { kind: 'dir', entries: new Map(n.entries) });
    else if (n.kind === 'symlink') nodes.set(id, { kind: 'symlink', target: n.target });
    else {
      const c: ImageNode = { kind: 'file', data: Buffer.from(n.data ?? EMPTY) };
      if (n.size !== undefined) c.size = n.size;
      if (n.hi) c.hi = new Map([...n.hi].map(([i, b]) => [i, Buffer.from(b)]));
      if (n.readonly) c.readonly = true;
      nodes.set(id, c);
    }
  }
  return { root: img.root, nextIno: img.nextIno, nodes };
}
