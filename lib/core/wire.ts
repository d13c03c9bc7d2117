// The submit wire: the typed arrays runBatch (batch.ts) hands to NativeClient.submit, one batch per
// call. native/objects/client/wire.h is its twin; test/core/local/wire.test.ts checks that the two
// agree, through the constants the addon exports (Binding.wire).
//
// Who checks what:
// - Native code checks what it dereferences, so that no input crashes the process or touches
//   memory it was not given: the arrays' types and lengths; file, view and region indexes; offsets
//   and lengths (whole, exact as doubles, within the buffer); checksum ranges within the op;
//   `after` naming an earlier op; and what can change under it (a region freed, a file closed).
//   Its messages are terse: users see them only where this side let something through.
// - TypeScript checks meaning and owns the user-facing errors (ThreeFSError with the op's index,
//   path and the value it got): op shapes, lengths against the buffer, a buffer of another client,
//   the access mode (EBADF), `crc32c.at` outside the checksummed range, `at` on a read.
// - What only native code can see it reports as a user-facing error itself: O_DIRECT alignment
//   (ERR_UNALIGNED_DIRECT), a 3FS iov block crossed (EINVAL), overlapping reads
//   (ERR_OVERLAPPING_BUFFERS), a file not registered with USRBIO (ERR_WRONG_ENGINE).

/** descriptors: Float64Array, `stride` numbers per op. */
export const OP = { file: 0, bufferRef: 1, bufferOffset: 2, length: 3, fileOffset: 4, stride: 5 } as const;
/** results: Float64Array, `stride` numbers per op, written by the engine as the op settles. */
export const RESULT = { bytes: 0, errno: 1, stride: 2 } as const;
/** checksums: Float64Array, `stride` numbers per op (`at`: writes only); crcs: Uint32Array, one per op. */
export const CHECKSUM = { offset: 0, length: 1, at: 2, stride: 3 } as const;
/** In checksums[offset]: no checksum; in after (Int32Array, one per op): waits for nothing. */
export const NONE = -1;

/** The layout as the addon exports it. */
export const WIRE = { op: OP, result: RESULT, checksum: CHECKSUM, none: NONE, maxOffset: Number.MAX_SAFE_INTEGER } as const;
export type WireLayout = { [K in keyof typeof WIRE]: (typeof WIRE)[K] extends number ? number : Record<string, number> };

/** bufferRef of views[index], memory the client did not allocate (a region's ref is its id, >= 0). */
export function viewRef(index: number): number {
  return -(index + 1);
}

/** Writes op i's descriptor. */
export function packDescriptor(into: Float64Array, i: number, file: number, bufferRef: number, bufferOffset: number, length: number, fileOffset: number): void {
  const d = i * OP.stride;
  into[d + OP.file] = file;
  into[d + OP.bufferRef] = bufferRef;
  into[d + OP.bufferOffset] = bufferOffset;
  into[d + OP.length] = length;
  into[d + OP.fileOffset] = fileOffset;
}

/** Bytes op i moved, once the batch has settled. */
export function resultBytes(results: Float64Array, i: number): number {
  return results[i * RESULT.stride + RESULT.bytes];
}

/** Op i's errno (positive), or 0, once the batch has settled. */
export function resultErrno(results: Float64Array, i: number): number {
  return results[i * RESULT.stride + RESULT.errno];
}
