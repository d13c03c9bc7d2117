// The public types as a user's TypeScript sees them: `3fs-client` resolved through package.json's
// exports (require condition) to dist/'s declarations. Checked by tsc (vitest's typecheck project
// 'types'), never run. Each @ts-expect-error is a misuse that must stay a compile error.
import type { Readable, Writable } from 'node:stream';
import { describe, expectTypeOf, test } from 'vitest';
import {
  FileReadStream,
  FileWriteStream,
  readFile,
  writeFile,
  type ChunksOptions,
  type ReadFileOptions,
  type ReadRangeOptions,
  type ReadStreamOptions,
  type WebStreamOptions,
  type WriteFileOptions,
  type WriteStreamOptions,
  alloc,
  Client,
  clientFor,
  connect,
  crc32c,
  crc32cSync,
  createLoader,
  defaultClient,
  File,
  IoBuffer,
  KVCache,
  open,
  openDataset,
  openRangeReader,
  openSafetensors,
  pageKeys,
  prometheusText,
  runDoctor,
  SampleBatch,
  ThreeFSError,
  type BatchOptions,
  type ClientInfo,
  type ClientMetrics,
  type ClientOptions,
  type DoctorReport,
  type ErrorDetails,
  type FileIoOp,
  type FileLayout,
  type FileStat,
  type GetResult,
  type IoOp,
  type KVCacheOptions,
  type KVKey,
  type LoaderStep,
  type LoadedTensor,
  type MetricsInterval,
  type OpenFlags,
  type OpResult,
  type PageKeyHash,
  type PutResult,
} from '3fs-client';

declare const client: Client;
declare const file: File;
declare const memory: IoBuffer;

describe('options', () => {
  test('connect: engines by name, numa a node or auto', () => {
    expectTypeOf(connect).parameter(0).toEqualTypeOf<ClientOptions | undefined>();
    expectTypeOf<ClientOptions['engine']>().toEqualTypeOf<'local' | 'io_uring' | 'threads' | 'hf3fs' | undefined>();
    expectTypeOf<ClientOptions['numa']>().toEqualTypeOf<number | 'auto' | undefined>();
    connect({ mount: '/mnt/3fs', library: '/opt/3fs/lib/libhf3fs_api_shared.so', numa: 'auto', blockSize: 0, bounceBuffer: 16 << 20, forbidHoles: false, readUncommitted: false });
    connect({ engine: 'threads', threads: 8, aio: true, queueDepth: 256, rings: 2, registeredBuffers: 1024, asyncBuffered: false });
    // @ts-expect-error: no such engine
    connect({ engine: 'nfs' });
    // @ts-expect-error: a number
    connect({ queueDepth: '256' });
    // @ts-expect-error: no such option
    connect({ queueDepht: 256 });
  });

  test('open: node:fs flag names or a number, direct modes', () => {
    expectTypeOf<OpenFlags>().toEqualTypeOf<'r' | 'r+' | 'rs+' | 'w' | 'wx' | 'w+' | 'wx+' | number>();
    expectTypeOf(open).returns.resolves.toEqualTypeOf<File>();
    expectTypeOf(client.open).returns.resolves.toEqualTypeOf<File>();
    void open('/data/a', 'r', 0o644, { direct: 'auto' });
    void client.open('/data/a', 'w+', 0o600, { direct: true });
    // @ts-expect-error: append modes are not supported
    void open('/data/a', 'a');
    // @ts-expect-error: not a direct mode
    void open('/data/a', 'r', 0o644, { direct: 'sometimes' });
  });

  test('alloc: registered memory, on the client of a path', () => {
    expectTypeOf(alloc(4096, { for: '/mnt/3fs/x' })).toEqualTypeOf<IoBuffer>();
    expectTypeOf(client.alloc(4096, { register: false, blockSize: 1 << 20 })).toEqualTypeOf<IoBuffer>();
    expectTypeOf(memory.bytes).toEqualTypeOf<Buffer>();
    expectTypeOf(memory.subarray(0, 512)).toEqualTypeOf<IoBuffer>();
    expectTypeOf(memory.registered).toEqualTypeOf<boolean>();
    expectTypeOf(memory.byteLength).toEqualTypeOf<number>();
    expectTypeOf(defaultClient()).toEqualTypeOf<Client>();
    expectTypeOf(clientFor('/data')).toEqualTypeOf<Client>();
  });

  test('ops and batch options', () => {
    const op: IoOp = { buffer: memory, fileOffset: 0, length: 4096, crc32c: { offset: 0, length: 4092, at: 4092 }, after: 0 };
    const viewOp: IoOp = { buffer: new Uint8Array(512), fileOffset: 4096 };
    const options: BatchOptions = { failFast: true, signal: AbortSignal.timeout(1000), timeout: 1000, deadline: Date.now() + 1000 };
    void file.batchRead([op, viewOp], options);
    void client.batchWrite([{ ...op, file }]);
    expectTypeOf<FileIoOp>().toExtend<IoOp>();
    // @ts-expect-error: an op names its offset
    void file.batchRead([{ buffer: memory }]);
    // @ts-expect-error: memory, not a string
    void file.batchRead([{ buffer: 'bytes', fileOffset: 0 }]);
    // @ts-expect-error: a client's batch names the file of each op
    void client.batchRead([op]);
    // @ts-expect-error: a signal is an AbortSignal
    void file.batchRead([op], { signal: new AbortController() });
  });
});

