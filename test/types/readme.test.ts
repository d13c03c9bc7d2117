// The README's examples (and docs/*.md's) compile as they are written: every ```ts and ```js block
// is type-checked by tsc as an ES module of a user's project, importing '3fs-client' through
// package.json's exports (dist/'s declarations). A block may be preceded by an HTML comment:
//   <!-- typecheck: fragment -->              not checked (a piece of a larger program);
//   <!-- typecheck: declare const rank: number; -->  declarations the block assumes, added after it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..', '..');

interface Example {
  /** README.md:39 (the line of the opening fence). */
  where: string;
  /** The line of the block's first line of code in its document. */
  line: number;
  code: string;
  /** What the block's comment declares, or null for a fragment. */
  context: string | null;
}

const FENCE = /^```(ts|typescript|js|javascript|mjs)\s*$/;
const MARK = /^<!--\s*typecheck:\s*([\s\S]*?)\s*-->$/;

/** The code blocks of a Markdown document, with the typecheck comment before each. */
export function examplesOf(markdown: string, name: string): Example[] {
  const lines = markdown.split('\n');
  const found: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!FENCE.test(lines[i])) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
    if (end < 0) throw new Error(`${name}:${i + 1}: the code block is not closed`);
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const mark = before >= 0 ? MARK.exec(lines[before].trim()) : null;
    const context = mark === null ? '' : mark[1] === 'fragment' ? null : mark[1];
    found.push({ where: `${name}:${i + 1}`, line: i + 2, code: lines.slice(i + 1, end).join('\n'), context });
    i = end;
  }
  return found;
}

const OPTIONS: ts.CompilerOptions = {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
  types: ['node'],
  strict: true,
  noEmit: true,
  skipLibCheck: true,
};

/**
 * tsc's errors for the examples, as "README.md:<line>: <message>". Each example is a file of its own
 * in the package's directory (so '3fs-client' resolves as in a user's project): the code, then the
 * context, so the code keeps its document's line numbers.
 */
export function typeErrors(examples: readonly Example[]): string[] {
  const files = new Map<string, Example>();
  for (const e of examples) files.set(join(ROOT, `${e.where.replace(/[/:]/g, '_')}.example.mts`), e);
  const text = (file: string) => {
    const e = files.get(file)!;
    return `${e.code}\n${e.context ?? ''}\nexport {};\n`;
  };
  const host = ts.createCompilerHost(OPTIONS);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
  host.readFile = (f) => (files.has(f) ? text(f) : readFile.call(host, f));
  host.getSourceFile = (f, lang, ...rest) => (files.has(f) ? ts.createSourceFile(f, text(f), lang) : getSourceFile.call(host, f, lang, ...rest));
  const program = ts.createProgram([...files.keys()], OPTIONS, host);
  const errors = ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    const e = d.file && files.get(d.file.fileName);
    if (!e || d.start === undefined) return { at: [d.file ? relative(ROOT, d.file.fileName) : 'tsc', 0] as const, message };
    const { line } = d.file!.getLineAndCharacterOfPosition(d.start);
    const doc = e.where.split(':')[0];
    return { at: [doc, e.line + line] as const, message: e.code.split('\n').length > line ? message : `${message} (in the typecheck comment of the block at ${e.where})` };
  });
  errors.sort((a, b) => a.at[0].localeCompare(b.at[0]) || a.at[1] - b.at[1]);
  return errors.map(({ at, message }) => `${at[0]}:${at[1]}: ${message}`);
}

function documents(): [string, string][] {
  const docs = existsSync(join(ROOT, 'docs')) ? readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`) : [];
  return ['README.md', ...docs].map((name) => [name, readFileSync(join(ROOT, name), 'utf8')]);
}

describe('the examples in the docs compile', () => {
  const examples = documents().flatMap(([name, text]) => examplesOf(text, name));

  it('finds the README example and the docs\' examples, and checks all but the marked fragments', () => {
    expect(examples.filter((e) => e.where.startsWith('README.md:')).length).toBeGreaterThanOrEqual(1);
    expect(examples.filter((e) => e.where.startsWith('docs/')).length).toBeGreaterThanOrEqual(6);
    expect(examples.filter((e) => e.context !== null).length).toBeGreaterThanOrEqual(6);
  });

  it('type-checks every example against the package types', () => {
    const errors = typeErrors(examples.filter((e) => e.context !== null));
    expect(errors, 'fix the example, or declare what it assumes in a <!-- typecheck: ... --> comment before it').toEqual([]);
  }, 120_000);

  it('reports an error at its line in the document, and honours the comments', () => {
    const doc = [
      '# Doc',
      '```ts',
      "import { connect } from '3fs-client';",
      "connect({ engine: 'nfs' });",
      '```',
      '<!-- typecheck: fragment -->',
      '```js',
      'this is not code',
      '```',
      '<!-- typecheck: declare const rank: number; -->',
      '```ts',
      'const next: number = rank + 1;',
      "const wrong: string = rank;",
      '```',
    ].join('\n');
    const found = examplesOf(doc, 'doc.md');
    expect(found.map((e) => [e.where, e.context])).toEqual([
      ['doc.md:2', ''],
      ['doc.md:7', null],
      ['doc.md:11', 'declare const rank: number;'],
    ]);
    const errors = typeErrors(found.filter((e) => e.context !== null));
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^doc\.md:4: Type '"nfs"' is not assignable/);
    expect(errors[1]).toMatch(/^doc\.md:13: Type 'number' is not assignable to type 'string'/);
  }, 120_000);
});
