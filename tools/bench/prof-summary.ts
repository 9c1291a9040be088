// Summarise V8 .cpuprofile files (node --cpu-prof writes one per thread: the main thread and the
// flusher worker): where the time went, by function (self time) and by source file.
//
//   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/tools/bench/index.js --only P2 --subjects cpfile --reps 1
//   node dist/tools/bench/prof-summary.js /tmp/prof/*.cpuprofile [--top 25]
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function summarise(file: string, top: number): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const total = (p.endTime - p.startTime) / 1000;
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    const file = cf.url ? cf.url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/') : `(${cf.functionName || 'native'})`;
    const fn = `${cf.functionName || '(anonymous)'} ${cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : ''}`.trim();
    byFn.set(fn, (byFn.get(fn) ?? 0) + us / 1000);
    byFile.set(file, (byFile.get(file) ?? 0) + us / 1000);
  }
  const show = (title: string, m: Map<string, number>): void => {
    console.log(`  ${title}`);
    for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`    ${ms.toFixed(1).padStart(9)} ms ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
    }
  };
  console.log(`${path.basename(file)}: ${total.toFixed(0)} ms profiled, ${p.samples.length} samples`);
  show('self time by function', byFn);
  show('self time by file', byFile);
}

const args = process.argv.slice(2);
let top = 20;
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else files.push(args[i]!);
}
if (files.length === 0) {
  console.error('usage: node dist/tools/bench/prof-summary.js FILE.cpuprofile... [--top N]');
  process.exit(2);
}
for (const f of files) summarise(f, top);
