import { constants as bufferConstants } from 'node:buffer';
import { availableParallelism, constants } from 'node:os';
import { runBatch, type BatchOptions, type IoOp } from './batch';
import { embeddedChoice, ioUringRefusal, registerRefusal, type EmbeddedEngine } from './embedded-engine';
import { engineName, type EngineName } from './engine-name';
import { argError, fromNative, shown, ThreeFSError, type OpResult } from './errors';
import { memlockAdvice } from './memlock';
import { File, type DirectMode } from './file';
import { parseFlags, type OpenFlags } from './flags';
import { accountOf, IoBuffer, lend, regionOf } from './io-buffer';
import { pathArg, type PathLike } from './path-arg';
import { decodeDistributions, MetricsSampler, type DistributionCounts, type OpDistributions } from './metrics';
import { native, type NativeClient, type NativeClientOptions, type NativeMetrics } from './native';

export interface ClientOptions {
  /**
   * 'local' (the default): the embedded engine for local files, io_uring, or the 'threads' engine
   * where io_uring cannot be set up or THREEFS_CLIENT_ENGINE=threads says so.
   * 'io_uring' or 'threads': that embedded engine, whatever the environment says ('io_uring' fails
   * where it cannot be set up). 'hf3fs': 3FS's USRBIO on a 3FS mount (the default when `mount` is
   * given). 'usrbio', the name info().engine reports for it, is accepted as an alias of 'hf3fs'.
   */
  engine?: 'local' | EngineName;
  /** hf3fs: a path on the 3FS mount (the mount point is found from it). */
  mount?: string;
  /** hf3fs: path of libhf3fs_api_shared.so. Default: $HF3FS_LIB, then the dynamic linker's search. */
  library?: string;
  /**
   * hf3fs: NUMA node for iovs and rings; -1 binds nothing. Default 'auto': the node of the first
   * RDMA NIC with an active port, else -1.
   */
  numa?: number | 'auto';
  /** hf3fs: iov block size for alloc() (no op may cross a block; 0: one block). Default 0. */
  blockSize?: number;
  /** hf3fs: bytes of the iov each ring pair bounces ops on other memory through. Default 16 MiB. */
  bounceBuffer?: number;
  /** hf3fs: reads of a hole fail with ENODATA instead of returning zeros. */
  forbidHoles?: boolean;
  /** hf3fs: reads may return a chunk's pending (not yet committed) CRAQ version instead of retrying. */
  readUncommitted?: boolean;
  /** Ops in flight in the kernel at once, over all rings; more wait their turn in native memory. Default 128. */
  queueDepth?: number;
  /**
   * Rings, each with its own native thread; batches are spread over them, so submissions and
   * page-cache copies use several cores. Default 2.
   */
  rings?: number;
  /**
   * The 'threads' engine: worker threads doing pread/pwrite, over all rings (each ring gets its
   * share, at most its share of queueDepth). Default 4 per core, at most 16.
   */
  threads?: number;
  /**
   * The 'threads' engine: O_DIRECT ops through kernel AIO (io_submit, what libaio wraps), up to 32
   * in flight per thread, rather than one pread/pwrite per thread. Default true; where the kernel
   * has no AIO, pread/pwrite do them anyway.
   */
  aio?: boolean;
  /** Entries of io_uring's registered (fixed) buffer table. Default 1024; 0 turns registration off. */
  registeredBuffers?: number;
  /**
   * Force buffered (page cache) I/O onto kernel worker threads (IOSQE_ASYNC). Default false: the
   * kernel copies cached data inline on the engine's thread, the faster way for page-cache reads,
   * and still hands uncached reads to its workers by itself.
   */
  asyncBuffered?: boolean;
}

