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
  it('holds the store: check(), rollback() and prepare() made elsewhere while fn runs are EBUSY, nothing of it ends early', async () => {
    for (const ending of ['resolves', 'throws'] as const) {
      const store = await sb.open(await sb.dir());
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const t = store.transaction(async () => {
        await store.writeFile('a', 'A');
        await gate;
        await store.writeFile('b', 'B');
        if (ending === 'throws') throw new Error('boom');
      });
      await sleep(5);
      await store.writeFile('outside', 'O'); // a change made elsewhere is in the transaction's epoch
      for (const call of ['check', 'rollback', 'prepare'] as const) {
        const e = await expectCpError(() => store[call](), 'EBUSY');
        expect(e.message).to.match(/a transaction runs on this store/);
      }
      expect(store.epoch).to.equal(0);
      release();
      await t.then(() => undefined, (e: Error) => expect(e.message).to.equal('boom'));
      expect(store.epoch).to.equal(ending === 'throws' ? 0 : 1);
      expect(await store.readdir()).to.deep.equal(ending === 'throws' ? [] : ['a', 'b', 'outside']);
      expect(await store.check()).to.equal(ending === 'throws' ? 1 : 2); // free again once it ended
      await store.close();
    }
  });

  it('close() called while fn runs waits for the transaction, then closes: its epoch whole, nothing of fn refused', async () => {
    const store = await sb.open(await sb.dir());
    const order: string[] = [];
    const t = store.transaction(async () => {
      await store.writeFile('a', 'A');
      await sleep(30);
      await store.writeFile('b', 'B'); // after close() was called: still fn's, still accepted
      order.push('fn');
    });
    await sleep(5);
    const closed = store.close().then(() => order.push('closed'));
    expect(store.close()).to.equal(store.close()); // one close
    await t;
    await closed;
    expect(order).to.deep.equal(['fn', 'closed']);
    const again = await sb.open(store.dir);
    expect(again.epoch).to.be.at.least(1);
    expect(await again.readdir()).to.deep.equal(['a', 'b']);
    await again.close();
  });

  it('close() inside fn is EBUSY (it would wait for fn); the transaction goes on', async () => {
    const store = await sb.open(await sb.dir());
    const r = await store.transaction(async () => {
      await store.writeFile('a', 'A');
      const e = await expectCpError(() => store.close(), 'EBUSY');
      expect(e.message).to.match(/inside the function of a transaction/);
      return 'done';
    });
    expect(r).to.equal('done');
    expect(store.epoch).to.equal(1);
    await store.close();
  });

  it('a check() left by fn in a timer runs once the transaction ended (it holds nothing then)', async () => {
    const store = await sb.open(await sb.dir());
    let later!: Promise<number>;
    await store.transaction(async () => {
      await store.writeFile('a', 'A');
      await new Promise<void>((r) => setTimeout(() => { r(); }, 0));
      setTimeout(() => { later = store.check(); }, 20);
    });
    await sleep(40);
    expect(await later).to.equal(2);
    await store.close();
  });
});
