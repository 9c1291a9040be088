// The layout's promises (README "Development"): no import cycle in lib/ (type-only imports aside), no
// file in lib/ over about 400 lines and no function over about 80, except where EXCEPTIONS says why.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { expect } from 'chai';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// "about 400": a file may run a few lines over while it holds one job
const FILE_LINES = 410;
const FUNCTION_LINES = 80;
/** file (or file:function) -> why it may be longer */
const EXCEPTIONS: Record<string, string> = {
  'lib/format.ts': 'the one place every constant and codec of the on-disk format lives (FORMAT.md): splitting it would split the contract',
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (/\.c?ts$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out.sort();
}

function parse(rel: string): ts.SourceFile {
  return ts.createSourceFile(rel, readFileSync(path.join(root, rel), 'utf8'), ts.ScriptTarget.Latest, true);
}

/** The modules `rel` imports at run time (type-only imports and re-exports of types left out). */
function runtimeImports(src: ts.SourceFile, rel: string): string[] {
  const out: string[] = [];
  const add = (spec: string): void => {
    if (!spec.startsWith('.')) return;
    out.push(path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\.js$/, '.ts').replace(/\.cjs$/, '.cts'));
  };
  for (const st of src.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      const c = st.importClause;
      if (c?.isTypeOnly) continue;
      const named = c?.namedBindings;
      if (c && !c.name && named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)) continue;
      add(st.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier) && !st.isTypeOnly) {
      add(st.moduleSpecifier.text);
    }
  }
  return out;
}

describe('layout: the shape README promises', () => {
  const files = [...sources('lib'), ...sources('workers')];

  it('lib/ and workers/ have no import cycle', () => {
    const graph = new Map(files.map((f) => [f, runtimeImports(parse(f), f)]));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...stack.slice(stack.indexOf(f)), f].join(' -> '));
        return;
      }
      state.set(f, 'open');
      stack.push(f);
      for (const g of graph.get(f) ?? []) if (graph.has(g)) visit(g);
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) visit(f);
    expect(cycles).to.deep.equal([]);
  });

  it(`no file in lib/ over about 400 lines (${FILE_LINES}) unless EXCEPTIONS says why`, () => {
    const long = files
      .map((f) => ({ f, n: readFileSync(path.join(root, f), 'utf8').split('\n').length - 1 }))
      .filter(({ f, n }) => n > FILE_LINES && !EXCEPTIONS[f])
      .map(({ f, n }) => `${f}: ${n} lines`);
    expect(long).to.deep.equal([]);
  });

  it(`no function over ${FUNCTION_LINES} lines unless EXCEPTIONS says why`, () => {
    const long: string[] = [];
    for (const f of files) {
      const src = parse(f);
      const visit = (n: ts.Node): void => {
        if ((ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n) || ts.isGetAccessor(n)) && n.body) {
          const a = src.getLineAndCharacterOfPosition(n.getStart()).line;
          const b = src.getLineAndCharacterOfPosition(n.end).line;
          const name = (n as { name?: ts.Node }).name?.getText(src) ?? `(function at line ${a + 1})`;
          if (b - a + 1 > FUNCTION_LINES && !EXCEPTIONS[`${f}:${name}`]) long.push(`${f}:${name} (line ${a + 1}): ${b - a + 1} lines`);
        }
        ts.forEachChild(n, visit);
      };
      visit(src);
    }
    expect(long).to.deep.equal([]);
  });
});
