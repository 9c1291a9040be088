import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';
import { tempDir } from './helpers/journal.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures-lifecycle', 'child.js');

/** Run the child; resolve with its output once it exits, or reject if it is still alive after `limit` ms. */
function runChild(mode: string, dir: string, limit = 15000): Promise<{ out: string; code: number | null; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CHILD, mode, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${mode}: process still alive after ${limit} ms (it hangs). stdout: ${out} stderr: ${err}`));
    }, limit);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${mode}: exit ${code}: ${err}`));
      else resolve({ out, code, ms: Date.now() - t0 });
    });
  });
}

describe('process lifecycle: no hanging process, nothing acknowledged left behind', function () {
  this.timeout(30000);
  const dirs: string[] = [];
  const fresh = (): string => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('after store.close() the process exits by itself and the file on disk holds its final content', async () => {
    const dir = fresh();
    const r = await runChild('close', dir);
    expect(r.out).to.equal('END\n');
    expect(fs.readFileSync(path.join(dir, 'out.txt'), 'utf8')).to.equal('closed properly\n');
  });

  it('a program that never closes its store still exits, and the next open recovers its checked epoch', async () => {
    const dir = fresh();
    await runChild('no-close', dir);
    const s = await openStore(dir);
    expect(s.epoch).to.equal(1);
    expect((await s.readFile('out.txt')).toString()).to.equal('checked\n');
    await s.close();
  });

  it('a check still in flight when the program ends keeps the process alive until it is durable', async () => {
    const dir = fresh();
    const r = await runChild('check-in-flight', dir);
    expect(r.out).to.match(/CHECKED 1\n/);
    const s = await openStore(dir);
    expect(s.epoch).to.equal(1);
    expect((await s.readFile('out.txt')).length).to.equal(1 << 20);
    await s.close();
  });

  it('several stores in one process close independently and the process exits', async () => {
    const dir = fresh();
    await runChild('two-stores', dir);
    expect(fs.readFileSync(path.join(dir, 'a', 'f'), 'utf8')).to.equal('A');
    expect(fs.readFileSync(path.join(dir, 'b', 'f'), 'utf8')).to.equal('B');
  });

  it('the compat layer closes its default store with the last file, and the process exits', async () => {
    const dir = fresh();
    await runChild('compat', dir);
    expect(fs.readFileSync(path.join(dir, 'c.txt'), 'utf8')).to.equal('compat');
  });
});
