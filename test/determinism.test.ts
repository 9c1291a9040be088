// The bytes a seeded workload leaves on disk are pinned: test/fixtures-journals/digests-seed1.txt holds
// the digests (test/torture/digest.ts) of 400 seeded units made by the code of format v3. A change that
// alters no byte on disk (a refactoring) must reproduce them; a change that alters the format on
// purpose regenerates the file (`npm run torture -- --digest 400 --seed 1 > test/fixtures-journals/digests-seed1.txt`)
// and says so in its commit. npm test compares a sample; the command above with `| diff - <file>` all.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { digestLines, workloadDigest } from './torture/digest.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pinned = readFileSync(path.resolve(here, '..', '..', 'test', 'fixtures-journals', 'digests-seed1.txt'), 'utf8').trim().split('\n');

describe('determinism: seeded units leave the pinned bytes on disk', function () {
  this.timeout(120_000);

  it('a seed gives the same digest twice in one process', async () => {
    expect(await workloadDigest(7)).to.equal(await workloadDigest(7));
  });

  it('units 1..48 of seed 1 give the pinned digests (journal, control file and data at every check, after close and after recovery)', async () => {
    const got = await digestLines(1, 48);
    expect(got).to.deep.equal(pinned.slice(0, 48));
  });

  it('a sample from the rest of the pinned range', async () => {
    for (const i of [101, 187, 255, 322, 399]) {
      expect(await digestLines(1 + i, 1)).to.deep.equal([pinned[i]]);
    }
  });
});
