// Seeded offsets: every tool reads the same blocks in the same order for the same seed.
import type { Workload } from './records';

/** sfc32 seeded by splitmix32: small, fast, and the same offsets for the same seed. */
export function makeRng(seed: number): () => number {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  const next32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t >>> 0;
  };
  // 53 random bits as a double in [0, 1).
  return () => (next32() * 2 ** 21 + (next32() >>> 11)) / 2 ** 53;
}

/**
 * The next file offset for a workload: a shared cursor wrapping around the file (seq), or
 * uniform block-aligned offsets from a seeded PRNG (rand). With `onePass`, seq returns -1 once
 * the whole file was handed out.
 */
export function offsetSource(w: Workload, fileSize: number, seed: number, onePass = false): () => number {
  const blocks = Math.floor(fileSize / w.blockSize);
  if (blocks < 1) throw new Error(`the file (${fileSize} bytes) is smaller than one ${w.blockSize}-byte block`);
  if (w.pattern === 'rand') {
    const rng = makeRng(seed);
    return () => Math.floor(rng() * blocks) * w.blockSize;
  }
  let next = 0;
  return () => {
    if (next >= blocks) {
      if (onePass) return -1;
      next = 0;
    }
    return w.blockSize * next++;
  };
}
