// file.createWriteStream(): a stream.Writable whose buffered chunks go out together, one batch of
// writes at consecutive offsets, while the next ones buffer. Each chunk is written from the
// caller's memory without a copy (registered when it views an IoBuffer); its callback runs once
// its bytes are written, as node:fs's WriteStream's do.
import { Writable } from 'node:stream';
import type { IoOp } from '../batch';
import { abortError, writePlan, type WriteStreamOptions } from './options';
import type { StreamFile } from './source';

/** Ops of a batch are at most this long, so a large chunk is written by several at once. */
const MAX_OP = 4 * 1024 * 1024;

export class FileWriteStream extends Writable {
  readonly path: string;
  /** Where the first byte went, as node:fs's WriteStream. */
  readonly start: number;
  /** Bytes written so far. */
  bytesWritten = 0;
  readonly #file: StreamFile;
  readonly #autoClose: boolean;
  readonly #flush: boolean;
  readonly #signal: AbortSignal | undefined;
  readonly #cancel = new AbortController();
  #position: number;
  #inFlight: Promise<unknown> = Promise.resolve();

  /** @internal */
  constructor(file: StreamFile, options?: WriteStreamOptions) {
    const plan = writePlan(options);
    super({ highWaterMark: plan.highWaterMark, emitClose: plan.emitClose, autoDestroy: true, decodeStrings: true });
    this.path = file.path;
    this.start = this.#position = plan.start;
    this.#file = file;
    this.#autoClose = plan.autoClose;
    this.#flush = plan.flush;
    this.#signal = plan.signal;
    if (plan.signal?.aborted) process.nextTick(() => this.destroy(abortError(plan.signal!)));
    else plan.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Always false: the file is open already. */
  get pending(): boolean {
    return false;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#writeAll([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.#writeAll(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  #writeAll(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    const ops: IoOp[] = [];
    let at = this.#position;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i += MAX_OP) {
        const piece = chunk.subarray(i, i + MAX_OP);
        ops.push({ buffer: piece, fileOffset: at });
        at += piece.length;
      }
    }
    this.#position = at;
    const written = this.#file.batchWrite(ops, { failFast: true, signal: this.#cancel.signal });
    this.#inFlight = written.catch(() => {});
    written.then(
      (results) => {
        for (const r of results) this.bytesWritten += r.bytes;
        callback();
      },
      (e: Error) => callback(this.#signal?.aborted ? abortError(this.#signal) : e),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.#flush) return callback();
    this.#file.datasync().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#cancel.abort();
    // 'close' comes once the device let go of the chunks in flight (and the file is closed).
    const closed = this.#inFlight.then(() => (this.#autoClose ? this.#file.close() : undefined));
    closed.then(
      () => callback(error),
      (closeError: Error) => callback(error ?? closeError),
    );
  }

  readonly #onAbort = (): void => {
    this.destroy(abortError(this.#signal!));
  };
}
