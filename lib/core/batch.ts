// Turns a JS batch into one native call: ops are checked and packed into a Float64Array, the
// engine settles them on its own thread, and the results come back as one typed array.
import { constants } from 'node:os';
import { argError, errnoError, shown, ThreeFSError, type OpResult } from './errors';
import { IoBuffer, regionOf } from './io-buffer';
import type { NativeClient, NativeFile } from './native';
import { CHECKSUM, NONE, OP, packDescriptor, RESULT, resultBytes, resultErrno, viewRef } from './wire';

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
  /**
   * Milliseconds from the call (reading and checking the ops counts against it); ops unfinished by
   * then fail with ETIMEDOUT and the batch resolves. A failed op's error is made when first read.
   */
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

const ECANCELED = constants.errno.ECANCELED;
const ETIMEDOUT = constants.errno.ETIMEDOUT;
const MAX_TIMER = 2 ** 31 - 1;
/** What to do about memory of another client: each client registers (and may free) its own. */
const CROSS_CLIENT_FIX = "allocate it with the file's client, client.alloc(n), or with alloc(n, { for: path }) for the client open(path) uses";
/** Ops read per turn of the event loop: a batch of a million ops must not hold the JS thread for its whole preparation. */
const PREP_SLICE = 16384;

/**
 * Descriptor arrays of small batches, reused: a new one is a backing store the addon materializes
 * when it reads it and the GC sweeps later, which costs more than a 1-op batch's own work. Keyed by
 * op count; packOp overwrites every element of a taken array, and the addon reads it only inside
 * submit().
 */
class ArrayPool {
  static readonly MAX_OPS = 64;
  static readonly DEPTH = 16;
  readonly #free: Float64Array[][] = [];
  constructor(readonly stride: number) {}

