// The peers, opened with the durability the comparison needs, and the guarantee each subject gives.
//
//   SQLite      better-sqlite3, journal_mode=WAL, synchronous=FULL: every COMMIT fsyncs the WAL.
//   lmdb        lmdb-js defaults (sync on, overlappingSync): a write resolves when committed and
//               `db.flushed` when that commit is synced; the benchmark awaits both.
//   LevelDB     classic-level; the committing write (a chained batch) is written with {sync: true}.
import path from 'node:path';
import Database from 'better-sqlite3';
import { ClassicLevel } from 'classic-level';
import { open as openLmdbEnv, type RootDatabase } from 'lmdb';
import type { SubjectId } from './config.js';

export type Sqlite = Database.Database;
export type Lmdb = RootDatabase<Buffer, number>;
export type Level = ClassicLevel<string, Buffer>;

export function openSqlite(dir: string): Sqlite {
  const db = new Database(path.join(dir, 'bench.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  return db;
}

export function openLmdb(dir: string): Lmdb {
  return openLmdbEnv<Buffer, number>({
    path: path.join(dir, 'bench.lmdb'),
    encoding: 'binary',
    keyEncoding: 'uint32',
    compression: false,
    cache: false,
  });
}

export async function openLevel(dir: string): Promise<Level> {
  const db = new ClassicLevel<string, Buffer>(path.join(dir, 'bench.leveldb'), { valueEncoding: 'buffer' });
  await db.open();
  return db;
}

/** LevelDB keys: fixed width, so lexical order is numeric order (as for the other stores). */
export const levelKey = (i: number): string => i.toString(16).padStart(8, '0');

export const SUBJECT_NAMES: Record<SubjectId, string> = {
  raw: 'raw fs',
  'raw-async': 'raw fs (async)',
  'raw-worker': 'raw fs (worker thread)',
  'raw-2x': 'raw fs, log + apply',
  cpfile: 'cpfile',
  'cpfile-new': 'cpfile, new file',
  'cpfile-b': 'cpfile B',
  'write-file-atomic': 'write-file-atomic',
  sqlite: 'SQLite WAL',
  lmdb: 'lmdb',
  leveldb: 'LevelDB',
};

/** The guarantee a subject's checkpoint gives (for "ahead of every peer with the same guarantee"). */
export const GUARANTEE: Record<SubjectId, string> = {
  raw: 'durable, not atomic',
  'raw-async': 'durable, not atomic',
  'raw-worker': 'durable, not atomic',
  'raw-2x': 'durable, not atomic',
  cpfile: 'atomic + durable',
  'cpfile-new': 'atomic + durable',
  'cpfile-b': 'atomic + durable',
  'write-file-atomic': 'atomic per file; rename not fsynced',
  sqlite: 'atomic + durable',
  lmdb: 'atomic + durable',
  leveldb: 'atomic + durable',
};

/** Peers whose checkpoint is as strong as cpfile's check(): atomic over many writes and durable. */
export const SAME_GUARANTEE: SubjectId[] = ['sqlite', 'lmdb', 'leveldb'];