describe('results', () => {
  test('a result per op: bytes, eof, a typed error, the read CRC', () => {
    expectTypeOf(file.batchRead).returns.resolves.toEqualTypeOf<OpResult[]>();
    expectTypeOf(client.batchRead).returns.resolves.toEqualTypeOf<OpResult[]>();
    expectTypeOf<OpResult>().toEqualTypeOf<{ bytes: number; eof: boolean; error: ThreeFSError | null; crc32c?: number }>();
    expectTypeOf(file.read).returns.resolves.toEqualTypeOf<number>();
    expectTypeOf(file.write).returns.resolves.toEqualTypeOf<number>();
  });

  test('file and client facts', () => {
    expectTypeOf(file.stat).returns.resolves.toEqualTypeOf<FileStat>();
    expectTypeOf<FileStat['direct']['mode']>().toEqualTypeOf<'auto' | 'always' | 'never'>();
    expectTypeOf<FileStat['engineReason']>().toEqualTypeOf<string | null>();
    expectTypeOf<FileStat['size']>().toEqualTypeOf<number>();
    expectTypeOf(file.layout).returns.resolves.toEqualTypeOf<FileLayout>();
    expectTypeOf<FileLayout['chunkSize']>().toEqualTypeOf<number>();
    expectTypeOf(client.info()).toEqualTypeOf<ClientInfo>();
    expectTypeOf<ClientInfo['engineReason']>().toEqualTypeOf<string | null>();
    expectTypeOf(file.closed).toEqualTypeOf<boolean>();
  });

  test('metrics', () => {
    const m = client.metrics();
    expectTypeOf(m).toEqualTypeOf<ClientMetrics>();
    expectTypeOf(m.bouncedBytes).toEqualTypeOf<number>();
    expectTypeOf(m.errorsByCode).toEqualTypeOf<Record<string, number>>();
    expectTypeOf(m.distributions[0].op).toEqualTypeOf<'read' | 'write'>();
    expectTypeOf(m.distributions[0].p99).toEqualTypeOf<number>();
    expectTypeOf(client.metricsSampler().sample()).toEqualTypeOf<MetricsInterval>();
    expectTypeOf(prometheusText(m, { instance: 'trainer-0' })).toEqualTypeOf<string>();
  });

  test('checksums', () => {
    expectTypeOf(crc32c).returns.resolves.toEqualTypeOf<number>();
    expectTypeOf(crc32cSync).returns.toEqualTypeOf<number>();
  });

  test('doctor', () => {
    expectTypeOf(runDoctor).returns.resolves.toEqualTypeOf<DoctorReport>();
    expectTypeOf<DoctorReport['exitCode']>().toEqualTypeOf<0 | 1>();
  });
});

