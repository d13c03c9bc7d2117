import { constants } from 'node:os';
import { runBatch, type BatchOptions, type BatchTarget, type IoOp } from './batch';
import { argError, errnoError, fromNative, type OpResult } from './errors';
import { accessMode } from './flags';
import type { EngineName } from './engine-name';
import { accountOf, lend, type IoBuffer } from './io-buffer';
import type { NativeClient, NativeFile, RawStat } from './native';
import { chunks } from './streams/chunks';
import type { ChunksOptions, ReadStreamOptions, WebStreamOptions, WriteStreamOptions } from './streams/options';
import { FileReadStream } from './streams/read-stream';
import type { StreamFile } from './streams/source';
import { readableWebStream } from './streams/web-stream';
import { FileWriteStream } from './streams/write-stream';

export type DirectMode = 'auto' | 'always' | 'never';

/** fstat(2) of the file, and how I/O reaches it. */
export interface FileStat extends RawStat {
  isFile: boolean;
  /** The client's engine: 'io_uring', 'threads' or 'usrbio' (ClientInfo.engine). */
  engine: string;
  /** The client's engine as the `engine` option names it: 'io_uring', 'threads' or 'hf3fs'. */
  engineOption: EngineName;
  /** Why that engine and not the default one (ClientInfo.engineReason); null when the default runs. */
  engineReason: string | null;
  direct: {
    /** What was asked for at open. */
    mode: DirectMode;
    /** Whether aligned ops go through O_DIRECT (false on file systems without it, e.g. some tmpfs and overlays). */
    active: boolean;
    /** Why direct I/O is not active, when it was wanted. */
    reason: string | null;
    /** Alignment O_DIRECT needs of memory, and of offset and length. */
    memoryAlign: number;
    offsetAlign: number;
  };
}

/** Where a file's bytes live, as far as a client can see. */
export interface FileLayout {
  /** 'usrbio' (3FS), or 'io_uring' or 'threads' (local): ClientInfo.engine. */
  engine: string;
  /** 'hf3fs', 'io_uring' or 'threads': ClientInfo.engineOption. */
  engineOption: EngineName;
  /**
   * On 3FS the file's chunk size (st_blksize there): each chunk is replicated on its own CRAQ
   * chain, so ops aligned to chunks touch one chain each. Elsewhere, the file system's block size.
   */
  chunkSize: number;
  /** The 3FS mount point (hf3fs only). */
  mount?: string;
}

/** An open file. Every read and write names its offset; batches of them are one native call each. */
export class File implements BatchTarget, StreamFile, AsyncDisposable {
  readonly path: string;
  readonly fd: number;
  readonly direct: DirectMode;
  /** @internal */ readonly native: NativeFile;
  readonly #client: NativeClient;
  readonly #engine: string;
  readonly #engineOption: EngineName;
  readonly #engineReason: string | null;
  #directFd = -1;
  #directErrno = 0;
  #memoryAlign = 4096;
  #offsetAlign = 4096;
  readonly #access: 'r' | 'w' | 'rw';
  readonly #usrbio: boolean;
  /** direct 'auto': stat()'s wait for the O_DIRECT descriptor (null: settled, or nothing to open). */
  #twin: Promise<void> | null | undefined;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  /** @internal */
  constructor(client: NativeClient, engine: { engine: string; engineOption: EngineName; engineReason: string | null }, native: NativeFile, path: string, direct: DirectMode) {
    this.#client = client;
    this.#engine = engine.engine;
    this.#engineOption = engine.engineOption;
    this.#engineReason = engine.engineReason;
    this.native = native;
    this.path = path;
    this.direct = direct;
    const [fd, , , , , flags, usrbio] = native.describe();
    this.#usrbio = usrbio;
    this.fd = fd;
    this.#access = accessMode(flags);
    this.#describeDirect();
    if (direct !== 'auto' || usrbio) this.#twin = null;
  }

  #describeDirect(): void {
    [, this.#directFd, this.#directErrno, this.#memoryAlign, this.#offsetAlign] = this.native.describe();
  }

  /**
   * direct 'auto' opens its O_DIRECT descriptor when first needed: by the engine, for the first op
   * that may go direct, or here, for stat(), which says whether it is active. Undefined: settled.
   */
  #directReady(): Promise<void> | undefined {
    if (this.#twin === null) return undefined;
    this.#twin ??= this.#held(() => this.native.openDirect()).then(
      () => {
        this.#twin = null;
        this.#describeDirect();
      },
      () => undefined, // closed meanwhile: the stat fails with ERR_FILE_CLOSED
    );
    return this.#twin;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Reads into `buffer` from `fileOffset`. Resolves with the bytes read: fewer than asked only at the end of the file. */
  async read(buffer: IoBuffer | ArrayBufferView, fileOffset: number, length?: number, options?: BatchOptions): Promise<number> {
    const [r] = await this.batchRead([{ buffer, fileOffset, length }], options);
    if (r.error) throw r.error;
    return r.bytes;
  }

