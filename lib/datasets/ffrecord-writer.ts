// Writing one ffrecord file. Samples go to a hidden temporary file next to the target; close()
// writes the header and renames the file into place, so no reader ever sees half a file.
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { clientFor } from '../clients';
import type { Client, FileIoOp } from '../core/client';
import { crc32Many } from '../core/crc32c';
import { argError } from '../core/errors';
import type { File } from '../core/file';
import { isDetached } from '../core/io-buffer';
import { encodeHeader, ENTRY, fileSamples, HEADER } from './ffrecord-format';
import { MAX_PIECE } from './read-plan';

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
export function checkSamples(samples: readonly ArrayBufferView[]): void {
  if (!Array.isArray(samples)) throw argError('ERR_INVALID_ARG_TYPE', 'samples must be an array of ArrayBufferViews');
  samples.forEach((s, i) => {
    if (!ArrayBuffer.isView(s)) throw argError('ERR_INVALID_ARG_TYPE', `samples[${i}] must be a Buffer, TypedArray or DataView`, { index: i });
    if (s.byteLength === 0 && isDetached(s.buffer)) throw argError('ERR_BUFFER_FREED', `samples[${i}]: its ArrayBuffer is detached (transferred)`, { index: i });
  });
}

export function slotCount(value: number | undefined, name: string, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0 || v > 2 ** 40) throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from 0 to 2^40, got ${String(value)}`);
  return v;
}

/** A hidden name next to `path`, for the file until it is complete. */
export function tempName(path: string): string {
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

