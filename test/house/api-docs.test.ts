// docs/api.md covers the public surface: every value the package exports (the list in
// test/fixtures/public-exports.json) is named there in code, under its own heading or in a line
// that links to its page. A new export fails here until the API page mentions it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, ROOT } from '../helpers';

const listed = JSON.parse(readFileSync(join(FIXTURES, 'public-exports.json'), 'utf8')) as { values: string[] };
const API = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');

/** The names that appear as identifiers inside the page's code spans (`...`). */
function namesInCode(markdown: string): Set<string> {
  const names = new Set<string>();
  for (const [, code] of markdown.matchAll(/`([^`]+)`/g)) for (const [id] of code.matchAll(/[A-Za-z_$][\w$]*/g)) names.add(id);
  return names;
}

describe('docs/api.md', () => {
  it('names every exported value in code', () => {
    const named = namesInCode(API);
    expect(listed.values.filter((n) => !named.has(n)), 'add these to docs/api.md').toEqual([]);
  });

  it('catches a name that is missing (the check can fail)', () => {
    expect(namesInCode('`connect(options?)` and `File`').has('open')).toBe(false);
    expect(namesInCode('`connect(options?)` and `File`').has('File')).toBe(true);
  });
});
