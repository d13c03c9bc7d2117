// Seeded randomness, so a failure replays (THREEFS_TEST_SEED), and the units test data is sized in.

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

export const MiB = 1 << 20;
export const KiB = 1 << 10;
