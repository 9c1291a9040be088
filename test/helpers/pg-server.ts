/**
 * The private PostgreSQL server of the tests: tools/pg-server.ts (shared with the demo and the
 * benchmark), and usePgServer() for a mocha describe.
 */
import { PgServer, findBinaries, noServer } from '../../tools/pg-server.js';

export * from '../../tools/pg-server.js';

/**
 * In a describe: a server for the suite, started in before() (failing under CI, skipping loudly
 * elsewhere, when there are no binaries) and destroyed in after(), also when a test failed.
 */
export function usePgServer(): { server: PgServer } {
  const holder = {} as { server: PgServer };
  before(async function () {
    this.timeout(120_000);
    const bins = findBinaries();
    if (!bins) noServer(this);
    holder.server = await PgServer.create(bins);
    const t = holder.server.timings;
    const tpl = await PgServer.template(bins);
    const made = `data dir ${t.initdb.toFixed(0)} ms (a copy; initdb ${tpl.timings.initdb.toFixed(0)} ms once)`;
    console.log(`      (PostgreSQL from ${bins.source}: ${made}, start ${t.start.toFixed(0)} ms)`);
  });
  after(async function () {
    this.timeout(60_000);
    await holder.server?.destroy();
  });
  return holder;
}
