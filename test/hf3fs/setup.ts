// Global setup of the vitest project 'hf3fs' (vitest.config.ts): where the hf3fs engine's tests
// put their files, and which USRBIO library they load. Runs once, in vitest's main process, before
// any test file of the project; test/helpers/engine.ts reads the answer with inject('hf3fs') and exports
// it to the test processes' environment (HF3FS_LIB, HF3FS_STANDIN_MOUNTS).
//
// - THREEFS_TEST_MOUNT=/a/dir/on/3fs: a real 3FS mount. No daemon; the library is the one
//   HF3FS_LIB (or the dynamic linker) names.
// - otherwise: starts the test FUSE daemon (test/hf3fs/daemon) on a mount under os.tmpdir(), type
//   fuse.hf3fs, which plays 3FS's side of USRBIO. The library is the stand-in (test/hf3fs/standin, in
//   its protocol mode), or HF3FS_LIB=<a real libhf3fs_api_shared.so> (docs/3fs.md). Stopped and
//   removed at the end of the run.
// - where the daemon cannot run (not root, no /dev/fuse, no libfuse3): the stand-in's in-process
//   mode on a plain directory listed in HF3FS_STANDIN_MOUNTS, saying why.
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { daemonUnavailable, startDaemon, sweepStaleMounts } from './daemon/daemon';
import { buildStandin } from './standin/build';

export interface Hf3fsTestTarget {
  /** A directory on the mount: test files go in fresh directories under it. */
  mount: string;
  /** The USRBIO library to load ('' to let HF3FS_LIB and the dynamic linker decide). */
  library: string;
  /** True when the library is the stand-in (test/hf3fs/standin), false for a real 3FS library. */
  standin: boolean;
  /** The value of HF3FS_STANDIN_MOUNTS for the test processes ('' if none). */
  standinMounts: string;
  /** The test daemon's fault directory, '' when the mount is not the test daemon's. */
  daemonControl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    hf3fs: Hf3fsTestTarget;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const real = process.env.THREEFS_TEST_MOUNT;
  if (real) {
    project.provide('hf3fs', { mount: realpathSync(real), library: process.env.HF3FS_LIB ?? '', standin: false, standinMounts: '', daemonControl: '' });
    return undefined;
  }
  const given = process.env.HF3FS_LIB ?? '';
  const library = given || buildStandin();
  // realpath: mount points are compared canonically, and os.tmpdir() may be a symlink.
  const parent = realpathSync(tmpdir());
  sweepStaleMounts(parent);
  const root = mkdtempSync(join(parent, '3fs-hf3fs-'));
  const why = daemonUnavailable();
  const shmBefore = usrbioShm();
  if (why === '') {
    const daemon = await startDaemon(root);
    project.provide('hf3fs', { mount: daemon.mount, library, standin: !given, standinMounts: process.env.HF3FS_STANDIN_MOUNTS ?? '', daemonControl: daemon.control });
    return async () => {
      await daemon.stop();
      rmSync(root, { recursive: true, force: true });
      nothingLeftIn(shmBefore);
    };
  }
  if (given) throw new Error(`HF3FS_LIB runs the hf3fs tests on the test daemon's mount, and ${why}`);
  console.warn(`[hf3fs] ${why}: the hf3fs project runs on the stand-in's in-process mode instead`);
  const mount = join(root, 'mnt');
  mkdirSync(join(mount, '3fs-virt', 'iovs'), { recursive: true });
  const standinMounts = [mount, process.env.HF3FS_STANDIN_MOUNTS].filter((m) => m).join(':');
  project.provide('hf3fs', { mount, library, standin: true, standinMounts, daemonControl: '' });
  return async () => {
    rmSync(root, { recursive: true, force: true });
    nothingLeftIn(shmBefore);
  };
}

/** USRBIO's files in /dev/shm: iovs, and the daemon's semaphores. */
function usrbioShm(): Set<string> {
  return new Set(readdirSync('/dev/shm').filter((name) => name.startsWith('hf3fs-iov-') || name.startsWith('sem.hf3fs-')));
}

/**
 * Fails the run if it left USRBIO files in /dev/shm, where nothing else would ever remove them.
 * They are named, not removed: another process on the machine may have made them meanwhile. (An
 * error thrown by a teardown is printed, but vitest's exit code stays 0.)
 */
function nothingLeftIn(before: Set<string>): void {
  const left = [...usrbioShm()].filter((name) => !before.has(name));
  if (left.length === 0) return;
  console.error(`[hf3fs] FAILED: the tests left ${left.length} files in /dev/shm: ${left.join(', ')}`);
  process.exitCode = 1;
}