describe('errors', () => {
  test('ThreeFSError: an Error with code, errno, syscall, path, offset, index, all read-only', () => {
    const e = new ThreeFSError('EIO', 'EIO: i/o error, read', { errno: -5, syscall: 'read', path: '/data/a', offset: 4096, index: 3 });
    expectTypeOf(e).toExtend<Error>();
    expectTypeOf(e.code).toEqualTypeOf<string>();
    expectTypeOf(e.errno).toEqualTypeOf<number | undefined>();
    expectTypeOf(e.syscall).toEqualTypeOf<string | undefined>();
    expectTypeOf(e.path).toEqualTypeOf<string | undefined>();
    expectTypeOf(e.offset).toEqualTypeOf<number | undefined>();
    expectTypeOf(e.index).toEqualTypeOf<number | undefined>();
    expectTypeOf(e.sample).toEqualTypeOf<number | undefined>();
    expectTypeOf(e.results).toEqualTypeOf<OpResult[] | undefined>();
    expectTypeOf<ErrorDetails>().toHaveProperty('cause');
    // @ts-expect-error: read-only
    e.code = 'EAGAIN';
    // @ts-expect-error: read-only
    e.offset = 0;
  });

  test('a caught error narrows with instanceof', () => {
    const caught: unknown = undefined;
    if (caught instanceof ThreeFSError) expectTypeOf(caught.code).toEqualTypeOf<string>();
    const result = {} as OpResult;
    if (result.error) expectTypeOf(result.error.offset).toEqualTypeOf<number | undefined>();
  });
});

describe('await using', () => {
  test('files, clients and caches are AsyncDisposable; memory and batches Disposable', () => {
    expectTypeOf<File>().toExtend<AsyncDisposable>();
    expectTypeOf<Client>().toExtend<AsyncDisposable>();
    expectTypeOf<KVCache>().toExtend<AsyncDisposable>();
    expectTypeOf<IoBuffer>().toExtend<Disposable>();
    expectTypeOf<SampleBatch>().toExtend<Disposable>();
  });

  test('the statements compile as written', async () => {
    await using c = connect();
    await using f = await c.open('/data/a', 'r');
    using m = c.alloc(4096);
    expectTypeOf(await f.read(m, 0)).toEqualTypeOf<number>();
    const options: KVCacheOptions = { root: '/mnt/3fs/kvcache', namespace: { model: 'm', dtype: 'bf16', rank: 0 }, pageBytes: 1 << 20, capacityBytes: 1 << 30 };
    await using cache = await KVCache.open(options);
    await using ds = await openDataset('/data/train.ffr');
    using batch = await ds.read([0, 1]);
    expectTypeOf(batch.samples).toEqualTypeOf<Buffer[]>();
    await using st = await openSafetensors('/data/model.safetensors');
    using tensors = await st.load(st.names());
    expectTypeOf(tensors.get('w')).toEqualTypeOf<LoadedTensor | undefined>();
    await using ranges = await openRangeReader('/data/part-0.parquet');
    expectTypeOf(ranges.byteLength).toEqualTypeOf<number>();
    expectTypeOf(cache.stats().hits).toEqualTypeOf<number>();
  });
});

describe('KVCache', () => {
  test('keys, statuses, payloads', async () => {
    const cache = await KVCache.open({ root: '/tmp/kv', namespace: { model: 'm', dtype: 'bf16' }, pageBytes: 4096, capacityBytes: 1 << 20 });
    expectTypeOf<KVKey>().toEqualTypeOf<string | Uint8Array>();
    expectTypeOf(cache.put).returns.resolves.toEqualTypeOf<PutResult[]>();
    expectTypeOf<PutResult['status']>().toEqualTypeOf<'stored' | 'present' | 'failed' | 'lost'>();
    expectTypeOf(cache.get).returns.resolves.toEqualTypeOf<GetResult[]>();
    expectTypeOf<GetResult['status']>().toEqualTypeOf<'hit' | 'miss'>();
    expectTypeOf<GetResult['buffer']>().toEqualTypeOf<Buffer | undefined>();
    expectTypeOf(cache.lookup).returns.resolves.toEqualTypeOf<number>();
    void cache.put(['a', new Uint8Array(16)], [cache.alloc(4096), new Uint8Array(4096)], { ttlMs: 1000 });
    // @ts-expect-error: keys are strings or bytes
    void cache.put([1], [new Uint8Array(4096)]);
    expectTypeOf<PageKeyHash>().toEqualTypeOf<'sha256' | 'xxh3'>();
    expectTypeOf(pageKeys([1, 2, 3], 64, { hash: 'xxh3' })).toEqualTypeOf<string[]>();
    // @ts-expect-error: SGLang's two hashes only
    pageKeys([1, 2, 3], 64, { hash: 'md5' });
    // @ts-expect-error: a namespace names at least its model and dtype
    void KVCache.open({ root: '/tmp/kv', namespace: { model: 'm' }, pageBytes: 4096, capacityBytes: 1 << 20 });
  });
});

