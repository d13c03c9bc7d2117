// Turns a JS batch into one native call: ops are checked and packed into a Float64Array, the
// engine settles them on its own thread, and the results come back as one typed array.
import { constants } from 'node:os';
import { argError, errnoError, shown, ThreeFSError, type OpResult } from './errors';
import { IoBuffer, regionOf } from './io-buffer';
import type { NativeClient, NativeFile } from './native';

/** One op of a single-file batch. `length` defaults to the buffer's length. */
export interface IoOp {
  buffer: IoBuffer | ArrayBufferView;
  fileOffset: number;
  length?: number;
  /**
   * A CRC32C (Castagnoli) of `length` bytes of the buffer from `offset` (both within the op),
   * computed by the engine on its own thread when the op's turn comes, so checksums overlap the
   * batch's other I/O. Reads: the CRC of those bytes once they have landed, in the result's
   * `crc32c`. Writes: the CRC is stored into the buffer, 4 bytes little-endian at `at` (inside the
   * op, outside the range), just before the op goes out, and written with it.
   */
  crc32c?: Crc32cRange;
  /**
   * The index of an earlier op of this batch that must settle without an error before this one
   * starts (a write then has every byte written; a read may have ended at EOF). If that op fails
   * or the batch is canceled, this one fails with ECANCELED (or the cancel's errno) without moving
   * a byte. The engine starts it as soon as the other lands: order without a round trip to JS
   * (say, a directory entry written only once the page it lists is whole).
   */
  after?: number;
}

export interface Crc32cRange {
  offset: number;
  length: number;
  /** Writes only: where the CRC goes. */
  at?: number;
}

export interface BatchOptions {
  /** Stop at the first failed op: the rest are canceled and the batch rejects with that error. */
  failFast?: boolean;
  /** Aborting cancels the unfinished ops; the batch rejects with code ABORT_ERR once the device let go of every buffer. */
  signal?: AbortSignal;
  /** Milliseconds from now; ops unfinished by then fail with ETIMEDOUT. */
  timeout?: number;
  /** Absolute time (ms since the epoch, as Date.now()); ops unfinished by then fail with ETIMEDOUT. */
  deadline?: number;
}

/** What a batch needs to know of a file. Implemented by File. @internal */
export interface BatchTarget {
  readonly path: string;
  /** @internal */ readonly native: NativeFile;
  /** @internal */ checkUsable(write: boolean): void;
  /** @internal */ begin(): void;
  /** @internal */ end(): void;
}

const STRIDE = 5; // must match native/objects/client/client.cc
const ECANCELED = constants.errno.ECANCELED;
const ETIMEDOUT = constants.errno.ETIMEDOUT;
const MAX_TIMER = 2 ** 31 - 1;

function isWholeNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Runs ops against the client's engine. `fileOf(i)` names op i's file. Every op is checked
 * before anything is submitted, so a bad op rejects the call and nothing happens.
 */
