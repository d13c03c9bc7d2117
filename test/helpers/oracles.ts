// Independent oracles: a model of a file's bytes, byte comparison, and the one error class.
import { expect } from 'vitest';
import { ThreeFSError } from '../../lib/index';

/** What the bytes of a file should be: an independent model, updated only by the test. */
export class FileModel {
  private data: Buffer;
  size: number;
  constructor(initial: Buffer = Buffer.alloc(0)) {
    this.data = Buffer.alloc(Math.max(initial.length, 1 << 16));
    initial.copy(this.data);
    this.size = initial.length;
  }
  private reserve(n: number): void {
    if (n <= this.data.length) return;
    const grown = Buffer.alloc(Math.max(n, this.data.length * 2));
    this.data.copy(grown, 0, 0, this.size);
    this.data = grown;
  }
  write(offset: number, bytes: Uint8Array): void {
    this.reserve(offset + bytes.length);
    if (offset > this.size) this.data.fill(0, this.size, offset); // a hole reads as zeros
    this.data.set(bytes, offset);
    this.size = Math.max(this.size, offset + bytes.length);
  }
  truncate(length: number): void {
    this.reserve(length);
    if (length > this.size) this.data.fill(0, this.size, length);
    this.size = length;
  }
  /** What a read of `length` bytes at `offset` returns (shorter at the end of the file). */
  read(offset: number, length: number): Buffer {
    if (offset >= this.size) return Buffer.alloc(0);
    return Buffer.from(this.data.subarray(offset, Math.min(this.size, offset + length)));
  }
  contents(): Buffer {
    return Buffer.from(this.data.subarray(0, this.size));
  }
}

/** First index where two byte arrays differ, or -1. For short failure messages. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  const A = Buffer.from(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
  const B = Buffer.from(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);
  const CHUNK = 64 * 1024;
  for (let at = 0; at < n; at += CHUNK) {
    const end = Math.min(n, at + CHUNK);
    if (A.compare(B, at, end, at, end) === 0) continue; // memcmp; byte by byte only where it differs
    for (let i = at; i < end; i++) if (A[i] !== B[i]) return i;
  }
  return a.length === b.length ? -1 : n;
}

/** The error a call throws or rejects with; fails the test when there is none or it is not a ThreeFSError. */
export async function failure(run: () => unknown): Promise<ThreeFSError> {
  let result: unknown;
  try {
    result = await run();
  } catch (e) {
    expect(e, `expected a ThreeFSError, got ${String(e)}`).toBeInstanceOf(ThreeFSError);
    expect(e).toBeInstanceOf(Error);
    return e as ThreeFSError;
  }
  throw new Error(`expected a failure, got ${JSON.stringify(result)}`);
}
