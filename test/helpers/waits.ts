// Waiting on events, not the clock: counts that settle, hangs that fail fast, a batch aborted
// mid-way whatever the machine's load.
import type { Client, File, IoOp } from '../../lib/index';

/**
 * `read()` once it gives `want`, or what it gives after 100 pauses (`pause`: 10 ms by default).
 * For counts that settle asynchronously: finalizers that run later, or a joined thread, which can
 * stay listed in /proc for a moment after pthread_join returns (the kernel wakes the joiner before
 * it reaps the thread), so a thread count taken just after close() can be one high.
 */
export async function eventually(read: () => number, want: number, pause: () => Promise<unknown> = () => sleep(10)): Promise<number> {
  let now = read();
  for (let i = 0; i < 100 && now !== want; i++) {
    await pause();
    now = read();
  }
  return now;
}

/** Runs `task(i)` for i in [0, count) with at most `limit` running at once. */
export async function pool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) await task(next++);
  });
  await Promise.all(runners);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts `ops` as one batchWrite on `file` and aborts it once the engine has written `n` of them
 * (client.metrics().writeOps): a stop in the middle of the batch however loaded the machine,
 * where a timer may fire before the first op is done or after the last. Resolves with what the
 * batch rejected with, or null if every op was done before the abort landed (try again).
 */
export async function writeThenAbort(client: Client, file: File, ops: IoOp[], n: number): Promise<unknown> {
  const ac = new AbortController();
  const base = client.metrics().writeOps;
  let settled = false;
  const pending = file
    .batchWrite(ops, { signal: ac.signal })
    .then(
      () => null,
      (e: unknown) => e,
    )
    .finally(() => (settled = true));
  while (!settled && client.metrics().writeOps - base < n) await new Promise((r) => setImmediate(r));
  ac.abort();
  return pending;
}

/**
 * How much longer things take under npm run test:asan (the sanitizer build of the addon runs 2-4x
 * slower; vitest.config.ts triples the test timeouts for it), else 1. Hang guards and the
 * timeouts of child processes are multiplied by it; no assertion on a duration is.
 */
export const TIME_SCALE = process.env.THREEFS_CLIENT_ADDON ? 3 : 1;

/**
 * `n` cycles of a leak or size test, a tenth of them under a sanitizer build: there each cycle
 * costs far more (an hf3fs iov creation, ten times), and a tenth still shows what the test looks for.
 */
export function scaledCount(n: number): number {
  return process.env.THREEFS_CLIENT_ADDON ? Math.max(1, Math.round(n / 10)) : n;
}

/**
 * Rejects, naming `what`, if `p` has not settled within `ms` (times TIME_SCALE): a hang fails the
 * test instead of stalling it.
 */
export function settledWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const limit = ms * TIME_SCALE;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still pending after ${limit} ms (hang)`)), limit);
    }),
  ]);
}
