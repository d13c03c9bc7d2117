// The safetensors reader (lib/datasets/safetensors.ts) against files this test writes from the format's
// description (its own little writer below, sharing nothing with the reader), checked against the
// values written and node:fs's bytes: whole loads, subsets, tensor-parallel parts along every
// dimension, coalescing, and every header check. Runs on both engines.
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import type { Client } from '../../lib/index';
import { ReadPlan } from '../../lib/datasets/read-plan';
import { MAX_HEADER_BYTES, openSafetensors } from '../../lib/datasets/safetensors';
import { ENGINE, failure, makeTmpDir, Rng, seedFor, testConnect, withTestClient } from '../helpers';

const tmp = makeTmpDir('safetensors');
let client: Client;
withTestClient((c) => (client = c), tmp);

interface Spec {
  name: string;
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** A safetensors file: u64 header length, JSON padded with spaces to 8 bytes, the tensors in order. */
function safetensorsBytes(specs: Spec[], metadata?: Record<string, string>, edit?: (header: Record<string, unknown>) => void): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let at = 0;
  for (const s of specs) {
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [at, at + s.data.length] };
    at += s.data.length;
  }
  edit?.(header);
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - ((8 + json.length) % 8)) % 8, ' ')]);
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([n, json, ...specs.map((s) => s.data)]);
}

const BYTES: Record<string, number> = { F32: 4, F64: 8, I64: 8, U8: 1, I16: 2, BF16: 2, F16: 2 };
const rng = new Rng(seedFor('safetensors'));
const tensor = (name: string, dtype: string, shape: number[]): Spec => ({ name, dtype, shape, data: rng.bytes(shape.reduce((a, b) => a * b, 1) * BYTES[dtype]) });

let files = 0;
function write(specs: Spec[], metadata?: Record<string, string>, edit?: (header: Record<string, unknown>) => void): string {
  const path = tmp.path(`m${files++}.safetensors`);
  writeFileSync(path, safetensorsBytes(specs, metadata, edit));
  return path;
}

/** The model of a part: rows [from, to) of dim `dim` of a row-major tensor, as bytes. */
function partOf(s: Spec, dim: number, parts: number, index: number): { shape: number[]; bytes: Buffer } {
  const size = s.shape[dim];
  const per = Math.ceil(size / parts);
  const from = Math.min(size, index * per);
  const to = Math.min(size, from + per);
  const inner = s.shape.slice(dim + 1).reduce((a, b) => a * b, 1) * BYTES[s.dtype];
  const outer = s.shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const pieces: Buffer[] = [];
  for (let o = 0; o < outer; o++) pieces.push(s.data.subarray((o * size + from) * inner, (o * size + to) * inner));
  const shape = [...s.shape];
  shape[dim] = to - from;
  return { shape, bytes: Buffer.concat(pieces) };
}

