// A batch loader over a dataset, as PyTorch users know it (DataLoader with a DistributedSampler):
// a seeded shuffle per epoch, batches of a size, the last short batch kept or dropped, each rank
// of a job taking its own disjoint share, batches read ahead while the current one is used, and
// resumption at any step without reading what came before.
import { argError } from '../core/errors';

/** What the loader needs of a dataset: FFRecordDataset is one. */
export interface BatchSource<B extends { release(): void }> {
  readonly length: number;
  read(indices: number[], options?: { signal?: AbortSignal }): Promise<B>;
}

export interface LoaderOptions {
  batchSize: number;
  /** Shuffle the samples anew each epoch (seeded by seed and epoch). Default true. */
  shuffle?: boolean;
  /** Seed of the shuffle: every rank must use the same one. Default 0. */
  seed?: number;
  /** Epochs to run; Infinity for an endless loader. Default 1. */
  epochs?: number;
  /**
   * Drop what does not fill a batch. Also makes the ranks' shares equal (each takes
   * floor(length / worldSize) samples), so every rank runs the same number of steps.
   * Default false: every sample is read once an epoch, and shares differ by at most one.
   */
  dropLast?: boolean;
  /** Batches read ahead of the one in use. Default 2; 0 reads each batch when it is asked for. */
  prefetch?: number;
  /** This process's rank in the job, and the job's size. Default 0 of 1. */
  rank?: number;
  worldSize?: number;
  /** Resume: the first step to yield, counted over all epochs from 0 (see LoaderBatch.step). */
  startStep?: number;
  /**
   * Release each batch when the next one is asked for (default true), so memory stays bounded
   * by the prefetch depth. Copy samples you keep beyond their step; with false, call release().
   */
  autoRelease?: boolean;
  signal?: AbortSignal;
}

export interface LoaderStep<B> {
  /** The dataset's batch: its samples, in `indices` order. */
  batch: B;
  /** The sample indices of this batch. */
  indices: number[];
  epoch: number;
  /** Step of this rank, counted over all epochs: pass step + 1 as startStep to resume after it. */
  step: number;
  /** Step within the epoch. */
  stepInEpoch: number;
}

