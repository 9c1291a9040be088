/**
 * The file piscina loads in its worker thread: a CommonJS shim that imports the ES module
 * workers/flusher.js. Piscina first tries require() on its filename; on Node 20.19+ that
 * require()s an ES module graph, which now and then fails with "Unexpected status of a module that is
 * imported again after being required" when piscina then falls back to import(). A CommonJS file
 * require()s cleanly and the dynamic import below is the only way the ES module is loaded.
 */
type Run = (task: unknown) => Promise<unknown>;
let run: Run | null = null;

export = async function flusherEntry(task: unknown): Promise<unknown> {
  run ??= ((await import('./flusher.js')) as { default: Run }).default;
  return run(task);
};
