// Shared by the test files: the engine under test, a seeded PRNG, temporary directories, a
// reference model of a file's bytes, and process-level probes (open descriptors, memory).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { connect, ThreeFSError, type Client, type ClientOptions, type File, type IoOp } from '../lib/index';
import type { Hf3fsTestTarget } from './hf3fs/setup';

// ---------------------------------------------------------------------------------------------
// The engine under test. vitest.config.ts runs the File and batch suites three times: in the
// project 'local' (io_uring on local files), in 'fallback' (the thread pool on local files, forced
// by THREEFS_CLIENT_ENGINE=threads) and in the project 'hf3fs' (USRBIO on a 3FS mount: the
// test-only stand-in library, or a real mount named by THREEFS_TEST_MOUNT), each with its own
// THREEFS_TEST_ENGINE. test/hf3fs/setup.ts builds the stand-in and makes its mount.

export type Engine = 'local' | 'hf3fs';

/** 'hf3fs' when THREEFS_TEST_ENGINE=hf3fs (set by the hf3fs project), else 'local'. */
/** The repository's root, and the compiled library the tests' child processes load. */
export const ROOT = resolve(__dirname, '..');
export const DIST_LIB = join(ROOT, 'dist', 'lib');
/** Scripts and sources the tests run in child processes. */
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export const ENGINE: Engine = process.env.THREEFS_TEST_ENGINE === 'hf3fs' ? 'hf3fs' : 'local';

function hf3fsTarget(): Hf3fsTestTarget | undefined {
  if (ENGINE !== 'hf3fs') return undefined;
  const target = inject('hf3fs');
  if (!target) throw new Error('THREEFS_TEST_ENGINE=hf3fs: no 3FS mount was provided; run the tests through vitest.config.ts (test/hf3fs/setup.ts)');
  if (target.standin) {
    // The stand-in reads these at each call, the addon reads HF3FS_LIB when it loads the library;
    // child processes and worker threads of the tests inherit them.
    process.env.HF3FS_LIB = target.library;
    process.env.HF3FS_STANDIN_MOUNTS = target.standinMounts;
  }
  return target;
}

/** hf3fs: where the test files go (the mount point of the stand-in, or THREEFS_TEST_MOUNT). */
export const HF3FS: Hf3fsTestTarget | undefined = hf3fsTarget();
/** hf3fs: true when the target is the test-only stand-in (fault injection and its own checks work). */
export const STANDIN = HF3FS?.standin === true;
/**
 * Under npm run test:asan: the MiB of freed memory AddressSanitizer holds back on purpose (its
 * quarantine, to catch use after free), which RSS checks must allow for; 0 otherwise.
 */
export const ASAN_QUARANTINE_MIB = /libasan/.test(process.env.LD_PRELOAD ?? '') ? Number(/quarantine_size_mb=(\d+)/.exec(process.env.ASAN_OPTIONS ?? '')?.[1] ?? 256) : 0;

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

/** USRBIO iovs (/dev/shm/hf3fs-iov-* shared memory) mapped in this process, each counted once. */
export function iovMappings(): number {
  const names = new Set<string>();
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const at = line.indexOf('/hf3fs-iov-');
    if (at >= 0) names.add(line.slice(at));
  }
  return names.size;
}

/** The seed of every randomized test. Set THREEFS_TEST_SEED to replay a failure. */
export const SEED = process.env.THREEFS_TEST_SEED ? Number(process.env.THREEFS_TEST_SEED) : 0x3f5c11e;

/** mulberry32: a tiny, fast, seedable PRNG (uniform in [0, 1)). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  /** Random bytes (fast: 32 bits at a time). */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32LE((this.next() * 4294967296) >>> 0, i);
    for (; i < n; i++) out[i] = (this.next() * 256) | 0;
    return out;
  }
  fill(target: Uint8Array): void {
    target.set(this.bytes(target.byteLength));
  }
}

/** A seed for one test, derived from SEED and a label, so tests do not share streams. */
export function seedFor(label: string): number {
  let h = SEED >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x9e3779b1) >>> 0;
  return h;
}

