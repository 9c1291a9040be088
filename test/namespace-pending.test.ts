// A file whose unlink is pending can become a directory at once, whether or not its creation was
// applied yet: the answer never depends on the background applier's timing.
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Sandbox } from './helpers/sandbox.js';

describe('a name under a pending unlink', () => {
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  for (const applied of [true, false]) {
    it(`unlink('a') then writeFile('a/x'), open('a/y','w') and rename(..., 'a/z') work ${applied ? 'after' : 'before'} 'a' was applied, and survive a reopen`, async () => {
      const dir = await sb.dir();
      const s = await sb.open(dir, { applyDelay: applied ? 0 : 3600_000, applyThreshold: applied ? 0 : 2 ** 40 });
      await s.writeFile('a', 'a file');
      await s.writeFile('b', 'to move');
      await s.check();
      if (applied) {
        for (let i = 0; i < 100 && !fs.existsSync(path.join(dir, 'b')); i++) await new Promise((r) => setTimeout(r, 10));
        expect(fs.statSync(path.join(dir, 'a')).isFile()).to.equal(true);
      }
      await s.unlink('a');
      await s.writeFile('a/x', 'x');
      const y = await s.open('a/y', 'w');
      await y.write('y');
      await y.close();
      await s.rename('b', 'a/z');
      await s.check();
      await s.close();
      const again = await sb.open(dir);
      expect(String(await again.readFile('a/x'))).to.equal('x');
      expect(String(await again.readFile('a/y'))).to.equal('y');
      expect(String(await again.readFile('a/z'))).to.equal('to move');
      await again.close();
      expect(fs.statSync(path.join(dir, 'a')).isDirectory()).to.equal(true);
    });
  }
});