describe('datasets', () => {
  test('a loader yields steps of the dataset batches', async () => {
    const ds = await openDataset('/data/train.ffr');
    for await (const step of createLoader(ds, { batchSize: 256, seed: 1 })) {
      expectTypeOf(step).toEqualTypeOf<LoaderStep<SampleBatch>>();
      expectTypeOf(step.indices).toEqualTypeOf<number[]>();
    }
  });
});

describe('streams and whole files', () => {
  test('a file gives node streams, a web byte stream and an async iterable of Buffers', async () => {
    expectTypeOf(file.createReadStream()).toEqualTypeOf<FileReadStream>();
    expectTypeOf<FileReadStream>().toExtend<Readable>();
    expectTypeOf(file.createWriteStream({ start: 0, flush: true })).toEqualTypeOf<FileWriteStream>();
    expectTypeOf<FileWriteStream>().toExtend<Writable>();
    expectTypeOf(file.readableWebStream()).toEqualTypeOf<ReadableStream<Uint8Array>>();
    for await (const chunk of file.chunks({ borrow: true })) expectTypeOf(chunk).toEqualTypeOf<Buffer>();
    expectTypeOf(file.createReadStream).parameter(0).toEqualTypeOf<ReadStreamOptions | undefined>();
    expectTypeOf(file.createWriteStream).parameter(0).toEqualTypeOf<WriteStreamOptions | undefined>();
    expectTypeOf(file.readableWebStream).parameter(0).toEqualTypeOf<WebStreamOptions | undefined>();
    expectTypeOf(file.chunks).parameter(0).toEqualTypeOf<ChunksOptions | undefined>();
    expectTypeOf<ChunksOptions>().toExtend<ReadRangeOptions>();
    file.createReadStream({ start: 0, end: 99, highWaterMark: 1 << 20, readAhead: 4, signal: AbortSignal.timeout(1000), autoClose: false, emitClose: true });
    expectTypeOf(file.createReadStream().bytesRead).toEqualTypeOf<number>();
    expectTypeOf(file.createWriteStream().bytesWritten).toEqualTypeOf<number>();
    // @ts-expect-error: start is a number of bytes
    file.createReadStream({ start: '0' });
    // @ts-expect-error: borrow is for chunks() only
    file.createReadStream({ borrow: true });
  });

  test('readFile gives one IoBuffer; writeFile takes strings, views and IoBuffers', async () => {
    expectTypeOf(readFile).returns.resolves.toEqualTypeOf<IoBuffer>();
    expectTypeOf(readFile).parameter(1).toEqualTypeOf<ReadFileOptions | undefined>();
    expectTypeOf(writeFile).returns.resolves.toEqualTypeOf<void>();
    await writeFile('/tmp/a', 'text', { encoding: 'utf8', flag: 'wx', mode: 0o600, flush: true, signal: AbortSignal.abort() });
    await writeFile('/tmp/a', new Uint8Array(4));
    await writeFile('/tmp/a', memory);
    expectTypeOf<WriteFileOptions['flag']>().toEqualTypeOf<OpenFlags | undefined>();
    // @ts-expect-error: numbers are not data
    await writeFile('/tmp/a', 42);
  });

  test('client metrics count copies; info counts IoBuffers', () => {
    expectTypeOf<ClientMetrics['copiedBytes']>().toEqualTypeOf<number>();
    expectTypeOf<ClientInfo['ioBuffers']>().toEqualTypeOf<number>();
    expectTypeOf<ClientInfo['ioBufferBytes']>().toEqualTypeOf<number>();
  });
});
