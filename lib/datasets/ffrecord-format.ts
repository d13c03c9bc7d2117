// The ffrecord file format (HFAiLab/ffrecord), byte for byte as the original reads and writes it:
//
//   u32 meta_crc | u64 N | u32 crc[N] | u64 offset[N] | samples back to back, the last one ending at EOF
//
// All little-endian; CRCs are zlib's crc32; meta_crc covers the bytes [4, 12 + 12N). meta_crc 0
// marks a legacy file, whose header has no checksum.
import { constants as bufferConstants } from 'node:buffer';
import { argError, type ThreeFSError } from '../core/errors';

export const HEADER = 12; // meta_crc + N
export const ENTRY = 12; // crc[i] + offset[i]
/** The largest Buffer: the samples of a batch are views into one. */
export const MAX_LENGTH = bufferConstants.MAX_LENGTH;
/** Samples one file can hold here: its header (N, then a CRC and an offset each) is written from one Buffer. */
export const MAX_FILE_SAMPLES = Math.floor((MAX_LENGTH - HEADER) / ENTRY);

export function ffError(code: string, message: string, details: { path: string; offset?: number; sample?: number; index?: number; cause?: unknown }): ThreeFSError {
  return argError(code, `${message}: '${details.path}'`, details);
}

export const hex = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/** The u64 at `at`, as a number; -1 if it is 2^53 or more (no real offset or count is). */
export function u64(b: Buffer, at: number): number {
  const lo = b.readUInt32LE(at);
  const hi = b.readUInt32LE(at + 4);
  return hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + lo;
}

function setU64(b: Buffer, at: number, value: number): void {
  b.writeUInt32LE(value % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}

/** meta_crc (0 for now) | N | crc[N] | offset[N]: the original's header for these samples. */
export function encodeHeader(crcs: ArrayLike<number>, offsets: ArrayLike<number>): Buffer {
  const n = crcs.length;
  const h = Buffer.alloc(HEADER + n * ENTRY);
  setU64(h, 4, n);
  for (let i = 0; i < n; i++) h.writeUInt32LE(crcs[i] >>> 0, HEADER + 4 * i);
  for (let i = 0; i < n; i++) setU64(h, HEADER + 4 * n + 8 * i, offsets[i]);
  return h;
}

/**
 * The tables of a file of `size` bytes with `n` samples (`tables`: the header's bytes from 12):
 * each sample's CRC, and its bounds (sample i is [bounds[i], bounds[i + 1]), the last ends at EOF).
 */
export function decodeTables(path: string, tables: Buffer, n: number, size: number): { crcs: Uint32Array; bounds: Float64Array } {
  const crcs = new Uint32Array(n);
  const bounds = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) crcs[i] = tables.readUInt32LE(4 * i);
  let previous = HEADER + n * ENTRY;
  for (let i = 0; i < n; i++) {
    const at = u64(tables, 4 * n + 8 * i);
    if (at < previous) {
      const why = i === 0 ? `before the end of the header (${previous})` : `before sample ${i - 1}'s (${previous})`;
      throw ffError('ERR_FFRECORD_BAD_HEADER', `impossible header: sample ${i} starts at ${at < 0 ? '2^53 or more' : at}, ${why}`, { path, offset: HEADER + 4 * n + 8 * i, sample: i });
    }
    bounds[i] = previous = at;
  }
  if (previous > size) {
    throw ffError('ERR_FFRECORD_TRUNCATED', `sample ${n - 1} starts at ${previous}, past the end of the file (${size} bytes)`, { path, offset: size, sample: n - 1 });
  }
  bounds[n] = size;
  return { crcs, bounds };
}

/** Refuses a count of samples for one file that its header could not be written for (after all the data). */
export function fileSamples(n: number, name: string): number {
  if (n > MAX_FILE_SAMPLES) throw argError('ERR_OUT_OF_RANGE', `${name}: ${n} samples in one file need a header of ${HEADER + n * ENTRY} bytes, more than a Buffer of this Node holds (${MAX_LENGTH}); use a sharded writer, at most ${MAX_FILE_SAMPLES} samples per shard`);
  return n;
}
