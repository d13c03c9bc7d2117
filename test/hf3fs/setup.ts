// Global setup of the vitest project 'hf3fs' (vitest.config.ts): where the hf3fs engine's tests
// put their files, and which USRBIO library they load. Runs once, in vitest's main process, before
// any test file of the project; test/helpers/engine.ts reads the answer with inject('hf3fs') and exports
// it to the test processes' environment (HF3FS_LIB, HF3FS_STANDIN_MOUNTS).
//
// - THREEFS_TEST_MOUNT=/a/dir/on/3fs: a real 3FS mount. No stand-in; the library is the one
//   HF3FS_LIB (or the dynamic linker) names.
// - otherwise: builds the test-only stand-in of libhf3fs_api_shared.so (test/hf3fs/standin) and makes a
//   stand-in mount under os.tmpdir(): a directory holding 3fs-virt/iovs, listed in
//   HF3FS_STANDIN_MOUNTS. Removed again at the end of the run.
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { buildStandin } from './standin/build';

export interface Hf3fsTestTarget {
  /** A directory on the mount: test files go in fresh directories under it. */
  mount: string;
  /** The USRBIO library to load ('' to let HF3FS_LIB and the dynamic linker decide). */
  library: string;
  /** True for the stand-in (test/hf3fs/standin), false for a real 3FS mount. */
  standin: boolean;
  /** The stand-in: the value of HF3FS_STANDIN_MOUNTS for the test processes. */
  standinMounts: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    hf3fs: Hf3fsTestTarget;
  }
}

export default function setup(project: TestProject): (() => void) | undefined {
  const real = process.env.THREEFS_TEST_MOUNT;
  if (real) {
    project.provide('hf3fs', { mount: realpathSync(real), library: process.env.HF3FS_LIB ?? '', standin: false, standinMounts: '' });
    return undefined;
  }
  const library = buildStandin();
  // realpath: the stand-in compares canonical paths, and os.tmpdir() may be a symlink.
  const root = realpathSync(mkdtempSync(join(tmpdir(), '3fs-standin-')));
  const mount = join(root, 'mnt');
  mkdirSync(join(mount, '3fs-virt', 'iovs'), { recursive: true });
  const standinMounts = [mount, process.env.HF3FS_STANDIN_MOUNTS].filter((m) => m).join(':');
  project.provide('hf3fs', { mount, library, standin: true, standinMounts });
  return () => rmSync(root, { recursive: true, force: true });
}
