/**
 * An IO module for the flusher worker (StoreOptions.workerIO): syncNodeIO, plus
 *   CPFILE_TEST_WORKER_LOG=<file>          append one line per call ("<call> <path>") to <file>
 *   CPFILE_TEST_WORKER_FAIL=<call>:<code>:<file>
 *                                          once <file> exists, the next <call> on a journal segment
 *                                          fails with <code> (once)
 *   CPFILE_TEST_WORKER_EXIT=<file>         once <file> exists, the next fdatasync of a journal segment
 *                                          ends the worker thread (process.exit in a worker)
 *   CPFILE_TEST_WORKER_THROW=<file>        once <file> exists, the next fdatasync of a journal segment
 *                                          throws an uncaught exception in the thread while its task
 *                                          is still out (as ERR_WORKER_OUT_OF_MEMORY would come)
 * Read when the worker loads this module (a worker's env is a copy taken at its start).
 */
import * as fs from 'node:fs';
import { syncNodeIO, type IO } from '../../lib/io.js';
import { interceptIO, injected, openedPath } from '../helpers/intercept-io.js';

const logFile = process.env.CPFILE_TEST_WORKER_LOG;
const [failCall, failCode, armFile] = (process.env.CPFILE_TEST_WORKER_FAIL ?? '::').split(':');
const exitArm = process.env.CPFILE_TEST_WORKER_EXIT;
const throwArm = process.env.CPFILE_TEST_WORKER_THROW;
let thrown = false;
let fired = false;
const fdPath = new Map<number, string>();

export const io: IO = interceptIO(async (call, args, next) => {
  const p = typeof args[0] === 'number' ? (fdPath.get(args[0]) ?? `fd ${args[0]}`) : String(args[0]);
  if (call === failCall && !fired && /seg-\d+\.cpj$/.test(p) && fs.existsSync(armFile)) {
    fired = true;
    if (logFile) fs.appendFileSync(logFile, `${call} ${p} FAILED ${failCode}\n`);
    throw injected(failCode, `the worker's ${call}`);
  }
  if (exitArm && call === 'fdatasync' && /seg-\d+\.cpj$/.test(p) && fs.existsSync(exitArm)) process.exit(7);
  if (throwArm && !thrown && call === 'fdatasync' && /seg-\d+\.cpj$/.test(p) && fs.existsSync(throwArm)) {
    thrown = true;
    setImmediate(() => {
      throw new Error('uncaught in the flusher thread');
    });
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await next();
  if (call === 'open') fdPath.set(r as number, openedPath(r as number, p));
  if (logFile) fs.appendFileSync(logFile, `${call} ${p}\n`);
  return r;
}, syncNodeIO);