  take(n: number): Float64Array {
    return (n <= ArrayPool.MAX_OPS ? this.#free[n]?.pop() : undefined) ?? new Float64Array(n * this.stride);
  }

  give(n: number, array: Float64Array): void {
    if (n > ArrayPool.MAX_OPS) return;
    const list = (this.#free[n] ??= []);
    if (list.length < ArrayPool.DEPTH) list.push(array);
  }
}

const descriptorPool = new ArrayPool(OP.stride);

function isWholeNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A batch as the engine takes it, and what results and errors report, fixed when each op was read. */
class Packed {
  readonly descriptors: Float64Array; // back in its pool once submitted
  readonly lengths: Float64Array;
  readonly offsets: Float64Array;
  readonly opTarget: BatchTarget[];
  readonly targets: BatchTarget[] = [];
  readonly files: NativeFile[] = [];
  fileIndex: Map<BatchTarget, number> | undefined; // made when a second file joins
  readonly views: ArrayBufferView[] = [];
  viewIndex: Map<ArrayBufferLike, number> | undefined; // made for the first view of foreign memory
  checksums: Float64Array | undefined; // made when an op asks for a CRC32C
  after: Int32Array | undefined; // made when an op waits for another

  constructor(readonly n: number) {
    this.descriptors = descriptorPool.take(n);
    this.lengths = new Float64Array(n);
    this.offsets = new Float64Array(n);
    this.opTarget = new Array(n);
  }
}

/**
 * Runs ops against the client's engine. `fileOf(i)` names op i's file. Every op is checked
 * before anything is submitted, so a bad op rejects the call and nothing happens. A batch of more
 * than PREP_SLICE ops is read a slice per turn of the event loop; an abort meanwhile submits nothing.
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
  // Measured from the call: preparing the batch counts against it.
  const stopAt = Math.min(
    options.timeout === undefined ? Infinity : Date.now() + checkTime(options.timeout, 'timeout'),
    options.deadline === undefined ? Infinity : checkTime(options.deadline, 'deadline'),
  );
  const packed = new Packed(ops.length);
  for (let from = 0; from < packed.n; from += PREP_SLICE) {
    if (from > 0) await new Promise(setImmediate);
    if (signal?.aborted) throw abortError(signal, undefined);
    const to = Math.min(packed.n, from + PREP_SLICE);
    for (let i = from; i < to; i++) packOp(packed, client, write, ops[i], i, fileOf);
  }
  // Again, now that every op was read: a getter of a later op may have closed a file checked at an
  // earlier one, and its descriptor is being closed on another thread.
  for (const t of packed.targets) t.checkUsable(write);
  if (signal?.aborted) throw abortError(signal, undefined);

  const results = new Float64Array(packed.n * RESULT.stride);
  const crcs = packed.checksums && new Uint32Array(packed.n);
  const aborted = await submitAndWait(client, write, packed, results, crcs, options, stopAt);
  const out = collectResults(packed, write, results, crcs);
  if (aborted) throw abortError(signal!, out);
  if (options.failFast) {
    const first = firstError(results);
    if (first >= 0) {
      const error = out[first].error!;
      error.results = out;
      throw error;
    }
  }
  return out;
}

/** Checks op i and writes its descriptor. */
function packOp(p: Packed, client: NativeClient, write: boolean, op: IoOp, i: number, fileOf: (index: number) => BatchTarget): void {
  if (op === null || typeof op !== 'object') throw argError('ERR_INVALID_ARG_TYPE', `op ${i} must be an object`, { index: i });
  const target = fileOf(i);
  p.opTarget[i] = target;
  const f = fileNumber(p, target, write);
  const { fileOffset } = op;
  const [bufferRef, bufferOffset, available] = bufferOf(p, client, op.buffer, i);
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
    p.after ??= new Int32Array(p.n).fill(NONE);
    p.after[i] = op.after;
  }
  if (op.crc32c !== undefined) {
    p.checksums ??= new Float64Array(p.n * CHECKSUM.stride).fill(NONE);
    packChecksum(p.checksums, i, op.crc32c, write, length, target.path);
  }
  packDescriptor(p.descriptors, i, f, bufferRef, bufferOffset, length, fileOffset);
  p.lengths[i] = length;
  p.offsets[i] = fileOffset;
}

/** The index of `target` among the batch's files, adding it (checked) on its first op. */
function fileNumber(p: Packed, target: BatchTarget, write: boolean): number {
  if (p.targets.length === 1 && p.targets[0] === target) return 0;
  let f = p.fileIndex?.get(target);
  if (f !== undefined) return f;
  target.checkUsable(write);
  f = p.files.length;
  if (f === 1) p.fileIndex = new Map([[p.targets[0], 0]]);
  p.fileIndex?.set(target, f);
  p.targets.push(target);
  p.files.push(target.native);
  return f;
}

/**
 * Op i's memory as [bufferRef, bufferOffset, bytes available]: a region id of this client, or
 * viewRef(v) for view v of memory that is not ours (no copy either way, just not a fixed buffer).
 */
function bufferOf(p: Packed, client: NativeClient, buffer: unknown, i: number): [number, number, number] {
  if (buffer instanceof IoBuffer) {
    if (buffer.freed) throw argError('ERR_BUFFER_FREED', `op ${i}: the buffer was freed`, { index: i });
    if (buffer.region.owner !== client) {
      throw argError('ERR_INVALID_ARG_VALUE', `op ${i}: the buffer belongs to another client (${CROSS_CLIENT_FIX})`, { index: i });
    }
    return [buffer.region.id, buffer.byteOffset, buffer.byteLength];
  }
  if (!ArrayBuffer.isView(buffer)) {
    throw argError('ERR_INVALID_ARG_TYPE', `op ${i}: buffer must be an IoBuffer or an ArrayBufferView`, { index: i });
  }
  const region = regionOf(buffer.buffer);
  if (region) {
    // Its memory may be freed by its own client while ours still uses it: refuse, as for IoBuffers.
    if (region.owner !== client) throw argError('ERR_INVALID_ARG_VALUE', `op ${i}: the buffer views memory of another client (${CROSS_CLIENT_FIX})`, { index: i });
    if (region.freed) throw argError('ERR_BUFFER_FREED', `op ${i}: the buffer was freed`, { index: i });
    return [region.id, buffer.byteOffset, buffer.byteLength];
  }
  p.viewIndex ??= new Map();
  let v = p.viewIndex.get(buffer.buffer);
  if (v === undefined) {
    v = p.views.length;
    p.views.push(wholeView(buffer, i));
    p.viewIndex.set(buffer.buffer, v);
  }
  return [viewRef(v), buffer.byteOffset, buffer.byteLength];
}

/**
 * Submits the batch, cancels it at its deadline or on abort, and waits until the engine has
 * settled every op. Resolves with whether the signal aborted it.
 */
async function submitAndWait(
  client: NativeClient,
  write: boolean,
  p: Packed,
  results: Float64Array,
  crcs: Uint32Array | undefined,
  options: BatchOptions,
  stopAt: number,
): Promise<boolean> {
  let submitted: [number, Promise<void>];
  try {
    submitted = client.submit(write, p.files, p.views, p.descriptors, results, options.failFast === true, p.checksums, crcs, p.after);
  } catch (e) {
    throw toBatchError(e);
  } finally {
    descriptorPool.give(p.n, p.descriptors); // the addon copied the ops
  }
  const [batchId, settled] = submitted;
  for (const t of p.targets) t.begin();
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    client.cancel(batchId, ECANCELED);
  };
  const timer = armDeadline(stopAt, () => client.cancel(batchId, ETIMEDOUT));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await settled;
  } finally {
    timer.stop();
    options.signal?.removeEventListener('abort', onAbort);
    for (const t of p.targets) t.end();
  }
  return aborted;
}