  /** Writes `buffer` at `fileOffset`. Resolves once every byte is written; a short write is continued, never reported as success. */
  async write(buffer: IoBuffer | ArrayBufferView, fileOffset: number, length?: number, options?: BatchOptions): Promise<number> {
    const [r] = await this.batchWrite([{ buffer, fileOffset, length }], options);
    if (r.error) throw r.error;
    return r.bytes;
  }

  /** Reads many ranges in one submission. One failed op does not fail the others (unless `failFast`). */
  batchRead(ops: readonly IoOp[], options?: BatchOptions): Promise<OpResult[]> {
    return runBatch(this.#client, false, ops, () => this, options);
  }

  batchWrite(ops: readonly IoOp[], options?: BatchOptions): Promise<OpResult[]> {
    return runBatch(this.#client, true, ops, () => this, options);
  }

  async stat(): Promise<FileStat> {
    this.checkOpen('fstat');
    await this.#directReady();
    const raw = await this.#held(() => this.native.stat()).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
    const wanted = this.direct !== 'never';
    return {
      ...raw,
      isFile: (raw.mode & 0o170000) === 0o100000,
      engine: this.#engine,
      engineOption: this.#engineOption,
      engineReason: this.#engineReason,
      direct: {
        mode: this.direct,
        // USRBIO: 3FS moves the data by RDMA between storage and the iov; no page cache on the way.
        active: this.#usrbio || this.#directFd >= 0,
        reason: this.#usrbio ? null : wanted && this.#directFd < 0 ? errnoError(this.#directErrno, 'open').message.replace(/, open$/, '') + ': this file system refuses O_DIRECT, buffered I/O is used' : null,
        memoryAlign: this.#memoryAlign,
        offsetAlign: this.#offsetAlign,
      },
    };
  }

  async truncate(length = 0): Promise<void> {
    this.checkOpen('ftruncate');
    if (!Number.isSafeInteger(length) || length < 0) throw argError('ERR_OUT_OF_RANGE', `length must be a whole number >= 0, got ${length}`);
    await this.#held(() => this.native.truncate(length)).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
  }

  /** fsync(2): data and metadata are durable when this resolves. */
  async fsync(): Promise<void> {
    this.checkOpen('fsync');
    await this.#held(() => this.native.sync(false)).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
  }

  /**
   * Makes the file's length exact for every reader. On 3FS, writes are readable as soon as they
   * complete but the length others stat lags (seconds); this settles it (HF3FS_IOC_FSYNC).
   * Elsewhere it is fsync(2).
   */
  async forceFsync(): Promise<void> {
    this.checkOpen('forceFsync');
    await this.#held(() => this.native.forceFsync()).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
  }

  /** Chunk size and mount (see FileLayout). */
  async layout(): Promise<FileLayout> {
    const st = await this.stat();
    const layout: FileLayout = { engine: this.#engine, engineOption: this.#engineOption, chunkSize: st.blksize };
    if (this.#usrbio) layout.mount = this.#client.info().mount;
    return layout;
  }

  /**
   * Frees whole chunks: `offset` and `length` must be multiples of the chunk size (layout()); reads
   * of the range then see zeros (or ENODATA with `forbidHoles`). The length is kept. 3FS removes
   * the chunks on storage; elsewhere fallocate(PUNCH_HOLE).
   */
  async punchHole(offset: number, length: number): Promise<void> {
    await this.punchHoles([{ offset, length }]);
  }

  /** punchHole over many ranges in one call (3FS takes up to 1000 per request). */
  async punchHoles(ranges: readonly { offset: number; length: number }[]): Promise<void> {
    this.checkOpen('punchHole');
    if (this.#access === 'r') throw argError('EBADF', `punchHole: file is not open for writing: '${this.path}'`, { errno: -constants.errno.EBADF, path: this.path, syscall: 'punchHole' });
    if (!Array.isArray(ranges)) throw argError('ERR_INVALID_ARG_TYPE', 'ranges must be an array of { offset, length }');
    await this.#held(() => this.#punchHoles(ranges));
  }

  async #punchHoles(ranges: readonly { offset: number; length: number }[]): Promise<void> {
    // The chunk size (layout()), from the descriptor itself: close() may have been called meanwhile.
    const { blksize: chunkSize } = await this.native.stat().catch((e) => Promise.reject(fromNative(e, { path: this.path })));
    const starts = new Float64Array(ranges.length);
    const ends = new Float64Array(ranges.length);
    ranges.forEach((r, i) => {
      const { offset, length } = r ?? {};
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > Number.MAX_SAFE_INTEGER) {
        throw argError('ERR_OUT_OF_RANGE', `range ${i}: offset and length must be whole numbers >= 0`, { index: i });
      }
      if (offset % chunkSize !== 0 || length % chunkSize !== 0) {
        throw argError('EINVAL', `range ${i}: offset ${offset} and length ${length} must be multiples of the chunk size ${chunkSize}`, { errno: -constants.errno.EINVAL, index: i, path: this.path, offset, syscall: 'punchHole' });
      }
      starts[i] = offset;
      ends[i] = offset + length;
    });
    await this.native.punchHoles(starts, ends).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
  }

  /** fdatasync(2). */
  async datasync(): Promise<void> {
    this.checkOpen('fdatasync');
    await this.#held(() => this.native.sync(true)).catch((e) => Promise.reject(fromNative(e, { path: this.path })));
  }

  /**
   * A stream.Readable of the file's bytes from `start` to `end` (inclusive), read ahead by several
   * batches into registered memory; each chunk is a fresh Buffer. Closes the file when done unless
   * `autoClose: false`, as node:fs's FileHandle.createReadStream (docs/streams.md).
   */
  createReadStream(options?: ReadStreamOptions): FileReadStream {
    return new FileReadStream(this, options);
  }

  /** A stream.Writable from `start`: what buffers meanwhile goes out as one batch (docs/streams.md). */
  createWriteStream(options?: WriteStreamOptions): FileWriteStream {
    return new FileWriteStream(this, options);
  }

  /** A ReadableStream of bytes (BYOB-capable) over the same read-ahead as createReadStream. */
  readableWebStream(options?: WebStreamOptions): ReadableStream<Uint8Array> {
    return readableWebStream(this, options);
  }

  /** The range as an async iterable of chunks: `for await (const chunk of file.chunks())`. */
  chunks(options?: ChunksOptions): AsyncGenerator<Buffer, void, undefined> {
    return chunks(this, options);
  }

  /** Registered memory of this file's client, in one iov block on 3FS. @internal */
  allocBuffer(bytes: number): IoBuffer {
    try {
      const [id, memory, registered] = this.#client.alloc(bytes, true, this.#usrbio ? 0 : undefined);
      return lend(this.#client, id, memory, registered);
    } catch (e) {
      throw fromNative(e, { path: this.path });
    }
  }

  /**
   * An OFD write lock on a byte range of this descriptor, tried without waiting: false when
   * another open file description (another process, or another open of the file) holds part of
   * it. `lock` false releases it. Closing the file, or the process ending, releases it too. @internal
   */
  lockRange(offset: number, length: number, lock: boolean): boolean {
    this.checkOpen('fcntl(F_OFD_SETLK)');
    try {
      return this.native.lockRange(offset, length, lock);
    } catch (e) {
      throw fromNative(e, { path: this.path, offset });
    }
  }

  /** What O_DIRECT needs of offsets and lengths here, at least a page. @internal */
  get ioAlign(): number {
    return Math.max(4096, this.#offsetAlign, this.#memoryAlign);
  }

  /** @internal */
  countCopy(bytes: number): void {
    accountOf(this.#client).copiedBytes += bytes;
  }

  /** Waits for this file's I/O in flight, then closes it. Further calls resolve at once. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      await this.native.close().catch((e) => Promise.reject(fromNative(e, { path: this.path })));
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal */
  checkUsable(write: boolean): void {
    this.checkOpen(write ? 'write' : 'read');
    if (write ? this.#access === 'r' : this.#access === 'w') {
      throw errnoError(constants.errno.EBADF, write ? 'write' : 'read', { path: this.path });
    }
  }

  // A call on the descriptors counts as I/O in flight: close() waits for it, so it never runs on a
  // closed descriptor (EBADF), nor on its number reused by another open meanwhile (another file).
  async #held<T>(call: () => Promise<T>): Promise<T> {
    this.begin();
    try {
      return await call();
    } finally {
      this.end();
    }
  }

  /** @internal */
  begin(): void {
    this.#inFlight++;
  }

  /** @internal */
  end(): void {
    if (--this.#inFlight === 0 && this.#drained) {
      this.#drained();
      this.#drained = undefined;
    }
  }

  private checkOpen(syscall: string): void {
    if (this.#closing) throw argError('ERR_FILE_CLOSED', `${syscall}: the file is closed '${this.path}'`, { path: this.path, syscall });
  }
}
