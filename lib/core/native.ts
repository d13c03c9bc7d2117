// The one place that loads the addon (a prebuild, or the local build) and describes its surface.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ThreeFSError } from './errors';
import type { WireLayout } from './wire';

export interface NativeClientOptions {
  queueDepth: number;
  rings: number;
  registeredSlots: number;
  asyncBuffered: boolean;
  /** The embedded engine: 'auto' is io_uring, or the 'threads' engine when io_uring_setup is refused. */
  embeddedEngine?: 'auto' | 'io_uring' | 'threads';
  /** The 'threads' engine's workers over all rings. */
  threads?: number;
  /** The 'threads' engine: O_DIRECT ops through kernel AIO (io_submit). */
  aio?: boolean;
  engine?: 'hf3fs';
  mount?: string;
  library?: string;
  numa?: number;
  blockSize?: number;
  bounceBytes?: number;
  forbidHoles?: boolean;
  readUncommitted?: boolean;
}

export interface NativeFile {
  /** [fd, directFd, directErrno, dioMemAlign, dioOffsetAlign, accessMode, usrbioRegistered] */
  describe(): [number, number, number, number, number, number, boolean];
  stat(): Promise<RawStat>;
  truncate(length: number): Promise<void>;
  sync(dataOnly: boolean): Promise<void>;
  forceFsync(): Promise<void>;
  punchHoles(starts: Float64Array, ends: Float64Array): Promise<void>;
  /** An OFD write lock on the range, tried without waiting (false: held elsewhere); lock false releases it. */
  lockRange(offset: number, length: number, lock: boolean): boolean;
  /** direct 'auto': opens the O_DIRECT twin (describe() then says how it went). */
  openDirect(): Promise<void>;
  close(): Promise<void>;
  closed(): boolean;
}

