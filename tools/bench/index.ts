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
import { renderP9, runP9 } from './p9-postgres.js';
import { writeCharts } from './charts.js';

async function main(): Promise<void> {
  const cli = parseArgs(process.argv.slice(2));
  if (cli.help) {
    process.stdout.write(USAGE);
    return;
  }
  const log = cli.config.verbose ? (msg: string): void => void process.stderr.write(`${msg}\n`) : (): void => undefined;
  const onlyP9 = cli.config.only.length === 1 && cli.config.only[0] === 'P9';
  const result = onlyP9 ? null : await runBench(cli.config, log);
  // P9 needs a PostgreSQL server (a private one, or $DATABASE_URL): its own section after the others.
  const p9 = cli.config.only.includes('P9') ? await runP9({ commits: cli.config.p9Commits, reps: cli.config.reps.P9, log }) : null;
  const md = [result ? renderReport(result) : '', p9 ? renderP9(p9) : ''].filter(Boolean).join('\n');
  process.stdout.write(`${md}\n`);
  if (cli.out) await fsp.writeFile(cli.out, md);
  if (cli.json) await fsp.writeFile(cli.json, `${JSON.stringify({ ...result, p9 }, null, 2)}\n`);
  if (result && cli.charts) {
    for (const f of await writeCharts(result, cli.charts)) process.stderr.write(`bench: chart ${f}\n`);
  }
  // A subject that timed out may still hold handles (a worker, timers): do not wait for them.
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