export interface AllocOptions {
  /** Register the memory with the engine (io_uring fixed buffer). Default true; iovs always are. */
  register?: boolean;
  /** hf3fs: this buffer's iov block size, instead of the client's `blockSize`. */
  blockSize?: number;
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
  /**
   * 'io_uring', 'threads' (pread/pwrite and AIO on native threads) or 'usrbio' (the 'hf3fs' engine,
   * under the name earlier versions reported; kept for code that compares it).
   */
  engine: string;
  /** The engine as the `engine` option names it: 'io_uring', 'threads' or 'hf3fs'. */
  engineOption: EngineName;
  /**
   * Why this engine runs and not the default one, e.g. "io_uring_setup: EPERM (seccomp? ...)" or
   * 'THREEFS_CLIENT_ENGINE=threads'; null when the default runs (io_uring, or hf3fs on 3FS).
   */
  engineReason: string | null;
  /** threads: the engine's worker threads, over all rings, and whether O_DIRECT ops go through AIO. */
  threads?: number;
  aio?: boolean;
  /** hf3fs: the mount point, the library loaded and the NUMA node used. */
  mount?: string;
  library?: string;
  numa?: number;
  rings: number;
  queueDepth: number;
  /** Entries of the engine's fixed-buffer table (io_uring); 0 for engines without one. */
  registeredBuffers: number;
  /**
   * Why the last alloc() that asked for registered memory got none (its IoBuffer says
   * `registered: false`), e.g. 'RLIMIT_MEMLOCK 65536 bytes (ulimit -l 64) reached: io_uring_register
   * ENOMEM ...' or the table full; null when it got it, or before any alloc(). On 3FS every buffer is an iov: null.
   */
  unregisteredReason: string | null;
  /**
   * Why there are fewer io_uring rings than asked: io_uring_setup said ENOMEM (RLIMIT_MEMLOCK), and
   * one ring of the same depth, half the locked memory, was tried before the threads engine; null otherwise.
   */
  ringsReason: string | null;
  asyncBuffered: boolean;
  closed: boolean;
  /** IoBuffers of this client not yet freed (by free() or the garbage collector), and their bytes. */
  ioBuffers: number;
  ioBufferBytes: number;
}

/** The counters, and the per-op distributions and errors by code over the client's life (lib/core/metrics.ts). */
export interface ClientMetrics extends NativeMetrics, OpDistributions {
  /**
   * Bytes the library copied on the JS thread out of this client's registered memory into memory
   * the caller keeps (stream chunks handed out as fresh Buffers, docs/streams.md).
   */
  copiedBytes: number;
}

const directCode: Record<DirectMode, number> = { auto: 0, always: 1, never: 2 };

const DEFAULT_BOUNCE = 16 * 1024 * 1024;
/** The most one IoBuffer can hold: its memory is one ArrayBuffer. */
const MAX_LENGTH = bufferConstants.MAX_LENGTH;
/**
 * The 'threads' engine's default size: 4 per core, at most 16. Its threads copy page-cache data;
 * past a few per core they only contend, and O_DIRECT ops need no thread each (AIO).
 */
const DEFAULT_THREADS = Math.min(16, 4 * availableParallelism());

// The native settings of the 3FS engine, checked here so a bad value names its option.
function hf3fsSettings(options: ClientOptions): Partial<NativeClientOptions> {
  const { mount, library } = options;
  if (typeof mount !== 'string' || mount.length === 0 || mount.includes('\0')) {
    throw argError('ERR_INVALID_ARG_VALUE', `the 'hf3fs' engine needs mount: a path on the 3FS mount`);
  }
  if (library !== undefined && (typeof library !== 'string' || library.length === 0)) throw argError('ERR_INVALID_ARG_VALUE', 'library must be a path');
  const numa = options.numa === undefined || options.numa === 'auto' ? nicNumaNode() : wholeNumber(options.numa, 'numa', -1, 1023);
  return {
    engine: 'hf3fs',
    mount,
    ...(library !== undefined ? { library } : {}),
    numa,
    blockSize: wholeNumber(options.blockSize ?? 0, 'blockSize', 0, Number.MAX_SAFE_INTEGER),
    bounceBytes: wholeNumber(options.bounceBuffer ?? DEFAULT_BOUNCE, 'bounceBuffer', 0, 2 ** 40),
    forbidHoles: options.forbidHoles === true,
    readUncommitted: options.readUncommitted === true,
  };
}

// The NUMA node of the first RDMA NIC with an active port: iovs there are one hop from the NIC.
function nicNumaNode(): number {
  try {
    const { devices } = native().rdmaDevices();
    const active = devices.find((d) => d.numaNode >= 0 && d.ports.some((p) => p.state === 'ACTIVE'));
    return active ? active.numaNode : -1;
  } catch {
    return -1;
  }
}

