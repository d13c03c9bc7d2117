// What the KVCache bench stores: SGLang-like keys, and payloads derived from their key so a get
// can be checked. A payload is a window of a seeded random block (a different window per key) with
// every 4 KiB block stamped (key, block index, salt); the parent and the node:fs child agree on it.
import { createHash } from 'node:crypto';
import { KiB } from '../../support/units';

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** SGLang-like keys: 64 hex digits. */
export function benchKey(scope: string, i: number): string {
  return createHash('sha256').update(`3fs-client bench ${scope} ${i}`).digest('hex');
}

function randomBlock(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(roundUp(bytes, 4));
  const u = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < u.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u[i] = x >>> 0;
  }
  return b.subarray(0, bytes);
}

export class Payloads {
  readonly base: Buffer;
  constructor(
    readonly pageBytes: number,
    readonly salt: number,
  ) {
    this.base = randomBlock(pageBytes + 64 * KiB, salt ^ pageBytes);
  }

  fill(dst: Uint8Array, key: number): void {
    const n = this.pageBytes;
    const shift = (Math.imul(key, 2654435761) >>> 0) % (64 * KiB);
    dst.set(this.base.subarray(shift, shift + n));
    const dv = new DataView(dst.buffer, dst.byteOffset, n);
    for (let o = 0; o + 12 <= n; o += 4 * KiB) {
      dv.setUint32(o, key, true);
      dv.setUint32(o + 4, o / (4 * KiB), true);
      dv.setUint32(o + 8, this.salt, true);
    }
  }

  /** Wipes what stampsOk() checks, so a read that left the memory alone cannot pass. */
  clear(dst: Uint8Array): void {
    const last = lastBlock(this.pageBytes);
    dst.fill(0, 0, 12);
    dst.fill(0, last, last + 12);
  }

  stampsOk(dst: Uint8Array, key: number): boolean {
    const dv = new DataView(dst.buffer, dst.byteOffset, this.pageBytes);
    for (const o of [0, lastBlock(this.pageBytes)]) {
      if (dv.getUint32(o, true) !== key || dv.getUint32(o + 4, true) !== o / (4 * KiB) || dv.getUint32(o + 8, true) !== this.salt) return false;
    }
    return true;
  }

  /** Byte for byte; `scratch` holds at least one page. */
  exact(dst: Uint8Array, key: number, scratch: Buffer): boolean {
    this.fill(scratch, key);
    return Buffer.compare(scratch.subarray(0, this.pageBytes), Buffer.from(dst.buffer, dst.byteOffset, this.pageBytes)) === 0;
  }
}

function lastBlock(pageBytes: number): number {
  return Math.max(0, Math.floor((pageBytes - 12) / (4 * KiB)) * 4 * KiB);
}

/** Which pages of a batch are checked byte for byte: all of the first batch, then the first and last of each. */
export function sampled(batchIndex: number, k: number, len: number): boolean {
  return batchIndex === 0 || k === 0 || k === len - 1;
}
