// Byte ranges of one file for readers of other formats (Parquet, Arrow IPC, ...), which bring
// their own parsers and only need "these bytes": every range asked for in the same turn of the
// event loop goes out in one submission.
//
// Two shapes over the same queue:
// - hyparquet's AsyncBuffer: `byteLength` and `slice(start, end) -> Promise<ArrayBuffer>`;
// - the part of node:fs's FileHandle that apache-arrow's async readers use: `fd`, `stat()`,
//   `read(buffer, offset, length, position)`, `close()`.
import { clientFor } from '../clients';
import type { Client, FileIoOp } from '../core/client';
import { argError } from '../core/errors';
import type { File } from '../core/file';

export interface RangeReaderOptions {
  /** Default: clientFor(path) (USRBIO on a 3FS mount). */
  client?: Client;
}

export interface RangeReaderStats {
  /** Ranges asked for. */
  ranges: number;
  /** Submissions they went out in. */
  submissions: number;
}

interface Pending {
  view: Uint8Array;
  position: number;
  resolve: (bytes: number) => void;
  reject: (e: unknown) => void;
}

/**
 * Reads ranges of one file. Ranges are read straight into the memory they are returned in (an
 * ArrayBuffer per slice, or the caller's buffer for read()); on 3FS, memory that is not an iov
 * passes through the engine's bounce buffer.
 */
export class RangeReader implements AsyncDisposable {
  readonly path: string;
  /** The file's size at open. */
  readonly byteLength: number;
  readonly #client: Client;
  readonly #file: File;
  #queue: Pending[] = [];
  #ranges = 0;
  #submissions = 0;

  /** @internal */
  constructor(client: Client, file: File, byteLength: number) {
    this.#client = client;
    this.#file = file;
    this.path = file.path;
    this.byteLength = byteLength;
  }

  /** For apache-arrow's FileHandle check; I/O never goes through it. */
  get fd(): number {
    return this.#file.fd;
  }

  get stats(): RangeReaderStats {
    return { ranges: this.#ranges, submissions: this.#submissions };
  }

  /** Bytes [start, end) as a new ArrayBuffer (clamped to the file, as ArrayBuffer.slice clamps). */
  async slice(start: number, end: number = this.byteLength): Promise<ArrayBuffer> {
    const s = clamp(start, this.byteLength, 'start');
    const e = Math.max(s, clamp(end, this.byteLength, 'end'));
    const memory = new ArrayBuffer(e - s);
    if (e === s) return memory;
    const got = await this.#enqueue(new Uint8Array(memory), s);
    // The file shrank since open: what is there, as a read at the end of a file gives.
    return got === memory.byteLength ? memory : memory.slice(0, got);
  }

  /** As FileHandle.read(buffer, offset, length, position): bytes read into `buffer` from `position`. */
  async read<T extends ArrayBufferView>(buffer: T, offset = 0, length = buffer.byteLength - offset, position = 0): Promise<{ bytesRead: number; buffer: T }> {
    if (!ArrayBuffer.isView(buffer)) throw argError('ERR_INVALID_ARG_TYPE', 'buffer must be a Buffer, TypedArray or DataView');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > buffer.byteLength) {
      throw argError('ERR_OUT_OF_RANGE', `offset ${offset} and length ${length} must lie within the buffer (${buffer.byteLength} bytes)`);
    }
    if (position === null) position = 0;
    if (!Number.isSafeInteger(position) || position < 0) throw argError('ERR_OUT_OF_RANGE', `position must be a whole number >= 0, got ${String(position)}`);
    const n = Math.max(0, Math.min(length, this.byteLength - position));
    if (n === 0) return { bytesRead: 0, buffer };
    const bytesRead = await this.#enqueue(new Uint8Array(buffer.buffer, buffer.byteOffset + offset, n), position);
    return { bytesRead, buffer };
  }

  /** As FileHandle.stat(), as far as format readers look: the size. */
  async stat(): Promise<{ size: number }> {
    return { size: this.byteLength };
  }

  /** Closes the file once the ranges in flight are read. */
  close(): Promise<void> {
    return this.#file.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #enqueue(view: Uint8Array, position: number): Promise<number> {
    if (this.#file.closed) return Promise.reject(argError('ERR_FILE_CLOSED', `the range reader is closed: '${this.path}'`, { path: this.path }));
    this.#ranges++;
    return new Promise((resolve, reject) => {
      // setImmediate, not a microtask: readers often ask for the next range from an async
      // function that has just resumed, a few microtasks after the first; one turn gathers them.
      if (this.#queue.length === 0) setImmediate(() => this.#flush());
      this.#queue.push({ view, position, resolve, reject });
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    this.#submissions++;
    const ops: FileIoOp[] = batch.map((p) => ({ file: this.#file, buffer: p.view, fileOffset: p.position }));
    try {
      const results = await this.#client.batchRead(ops);
      results.forEach((r, k) => (r.error ? batch[k].reject(r.error) : batch[k].resolve(r.bytes)));
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }
}

function clamp(v: number, size: number, name: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw argError('ERR_INVALID_ARG_TYPE', `${name} must be a number`);
  const t = Math.trunc(v);
  return Math.min(Math.max(t < 0 ? size + t : t, 0), size);
}

/** Opens `path` for range reads. */
export async function openRangeReader(path: string, options: RangeReaderOptions = {}): Promise<RangeReader> {
  options ??= {};
  const client = options.client ?? clientFor(path);
  // Buffered: format readers ask for ranges at any byte, into memory of any alignment.
  const file = await client.open(path, 'r', 0o666, { direct: 'never' });
  try {
    const { size } = await file.stat();
    return new RangeReader(client, file, size);
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}