function wholeNumber(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from ${min} to ${max}, got ${described(value)}`);
  }
  return value;
}

/** A value for an error message, with its type when it is not a number: 'the string "4096"'. */
function described(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (value === null || value === undefined) return String(value);
  return `${shown(value)} (a ${typeof value})`;
}

/** An I/O engine with its own ring, completion thread and registered memory. */
export class Client implements AsyncDisposable {
  readonly #native: NativeClient;
  readonly #asyncBuffered: boolean;
  readonly #hf3fs: boolean;
  readonly #engine: string;
  readonly #engineOption: EngineName;
  readonly #engineReason: string | null;
  readonly #threads: number;
  readonly #aio: boolean;
  readonly #registeredBuffers: number; // as asked
  #closing: Promise<void> | undefined;

  constructor(options: ClientOptions = {}) {
    options ??= {};
    const asked: string = options.engine ?? (options.mount !== undefined ? 'hf3fs' : 'local');
    const engine = asked === 'usrbio' ? 'hf3fs' : asked;
    if (engine !== 'local' && engine !== 'io_uring' && engine !== 'threads' && engine !== 'hf3fs') {
      throw argError('ERR_INVALID_ARG_VALUE', `engine must be 'local', 'io_uring', 'threads' or 'hf3fs', got ${JSON.stringify(options.engine)}`);
    }
    const queueDepth = wholeNumber(options.queueDepth ?? 128, 'queueDepth', 1, 32768);
    const rings = wholeNumber(options.rings ?? 2, 'rings', 1, 64);
    const registeredSlots = wholeNumber(options.registeredBuffers ?? 1024, 'registeredBuffers', 0, 16384);
    const threads = wholeNumber(options.threads ?? DEFAULT_THREADS, 'threads', 1, 4096);
    this.#asyncBuffered = options.asyncBuffered ?? false;
    this.#registeredBuffers = registeredSlots;
    this.#hf3fs = engine === 'hf3fs';
    const settings: NativeClientOptions = { queueDepth, rings, registeredSlots, asyncBuffered: this.#asyncBuffered };
    let choice: ReturnType<typeof embeddedChoice> | undefined;
    if (this.#hf3fs) {
      const embeddedOnly = (['threads', 'aio'] as const).filter((k) => options[k] !== undefined);
      if (embeddedOnly.length > 0) throw argError('ERR_INVALID_ARG_VALUE', `${embeddedOnly.join(', ')}: only for the embedded engine, not 'hf3fs'`);
      Object.assign(settings, hf3fsSettings(options));
    } else {
      const only3fs = (['mount', 'library', 'numa', 'blockSize', 'bounceBuffer', 'forbidHoles', 'readUncommitted'] as const).filter((k) => options[k] !== undefined);
      if (only3fs.length > 0) throw argError('ERR_INVALID_ARG_VALUE', `${only3fs.join(', ')}: only for the 'hf3fs' engine`);
      choice = embeddedChoice(engine as 'local' | EmbeddedEngine);
      if (options.aio !== undefined && typeof options.aio !== 'boolean') throw argError('ERR_INVALID_ARG_TYPE', 'aio must be a boolean');
      Object.assign(settings, { embeddedEngine: choice.mode, threads, aio: options.aio ?? true });
    }
    try {
      this.#native = new (native().NativeClient)(settings);
    } catch (e) {
      throw withMemlockAdvice(fromNative(e, this.#hf3fs ? { path: options.mount } : {}));
    }
    const info = this.#native.info();
    this.#engine = info.engine;
    this.#engineOption = engineName(info.engine);
    this.#engineReason = info.ioUringErrno !== undefined ? ioUringRefusal(info.ioUringErrno) : (choice?.forcedBy ?? null);
    // As the addon shares them out: each ring gets ceil(threads / rings), at most its share of the queue depth.
    this.#aio = options.aio ?? true;
    this.#threads = rings * Math.min(Math.ceil(threads / rings), Math.ceil(queueDepth / rings));
  }

  /** Page-aligned memory registered with the engine, seen from JS without copying. */
  alloc(bytes: number, options: AllocOptions = {}): IoBuffer {
    this.checkOpen();
    options ??= {};
    wholeNumber(bytes, 'bytes', 0, Number.MAX_SAFE_INTEGER);
    if (bytes > MAX_LENGTH) {
      throw argError('ERR_OUT_OF_RANGE', `bytes ${bytes} is more than one IoBuffer can hold: at most ${MAX_LENGTH} (buffer.constants.MAX_LENGTH, Node's limit for one ArrayBuffer); allocate several`);
    }
    if (options.blockSize !== undefined) {
      if (!this.#hf3fs) throw argError('ERR_INVALID_ARG_VALUE', `blockSize: only for the 'hf3fs' engine`);
      wholeNumber(options.blockSize, 'blockSize', 0, bytes);
    }
    try {
      const [id, memory, registered] = this.#native.alloc(bytes, options.register ?? true, options.blockSize);
      return lend(this.#native, id, memory, registered);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /** Opens a file. `flags` as in node:fs ('r', 'r+', 'w', 'wx', 'w+', 'wx+') or open(2) numbers. */
  async open(pathLike: PathLike, flags: OpenFlags = 'r', mode = 0o666, options: OpenOptions = {}): Promise<File> {
    this.checkOpen();
    options ??= {};
    const path = pathArg(pathLike);
    const parsed = parseFlags(flags);
    wholeNumber(mode, 'mode', 0, 0o7777);
    let direct: DirectMode;
    const asked = options.direct ?? (parsed.askedDirect ? 'always' : 'auto');
    if (asked === true) direct = 'always';
    else if (asked === false) direct = 'never';
    else if (asked === 'auto' || asked === 'always' || asked === 'never') direct = asked;
    else throw argError('ERR_INVALID_ARG_VALUE', `direct must be 'auto', 'always', 'never' or a boolean`);
    try {
      const handle = await native().open(path, parsed.flags, mode, directCode[direct], this.#native);
      return new File(this.#native, { engine: this.#engine, engineOption: this.#engineOption, engineReason: this.#engineReason }, handle, path, direct);
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
    const where = i.mount === undefined ? {} : { mount: i.mount, library: i.library, numa: i.numa };
    const threads = i.engine === 'threads' ? { threads: this.#threads, aio: this.#aio } : {};
    const { ioBuffers, ioBufferBytes } = i;
    return { engine: i.engine, engineOption: this.#engineOption, engineReason: this.#engineReason, ...threads, ...where, rings: i.rings, queueDepth: i.queueDepth, registeredBuffers: i.registeredSlots, unregisteredReason: i.registerRefusal === 0 ? null : registerRefusal(i.registerRefusal, i.engine, this.#registeredBuffers, i.registeredSlots), ringsReason: i.ringsShrunk ? ringsShrunk(i.ringsShrunk, i.rings, i.queueDepth) : null, asyncBuffered: this.#asyncBuffered, closed: i.closed, ioBuffers, ioBufferBytes };
  }

  /**
   * Makes `linkPath` a hard link to `target`; on 3FS through its own ioctl (FUSE has no link(2)
   * there), elsewhere with link(2).
   */
  async hardlink(target: string, linkPath: string): Promise<void> {
    this.checkOpen();
    for (const [name, p] of [['target', target], ['linkPath', linkPath]] as const) {
      if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', `${name} must be a non-empty string without NUL bytes`);
    }
    await native().hardlink(target, linkPath, this.#native).catch((e) => Promise.reject(fromNative(e, { path: linkPath })));
  }

  metrics(): ClientMetrics {
    return { ...this.#native.metrics(), copiedBytes: accountOf(this.#native).copiedBytes, ...decodeDistributions(this.#native.distributions()) };
  }

  /** The engines' raw histogram counts (the layout lib/core/metrics.ts decodes): a copy. */
  distributionCounts(): DistributionCounts {
    return this.#native.distributions();
  }

  /** Per-interval metrics: each sample() of the sampler covers the time since its previous one. */
  metricsSampler(): MetricsSampler {
    return new MetricsSampler(this);
  }

  /** Whether `memory` is this client's (an IoBuffer of it, or a view of one's memory). @internal */
  owns(memory: IoBuffer | ArrayBufferView): boolean {
    const region = memory instanceof IoBuffer ? memory.region : regionOf(memory.buffer);
    return region?.owner === this.#native;
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

/** io_uring's ENOMEM is RLIMIT_MEMLOCK (when 'io_uring' was forced; 'local' falls back): say so, with the limit and how to raise it. */
function withMemlockAdvice(e: ThreeFSError): ThreeFSError {
  if (e.code !== 'ENOMEM' || e.syscall !== 'io_uring_setup') return e;
  return new ThreeFSError('ENOMEM', `${e.message}: ${memlockAdvice()}`, { errno: e.errno, syscall: e.syscall });
}

/** A new client with its own engine. */
export function connect(options?: ClientOptions): Client {
  return new Client(options);
}

/**
 * Memory for the library's own I/O (the KVCache's slots and staging, dataset batches, safetensors
 * loads), where many ops' pieces are packed side by side: one iov block on 3FS, whatever the
 * client's `blockSize`, since 3FS refuses an op whose memory crosses a block.
 * @internal
 */
export function allocPacked(client: Client, bytes: number, options: { register?: boolean } = {}): IoBuffer {
  return client.alloc(bytes, client.info().engineOption === 'hf3fs' ? { blockSize: 0 } : options);
}

/** info().ringsReason: what io_uring_setup said, and the rings made instead. */
function ringsShrunk([errno, ringsAsked, depthAsked]: [number, number, number], rings: number, depth: number): string {
  const instead = ringsAsked > 0 ? `${rings} of the ${ringsAsked} rings asked` : `one ring shallower than the ${depthAsked} entries asked`;
  return `${ioUringRefusal(errno)}: ${instead}, rather than the threads engine`;
}
