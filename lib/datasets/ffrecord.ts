// ffrecord (HFAiLab/ffrecord), the sample format of High-Flyer's training jobs on 3FS, read and
// written byte for byte as the original does:
//
//   u32 meta_crc | u64 N | u32 crc[N] | u64 offset[N] | samples back to back, the last one ending at EOF
//
// All little-endian; CRCs are zlib's crc32; meta_crc covers the bytes [4, 12 + 12N). meta_crc 0
// marks a legacy file, whose header has no checksum. A dataset is one file or a directory of
// `*.ffr` shards (the original's `PART_00000.ffr`, ...), read as one index space in name order.
import { constants as bufferConstants } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { IoOp } from '../core/batch';
import { clientFor } from '../clients';
import { allocPacked, type Client, type FileIoOp } from '../core/client';
import { crc32Many, crc32Ranges } from '../core/crc32c';
import { argError, ThreeFSError } from '../core/errors';
import type { File } from '../core/file';
import { isDetached, type IoBuffer } from '../core/io-buffer';
import { MAX_PIECE, ReadPlan, readAlignment, roundUp } from './read-plan';

const HEADER = 12; // meta_crc + N
const ENTRY = 12; // crc[i] + offset[i]
/** Idle batch buffers a dataset keeps for its next reads. */
const IDLE_BUFFERS = 4;
/** The largest Buffer: the samples of a batch are views into one. */
const MAX_LENGTH = bufferConstants.MAX_LENGTH;
/** Shards opened at once by openDataset(). */
const OPEN_AT_ONCE = 16;

export interface OpenDatasetOptions {
  /** The client whose engine reads the files. Default: clientFor(path) (USRBIO on a 3FS mount). */
  client?: Client;
  /** Check the header CRC at open and every sample's CRC after it is read. Default true. */
  verify?: boolean;
  /**
   * 'auto' (default): on file systems with O_DIRECT, samples are read with it, as aligned ranges
   * around them (the samples are views into those); 'never': buffered reads of the exact bytes.
   */
  direct?: 'auto' | 'never';
}

export interface ReadSamplesOptions {
  /** Overrides the dataset's `verify` for this batch. */
  verify?: boolean;
  signal?: AbortSignal;
}

/** One file of a dataset. */
export interface DatasetFile {
  readonly path: string;
  /** Samples in this file. */
  readonly samples: number;
  /** Global index of its first sample. */
  readonly first: number;
  /** Bytes (st_size at open). */
  readonly size: number;
  /** False for legacy files (meta_crc 0): their header carries no checksum. */
  readonly headerChecksum: boolean;
}

/**
 * Samples of one read: zero-copy views into one registered buffer. `release()` (or `using`) hands
 * the buffer back to the dataset for its next read; the views must not be used after that.
 */
export class SampleBatch implements Disposable {
  readonly indices: readonly number[];
  readonly samples: Buffer[];
  #buffer: IoBuffer | undefined;
  readonly #giveBack: (b: IoBuffer) => void;

  /** @internal */
  constructor(indices: readonly number[], samples: Buffer[], buffer: IoBuffer, giveBack: (b: IoBuffer) => void) {
    this.indices = indices;
    this.samples = samples;
    this.#buffer = buffer;
    this.#giveBack = giveBack;
  }

  get length(): number {
    return this.samples.length;
  }

  /** The registered buffer the samples view. */
  get buffer(): IoBuffer | undefined {
    return this.#buffer;
  }

