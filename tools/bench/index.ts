// npm run bench: every workload of docs/BENCHMARKS.md on cpfile, raw node:fs and the peers, in one
// process, interleaved; prints a Markdown report (figures, ratios to raw fs, targets met or missed).
//
//   npm run bench                      the full run (about 10 minutes)
//   npm run bench -- --quick           tiny sizes
//   npm run bench -- --only P1 --subjects raw,cpfile --reps 10
//   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/tools/bench/index.js --only P4 --subjects cpfile
import { promises as fsp } from 'node:fs';
import { USAGE, parseArgs } from './config.js';
import { renderReport } from './report.js';
import { runBench } from './run.js';

async function main(): Promise<void> {
  const cli = parseArgs(process.argv.slice(2));
  if (cli.help) {
    process.stdout.write(USAGE);
    return;
  }
  const log = cli.config.verbose ? (msg: string): void => void process.stderr.write(`${msg}\n`) : (): void => undefined;
  const result = await runBench(cli.config, log);
  const md = renderReport(result);
  process.stdout.write(`${md}\n`);
  if (cli.out) await fsp.writeFile(cli.out, md);
  if (cli.json) await fsp.writeFile(cli.json, `${JSON.stringify(result, null, 2)}\n`);
  // A subject that timed out may still hold handles (a worker, timers): do not wait for them.
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
