/**
 * cpfile/postgres: files of cpfile stores and rows of a PostgreSQL database commit together.
 *
 *   import { openStore } from 'cpfile';
 *   import { postgresCoordinator, postgresHooks } from 'cpfile/postgres';
 *
 *   const pool = new pg.Pool();                // the app's own pg (node-postgres) pool
 *   const coord = postgresCoordinator(pool);
 *   const store = await openStore('./data', { hooks: postgresHooks(pool), resolveInDoubt: coord.resolve });
 *   await coord.check([store], async (client) => {
 *     await store.writeFile('invoice-17.pdf', pdf);
 *     await client.query('UPDATE invoices SET file = $1 WHERE id = 17', ['invoice-17.pdf']);
 *   });
 *
 * pg is not imported here: the app passes its own pool (pg stays an optional peer dependency).
 */
export { postgresCoordinator, type PostgresCoordinator, type CoordinatorOptions, type InDoubtQuery } from './coordinator.js';
export { postgresHooks, PostgresHooks, type PostgresHooksOptions } from './hooks.js';
export { SCHEMA_VERSION, type TableOptions, type TableRef } from './schema.js';