  release(): void {
    const b = this.#buffer;
    this.#buffer = undefined;
    if (b) this.#giveBack(b);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

interface OpenFile extends DatasetFile {
  readonly file: File;
  readonly crcs: Uint32Array;
  /** offset[i] of every sample, then st_size: sample i is [bounds[i], bounds[i + 1]). */
  readonly bounds: Float64Array;
  /** Alignment of O_DIRECT reads (1: read the exact bytes). */
  readonly align: number;
}

function ffError(code: string, message: string, details: { path: string; offset?: number; sample?: number; index?: number; cause?: unknown }): ThreeFSError {
  return argError(code, `${message}: '${details.path}'`, details);
}

/** The u64 at `at`, as a number; -1 if it is 2^53 or more (no real offset or count is). */
function u64(b: Buffer, at: number): number {
  const lo = b.readUInt32LE(at);
  const hi = b.readUInt32LE(at + 4);
  return hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + lo;
}

function setU64(b: Buffer, at: number, value: number): void {
  b.writeUInt32LE(value % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}

async function readExactly(file: File, into: Buffer, offset: number, what: string): Promise<void> {
  const ops: FileIoOp[] = [];
  // Header reads go into plain JS memory: the batch reads them in place, without a copy.
  for (let done = 0; done < into.length; done += MAX_PIECE) {
    ops.push({ file, buffer: into.subarray(done, Math.min(into.length, done + MAX_PIECE)), fileOffset: offset + done });
  }
  const results = await file.batchRead(ops as IoOp[]);
  results.forEach((r, k) => {
    if (r.error) throw r.error;
    if (r.bytes < ops[k].buffer.byteLength) throw ffError('ERR_FFRECORD_TRUNCATED', `the file ends inside the ${what}`, { path: file.path, offset: ops[k].fileOffset + r.bytes });
  });
}

async function openShard(client: Client, path: string, verify: boolean, direct: 'auto' | 'never'): Promise<OpenFile> {
  const file = await client.open(path, 'r', 0o666, { direct });
  try {
    const st = await file.stat();
    if (!st.isFile) throw ffError('ERR_FFRECORD_BAD_HEADER', 'not a regular file', { path });
    const size = st.size;
    if (size < HEADER) throw ffError('ERR_FFRECORD_TRUNCATED', `the file is ${size} bytes, shorter than the 12-byte header`, { path, offset: size });
    const head = Buffer.alloc(HEADER);
    await readExactly(file, head, 0, 'header');
    const metaCrc = head.readUInt32LE(0);
    const n = u64(head, 4);
    if (n < 0 || HEADER + n * ENTRY > size) {
      throw ffError('ERR_FFRECORD_TRUNCATED', `the header says ${n < 0 ? 'more than 2^53' : n} samples, whose tables do not fit in the file's ${size} bytes`, { path, offset: 4 });
    }
    if (HEADER + n * ENTRY > MAX_LENGTH) {
      throw ffError('ERR_FFRECORD_BAD_HEADER', `the header says ${n} samples, whose tables (${HEADER + n * ENTRY} bytes) are more than a Buffer of this Node can hold (${MAX_LENGTH})`, { path, offset: 4 });
    }
    // One buffer for all of it: meta_crc covers N and both tables as they lie in the file.
    const header = Buffer.alloc(HEADER + n * ENTRY);
    head.copy(header);
    const tables = header.subarray(HEADER);
    await readExactly(file, tables, HEADER, 'header');
    if (verify && metaCrc !== 0) {
      const [crc] = await crc32Many([header.subarray(4)]);
      if (crc !== metaCrc) throw ffError('ERR_FFRECORD_HEADER_CRC', `header checksum mismatch (stored ${hex(metaCrc)}, computed ${hex(crc)})`, { path, offset: 0 });
    }
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
    const align = readAlignment(st);
    return { path, samples: n, first: 0, size, headerChecksum: metaCrc !== 0, file, crcs, bounds, align };
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}

const hex = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

/** An ffrecord dataset open for random batch reads. Made by openDataset(). */
export class FFRecordDataset implements AsyncDisposable {
  /** Samples in all files. */
  readonly length: number;
  readonly files: readonly DatasetFile[];
  readonly #files: OpenFile[];
  readonly #client: Client;
  readonly #verify: boolean;
  readonly #idle: IoBuffer[] = [];
  #closed = false;

  /** @internal */
  constructor(client: Client, files: OpenFile[], verify: boolean) {
    this.#client = client;
    this.#files = files;
    this.#verify = verify;
    this.files = files.map(({ path, samples, first, size, headerChecksum }) => Object.freeze({ path, samples, first, size, headerChecksum }));
    this.length = files.reduce((n, f) => n + f.samples, 0);
  }

  /** Bytes of sample `index`. */
  sampleLength(index: number): number {
    const [f, j] = this.#locate(index, 0);
    return f.bounds[j + 1] - f.bounds[j];
  }

  /**
   * Reads samples, all in one submission, into one registered buffer; resolves with views of them
   * in the order asked (an index may repeat). With `verify`, every sample's CRC-32 is checked in
   * native code off the JS thread before this resolves.
   */
  async read(indices: ArrayLike<number>, options: ReadSamplesOptions = {}): Promise<SampleBatch> {
    if (this.#closed) throw argError('ERR_DATASET_CLOSED', 'the dataset is closed');
    if (indices === null || typeof indices !== 'object' || typeof indices.length !== 'number') {
      throw argError('ERR_INVALID_ARG_TYPE', 'indices must be an array of sample indices');
    }
    options ??= {};
    const verify = options.verify ?? this.#verify;
    const n = indices.length;
    const where: [OpenFile, number][] = new Array(n);
    const at = new Float64Array(n); // where sample k's bytes start in the buffer
    const plan = new ReadPlan();
    for (let k = 0; k < n; k++) {
      const [f, j] = (where[k] = this.#locate(indices[k], k));
      const length = f.bounds[j + 1] - f.bounds[j];
      if (length > MAX_LENGTH) {
        throw ffError('ERR_FFRECORD_SAMPLE_TOO_LARGE', `sample ${f.first + j} is ${length} bytes, more than a Buffer of this Node can hold (${MAX_LENGTH})`, { path: f.path, offset: f.bounds[j], sample: f.first + j, index: k });
      }
      at[k] = plan.add(f.file, f.bounds[j], length, f.align, k);
    }
    const total = plan.bytes;
    if (total > MAX_LENGTH) throw argError('ERR_OUT_OF_RANGE', `the batch needs ${total} bytes, more than a Buffer of this Node can hold (${MAX_LENGTH}): read it in parts`);
    const buffer = this.#take(total);
    let samples: Buffer[];
    try {
      const failed = await plan.run(this.#client, buffer, options.signal);
      if (failed) {
        const k = failed.owner;
        const [f, j] = where[k];
        const sample = f.first + j;
        const e = failed.error;
        if (e) throw new ThreeFSError(e.code, `${e.message} (sample ${sample})`, { errno: e.errno, syscall: e.syscall, path: f.path, offset: failed.offset, sample, index: k, cause: e });
        throw ffError('ERR_FFRECORD_TRUNCATED', `sample ${sample} is cut short: the file ends at ${failed.offset}, before the sample's end at ${f.bounds[j + 1]}`, { path: f.path, offset: failed.offset, sample, index: k });
      }
      const bytes = total > 0 ? buffer.bytes : Buffer.alloc(0);
      samples = new Array(n);
      const out: number[] = new Array(n);
      const ranges = new Float64Array(2 * n); // [start, length] of each sample in `bytes`, for the CRCs
      for (let k = 0; k < n; k++) {
        const [f, j] = where[k];
        const len = f.bounds[j + 1] - f.bounds[j];
        samples[k] = len === 0 ? Buffer.alloc(0) : bytes.subarray(at[k], at[k] + len);
        if (len > 0) ranges[2 * k] = at[k];
        ranges[2 * k + 1] = len;
        out[k] = f.first + j;
      }
      if (verify) await this.#check(bytes, ranges, where);
      return new SampleBatch(out, samples, buffer, (b) => this.#giveBack(b));
    } catch (e) {
      this.#giveBack(buffer);
      throw e;
    }
  }

  /** Closes the files (after their reads in flight) and frees the idle buffers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const b of this.#idle.splice(0)) b.free();
    await Promise.all(this.#files.map((f) => f.file.close()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #check(bytes: Buffer, ranges: Float64Array, where: [OpenFile, number][]): Promise<void> {
    const got = await crc32Ranges(bytes, ranges);
    for (let k = 0; k < where.length; k++) {
      const [f, j] = where[k];
      if (got[k] !== f.crcs[j]) {
        throw ffError('ERR_FFRECORD_CORRUPT_SAMPLE', `sample ${f.first + j} is corrupt: CRC-32 ${hex(got[k])}, the header says ${hex(f.crcs[j])}`, { path: f.path, offset: f.bounds[j], sample: f.first + j, index: k });
      }
    }
  }

  #locate(index: number, k: number): [OpenFile, number] {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw argError('ERR_OUT_OF_RANGE', `sample index ${String(index)} is out of range: the dataset has ${this.length} samples`, { index: k, sample: typeof index === 'number' ? index : undefined });
    }
    // Binary search over the files' first indices: many shards cost log(files) a sample.
    let lo = 0;
    let hi = this.#files.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#files[mid].first <= index) lo = mid;
      else hi = mid - 1;
    }
    // Empty files share their first index with the next one: step past them.
    while (this.#files[lo].samples === 0 || index >= this.#files[lo].first + this.#files[lo].samples) lo++;
    const f = this.#files[lo];
    return [f, index - f.first];
  }

  #take(bytes: number): IoBuffer {
    let best = -1;
    for (let i = 0; i < this.#idle.length; i++) {
      if (this.#idle[i].byteLength >= bytes && (best < 0 || this.#idle[i].byteLength < this.#idle[best].byteLength)) best = i;
    }
    if (best >= 0) {
      const [b] = this.#idle.splice(best, 1);
      return b;
    }
    // Rounded up so that batches of slightly different sizes reuse one buffer.
    return allocPacked(this.#client, roundUp(Math.max(bytes, 1), 1 << 20));
  }

  #giveBack(b: IoBuffer): void {
    if (b.freed) return;
    if (this.#closed) return b.free();
    this.#idle.push(b);
    if (this.#idle.length > IDLE_BUFFERS) {
      this.#idle.sort((x, y) => y.byteLength - x.byteLength);
      this.#idle.pop()!.free();
    }
  }
}

/** The files of a dataset path: a directory's `*.ffr` files in name order, or the file itself. */
export async function datasetFiles(path: string | readonly string[]): Promise<string[]> {
  if (Array.isArray(path)) return [...path];
  if (typeof path !== 'string' || path.length === 0) throw argError('ERR_INVALID_ARG_VALUE', 'path must be a file, a directory of .ffr files, or a list of files');
  const st = await stat(path).catch((e) => Promise.reject(argError(e.code ?? 'ERR_INVALID_ARG_VALUE', `${e.message}`, { path, syscall: 'stat', errno: e.errno, cause: e })));
  if (!st.isDirectory()) return [path];
  const names = (await readdir(path, { withFileTypes: true })).filter((d) => d.name.endsWith('.ffr') && !d.isDirectory()).map((d) => d.name);
  if (names.length === 0) throw argError('ERR_FFRECORD_NO_FILES', `no .ffr files in the directory '${path}'`, { path });
  return names.sort().map((name) => join(path, name));
}

/**
 * Opens an ffrecord dataset: one file, a directory of `*.ffr` shards, or a list of files (one
 * index space over all of them, in order). Headers are read and checked at open.
 */
export async function openDataset(path: string | readonly string[], options: OpenDatasetOptions = {}): Promise<FFRecordDataset> {
  options ??= {};
  const direct = options.direct ?? 'auto';
  if (direct !== 'auto' && direct !== 'never') throw argError('ERR_INVALID_ARG_VALUE', `direct must be 'auto' or 'never'`);
  const paths = await datasetFiles(path);
  if (paths.length === 0) throw argError('ERR_FFRECORD_NO_FILES', 'the list of files is empty');
  const client = options.client ?? clientFor(paths[0]);
  const verify = options.verify ?? true;
  // Shards open a few at a time (on 3FS each open and header read is a round trip); their first
  // indices are known once all are.
  const opened: (OpenFile | undefined)[] = new Array(paths.length);
  let next = 0;
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(OPEN_AT_ONCE, paths.length) }, async () => {
      while (next < paths.length) {
        const k = next++;
        opened[k] = await openShard(client, paths[k], verify, direct);
      }
    }),
  );
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(opened.map((f) => f?.file.close().catch(() => {})));
    throw (failed as PromiseRejectedResult).reason;
  }
  let first = 0;
  const files = (opened as OpenFile[]).map((f) => {
    const placed = { ...f, first };
    first += f.samples;
    return placed;
  });
  return new FFRecordDataset(client, files, verify);
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface DatasetWriterOptions {
  /**
   * Samples the file will hold, when known: the header then takes exactly 12 + 12 * count bytes,
   * the original writer's layout, and close() fails unless that many were written.
   */
  count?: number;
  /**
   * Unknown count: header room reserved for at most this many samples (default 1,048,576; the
   * unused room is a hole). The header is written compactly at close, so the original reads the
   * file as any other.
   */
  capacity?: number;
  client?: Client;
  /** Make the data durable (fsync, or 3FS's length settle) before the file takes its name. Default true. */
  durable?: boolean;
}

/**
 * Writes one ffrecord file. Samples go to a hidden temporary file next to the target; close()
 * writes the header and renames it into place, so no reader ever sees half a file.
 */
export class FFRecordWriter implements AsyncDisposable {
  readonly path: string;
  readonly #temp: string;
  readonly #file: File;
  readonly #client: Client;
  readonly #known: boolean;
  readonly #slots: number;
  readonly #durable: boolean;
  readonly #crcs: number[] = [];
  readonly #offsets: number[] = [];
  readonly #pending = new Set<Promise<void>>();
  #end: number;
  #failed: unknown;
  #done: Promise<void> | undefined;

  /** @internal */
  constructor(path: string, temp: string, file: File, client: Client, known: boolean, slots: number, durable: boolean) {
    this.path = path;
    this.#temp = temp;
    this.#file = file;
    this.#client = client;
    this.#known = known;
    this.#slots = slots;
    this.#durable = durable;
    this.#end = HEADER + slots * ENTRY;
  }

  /** Samples written (or being written) so far. */
  get count(): number {
    return this.#offsets.length;
  }

  /** Appends one sample. */
  write(sample: ArrayBufferView): Promise<void> {
    return this.writeMany([sample]);
  }

  /**
   * Appends samples in order: their CRCs are computed off the JS thread and they go out in one
   * submission, straight from the caller's memory (keep it unchanged until this resolves; on 3FS,
   * memory not from client.alloc() passes through the engine's bounce buffer). Calls may overlap:
   * each sample's place is fixed when the call is made.
   */
  writeMany(samples: readonly ArrayBufferView[]): Promise<void> {
    try {
      return this.#place(samples);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #place(samples: readonly ArrayBufferView[]): Promise<void> {
    if (this.#done) throw argError('ERR_DATASET_CLOSED', `the writer is closed: '${this.path}'`, { path: this.path });
    if (this.#failed) throw this.#failed;
    checkSamples(samples);
    if (this.#offsets.length + samples.length > this.#slots) {
      throw argError('ERR_FFRECORD_FULL', `${this.#known ? 'count' : 'capacity'} is ${this.#slots} samples; ${samples.length} more would make ${this.#offsets.length + samples.length}: '${this.path}'`, { path: this.path });
    }
    const first = this.#offsets.length;
    const ops: FileIoOp[] = [];
    for (const s of samples) {
      const bytes = new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
      this.#offsets.push(this.#end);
      this.#crcs.push(0);
      for (let done = 0; done < bytes.length; done += MAX_PIECE) {
        ops.push({ file: this.#file, buffer: bytes.subarray(done, Math.min(bytes.length, done + MAX_PIECE)), fileOffset: this.#end + done });
      }
      this.#end += bytes.length;
    }
    const work = (async () => {
      const [crcs] = await Promise.all([crc32Many(samples), this.#client.batchWrite(ops, { failFast: true })]);
      crcs.forEach((c, i) => (this.#crcs[first + i] = c));
    })();
    const tracked = work.catch((e) => {
      this.#failed ??= e;
      throw e;
    });
    const settled = tracked.finally(() => this.#pending.delete(settled)).catch(() => {});
    this.#pending.add(settled);
    return tracked;
  }

  /**
   * Waits for the writes, writes the header, and renames the file into place. With a known
   * count, fails (and removes the temporary file) unless exactly that many samples were written.
   */
  close(): Promise<void> {
    this.#done ??= this.#finish();
    return this.#done;
  }

  /** Drops the file: nothing appears under its name. */
  async abort(): Promise<void> {
    this.#failed ??= argError('ERR_DATASET_CLOSED', `the writer was aborted: '${this.path}'`, { path: this.path });
    this.#done ??= (async () => {
      await Promise.all(this.#pending);
      await this.#file.close().catch(() => {});
      await rm(this.#temp, { force: true });
    })();
    await this.#done.catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #finish(): Promise<void> {
    try {
      await Promise.all(this.#pending);
      if (this.#failed) throw this.#failed;
      const n = this.#offsets.length;
      if (this.#known && n !== this.#slots) {
        throw argError('ERR_FFRECORD_COUNT', `the writer was told ${this.#slots} samples but got ${n}: '${this.path}'`, { path: this.path });
      }
      const header = encodeHeader(this.#crcs, this.#offsets);
      header.writeUInt32LE((await crc32Many([header.subarray(4)]))[0], 0);
      await this.#client.batchWrite([{ file: this.#file, buffer: header, fileOffset: 0 }], { failFast: true });
      // Only empty samples behind a reserved header: no byte was written where they lie, and the
      // last sample must end at EOF (the file must reach its offset).
      if (n > 0 && header.length < this.#end && this.#end === HEADER + this.#slots * ENTRY) await this.#file.truncate(this.#end);
      if (this.#durable) await this.#file.forceFsync();
      await this.#file.close();
      await rename(this.#temp, this.path);
    } catch (e) {
      await this.#file.close().catch(() => {});
      await rm(this.#temp, { force: true });
      throw e;
    }
  }
}

/** Refuses what is not an array of live ArrayBufferViews, before any of them is placed. */
function checkSamples(samples: readonly ArrayBufferView[]): void {
  if (!Array.isArray(samples)) throw argError('ERR_INVALID_ARG_TYPE', 'samples must be an array of ArrayBufferViews');
  samples.forEach((s, i) => {
    if (!ArrayBuffer.isView(s)) throw argError('ERR_INVALID_ARG_TYPE', `samples[${i}] must be a Buffer, TypedArray or DataView`, { index: i });
    if (s.byteLength === 0 && isDetached(s.buffer)) throw argError('ERR_BUFFER_FREED', `samples[${i}]: its ArrayBuffer is detached (transferred)`, { index: i });
  });
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

/** Samples one file can hold here: its header (N, then a CRC and an offset each) is written from one Buffer. */
const MAX_FILE_SAMPLES = Math.floor((MAX_LENGTH - HEADER) / ENTRY);

/** Refuses a count of samples for one file that its header could not be written for (after all the data). */
function fileSamples(n: number, name: string): number {
  if (n > MAX_FILE_SAMPLES) throw argError('ERR_OUT_OF_RANGE', `${name}: ${n} samples in one file need a header of ${HEADER + n * ENTRY} bytes, more than a Buffer of this Node holds (${MAX_LENGTH}); use a sharded writer, at most ${MAX_FILE_SAMPLES} samples per shard`);
  return n;
}

function slotCount(value: number | undefined, name: string, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0 || v > 2 ** 40) throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from 0 to 2^40, got ${String(value)}`);
  return v;
}

/** A hidden name next to `path`, for the file until it is complete. */
function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/** Starts an ffrecord file at `path` (it appears there at close()). */
export async function createDatasetWriter(path: string, options: DatasetWriterOptions = {}): Promise<FFRecordWriter> {
  options ??= {};
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', 'path must be a non-empty string without NUL bytes');
  if (options.count !== undefined && options.capacity !== undefined) throw argError('ERR_INVALID_ARG_VALUE', 'give count (known) or capacity (unknown count), not both');
  const known = options.count !== undefined;
  const slots = fileSamples(known ? slotCount(options.count, 'count', 0) : slotCount(options.capacity, 'capacity', 1 << 20), known ? 'count' : 'capacity');
  const client = options.client ?? clientFor(path);
  const temp = tempName(path);
  // Buffered: samples land at any byte offset, which O_DIRECT would refuse.
  const file = await client.open(temp, 'wx', 0o644, { direct: 'never' });
  return new FFRecordWriter(path, temp, file, client, known, slots, options.durable ?? true);
}

export interface ShardedWriterOptions extends Omit<DatasetWriterOptions, 'count' | 'capacity'> {
  /** Total samples, when known: split as the original's dump() does, ceil(count / shards) a file. */
  count?: number;
  /** With `count`: how many files (default 1 per 65,536 samples... at least 1). */
  shards?: number;
  /** Unknown count: a new file every this many samples. Default 65,536. */
  samplesPerShard?: number;
}

/**
 * Writes a directory of `PART_00000.ffr`, `PART_00001.ffr`, ... shards, the layout the original's
 * dump() makes and reads. The directory is built under a hidden name and renamed into place at
 * close(): readers see all of it or none.
 */
export class ShardedDatasetWriter implements AsyncDisposable {
  readonly path: string;
  readonly #temp: string;
  readonly #options: DatasetWriterOptions;
  readonly #perShard: number;
  readonly #count: number | undefined;
  readonly #closed: FFRecordWriter[] = [];
  #current: FFRecordWriter | undefined;
  #opening: Promise<FFRecordWriter> | undefined;
  #written = 0;
  #order: Promise<void> = Promise.resolve();
  #done: Promise<void> | undefined;

  /** @internal */
  constructor(path: string, temp: string, perShard: number, count: number | undefined, options: DatasetWriterOptions) {
    this.path = path;
    this.#temp = temp;
    this.#perShard = perShard;
    this.#count = count;
    this.#options = options;
  }

  get count(): number {
    return this.#written;
  }

  write(sample: ArrayBufferView): Promise<void> {
    return this.writeMany([sample]);
  }

  /** Appends samples in order, starting new shards as each fills. Calls may overlap. */
  writeMany(samples: readonly ArrayBufferView[]): Promise<void> {
    // Placed one call after another (a new shard is opened asynchronously), written in parallel.
    const placed = this.#order.then(() => this.#place(samples));
    this.#order = placed.then(
      () => {},
      () => {},
    );
    return placed.then((writes) => writes);
  }

  async #place(samples: readonly ArrayBufferView[]): Promise<Promise<void>> {
    if (this.#done) throw argError('ERR_DATASET_CLOSED', `the writer is closed: '${this.path}'`, { path: this.path });
    // All checked before any is placed: a refused call must write (and count) none of them.
    checkSamples(samples);
    if (this.#count !== undefined && this.#written + samples.length > this.#count) {
      throw argError('ERR_FFRECORD_FULL', `count is ${this.#count} samples; ${samples.length} more would make ${this.#written + samples.length}: '${this.path}'`, { path: this.path });
    }
    this.#written += samples.length;
    const writes: Promise<void>[] = [];
    let at = 0;
    while (at < samples.length) {
      const w = await this.#shard();
      const room = this.#slotsOf(this.#closed.length) - w.count;
      const part = samples.slice(at, at + room);
      at += part.length;
      writes.push(w.writeMany(part));
      if (w.count === this.#slotsOf(this.#closed.length)) {
        this.#current = undefined;
        this.#closed.push(w);
      }
    }
    return Promise.all(writes).then(() => {});
  }

  /** Closes every shard and renames the directory into place. */
  close(): Promise<void> {
    this.#done ??= (async () => {
      await this.#order;
      try {
        if (this.#count !== undefined && this.#written !== this.#count) {
          throw argError('ERR_FFRECORD_COUNT', `the writer was told ${this.#count} samples but got ${this.#written}: '${this.path}'`, { path: this.path });
        }
        if (this.#current) this.#closed.push(this.#current);
        this.#current = undefined;
        // A dataset of no samples is still one (empty) shard, so it opens.
        if (this.#closed.length === 0) this.#closed.push(await this.#shard());
        await Promise.all(this.#closed.map((w) => w.close()));
        await rename(this.#temp, this.path);
      } catch (e) {
        await Promise.all([...this.#closed, ...(this.#current ? [this.#current] : [])].map((w) => w.abort()));
        await rm(this.#temp, { recursive: true, force: true });
        throw e;
      }
    })();
    return this.#done;
  }

  async abort(): Promise<void> {
    this.#done ??= (async () => {
      // A call being placed may still open a shard: let it finish, so that shard is aborted too.
      await this.#order;
      await Promise.all([...this.#closed, ...(this.#current ? [this.#current] : [])].map((w) => w.abort()));
      await rm(this.#temp, { recursive: true, force: true });
    })();
    await this.#done.catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #slotsOf(shard: number): number {
    if (this.#count === undefined) return this.#perShard;
    return Math.min(this.#perShard, this.#count - shard * this.#perShard);
  }

  async #shard(): Promise<FFRecordWriter> {
    if (this.#current) return this.#current;
    this.#opening ??= (async () => {
      const name = join(this.#temp, `PART_${String(this.#closed.length).padStart(5, '0')}.ffr`);
      const known = this.#count !== undefined ? { count: this.#slotsOf(this.#closed.length) } : { capacity: this.#perShard };
      return createDatasetWriter(name, { ...this.#options, ...known });
    })();
    try {
      this.#current = await this.#opening;
    } finally {
      this.#opening = undefined;
    }
    return this.#current;
  }
}

/** Starts a directory of ffrecord shards at `path` (it appears there at close()). */
export async function createShardedWriter(path: string, options: ShardedWriterOptions = {}): Promise<ShardedDatasetWriter> {
  options ??= {};
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', 'path must be a non-empty string without NUL bytes');
  const { count, shards, samplesPerShard, ...rest } = options;
  let perShard: number;
  if (count !== undefined) {
    slotCount(count, 'count', 0);
    if (samplesPerShard !== undefined) throw argError('ERR_INVALID_ARG_VALUE', 'with count, give shards, not samplesPerShard');
    const files = slotCount(shards, 'shards', Math.max(1, Math.ceil(count / 65536)));
    if (files < 1) throw argError('ERR_OUT_OF_RANGE', 'shards must be at least 1');
    perShard = fileSamples(Math.max(1, Math.ceil(count / files)), 'count / shards');
  } else {
    if (shards !== undefined) throw argError('ERR_INVALID_ARG_VALUE', 'shards needs count; for an unknown count give samplesPerShard');
    perShard = fileSamples(slotCount(samplesPerShard, 'samplesPerShard', 65536), 'samplesPerShard');
    if (perShard < 1) throw argError('ERR_OUT_OF_RANGE', 'samplesPerShard must be at least 1');
  }
  const temp = tempName(path);
  await mkdir(temp);
  return new ShardedDatasetWriter(path, temp, perShard, count, { ...rest, client: rest.client ?? clientFor(dirname(path)) });
}