export async function runBatch(
  client: NativeClient,
  write: boolean,
  ops: readonly IoOp[],
  fileOf: (index: number) => BatchTarget,
  options: BatchOptions = {},
): Promise<OpResult[]> {
  if (!Array.isArray(ops)) throw argError('ERR_INVALID_ARG_TYPE', 'ops must be an array');
  options ??= {};
  if (typeof options !== 'object') throw argError('ERR_INVALID_ARG_TYPE', 'options must be an object');
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw argError('ERR_INVALID_ARG_TYPE', 'options.signal must be an AbortSignal');
  }
  const stopAt = Math.min(
    options.timeout === undefined ? Infinity : Date.now() + checkTime(options.timeout, 'timeout'),
    options.deadline === undefined ? Infinity : checkTime(options.deadline, 'deadline'),
  );
  const syscall = write ? 'write' : 'read';
  const n = ops.length;
  const descriptors = new Float64Array(n * STRIDE);
  // What results and errors report is fixed at the call: later changes to `ops` do not matter.
  const lengths = new Float64Array(n);
  const offsets = new Float64Array(n);
  const opTarget: BatchTarget[] = new Array(n);
  const targets: BatchTarget[] = [];
  const files: NativeFile[] = [];
  const fileIndex = new Map<BatchTarget, number>();
  const views: ArrayBufferView[] = [];
  const viewIndex = new Map<ArrayBufferLike, number>();
  let checksums: Float64Array | undefined; // made when an op asks for a CRC32C
  let after: Int32Array | undefined; // made when an op waits for another

  for (let i = 0; i < n; i++) {
    const op = ops[i];
    if (op === null || typeof op !== 'object') throw argError('ERR_INVALID_ARG_TYPE', `op ${i} must be an object`, { index: i });
    const target = fileOf(i);
    opTarget[i] = target;
    let f = fileIndex.get(target);
    if (f === undefined) {
      target.checkUsable(write);
      f = files.length;
      fileIndex.set(target, f);
      targets.push(target);
      files.push(target.native);
    }
    const { buffer, fileOffset } = op;
    let bufferRef: number;
    let bufferOffset: number;
    let available: number;
    if (buffer instanceof IoBuffer) {
      if (buffer.freed) throw argError('ERR_BUFFER_FREED', `op ${i}: the buffer was freed`, { index: i });
      bufferRef = buffer.region.id;
      bufferOffset = buffer.byteOffset;
      available = buffer.byteLength;
      if (buffer.region.owner !== client) {
        throw argError('ERR_INVALID_ARG_VALUE', `op ${i}: the buffer belongs to another client`, { index: i });
      }
    } else if (ArrayBuffer.isView(buffer)) {
      const region = regionOf(buffer.buffer);
      available = buffer.byteLength;
      if (region && region.owner !== client) {
        // Its memory may be freed by its own client while ours still uses it: refuse, as for IoBuffers.
        throw argError('ERR_INVALID_ARG_VALUE', `op ${i}: the buffer views memory of another client`, { index: i });
      }
      if (region) {
        if (region.freed) throw argError('ERR_BUFFER_FREED', `op ${i}: the buffer was freed`, { index: i });
        bufferRef = region.id;
        bufferOffset = buffer.byteOffset;
      } else {
        // Not our memory: still no copy (the kernel reads or writes it in place), just not a fixed buffer.
        let v = viewIndex.get(buffer.buffer);
        if (v === undefined) {
          v = views.length;
          views.push(wholeView(buffer, i));
          viewIndex.set(buffer.buffer, v);
        }
        bufferRef = -(v + 1);
        bufferOffset = buffer.byteOffset;
      }
    } else {
      throw argError('ERR_INVALID_ARG_TYPE', `op ${i}: buffer must be an IoBuffer or an ArrayBufferView`, { index: i });
    }
    const length = op.length ?? available;
    if (!isWholeNumber(length) || length > available) {
      throw argError('ERR_OUT_OF_RANGE', `op ${i}: length ${shown(op.length)} must be a whole number no larger than the buffer (${available})`, {
        index: i,
        path: target.path,
      });
    }
    if (!isWholeNumber(fileOffset) || fileOffset + length > Number.MAX_SAFE_INTEGER) {
      throw argError('ERR_OUT_OF_RANGE', `op ${i}: fileOffset ${shown(fileOffset)} must be a whole number, and fileOffset + length at most 2^53 - 1`, {
        index: i,
        path: target.path,
      });
    }
    if (op.after !== undefined) {
      if (!Number.isSafeInteger(op.after) || op.after < 0 || op.after >= i) {
        throw argError('ERR_OUT_OF_RANGE', `op ${i}: after ${shown(op.after)} must be the index of an earlier op of the batch`, { index: i, path: target.path });
      }
      after ??= new Int32Array(n).fill(-1);
      after[i] = op.after;
    }
    if (op.crc32c !== undefined) {
      checksums ??= new Float64Array(3 * n).fill(-1);
      packChecksum(checksums, i, op.crc32c, write, length, target.path);
    }
    const d = i * STRIDE;
    descriptors[d] = f;
    descriptors[d + 1] = bufferRef;
    descriptors[d + 2] = bufferOffset;
    descriptors[d + 3] = length;
    descriptors[d + 4] = fileOffset;
    lengths[i] = length;
    offsets[i] = fileOffset;
  }

  // Again, now that every op was read: a getter of a later op may have closed a file checked at an
  // earlier one, and its descriptor is being closed on another thread.
  for (const t of targets) t.checkUsable(write);
  if (signal?.aborted) throw abortError(signal, undefined);

  const results = new Float64Array(2 * n);
  const crcs = checksums && new Uint32Array(n);
  let submitted: [number, Promise<void>];
  try {
    submitted = client.submit(write, files, views, descriptors, results, options.failFast === true, checksums, crcs, after);
  } catch (e) {
    throw toBatchError(e);
  }
  const [batchId, settled] = submitted;
  for (const t of targets) t.begin();
  let timer: NodeJS.Timeout | undefined;
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    client.cancel(batchId, ECANCELED);
  };
  if (stopAt <= Date.now()) {
    client.cancel(batchId, ETIMEDOUT); // already due: whatever has not finished fails now
  } else if (stopAt !== Infinity) {
    // setTimeout holds at most 2^31-1 ms; a farther deadline re-arms until it is near.
    const arm = () => {
      const left = stopAt - Date.now();
      timer = left > MAX_TIMER ? setTimeout(arm, MAX_TIMER) : setTimeout(() => client.cancel(batchId, ETIMEDOUT), Math.max(0, left));
    };
    arm();
  }
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await settled;
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    for (const t of targets) t.end();
  }

  const out: OpResult[] = new Array(n);
  let firstError: ThreeFSError | null = null;
  for (let i = 0; i < n; i++) {
    const bytes = results[2 * i];
    const errno = results[2 * i + 1];
    let error: ThreeFSError | null = null;
    if (errno !== 0) {
      error = errnoError(errno, syscall, { path: opTarget[i].path, offset: offsets[i] + bytes, index: i });
      if (firstError === null || (firstError.errno === -ECANCELED && errno !== ECANCELED)) firstError = error;
    }
    out[i] = { bytes, eof: !write && errno === 0 && bytes < lengths[i], error };
    if (crcs && !write && checksums![3 * i] !== -1 && errno === 0) out[i].crc32c = crcs[i];
  }
  if (aborted) throw abortError(signal!, out);
  if (options.failFast && firstError) {
    firstError.results = out;
    throw firstError;
  }
  return out;
}

