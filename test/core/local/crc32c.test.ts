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

// Each kernel this CPU runs (native/util/crc32c_x86.cc: carry-less folding over 256-bit and 128-bit
// lanes, three crc32 chains, one chain; and software), called by name, against the oracle: every
// length up to past two 128-byte blocks at every alignment, the lengths around each kernel's
// block and lane sizes, and 1 MiB.
const { supported: kernels } = native().crc32cKernels();

describe.each(kernels)('kernel %s against the bitwise oracle', (kernel) => {
  const run = (v: ArrayBufferView) => native().crc32cSync(v, kernel) >>> 0;

  it('the known vectors', () => {
    for (const [name, bytes, want] of vectors) expect(run(bytes), name).toBe(want);
  });

  it('every length 0..600 at every alignment 0..7', () => {
    const backing = rng.bytes(600 + 8);
    for (let len = 0; len <= 600; len++) {
      for (let off = 0; off < 8; off++) {
        const v = backing.subarray(off, off + len);
        expect(run(v), `len ${len} off ${off}`).toBe(oracle(v));
      }
    }
  });

  it('around block sizes (16, 32, 64, 128, 256 bytes and 3 KiB runs), and 1 MiB at odd offsets', () => {
    const backing = rng.bytes(3 * 3072 + 64);
    for (const block of [16, 32, 64, 128, 256, 3072]) {
      for (const times of [1, 2, 3]) {
        for (const delta of [-1, 0, 1, 15, 16, 17, 31, 33]) {
          const len = block * times + delta;
          if (len < 0 || len > backing.length - 5) continue;
          const v = backing.subarray(5, 5 + len);
          expect(run(v), `${times} x ${block} ${delta >= 0 ? '+' : ''}${delta}`).toBe(oracle(v));
        }
      }
    }
    const big = rng.bytes(MiB + 7);
    for (const v of [big.subarray(0, MiB), big.subarray(3, MiB + 3), big.subarray(7)]) expect(run(v)).toBe(oracle(v));
  });

  it('made the process-wide kernel, the async and sync entry points use it', async () => {
    const before = native().setCrc32cKernel(kernel);
    try {
      expect(native().crc32cKernels().current).toBe(kernel);
      const views = [rng.bytes(100_000), rng.bytes(4099), new Uint8Array(0)];
      expect(Array.from(await crc32cMany(views))).toEqual(views.map(oracle));
      expect(crc32cSync(views[0])).toBe(oracle(views[0]));
    } finally {
      native().setCrc32cKernel(before);
    }
  });
});

describe('kernels by name', () => {
  it('software is always there, last; an unknown name is refused and changes nothing', () => {
    expect(kernels[kernels.length - 1]).toBe('software');
    expect(kernels).toContain(native().crc32cKernels().current);
    const current = native().crc32cKernels().current;
    expect(() => native().setCrc32cKernel('no-such-kernel')).toThrow(/no CRC32C kernel 'no-such-kernel'/);
    expect(() => native().crc32cSync(new Uint8Array(1), 'no-such-kernel')).toThrow(/no CRC32C kernel/);
    expect(native().crc32cKernels().current).toBe(current);
  });
});

describe('combine (GF(2) shifts) and spread (pieces on several threads)', () => {
  it('CRC32C(A || B) from the CRCs of A and B, for every split of random data, and for lengths past 4 GiB', () => {
    const whole = rng.bytes(3000);
    for (let cut = 0; cut <= whole.length; cut += cut < 40 ? 1 : 97) {
      const a = whole.subarray(0, cut), b = whole.subarray(cut);
      expect(native().crc32cCombine(oracle(a), oracle(b), b.length) >>> 0, `cut ${cut}`).toBe(oracle(whole));
    }
    // A long run of zeros: its CRC by combining halves, checked against the one-piece CRC at 1 MiB.
    const zeros = new Uint8Array(MiB);
    const half = crc32cSync(zeros.subarray(0, MiB / 2));
    expect(native().crc32cCombine(half, half, MiB / 2) >>> 0).toBe(oracle(zeros));
    // Lengths past 4 GiB: moving past n and then m bytes is moving past n + m (x^8n * x^8m = x^8(n+m)).
    const past = (crc: number, n: number) => native().crc32cCombine(crc, 0, n) >>> 0;
    for (const [n, m] of [[2 ** 39 + 17, 2 ** 40 - 5], [2 ** 32 - 1, 1], [2 ** 51, 2 ** 51 + 3]]) {
      expect(past(past(0x12345678, n), m), `${n} + ${m}`).toBe(past(0x12345678, n + m));
      expect(past(0x12345678, n)).not.toBe(past(0x12345678, n + 1));
    }
    expect(() => native().crc32cCombine(1, 2, -1)).toThrow(/safe integer/);
  });

  it('a range split over 1, 2, 3, 5 and 16 threads gives the one-piece CRC, around piece sizes', () => {
    const before = native().checksumThreads();
    try {
      const big = rng.bytes(4 * MiB + 4099);
      for (const threads of [1, 2, 3, 5, 16]) {
        native().checksumThreads(threads);
        for (const len of [0, 1, 512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, 768 * 1024 + 3, MiB, 4 * MiB + 4099]) {
          const v = big.subarray(big.length - len);
          expect(native().crc32cSpread(v) >>> 0, `${threads} threads, ${len} bytes`).toBe(native().crc32cSync(v, 'software') >>> 0);
        }
      }
      expect(native().checksumThreads()).toBe(16);
    } finally {
      native().checksumThreads(before);
    }
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
