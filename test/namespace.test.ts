// The pending namespace on its own (lib/store/namespace.ts): names with an overlay (pending files,
// and tombstones of names unlinked or renamed away) and the directories they imply. A name some
// pending name lives under is a directory-to-be and cannot become a file; a pending file cannot
// gain children; a tombstone blocks nothing below it. Examples, then a property test against a
// model that recomputes the answer from the keys alone.
import { expect } from 'chai';
import fc from 'fast-check';
import { Namespace } from '../lib/store/namespace.js';
import { Overlay } from '../lib/store/overlay.js';
import { expectCpError } from './helpers/sandbox.js';

const file = (): Overlay => new Overlay(null, 0, true, false);
const tombstone = (): Overlay => new Overlay(null, 0, false, false);

describe('namespace: pending creates, renames, unlinks', () => {
  it('a pending name makes each of its parents a directory-to-be: none of them can become a file', async () => {
    const ns = new Namespace();
    ns.set('a/b/c', file());
    for (const dir of ['a', 'a/b']) {
      const e = await expectCpError(() => ns.assertCanCreate(dir), 'EINVAL');
      expect(e.message).to.equal(`"${dir}" is a directory (of pending names such as "a/b/c")`);
    }
    // The name itself (replacing the pending file) and its siblings are fine.
    ns.assertCanCreate('a/b/c');
    ns.assertCanCreate('a/b/d');
    ns.assertCanCreate('ab');
  });

  it('a pending file cannot gain children (ENOENT: it is a file, not a directory)', async () => {
    const ns = new Namespace();
    ns.set('f', file());
    const e = await expectCpError(() => ns.assertCanCreate('f/g'), 'ENOENT');
    expect(e.message).to.equal('f is a file, not a directory (pending in this store)');
    await expectCpError(() => ns.assertCanCreate('f/g/h'), 'ENOENT');
  });

  it('a tombstone (a name unlinked or renamed away) can become a directory at once', () => {
    const ns = new Namespace();
    ns.set('f', tombstone());
    ns.assertCanCreate('f/g');
    ns.assertCanCreate('f');
  });

  it('a tombstone below a name still makes it a directory-to-be (its directory stays on disk)', async () => {
    const ns = new Namespace();
    ns.set('d/x', tombstone());
    await expectCpError(() => ns.assertCanCreate('d'), 'EINVAL');
  });

  it('counts each name once: setting a name again and deleting it once frees its parents', async () => {
    const ns = new Namespace();
    ns.set('a/x', file());
    ns.set('a/x', tombstone());
    ns.set('a/y', file());
    await expectCpError(() => ns.assertCanCreate('a'), 'EINVAL');
    expect(ns.delete('a/x')).to.equal(true);
    await expectCpError(() => ns.assertCanCreate('a'), 'EINVAL');
    expect(ns.delete('a/missing')).to.equal(false);
    expect(ns.delete('a/y')).to.equal(true);
    ns.assertCanCreate('a');
    expect(ns.delete('a/y')).to.equal(false);
    ns.assertCanCreate('a');
  });

  it('clear forgets every name and directory', () => {
    const ns = new Namespace();
    ns.set('a/b', file());
    ns.set('c', file());
    ns.clear();
    expect(ns.size).to.equal(0);
    ns.assertCanCreate('a');
    ns.assertCanCreate('c/d');
  });

  it('a file becoming a directory: unlink (tombstone) it, then names below it are fine, and it is a directory-to-be', async () => {
    const ns = new Namespace();
    ns.set('a', file());
    await expectCpError(() => ns.assertCanCreate('a/x'), 'ENOENT');
    ns.set('a', tombstone());
    ns.assertCanCreate('a/x');
    ns.set('a/x', file());
    await expectCpError(() => ns.assertCanCreate('a'), 'EINVAL');
  });

  it('property: assertCanCreate agrees with a model computed from the pending names alone', () => {
    const names = ['a', 'b', 'a/b', 'a/c', 'a/b/c', 'b/a', 'ab', 'ab/c'];
    type Op = { t: 'set'; name: string; exists: boolean } | { t: 'delete'; name: string } | { t: 'clear' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ t: fc.constant('set' as const), name: fc.constantFrom(...names), exists: fc.boolean() }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant('delete' as const), name: fc.constantFrom(...names) }) },
      { weight: 1, arbitrary: fc.constant({ t: 'clear' as const }) },
    );
    fc.assert(fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
      const ns = new Namespace();
      const model = new Map<string, boolean>();
      for (const op of ops) {
        if (op.t === 'set') {
          ns.set(op.name, op.exists ? file() : tombstone());
          model.set(op.name, op.exists);
        } else if (op.t === 'delete') {
          expect(ns.delete(op.name)).to.equal(model.delete(op.name));
        } else {
          ns.clear();
          model.clear();
        }
        for (const n of [...names, 'a/b/c/d', 'c']) {
          const isDir = [...model.keys()].some((k) => k.startsWith(`${n}/`));
          const parts = n.split('/');
          const fileParent = parts.slice(1).some((_, i) => model.get(parts.slice(0, i + 1).join('/')) === true);
          let got = 'ok';
          try {
            ns.assertCanCreate(n);
          } catch (e) {
            got = (e as { code: string }).code;
          }
          expect(got, `${n} after ${JSON.stringify(ops)}`).to.equal(isDir ? 'EINVAL' : fileParent ? 'ENOENT' : 'ok');
        }
      }
    }), { numRuns: 300 });
  });
});
