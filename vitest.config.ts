import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A native addon with its own threads: one child process per test file, never worker threads.
    pool: 'forks',
    // test/cleanup.test.ts checks that dropped buffers and files are collected; it needs global.gc.
    execArgv: ['--expose-gc'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    watch: false,
    // The suite is I/O- and CPU-heavy and must fit a 2-core machine.
    maxWorkers: 2,
  },
});
