// CRC32C (Castagnoli) of payloads, and CRC-32 (zlib's, which ffrecord files carry), computed in
// native code: on libuv's pool for the promise forms, so checksumming large pages never blocks
// the JS thread.
import { argError, fromNative } from './errors';
import { native } from './native';

function checkView(view: unknown, what: string): asserts view is ArrayBufferView {
  if (!ArrayBuffer.isView(view)) throw argError('ERR_INVALID_ARG_TYPE', `${what} must be a TypedArray, Buffer or DataView`);
}

async function checksumMany(kind: 'crc32c' | 'crc32', views: readonly ArrayBufferView[]): Promise<Uint32Array> {
  if (!Array.isArray(views)) throw argError('ERR_INVALID_ARG_TYPE', 'views must be an array');
  views.forEach((v, i) => checkView(v, `views[${i}]`));
  const out = new Uint32Array(views.length);
  if (views.length === 0) return out;
  try {
    // A copy of the array: the addon holds the views themselves until it is done.
    await native()[kind](views.slice(), out);
  } catch (e) {
    throw fromNative(e);
  }
  return out;
}

/** CRC32C of each view, in order, computed off the JS thread. */
export function crc32cMany(views: readonly ArrayBufferView[]): Promise<Uint32Array> {
  return checksumMany('crc32c', views);
}

/** CRC-32 (zlib's crc32, IEEE polynomial) of each view, in order, computed off the JS thread. */
export function crc32Many(views: readonly ArrayBufferView[]): Promise<Uint32Array> {
  return checksumMany('crc32', views);
}

/**
 * CRC-32 of many ranges of one view ([start, length] pairs in `ranges`), off the JS thread: the
 * samples of a batch in one buffer, without a JS object per range.
 */
export async function crc32Ranges(view: ArrayBufferView, ranges: Float64Array): Promise<Uint32Array> {
  checkView(view, 'view');
  if (!(ranges instanceof Float64Array) || ranges.length % 2 !== 0) throw argError('ERR_INVALID_ARG_TYPE', 'ranges must be a Float64Array of [start, length] pairs');
  const out = new Uint32Array(ranges.length / 2);
  if (out.length === 0) return out;
  try {
    await native().crc32Ranges(view, ranges, out);
  } catch (e) {
    throw fromNative(e);
  }
  return out;
}

/** zlib's crc32(view), continued from `crc` (0 to start), on the calling thread: for small inputs. */
export function crc32Sync(view: ArrayBufferView, crc = 0): number {
  checkView(view, 'view');
  if (!Number.isInteger(crc) || crc < 0 || crc > 0xffffffff) throw argError('ERR_OUT_OF_RANGE', 'crc must be a 32-bit unsigned integer');
  try {
    return native().crc32Sync(view, crc);
  } catch (e) {
    throw fromNative(e);
  }
}

/** CRC32C of one view (Castagnoli, init and final XOR 0xFFFFFFFF), computed off the JS thread. */
export async function crc32c(view: ArrayBufferView): Promise<number> {
  checkView(view, 'view');
  return (await crc32cMany([view]))[0];
}

/**
 * CRC32C of one view on the calling thread: for small inputs, where a trip to the thread pool
 * costs more than the checksum (a few KiB and below).
 */
export function crc32cSync(view: ArrayBufferView): number {
  checkView(view, 'view');
  try {
    return native().crc32cSync(view);
  } catch (e) {
    throw fromNative(e);
  }
}

let crc32cTable: Int32Array | undefined;

/**
 * CRC32C of bytes[start, end), in JS: for a few dozen bytes (a KV cache slot header, checked on
 * every hit), where the call into the addon and its view cost more than the checksum. Byte at a
 * time: larger inputs belong to crc32cSync. @internal
 */
export function crc32cBytes(bytes: Uint8Array, start: number, end: number): number {
  const t = (crc32cTable ??= makeCrc32cTable());
  let crc = -1;
  for (let i = start; i < end; i++) crc = t[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

function makeCrc32cTable(): Int32Array {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  return t;
}
