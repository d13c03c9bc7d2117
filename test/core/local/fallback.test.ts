// How a client picks its local engine, and says so: io_uring, or the thread pool ('threads') when
// io_uring_setup is refused or the `engine` option or THREEFS_CLIENT_ENGINE asks for it. The
// automatic fallback runs in child processes under a seccomp filter that refuses io_uring_setup
// (test/fixtures/no-io-uring.c), as Docker's default profile does. The File and batch suites
// themselves run on the thread pool in the project 'fallback' (vitest.config.ts).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../lib/config/config';
import { connect, type ClientOptions } from '../../../lib/index';
import { native } from '../../../lib/core/native';
import { baselineThreadCount, DIST_LIB, eventually, failure, FIXTURES, ROOT, KiB, makeTmpDir, Rng, seedFor, threadCount, threadNames } from '../../helpers';
import { buildNoIoUring } from '../../hf3fs/standin/build';

const tmp = makeTmpDir('fallback');
afterAll(() => tmp.cleanup());

const ioUringHere = native().ioUringProbe().available;
const gcc = spawnSync('gcc', ['--version']).status === 0;

// Each test sets THREEFS_CLIENT_ENGINE as it needs; none leaks into the next.
const envBefore = process.env.THREEFS_CLIENT_ENGINE;
afterEach(() => {
  if (envBefore === undefined) delete process.env.THREEFS_CLIENT_ENGINE;
  else process.env.THREEFS_CLIENT_ENGINE = envBefore;
});

function dataFile(name: string, size: number): { path: string; content: Buffer } {
  const path = tmp.path(name);
  const content = new Rng(seedFor(name)).bytes(size);
  writeFileSync(path, content);
  return { path, content };
}

/** engine and engineReason of a client, from info() and from a file's stat(). */
async function said(options: ClientOptions): Promise<{ engine: string; engineReason: string | null }> {
  const c = connect(options);
  try {
    const { engine, engineReason } = c.info();
    const f = await c.open(tmp.path('said'), 'w+');
    const st = await f.stat();
    expect({ engine: st.engine, engineReason: st.engineReason }).toEqual({ engine, engineReason });
    await f.close();
    return { engine, engineReason };
  } finally {
    await c.close();
  }
}

