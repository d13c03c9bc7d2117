// Imports go one way. Every source file of lib/, cli/ and bench/ is read (import, export ... from,
// import(), require()), and the test fails on a cycle or on an import against the layers:
//   lib:   core < config, hf3fs < clients.ts < kvcache, datasets, whole-file.ts < doctor < index.ts
//          (a module imports its own layer or lower; config/hf3fs and kvcache/datasets/whole-file.ts
//          are siblings that never import each other)
//   cli -> lib/index.ts and bench/index.ts only; bench -> lib/index.ts only; lib -> neither;
//   bench: support < output, tools < sections < run.ts < index.ts (output and tools are siblings).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..', '..');
const TREES = ['lib', 'cli', 'bench'];

/** Where a file sits: its tree, its group within the tree, and the group's rank (lower imports nothing higher). */
interface Place {
  tree: string;
  group: string;
  rank: number;
}

const LIB: [RegExp, string, number][] = [
  [/^lib\/core\//, 'core', 0],
  [/^lib\/config\//, 'config', 1],
  [/^lib\/hf3fs\//, 'hf3fs', 1],
  [/^lib\/clients\.ts$/, 'clients', 2],
  [/^lib\/kvcache\//, 'kvcache', 3],
  [/^lib\/datasets\//, 'datasets', 3],
  [/^lib\/whole-file\.ts$/, 'whole-file', 3],
  [/^lib\/doctor\//, 'doctor', 4],
  [/^lib\/index\.ts$/, 'index', 5],
];
const BENCH: [RegExp, string, number][] = [
  [/^bench\/support\//, 'support', 0],
  [/^bench\/output\//, 'output', 1],
  [/^bench\/tools\//, 'tools', 1],
  [/^bench\/sections\//, 'sections', 2],
  [/^bench\/run\.ts$/, 'run', 3],
  [/^bench\/index\.ts$/, 'index', 4],
];

/** The place of a repository-relative path, or undefined for a file no layer names. */
export function placeOf(file: string): Place | undefined {
  if (file.startsWith('cli/')) return { tree: 'cli', group: 'cli', rank: 0 };
  const table = file.startsWith('lib/') ? LIB : file.startsWith('bench/') ? BENCH : [];
  const hit = table.find(([re]) => re.test(file));
  return hit && { tree: file.split('/')[0], group: hit[1], rank: hit[2] };
}

/** What `from` may not import `to` for, or undefined when the import goes the right way. */
export function violation(from: string, to: string): string | undefined {
  const a = placeOf(from);
  const b = placeOf(to);
  if (!a) return `${from} is in no layer (add it to the table in test/house/imports.test.ts)`;
  if (!b) return `${to} is in no layer (add it to the table in test/house/imports.test.ts)`;
  if (a.tree !== b.tree) {
    if (a.tree === 'lib') return `lib/ never imports ${b.tree}/`;
    if (a.tree === 'bench' && b.tree === 'cli') return 'bench/ never imports cli/';
    if (to !== `${b.tree}/index.ts`) return `${a.tree}/ imports ${b.tree}/ only through ${b.tree}/index.ts`;
    return undefined;
  }
  if (b.rank > a.rank) return `${a.group} (layer ${a.rank}) imports ${b.group} (layer ${b.rank}), a higher layer`;
  if (b.rank === a.rank && b.group !== a.group) return `${a.group} and ${b.group} are siblings: neither imports the other`;
  return undefined;
}

/** The module specifiers a TypeScript source names: import, export ... from, import(), require(), import x = require(). */
export function specifiersOf(source: string, name = 'x.ts'): string[] {
  const sf = ts.createSourceFile(name, source, ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) out.push(n.moduleSpecifier.text);
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) out.push(n.moduleReference.expression.text);
    else if (ts.isCallExpression(n) && n.arguments.length >= 1 && ts.isStringLiteralLike(n.arguments[0])) {
      const callee = n.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) out.push(n.arguments[0].text);
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) out.push(n.argument.literal.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** A relative specifier of `from` as a repository-relative .ts path; undefined for packages and node: modules. */
function resolveSpecifier(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(ROOT, dirname(from), spec);
  for (const candidate of [`${base}.ts`, join(base, 'index.ts'), base]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return relative(ROOT, candidate).split('\\').join('/');
  }
  throw new Error(`${from}: cannot resolve '${spec}'`);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every source file and the repository files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of TREES.flatMap(sourceFiles)) {
    const specs = specifiersOf(readFileSync(join(ROOT, file), 'utf8'), file);
    graph.set(file, [...new Set(specs.map((s) => resolveSpecifier(file, s)).filter((t): t is string => t !== undefined))]);
  }
  return graph;
}

/** The cycles of a graph, each as the path that closes it (a -> b -> a). */
export function cyclesOf(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') found.push([...stack.slice(stack.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return found;
}

describe('imports go one way', () => {
  const graph = importGraph();

  it('reads every source file of lib/, cli/ and bench/', () => {
    for (const tree of TREES) expect([...graph.keys()].filter((f) => f.startsWith(`${tree}/`)).length).toBeGreaterThan(0);
    expect(graph.get('cli/main.ts')).toContain('cli/bench.ts');
  });

  it('has no import cycle', () => {
    expect(cyclesOf(graph).map((c) => c.join(' -> '))).toEqual([]);
  });

  it('has no import against the layers', () => {
    const wrong = [...graph].flatMap(([from, tos]) => tos.flatMap((to) => {
      const why = violation(from, to);
      return why ? [`${from} -> ${to}: ${why}`] : [];
    }));
    expect(wrong).toEqual([]);
  });
});

describe('the checker itself', () => {
  it('reads every form of import', () => {
    const src = [
      "import a from './a';",
      "import type { B } from './b';",
      "export { c } from './c';",
      "export * from './d';",
      "const e = await import('./e');",
      "const f = require('./f');",
      "import g = require('./g');",
      "type H = typeof import('./h');",
      "import 'node:fs';",
      "const notImport = load('./x');",
    ].join('\n');
    expect(specifiersOf(src)).toEqual(['./a', './b', './c', './d', './e', './f', './g', './h', 'node:fs']);
  });

  it('finds a cycle, and a longer one', () => {
    const g = new Map([['a', ['b']], ['b', ['a']], ['c', ['d']], ['d', ['e']], ['e', ['c']], ['f', ['a']]]);
    expect(cyclesOf(g).map((c) => c.join(' -> '))).toEqual(['a -> b -> a', 'c -> d -> e -> c']);
    expect(cyclesOf(new Map([['a', ['b']], ['b', []]]))).toEqual([]);
  });

  it('refuses imports against the layers', () => {
    expect(violation('lib/core/file.ts', 'lib/kvcache/kvcache.ts')).toMatch(/higher layer/);
    expect(violation('lib/kvcache/put.ts', 'lib/datasets/loader.ts')).toMatch(/siblings/);
    expect(violation('lib/config/config.ts', 'lib/hf3fs/mounts.ts')).toMatch(/siblings/);
    expect(violation('lib/index.ts', 'bench/index.ts')).toMatch(/lib\/ never imports bench/);
    expect(violation('lib/doctor/doctor.ts', 'cli/main.ts')).toMatch(/lib\/ never imports cli/);
    expect(violation('bench/run.ts', 'cli/main.ts')).toMatch(/bench\/ never imports cli/);
    expect(violation('bench/sections/micro.ts', 'lib/kvcache/kvcache.ts')).toMatch(/only through lib\/index\.ts/);
    expect(violation('cli/bench.ts', 'bench/run.ts')).toMatch(/only through bench\/index\.ts/);
    expect(violation('bench/support/stats.ts', 'bench/sections/kvcache/table.ts')).toMatch(/higher layer/);
    expect(violation('bench/output/report.ts', 'bench/sections/micro.ts')).toMatch(/higher layer/);
    expect(violation('bench/output/html.ts', 'bench/tools/fio.ts')).toMatch(/siblings/);
    expect(violation('lib/stray.ts', 'lib/core/file.ts')).toMatch(/in no layer/);
  });

  it('lets imports go down and within a group', () => {
    expect(violation('lib/kvcache/put.ts', 'lib/core/file.ts')).toBeUndefined();
    expect(violation('lib/kvcache/put.ts', 'lib/kvcache/slot-pool.ts')).toBeUndefined();
    expect(violation('lib/index.ts', 'lib/doctor/doctor.ts')).toBeUndefined();
    expect(violation('cli/bench.ts', 'bench/index.ts')).toBeUndefined();
    expect(violation('cli/doctor.ts', 'lib/index.ts')).toBeUndefined();
    expect(violation('bench/sections/micro.ts', 'bench/sections/kvcache/payloads.ts')).toBeUndefined();
    expect(violation('bench/run.ts', 'bench/support/units.ts')).toBeUndefined();
  });
});
