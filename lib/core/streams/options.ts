// The streams' options, checked up front as node:fs checks its streams' options: a bad one throws
// a ThreeFSError naming it, before anything is read, written or allocated.
import { argError, shown, ThreeFSError } from '../errors';

/** Which bytes a read stream gives, and how far it reads ahead. */
export interface ReadRangeOptions {
  /** First byte to read. Default 0. */
  start?: number;
  /** Last byte to read, inclusive (as in node:fs). Default Infinity: to the end of the file. */
  end?: number;
  /** The largest chunk handed out. Default 1 MiB (node:fs: 64 KiB). Reads are 4 MiB, or this if bigger. */
  highWaterMark?: number;
  /** Most reads in flight at once, each into its own registered buffer (the window grows to it while the consumer waits). Default 8. */
  readAhead?: number;
  /** Aborting destroys the stream with an AbortError (code ABORT_ERR), as node:fs's streams do. */
  signal?: AbortSignal;
}

export interface ReadStreamOptions extends ReadRangeOptions {
  /** Close the file when the stream ends, fails or is destroyed. Default true, as FileHandle.createReadStream. */
  autoClose?: boolean;
  /** Emit 'close' once destroyed. Default true. */
  emitClose?: boolean;
}

export interface ChunksOptions extends ReadRangeOptions {
  /**
   * Yield views of the stream's registered memory instead of fresh Buffers: no copy, but a chunk
   * is valid only until the loop asks for the next one (its memory is then read into again).
   */
  borrow?: boolean;
}

export interface WebStreamOptions extends ReadRangeOptions {
  /** Close the file when the stream ends, fails or is canceled. Default false, as FileHandle.readableWebStream. */
  autoClose?: boolean;
}

export interface WriteStreamOptions {
  /** Where the first byte goes. Default 0. */
  start?: number;
  /** Bytes buffered before write() returns false; what is buffered goes out as one batch. Default 4 MiB (node:fs: 16 KiB). */
  highWaterMark?: number;
  /** Aborting cancels the writes in flight and destroys the stream with an AbortError (code ABORT_ERR). */
  signal?: AbortSignal;
  /** Close the file when the stream finishes, fails or is destroyed. Default true, as FileHandle.createWriteStream. */
  autoClose?: boolean;
  emitClose?: boolean;
  /** fdatasync(2) before 'finish', as node:fs's `flush`. Default false. */
  flush?: boolean;
}

/** A read range after checking: `stop` is one past the last byte (Infinity: to the end of the file). @internal */
export interface ReadPlan {
  start: number;
  stop: number;
  chunkSize: number;
  readAhead: number;
  signal: AbortSignal | undefined;
}

const MiB = 1024 * 1024;
const MAX_CHUNK = 1024 * MiB;

export function optionsObject<T extends object>(options: T | undefined): T {
  if (options === undefined || options === null) return {} as T;
  if (typeof options !== 'object') throw argError('ERR_INVALID_ARG_TYPE', `options must be an object, got ${typeof options}`);
  return options;
}

function whole(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw argError('ERR_INVALID_ARG_TYPE', `options.${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `options.${name} must be a whole number from ${min} to ${max}, got ${shown(value)}`);
  }
  return value;
}

function flag(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw argError('ERR_INVALID_ARG_TYPE', `options.${name} must be a boolean, got ${typeof value}`);
  return value;
}

/** What an aborted stream fails with: an AbortError as node's, of the library's one error class. */
export function abortError(signal: AbortSignal): ThreeFSError {
  const e = new ThreeFSError('ABORT_ERR', 'The operation was aborted', { cause: signal.reason });
  e.name = 'AbortError';
  return e;
}

export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw argError('ERR_INVALID_ARG_TYPE', 'options.signal must be an AbortSignal');
  return signal;
}

/** @internal */
export function readPlan(options: ReadRangeOptions | undefined): ReadPlan {
  const o = optionsObject(options);
  const start = o.start === undefined ? 0 : whole(o.start, 'start', 0, Number.MAX_SAFE_INTEGER);
  let stop = Infinity;
  if (o.end !== undefined && o.end !== Infinity) stop = whole(o.end, 'end', 0, Number.MAX_SAFE_INTEGER - 1) + 1;
  // As node:fs: start > end is an error, start = end is one byte.
  if (start >= stop) throw argError('ERR_OUT_OF_RANGE', `options.start (${start}) must be <= options.end (${stop - 1})`);
  return {
    start,
    stop,
    chunkSize: o.highWaterMark === undefined ? MiB : whole(o.highWaterMark, 'highWaterMark', 1, MAX_CHUNK),
    readAhead: o.readAhead === undefined ? 8 : whole(o.readAhead, 'readAhead', 1, 64),
    signal: checkSignal(o.signal),
  };
}

export function readStreamFlags(options: ReadStreamOptions | WebStreamOptions | undefined, autoClose: boolean): { autoClose: boolean; emitClose: boolean } {
  const o = optionsObject(options) as ReadStreamOptions;
  return { autoClose: flag(o.autoClose, 'autoClose', autoClose), emitClose: flag(o.emitClose, 'emitClose', true) };
}

export function borrowFlag(options: ChunksOptions | undefined): boolean {
  return flag(optionsObject(options).borrow, 'borrow', false);
}

/** @internal */
export function writePlan(options: WriteStreamOptions | undefined): Required<Omit<WriteStreamOptions, 'signal'>> & { signal: AbortSignal | undefined } {
  const o = optionsObject(options);
  return {
    start: o.start === undefined ? 0 : whole(o.start, 'start', 0, Number.MAX_SAFE_INTEGER),
    highWaterMark: o.highWaterMark === undefined ? 4 * MiB : whole(o.highWaterMark, 'highWaterMark', 1, MAX_CHUNK),
    signal: checkSignal(o.signal),
    autoClose: flag(o.autoClose, 'autoClose', true),
    emitClose: flag(o.emitClose, 'emitClose', true),
    flush: flag(o.flush, 'flush', false),
  };
}
