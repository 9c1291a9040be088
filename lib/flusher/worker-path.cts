/**
 * Where the flusher's worker-thread entry is, for both builds. A CommonJS file in both (hence .cts: it
 * has __dirname in the ES module build too, without import.meta, which the CommonJS build cannot
 * compile). This file lands in dist/lib/flusher/ (ES modules) or dist/cjs/flusher/ (CommonJS); from
 * either, two levels up is dist/, so both builds start the one worker, dist/workers/flusher-entry.cjs.
 */
import path = require('node:path');

export = path.join(__dirname, '..', '..', 'workers', 'flusher-entry.cjs');
