// Writing a directory of ffrecord shards, `PART_00000.ffr`, `PART_00001.ffr`, ..., the layout the
// original's dump() makes and reads.
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { clientFor } from '../clients';
import { argError } from '../core/errors';
import { fileSamples } from './ffrecord-format';
import { checkSamples, createDatasetWriter, slotCount, tempName, type DatasetWriterOptions, type FFRecordWriter } from './ffrecord-writer';

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