describe('forcing the thread pool', () => {
  it("engine: 'threads': info() and stat() say so, and reads and writes agree with node:fs", async () => {
    const { path, content } = dataFile('forced', 1024 * KiB + 123);
    const c = connect({ engine: 'threads', queueDepth: 16 });
    expect(c.info()).toMatchObject({ engine: 'threads', engineReason: "engine: 'threads'", registeredBuffers: 0 });
    const f = await c.open(path, 'r+');
    expect(await f.stat()).toMatchObject({ engine: 'threads', engineReason: "engine: 'threads'" });
    // Aligned ops (O_DIRECT where it is active), unaligned ones, one across the end of the file, one past it.
    const mem = c.alloc(4 * 256 * KiB);
    const ops = [
      { buffer: mem.subarray(0, 256 * KiB), fileOffset: 0 },
      { buffer: mem.subarray(256 * KiB, 256 * KiB + 777), fileOffset: 4097 },
      { buffer: mem.subarray(512 * KiB, 768 * KiB), fileOffset: content.length - 1000 },
      { buffer: mem.subarray(768 * KiB), fileOffset: content.length + 5 },
    ];
    const rs = await f.batchRead(ops);
    expect(rs.map((r) => [r.bytes, r.eof, r.error])).toEqual([
      [256 * KiB, false, null],
      [777, false, null],
      [1000, true, null],
      [0, true, null],
    ]);
    ops.forEach((op, i) => {
      const got = Buffer.from(op.buffer.bytes.subarray(0, rs[i].bytes));
      expect(got.equals(content.subarray(op.fileOffset, op.fileOffset + rs[i].bytes)), `op ${i}`).toBe(true);
    });
    const m = c.metrics();
    expect(m.bufferedBytes).toBeGreaterThan(0);
    if ((await f.stat()).direct.active) expect(m.directBytes).toBeGreaterThanOrEqual(256 * KiB);
    // A write through the pool, read back through node:fs.
    const patch = new Rng(seedFor('forced-patch')).bytes(10_000);
    expect(await f.write(patch, 3)).toBe(patch.length);
    patch.copy(content, 3);
    expect(readFileSync(path).equals(content)).toBe(true);
    await f.close();
    await c.close();
  });

  it('O_DIRECT ops go through kernel AIO, many per system call; with aio: false, one pread each; the same bytes', async () => {
    const { path, content } = dataFile('aio', 64 * 4 * KiB);
    for (const aio of [true, false]) {
      const c = connect({ engine: 'threads', aio, rings: 1, threads: 1, queueDepth: 64 });
      expect(c.info()).toMatchObject({ threads: 1, aio });
      const f = await c.open(path, 'r');
      if (!(await f.stat()).direct.active) {
        await c.close();
        return; // a file system without O_DIRECT: nothing goes through AIO
      }
      const mem = c.alloc(content.length);
      // 64 aligned 4 KiB reads in one batch, in a shuffled order.
      const order = Array.from({ length: 64 }, (_, i) => i).sort((a, b) => ((a * 37) % 64) - ((b * 37) % 64));
      const rs = await f.batchRead(order.map((i) => ({ buffer: mem.subarray(i * 4 * KiB, (i + 1) * 4 * KiB), fileOffset: i * 4 * KiB })));
      expect(rs.every((r) => r.bytes === 4 * KiB && r.error === null)).toBe(true);
      expect(Buffer.from(mem.bytes).equals(content), `aio ${aio}`).toBe(true);
      const m = c.metrics();
      expect(m.directBytes).toBe(content.length);
      // One thread: with AIO it submits the queued ops in a few calls (up to 32 each); without, 64 preads.
      if (aio) expect(m.submitCalls).toBeLessThanOrEqual(8);
      else expect(m.submitCalls).toBe(64);
      await f.close();
      await c.close();
    }
  });

  it('threads: the pool has that many native threads, shared out over the rings and capped by the queue depth', async () => {
    for (const [options, expected] of [
      [{ threads: 3, rings: 2 }, 4], // ceil(3 / 2) per ring
      [{ threads: 16, rings: 2, queueDepth: 2 }, 2], // one per ring: never more threads than ops in flight
      [{ rings: 1 }, Math.min(16, 4 * availableParallelism())], // the default
    ] as const) {
      const before = await baselineThreadCount();
      const pool = () => threadNames().filter((n) => n === '3fs-threads').length;
      expect(pool()).toBe(0);
      const c = connect({ engine: 'threads', ...options });
      expect(c.info().threads, JSON.stringify(options)).toBe(expected);
      expect(pool(), JSON.stringify(options)).toBe(expected);
      expect(threadCount() - before, JSON.stringify(options)).toBe(expected);
      await c.close();
      expect(await eventually(threadCount, before)).toBe(before);
      expect(pool()).toBe(0);
    }
    if (ioUringHere) {
      const u = connect({ engine: 'io_uring' });
      expect(u.info().threads).toBeUndefined();
      expect(threadNames().filter((n) => n === '3fs-uring').length).toBe(u.info().rings);
      const before = threadCount() - u.info().rings;
      await u.close();
      expect(await eventually(threadCount, before)).toBe(before);
      expect(threadNames()).not.toContain('3fs-uring');
    }
  });

  it('THREEFS_CLIENT_ENGINE=threads forces it for clients that name no engine; a named engine wins', async () => {
    process.env.THREEFS_CLIENT_ENGINE = 'threads';
    expect(await said({})).toEqual({ engine: 'threads', engineReason: 'THREEFS_CLIENT_ENGINE=threads' });
    expect(await said({ engine: 'local' })).toEqual({ engine: 'threads', engineReason: 'THREEFS_CLIENT_ENGINE=threads' });
    if (ioUringHere) expect(await said({ engine: 'io_uring' })).toEqual({ engine: 'io_uring', engineReason: "engine: 'io_uring'" });
  });

  it.skipIf(!ioUringHere)('THREEFS_CLIENT_ENGINE=io_uring, or empty, or unset: io_uring; the reason only when forced', async () => {
    process.env.THREEFS_CLIENT_ENGINE = 'io_uring';
    expect(await said({})).toEqual({ engine: 'io_uring', engineReason: 'THREEFS_CLIENT_ENGINE=io_uring' });
    expect(await said({ engine: 'threads' })).toEqual({ engine: 'threads', engineReason: "engine: 'threads'" });
    process.env.THREEFS_CLIENT_ENGINE = '';
    expect(await said({})).toEqual({ engine: 'io_uring', engineReason: null });
    delete process.env.THREEFS_CLIENT_ENGINE;
    expect(await said({})).toEqual({ engine: 'io_uring', engineReason: null });
  });
});

