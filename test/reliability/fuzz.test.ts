// Fuzzing the N-API boundary (issue 5, point 2). A seeded fuzzer calls every function the addon
// exports (lib/core/native.ts's Binding, NativeClient and NativeFile) directly, and the public API, with
// random and hostile arguments: wrong types, NaN, negative, fractional, huge and overflowing
// numbers, freed and detached buffers, closed files and clients, cancel and close while I/O is in
// flight, batches of 0 and 1e6 ops. It checks that
// - the process never crashes (a crash fails this file) and nothing hangs;
// - every failure is an Error, and from the public API a ThreeFSError with a string code;
// - nothing is written outside the requested ranges: the target file is compared byte for byte
//   with an independent model after every batch; a guard file open for writing in every batch
//   (but named by no op) and a guard file never opened must keep their bytes; the memory around
//   every buffer range (canaries, in the views and past them) must keep its bytes.
// Iterations: THREEFS_FUZZ_ITERATIONS (default 600 per part in `npm test`); THREEFS_TEST_SEED
// replays a run. `npm run fuzz` runs it longer.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreeFSError, type Client, type File, type IoBuffer } from '../../lib/index';
import { native, type NativeClient } from '../../lib/core/native';
import { FileModel, Rng, firstDiff, makeTmpDir, scaledCount, seedFor, settledWithin, testConnect } from '../helpers';
import { record } from './record';

const ITERATIONS = Number(process.env.THREEFS_FUZZ_ITERATIONS ?? 600);
const WINDOW = 256 * 1024; // the target file's initial size; a batch's writes start in it and may run past it
const CANARY = 0xa5;
const b = native();

const tmp = makeTmpDir('fuzz');
let client: Client;
let nc: NativeClient; // the native client under `client`
let target: File; // r+, modelled
let guard: File; // r+, in every native batch's files, named by no op
let model: FileModel;
const guardBytes = new Rng(seedFor('fuzz-guard')).bytes(64 * 1024);
const untouchedBytes = new Rng(seedFor('fuzz-untouched')).bytes(16 * 1024);

beforeAll(async () => {
  client = testConnect({ queueDepth: 32 });
  const initial = new Rng(seedFor('fuzz-initial')).bytes(WINDOW);
  writeFileSync(tmp.path('target'), initial);
  writeFileSync(tmp.path('guard'), guardBytes);
  writeFileSync(tmp.path('untouched'), untouchedBytes);
  model = new FileModel(initial);
  target = await client.open(tmp.path('target'), 'r+');
  guard = await client.open(tmp.path('guard'), 'r+');
  const probe = client.alloc(4096);
  nc = probe.region.owner;
  probe.free();
});

afterAll(async () => {
  await target?.close().catch(() => {});
  await guard?.close().catch(() => {});
  await client?.close().catch(() => {});
  // Neither guard file may have changed, whatever the fuzzer did.
  expect(firstDiff(readFileSync(tmp.path('guard')), guardBytes), 'guard file (in every batch, named by no op) changed').toBe(-1);
  expect(firstDiff(readFileSync(tmp.path('untouched')), untouchedBytes), 'untouched file changed').toBe(-1);
  tmp.cleanup();
});

// ---------------------------------------------------------------------------------------------
// Hostile values.

const NUMBERS = [0, -0, 1, -1, 0.5, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1,
  2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 63, 2 ** 64, 1e308, Number.MAX_VALUE, Number.MIN_VALUE, -1e308, 4096, 65536, 1e6];

function hostile(rng: Rng, depth = 0): unknown {
  switch (rng.int(0, 15)) {
    case 0: return undefined;
    case 1: return null;
    case 2: return rng.bool();
    case 3: case 4: case 5: return rng.pick(NUMBERS);
    case 6: return rng.pick(['', 'x', 'hf3fs', 'threads', 'io_uring', 'auto', 'a\0b', 'é'.repeat(100), '1', '-1', 'NaN']);
    case 7: return 10n ** BigInt(rng.int(0, 30));
    case 8: return Symbol('fuzz');
    case 9: return depth > 1 ? {} : { valueOf: () => rng.pick(NUMBERS), toString: () => 'obj', length: rng.pick(NUMBERS) };
    case 10: return depth > 1 ? [] : Array.from({ length: rng.int(0, 4) }, () => hostile(rng, depth + 1));
    case 11: return new (rng.pick([Uint8Array, Float64Array, Uint32Array, Int8Array, Float32Array, BigInt64Array]))(rng.int(0, 16));
    case 12: return detachedView(rng);
    case 13: return () => 1;
    case 14: return new DataView(new ArrayBuffer(rng.int(0, 32)));
    default: return new Proxy({}, { get: () => { throw new FuzzTrap('proxy trap'); } });
  }
}