/** Calls `due` at `stopAt` (at once if it has passed). setTimeout holds at most 2^31-1 ms: a farther deadline re-arms until it is near. */
function armDeadline(stopAt: number, due: () => void): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = stopAt - Date.now();
    timer = left > MAX_TIMER ? setTimeout(arm, MAX_TIMER) : setTimeout(due, Math.max(0, left));
  };
  if (stopAt <= Date.now()) due();
  else if (stopAt !== Infinity) arm();
  return { stop: () => clearTimeout(timer) };
}

/**
 * One OpResult per op. A failed op's error is made when it is first read: a canceled batch of a
 * million ops settles without building a million errors nobody may look at.
 */
function collectResults(p: Packed, write: boolean, results: Float64Array, crcs: Uint32Array | undefined): OpResult[] {
  const out: OpResult[] = new Array(p.n);
  for (let i = 0; i < p.n; i++) {
    const bytes = resultBytes(results, i);
    if (resultErrno(results, i) !== 0) {
      out[i] = new FailedOp(p, write, results, i);
      continue;
    }
    out[i] = { bytes, eof: !write && bytes < p.lengths[i], error: null };
    if (crcs && !write && p.checksums![i * CHECKSUM.stride + CHECKSUM.offset] !== NONE) out[i].crc32c = crcs[i];
  }
  return out;
}

/**
 * A failed op's result. `error` is an own, enumerable property, as on any other result (spread,
 * JSON and deep equality see it); its ThreeFSError is made on first read and is the same object after.
 */
class FailedOp implements OpResult {
  declare error: ThreeFSError | null;
  readonly bytes: number;
  readonly eof = false;
  #error: ThreeFSError | null | undefined;
  #batch: Packed;
  #write: boolean;
  #errno: number;
  #index: number;

  // One descriptor for every instance, so they all share one shape.
  static readonly #errorProperty: PropertyDescriptor = {
    get(this: FailedOp) {
      if (this.#error === undefined) this.#error = this.#make();
      return this.#error;
    },
    set(this: FailedOp, value: ThreeFSError | null) {
      this.#error = value;
    },
    enumerable: true,
    configurable: true,
  };

  constructor(batch: Packed, write: boolean, results: Float64Array, index: number) {
    this.bytes = resultBytes(results, index);
    this.#batch = batch;
    this.#write = write;
    this.#errno = resultErrno(results, index);
    this.#index = index;
    Object.defineProperty(this, 'error', FailedOp.#errorProperty);
  }

  #make(): ThreeFSError {
    const i = this.#index;
    const details = { path: this.#batch.opTarget[i].path, offset: this.#batch.offsets[i] + this.bytes, index: i };
    return errnoError(this.#errno, this.#write ? 'write' : 'read', details);
  }
}

/** The op whose error ends a failFast batch: the first that failed of itself, else the first canceled one; -1 if none failed. */
function firstError(results: Float64Array): number {
  let first = -1;
  for (let i = 0; i < results.length / RESULT.stride; i++) {
    const errno = resultErrno(results, i);
    if (errno === 0) continue;
    if (errno !== ECANCELED) return i;
    if (first < 0) first = i;
  }
  return first;
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
  const k = i * CHECKSUM.stride;
  into[k + CHECKSUM.offset] = offset;
  into[k + CHECKSUM.length] = span;
  into[k + CHECKSUM.at] = write ? at! : NONE;
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