/** A Uint8Array over all of a view's memory; a detached (transferred) ArrayBuffer has none left. */
function wholeView(view: ArrayBufferView, i: number): Uint8Array {
  try {
    return new Uint8Array(view.buffer);
  } catch {
    throw argError('ERR_BUFFER_FREED', `op ${i}: the buffer's ArrayBuffer is detached (transferred)`, { index: i });
  }
}

function packChecksum(into: Float64Array, i: number, c: Crc32cRange, write: boolean, length: number, path: string): void {
  if (c === null || typeof c !== 'object') throw argError('ERR_INVALID_ARG_TYPE', `op ${i}: crc32c must be an object { offset, length${write ? ', at' : ''} }`, { index: i });
  const { offset, length: span, at } = c;
  if (!isWholeNumber(offset) || !isWholeNumber(span) || offset + span > length) {
    throw argError('ERR_OUT_OF_RANGE', `op ${i}: crc32c range ${shown(offset)}+${shown(span)} must lie within the op's ${length} bytes`, { index: i, path });
  }
  if (write) {
    if (!isWholeNumber(at) || at + 4 > length || (at + 4 > offset && at < offset + span)) {
      throw argError('ERR_OUT_OF_RANGE', `op ${i}: crc32c.at ${shown(at)} must leave 4 bytes within the op, outside the checksummed range`, { index: i, path });
    }
  } else if (at !== undefined) {
    throw argError('ERR_INVALID_ARG_VALUE', `op ${i}: crc32c.at is for writes; a read's CRC comes back in its result`, { index: i, path });
  }
  into[3 * i] = offset;
  into[3 * i + 1] = span;
  into[3 * i + 2] = write ? at! : -1;
}

function checkTime(value: number, name: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a number >= 0`);
  }
  return value;
}

function abortError(signal: AbortSignal, results: OpResult[] | undefined): ThreeFSError {
  const e = new ThreeFSError('ABORT_ERR', 'The operation was aborted', { cause: signal.reason });
  e.name = 'AbortError';
  if (results) e.results = results;
  return e;
}

function toBatchError(e: unknown): ThreeFSError {
  if (e instanceof ThreeFSError) return e;
  const n = e as { code?: string; message?: string; index?: number; path?: string; errno?: number };
  return new ThreeFSError(n?.code ?? 'ERR_NATIVE', n?.message ?? shown(e), { errno: n?.errno, index: n?.index, path: n?.path });
}