/** Thrown by the fuzzer's own Proxy traps: the caller's exception, which the library may pass through as it is. */
class FuzzTrap extends Error {}

function detachedView(rng: Rng): Uint8Array | Float64Array {
  const ab = new ArrayBuffer(64);
  const view = rng.bool() ? new Uint8Array(ab) : new Float64Array(ab);
  structuredClone(ab, { transfer: [ab] }); // detaches ab: the view reads as empty
  return view;
}

function hostileArgs(rng: Rng): unknown[] {
  return Array.from({ length: rng.int(0, 9) }, () => hostile(rng));
}

/** Calls fn; a throw or a rejection must be an Error. Returns true when it failed. */
async function mustFailCleanly(what: string, fn: () => unknown, stats: { errors: number; codes: Set<string> }): Promise<boolean> {
  let result: unknown;
  try {
    result = fn();
    if (result instanceof Promise) result = await settledWithin(result, 30_000, what);
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`${what}: threw a non-Error ${String(e)}`);
    if (/still pending after/.test(e.message)) throw e;
    stats.errors++;
    stats.codes.add(String((e as { code?: unknown }).code ?? e.name));
    return true;
  }
  if (result instanceof Object && typeof (result as { close?: unknown }).close === 'function') {
    // A client or a file that was made after all: close it (its own errors are fine too).
    try {
      const closing = (result as { close: () => unknown }).close();
      if (closing instanceof Promise) await settledWithin(closing.catch(() => {}), 30_000, `${what}: close`);
    } catch {
      /* closed already */
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------

describe('every native export with hostile arguments', () => {
  it(`${ITERATIONS} rounds over the Binding, NativeClient and NativeFile functions: Errors only, no crash, no hang`, async () => {
    const rng = new Rng(seedFor('fuzz-exports'));
    const stats = { errors: 0, codes: new Set<string>() };
    let calls = 0;
    const scratch = await client.open(tmp.path('scratch'), 'w+');
    const scratchNative = scratch.native;
    // Paths the fuzzer may pass to open() and hardlink(): inside the test directory only (with
    // random flags an open may create or truncate), plus names that must be refused.
    // A hostile string would be a relative path (created in the working directory): strings come from paths().
    const pathLike = () => { const h = rng.bool(0.7) ? undefined : hostile(rng); return h === undefined || typeof h === 'string' ? paths() : h; };
    const paths = () => rng.pick([tmp.path('scratch'), tmp.path(`new-${rng.int(0, 3)}`), tmp.dir, '', 'x'.repeat(5000), tmp.path('a\0b'), tmp.path('no/such/dir/f')]);
    const calls_: Array<[string, () => unknown]> = [
      ['new NativeClient', () => new b.NativeClient(hostile(rng) as never)],
      ['new NativeClient(options)', () => new b.NativeClient({ queueDepth: hostile(rng), rings: rng.pick([1, 2, hostile(rng)]), registeredSlots: hostile(rng), threads: rng.pick([1, 4, hostile(rng)]), asyncBuffered: hostile(rng), embeddedEngine: rng.pick(['auto', 'threads', 'io_uring', hostile(rng)]), aio: hostile(rng) } as never)],
      ['new NativeFile', () => new (b as unknown as { NativeFile: new (...a: unknown[]) => unknown }).NativeFile(...hostileArgs(rng))],
      ['open', () => (b.open as (...a: unknown[]) => unknown)(pathLike(), rng.pick([0, 2, 0o100 | 2, 0o1000 | 2, hostile(rng)]), rng.pick([0o600, hostile(rng)]), rng.pick([0, 1, 2, hostile(rng)]), rng.pick([nc, hostile(rng)]))],
      ['hardlink', () => (b.hardlink as (...a: unknown[]) => unknown)(pathLike(), pathLike(), rng.pick([nc, hostile(rng)]))],
      ['usrbioProbe', () => (b.usrbioProbe as (...a: unknown[]) => unknown)(rng.pick(['', '/nonexistent/libhf3fs_api_shared.so', tmp.path('scratch'), hostile(rng)]))],
      ['ioUringProbe', () => (b.ioUringProbe as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      ['rdmaDevices', () => (b.rdmaDevices as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      ['crc32c', () => (b.crc32c as (...a: unknown[]) => unknown)(rng.bool() ? [hostile(rng), new Uint8Array(8), detachedView(rng)] : hostile(rng), rng.bool() ? new Uint32Array(rng.int(0, 3)) : hostile(rng))],
      ['crc32cSync', () => (b.crc32cSync as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      // The datasets' CRC-32 (zlib's): many views, ranges of one view, and the synchronous form.
      ['crc32', () => (b.crc32 as (...a: unknown[]) => unknown)(rng.bool() ? [hostile(rng), new Uint8Array(8), detachedView(rng)] : hostile(rng), rng.bool() ? new Uint32Array(rng.int(0, 3)) : hostile(rng))],
      ['crc32Ranges', () => (b.crc32Ranges as (...a: unknown[]) => unknown)(
        rng.bool(0.7) ? new Uint8Array(rng.int(0, 64)) : rng.bool() ? detachedView(rng) : hostile(rng),
        rng.bool(0.7) ? Float64Array.from({ length: 2 * rng.int(0, 3) }, () => rng.pick(NUMBERS)) : hostile(rng),
        rng.bool(0.7) ? new Uint32Array(rng.int(0, 3)) : hostile(rng))],
      ['crc32Sync', () => (b.crc32Sync as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      // KVCache ids: hostile prefixes, keys (mixed with good ones) and outputs.
      ['keyIds', () => (b.keyIds as (...a: unknown[]) => unknown)(
        rng.bool(0.7) ? new Uint8Array(rng.int(0, 40)) : hostile(rng),
        rng.bool(0.7) ? Array.from({ length: rng.int(0, 4) }, () => (rng.bool(0.8) ? rng.pick(['', 'k', '\ud800', new Uint8Array(3)]) : hostile(rng))) : hostile(rng),
        rng.bool(0.7) ? new Uint8Array(16 * rng.int(0, 4)) : hostile(rng))],
      ['client.alloc', () => {
        const r = (nc.alloc as (...a: unknown[]) => unknown)(rng.pick([0, 1, 4096, 65536, hostile(rng)]), hostile(rng), hostile(rng));
        if (Array.isArray(r) && typeof r[0] === 'number' && r[1] instanceof ArrayBuffer) {
          new Uint8Array(r[1]).fill(7); // the memory is ours to touch, all of it
          nc.free(r[0], r[1]);
        }
        return undefined;
      }],
      ['client.free', () => (nc.free as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      ['client.submit', () => (nc.submit as (...a: unknown[]) => unknown)(...hostileArgs(rng))],
      ['client.cancel', () => (nc.cancel as (...a: unknown[]) => unknown)(hostile(rng), hostile(rng))],
      ['client.info', () => nc.info()],
      ['client.metrics', () => nc.metrics()],
      ['file.describe', () => scratchNative.describe()],
      ['file.stat', () => scratchNative.stat()],
      ['file.truncate', () => (scratchNative.truncate as (...a: unknown[]) => unknown)(rng.pick([0, 4096, hostile(rng)]))],
      ['file.sync', () => (scratchNative.sync as (...a: unknown[]) => unknown)(hostile(rng))],
      ['file.forceFsync', () => scratchNative.forceFsync()],
      ['file.punchHoles', () => (scratchNative.punchHoles as (...a: unknown[]) => unknown)(
        rng.bool(0.7) ? Float64Array.from({ length: 2 }, () => rng.pick(NUMBERS)) : hostile(rng),
        rng.bool(0.7) ? Float64Array.from({ length: 2 }, () => rng.pick(NUMBERS)) : hostile(rng))],
      ['file.closed', () => scratchNative.closed()],
    ];
    for (let i = 0; i < ITERATIONS; i++) {
      const [name, call] = rng.pick(calls_);
      calls++;
      await mustFailCleanly(`${name} (round ${i})`, call, stats);
    }
    // The client is still whole: a batch through it works and the target file is as modelled.
    const out = Buffer.alloc(4096);
    expect((await target.read(out, 0))).toBe(4096);
    expect(firstDiff(out, model.read(0, 4096))).toBe(-1);
    await scratch.close();
    // A path with a NUL byte was refused, not cut short: 'dir/a\0b' made no 'dir/a'.
    expect(() => readFileSync(tmp.path('a')), `${tmp.path('a')} exists`).toThrow();
    record('fuzz-exports', { operations: calls, faults: calls, crashes: 0, leaks: 0, note: `${stats.errors} calls refused with Errors; codes seen: ${[...stats.codes].sort().join(', ')}` });
  });
});

// ---------------------------------------------------------------------------------------------
// Structured native batches: mostly valid descriptors with hostile fields mixed in, over views
// with canaries around every range, checked against the model.

interface Span {
  bytes: Uint8Array; // the view handed to submit (Uint8Array over part of `backing`)
  backing: Uint8Array; // the whole memory, canaries included
  region?: { id: number; memory: ArrayBuffer };
}

/** Memory with CANARY everywhere; `bytes` is a view starting `pad` bytes in. */
function makeSpan(rng: Rng, size: number, registered: boolean): Span {
  const pad = rng.pick([0, 1, 7, 512, 4096]);
  const total = pad + size + rng.pick([0, 3, 4096]);
  if (registered) {
    const [id, memory] = nc.alloc(total, rng.bool(0.8));
    const backing = new Uint8Array(memory).fill(CANARY);
    return { bytes: backing.subarray(pad, pad + size), backing, region: { id, memory } };
  }
  const backing = new Uint8Array(new ArrayBuffer(total)).fill(CANARY);
  return { bytes: new Uint8Array(backing.buffer, pad, size), backing };
}

/** Numbers no descriptor field may hold (fractional, negative, past 2^53 - 1, not finite). */
const INVALID = [-1, -0.5, 0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 63, 2 ** 64, 1e308, Number.MIN_VALUE, -1e308];

/** Mostly `valid`; else a number that must make the native side refuse the whole batch. */
let writeCursor = 0;
/** Where the next write of a batch goes: past the previous one, so a batch's writes never overlap. */
function nextWrite(rng: Rng, length: number): number {
  const at = writeCursor + rng.int(0, 4096);
  writeCursor = at + length;
  return at;
}

function fieldValue(rng: Rng, valid: number, tooBig: number, p = 0.95, invalid = INVALID): number {
  if (rng.bool(p)) return valid;
  return rng.bool(0.8) ? rng.pick(invalid) : tooBig;
}
/** For a buffer ref -1 is valid (the first view), so it is no hostile value there. */
const INVALID_REF = INVALID.filter((v) => v !== -1);

describe('native submit with hostile descriptors, canaries and guard files', () => {
  it(`${ITERATIONS} batches: every accepted op moves exactly its bytes, nothing outside the ranges changes`, async () => {
    const rng = new Rng(seedFor('fuzz-submit'));
    let ops = 0, rejected = 0, accepted = 0, canceled = 0, freedInFlight = 0;
    const codes = new Set<string>();
    const onDisk = () => readFileSync(tmp.path('target'));
    for (let round = 0; round < ITERATIONS; round++) {
      const write = rng.bool();
      writeCursor = rng.int(0, WINDOW);
      const n = rng.pick([0, 1, 1, 2, 3, 5, 8, 16]);
      const useRegions = rng.bool(0.5);
      const spans: Span[] = [];
      const views: Uint8Array[] = [];
      const desc = new Float64Array(n * 5);
      // inside: where the op's range starts in the span's backing (taken now: a detached view reads as offset 0).
      const planned: Array<{ span: Span; viewIndex: number; bufferOffset: number; length: number; fileOffset: number; inside: number }> = [];
      // Reads of one batch must not share memory: give each op its own span.
      for (let i = 0; i < n; i++) {
        const length = rng.pick([0, 1, 511, 512, 4096, 4097, 65536]);
        const slack = rng.pick([0, 0, 13]);
        const span = makeSpan(rng, length + slack, useRegions && rng.bool(0.8));
        spans.push(span);
        const bufferOffset = rng.int(0, slack);
        // The writes of one batch go to separate ranges (their order within a batch is the engine's).
        const fileOffset = write ? nextWrite(rng, length) : rng.pick([0, rng.int(0, WINDOW + 8192), 2 ** 40, 2 ** 53 - 1 - length]);
        let viewIndex = -1;
        if (!span.region) {
          viewIndex = views.length;
          views.push(span.bytes);
        }
        if (write) rng.fill(span.bytes.subarray(bufferOffset, bufferOffset + length));
        planned.push({ span, viewIndex, bufferOffset, length, fileOffset, inside: span.bytes.byteOffset - span.backing.byteOffset + bufferOffset });
        const d = i * 5;
        // Hostile fields are invalid numbers or too big for their buffer or the batch: each must
        // get the whole batch refused (a valid but different value would make the plan wrong).
        desc[d] = fieldValue(rng, 0, 2); // file 0 is the target; 1 is the guard (never named)
        desc[d + 1] = fieldValue(rng, span.region ? span.region.id : -(viewIndex + 1), span.region ? 1e15 : -(n + 1), 0.95, INVALID_REF);
        // A region's offsets count from its start; a view's from the view's start.
        const base = span.region ? span.bytes.byteOffset : 0;
        desc[d + 2] = fieldValue(rng, base + bufferOffset, span.backing.byteLength + 1);
        desc[d + 3] = fieldValue(rng, length, span.backing.byteLength + 1);
        desc[d + 4] = fieldValue(rng, fileOffset, 2 ** 53 - 1);
      }
      const before = spans.map((s) => Buffer.from(s.backing));
      const results = rng.bool(0.97) ? new Float64Array(2 * n) : (hostile(rng) as Float64Array);
      const files: unknown[] = rng.bool(0.97) ? [target.native, guard.native] : (hostile(rng) as unknown[]);
      // IoOp.after: some batches order their ops (op i after an earlier one); a few name an op
      // that is not earlier, which must get the whole batch refused.
      let after: Int32Array | undefined;
      if (n > 1 && rng.bool(0.3)) {
        after = new Int32Array(n).fill(-1);
        for (let i = 1; i < n; i++) if (rng.bool(0.5)) after[i] = rng.bool(0.97) ? rng.int(0, i - 1) : rng.pick([i, i + 1, -2, 2 ** 31 - 1]);
      }
      ops += n;
      let submitted: [number, Promise<void>] | undefined;
      try {
        submitted = (nc.submit as (...a: unknown[]) => [number, Promise<void>])(write, files, rng.bool(0.97) ? views : hostile(rng), desc, results, rng.bool(0.2), undefined, undefined, after);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        codes.add(String((e as { code?: string }).code));
        rejected++;
      }
      let cancelErrno = 0;
      if (submitted) {
        accepted++;
        const [id, settled] = submitted;
        if (rng.bool(0.15)) {
          cancelErrno = rng.pick([125, 110, 5]); // ECANCELED, ETIMEDOUT, EIO
          nc.cancel(id, cancelErrno);
          canceled++;
        }
        if (rng.bool(0.15)) {
          // Free registered memory while its ops are in flight: they keep it until they settle.
          for (const s of spans) if (s.region) nc.free(s.region.id, s.region.memory);
          freedInFlight++;
        }
        await settledWithin(settled, 30_000, `batch ${round}`);
      }
      if (submitted && after) {
        // An op whose predecessor failed never started: no byte moved, and an errno of its own.
        for (let i = 0; i < n; i++) {
          const k = after[i];
          if (k >= 0 && results[2 * k + 1] !== 0) {
            expect(results[2 * i + 1], `batch ${round} op ${i} after failed op ${k}: errno`).not.toBe(0);
            expect(results[2 * i], `batch ${round} op ${i} after failed op ${k}: bytes`).toBe(0);
          }
        }
      }
      const file = onDisk();
      for (const [i, p] of planned.entries()) {
        const span = p.span;
        const old = before[i];
        const freed = span.region !== undefined && span.region.memory.byteLength === 0;
        const inside = p.inside;
        const bytes = submitted ? results[2 * i] : 0;
        const errno = submitted ? results[2 * i + 1] : 0;
        if (submitted) {
          expect(bytes, `batch ${round} op ${i}: bytes`).toBeGreaterThanOrEqual(0);
          expect(bytes, `batch ${round} op ${i}: bytes`).toBeLessThanOrEqual(p.length);
          expect(Number.isInteger(errno) && errno >= 0, `batch ${round} op ${i}: errno ${errno}`).toBe(true);
          if (errno !== 0) codes.add(`errno ${errno}`);
        }
        if (freed) continue; // JS cannot see that memory any more
        // Canaries: everything but the op's own range is as before (reads); writes change nothing in memory.
        const now = span.backing;
        const hi = write ? inside : inside + p.length;
        expect(firstDiff(now.subarray(0, inside), old.subarray(0, inside)), `batch ${round} op ${i}: memory before the range`).toBe(-1);
        expect(firstDiff(now.subarray(hi), old.subarray(hi)), `batch ${round} op ${i}: memory after the range`).toBe(-1);
        if (!write && submitted && errno === 0) {
          expect(firstDiff(now.subarray(inside, inside + bytes), model.read(p.fileOffset, bytes)), `batch ${round} op ${i}: bytes read`).toBe(-1);
          if (bytes < p.length) expect(p.fileOffset + bytes, `batch ${round} op ${i}: short read before EOF`).toBeGreaterThanOrEqual(model.size);
        }
      }
      if (write && submitted) {
        for (const [i, p] of planned.entries()) {
          const errno = results[2 * i + 1];
          const bytes = results[2 * i];
          const data = before[i].subarray(p.inside, p.inside + p.length);
          if (errno === 0) {
            if (bytes > 0) model.write(p.fileOffset, data.subarray(0, bytes));
          } else {
            // A failed or canceled write: its first `bytes` landed; the rest is old bytes or new, nothing else.
            if (bytes > 0) model.write(p.fileOffset, data.subarray(0, bytes));
            for (let k = bytes; k < p.length; k++) {
              const at = p.fileOffset + k;
              const got = at < file.length ? file[at] : undefined;
              const was = at < model.size ? model.read(at, 1)[0] : undefined;
              if (got !== was && got !== data[k]) throw new Error(`batch ${round} op ${i}: byte ${at} is ${got}, neither old ${was} nor new ${data[k]}`);
            }
            // Take what landed into the model (it was checked to be old or new).
            if (p.length > bytes && p.fileOffset + bytes < file.length) { // (what lies past the file's end did not land)
              model.write(p.fileOffset + bytes, file.subarray(p.fileOffset + bytes, Math.min(file.length, p.fileOffset + p.length)));
            }
          }
        }
      }
      expect(file.length, `batch ${round}: file size`).toBe(model.size);
      const at = firstDiff(file, model.contents());
      expect(at, `batch ${round}: target file differs from the model at byte ${at}`).toBe(-1);
      for (const s of spans) if (s.region && s.region.memory.byteLength > 0) nc.free(s.region.id, s.region.memory);
    }
    expect(accepted).toBeGreaterThan(ITERATIONS / 4);
    expect(rejected).toBeGreaterThan(0);
    record('fuzz-submit', { operations: ops, faults: rejected + canceled + freedInFlight, crashes: 0, leaks: 0, note: `${accepted} batches accepted, ${rejected} refused, ${canceled} canceled in flight, ${freedInFlight} with their memory freed in flight; codes: ${[...codes].sort().join(', ')}` });
  });

  it('batches of 0 and of 1e6 ops: resolve, every op accounted for', async () => {
    const empty = new Float64Array(0);
    const [, none] = nc.submit(false, [target.native], [], empty, new Float64Array(0), false);
    await none;
    // 1e6 one-byte reads into one buffer, each its own byte, of the first 1e6 bytes of the file
    // (grown with zeros past the window by the model's own truncate).
    const N = scaledCount(1_000_000);
    const big = Math.max(model.size, N);
    if (model.size < big) {
      await target.truncate(big);
      model.truncate(big);
    }
    const memory = new Uint8Array(N + 8).fill(CANARY);
    const desc = new Float64Array(N * 5);
    for (let i = 0; i < N; i++) {
      desc[i * 5] = 0;
      desc[i * 5 + 1] = -1;
      desc[i * 5 + 2] = i;
      desc[i * 5 + 3] = 1;
      desc[i * 5 + 4] = i;
    }
    const results = new Float64Array(2 * N);
    const [, settled] = nc.submit(false, [target.native], [memory.subarray(0, N)], desc, results, false);
    await settledWithin(settled, 120_000, '1e6-op batch');
    for (let i = 0; i < N; i++) if (results[2 * i] !== 1 || results[2 * i + 1] !== 0) throw new Error(`op ${i}: ${results[2 * i]} bytes, errno ${results[2 * i + 1]}`);
    expect(firstDiff(memory.subarray(0, N), model.read(0, N))).toBe(-1);
    expect(memory.subarray(N).every((v) => v === CANARY)).toBe(true);
    // The public API takes the same batch.
    const ops = Array.from({ length: N }, (_, i) => ({ buffer: memory.subarray(i, i + 1), fileOffset: N - 1 - i }));
    const out = await settledWithin(target.batchRead(ops), 120_000, '1e6-op batchRead');
    expect(out.length).toBe(N);
    const wrong = out.findIndex((r) => r.bytes !== 1 || r.error !== null);
    expect(wrong === -1 ? null : { op: wrong, bytes: out[wrong].bytes, eof: out[wrong].eof, error: out[wrong].error?.code, message: out[wrong].error?.message }).toBeNull();
    const expected = Buffer.from(model.read(0, N)).reverse();
    expect(firstDiff(memory.subarray(0, N), expected)).toBe(-1);
    record('fuzz-batch-sizes', { operations: 2 * N + 1, faults: 0, crashes: 0, leaks: 0, note: 'batches of 0 ops and of 1e6 one-byte reads (native and public API): every op exactly one byte, canaries intact' });
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------
// The public API with hostile ops and options.

describe('public API with hostile ops and options', () => {
  it(`${ITERATIONS} calls: a ThreeFSError with a code or per-op results, and the file matches the model`, async () => {
    const rng = new Rng(seedFor('fuzz-public'));
    let calls = 0, thrown = 0, opErrors = 0, trapped = 0;
    const codes = new Set<string>();
    const buffers: IoBuffer[] = [];
    const closedFile = await client.open(tmp.path('closed'), 'w+');
    await closedFile.close();
    const readOnly = await client.open(tmp.path('target'), 'r');
    for (let round = 0; round < ITERATIONS; round++) {
      const write = rng.bool();
      writeCursor = rng.int(0, WINDOW);
      const n = rng.pick([0, 1, 2, 4, 8]);
      const ops: unknown[] = [];
      const planned: Array<{ view: Uint8Array; length: number; fileOffset: number; data: Buffer; backing: Uint8Array; before: Buffer; crc: boolean } | null> = [];
      for (let i = 0; i < n; i++) {
        const length = rng.pick([0, 1, 100, 4096, 8192]);
        const kind = rng.int(0, 9);
        let buffer: unknown;
        let view: Uint8Array | null = null;
        let backing: Uint8Array | null = null;
        if (kind <= 3) {
          const io = client.alloc(length + 64);
          buffers.push(io);
          io.bytes.fill(CANARY);
          const at = rng.int(0, 32);
          buffer = io.subarray(at, at + length);
          view = io.bytes.subarray(at, at + length);
          backing = io.bytes;
        } else if (kind <= 6) {
          backing = new Uint8Array(length + 64).fill(CANARY);
          const at = rng.int(0, 32);
          view = backing.subarray(at, at + length);
          buffer = rng.bool() ? view : new DataView(backing.buffer, at, length);
        } else if (kind === 7) {
          const io = client.alloc(4096);
          io.free();
          buffer = rng.bool() ? io : io.subarray(0, 16);
        } else {
          buffer = hostile(rng);
          // Some hostile values are usable views (a Float64Array, a DataView): model them too.
          if (ArrayBuffer.isView(buffer) && buffer.byteLength > 0) {
            view = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
            backing = new Uint8Array(buffer.buffer);
          }
        }
        const fileOffset = write ? nextWrite(rng, Math.max(length, view?.byteLength ?? 0)) : rng.int(0, WINDOW + 8192);
        // A hostile offset is one that must be refused (a valid other one could overlap another op).
        const badOffset = () => { const h = hostile(rng); return typeof h === 'number' ? rng.pick(INVALID) : h; };
        const op: Record<string, unknown> = { buffer, fileOffset: rng.bool(0.92) ? fileOffset : badOffset() };
        if (rng.bool(0.15)) op.length = rng.bool(0.5) ? Math.max(0, length - 1) : hostile(rng);
        if (rng.bool(0.1)) op.crc32c = rng.bool(0.5) ? { offset: 0, length: Math.max(0, length - 4), at: write ? Math.max(0, length - 4) : undefined } : hostile(rng);
        ops.push(rng.bool(0.97) ? op : hostile(rng));
        if (view && backing) {
          if (write) rng.fill(view);
          planned.push({ view, length: view.byteLength, fileOffset, data: Buffer.from(view), backing, before: Buffer.from(backing), crc: op.crc32c !== undefined });
        } else planned.push(null);
      }
      const options = rng.bool(0.8) ? (rng.bool(0.5) ? undefined : { failFast: rng.bool(), timeout: rng.pick([undefined, 0, 5, 1000, NaN, -1]) }) : hostile(rng);
      const file = rng.pick([target, target, target, target, target, readOnly, closedFile]);
      calls++;
      let results: Awaited<ReturnType<File['batchRead']>> | undefined;
      try {
        results = await settledWithin((write ? file.batchWrite : file.batchRead).call(file, ops as never, options as never), 30_000, `call ${round}`);
      } catch (e) {
        if (e instanceof FuzzTrap) {
          trapped++; // the op object's own getter threw: passed through, nothing submitted
          continue;
        }
        if (!(e instanceof ThreeFSError)) throw new Error(`call ${round}: ${String(e)} is not a ThreeFSError`, { cause: e });
        expect(typeof e.code, `call ${round}: code`).toBe('string');
        codes.add(e.code);
        thrown++;
        results = (e as { results?: typeof results }).results; // failFast and aborts carry them
      }
      if (results) {
        for (const [i, r] of results.entries()) {
          if (r.error) {
            expect(r.error).toBeInstanceOf(ThreeFSError);
            expect(r.error.path).toBe(file.path);
            expect(typeof r.error.offset).toBe('number');
            codes.add(r.error.code);
            opErrors++;
          }
          const p = planned[i];
          if (!p) continue;
          const at = p.view.byteOffset - p.backing.byteOffset;
          if (write && file === target) {
            if (p.crc) p.data = Buffer.from(p.view); // the CRC32C the engine stored went out with the op
            if (r.bytes > 0) model.write(p.fileOffset, p.data.subarray(0, r.bytes));
            if (r.error && r.bytes < p.length) {
              // What landed past `bytes` is old or new; take it from disk after checking.
              const disk = readFileSync(tmp.path('target'));
              for (let k = r.bytes; k < p.length; k++) {
                const o = p.fileOffset + k;
                const was = o < model.size ? model.read(o, 1)[0] : undefined;
                if (disk[o] !== was && disk[o] !== p.data[k]) throw new Error(`call ${round} op ${i}: byte ${o} foreign`);
              }
              if (p.fileOffset + r.bytes < disk.length) model.write(p.fileOffset + r.bytes, disk.subarray(p.fileOffset + r.bytes, Math.min(disk.length, p.fileOffset + p.length)));
            }
          }
          // A write changes no memory, except the 4 bytes of a CRC32C it was asked to store inside its range.
          const hi = write && !p.crc ? at : at + p.length;
          expect(firstDiff(p.backing.subarray(0, at), p.before.subarray(0, at)), `call ${round} op ${i}: memory before`).toBe(-1);
          expect(firstDiff(p.backing.subarray(hi), p.before.subarray(hi)), `call ${round} op ${i}: memory after`).toBe(-1);
          if (!write && !r.error && file !== closedFile) {
            expect(firstDiff(p.view.subarray(0, r.bytes), model.read(p.fileOffset, r.bytes)), `call ${round} op ${i}: bytes read`).toBe(-1);
          }
        }
      }
      const disk = readFileSync(tmp.path('target'));
      expect(disk.length).toBe(model.size);
      expect(firstDiff(disk, model.contents()), `call ${round}: target file differs from the model`).toBe(-1);
      if (buffers.length > 64) for (const io of buffers.splice(0)) io.free();
    }
    for (const io of buffers.splice(0)) io.free();
    await readOnly.close();
    record('fuzz-public', { operations: calls, faults: thrown + opErrors, crashes: 0, leaks: 0, note: `${thrown} calls refused or rejected with ThreeFSError, ${opErrors} per-op errors, ${trapped} exceptions of the ops' own getters passed through; codes: ${[...codes].sort().join(', ')}` });
  });

  it('close while batches are in flight: every batch settles, files and clients refuse afterwards with typed errors', async () => {
    const rng = new Rng(seedFor('fuzz-close'));
    let ops = 0;
    for (let round = 0; round < Math.max(10, ITERATIONS / 30); round++) {
      const c = testConnect({ queueDepth: 4 });
      const f = await c.open(tmp.path(`close-${round % 3}`), 'w+');
      const memory = c.alloc(64 * 4096);
      const batches = Array.from({ length: 4 }, (_, k) =>
        (k % 2 ? f.batchWrite : f.batchRead).call(f, Array.from({ length: 16 }, (_, i) => ({ buffer: memory.subarray((k * 16 + i) * 1024, (k * 16 + i + 1) * 1024), fileOffset: i * 4096 }))).catch((e: unknown) => e),
      );
      ops += 64;
      await new Promise((r) => setTimeout(r, rng.int(0, 2)));
      const closing = rng.bool() ? f.close() : c.close();
      if (rng.bool()) memory.free();
      const settled = await settledWithin(Promise.all(batches), 30_000, `round ${round}: batches after close`);
      for (const s of settled) if (!Array.isArray(s)) expect(s).toBeInstanceOf(ThreeFSError);
      await settledWithin(closing, 30_000, `round ${round}: close`);
      const again = await f.read(Buffer.alloc(8), 0).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(ThreeFSError);
      await f.close().catch(() => {});
      await c.close().catch(() => {});
    }
    record('fuzz-close-in-flight', { operations: ops, faults: Math.max(10, ITERATIONS / 30), crashes: 0, leaks: 0, note: 'file or client closed 0-2 ms after 4 batches of 16 ops, memory freed at random: every batch settles' });
  });
});