describe('loading', () => {
  // 'ids' follows 66 bytes of BF16: it sits 2 bytes off an 8-byte boundary in the file, and so in
  // memory, where an I64 array cannot start; 'pos' is 8-aligned again.
  const specs = [tensor('embed', 'F32', [64, 33]), tensor('norm', 'BF16', [33]), tensor('ids', 'I64', [5, 3]), tensor('pad', 'U8', [6]), tensor('pos', 'I64', [4]), tensor('mask', 'U8', [8]), tensor('proj', 'F64', [9, 4, 6]), tensor('scale', 'I16', [3]), tensor('empty', 'F32', [0, 4])];

  it.skipIf(ENGINE !== 'hf3fs')("hf3fs: a client whose iovs have a blockSize: a load's range, in one buffer, still reads (no op crosses a block)", async () => {
    // The client gives its iovs 4 KiB blocks unless told otherwise; 3FS refuses an op whose
    // memory crosses one, and the tensors here are read as one range of about 11 KiB.
    const path = write(specs);
    const blocky = testConnect({ blockSize: 4096 });
    try {
      await using st = await openSafetensors(path, { client: blocky });
      using loaded = await st.load();
      for (const s of specs) expect(loaded.get(s.name)!.bytes.equals(s.data), s.name).toBe(true);
    } finally {
      await blocky.close();
    }
  });

  it('header, names in file order, metadata; all tensors in one submission, coalesced into one range', async () => {
    const path = write(specs, { format: 'pt' });
    await using st = await openSafetensors(path, { client });
    expect(st.names()).toEqual(specs.map((s) => s.name));
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(st.tensors.get('proj')).toMatchObject({ dtype: 'F64', shape: [9, 4, 6], byteLength: 9 * 4 * 6 * 8 });
    const before = client.metrics();
    using loaded = await st.load();
    const after = client.metrics();
    expect(after.batches - before.batches).toBe(1);
    expect(after.readOps - before.readOps, 'one range for tensors that touch').toBe(1);
    // Locally (ext4) that range is read with O_DIRECT: the aligned range around it.
    if (ENGINE === 'local') expect(after.directBytes - before.directBytes).toBeGreaterThan(0);
    const file = readFileSync(path);
    for (const s of specs) {
      const t = loaded.get(s.name)!;
      expect(t.bytes.equals(s.data), s.name).toBe(true);
      expect(t.shape).toEqual(s.shape);
      const info = st.tensors.get(s.name)!;
      expect(file.subarray(info.offset, info.offset + info.byteLength).equals(s.data)).toBe(true);
    }
    // Typed views where JS has the type, none for BF16.
    const f32 = loaded.get('embed')!.array as Float32Array;
    expect(f32).toBeInstanceOf(Float32Array);
    expect(f32[5]).toBe(specs[0].data.readFloatLE(20));
    expect(loaded.get('ids')!.array, 'misaligned in the file: bytes only').toBeUndefined();
    expect((loaded.get('pos')!.array as BigInt64Array)[3]).toBe(specs[4].data.readBigInt64LE(24));
    expect(loaded.get('empty')!.array).toEqual(new Float32Array(0));
    expect(loaded.get('proj')!.array).toBeInstanceOf(Float64Array);
    expect(loaded.get('mask')!.array).toBeInstanceOf(Uint8Array);
    expect(loaded.get('norm')!.array).toBeUndefined();
    expect(loaded.buffer.registered).toBe(true);
  });

  it('a load of 8 MiB or more: 4 MiB ops in one batch per ring (both cores copy a warm file), bytes as node:fs; cut short, it names where', async () => {
    const big = [tensor('a', 'F32', [655_361]), tensor('b', 'U8', [3]), tensor('c', 'F64', [400_000]), tensor('d', 'BF16', [1_500_001])];
    const path = write(big);
    await using st = await openSafetensors(path, { client });
    const bytes = st.bytesFor();
    expect(bytes).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    const before = client.metrics();
    using loaded = await st.load();
    const after = client.metrics();
    expect(after.readOps - before.readOps, '4 MiB ops').toBe(Math.ceil(bytes / (4 * 1024 * 1024)));
    expect(after.batches - before.batches, 'a batch per ring').toBe(Math.min(client.info().rings, after.readOps - before.readOps));
    const file = readFileSync(path);
    for (const s of big) {
      const info = st.tensors.get(s.name)!;
      expect(loaded.get(s.name)!.bytes.equals(file.subarray(info.offset, info.offset + info.byteLength)), s.name).toBe(true);
    }
    const cut = file.length - 5000;
    truncateSync(path, cut);
    expect(await failure(() => st.load())).toMatchObject({ code: 'ERR_SAFETENSORS_TRUNCATED', path, offset: cut });
  });

  it('into: reloads reuse the caller\'s registered buffer, which free() leaves alone; too small is refused', async () => {
    const path = write(specs);
    await using st = await openSafetensors(path, { client });
    const need = st.bytesFor();
    using into = client.alloc(need);
    for (let round = 0; round < 2; round++) {
      const loaded = await st.load(undefined, { into });
      expect(loaded.buffer).toBe(into);
      expect(loaded.get('proj')!.bytes.equals(specs[6].data)).toBe(true);
      expect(loaded.get('proj')!.bytes.buffer).toBe(into.bytes.buffer);
      loaded.free();
      expect(into.freed).toBe(false);
    }
    using small = client.alloc(need - 1);
    expect((await failure(() => st.load(undefined, { into: small }))).code).toBe('ERR_OUT_OF_RANGE');
  });

  it('a subset: far-apart tensors are separate ranges, near ones one range across the gap', async () => {
    const big = [tensor('a', 'F32', [100]), tensor('gap', 'U8', [200_000]), tensor('b', 'F32', [50]), tensor('c', 'F32', [10])];
    const path = write(big);
    await using st = await openSafetensors(path, { client });
    for (const [names, maxGap, ops] of [[['a', 'b'], undefined, 2], [['a', 'b'], 300_000, 1], [['b', 'c', 'b'], 0, 1]] as const) {
      const before = client.metrics().readOps;
      using loaded = await st.load([...names], { maxGap });
      expect(client.metrics().readOps - before, `${names} gap ${maxGap}`).toBe(ops);
      expect([...loaded.tensors.keys()].sort()).toEqual([...new Set(names)].sort());
      for (const n of names) expect(loaded.get(n)!.bytes.equals(big.find((s) => s.name === n)!.data)).toBe(true);
    }
  });

  it('tensor-parallel parts along every dimension, uneven splits too, match the model and rebuild the whole', async () => {
    const t2 = tensor('w2', 'F32', [10, 7]);
    const t3 = tensor('w3', 'I16', [3, 5, 4]);
    const bias = tensor('bias', 'F32', [7]);
    const path = write([t2, bias, t3]);
    await using st = await openSafetensors(path, { client });
    for (const s of [t2, t3]) {
      for (let dim = 0; dim < s.shape.length; dim++) {
        for (const parts of [1, 2, 3]) {
          for (let index = 0; index < parts; index++) {
            using loaded = await st.load([s.name], { slice: { dim, parts, index } });
            const want = partOf(s, dim, parts, index);
            const got = loaded.get(s.name)!;
            expect(got.shape, `${s.name} dim ${dim} part ${index}/${parts}`).toEqual(want.shape);
            expect(got.bytes.equals(want.bytes), `${s.name} dim ${dim} part ${index}/${parts}`).toBe(true);
          }
        }
      }
    }
    // A slice applies to tensors with enough dimensions; a function chooses per tensor.
    using rowParallel = await st.load(['w2', 'bias'], { slice: { dim: 1, parts: 2, index: 1 } });
    expect(rowParallel.get('w2')!.shape).toEqual([10, 3]);
    expect(rowParallel.get('bias')!.bytes.equals(bias.data), 'a 1-D bias has no dim 1: loaded whole').toBe(true);
    using chosen = await st.load(['w2', 'bias'], { slice: (t) => (t.name === 'w2' ? { dim: 0, parts: 5, index: 4 } : undefined) });
    expect(chosen.get('w2')!.bytes.equals(partOf(t2, 0, 5, 4).bytes)).toBe(true);
    expect(chosen.get('bias')!.bytes.equals(bias.data)).toBe(true);
  });
});

