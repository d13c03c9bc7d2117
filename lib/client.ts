import { constants } from 'node:os';
import { runBatch, type BatchOptions, type IoOp } from './batch';
import { argError, fromNative, type OpResult } from './errors';
import { File, type DirectMode } from './file';
import { parseFlags, type OpenFlags } from './flags';
import { lend, type IoBuffer } from './io-buffer';
import { native, type NativeClient, type NativeMetrics } from './native';

export interface ClientOptions {
  /** Only 'local' (io_uring on local files) in this version; 'hf3fs' (USRBIO) comes next. */
  engine?: 'local';
  /** Ops in flight in the kernel at once, over all rings; more wait their turn in native memory. Default 128. */
  queueDepth?: number;
  /**
   * Rings, each with its own native thread; batches are spread over them, so submissions and
   * page-cache copies use several cores. Default 2.
   */
  rings?: number;
  /** Size of the registered (fixed) buffer table. Default 1024; 0 turns registration off. */
  registeredBuffers?: number;
  /**
   * Force buffered (page cache) I/O onto kernel worker threads (IOSQE_ASYNC). Default false: the
   * kernel copies cached data inline on the engine's thread, which measured faster for page-cache
   * reads, and still hands uncached reads to its workers by itself.
   */
  asyncBuffered?: boolean;
}

export interface OpenOptions {
  /** 'auto' (default): O_DIRECT when memory, offset and length are aligned, buffered otherwise.
   *  'always' / true: every op must be aligned (ERR_UNALIGNED_DIRECT otherwise).
   *  'never' / false: always buffered. */
  direct?: DirectMode | boolean;
}

/** One op of a batch across files. */
export interface FileIoOp extends IoOp {
  file: File;
}

export interface ClientInfo {
  engine: string;
  rings: number;
  queueDepth: number;
  registeredBuffers: number;
  asyncBuffered: boolean;
  closed: boolean;
}

export interface ClientMetrics extends NativeMetrics {}

const directCode: Record<DirectMode, number> = { auto: 0, always: 1, never: 2 };

function wholeNumber(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** An I/O engine with its own ring, completion thread and registered memory. */
export class Client implements AsyncDisposable {
  readonly #native: NativeClient;
  readonly #asyncBuffered: boolean;
  #closing: Promise<void> | undefined;

  constructor(options: ClientOptions = {}) {
    options ??= {};
    if (options.engine !== undefined && options.engine !== 'local') {
      throw argError('ERR_INVALID_ARG_VALUE', `engine ${JSON.stringify(options.engine)} is not available; this version has 'local'`);
    }
    const queueDepth = wholeNumber(options.queueDepth ?? 128, 'queueDepth', 1, 32768);
    const rings = wholeNumber(options.rings ?? 2, 'rings', 1, 64);
    const registeredSlots = wholeNumber(options.registeredBuffers ?? 1024, 'registeredBuffers', 0, 16384);
    this.#asyncBuffered = options.asyncBuffered ?? false;
    try {
      this.#native = new (native().NativeClient)({ queueDepth, rings, registeredSlots, asyncBuffered: this.#asyncBuffered });
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Page-aligned memory registered with the engine, seen from JS without copying. */
  alloc(bytes: number, options: { register?: boolean } = {}): IoBuffer {
    this.checkOpen();
    options ??= {};
    wholeNumber(bytes, 'bytes', 0, Number.MAX_SAFE_INTEGER);
    try {
      const [id, memory, registered] = this.#native.alloc(bytes, options.register ?? true);
      return lend(this.#native, id, memory, registered);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Opens a file. `flags` as in node:fs ('r', 'r+', 'w', 'wx', 'w+', 'wx+') or open(2) numbers. */
  async open(path: string, flags: OpenFlags = 'r', mode = 0o666, options: OpenOptions = {}): Promise<File> {
    this.checkOpen();
    options ??= {};
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
      throw argError('ERR_INVALID_ARG_VALUE', 'path must be a non-empty string without NUL bytes');
    }
    const parsed = parseFlags(flags);
    wholeNumber(mode, 'mode', 0, 0o7777);
    let direct: DirectMode;
    const asked = options.direct ?? (parsed.askedDirect ? 'always' : 'auto');
    if (asked === true) direct = 'always';
    else if (asked === false) direct = 'never';
    else if (asked === 'auto' || asked === 'always' || asked === 'never') direct = asked;
    else throw argError('ERR_INVALID_ARG_VALUE', `direct must be 'auto', 'always', 'never' or a boolean`);
    try {
      const handle = await native().open(path, parsed.flags, mode, directCode[direct]);
      return new File(this.#native, 'io_uring', handle, path, direct);
    } catch (e) {
      const err = fromNative(e, { path });
      if (direct === 'always' && err.errno === -constants.errno.EINVAL) {
        throw argError('ERR_DIRECT_UNSUPPORTED', `direct I/O was required but the file system refuses O_DIRECT: '${path}'`, { path, syscall: 'open', cause: err });
      }
      throw err;
    }
  }

  /** Reads ranges of many files in one submission. */
  batchRead(ops: readonly FileIoOp[], options?: BatchOptions): Promise<OpResult[]> {
    return runBatch(this.#native, false, ops, (i) => fileOf(ops, i), options);
  }

  /** Writes ranges of many files in one submission. */
  batchWrite(ops: readonly FileIoOp[], options?: BatchOptions): Promise<OpResult[]> {
    return runBatch(this.#native, true, ops, (i) => fileOf(ops, i), options);
  }

  info(): ClientInfo {
    const i = this.#native.info();
    return { engine: i.engine, rings: i.rings, queueDepth: i.queueDepth, registeredBuffers: i.registeredSlots, asyncBuffered: this.#asyncBuffered, closed: i.closed };
  }

  metrics(): ClientMetrics {
    return this.#native.metrics();
  }

  /** Cancels what is still in flight (those ops fail with ECANCELED) and stops the engine. */
  close(): Promise<void> {
    this.#closing ??= this.#native.close().catch((e) => Promise.reject(fromNative(e)));
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private checkOpen(): void {
    if (this.#closing) throw argError('ERR_CLIENT_CLOSED', 'the client is closed');
  }
}

function fileOf(ops: readonly FileIoOp[], i: number): File {
  const file = ops[i]?.file;
  if (!(file instanceof File)) throw argError('ERR_INVALID_ARG_TYPE', `op ${i}: file must be a File from open()`, { index: i });
  return file;
}

/** A new client with its own engine. */
export function connect(options?: ClientOptions): Client {
  return new Client(options);
}

let shared: Client | undefined;

/** The client behind the top-level `open()`, made on first use with default options. */
export function defaultClient(): Client {
  if (!shared || shared.info().closed) shared = new Client();
  return shared;
}

/** Opens a file on the default client. */
export function open(path: string, flags?: OpenFlags, mode?: number, options?: OpenOptions): Promise<File> {
  return defaultClient().open(path, flags, mode, options);
}

/** Allocates registered memory on the default client. */
export function alloc(bytes: number, options?: { register?: boolean }): IoBuffer {
  return defaultClient().alloc(bytes, options);
}
