import { configDefaults, defineConfig } from 'vitest/config';

// Three projects share one pool of workers:
// - 'local': every test file, on the local engine (io_uring);
// - 'fallback': the File and batch suites again, on the local engine's portable fallback (the
//   'threads' engine: pread/pwrite on native threads), forced with THREEFS_CLIENT_ENGINE=threads;
// - 'hf3fs': the File and batch suites again, plus test/hf3fs.test.ts, on the hf3fs engine (USRBIO).
//   Its global setup builds the test-only stand-in of 3FS's library and makes a stand-in mount, or
//   uses a real 3FS mount when THREEFS_TEST_MOUNT names a directory on one (test/global-setup.ts).
// Each project tells its test processes the engine through THREEFS_TEST_ENGINE and
// THREEFS_CLIENT_ENGINE (test/helpers.ts).
// One engine only: THREEFS_TEST_ENGINE=local|fallback|hf3fs npm test, or npx vitest run --project hf3fs.

/** The suites that run on every engine. */
const ENGINE_SUITES = ['test/oracle.test.ts', 'test/checksum.test.ts', 'test/op-order.test.ts', 'test/errors.test.ts', 'test/concurrency.test.ts', 'test/cleanup.test.ts', 'test/api.test.ts', 'test/kvcache.test.ts', 'test/kvcache-crash.test.ts', 'test/metrics.test.ts', 'test/reliability/fuzz.test.ts', 'test/reliability/faults.test.ts', 'test/reliability/soak.test.ts', 'test/reliability/crash.test.ts'];

const only = process.env.THREEFS_TEST_ENGINE;
if (only !== undefined && only !== '' && only !== 'local' && only !== 'fallback' && only !== 'hf3fs') {
  throw new Error(`THREEFS_TEST_ENGINE must be 'local', 'fallback' or 'hf3fs', got '${only}'`);
}

// What both projects run with.
const common = {
  // A native addon with its own threads: one child process per test file, never worker threads.
  pool: 'forks' as const,
  // test/cleanup.test.ts checks that dropped buffers and files are collected; it needs global.gc.
  execArgv: ['--expose-gc'],
  // A sanitizer build of the addon (THREEFS_CLIENT_ADDON, npm run test:asan) runs 2-4x slower.
  testTimeout: process.env.THREEFS_CLIENT_ADDON ? 180_000 : 60_000,
  hookTimeout: process.env.THREEFS_CLIENT_ADDON ? 180_000 : 60_000,
};

/** The dataset suites (ffrecord, loader, range reader, safetensors): on both engines too. */
const DATASET_SUITES = ['test/ffrecord.test.ts', 'test/loader.test.ts', 'test/range-reader.test.ts', 'test/safetensors.test.ts'];

const projects = [
  {
    test: {
      ...common,
      name: 'local',
      include: ['test/**/*.test.ts'],
      exclude: [...configDefaults.exclude, 'test/hf3fs.test.ts'],
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
      include: [...ENGINE_SUITES, ...DATASET_SUITES, 'test/hf3fs.test.ts'],
      globalSetup: ['test/global-setup.ts'],
      env: { THREEFS_TEST_ENGINE: 'hf3fs', THREEFS_CLIENT_ENGINE: '' },
    },
  },
].filter((p) => !only || p.test.name === only);
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
