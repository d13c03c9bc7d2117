// The public surface: ESM and CommonJS entry points, disposal, IoBuffer views, stat/truncate/sync,
// direct-I/O reporting, open flags and the default client. Runs on both engines (test/helpers/engine.ts
// ENGINE); what concerns only module loading or the local engine runs in the local project.
import { spawnSync } from 'node:child_process';
import { constants, fstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alloc, clientFor, connect, defaultClient, File, IoBuffer, open, ThreeFSError, type Client } from '../../lib/index';
import { ENGINE, ENGINE_NAME, ROOT, fdCount, HF3FS, KiB, makeTmpDir, Rng, seedFor, testConnect, THREADS } from '../helpers';

/** The package's runtime exports, the same through import and require. */
const EXPORTS = [
  'Client', 'File', 'IoBuffer', 'ThreeFSError', 'alloc', 'clientFor', 'connect', 'defaultClient', 'findHf3fsMount', 'findMount',
  'formatDoctor', 'listMounts', 'loadConfig', 'open', 'readLauncherConfig', 'runDoctor',
  'KVCache', 'namespaceHash', 'crc32c', 'crc32cMany', 'crc32cSync', 'pageKey', 'pageKeys',
  'crc32Many', 'crc32Ranges', 'crc32Sync', 'openDataset', 'createDatasetWriter', 'createShardedWriter', 'FFRecordDataset', 'FFRecordWriter',
  'ShardedDatasetWriter', 'SampleBatch', 'createLoader', 'Loader', 'epochOrder', 'openRangeReader', 'RangeReader', 'openSafetensors',
  'SafetensorsFile', 'LoadedTensors', 'MAX_HEADER_BYTES', 'rmrf', 'MetricsSampler', 'prometheusText',
  'readFile', 'writeFile', 'FileReadStream', 'FileWriteStream',
].sort();
const tmp = makeTmpDir('api');
const rng = new Rng(seedFor('api'));
let client: Client;

beforeAll(() => {
  client = testConnect({ queueDepth: 8 });
});
afterAll(async () => {
  await client.close();
  tmp.cleanup();
});

function runNode(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Module loading does not depend on the engine: these run once, in the local project.
describe.skipIf(ENGINE === 'hf3fs')('entry points (engine-independent: local project only)', () => {
  it("ESM: import { open, connect, ThreeFSError } from '3fs-client' works and shares the CommonJS classes", () => {
    const script = `
      import { open, connect, alloc, defaultClient, ThreeFSError, IoBuffer, File, Client } from '3fs-client';
      import * as ns from '3fs-client';
      import { createRequire } from 'node:module';
      import { writeFileSync } from 'node:fs';
      const cjs = createRequire(process.cwd() + '/')('3fs-client');
      const p = process.env.P;
      writeFileSync(p, 'hello esm world');
      const c = connect({ queueDepth: 2 });
      const f = await c.open(p, 'r');
      const io = c.alloc(64);
      const n = await f.read(io, 6);
      const g = await open(p);
      const b = alloc(5);
      await g.read(b, 0);
      let err;
      try { await c.open(p + '.missing'); } catch (e) { err = e; }
      console.log(JSON.stringify({
        n, text: io.bytes.subarray(0, n).toString(), viaDefault: b.bytes.toString(),
        code: err && err.code, isThreeFS: err instanceof ThreeFSError, isCjsThreeFS: err instanceof cjs.ThreeFSError,
        sameClass: ThreeFSError === cjs.ThreeFSError, isFile: f instanceof File, isIoBuffer: io instanceof IoBuffer, isClient: c instanceof Client,
        names: Object.keys(ns).filter((k) => k !== 'default').sort(),
      }));
      await f.close(); await g.close(); io.free(); b.free();
      await c.close(); await defaultClient().close();
    `;
    const r = runNode(['--input-type=module', '-e', script], { P: tmp.path('esm') });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({
      n: 9,
      text: 'esm world',
      viaDefault: 'hello',
      code: 'ENOENT',
      isThreeFS: true,
      isCjsThreeFS: true,
      sameClass: true,
      isFile: true,
      isIoBuffer: true,
      isClient: true,
      names: EXPORTS,
    });
  });

  it("CommonJS: require(<the repository>) and require('3fs-client') work", () => {
    const script = `
      const lib = require(${JSON.stringify(ROOT)});
      const self = require('3fs-client');
      const fs = require('node:fs');
      (async () => {
        const p = process.env.P;
        fs.writeFileSync(p, 'hello cjs');
        const c = lib.connect();
        const f = await c.open(p);
        const b = Buffer.alloc(3);
        await f.read(b, 6);
        let code;
        try { await f.write(b, 0); } catch (e) { code = e instanceof self.ThreeFSError && e.code; }
        console.log(JSON.stringify({ text: b.toString(), same: lib === self, code, names: Object.keys(lib).sort() }));
        await f.close(); await c.close();
      })();
    `;
    const r = runNode(['-e', script], { P: tmp.path('cjs') });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      text: 'cjs',
      same: true,
      code: 'EBADF',
      names: EXPORTS,
    });
  });
});

