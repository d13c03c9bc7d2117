// Reading ffrecord datasets: one file, a directory of `*.ffr` shards (the original's
// `PART_00000.ffr`, ...) or a list of files, read as one index space in order. A batch of samples
// is one submission into one registered buffer; the samples are views of it.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { IoOp } from '../core/batch';
import { clientFor } from '../clients';
import { allocPacked, type Client, type FileIoOp } from '../core/client';
import { crc32Many, crc32Ranges } from '../core/crc32c';
import { argError, ThreeFSError } from '../core/errors';
import type { File } from '../core/file';
import type { IoBuffer } from '../core/io-buffer';
import { decodeTables, ENTRY, ffError, HEADER, hex, MAX_LENGTH, u64 } from './ffrecord-format';
import { MAX_PIECE, ReadPlan, readAlignment, roundUp, type PlanFailure } from './read-plan';

/** Idle batch buffers a dataset keeps for its next reads. */
const IDLE_BUFFERS = 4;
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

/** Sample k of a batch: its file and its index in that file. */
type Where = [OpenFile, number];

/** A batch's reads: where each sample is, and where its bytes start in the batch's buffer. */
type BatchPlan = { where: Where[]; at: Float64Array; plan: ReadPlan };

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
    const { metaCrc, n, tables } = await readHeader(file, size, verify);
    const { crcs, bounds } = decodeTables(path, tables, n, size);
    return { path, samples: n, first: 0, size, headerChecksum: metaCrc !== 0, file, crcs, bounds, align: readAlignment(st) };
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}

/** The header of a file of `size` bytes, its checksum checked (if it has one and `verify`). */
async function readHeader(file: File, size: number, verify: boolean): Promise<{ metaCrc: number; n: number; tables: Buffer }> {
  const path = file.path;
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
  return { metaCrc, n, tables };
}

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
    const { where, at, plan } = this.#plan(indices);
    const total = plan.bytes;
    if (total > MAX_LENGTH) throw argError('ERR_OUT_OF_RANGE', `the batch needs ${total} bytes, more than a Buffer of this Node can hold (${MAX_LENGTH}): read it in parts`);
    const buffer = this.#take(total);
    try {
      const failed = await plan.run(this.#client, buffer, options.signal);
      if (failed) throw readError(failed, where);
      const bytes = total > 0 ? buffer.bytes : Buffer.alloc(0);
      const { samples, out, ranges } = views(bytes, where, at);
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

  #plan(indices: ArrayLike<number>): BatchPlan {
    const n = indices.length;
    const where: Where[] = new Array(n);
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
    return { where, at, plan };
  }

  async #check(bytes: Buffer, ranges: Float64Array, where: Where[]): Promise<void> {
    const got = await crc32Ranges(bytes, ranges);
    for (let k = 0; k < where.length; k++) {
      const [f, j] = where[k];
      if (got[k] !== f.crcs[j]) {
        throw ffError('ERR_FFRECORD_CORRUPT_SAMPLE', `sample ${f.first + j} is corrupt: CRC-32 ${hex(got[k])}, the header says ${hex(f.crcs[j])}`, { path: f.path, offset: f.bounds[j], sample: f.first + j, index: k });
      }
    }
  }

  #locate(index: number, k: number): Where {
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

/** The error of a batch's failed read, as its sample's: an I/O error, or a file cut short. */
function readError(failed: PlanFailure, where: Where[]): ThreeFSError {
  const k = failed.owner;
  const [f, j] = where[k];
  const sample = f.first + j;
  const e = failed.error;
  if (e) return new ThreeFSError(e.code, `${e.message} (sample ${sample})`, { errno: e.errno, syscall: e.syscall, path: f.path, offset: failed.offset, sample, index: k, cause: e });
  return ffError('ERR_FFRECORD_TRUNCATED', `sample ${sample} is cut short: the file ends at ${failed.offset}, before the sample's end at ${f.bounds[j + 1]}`, { path: f.path, offset: failed.offset, sample, index: k });
}

/** The samples as views of `bytes`, their global indices, and [start, length] of each for the CRCs. */
function views(bytes: Buffer, where: Where[], at: Float64Array): { samples: Buffer[]; out: number[]; ranges: Float64Array } {
  const n = where.length;
  const samples: Buffer[] = new Array(n);
  const out: number[] = new Array(n);
  const ranges = new Float64Array(2 * n);
  for (let k = 0; k < n; k++) {
    const [f, j] = where[k];
    const len = f.bounds[j + 1] - f.bounds[j];
    samples[k] = len === 0 ? Buffer.alloc(0) : bytes.subarray(at[k], at[k] + len);
    if (len > 0) ranges[2 * k] = at[k];
    ranges[2 * k + 1] = len;
    out[k] = f.first + j;
  }
  return { samples, out, ranges };
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
  const opened = await openShards(client, paths, verify, direct);
  let first = 0;
  const files = opened.map((f) => {
    const placed = { ...f, first };
    first += f.samples;
    return placed;
  });
  return new FFRecordDataset(client, files, verify);
}

/**
 * Opens the shards a few at a time (on 3FS each open and header read is a round trip); if one
 * fails, closes the rest and throws its error.
 */
async function openShards(client: Client, paths: string[], verify: boolean, direct: 'auto' | 'never'): Promise<OpenFile[]> {
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
  return opened as OpenFile[];
}
