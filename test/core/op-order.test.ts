// IoOp.after: an op that starts only once an earlier op of its batch has settled without an error,
// ordered by the engine without a round trip to JS. The oracle is the file as node:fs reads it:
// two writes to the same bytes leave the later one's, so a waiter's bytes must always win over
// its predecessor's, however much bigger the predecessor is. Runs on every engine.
import { constants as osConstants } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { OpResult } from '../../lib/core/errors';
import { ThreeFSError, type Client } from '../../lib/index';
import { failure, KiB, makeTmpDir, settledWithin, withClient, writeThenAbort } from '../helpers';

const tmp = makeTmpDir('op-order');
afterAll(() => tmp.cleanup());

const filled = (client: Client, bytes: number, value: number) => {
  const b = client.alloc(bytes);
  b.bytes.fill(value);
  return b;
};

describe('IoOp.after', () => {
  it('a waiter goes out only after its predecessor landed: its bytes win over a bigger write of the same range', () =>
    withClient(async (client) => {
      const path = tmp.path('wins.bin');
      const f = await client.open(path, 'w+');
      const PAIRS = 32;
      const BIG = 256 * KiB;
      const SMALL = 4 * KiB;
      for (let round = 0; round < 4; round++) {
        // Pair k: a big write of 'A' (round-stamped) at k*BIG, then a small 'B' over its first bytes.
        const big = filled(client, BIG, 0x41 + round);
        const small = filled(client, SMALL, 0x61 + round);
        const ops = [];
        for (let k = 0; k < PAIRS; k++) {
          ops.push({ buffer: big, fileOffset: k * BIG });
          ops.push({ buffer: small, fileOffset: k * BIG, after: ops.length - 1 });
        }
        const results = await f.batchWrite(ops);
        results.forEach((r, i) => {
          expect(r.error, `op ${i}`).toBeNull();
          expect(r.bytes).toBe(i % 2 === 0 ? BIG : SMALL);
        });
        const disk = readFileSync(path);
        for (let k = 0; k < PAIRS; k++) {
          const at = k * BIG;
          expect(disk.subarray(at, at + SMALL).every((b) => b === 0x61 + round), `round ${round} pair ${k}: the waiter's bytes`).toBe(true);
          expect(disk.subarray(at + SMALL, at + BIG).every((b) => b === 0x41 + round), `round ${round} pair ${k}: the rest`).toBe(true);
        }
        big.free();
        small.free();
      }
      await f.close();
    }));

  it('chains and fans: each op of a chain over the same bytes waits for the one before; several may wait for one', () =>
    withClient(async (client) => {
      const path = tmp.path('chain.bin');
      const f = await client.open(path, 'w+');
      const L = 64 * KiB;
      const bufs = [1, 2, 3, 4].map((v) => filled(client, L, v));
      // 0 <- 1 <- 2 (a chain over [0, L)), and 3, 4 both wait for 0 (each over its own range).
      const ops = [
        { buffer: bufs[0], fileOffset: 0 },
        { buffer: bufs[1], fileOffset: 0, after: 0 },
        { buffer: bufs[2], fileOffset: 0, after: 1 },
        { buffer: bufs[3], fileOffset: L, after: 0 },
        { buffer: bufs[3].subarray(0, 0), fileOffset: 2 * L, after: 2 }, // nothing to move: settles once 2 has
      ];
      const results = await f.batchWrite(ops);
      expect(results.map((r) => [r.bytes, r.error])).toEqual([
        [L, null],
        [L, null],
        [L, null],
        [L, null],
        [0, null],
      ]);
      const disk = readFileSync(path);
      expect(disk.length).toBe(2 * L);
      expect(disk.subarray(0, L).every((b) => b === 3)).toBe(true);
      expect(disk.subarray(L, 2 * L).every((b) => b === 4)).toBe(true);
      await f.close();
    }));

  it('reads: a waiter reads after its predecessor, which may end at EOF and still lets it go', () =>
    withClient(async (client) => {
      const path = tmp.path('reads.bin');
      const data = Buffer.alloc(100 * KiB);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      writeFileSync(path, data);
      const f = await client.open(path, 'r');
      const a = client.alloc(128 * KiB);
      const b = client.alloc(16 * KiB);
      const rs = await f.batchRead([
        { buffer: a, fileOffset: 0 }, // ends at EOF: 100 KiB of 128
        { buffer: b, fileOffset: 4 * KiB, after: 0 },
      ]);
      expect(rs[0]).toMatchObject({ bytes: 100 * KiB, eof: true, error: null });
      expect(rs[1]).toMatchObject({ bytes: 16 * KiB, error: null });
      expect(Buffer.from(a.bytes.subarray(0, 100 * KiB)).equals(data)).toBe(true);
      expect(Buffer.from(b.bytes).equals(data.subarray(4 * KiB, 20 * KiB))).toBe(true);
      await f.close();
    }));

  it('a failed predecessor: its waiters (and theirs) fail with ECANCELED without writing; the rest of the batch goes on', () =>
    withClient(async (client) => {
      const path = tmp.path('fails.bin');
      const f = await client.open(path, 'w+');
      const L = 8 * KiB;
      const buf = filled(client, L, 0x5a);
      // 2**52 is past every local file system's largest file (EFBIG or EINVAL), and 3FS's.
      const ops = [
        { buffer: buf, fileOffset: 2 ** 52 },
        { buffer: buf, fileOffset: 0, after: 0 },
        { buffer: buf, fileOffset: L, after: 1 },
        { buffer: buf, fileOffset: 2 * L },
        { buffer: buf, fileOffset: 3 * L, after: 3 },
      ];
      const rs = await settledWithin(f.batchWrite(ops), 20_000, 'batch with a failed predecessor');
      expect(rs[0].error).not.toBeNull();
      expect(rs[0].error!.code).not.toBe('ECANCELED');
      for (const i of [1, 2]) {
        expect(rs[i].bytes, `op ${i}`).toBe(0);
        expect(rs[i].error?.code, `op ${i}`).toBe('ECANCELED');
        expect(rs[i].error?.errno).toBe(-osConstants.errno.ECANCELED);
        expect(rs[i].error?.index).toBe(i);
        expect(rs[i].error?.offset).toBe(ops[i].fileOffset);
        expect(rs[i].error?.path).toBe(path);
      }
      expect(rs[3]).toMatchObject({ bytes: L, error: null });
      expect(rs[4]).toMatchObject({ bytes: L, error: null });
      const disk = readFileSync(path);
      expect(disk.length).toBe(4 * L);
      expect(disk.subarray(0, 2 * L).every((b) => b === 0), 'the canceled waiters wrote nothing').toBe(true);
      expect(disk.subarray(2 * L).every((b) => b === 0x5a)).toBe(true);

      // failFast: the batch rejects with the predecessor's own error, not its waiters' ECANCELED.
      const e = await failure(() => f.batchWrite(ops.slice(0, 3), { failFast: true }));
      expect(e.code).toBe(rs[0].error!.code);
      expect(e.index).toBe(0);
      await f.close();
    }));

  it('abort with waiters queued: the batch settles at once, waiters not started report ECANCELED with 0 bytes', () =>
    withClient(async (client) => {
      const L = 256 * KiB;
      const buf = filled(client, L, 7);
      const ops = [];
      for (let k = 0; k < 400; k++) ops.push({ buffer: buf, fileOffset: k * L, ...(k > 0 ? { after: k - 1 } : {}) }); // one long chain
      // Abort mid-chain: once the engine has written a few links. A 2 ms timer often came before
      // the first link was done, and a JS thread held up by load (a 60 ms stall here) let the whole
      // chain finish first. Should the chain still finish before the abort, the attempt is made
      // again on a new file (at most 5); an abort that never lands fails the test.
      for (let attempt = 0; ; attempt++) {
        const path = tmp.path(`abort-${attempt}.bin`);
        const f = await client.open(path, 'w+', 0o644, { direct: 'never' });
        const e = await settledWithin(writeThenAbort(client, f, ops, 3), 20_000, 'aborted chain');
        if (e === null) {
          await f.close();
          expect(attempt, 'every attempt: the whole chain was done before the abort').toBeLessThan(4);
          continue;
        }
        expect(e, `expected a ThreeFSError, got ${String(e)}`).toBeInstanceOf(ThreeFSError);
        expect((e as ThreeFSError).code).toBe('ABORT_ERR');
        const results = (e as ThreeFSError).results as OpResult[];
        // A chain: done ops first, then at most one cut short, then nothing started.
        const firstFailed = results.findIndex((r) => r.error !== null);
        expect(firstFailed).toBeGreaterThanOrEqual(0);
        results.forEach((r, i) => {
          if (i < firstFailed) expect(r).toMatchObject({ bytes: L, error: null });
          else {
            expect(r.error?.code, `op ${i}`).toBe('ECANCELED');
            if (i > firstFailed) expect(r.bytes, `op ${i} never started`).toBe(0);
          }
        });
        const disk = readFileSync(path);
        expect(disk.length).toBeLessThanOrEqual(firstFailed * L + results[firstFailed].bytes);
        await f.close();
        return;
      }
    }));

  it('bad `after` (itself, a later op, negative, fractional, not a number): ERR_OUT_OF_RANGE, nothing written', () =>
    withClient(async (client) => {
      const path = tmp.path('bad.bin');
      const f = await client.open(path, 'w+');
      const buf = filled(client, 4 * KiB, 1);
      for (const after of [1, 2, -1, 0.5, Number.NaN, '0', 2 ** 40]) {
        const ops = [{ buffer: buf, fileOffset: 0 }, { buffer: buf, fileOffset: 4 * KiB, after: after as number }];
        const e = await failure(() => f.batchWrite(ops));
        expect(e.code, `after ${String(after)}`).toBe('ERR_OUT_OF_RANGE');
        expect(e.index).toBe(1);
        expect(e.message).toContain('after');
      }
      expect(readFileSync(path).length, 'nothing was written').toBe(0);
      await f.close();
    }));

  it('the native call checks `after` itself: out-of-order or self waits and wrong arrays throw, nothing is queued', () =>
    withClient(async (client) => {
      // Straight to the addon, past lib/core/batch.ts's checks.
      const f = await client.open(tmp.path('native.bin'), 'w+');
      const probe = client.alloc(4096);
      const nc = probe.region.owner;
      probe.free();
      const mem = new Uint8Array(8192);
      const desc = new Float64Array([0, -1, 0, 4096, 0, 0, -1, 4096, 4096, 4096]);
      const files = [f.native];
      const submit = (after: unknown) => () => nc.submit(true, files, [mem], desc, new Float64Array(4), false, undefined, undefined, after as Int32Array);
      expect(submit(new Int32Array([-1, 1]))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(submit(new Int32Array([1, -1]))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(submit(new Int32Array([-1, -7]))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(submit(new Int32Array([-1]))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
      expect(submit(new Float64Array([-1, 0]))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
      const [, settled] = nc.submit(true, files, [mem], desc, new Float64Array(4), false, undefined, undefined, new Int32Array([-1, 0]));
      await settled;
      expect(readFileSync(tmp.path('native.bin')).length).toBe(8192);
      await f.close();
    }));

  it('a big batch of slot-and-entry pairs (the KVCache put shape) across files: every entry after its slot, all correct', () =>
    withClient(async (client) => {
      const slots = await client.open(tmp.path('slots.bin'), 'w+');
      const entries = await client.open(tmp.path('slots.bin'), 'r+', undefined, { direct: 'never' });
      const N = 128;
      const P = 64 * KiB;
      const mem = client.alloc(N * P);
      const small = client.alloc(N * 64);
      for (let k = 0; k < N; k++) {
        mem.bytes.fill(k & 0xff, k * P, (k + 1) * P);
        small.bytes.fill((k + 1) & 0xff, k * 64, (k + 1) * 64);
      }
      const ops = [];
      for (let k = 0; k < N; k++) {
        ops.push({ file: slots, buffer: mem.subarray(k * P, (k + 1) * P), fileOffset: k * P, crc32c: { offset: 64, length: P - 64, at: 0 } });
        ops.push({ file: entries, buffer: small.subarray(k * 64, (k + 1) * 64), fileOffset: k * P + 4, after: 2 * k }); // over the slot's first bytes
      }
      const rs = await client.batchWrite(ops);
      expect(rs.every((r) => r.error === null)).toBe(true);
      await slots.datasync();
      const disk = readFileSync(tmp.path('slots.bin'));
      for (let k = 0; k < N; k++) {
        expect(disk.subarray(k * P + 4, k * P + 68).every((b) => b === ((k + 1) & 0xff)), `entry ${k} landed after its slot`).toBe(true);
        expect(disk.subarray(k * P + 68, (k + 1) * P).every((b) => b === (k & 0xff))).toBe(true);
      }
      await slots.close();
      await entries.close();
    }));
});
