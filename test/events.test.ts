/**
 * The store's events: 'checkpoint' { epoch, records, bytes, ms } after each successful check,
 * 'applied' { epoch, bytes } after committed epochs reach the files, the same on diagnostics_channel;
 * a listener that throws (or rejects) breaks neither the store nor the other listeners.
 */
import { expect } from 'chai';
import { once, EventEmitter } from 'node:events';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { type CheckpointEvent, type AppliedEvent } from '../lib/index.js';
import { Sandbox, sleep } from './helpers/sandbox.js';

describe('events: checkpoint and applied', function () {
  this.timeout(60000);
  const sb = new Sandbox();
  afterEach(() => sb.cleanup());

  it("'checkpoint' after each check with that epoch's records and bytes; none for a rollback", async () => {
    const store = await sb.open(await sb.dir());
    expect(store).to.be.instanceOf(EventEmitter);
    const seen: CheckpointEvent[] = [];
    store.on('checkpoint', (e) => seen.push(e));
    await store.writeFile('a', Buffer.alloc(1000, 1));
    expect(await store.check()).to.equal(1);
    expect(seen).to.have.length(1);
    expect(seen[0].epoch).to.equal(1);
    expect(seen[0].records).to.be.at.least(3); // CREATE, WRITE, COMMIT
    expect(seen[0].bytes).to.be.at.least(1000);
    expect(seen[0].ms).to.be.a('number').and.at.least(0);
    await store.writeFile('b', Buffer.alloc(50_000, 2));
    await store.rollback();
    await store.writeFile('c', 'tiny');
    await store.check();
    expect(seen.map((e) => e.epoch)).to.deep.equal([1, 2]);
    // The rolled-back 50 KB are not counted in epoch 2.
    expect(seen[1].bytes).to.be.below(10_000);
    expect(seen[1].records).to.be.at.least(3);
    const empty = once(store, 'checkpoint');
    await store.check();
    const [e3] = (await empty) as [CheckpointEvent];
    expect(e3.epoch).to.equal(3);
    expect(e3.records).to.equal(1); // its COMMIT alone
  });

  it("'applied' once committed epochs are applied to the files", async () => {
    const store = await sb.open(await sb.dir(), { applyDelay: 0 });
    const applied: AppliedEvent[] = [];
    store.on('applied', (e) => applied.push(e));
    await store.writeFile('a', Buffer.alloc(4096, 7));
    const got = once(store, 'applied');
    await store.check();
    const [e] = (await got) as [AppliedEvent];
    expect(e.epoch).to.equal(1);
    expect(e.bytes).to.be.at.least(4096);
    await store.writeFile('b', 'x');
    await store.check();
    await store.close(); // its final check makes epoch 3, and it applies what is left
    expect(applied.at(-1)!.epoch).to.equal(3);
    expect(applied.map((a) => a.epoch)).to.deep.equal([...applied.map((a) => a.epoch)].sort((x, y) => x - y));
  });

  it('a listener that throws or rejects: the other listeners still run, the store goes on, listenerError hears of it', async () => {
    const store = await sb.open(await sb.dir());
    const order: string[] = [];
    const errors: [unknown, { event: string }][] = [];
    store.on('checkpoint', () => {
      order.push('first');
      throw new Error('listener bug');
    });
    store.on('checkpoint', async () => {
      order.push('second');
      throw new Error('async listener bug');
    });
    store.once('checkpoint', () => order.push('once'));
    store.on('listenerError', (err, info) => errors.push([err, info]));
    await store.writeFile('a', 'x');
    expect(await store.check()).to.equal(1);
    expect(await store.check()).to.equal(2);
    await sleep(10);
    expect(order).to.deep.equal(['first', 'second', 'once', 'first', 'second']);
    expect(errors.map(([e, i]) => `${i.event}: ${(e as Error).message}`)).to.have.members([
      'checkpoint: listener bug', 'checkpoint: async listener bug', 'checkpoint: listener bug', 'checkpoint: async listener bug',
    ]);
    expect(await store.readFile('a', 'utf8')).to.equal('x');
  });

  it('without a listenerError listener a failing listener becomes a process warning', async () => {
    const store = await sb.open(await sb.dir());
    store.on('checkpoint', () => {
      throw new Error('boom');
    });
    const warned = once(process, 'warning');
    await store.check();
    const [w] = (await warned) as [Error & { code?: string }];
    expect(w.name).to.equal('CpfileListenerWarning');
    expect(w.code).to.equal('CPFILE_LISTENER');
    expect(w.message).to.include("'checkpoint' listener").and.include('boom');
    store.removeAllListeners('checkpoint');
    expect(await store.check()).to.equal(2);
  });

  it('publishes on diagnostics_channel cpfile:checkpoint and cpfile:applied with the store directory', async () => {
    const dir = await sb.dir();
    const store = await sb.open(dir, { applyDelay: 0 });
    const got: { name: string; msg: { dir: string; epoch: number } }[] = [];
    const onCheckpoint = (msg: unknown): void => void got.push({ name: 'checkpoint', msg: msg as never });
    const onApplied = (msg: unknown): void => void got.push({ name: 'applied', msg: msg as never });
    subscribe('cpfile:checkpoint', onCheckpoint);
    subscribe('cpfile:applied', onApplied);
    try {
      await store.writeFile('a', 'x');
      await store.check();
      await store.close();
    } finally {
      unsubscribe('cpfile:checkpoint', onCheckpoint);
      unsubscribe('cpfile:applied', onApplied);
    }
    // close() makes a final check (epoch 2) and applies it.
    expect(got.map((g) => `${g.name} ${g.msg.epoch}`)).to.include.members(['checkpoint 1', 'checkpoint 2', 'applied 2']);
    expect(got.filter((g) => g.name === 'checkpoint')).to.have.length(2);
    expect(got.every((g) => g.msg.dir === store.dir)).to.equal(true);
  });
});
