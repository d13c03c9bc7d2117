// The engine under test: each vitest project names it in THREEFS_TEST_ENGINE (and forces the threads
// engine with THREEFS_CLIENT_ENGINE); on hf3fs, test/hf3fs/setup.ts provides the mount (a stand-in
// of 3FS's library on the test daemon's mount, or a real mount named by THREEFS_TEST_MOUNT).
import { afterAll, beforeAll, inject } from 'vitest';
import { connect, type Client, type ClientOptions } from '../../lib/index';
import { withDaemonFaults } from '../hf3fs/daemon/daemon';
import type { Hf3fsTestTarget } from '../hf3fs/setup';

export type Engine = 'local' | 'hf3fs';

/** 'hf3fs' when THREEFS_TEST_ENGINE=hf3fs (set by the hf3fs project), else 'local'. */
export const ENGINE: Engine = process.env.THREEFS_TEST_ENGINE === 'hf3fs' ? 'hf3fs' : 'local';

function hf3fsTarget(): Hf3fsTestTarget | undefined {
  if (ENGINE !== 'hf3fs') return undefined;
  const target = inject('hf3fs');
  if (!target) throw new Error('THREEFS_TEST_ENGINE=hf3fs: no 3FS mount was provided; run the tests through vitest.config.ts (test/hf3fs/setup.ts)');
  // The stand-in reads HF3FS_STANDIN_MOUNTS at each call, the addon reads HF3FS_LIB when it loads
  // the library; child processes and worker threads of the tests inherit them.
  if (target.library) process.env.HF3FS_LIB = target.library;
  if (target.standin) process.env.HF3FS_STANDIN_MOUNTS = target.standinMounts;
  return target;
}

/** hf3fs: where the test files go (the test daemon's mount, the stand-in's, or THREEFS_TEST_MOUNT). */
export const HF3FS: Hf3fsTestTarget | undefined = hf3fsTarget();
/** hf3fs: true when the library is the test-only stand-in (its own checks and HF3FS_STANDIN_FAIL_PREP work). */
export const STANDIN = HF3FS?.standin === true;
/** hf3fs: the test daemon's fault directory when the mount is the test daemon's ('' otherwise). */
export const DAEMON_CONTROL = HF3FS?.daemonControl ?? '';

/**
 * A client of the engine under test: `connect(options)` plus `mount` on hf3fs. An explicit
 * `engine: 'local'` is left alone.
 */
export function testConnect(options: ClientOptions = {}): Client {
  if (ENGINE === 'local' || options.engine === 'local') return connect(options);
  return connect({ mount: HF3FS!.mount, ...options });
}

/** Runs `body` with a client of the engine under test, closed afterwards whatever happens. */
export async function withClient(body: (client: Client) => Promise<void>): Promise<void> {
  const client = testConnect();
  try {
    await body(client);
  } finally {
    await client.close();
  }
}

/**
 * The embedded engine under test: 'threads' (the portable fallback) in the project 'fallback',
 * which forces it with THREEFS_CLIENT_ENGINE=threads, else 'io_uring'.
 */
export const EMBEDDED = process.env.THREEFS_CLIENT_ENGINE === 'threads' ? 'threads' : 'io_uring';
/** True when the engine under test is the thread pool: io_uring's own features (fixed buffers) are absent. */
export const THREADS = ENGINE === 'local' && EMBEDDED === 'threads';

/**
 * Hooks of a test file (or describe block): before its tests a client of the engine under test,
 * handed to `set`; after them the client is closed and `tmp` removed.
 */
export function withTestClient(set: (client: Client) => void, tmp?: { cleanup: () => void }, options?: ClientOptions): void {
  let client: Client | undefined;
  beforeAll(() => set((client = testConnect(options))));
  afterAll(async () => {
    await client?.close();
    tmp?.cleanup();
  });
}

/** The name File.stat().engine and ClientInfo.engine report for the engine under test. */
export const ENGINE_NAME = ENGINE === 'hf3fs' ? 'usrbio' : EMBEDDED;

/** Runs `body` with environment variables set (the stand-in reads them at each call), then restores them. */
export async function withEnv<T>(vars: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await body();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** hf3fs: true when ring IO can be made to fail or stall (withIoFaults): the test daemon, or the stand-in's in-process mode. */
export const IO_FAULTS = DAEMON_CONTROL !== '' || STANDIN;

/**
 * Runs `body` while every ring IO of this process fails with -errno and/or waits delayUs first:
 * injected by the test daemon (its fault file for this pid), or by the stand-in's in-process mode
 * (HF3FS_STANDIN_FAIL_IO / HF3FS_STANDIN_DELAY_US). Needs IO_FAULTS.
 */
export async function withIoFaults<T>(faults: { errno?: number; delayUs?: number }, body: () => Promise<T>): Promise<T> {
  if (DAEMON_CONTROL) return withDaemonFaults(DAEMON_CONTROL, { readErrno: faults.errno, writeErrno: faults.errno, delayUs: faults.delayUs }, body);
  const vars: Record<string, string> = {};
  if (faults.errno) vars.HF3FS_STANDIN_FAIL_IO = String(faults.errno);
  if (faults.delayUs) vars.HF3FS_STANDIN_DELAY_US = String(faults.delayUs);
  return withEnv(vars, body);
}