function whole(value: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER, allowInfinity = false): number {
  if (allowInfinity && value === Infinity) return Infinity;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from ${min} to ${max}${allowInfinity ? ' (or Infinity)' : ''}, got ${String(value)}`);
  }
  return value;
}

/** splitmix32: a small seedable generator; two outputs make one 53-bit draw. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  const next32 = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  return () => ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
}

/** Mixes seed and epoch into one 32-bit seed, so neighbouring epochs' orders are unrelated. */
function epochSeed(seed: number, epoch: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x3f5c11e, 0x9e3779b1) >>> 0;
  h = Math.imul(h ^ (epoch >>> 0) ^ Math.floor(epoch / 0x1_0000_0000), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/**
 * The order of an epoch's samples for every rank: a Fisher-Yates shuffle of [0, length) seeded by
 * (seed, epoch), or the identity without shuffle.
 */
export function epochOrder(length: number, epoch: number, seed = 0, shuffle = true): Float64Array {
  const order = new Float64Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  if (!shuffle) return order;
  const random = generator(epochSeed(seed, epoch));
  for (let i = length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** Batches of samples from a dataset, one epoch after another; see LoaderOptions. */
export class Loader<B extends { release(): void }> implements AsyncIterable<LoaderStep<B>> {
  readonly batchSize: number;
  readonly epochs: number;
  readonly rank: number;
  readonly worldSize: number;
  /** Steps each epoch has for this rank. */
  readonly stepsPerEpoch: number;
  readonly #source: BatchSource<B>;
  readonly #shuffle: boolean;
  readonly #seed: number;
  readonly #dropLast: boolean;
  readonly #prefetch: number;
  readonly #startStep: number;
  readonly #autoRelease: boolean;
  readonly #signal: AbortSignal | undefined;
  /** Samples of this rank in an epoch. */
  readonly #share: number;

  constructor(source: BatchSource<B>, options: LoaderOptions) {
    if (source === null || typeof source !== 'object' || typeof source.read !== 'function' || !Number.isSafeInteger(source.length)) {
      throw argError('ERR_INVALID_ARG_TYPE', 'the dataset must have length and read(indices)');
    }
    if (options === null || typeof options !== 'object') throw argError('ERR_INVALID_ARG_TYPE', 'options must be an object with batchSize');
    this.#source = source;
    this.batchSize = whole(options.batchSize, 'batchSize', 1);
    this.epochs = whole(options.epochs ?? 1, 'epochs', 0, Number.MAX_SAFE_INTEGER, true);
    this.worldSize = whole(options.worldSize ?? 1, 'worldSize', 1);
    this.rank = whole(options.rank ?? 0, 'rank', 0, this.worldSize - 1);
    this.#prefetch = whole(options.prefetch ?? 2, 'prefetch', 0, 1024);
    this.#startStep = whole(options.startStep ?? 0, 'startStep', 0);
    this.#seed = whole(options.seed ?? 0, 'seed', 0, 2 ** 32 - 1);
    this.#shuffle = options.shuffle ?? true;
    this.#dropLast = options.dropLast ?? false;
    this.#autoRelease = options.autoRelease ?? true;
    this.#signal = options.signal;
    if (this.#signal !== undefined && !(this.#signal instanceof AbortSignal)) throw argError('ERR_INVALID_ARG_TYPE', 'signal must be an AbortSignal');
    const n = source.length;
    const w = this.worldSize;
    // Rank r takes the epoch order's positions r, r + w, r + 2w, ...: shares are disjoint and,
    // without dropLast, cover every sample.
    this.#share = this.#dropLast ? Math.floor(n / w) : Math.floor(n / w) + (this.rank < n % w ? 1 : 0);
    this.stepsPerEpoch = this.#dropLast ? Math.floor(this.#share / this.batchSize) : Math.ceil(this.#share / this.batchSize);
  }

  /** Steps this rank yields in all epochs (Infinity for an endless loader). */
  get totalSteps(): number {
    return this.stepsPerEpoch === 0 ? 0 : this.epochs * this.stepsPerEpoch;
  }

  /** The sample indices of a step (counted over all epochs), without reading anything. */
  indicesOf(step: number): number[] {
    whole(step, 'step', 0);
    if (step >= this.totalSteps) throw argError('ERR_OUT_OF_RANGE', `step ${step} is past the loader's last (it has ${this.totalSteps} steps)`);
    const epoch = Math.floor(step / this.stepsPerEpoch);
    return this.#indices(epochOrder(this.#source.length, epoch, this.#seed, this.#shuffle), step - epoch * this.stepsPerEpoch);
  }

  #indices(order: Float64Array, stepInEpoch: number): number[] {
    const first = stepInEpoch * this.batchSize;
    const count = Math.min(this.batchSize, this.#share - first);
    const out: number[] = new Array(count);
    for (let k = 0; k < count; k++) out[k] = order[(first + k) * this.worldSize + this.rank];
    return out;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LoaderStep<B>> {
    const end = this.totalSteps;
    let orderEpoch = -1;
    let order: Float64Array = new Float64Array(0);
    let planned = this.#startStep;
    const ahead: { step: LoaderStep<B> | undefined; pending: Promise<LoaderStep<B>> }[] = [];
    const signal = this.#signal;

    const plan = () => {
      const step = planned++;
      const epoch = Math.floor(step / this.stepsPerEpoch);
      if (epoch !== orderEpoch) {
        order = epochOrder(this.#source.length, epoch, this.#seed, this.#shuffle);
        orderEpoch = epoch;
      }
      const stepInEpoch = step - epoch * this.stepsPerEpoch;
      const indices = this.#indices(order, stepInEpoch);
      const entry: (typeof ahead)[number] = { step: undefined, pending: undefined as never };
      entry.pending = this.#source.read(indices, signal ? { signal } : undefined).then((batch) => (entry.step = { batch, indices, epoch, step, stepInEpoch }));
      // Failures are rethrown where the batch is awaited; this keeps one read ahead from being an
      // unhandled rejection when the consumer stops first.
      entry.pending.catch(() => {});
      ahead.push(entry);
    };

    let current: LoaderStep<B> | undefined;
    try {
      while (true) {
        if (current && this.#autoRelease) current.batch.release();
        current = undefined;
        if (signal?.aborted) throw signal.reason ?? argError('ABORT_ERR', 'The operation was aborted');
        while (planned < end && ahead.length <= this.#prefetch) plan();
        const next = ahead.shift();
        if (!next) return;
        current = await next.pending;
        yield current;
      }
    } finally {
      if (current && this.#autoRelease) current.batch.release();
      // Stopped early (break, an error): the reads ahead are released as they land.
      for (const a of ahead) a.pending.then((s) => s.batch.release(), () => {});
    }
  }
}

/** A loader of `dataset`'s samples; `for await (const { batch } of createLoader(ds, { batchSize: 64 }))`. */
export function createLoader<B extends { release(): void }>(dataset: BatchSource<B>, options: LoaderOptions): Loader<B> {
  return new Loader(dataset, options);
}