/**
 * A fresh directory for a test file's files; remove it with cleanup(). Local: under os.tmpdir()
 * (ext4 here, so O_DIRECT works). hf3fs: under the 3FS mount (the stand-in's, or THREEFS_TEST_MOUNT).
 */
export function makeTmpDir(label: string): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(HF3FS?.mount ?? tmpdir(), `3fs-test-${label}-`));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What the bytes of a file should be: an independent model, updated only by the test. */
export class FileModel {
  private data: Buffer;
  size: number;
  constructor(initial: Buffer = Buffer.alloc(0)) {
    this.data = Buffer.alloc(Math.max(initial.length, 1 << 16));
    initial.copy(this.data);
    this.size = initial.length;
  }
  private reserve(n: number): void {
    if (n <= this.data.length) return;
    const grown = Buffer.alloc(Math.max(n, this.data.length * 2));
    this.data.copy(grown, 0, 0, this.size);
    this.data = grown;
  }
  write(offset: number, bytes: Uint8Array): void {
    this.reserve(offset + bytes.length);
    if (offset > this.size) this.data.fill(0, this.size, offset); // a hole reads as zeros
    this.data.set(bytes, offset);
    this.size = Math.max(this.size, offset + bytes.length);
  }
  truncate(length: number): void {
    this.reserve(length);
    if (length > this.size) this.data.fill(0, this.size, length);
    this.size = length;
  }
  /** What a read of `length` bytes at `offset` returns (shorter at the end of the file). */
  read(offset: number, length: number): Buffer {
    if (offset >= this.size) return Buffer.alloc(0);
    return Buffer.from(this.data.subarray(offset, Math.min(this.size, offset + length)));
  }
  contents(): Buffer {
    return Buffer.from(this.data.subarray(0, this.size));
  }
}

/** Open descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The names (comm) of this process's threads, one per thread. */
export function threadNames(): string[] {
  const names: string[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      names.push(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trimEnd());
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return names;
}

/**
 * Threads of this process, leaving out the kernel's io_uring workers (iou-wrk-*, iou-sqp-*): the
 * kernel starts them for punted requests of any ring of the process and reaps them after some
 * seconds idle, on its own schedule, so they would make every count racy.
 */
export function threadCount(): number {
  return threadNames().filter((n) => !n.startsWith('iou-')).length;
}

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

/** Threads of this library's engines (3fs-*) and of the stand-in's rings (hf3fs-daemon). */
export function engineThreadCount(): number {
  return threadNames().filter((n) => n.startsWith('3fs-') || n === 'hf3fs-daemon').length;
}

/**
 * threadCount() for a baseline taken while no client is open: first the threads of clients closed
 * just before (by the previous test) have left /proc, else the baseline is one high and a later
 * count that is exact looks like a thread lost.
 */
export async function baselineThreadCount(): Promise<number> {
  await eventually(engineThreadCount, 0);
  return threadCount();
}

export const MiB = 1 << 20;
export const KiB = 1 << 10;

/** Lets finalizers and pending callbacks run, then collects, a few times over. */
export async function collectGarbage(rounds = 4): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** First index where two byte arrays differ, or -1. For short failure messages. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  const A = Buffer.from(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
  const B = Buffer.from(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);
  const CHUNK = 64 * 1024;
  for (let at = 0; at < n; at += CHUNK) {
    const end = Math.min(n, at + CHUNK);
    if (A.compare(B, at, end, at, end) === 0) continue; // memcmp; byte by byte only where it differs
    for (let i = at; i < end; i++) if (A[i] !== B[i]) return i;
  }
  return a.length === b.length ? -1 : n;
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

/** The error a call throws or rejects with; fails the test when there is none or it is not a ThreeFSError. */
export async function failure(run: () => unknown): Promise<ThreeFSError> {
  let result: unknown;
  try {
    result = await run();
  } catch (e) {
    expect(e, `expected a ThreeFSError, got ${String(e)}`).toBeInstanceOf(ThreeFSError);
    expect(e).toBeInstanceOf(Error);
    return e as ThreeFSError;
  }
  throw new Error(`expected a failure, got ${JSON.stringify(result)}`);
}

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