describe('bad files and bad input', () => {
  const ok = () => [tensor('x', 'F32', [4, 4]), tensor('y', 'U8', [3])];
  const expectOpen = async (path: string, code: string) => {
    const e = await failure(() => openSafetensors(path, { client }));
    expect(e.code, e.message).toBe(code);
    expect(e.path).toBe(path);
    return e;
  };
  const raw = (bytes: Buffer) => {
    const path = tmp.path(`bad${files++}.safetensors`);
    writeFileSync(path, bytes);
    return path;
  };
  const withLength = (n: bigint, rest: Buffer) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(n);
    return Buffer.concat([b, rest]);
  };

  it('header length: over the limit, past the end, a file too short for it', async () => {
    await expectOpen(raw(withLength(BigInt(MAX_HEADER_BYTES) + 1n, Buffer.from('{}'))), 'ERR_SAFETENSORS_HEADER_TOO_LARGE');
    await expectOpen(raw(withLength(2n ** 63n, Buffer.alloc(0))), 'ERR_SAFETENSORS_HEADER_TOO_LARGE');
    await expectOpen(raw(withLength(100n, Buffer.from('{}'))), 'ERR_SAFETENSORS_TRUNCATED');
    await expectOpen(raw(Buffer.alloc(5)), 'ERR_SAFETENSORS_TRUNCATED');
  });

  it('the header itself: not JSON, not an object, not UTF-8, bad metadata', async () => {
    await expectOpen(raw(withLength(5n, Buffer.from('{"a":'))), 'ERR_SAFETENSORS_BAD_HEADER');
    await expectOpen(raw(withLength(2n, Buffer.from('[]'))), 'ERR_SAFETENSORS_BAD_HEADER');
    await expectOpen(raw(withLength(4n, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))), 'ERR_SAFETENSORS_BAD_HEADER');
    await expectOpen(write(ok(), { n: 1 as never }), 'ERR_SAFETENSORS_BAD_HEADER');
  });

  it('tensor entries: unknown dtype, bad shape, size not matching, overlap, gap, data cut short', async () => {
    const edits: [string, (h: Record<string, unknown>) => void, string][] = [
      ['dtype', (h) => ((h.x as { dtype: string }).dtype = 'F128'), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['dtype toString', (h) => ((h.x as { dtype: string }).dtype = 'toString'), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['dtype __proto__', (h) => ((h.x as { dtype: string }).dtype = '__proto__'), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['shape', (h) => ((h.x as { shape: unknown }).shape = [4, -4]), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['size', (h) => ((h.x as { shape: number[] }).shape = [4, 5]), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['backwards', (h) => ((h.y as { data_offsets: number[] }).data_offsets = [67, 64]), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['overlap', (h) => ((h.y as { data_offsets: number[] }).data_offsets = [62, 65]), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['gap', (h) => ((h.y as { data_offsets: number[]; shape: number[] }).data_offsets = [65, 67], ((h.y as { shape: number[] }).shape = [2])), 'ERR_SAFETENSORS_BAD_HEADER'],
      ['past the data', (h) => ((h.y as { data_offsets: number[]; shape: number[] }).data_offsets = [64, 70], ((h.y as { shape: number[] }).shape = [6])), 'ERR_SAFETENSORS_TRUNCATED'],
    ];
    for (const [what, edit, code] of edits) {
      const e = await expectOpen(write(ok(), undefined, edit), code);
      expect(e.message, what).toMatch(/'.*\.safetensors'/);
      if (what.startsWith('dtype')) expect(e.message, what).toContain('unknown dtype'); // not a name Object.prototype has
    }
  });

  it('unknown tensor names, bad slices; a file cut after open fails the load with ERR_SAFETENSORS_TRUNCATED', async () => {
    const path = write(ok());
    await using st = await openSafetensors(path, { client });
    expect((await failure(() => st.load(['nope']))).code).toBe('ERR_SAFETENSORS_NO_TENSOR');
    expect((await failure(() => st.load(['x'], { slice: { dim: 0, parts: 2, index: 2 } }))).code).toBe('ERR_OUT_OF_RANGE');
    expect((await failure(() => st.load(['x'], { slice: () => ({ dim: 5, parts: 2, index: 0 }) }))).code).toBe('ERR_OUT_OF_RANGE');
    expect((await failure(() => st.load('x' as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    truncateSync(path, readFileSync(path).length - 2);
    expect(await failure(() => st.load(['y']))).toMatchObject({ code: 'ERR_SAFETENSORS_TRUNCATED', path });
  });
});

describe('hostile shapes', () => {
  it('a part of an empty tensor with an enormous outer size plans no ranges (it looped once per outer row)', async () => {
    // Zero bytes (a 0 in its shape), so the header is valid; a part along dim 1 has 2^53 - 1 empty rows.
    const big = Number.MAX_SAFE_INTEGER;
    const path = write([tensor('w', 'F32', [2, 3]), { name: 'e', dtype: 'F32', shape: [big, 4, 0], data: Buffer.alloc(0) }]);
    await using st = await openSafetensors(path, { client });
    // Guard: fail (rather than hang the worker) if the plan goes row by row.
    const place = ReadPlan.prototype.place;
    let calls = 0;
    const spy = vi.spyOn(ReadPlan.prototype, 'place').mockImplementation(function (this: ReadPlan, ...args: Parameters<ReadPlan['place']>) {
      if (++calls > 1000) throw new Error('the plan goes over the empty rows one by one');
      return place.apply(this, args);
    });
    try {
      using loaded = await st.load(['w', 'e'], { slice: { dim: 1, parts: 2, index: 1 } });
      expect(loaded.get('e')).toMatchObject({ shape: [big, 2, 0] });
      expect(loaded.get('e')!.bytes.length).toBe(0);
      expect(loaded.get('w')!.shape).toEqual([2, 1]);
    } finally {
      spy.mockRestore();
    }
  });
});