describe('bad choices are typed errors', () => {
  it('a bad THREEFS_CLIENT_ENGINE: ERR_INVALID_ARG_VALUE naming the variable and the value, and no client', async () => {
    const before = await baselineThreadCount();
    for (const value of ['uring', 'THREADS', 'local', 'hf3fs']) {
      process.env.THREEFS_CLIENT_ENGINE = value;
      const e = await failure(() => connect());
      expect(e.code).toBe('ERR_INVALID_ARG_VALUE');
      expect(e.message).toBe(`THREEFS_CLIENT_ENGINE must be 'io_uring' or 'threads' (or unset), got ${JSON.stringify(value)}`);
    }
    expect(await eventually(threadCount, before)).toBe(before);
  });

  it('a bad engine or threads option: ERR_INVALID_ARG_VALUE or ERR_OUT_OF_RANGE', async () => {
    expect((await failure(() => connect({ engine: 'thread' as never }))).code).toBe('ERR_INVALID_ARG_VALUE');
    for (const threads of [0, 1.5, -1, 4097, Number.NaN, '4' as never]) {
      expect((await failure(() => connect({ engine: 'threads', threads }))).code, String(threads)).toBe('ERR_OUT_OF_RANGE');
    }
    const e = await failure(() => connect({ engine: 'hf3fs', mount: tmp.dir, threads: 4 }));
    expect(e.code).toBe('ERR_INVALID_ARG_VALUE');
    expect(e.message).toContain('threads');
  });

  it('3fs-client.toml: engine = "threads" and threads = N are read; bad values name the key', () => {
    const good = tmp.path('good.toml');
    writeFileSync(good, 'engine = "threads"\nthreads = 6\n');
    expect(loadConfig(good).client).toEqual({ engine: 'threads', threads: 6 });
    const bad = tmp.path('bad.toml');
    writeFileSync(bad, 'threads = 0\n');
    expect(() => loadConfig(bad)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG', key: 'threads', line: 1 }));
    writeFileSync(bad, 'engine = "libaio"\n');
    expect(() => loadConfig(bad)).toThrow(expect.objectContaining({ code: 'ERR_CONFIG', key: 'engine' }));
  });
});

describe('bench --fallback', () => {
  it.skipIf(!ioUringHere)('prints io_uring, threads and (with fio) fio psync and libaio rows for both workloads', () => {
    const args = ['bench', '--fallback', '--dir', tmp.dir, '--size', '32MiB', '--duration', '200ms', '--ramp', '0', '--repeat', '1', '--threads', '4'];
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', '3fs-client.js'), ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const fio = spawnSync('fio', ['--version']).status === 0;
    const rows = r.stdout.split('\n').filter((l) => / (io_uring|threads|fio psync|fio libaio) +\d+ /.test(l));
    expect(rows.length).toBe(fio ? 8 : 4);
    expect(r.stdout).toMatch(/^seq-read 4MiB qd8 +io_uring /m);
    expect(r.stdout).toMatch(/^rand-read 4KiB qd64 +io_uring /m);
    expect(r.stdout).toContain('O_DIRECT, threads, 4 threads');
    if (fio) expect(r.stdout).toContain('libaio, O_DIRECT, iodepth 64');
    // The bench directory is gone.
    expect(readdirSync(tmp.dir).filter((n) => n.startsWith('.bench-fallback-'))).toEqual([]);
  });
});

// In a child whose io_uring_setup a seccomp filter refuses with the given errno.
function underSeccomp(errno: number, path: string, noAio = false): Record<string, any> {
  const args = [String(errno), ...(noAio ? ['--no-aio'] : []), process.execPath, join(FIXTURES, 'fallback-child.cjs'), DIST_LIB, path];
  const env = { ...process.env };
  delete env.THREEFS_CLIENT_ENGINE;
  const r = spawnSync(buildNoIoUring(), args, { env, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, any>;
}

describe.skipIf(!gcc)('the automatic fallback, where io_uring_setup is refused', () => {
  const { path } = dataFile('seccomp', 300 * KiB + 7);

  for (const [errno, code, because] of [
    [1, 'EPERM', /^io_uring_setup: EPERM \(seccomp\? /],
    [38, 'ENOSYS', /^io_uring_setup: ENOSYS \(no io_uring in this kernel/],
    [13, 'EACCES', /^io_uring_setup: EACCES \(a security module/],
  ] as const) {
    it(`${code}: the thread pool runs, info() and stat() give io_uring_setup's refusal as the reason, the bytes are right`, () => {
      const out = underSeccomp(errno, path);
      expect(out.failed).toBeUndefined();
      // The filter really refused io_uring (else this test could not fail).
      expect(out.probe).toMatchObject({ available: false, code });
      // queueDepth 8 over 2 rings: each ring runs ceil(default / 2) threads, at most 4.
      const threads = 2 * Math.min(Math.ceil(Math.min(16, 4 * availableParallelism()) / 2), 4);
      expect(out.info).toMatchObject({ engine: 'threads', engineReason: expect.stringMatching(because), threads, aio: true });
      expect(out.stat).toMatchObject({ engine: 'threads', engineReason: out.info.engineReason });
      expect(out.results).toEqual([
        { bytes: 65536, eof: false, error: null },
        { bytes: 1000, eof: false, error: null },
        { bytes: 100, eof: true, error: null },
      ]);
      expect(out.same).toBe(true);
      expect(out.metrics.readBytes).toBe(65536 + 1000 + 100);
      // O_DIRECT reads go through AIO: 16 of them in one submission.
      expect(out.aligned).toMatchObject({ ok: true, directBytes: 16 * 4096 });
      expect(out.aligned.submitCalls).toBeLessThan(16);
      // Forcing io_uring there fails, with io_uring_setup's own error.
      expect(out.forced).toMatchObject({ threeFSError: true, code, syscall: 'io_uring_setup', errno: -errno });
    });
  }

  it('without kernel AIO either (io_setup refused too): O_DIRECT reads with pread, the same bytes', () => {
    const out = underSeccomp(1, path, true);
    expect(out.failed).toBeUndefined();
    expect(out.info).toMatchObject({ engine: 'threads' });
    expect(out.same).toBe(true);
    expect(out.aligned).toEqual({ ok: true, submitCalls: 16, directBytes: 16 * 4096 });
  });

  it('ENOMEM (the memlock limit): the thread pool runs and says why, naming RLIMIT_MEMLOCK; forcing io_uring fails saying the same', () => {
    const out = underSeccomp(12, path);
    expect(out.failed).toBeUndefined();
    expect(out.info).toMatchObject({ engine: 'threads', engineReason: expect.stringMatching(/RLIMIT_MEMLOCK/) });
    expect(out.same).toBe(true);
    expect(out.forced).toMatchObject({ threeFSError: true, code: 'ENOMEM', syscall: 'io_uring_setup' });
    expect(out.forced.message).toMatch(/RLIMIT_MEMLOCK/);
  });
});