describe('disposal', () => {
  it('File and Client implement Symbol.asyncDispose; IoBuffer implements Symbol.dispose', async () => {
    const fds = fdCount();
    const c = testConnect({ queueDepth: 2 });
    const p = tmp.path('dispose');
    writeFileSync(p, 'x');
    const f = await c.open(p, 'r');
    const io = c.alloc(16);
    expect(typeof f[Symbol.asyncDispose]).toBe('function');
    expect(typeof c[Symbol.asyncDispose]).toBe('function');
    expect(typeof io[Symbol.dispose]).toBe('function');
    io[Symbol.dispose]();
    expect(io.freed).toBe(true);
    await f[Symbol.asyncDispose]();
    expect(f.closed).toBe(true);
    await expect(f.read(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'ERR_FILE_CLOSED' });
    await c[Symbol.asyncDispose]();
    expect(c.info().closed).toBe(true);
    expect(fdCount()).toBe(fds);
  });
});

describe('IoBuffer', () => {
  it('subarray() follows Uint8Array.prototype.subarray for whole-number arguments (negative, clamped, nested)', () => {
    const io = client.alloc(10);
    const u8 = new Uint8Array(10);
    io.bytes.forEach((_, i) => (io.bytes[i] = i));
    const points = [undefined, -Infinity, -20, -11, -10, -9, -3, -1, 0, 1, 3, 9, 10, 11, 20, Infinity];
    for (const s of points) {
      for (const e of points) {
        const mine = s === undefined ? io.subarray() : io.subarray(s, e);
        const theirs = s === undefined ? u8.subarray() : u8.subarray(s, e);
        const label = `subarray(${s}, ${e})`;
        expect(mine.byteOffset, label).toBe(theirs.byteOffset);
        expect(mine.byteLength, label).toBe(theirs.byteLength);
        expect([...mine.bytes], label).toEqual([...theirs.keys()].map((k) => k + theirs.byteOffset));
        // Nested views add up.
        const nested = mine.subarray(1, -1);
        const nestedTheirs = theirs.subarray(1, -1);
        expect(nested.byteOffset, `${label}.subarray(1, -1)`).toBe(nestedTheirs.byteOffset);
        expect(nested.byteLength, `${label}.subarray(1, -1)`).toBe(nestedTheirs.byteLength);
      }
    }
    io.free();
  });

  it.each([
    ['NaN', [NaN]],
    ['0, NaN', [0, NaN]],
    ['-1.5', [-1.5]],
    ['1.5, -1.5', [1.5, -1.5]],
    ["'2'", ['2']],
    ['2.9, 7.9', [2.9, 7.9]],
  ])('subarray(%s) also follows Uint8Array (ToIntegerOrInfinity: NaN is 0, fractions truncate toward zero before negatives count from the end)', (_, args) => {
    const io = client.alloc(10);
    const theirs = new Uint8Array(10).subarray(...(args as [number, number]));
    const mine = io.subarray(...(args as [number, number]));
    expect({ byteOffset: mine.byteOffset, byteLength: mine.byteLength }).toEqual({ byteOffset: theirs.byteOffset, byteLength: theirs.byteLength });
    io.free();
  });

  it('bytes is a Buffer over the same memory: writes through one view are seen through every other', async () => {
    const io = client.alloc(8 * KiB);
    const bytes = io.bytes;
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(bytes.byteLength).toBe(8 * KiB);
    expect(io.bytes).toBe(bytes); // no new object per access
    expect(bytes.every((b) => b === 0)).toBe(true);
    const sub = io.subarray(100, 200);
    expect(sub.bytes.buffer).toBe(bytes.buffer);
    expect(sub.bytes.byteOffset).toBe(100);
    bytes[150] = 42;
    expect(sub.bytes[50]).toBe(42);
    sub.bytes[0] = 7;
    expect(bytes[100]).toBe(7);
    expect(sub.registered).toBe(io.registered);
    // I/O through a subarray lands exactly there.
    const p = tmp.path('subarray-io');
    const data = rng.bytes(1000);
    writeFileSync(p, data);
    const f = await client.open(p, 'r');
    bytes.fill(0xcc);
    expect(await f.read(sub, 10)).toBe(100);
    expect(bytes.subarray(100, 200).equals(data.subarray(10, 110))).toBe(true);
    expect(bytes.subarray(0, 100).every((b) => b === 0xcc)).toBe(true);
    expect(bytes.subarray(200).every((b) => b === 0xcc)).toBe(true);
    await f.close();
    io.free();
  });

  it('alloc(0) gives an empty buffer that reads nothing', async () => {
    const io = client.alloc(0);
    expect(io.byteLength).toBe(0);
    expect(io.bytes.length).toBe(0);
    const p = tmp.path('zero');
    writeFileSync(p, 'abc');
    const f = await client.open(p, 'r');
    expect(await f.batchRead([{ buffer: io, fileOffset: 0 }])).toEqual([{ bytes: 0, eof: false, error: null }]);
    await f.close();
    io.free();
  });
});

