// The application hooks (the seed's cp_hooks): when each is called and with what.
import { expect } from 'chai';
import { Sandbox, sleep, type Hooks, type Store } from './helpers/sandbox.js';

type Ev = [string, ...unknown[]];

/** Async recording hooks; every hook yields a few ms so that un-awaited hooks would show up as missing. */
function recorder(delayMs = 3) {
  const events: Ev[] = [];
  const rec = async (ev: Ev) => {
    await sleep(delayMs);
    events.push(ev);
  };
  const hooks = {
    async init() {
      await rec(['init']);
    },
    async fini() {
      await rec(['fini']);
    },
    async query(name: string) {
      await rec(['query', name]);
      return null;
    },
    async insert(name: string) {
      await rec(['insert', name]);
      return `ud-${name}`;
    },
    async update(name: string, position: number, userdata: unknown, state: 'open' | 'closed') {
      await rec(['update', name, position, userdata, state]);
    },
    async commit() {
      await rec(['commit']);
    },
    async rollback() {
      await rec(['rollback']);
    },
  };
  let mark = 0;
  return {
    events,
    hooks: hooks as unknown as Hooks,
    /** events since the last call to since() */
    since(): Ev[] {
      const out = events.slice(mark);
      mark = events.length;
      return out;
    },
  };
}

const kinds = (evs: Ev[]) => evs.map((e) => e[0]);
const updatesOf = (evs: Ev[]) => evs.filter((e) => e[0] === 'update');