export interface RawStat {
  dev: number;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface NativeMetrics {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  directBytes: number;
  bufferedBytes: number;
  registeredBytes: number;
  unregisteredBytes: number;
  bouncedBytes: number;
  shortTransfers: number;
  errors: number;
  submitCalls: number;
  batches: number;
}

export interface NativeClient {
  alloc(bytes: number, register: boolean, blockSize?: number): [number, ArrayBuffer, boolean];
  free(id: number, memory: ArrayBuffer): void;
  /** The arrays are laid out as lib/core/wire.ts says. */
  submit(
    write: boolean,
    files: NativeFile[],
    views: ArrayBufferView[],
    descriptors: Float64Array,
    results: Float64Array,
    failFast: boolean,
    checksums?: Float64Array,
    crcs?: Uint32Array,
    after?: Int32Array,
  ): [number, Promise<void>];
  cancel(batchId: number, errno: number): void;
  /** ioUringErrno: set when io_uring_setup was refused and the 'threads' engine runs instead. */
  info(): { engine: string; ioUringErrno?: number; ringsShrunk?: [number, number, number]; rings: number; queueDepth: number; registeredSlots: number; registerRefusal: number; closed: boolean; ioBuffers: number; ioBufferBytes: number; mount?: string; library?: string; numa?: number };
  metrics(): NativeMetrics;
  /** native/engines/op_histogram.h's distributions, summed over the rings (see Client::Distributions). */
  distributions(): Float64Array;
  close(): Promise<void>;
}

// What the addon's probes return (native/probes/probe.cc, native/hf3fs/usrbio_lib.cc). Fields a failed query
// could not fill are absent.
export interface UsrbioProbeResult {
  requested: string;
  loaded: boolean;
  path?: string;
  error?: string;
  iorSize1?: number;
  iorSizeExpected?: number;
}

export interface IoUringProbeResult {
  available: boolean;
  errno: number;
  code?: string;
}

export interface RdmaPortInfo {
  port: number;
  /** Set when ibv_query_port failed; the other fields are then absent. */
  error?: string;
  /** 'ACTIVE', 'DOWN', 'INIT', 'ARMED', ... (enum ibv_port_state) */
  state?: string;
  linkLayer?: 'InfiniBand' | 'Ethernet' | 'unspecified';
  /** Bytes. */
  activeMtu?: number;
  gid0?: string;
  lid?: number;
}

export interface RdmaDeviceInfo {
  name: string;
  guid: string;
  nodeType?: string;
  /** -1 when the kernel does not say. */
  numaNode: number;
  /** Set when the device could not be opened or queried; the limits are then absent. */
  error?: string;
  fwVer?: string;
  maxSge?: number;
  maxSgeRd?: number;
  maxQp?: number;
  maxQpWr?: number;
  maxQpRdAtom?: number;
  maxCqe?: number;
  physPortCnt?: number;
  ports: RdmaPortInfo[];
}

export interface RdmaProbeResult {
  loaded: boolean;
  library?: string;
  error?: string;
  devices: RdmaDeviceInfo[];
}

export interface Binding {
  NativeClient: new (options: NativeClientOptions) => NativeClient;
  /** native/objects/client/wire.h's layout of submit()'s arrays (lib/core/wire.ts is its twin). */
  wire: WireLayout;
  open(path: string, flags: number, mode: number, direct: number, client?: NativeClient): Promise<NativeFile>;
  hardlink(target: string, linkPath: string, client?: NativeClient): Promise<void>;
  usrbioProbe(library?: string): UsrbioProbeResult;
  ioUringProbe(): IoUringProbeResult;
  rdmaDevices(): RdmaProbeResult;
  /** out[i] = CRC32C(views[i]), computed on libuv's pool (native/util/crc32c.cc). */
  crc32c(views: ArrayBufferView[], out: Uint32Array): Promise<void>;
  /** On the JS thread; `kernel` runs that one (`true`: the table-driven one), for tests. */
  crc32cSync(view: ArrayBufferView, kernel?: string | boolean): number;
  /** Test hooks (native/util/crc32c.h): the kernels this CPU runs, fastest first, and the one in use. */
  crc32cKernels(): { current: string; supported: string[] };
  /** Makes `name` the kernel every CRC32C runs; returns the one before. */
  setCrc32cKernel(name: string): string;
  /** CRC32C(A || B) from CRC32C(A), CRC32C(B) and B's length. */
  crc32cCombine(crcA: number, crcB: number, lengthB: number): number;
  /** CRC32C of the view split over the checksum threads, as the engines take an op's. */
  crc32cSpread(view: ArrayBufferView): number;
  /** The threads one checksum is split over at most; sets it when `threads` is given. Returns the count before. */
  checksumThreads(threads?: number): number;
  /** out[i] = CRC-32 (zlib's) of views[i], computed on libuv's pool (native/util/crc32c.cc). */
  crc32(views: ArrayBufferView[], out: Uint32Array): Promise<void>;
  /** out[i] = CRC-32 of view[ranges[2i], ranges[2i] + ranges[2i + 1]), on libuv's pool. */
  crc32Ranges(view: ArrayBufferView, ranges: Float64Array, out: Uint32Array): Promise<void>;
  /** zlib's crc32(crc, view) on the JS thread; `software` forces the table-driven version (for tests). */
  crc32Sync(view: ArrayBufferView, crc?: number, software?: boolean): number;
  /**
   * KVCache ids: out[16i, 16i + 16) = SHA-256(prefix || keys[i]) cut to 16 bytes (strings as
   * UTF-8), on the JS thread (native/util/key_ids.cc). Absent where the process has no SHA256 to call.
   */
  keyIds?(prefix: Uint8Array, keys: readonly (string | Uint8Array)[], out: Uint8Array): void;
}

function packageRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return __dirname;
    dir = up;
  }
  return dir;
}

let binding: Binding | undefined;

export function native(): Binding {
  if (binding) return binding;
  try {
    // THREEFS_CLIENT_ADDON names a development build (cmake-js debug or sanitizer build).
    const override = process.env.THREEFS_CLIENT_ADDON;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => Binding;
    binding = override ? (require(override) as Binding) : load(packageRoot());
    return binding;
  } catch (e) {
    throw new ThreeFSError(
      'ERR_NATIVE_LOAD',
      `3fs-client: the native addon could not be loaded (${(e as Error).message}). ` +
        'Rebuild it with `npm rebuild 3fs-client`; it needs liburing-dev (Debian/Ubuntu) or liburing-devel (Fedora).',
      { cause: e },
    );
  }
}
