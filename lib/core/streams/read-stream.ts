// file.createReadStream(): a stream.Readable over the read-ahead. Events, errors and options
// follow node:fs's ReadStream (FileHandle.createReadStream): 'open' is not emitted (the file is
// open already), 'ready' is not either; 'end', 'close', 'error' are, with ThreeFSErrors.
import { Readable } from 'node:stream';
import { abortError, readPlan, readStreamFlags, type ReadStreamOptions } from './options';
import { ReadAhead, type Chunk } from './read-ahead';
import type { StreamFile } from './source';

/**
 * Copies a chunk out of the read-ahead's registered memory into a Buffer the consumer owns (see
 * docs/streams.md: why a copy), and counts the copy in the client's metrics.
 * @internal
 */
export function ownedCopy(file: StreamFile, chunk: Chunk): Buffer {
  // Its own ArrayBuffer, never a slice of node's shared pool: a byte stream's enqueue() transfers
  // (detaches) the whole ArrayBuffer of what it is given.
  const out = Buffer.allocUnsafeSlow(chunk.bytes.length);
  chunk.bytes.copy(out);
  chunk.release();
  file.countCopy(out.length);
  return out;
}

export class FileReadStream extends Readable {
  readonly path: string;
  /** First and last byte of the range (end: Infinity for the end of the file), as node:fs's ReadStream. */
  readonly start: number;
  readonly end: number;
  /** Bytes handed to the consumer so far. */
  bytesRead = 0;
  readonly #file: StreamFile;
  readonly #ahead: ReadAhead;
  readonly #autoClose: boolean;
  readonly #signal: AbortSignal | undefined;
  #pumping = false;

  /** @internal */
  constructor(file: StreamFile, options?: ReadStreamOptions) {
    const plan = readPlan(options);
    const { autoClose, emitClose } = readStreamFlags(options, true);
    super({ highWaterMark: plan.chunkSize, emitClose, autoDestroy: true });
    this.path = file.path;
    this.start = plan.start;
    this.end = plan.stop - 1;
    this.#file = file;
    this.#autoClose = autoClose;
    this.#signal = plan.signal;
    this.#ahead = new ReadAhead(file, plan);
    if (plan.signal?.aborted) process.nextTick(() => this.destroy(abortError(plan.signal!)));
    else plan.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Always false: the file is open already (node:fs's ReadStream: true until its file is open). */
  get pending(): boolean {
    return false;
  }

  override _read(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    void this.#pump();
  }

  // Hands out chunks until the consumer has enough (push() returns false) or the range ends.
  async #pump(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.#ahead.next();
        if (this.destroyed) return chunk?.release();
        if (!chunk) {
          this.push(null);
          return;
        }
        const owned = ownedCopy(this.#file, chunk);
        this.bytesRead += owned.length;
        if (!this.push(owned)) return;
      }
    } catch (e) {
      if (!this.destroyed) this.destroy(e as Error);
    } finally {
      this.#pumping = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#ahead
      .close()
      .then(() => (this.#autoClose ? this.#file.close() : undefined))
      .then(
        () => callback(error),
        (closeError: Error) => callback(error ?? closeError),
      );
  }

  readonly #onAbort = (): void => {
    this.destroy(abortError(this.#signal!));
  };
}
