// CRC32C in native code (native/util/crc32c.cc through lib/core/crc32c.ts): the RFC 3720 test patterns, and
// a bitwise JS implementation as the oracle on random data of every small length and alignment,
// for the hardware path (SSE4.2, when the CPU has it) and the software path alike.
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cBytes, crc32cMany, crc32cSync, crc32Many, crc32Ranges, crc32Sync } from '../../../lib/core/crc32c';
import { native } from '../../../lib/core/native';
import { failure, MiB, Rng, seedFor } from '../../helpers';

/** The definition, one bit at a time: independent of the native tables and instruction. */
function oracle(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const softwareSync = (v: ArrayBufferView) => native().crc32cSync(v, true);
const rng = new Rng(seedFor('crc32c'));

// RFC 3720 (iSCSI) appendix B.4, and the usual check value.
const vectors: [string, Uint8Array, number][] = [
  ['32 zero bytes', new Uint8Array(32), 0x8a9136aa],
  ['32 0xFF bytes', new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ['ascending 0..31', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ['descending 31..0', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ['"123456789"', Buffer.from('123456789'), 0xe3069283],
  ['empty', new Uint8Array(0), 0],
];

describe('known vectors', () => {
  for (const [name, bytes, want] of vectors) {
    it(name, async () => {
      expect(oracle(bytes)).toBe(want);
      expect(crc32cSync(bytes)).toBe(want);
      expect(softwareSync(bytes)).toBe(want);
      expect(crc32cBytes(bytes, 0, bytes.length)).toBe(want);
      expect(await crc32c(bytes)).toBe(want);
    });
  }
});

describe('against the bitwise oracle', () => {
  it('every length 0..257 at every alignment 0..15, both paths (and the JS one for small inputs)', async () => {
    const backing = rng.bytes(257 + 16);
    const views: Uint8Array[] = [];
    for (let len = 0; len <= 257; len++) {
      for (let off = 0; off < 16; off++) {
        const v = backing.subarray(off, off + len);
        const want = oracle(v);
        expect(crc32cSync(v), `len ${len} off ${off}`).toBe(want);
        expect(softwareSync(v), `software len ${len} off ${off}`).toBe(want);
        expect(crc32cBytes(backing, off, off + len), `JS len ${len} off ${off}`).toBe(want);
        views.push(v);
      }
    }
    const got = await crc32cMany(views);
    expect(Array.from(got)).toEqual(views.map(oracle));
  });

  it('1 MiB, whole and at odd offsets', async () => {
    const big = rng.bytes(MiB + 7);
    for (const v of [big.subarray(0, MiB), big.subarray(3, MiB + 3), big.subarray(7)]) {
      const want = oracle(v);
      expect(await crc32c(v)).toBe(want);
      expect(crc32cSync(v)).toBe(want);
      expect(softwareSync(v)).toBe(want);
    }
  });

  it('around the three-stream runs (3 KiB each): lengths just under, at and over whole runs, at every alignment 0..7', () => {
    // The hardware path checksums 3 KiB runs as three 1 KiB streams and joins them; the rest,
    // under a run, goes one stream. Off-by-one in the join or the hand-over shows here.
    const RUN = 3 * 1024;
    const backing = rng.bytes(5 * RUN + 64);
    for (const runs of [1, 2, 5]) {
      for (const delta of [-9, -8, -1, 0, 1, 7, 8, 1023, 1024, 1025]) {
        for (let off = 0; off < 8; off++) {
          const v = backing.subarray(off, off + runs * RUN + delta);
          expect(crc32cSync(v), `${runs} runs ${delta >= 0 ? '+' : ''}${delta} off ${off}`).toBe(oracle(v));
        }
      }
    }
  });

  it('other view types read their bytes, not their elements', async () => {
    const bytes = rng.bytes(64);
    const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 64);
    const want = oracle(new Uint8Array(buf, 4, 56));
    for (const v of [new Uint32Array(buf, 4, 14), new Float64Array(buf.slice(4, 60), 0, 7), new DataView(buf, 4, 56)]) {
      expect(crc32cSync(v)).toBe(want);
      expect(await crc32c(v)).toBe(want);
    }
  });

  it('a single bit flip changes the checksum', () => {
    const bytes = rng.bytes(4096);
    const before = crc32cSync(bytes);
    bytes[1234] ^= 0x10;
    expect(crc32cSync(bytes)).not.toBe(before);
    expect(crc32cSync(bytes)).toBe(oracle(bytes));
  });
});

describe('many views at once', () => {
  it('results in order, empty views included', async () => {
    const views = Array.from({ length: 500 }, (_, i) => (i % 7 === 0 ? new Uint8Array(0) : rng.bytes(rng.int(1, 9000))));
    const got = await crc32cMany(views);
    expect(got).toBeInstanceOf(Uint32Array);
    expect(Array.from(got)).toEqual(views.map(oracle));
  });

  it('no views: an empty result', async () => {
    expect(await crc32cMany([])).toEqual(new Uint32Array(0));
  });

  it('concurrent calls do not mix their results', async () => {
    const sets = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => rng.bytes(rng.int(0, 200_000))));
    const all = await Promise.all(sets.map((s) => crc32cMany(s)));
    all.forEach((got, i) => expect(Array.from(got)).toEqual(sets[i].map(oracle)));
  });

  it('the views stay alive while the pool works, even when the caller drops them', async () => {
    const want: number[] = [];
    const pending = (() => {
      const views = Array.from({ length: 32 }, () => rng.bytes(256 * 1024));
      want.push(...views.map(oracle));
      return crc32cMany(views);
    })();
    (globalThis as { gc?: () => void }).gc?.();
    expect(Array.from(await pending)).toEqual(want);
  });
});

describe('bad input', () => {
  it('refuses what is not a view', async () => {
    for (const bad of [undefined, null, 'abc', 42, [1, 2, 3], new ArrayBuffer(8), {}]) {
      expect((await failure(() => crc32c(bad as never))).code).toBe('ERR_INVALID_ARG_TYPE');
      expect((await failure(() => crc32cSync(bad as never))).code).toBe('ERR_INVALID_ARG_TYPE');
      expect((await failure(() => crc32cMany([new Uint8Array(1), bad as never]))).code).toBe('ERR_INVALID_ARG_TYPE');
    }
    expect((await failure(() => crc32cMany(new Uint8Array(4) as never))).code).toBe('ERR_INVALID_ARG_TYPE');
  });

  it('the native binding checks its arguments too', async () => {
    const b = native();
    expect(() => b.crc32c([new Uint8Array(1)], new Uint32Array(2))).toThrow(/one element per view/);
    expect(() => b.crc32c([new Uint8Array(1)], new Float64Array(1) as never)).toThrow(/Uint32Array/);
    expect(() => b.crc32c(['x' as never], new Uint32Array(1))).toThrow(/views\[0\]/);
    expect(() => b.crc32cSync({} as never)).toThrow(/TypedArray or DataView/);
  });
});

// CRC-32 (zlib's), for ffrecord: node:zlib's own crc32 is the oracle (another implementation).
describe('CRC-32 (zlib polynomial)', () => {
  // The table-driven path, whatever the CPU (the default is carry-less multiplication when it can).
  const tables = (v: ArrayBufferView, crc = 0) => native().crc32Sync(v, crc, true);

  it('the check value, and node:zlib on every small length and alignment, both paths', async () => {
    expect(crc32Sync(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(tables(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Sync(new Uint8Array(0))).toBe(0);
    const backing = rng.bytes(300 + 16);
    const views: Uint8Array[] = [];
    for (let len = 0; len <= 300; len += 1) for (let off = 0; off < 16; off += 5) views.push(backing.subarray(off, off + len));
    for (const v of views) {
      expect(crc32Sync(v), `len ${v.length}`).toBe(zlib.crc32(v));
      expect(tables(v), `tables, len ${v.length}`).toBe(zlib.crc32(v));
    }
    expect(Array.from(await crc32Many(views))).toEqual(views.map((v) => zlib.crc32(v)));
  });

  it('continues a running value, as zlib does, over 1 MiB in pieces', () => {
    const big = rng.bytes(MiB + 3);
    let running = 0;
    for (let at = 0; at < big.length; at += 65_537) running = crc32Sync(big.subarray(at, at + 65_537), running);
    expect(running).toBe(zlib.crc32(big));
    expect(crc32Sync(big)).toBe(zlib.crc32(big));
    expect(tables(big)).toBe(zlib.crc32(big));
  });

  it('refuses bad input', async () => {
    expect((await failure(() => crc32Many([{} as never]))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => crc32Sync('x' as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => crc32Sync(new Uint8Array(1), -1))).code).toBe('ERR_OUT_OF_RANGE');
    expect(() => native().crc32([new Uint8Array(1)], new Uint32Array(2))).toThrow(/one element per view/);
  });
});

describe('CRC-32 of ranges of one view', () => {
  it('each range as node:zlib computes it; empty ranges; bad ranges refused', async () => {
    const whole = rng.bytes(100_000);
    const pairs: number[] = [];
    for (let i = 0; i < 300; i++) {
      const start = rng.int(0, whole.length);
      pairs.push(start, rng.int(0, whole.length - start));
    }
    pairs.push(0, 0, whole.length, 0, 0, whole.length);
    const got = await crc32Ranges(whole, Float64Array.from(pairs));
    for (let i = 0; i < pairs.length / 2; i++) expect(got[i]).toBe(zlib.crc32(whole.subarray(pairs[2 * i], pairs[2 * i] + pairs[2 * i + 1])));
    for (const bad of [[0, 100_001], [-1, 1], [99_999, 2], [0.5, 1]]) {
      expect((await failure(() => crc32Ranges(whole, Float64Array.from(bad)))).code, String(bad)).toBe('ERR_OUT_OF_RANGE');
    }
    expect((await failure(() => crc32Ranges(whole, [0, 1] as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => crc32Ranges(whole, new Float64Array(3)))).code).toBe('ERR_INVALID_ARG_TYPE');
  });
});
