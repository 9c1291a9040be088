/**
 * The order of durability calls, from a recording I/O layer: the journal is synced before check()
 * resolves; applying syncs data files and the parent directory after create, rename and unlink, and
 * only then moves the cursor.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openStore, type IO } from '../lib/index.js';
import { interceptIO, openedPath } from './helpers/intercept-io.js';
import { tempDir } from './helpers/journal.js';

interface Call { op: string; arg: string }

function recordingIO(log: Call[]): IO {
  const fdPath = new Map<number, string>();
  return interceptIO(async (k, args, next) => {
    const r = await next();
    if (k === 'open') fdPath.set(r as number, openedPath(r as number, args[0] as string));
    const arg = k === 'open' ? fdPath.get(r as number)! : typeof args[0] === 'number' ? fdPath.get(args[0]) ?? '?' : String(args[0]);
    if (k === 'rename') log.push({ op: k, arg: `${arg} -> ${args[1]}` });
    else log.push({ op: k, arg });
    return r;
  });
}

describe('durability order (recorded I/O calls)', () => {
  it('check() resolves only after the journal segment is fdatasynced', async () => {
    const dir = tempDir();
    const log: Call[] = [];
    const s = await openStore(dir, { io: recordingIO(log), noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    await s.writeFile('x', 'data');
    log.length = 0;
    // a call is logged when it has returned: the marker shows when check() resolved among them
    await s.check().then(() => log.push({ op: 'check resolved', arg: '' }));
    const sync = log.findIndex((c) => c.op === 'fdatasync' && c.arg.includes(`${path.sep}journal${path.sep}seg-`));
    const write = log.findIndex((c) => c.op === 'write' && c.arg.includes('seg-'));
    const resolved = log.findIndex((c) => c.op === 'check resolved');
    expect(write).to.be.greaterThan(-1);
    expect(sync).to.be.greaterThan(write);
    expect(resolved, 'check() resolved after the fdatasync returned').to.be.greaterThan(sync);
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('applying syncs the data file and the parent directory after create, rename and unlink, before the cursor moves', async () => {
    const dir = tempDir();
    const log: Call[] = [];
    const s = await openStore(dir, { io: recordingIO(log), noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    await s.writeFile('old.txt', 'gone soon');
    await s.writeFile('sub/a.txt', 'alpha');
    await s.check();
    await s.close();
    const s2 = await openStore(dir, { io: recordingIO(log), noLock: true, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
    await s2.rename('sub/a.txt', 'b.txt');
    await s2.unlink('old.txt');
    await s2.writeFile('sub/new.txt', 'new');
    await s2.check();
    log.length = 0;
    await s2.close();
    const idx = (pred: (c: Call) => boolean, from = 0): number => {
      for (let i = from; i < log.length; i++) if (pred(log[i])) return i;
      return -1;
    };
    const control = (c: Call): boolean => c.op === 'fdatasync' && c.arg.endsWith(`${path.sep}control`);
    const dirSync = (d: string) => (c: Call): boolean => c.op === 'fsyncDir' && path.resolve(c.arg) === path.resolve(d);

    const ren = idx((c) => c.op === 'rename' && c.arg.includes('a.txt'));
    expect(ren, 'rename applied').to.be.greaterThan(-1);
    // fenced: the cursor is written before the rename and after both directories are synced
    expect(idx(control)).to.be.lessThan(ren);
    const srcDirSync = idx(dirSync(path.join(dir, 'sub')), ren);
    const dstDirSync = idx(dirSync(dir), ren);
    const cursorAfter = idx(control, ren);
    expect(srcDirSync).to.be.greaterThan(ren);
    expect(dstDirSync).to.be.greaterThan(ren);
    expect(cursorAfter).to.be.greaterThan(Math.max(srcDirSync, dstDirSync));

    const unl = idx((c) => c.op === 'unlink' && c.arg.endsWith('old.txt'));
    const created = idx((c) => c.op === 'open' && c.arg.endsWith(`sub${path.sep}new.txt`));
    expect(unl).to.be.greaterThan(ren);
    expect(created).to.be.greaterThan(unl);
    const dataSync = idx((c) => c.op === 'fdatasync' && c.arg.endsWith(`sub${path.sep}new.txt`), created);
    const lastCursor = log.map((c, i) => (control(c) ? i : -1)).filter((i) => i >= 0).pop()!;
    expect(dataSync, 'new file synced').to.be.greaterThan(created);
    expect(idx(dirSync(dir), unl), 'root dir synced after unlink').to.be.greaterThan(unl).and.lessThan(lastCursor);
    expect(idx(dirSync(path.join(dir, 'sub')), created), 'sub dir synced after create').to.be.greaterThan(created).and.lessThan(lastCursor);
    expect(dataSync).to.be.lessThan(lastCursor);
    expect(fs.readFileSync(path.join(dir, 'b.txt'), 'utf8')).to.equal('alpha');
    expect(fs.existsSync(path.join(dir, 'old.txt'))).to.equal(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('openStore makes every directory it creates durable in its parent (fsync of the parent after mkdir)', async () => {
    const top = tempDir();
    const log: Call[] = [];
    const root = path.join(top, 'new', 'nested');
    try {
      const s = await openStore(root, { io: recordingIO(log), noLock: true });
      await s.close();
      for (const [made, parent] of [[path.join(top, 'new'), top], [root, path.join(top, 'new')], [path.join(root, '.cpfile'), root]]) {
        const mk = log.findIndex((c) => c.op === 'mkdir' && path.resolve(c.arg) === made);
        expect(mk, `mkdir ${made}`).to.be.greaterThan(-1);
        const synced = log.findIndex((c, i) => i > mk && c.op === 'fsyncDir' && path.resolve(c.arg) === parent);
        expect(synced, `fsync of ${parent} after mkdir ${made}`).to.be.greaterThan(mk);
      }
    } finally {
      fs.rmSync(top, { recursive: true, force: true });
    }
  });
});