describe('hooks: application callbacks', function () {
  const sb = new Sandbox();
  let dir: string;
  let store: Store;
  let r: ReturnType<typeof recorder>;

  beforeEach(async function () {
    dir = await sb.dir();
    r = recorder();
    store = await sb.open(dir, { hooks: r.hooks });
  });
  afterEach(async function () {
    await sb.cleanup();
  });

  it('init is called exactly once, before openStore resolves, and nothing else yet', function () {
    expect(r.since()).to.deep.equal([['init']]);
  });

  it('opening a new name calls query(name) and then insert(name)', async function () {
    r.since();
    const f = await store.open('a', 'w');
    const evs = r.since();
    const qi = evs.findIndex((e) => e[0] === 'query' && e[1] === 'a');
    const ii = evs.findIndex((e) => e[0] === 'insert' && e[1] === 'a');
    expect(qi, 'query called').to.be.at.least(0);
    expect(ii, 'insert called').to.be.greaterThan(qi);
    expect(evs.filter((e) => e[0] === 'insert')).to.have.length(1);
    expect(kinds(evs)).to.not.include('commit');
    await f.close();
  });

  it("check() calls update(name, position, userdata, 'open') for a changed entry, then commit, before resolving", async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    r.since();
    await store.check();
    const evs = r.since();
    expect(updatesOf(evs)).to.deep.equal([['update', 'a', 5, 'ud-a', 'open']]);
    expect(kinds(evs).at(-1)).to.equal('commit');
    expect(kinds(evs).filter((k) => k === 'commit')).to.have.length(1);
    await f.close();
  });

  it('no update is called before the check', async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    await f.write('more');
    expect(kinds(r.events)).to.not.include('update');
    expect(kinds(r.events)).to.not.include('commit');
    await f.close();
  });

  it('a later check updates only the entries that changed since the previous one', async function () {
    const a = await store.open('a', 'w');
    const b = await store.open('b', 'w');
    await a.write('aaa');
    await b.write('bbbb');
    await store.check();
    r.since();
    await a.write('AA');
    await store.check();
    const evs = r.since();
    expect(updatesOf(evs)).to.deep.equal([['update', 'a', 5, 'ud-a', 'open']]);
    expect(kinds(evs).at(-1)).to.equal('commit');
    await a.close();
    await b.close();
  });

  it("closing an entry is reported as update(..., 'closed') at the next check", async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    await store.check();
    await f.close();
    r.since();
    await store.check();
    const evs = r.since();
    expect(updatesOf(evs)).to.deep.equal([['update', 'a', 5, 'ud-a', 'closed']]);
    expect(kinds(evs).at(-1)).to.equal('commit');
  });

  it("an entry inserted and closed within one epoch gets update(..., 'closed') at the check", async function () {
    // insert() told the application about the entry; the check that makes its closing durable must say so
    const f = await store.open('short', 'w');
    await f.write('hello');
    await f.close();
    r.since();
    await store.check();
    const evs = r.since();
    expect(updatesOf(evs)).to.deep.equal([['update', 'short', 5, 'ud-short', 'closed']]);
    expect(kinds(evs).at(-1)).to.equal('commit');
  });

  it("an entry closed after further writes is reported 'closed' with its position at close", async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    await store.check();
    await f.write(' world');
    await f.close();
    r.since();
    await store.check();
    expect(updatesOf(r.since())).to.deep.equal([['update', 'a', 11, 'ud-a', 'closed']]);
  });

  it('f.check() drives the same update/commit sequence as store.check()', async function () {
    const f = await store.open('a', 'w');
    await f.write('xyz');
    r.since();
    await f.check();
    const evs = r.since();
    expect(updatesOf(evs)).to.deep.equal([['update', 'a', 3, 'ud-a', 'open']]);
    expect(kinds(evs).at(-1)).to.equal('commit');
    await f.close();
  });

  it('store.rollback() calls rollback and neither update nor commit', async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    r.since();
    await store.rollback();
    const evs = r.since();
    expect(kinds(evs)).to.include('rollback');
    expect(kinds(evs)).to.not.include('update');
    expect(kinds(evs)).to.not.include('commit');
  });

  it('store.close() runs the final check (update, commit) and calls fini last, once', async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    r.since();
    await store.close();
    const evs = r.since();
    expect(updatesOf(evs).length).to.be.at.least(1);
    expect(updatesOf(evs)[0]?.slice(0, 2)).to.deep.equal(['update', 'a']);
    expect(kinds(evs)).to.include('commit');
    expect(kinds(evs).at(-1)).to.equal('fini');
    expect(kinds(evs).filter((k) => k === 'fini')).to.have.length(1);
  });

  it('store.close({discard:true}) calls fini without update or commit', async function () {
    const f = await store.open('a', 'w');
    await f.write('hello');
    r.since();
    await store.close({ discard: true });
    const evs = r.since();
    expect(kinds(evs)).to.not.include('update');
    expect(kinds(evs)).to.not.include('commit');
    expect(kinds(evs).at(-1)).to.equal('fini');
    void f;
  });

  it('after a reopen, hooks are brought up to date: update for each recovered entry, then commit', async function () {
    const f = await store.open('log', 'w');
    await f.write('hello');
    await store.check();
    await f.write(' world');
    await store.check(); // checked position 11, entry still open
    await f.write('!!!'); // never checked
    await store.close({ discard: true });

    const r2 = recorder();
    store = await sb.open(dir, { hooks: r2.hooks });
    const evs = r2.since();
    expect(evs[0]).to.deep.equal(['init']);
    const ups = updatesOf(evs);
    const logUp = ups.filter((e) => e[1] === 'log');
    // userdata is the application's (insert's return value); the journal need not persist it
    expect(logUp.map((e) => [e[0], e[1], e[2], e[4]]), 'update for the recovered entry').to.deep.equal([['update', 'log', 11, 'open']]);
    const lastUpdate = evs.lastIndexOf(logUp[0]!);
    const commitAfter = evs.findIndex((e, i) => i > lastUpdate && e[0] === 'commit');
    expect(commitAfter, 'commit after the recovered updates').to.be.greaterThan(lastUpdate);
    expect(kinds(evs)).to.not.include('insert');
  });

  it('an open refused by a hook (EHOOK) neither creates nor truncates the file', async function () {
    await store.writeFile('precious', 'keep me');
    await store.check();
    await store.close();
    const refusing = { ...r.hooks, query: () => { throw new Error('catalog offline'); } } as Hooks;
    store = await sb.open(dir, { hooks: refusing });
    for (const [name, mode] of [['precious', 'w'], ['fresh', 'w+']] as const) {
      const err = await store.open(name, mode).then(() => null, (e: unknown) => e);
      expect((err as { code?: string })?.code, `${mode} ${name}`).to.equal('EHOOK');
    }
    await store.check();
    await store.close();
    store = await sb.open(dir);
    expect((await store.readFile('precious')).toString()).to.equal('keep me');
    const missing = await store.readFile('fresh').then(() => null, (e: unknown) => e);
    expect((missing as { code?: string })?.code).to.equal('ENOENT');
  });

  it('a hook failing after the commit is durable rejects with EHOOK that names the durable epoch', async function () {
    await store.close();
    const failing = { ...r.hooks, commit: () => { throw new Error('mirror down'); } } as Hooks;
    store = await sb.open(dir, { hooks: failing });
    await store.writeFile('a', 'durable');
    const epoch = store.epoch + 1;
    const err = (await store.check().then(() => null, (e: unknown) => e)) as { code?: string; message?: string; details?: Record<string, unknown> };
    expect(err?.code).to.equal('EHOOK');
    expect(err?.message).to.include(`epoch ${epoch} is durable`);
    expect(err?.details).to.deep.include({ epoch, durable: true });
    expect(store.epoch).to.equal(epoch);
    await store.close({ discard: true }).catch(() => undefined);
    store = await sb.open(dir);
    expect(store.epoch).to.equal(epoch);
    expect((await store.readFile('a')).toString()).to.equal('durable');
  });
});
