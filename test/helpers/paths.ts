// Where things are: the repository, the compiled library the tests' child processes load, fixtures.
import { join, resolve } from 'node:path';

/** The repository's root, and the compiled library the tests' child processes load. */
export const ROOT = resolve(__dirname, '..', '..');
export const DIST_LIB = join(ROOT, 'dist', 'lib');
/** Scripts and sources the tests run in child processes. */
export const FIXTURES = join(ROOT, 'test', 'fixtures');
