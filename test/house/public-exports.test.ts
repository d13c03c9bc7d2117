// The public surface is a decision, not a side effect: the names the CommonJS build
// (dist/lib/index.js) and the ESM entry (esm/index.mjs) export, and the types lib/index.ts exports,
// equal the lists in test/fixtures/public-exports.json. Adding or removing a name means editing
// that list in the same commit. esm/index.mjs is generated (scripts/gen-esm.mjs): the committed
// file must be what the generator writes from the CommonJS build.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { DIST_LIB, FIXTURES, ROOT } from '../helpers';

const LIST = join(FIXTURES, 'public-exports.json');
const listed = JSON.parse(readFileSync(LIST, 'utf8')) as { values: string[]; types: string[] };
const HOW = 'edit test/fixtures/public-exports.json if the change is meant (and run `npm run gen:esm`)';

/** Names a module exports, sorted (its default export and __esModule left out). */
const namesOf = (m: object) => Object.keys(m).filter((n) => n !== 'default' && n !== '__esModule').sort();

/** The value and type names lib/index.ts exports, by reading its export declarations. */
function sourceExports(): { values: string[]; types: string[] } {
  const file = join(ROOT, 'lib', 'index.ts');
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const values: string[] = [];
  const types: string[] = [];
  for (const s of sf.statements) {
    const exported = ts.isExportDeclaration(s) || (ts.canHaveModifiers(s) && ts.getModifiers(s)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword));
    if (!exported) continue;
    // Only `export { ... } from` lists: anything else (export *, a declaration) would hide names from review.
    if (!ts.isExportDeclaration(s) || !s.exportClause || !ts.isNamedExports(s.exportClause)) throw new Error(`lib/index.ts: export other than 'export { ... } from' at ${s.getText().slice(0, 60)}`);
    for (const e of s.exportClause.elements) (s.isTypeOnly || e.isTypeOnly ? types : values).push(e.name.text);
  }
  return { values: values.sort(), types: types.sort() };
}

describe('public exports', () => {
  it('the CommonJS build exports the listed values', async () => {
    const cjs = (await import(join(DIST_LIB, 'index.js'))) as object;
    expect(namesOf('default' in cjs ? (cjs.default as object) : cjs), HOW).toEqual(listed.values);
  });

  it('the ESM entry exports the same values, and the CommonJS module as its default', () => {
    // A real Node ESM import, not the test runner's module loader.
    const script = `import * as m from ${JSON.stringify(pathToFileURL(join(ROOT, 'esm', 'index.mjs')).href)};
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)(${JSON.stringify(join(DIST_LIB, 'index.js'))});
      console.log(JSON.stringify({ names: Object.keys(m), sameDefault: m.default === cjs, sameClass: m.ThreeFSError === cjs.ThreeFSError }));`;
    const got = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { names: string[]; sameDefault: boolean; sameClass: boolean };
    expect(got.names.filter((n) => n !== 'default').sort(), HOW).toEqual(listed.values);
    expect(got.sameDefault).toBe(true);
    expect(got.sameClass).toBe(true);
  });

  it('lib/index.ts exports the listed values and types', () => {
    expect(sourceExports(), HOW).toEqual(listed);
  });

  it('esm/index.mjs is what scripts/gen-esm.mjs writes from the CommonJS build', async () => {
    const gen = (await import(pathToFileURL(join(ROOT, 'scripts', 'gen-esm.mjs')).href)) as { cjsExportNames: () => string[]; esmSource: (names: string[]) => string };
    const committed = readFileSync(join(ROOT, 'esm', 'index.mjs'), 'utf8');
    const names = gen.cjsExportNames();
    expect(committed, 'esm/index.mjs is stale: run `npm run gen:esm`').toBe(gen.esmSource(names));
    // The comparison can fail: a name missing from the build changes the text.
    expect(gen.esmSource(names.slice(1))).not.toBe(committed);
  });
});
