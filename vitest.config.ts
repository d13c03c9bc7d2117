import { configDefaults, defineConfig } from 'vitest/config';

// Four projects share one pool of workers, and pick their files by folder:
// - 'local': every test file, on the local engine (io_uring), but the 3FS suites (test/hf3fs/*.test.ts);
// - 'fallback': the areas that exercise an engine (test/{core,kvcache,reliability}/*.test.ts) again, on
//   the local engine's portable fallback (the 'threads' engine), forced with THREEFS_CLIENT_ENGINE=threads;
// - 'hf3fs': those areas, the datasets and test/hf3fs/*.test.ts, on the hf3fs engine (USRBIO). Its global
//   setup starts the FUSE test daemon (test/hf3fs/daemon: 3FS's side of USRBIO, type fuse.hf3fs) and
//   loads the stand-in of 3FS's library (test/hf3fs/standin), or HF3FS_LIB=<a real one>; or uses a real
//   3FS mount when THREEFS_TEST_MOUNT names a directory on one (test/hf3fs/setup.ts, docs/3fs.md).
//   `npm test` runs in a private mount namespace when root (scripts/in-mount-namespace.mjs).
// - 'types': test/types/*.test-d.{ts,mts}, type-checked by tsc against the package's declarations.
// A test in a subfolder of an area (test/core/local/, test/hf3fs/standin/, ...) does not depend on the
// engine, or picks its own: it runs once, in the local project.
// Each project tells its test processes the engine through THREEFS_TEST_ENGINE and
// THREEFS_CLIENT_ENGINE (test/helpers/engine.ts).
// One engine only: THREEFS_TEST_ENGINE=local|fallback|hf3fs npm test, or npx vitest run --project hf3fs.

/** The suites that run on every engine: the top level of each area that drives an engine. */
const ENGINE_SUITES = ['test/{core,kvcache,reliability}/*.test.ts'];
/** The dataset suites: on the local and hf3fs engines. */
const DATASET_SUITES = ['test/datasets/*.test.ts'];

const only = process.env.THREEFS_TEST_ENGINE;
if (only !== undefined && only !== '' && only !== 'local' && only !== 'fallback' && only !== 'hf3fs') {
  throw new Error(`THREEFS_TEST_ENGINE must be 'local', 'fallback' or 'hf3fs', got '${only}'`);
}

// What both projects run with.
const common = {
  // A native addon with its own threads: one child process per test file, never worker threads.
  pool: 'forks' as const,
  // test/core/cleanup.test.ts checks that dropped buffers and files are collected; it needs global.gc.
  execArgv: ['--expose-gc'],
  // A sanitizer build of the addon (THREEFS_CLIENT_ADDON, npm run test:asan) runs 2-4x slower.
  testTimeout: process.env.THREEFS_CLIENT_ADDON ? 180_000 : 60_000,
  hookTimeout: process.env.THREEFS_CLIENT_ADDON ? 180_000 : 60_000,
};

const projects = [
  {
    test: {
      ...common,
      name: 'local',
      include: ['test/**/*.test.ts'],
      exclude: [...configDefaults.exclude, 'test/hf3fs/*.test.ts'],
      // io_uring here, whatever the shell says (where io_uring is refused, connect() falls back anyway).
      env: { THREEFS_TEST_ENGINE: 'local', THREEFS_CLIENT_ENGINE: '' },
    },
  },
  {
    test: {
      ...common,
      name: 'fallback',
      include: ENGINE_SUITES,
      env: { THREEFS_TEST_ENGINE: 'local', THREEFS_CLIENT_ENGINE: 'threads' },
    },
  },
  {
    test: {
      ...common,
      name: 'hf3fs',
      include: [...ENGINE_SUITES, ...DATASET_SUITES, 'test/hf3fs/*.test.ts'],
      globalSetup: ['test/hf3fs/setup.ts'],
      env: { THREEFS_TEST_ENGINE: 'hf3fs', THREEFS_CLIENT_ENGINE: '' },
    },
  },
  // The type tests (test/types/*.test-d.ts): tsc checks them against dist/'s declarations, nothing
  // runs. Not in the sanitizer runs (THREEFS_CLIENT_ADDON): the addon does not change the types.
  {
    test: {
      name: 'types',
      typecheck: { enabled: true, only: true, include: ['test/types/**/*.test-d.{ts,mts}'], tsconfig: 'test/types/tsconfig.json' },
    },
  },
].filter((p) => (!only || p.test.name === only) && !(p.test.name === 'types' && process.env.THREEFS_CLIENT_ADDON));
// Within the test processes THREEFS_TEST_ENGINE is 'local' for both embedded engines: the project's env says which.

// .ci/run names a file in THREEFS_TEST_FAILURES: the run's failed tests go there too, for the
// summary at the end of CI's log (scripts/ci-failures.mjs, scripts/ci-summary.mjs).
const reporters = process.env.THREEFS_TEST_FAILURES ? { reporters: ['default', './scripts/ci-failures.mjs'] } : {};

export default defineConfig({
  test: {
    ...common,
    ...reporters,
    watch: false,
    // The suite is I/O- and CPU-heavy and must fit a 2-core machine (both projects share the workers).
    maxWorkers: 2,
    projects,
  },
});