describe('File', () => {
  it('stat() agrees with fs.statSync, and fd is a real descriptor of the file', async () => {
    const p = tmp.path('stat');
    writeFileSync(p, rng.bytes(12345));
    const f = await client.open(p, 'r+');
    const st = await f.stat();
    const ns = statSync(p);
    for (const k of ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'size', 'blksize', 'blocks'] as const) expect(st[k], k).toBe(ns[k]);
    for (const k of ['atimeMs', 'mtimeMs', 'ctimeMs'] as const) expect(Math.abs(st[k] - ns[k]), k).toBeLessThan(0.01);
    expect(st.isFile).toBe(true);
    expect(st.engine).toBe(ENGINE_NAME);
    expect(fstatSync(f.fd).ino).toBe(ns.ino);
    expect(f.path).toBe(p);
    await f.close();
    mkdirSync(tmp.path('a-dir'));
    const d = await client.open(tmp.path('a-dir'), 'r');
    expect((await d.stat()).isFile).toBe(false);
    await d.close();
  });

  // USRBIO moves data by RDMA into or out of an iov, never through a page cache: every file of a
  // 3FS client reports direct I/O active, whatever was asked for at open.
  it.skipIf(ENGINE === 'local')('direct I/O reporting (hf3fs): active and without a reason in every mode', async () => {
    const p = tmp.path('direct-hf3fs');
    writeFileSync(p, rng.bytes(8192));
    for (const [options, mode] of [[{}, 'auto'], [{ direct: 'never' }, 'never'], [{ direct: false }, 'never'], [{ direct: true }, 'always'], [{ direct: 'always' }, 'always']] as const) {
      const f = await client.open(p, 'r', 0o666, options);
      expect(f.direct).toBe(mode);
      const st = await f.stat();
      expect(st.engine).toBe('usrbio');
      expect(st.direct, JSON.stringify(options)).toMatchObject({ mode, active: true, reason: null });
      // 3FS asks no alignment of the ops: unaligned ones work in every mode.
      const b = Buffer.alloc(101);
      expect(await f.read(b, 3)).toBe(101);
      expect(b.equals(readFileSync(p).subarray(3, 104))).toBe(true);
      await f.close();
    }
  });

  // Local only: ext4's O_DIRECT, procfs without it, tmpfs either way; a 3FS client opens only files on 3FS.
  it.skipIf(ENGINE === 'hf3fs')('direct I/O reporting (local): ext4 active, never inactive, procfs refused with a reason, /dev/shm consistent', async () => {
    const p = tmp.path('direct');
    writeFileSync(p, rng.bytes(8192));
    const auto = await client.open(p, 'r');
    const a = (await auto.stat()).direct;
    expect(a).toMatchObject({ mode: 'auto', active: true, reason: null });
    for (const align of [a.memoryAlign, a.offsetAlign]) {
      expect(align).toBeGreaterThan(0);
      expect(4096 % align).toBe(0);
    }
    const never = await client.open(p, 'r', 0o666, { direct: 'never' });
    expect((await never.stat()).direct).toMatchObject({ mode: 'never', active: false, reason: null });
    const always = await client.open(p, 'r', 0o666, { direct: true });
    expect(always.direct).toBe('always');
    expect((await always.stat()).direct).toMatchObject({ mode: 'always', active: true, reason: null });
    const off = await client.open(p, 'r', 0o666, { direct: false });
    expect(off.direct).toBe('never');
    const numeric = await client.open(p, constants.O_RDONLY | constants.O_DIRECT);
    expect(numeric.direct).toBe('always');
    for (const f of [auto, never, always, off, numeric]) await f.close();

    // procfs refuses O_DIRECT: buffered I/O, with the reason; reads still work.
    const proc = await client.open('/proc/self/status', 'r');
    const ps = (await proc.stat()).direct;
    expect(ps.active).toBe(false);
    expect(ps.reason).toMatch(/EINVAL/);
    const head = Buffer.alloc(5);
    expect(await proc.read(head, 0)).toBe(5);
    expect(head.toString()).toBe('Name:');
    await proc.close();

    // tmpfs: O_DIRECT support depends on the kernel; whatever it reports must be consistent and
    // I/O must be right either way.
    const shm = `/dev/shm/3fs-test-${process.pid}`;
    try {
      const f = await client.open(shm, 'w+');
      const s = (await f.stat()).direct;
      expect(typeof s.active).toBe('boolean');
      if (s.active) expect(s.reason).toBeNull();
      else expect(s.reason).toMatch(/O_DIRECT/);
      const io = client.alloc(2 * 4096);
      rng.fill(io.bytes);
      const before = client.metrics().directBytes;
      expect(await f.write(io, 4096)).toBe(8192);
      expect(client.metrics().directBytes - before).toBe(s.active ? 8192 : 0);
      expect(readFileSync(shm).subarray(4096).equals(io.bytes)).toBe(true);
      io.free();
      await f.close();
    } finally {
      try {
        rmSync(shm, { force: true });
      } catch {
        /* ignore */
      }
    }
  });

  it('truncate() grows with zeros and shrinks, like ftruncate; default length 0', async () => {
    const p = tmp.path('truncate');
    const data = rng.bytes(10_000);
    writeFileSync(p, data);
    const f = await client.open(p, 'r+');
    await f.truncate(20_000);
    expect(statSync(p).size).toBe(20_000);
    const b = Buffer.alloc(20_000);
    const [r] = await f.batchRead([{ buffer: b, fileOffset: 0 }]);
    expect(r).toEqual({ bytes: 20_000, eof: false, error: null });
    expect(b.subarray(0, 10_000).equals(data)).toBe(true);
    expect(b.subarray(10_000).every((x) => x === 0)).toBe(true);
    await f.truncate(123);
    expect(readFileSync(p).equals(data.subarray(0, 123))).toBe(true);
    expect((await f.stat()).size).toBe(123);
    await f.truncate();
    expect(statSync(p).size).toBe(0);
    await f.close();
  });

  it('close() right after a metadata call waits for it: punchHole, truncate, stat and fsync complete on the file, not on a closed (or reused) descriptor', async () => {
    const p = tmp.path('meta-then-close');
    const f = await client.open(p, 'w+');
    const { chunkSize } = await f.layout();
    await f.write(rng.bytes(2 * chunkSize), 0);
    const calls = [f.punchHole(0, chunkSize), f.truncate(chunkSize + 1), f.stat(), f.fsync(), f.datasync()];
    await f.close();
    const outcomes = await Promise.allSettled(calls);
    for (const [i, o] of outcomes.entries()) expect(o.status === 'rejected' ? (o.reason as ThreeFSError).message : 'ok', `call ${i}`).toBe('ok');
    expect(statSync(p).size).toBe(chunkSize + 1);
  });

  it('fsync() and datasync() resolve, on files opened for writing and for reading', async () => {
    const p = tmp.path('sync');
    const f = await client.open(p, 'w+');
    const data = rng.bytes(5000);
    await f.write(data, 0);
    await expect(f.fsync()).resolves.toBeUndefined();
    await expect(f.datasync()).resolves.toBeUndefined();
    expect(readFileSync(p).equals(data)).toBe(true);
    const r = await client.open(p, 'r');
    await expect(r.fsync()).resolves.toBeUndefined();
    await expect(r.datasync()).resolves.toBeUndefined();
    await r.close();
    await f.close();
  });

  it('open flags behave like node:fs: w truncates, wx creates, w+ reads back, rs+ writes through, mode applies', async () => {
    const p = tmp.path('flags');
    writeFileSync(p, 'existing content');
    const w = await client.open(p, 'w');
    expect(statSync(p).size).toBe(0);
    await w.write(Buffer.from('abc'), 0);
    await w.close();
    expect(readFileSync(p).toString()).toBe('abc');

    const q = tmp.path('flags-new');
    const umask = process.umask();
    const x = await client.open(q, 'wx', 0o640);
    expect(statSync(q).mode & 0o777).toBe(0o640 & ~umask);
    await x.close();

    const wp = await client.open(p, 'w+');
    await wp.write(Buffer.from('hello'), 0);
    const b = Buffer.alloc(10);
    const [r] = await wp.batchRead([{ buffer: b, fileOffset: 0 }]);
    expect(r).toEqual({ bytes: 5, eof: true, error: null });
    expect(b.subarray(0, 5).toString()).toBe('hello');
    await wp.close();

    const rs = await client.open(p, 'rs+');
    await rs.write(Buffer.from('J'), 0);
    await rs.close();
    expect(readFileSync(p).toString()).toBe('Jello');

    const num = await client.open(p, constants.O_RDWR);
    await num.write(Buffer.from('Y'), 0);
    await num.close();
    expect(readFileSync(p).toString()).toBe('Yello');
  });
});

