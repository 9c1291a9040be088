/**
 * store.transaction(fn): check() after fn resolves (resolving with fn's result), rollback() if it
 * throws (rejecting with fn's error); one epoch at a time, so changes made elsewhere meanwhile are in
 * the same epoch; nested calls are EINVAL, concurrent ones run one after the other; bad input.
 */
import { expect } from 'chai';
import { Sandbox, expectCpError, sleep } from './helpers/sandbox.js';

describe('transaction', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it("resolves with fn's result after a check that makes fn's changes one epoch", async () => {
    const store = await sb.open(await sb.dir());
    const r = await store.transaction(async () => {
      await store.writeFile('a', 'A');
      await store.appendFile('b', 'B');
      return { ok: 42 };
    });
    expect(r).to.deep.equal({ ok: 42 });
    expect(store.epoch).to.equal(1);
    expect(await store.transaction(() => 'sync fn')).to.equal('sync fn');
    expect(store.epoch).to.equal(2);
    await store.close();
    const again = await sb.open(store.dir);
    expect(await again.readdir()).to.deep.equal(['a', 'b']);
  });

  it("rolls back and rejects with fn's own error when fn throws (sync or async)", async () => {
    const store = await sb.open(await sb.dir());
    await store.writeFile('keep', 'k');
    await store.check();
    const boom = new Error('boom');
    let caught: unknown;
    await store.transaction(async () => {
      await store.writeFile('keep', 'changed');
      await store.writeFile('new', 'n');
      throw boom;
    }).catch((e) => { caught = e; });
    expect(caught).to.equal(boom);
    expect(await store.readFile('keep', 'utf8')).to.equal('k');
    expect(await store.exists('new')).to.equal(false);
    expect(store.epoch).to.equal(1);
    caught = undefined;
    await store.transaction(() => {
      void store.writeFile('new', 'n'); // called before the throw: rolled back with it
      throw boom;
    }).catch((e) => { caught = e; });
    expect(caught).to.equal(boom);
    expect(await store.exists('new')).to.equal(false);
  });

  it('changes made outside fn while it runs are in the same epoch (checked with it, or rolled back with it)', async () => {
    const store = await sb.open(await sb.dir());
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const t = store.transaction(async () => {
      await store.writeFile('inside', 'i');
      await gate;
    });
    await store.writeFile('outside', 'o');
    release();
    await t;
    expect(store.epoch).to.equal(1);
    const t2 = store.transaction(async () => {
      await sleep(20);
      throw new Error('no');
    });
    await store.writeFile('outside2', 'o');
    await t2.catch(() => undefined);
    expect(await store.exists('outside2')).to.equal(false);
    expect(await store.readdir()).to.deep.equal(['inside', 'outside']);
  });

  it('does not nest (EINVAL, and the outer one goes on); concurrent ones run one after the other', async () => {
    const store = await sb.open(await sb.dir());
    const r = await store.transaction(async () => {
      await expectCpError(() => store.transaction(async () => 1), 'EINVAL');
      await store.writeFile('outer', 'x');
      return 'outer';
    });
    expect(r).to.equal('outer');
    expect(store.epoch).to.equal(1);
    const order: string[] = [];
    const a = store.transaction(async () => {
      order.push('a start');
      await sleep(30);
      await store.writeFile('a', 'a');
      order.push('a end');
    });
    const b = store.transaction(async () => {
      order.push(`b start at epoch ${store.epoch}`);
      await store.writeFile('b', 'b');
    });
    await Promise.all([a, b]);
    expect(order).to.deep.equal(['a start', 'a end', 'b start at epoch 2']);
    expect(store.epoch).to.equal(3);
  });

  it("is not nested once fn settled: a timer fn left, and a 'checkpoint' listener of its check, start their own", async () => {
    const store = await sb.open(await sb.dir());
    let late: Promise<string> | null = null;
    await store.transaction(async () => {
      late = new Promise<string>((res, rej) => {
        setTimeout(() => store.transaction(async () => { await store.writeFile('late', 'l'); return 'late'; }).then(res, rej), 50);
      });
      await store.writeFile('a', 'a');
    });
    expect(await late).to.equal('late');
    let fromListener: Promise<string> | null = null;
    store.once('checkpoint', () => {
      fromListener = store.transaction(async () => { await store.writeFile('l', 'x'); return 'listener'; });
    });
    await store.transaction(async () => { await store.writeFile('b', 'b'); });
    expect(await fromListener).to.equal('listener');
    expect(await store.readdir()).to.deep.equal(['a', 'b', 'l', 'late']);
    expect(store.epoch).to.equal(4);
    await store.close();
  });

  it('bad input: not a function is EINVAL; after close(): ECLOSED, fn not called', async () => {
    const store = await sb.open(await sb.dir());
    for (const v of [undefined, null, 42, 'fn', {}]) await expectCpError(() => store.transaction(v as never), 'EINVAL');
    expect(store.epoch).to.equal(0);
    await store.close();
    let called = false;
    await expectCpError(() => store.transaction(() => { called = true; }), 'ECLOSED');
    expect(called).to.equal(false);
  });

  it('a store closed while fn runs: fn fails with ECLOSED and the transaction rejects with ECLOSED', async () => {
    const store = await sb.open(await sb.dir());
    const t = store.transaction(async () => {
      await sleep(20);
      await store.writeFile('late', 'x');
    });
    const closed = store.close({ discard: true });
    await expectCpError(() => t, 'ECLOSED');
    await closed;
  });
});
