// A directory of the store swapped for a symlink out of the store at the worst moment (after the
// applier checked it, before it opens the file below it) is never followed: the walk opens each
// directory relative to the one before (names.ts walk, IO.dirRef), as openat(2) would.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { openStore } from '../lib/index.js';
import { nodeIO } from '../lib/io.js';
import { interceptIO } from './helpers/intercept-io.js';
import { Sandbox } from './helpers/sandbox.js';

const sb = new Sandbox();
after(() => sb.cleanup());

describe('confinement: a directory swapped for a symlink between the check and the open', () => {
  before(function () {
    if (!nodeIO.dirRef) this.skip(); // no /proc/self/fd here: the by-path walk has this race (README)
  });

  for (const op of ['write', 'create', 'unlink', 'rename'] as const) {
    it(`${op}: nothing outside the store is touched, whatever the swap`, async () => {
      const dir = await sb.dir();
      const outside = await sb.dir('cpfile-outside-');
      fs.writeFileSync(path.join(outside, 'f'), 'VICTIM');
      fs.writeFileSync(path.join(outside, 'g'), 'VICTIM');
      let armed = false;
      let swapped = false;
      const io = interceptIO(async (call, args, next) => {
        const p = String(args[0]);
        // The moment the applier (or recovery) is about to act on the last component under d/.
        if (armed && !swapped && ['open', 'unlink', 'rename', 'lstat'].includes(call) && /\/(f|g)$/.test(p) && !p.includes('.cpfile')) {
          swapped = true;
          fs.renameSync(path.join(dir, 'd'), path.join(dir, 'd.moved'));
          fs.symlinkSync(outside, path.join(dir, 'd'));
        }
        return next();
      });
      const s = await openStore(dir, { inline: true, noLock: true, io, applyDelay: 3600_000, applyThreshold: 2 ** 40 });
      if (op === 'create') await s.writeFile('d/x', 'x');
      else await s.writeFile('d/f', 'before');
      await s.check();
      await (s as unknown as { applyNow(inQueue: boolean): Promise<void> }).applyNow(false);
      if (op === 'write') await s.writeFile('d/f', 'AFTER');
      if (op === 'create') await s.writeFile('d/f', 'AFTER');
      if (op === 'unlink') await s.unlink('d/f');
      if (op === 'rename') await s.rename('d/f', 'd/g');
      await s.check();
      armed = true;
      await s.close().catch(() => undefined);
      expect(swapped, 'the swap happened').to.equal(true);
      expect(fs.readFileSync(path.join(outside, 'f'), 'utf8')).to.equal('VICTIM');
      expect(fs.readFileSync(path.join(outside, 'g'), 'utf8')).to.equal('VICTIM');
      expect(fs.readdirSync(outside).sort()).to.deep.equal(['f', 'g']);
    });
  }
});
