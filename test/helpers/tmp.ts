// Temporary directories for a test file's files, on the file system of the engine under test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HF3FS } from './engine';

/**
 * A fresh directory for a test file's files; remove it with cleanup(). Local: under os.tmpdir()
 * (ext4 here, so O_DIRECT works). hf3fs: under the 3FS mount (the stand-in's, or THREEFS_TEST_MOUNT).
 */
export function makeTmpDir(label: string): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(HF3FS?.mount ?? tmpdir(), `3fs-test-${label}-`));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
