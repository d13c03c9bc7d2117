// The submit wire (lib/core/wire.ts and its twin native/objects/client/wire.h): the two definitions
// agree, a batch packed with wire.ts's helpers and handed straight to the addon moves the bytes
// node:fs says it should with its results where wire.ts reads them, and each side makes the checks
// wire.ts gives it (native: bounds it dereferences; TypeScript: meaning, with user-facing errors).
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../../lib/core/native';
import { CHECKSUM, NONE, OP, packDescriptor, RESULT, viewRef, WIRE } from '../../../lib/core/wire';
import { crc32cSync } from '../../../lib/core/crc32c';
import { failure, makeTmpDir, Rng, seedFor, withClient } from '../../helpers';

const tmp = makeTmpDir('wire');
afterAll(() => tmp.cleanup());

describe('the submit wire', () => {
  it('the addon exports the layout lib/core/wire.ts defines', () => {
    expect(native().wire).toStrictEqual(WIRE);
    // Every field of a record has its own slot below the stride.
    for (const record of [OP, RESULT, CHECKSUM]) {
      const { stride, ...fields } = record;
      expect(new Set(Object.values(fields)), JSON.stringify(record)).toEqual(new Set([...Array(stride).keys()]));
    }
  });

  it('a batch packed with wire.ts, straight to the addon: the bytes node:fs reads, results and CRCs where wire.ts says', () =>
    withClient(async (client) => {
      const path = tmp.path('read.bin');
      const content = new Rng(seedFor('wire')).bytes(64 * 1024);
      writeFileSync(path, content);
      const f = await client.open(path, 'r');
      const region = client.alloc(16 * 1024);
      const view = new Uint8Array(32 * 1024);
      // [bufferRef, bufferOffset, length, fileOffset]: every field differs, so a swapped slot shows.
      const ops = [
        [region.region.id, region.byteOffset + 100, 3000, 5000],
        [viewRef(0), 7, 12_345, 40_000],
        [viewRef(0), 20_000, 9000, 60_000], // past EOF: a short read
      ] as const;
      const descriptors = new Float64Array(ops.length * OP.stride);
      ops.forEach(([ref, at, length, offset], i) => packDescriptor(descriptors, i, 0, ref, at, length, offset));
      const checksums = new Float64Array(ops.length * CHECKSUM.stride).fill(NONE);
      checksums[1 * CHECKSUM.stride + CHECKSUM.offset] = 45;
      checksums[1 * CHECKSUM.stride + CHECKSUM.length] = 1000;
      const crcs = new Uint32Array(ops.length);
      const results = new Float64Array(ops.length * RESULT.stride);
      const nc = region.region.owner;
      const [, settled] = nc.submit(false, [f.native], [view], descriptors, results, false, checksums, crcs);
      await settled;
      ops.forEach(([ref, at, length, offset], i) => {
        const want = content.subarray(offset, offset + length);
        const memory = ref === viewRef(0) ? view : new Uint8Array(region.region.memory);
        expect(results[i * RESULT.stride + RESULT.errno], `op ${i}`).toBe(0);
        expect(results[i * RESULT.stride + RESULT.bytes], `op ${i}`).toBe(want.length);
        expect(Buffer.from(memory.subarray(at, at + want.length)).equals(want), `op ${i}`).toBe(true);
      });
      expect(crcs[1]).toBe(crc32cSync(content.subarray(40_045, 41_045)));
      region.free();
      await f.close();
    }));

  it("checksum ranges: native refuses what would reach outside the op, TypeScript also refuses 'at' inside the range", () =>
    withClient(async (client) => {
      const path = tmp.path('write.bin');
      const f = await client.open(path, 'w+');
      const view = new Uint8Array(4096);
      const probe = client.alloc(0);
      const nc = probe.region.owner;
      probe.free();
      const descriptors = new Float64Array(OP.stride);
      packDescriptor(descriptors, 0, 0, viewRef(0), 0, 4096, 0);
      const submit = (offset: number, length: number, at: number) => {
        const sums = new Float64Array([offset, length, at]);
        return nc.submit(true, [f.native], [view], descriptors, new Float64Array(RESULT.stride), false, sums, new Uint32Array(1));
      };
      expect(() => submit(0, 4097, 4092)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => submit(0, 100, 4093)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => submit(4000, 97, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(readFileSync(path).length).toBe(0); // refused: nothing queued
      // 'at' inside the range is memory-safe, so native code takes it; its meaning is TypeScript's to check.
      view.fill(7);
      const [, settled] = submit(0, 100, 50);
      await settled;
      expect(readFileSync(path).length).toBe(4096);
      const e = await failure(() => f.batchWrite([{ buffer: view, fileOffset: 0, crc32c: { offset: 0, length: 100, at: 50 } }]));
      expect(e).toMatchObject({ code: 'ERR_OUT_OF_RANGE', index: 0, path });
      await f.close();
    }));
});