describe('synchronous-write flags', () => {
  /** open(2) flags of every descriptor of this process that names `path`. */
  function descriptorsOf(path: string): number[] {
    const flags: number[] = [];
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`) !== path) continue;
        flags.push(parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8));
      } catch {
        /* closed meanwhile */
      }
    }
    return flags;
  }

  it.each([
    ['rs+', 'rs+', constants.O_SYNC],
    ['O_RDWR | O_DSYNC', constants.O_RDWR | constants.O_DSYNC, constants.O_DSYNC],
  ] as const)('%s: every descriptor the file writes through (buffered and O_DIRECT) keeps the flag', async (_, flags, want) => {
    const p = tmp.path(`sync-flags-${want}`);
    writeFileSync(p, Buffer.alloc(8192));
    const f = await client.open(p, flags);
    const st = await f.stat();
    const fds = descriptorsOf(p);
    // Local: the file and its O_DIRECT twin. hf3fs: the file and USRBIO's dup of it (hf3fs_reg_fd).
    expect(fds.length).toBe(ENGINE === 'hf3fs' || st.direct.active ? 2 : 1);
    for (const fl of fds) expect((fl & want) === want, `descriptor with flags 0o${fl.toString(8)} lacks 0o${want.toString(8)}`).toBe(true);
    await f.close();
  });
});

describe('Client', () => {
  it('info() echoes the options', async () => {
    const c = testConnect({ queueDepth: 7, registeredBuffers: 3, asyncBuffered: true });
    // hf3fs and the 'threads' engine have no fixed-buffer table: registeredBuffers is 0 there.
    expect(c.info()).toMatchObject({ queueDepth: 7, registeredBuffers: ENGINE === 'hf3fs' || THREADS ? 0 : 3, asyncBuffered: true, closed: false });
    expect(c.info().engine).toBe(ENGINE_NAME);
    if (ENGINE === 'hf3fs') {
      expect(c.info()).toMatchObject({ mount: HF3FS!.mount, numa: expect.any(Number) });
      expect(typeof c.info().library).toBe('string');
    } else {
      expect(Object.keys(c.info())).not.toContain('mount');
    }
    await c.close();
    expect(c.info().closed).toBe(true);
    const d = testConnect({ asyncBuffered: false });
    expect(d.info().asyncBuffered).toBe(false);
    await d.close();
  });

  // Issue 20 item 2: a buffer came back registered: false with nothing to say why.
  it('info().unregisteredReason: why the last alloc() got no registered memory (a full table, an engine without one, too large), null once it does', async () => {
    const c = testConnect({ rings: 1, registeredBuffers: 2 });
    try {
      expect(c.info().unregisteredReason).toBeNull();
      const bufs = [c.alloc(8192), c.alloc(8192), c.alloc(8192)];
      const reason = c.info().unregisteredReason;
      if (ENGINE === 'hf3fs') {
        expect(bufs.map((b) => b.registered), 'every buffer is an iov').toEqual([true, true, true]);
        expect(reason).toBeNull();
      } else if (THREADS) {
        expect(bufs.map((b) => b.registered)).toEqual([false, false, false]);
        expect(reason).toBe('the threads engine has no fixed-buffer table');
      } else {
        expect(bufs.map((b) => b.registered)).toEqual([true, true, false]);
        expect(reason).toBe("every one of the 2 entries of io_uring's fixed-buffer table is taken (registeredBuffers)");
        bufs[0].free();
        expect(c.alloc(4096).registered, 'a freed entry is taken again').toBe(true);
        expect(c.info().unregisteredReason).toBeNull();
        const huge = c.alloc(2 ** 30 + 4096); // address space only: nothing touches it
        expect(huge.registered).toBe(false);
        expect(c.info().unregisteredReason).toBe('larger than 1 GiB, the most io_uring takes as one fixed buffer');
        huge.free();
      }
      const before = c.info().unregisteredReason;
      c.alloc(16, { register: false });
      expect(c.info().unregisteredReason, 'memory not asked to be registered changes nothing').toBe(before);
    } finally {
      await c.close();
    }
    const none = testConnect({ registeredBuffers: 0 });
    none.alloc(4096);
    if (ENGINE === 'local' && !THREADS) expect(none.info().unregisteredReason).toBe('registeredBuffers is 0');
    await none.close();
  });

  // One name per engine: engineOption is what the `engine` option calls it ('hf3fs', not the
  // 'usrbio' that info().engine keeps reporting), and 'usrbio' is accepted as an alias of 'hf3fs'.
  it('engineOption: the engine by its option name, in info(), stat() and layout(); usrbio is an alias of hf3fs', async () => {
    const c = testConnect();
    const want = ENGINE === 'hf3fs' ? 'hf3fs' : ENGINE_NAME;
    expect(c.info().engineOption).toBe(want);
    const p = tmp.path('engine-name');
    writeFileSync(p, 'x');
    const f = await c.open(p);
    expect((await f.stat()).engineOption).toBe(want);
    expect((await f.layout()).engineOption).toBe(want);
    await f.close();
    await c.close();
    if (ENGINE === 'hf3fs') {
      const alias = connect({ engine: 'usrbio' as 'hf3fs', mount: HF3FS!.mount });
      expect(alias.info()).toMatchObject({ engine: 'usrbio', engineOption: 'hf3fs' });
      await alias.close();
    } else {
      // No mount: the alias asks for 3FS like 'hf3fs' does, and fails the same way.
      expect(() => connect({ engine: 'usrbio' as 'hf3fs' })).toThrow(/the 'hf3fs' engine needs mount/);
    }
  });

  it('any number of rings gives the same bytes: batches go to the least loaded ring, each ring registers every buffer', async () => {
    const dir = makeTmpDir('rings');
    const p = dir.path("rings");
    const rng = new Rng(seedFor('rings'));
    const content = rng.bytes(256 * KiB);
    writeFileSync(p, content);
    for (const rings of [1, 2, 3, 8]) {
      const c = testConnect({ rings, queueDepth: 4 });
      expect(c.info().rings).toBe(rings);
      const f = await c.open(p, 'r');
      const mem = c.alloc(content.length);
      expect(mem.registered).toBe(!THREADS); // the thread pool has nothing to register with
      // 64 single-op batches at once: every ring gets several, and aligned ops take the fixed-buffer path.
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => f.read(mem.subarray(i * 4 * KiB, (i + 1) * 4 * KiB), i * 4 * KiB)),
      );
      expect(Buffer.compare(mem.bytes, content), `rings ${rings}`).toBe(0);
      expect(c.metrics().batches).toBe(64);
      await f.close();
      await c.close();
    }
    expect(() => testConnect({ rings: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => testConnect({ rings: 65 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    dir.cleanup();
  });

  // Top-level open() picks the client for the path: the 3FS client of its mount on hf3fs (the stand-in
  // mount counts), the default local client elsewhere. alloc({ for: path }) takes memory from the same one.
  it('top-level open() and alloc(): the client for the path, one per mount, replaced after it is closed', async () => {
    const p = tmp.path('default');
    writeFileSync(p, 'default client');
    const c = clientFor(p);
    expect(clientFor(p)).toBe(c);
    expect(c.info().engine).toBe(ENGINE_NAME);
    expect(c === defaultClient()).toBe(ENGINE === 'local');
    const f = await open(p);
    expect(f).toBeInstanceOf(File);
    expect((await f.stat()).engine).toBe(ENGINE_NAME);
    const io = alloc(7, { for: p });
    expect(io).toBeInstanceOf(IoBuffer);
    expect(await f.read(io, 8)).toBe(6);
    expect(io.bytes.subarray(0, 6).toString()).toBe('client');
    expect(c.metrics().bouncedBytes).toBe(0);
    io.free();
    await f.close();
    await c.close();
    const c2 = clientFor(p);
    expect(c2).not.toBe(c);
    const g = await open(p);
    const b = Buffer.alloc(7);
    expect(await g.read(b, 0)).toBe(7);
    expect(b.toString()).toBe('default');
    await g.close();
    await c2.close();
    // A path off every 3FS mount always gets the local default client.
    expect(clientFor('/proc/self/status')).toBe(defaultClient());
    await defaultClient().close();
  });

  it('errors are ThreeFSError and Error', async () => {
    const e = await client.open(tmp.path('none')).catch((x) => x);
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(e).toBeInstanceOf(Error);
  });
});
