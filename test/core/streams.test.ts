// file.createReadStream / createWriteStream / readableWebStream / chunks against node:fs as the
// oracle: the same bytes for the same ranges, the same events in the same order, back-pressure
// that bounds the read-ahead, and memory returned (client.info().ioBuffers back where it was)
// however a stream ends: at its end, destroyed mid-batch, aborted, or its client closed under it.
// Runs on every engine (test/helpers.ts ENGINE).
import { once } from 'node:events';
import { createReadStream as fsReadStream, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileReadStream, FileWriteStream, ThreeFSError, type Client, type File, type ReadStreamOptions } from '../../lib/index';
import { collectGarbage, eventually, failure, firstDiff, KiB, makeTmpDir, MiB, Rng, seedFor, sleep, testConnect, THREADS } from '../helpers';

const tmp = makeTmpDir('streams');
const rng = new Rng(seedFor('streams'));
const SIZE = 5 * MiB + 12345;
const content = rng.bytes(SIZE);
const contentPath = tmp.path('content');
writeFileSync(contentPath, content);
// More reads than a stream has in flight at first (reads are 4 MiB, READ_BYTES): some are still
// to be issued when a test acts on the stream.
const READ = 4 * MiB;
const BIG = 4 * READ + 12345;
const big = rng.bytes(BIG);
const bigPath = tmp.path('big');
writeFileSync(bigPath, big);
let client: Client;

beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client.close();
  tmp.cleanup();
});

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/** What node:fs's own read stream gives for these options. */
function oracle(options: ReadStreamOptions): Promise<Buffer> {
  const { start, end, highWaterMark } = options;
  return collect(fsReadStream(contentPath, { start, end, highWaterMark }));
}

function expectSame(got: Buffer, want: Buffer): void {
  expect(got.length, 'length').toBe(want.length);
  expect(firstDiff(got, want), 'first differing byte').toBe(-1);
}

/** Resolves at the stream's 'close' (at once if it was emitted already), whatever came before it. */
function closed(stream: Readable | Writable): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}

/** The client's IoBuffers come back to `want` (the streams free theirs before 'close'). */
async function expectBuffersBack(want: number): Promise<void> {
  expect(await eventually(() => client.info().ioBuffers, want)).toBe(want);
}

describe('createReadStream', () => {
  const ranges: ReadStreamOptions[] = [
    {},
    { start: 0, end: SIZE - 1 },
    { start: 1, end: 4096 },
    { start: 4095, end: 4097 },
    { start: 12345, end: 3 * MiB + 7, highWaterMark: 100_000 },
    { start: 7, highWaterMark: 64 * KiB, readAhead: 1 },
    { start: SIZE - 1 },
    { start: SIZE },
    { start: SIZE + 5000 },
    { start: 100, end: 100 },
    { end: SIZE * 2 },
    { highWaterMark: 1, start: 70, end: 90 },
    { highWaterMark: 3 * MiB + 1, readAhead: 2 },
  ];
  for (const range of ranges) {
    it(`gives node:fs's bytes for ${JSON.stringify(range)}, in chunks of at most highWaterMark`, async () => {
      const before = client.info().ioBuffers;
      const file = await client.open(contentPath);
      const stream = file.createReadStream(range);
      const hwm = range.highWaterMark ?? MiB;
      const parts: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        expect(chunk).toBeInstanceOf(Buffer);
        expect(chunk.length).toBeGreaterThan(0);
        expect(chunk.length).toBeLessThanOrEqual(hwm);
        parts.push(chunk);
      });
      await closed(stream);
      expectSame(Buffer.concat(parts), await oracle(range));
      expect(stream.bytesRead).toBe(Buffer.concat(parts).length);
      expect(file.closed, 'autoClose closes the file').toBe(true);
      await expectBuffersBack(before);
    });
  }

  it("emits 'end' then 'close', as node:fs's; autoClose: false leaves the file open", async () => {
    const file = await client.open(contentPath);
    const events: string[] = [];
    const stream = file.createReadStream({ autoClose: false, end: 99 });
    for (const name of ['end', 'close', 'error']) stream.on(name, () => events.push(name));
    stream.resume();
    await once(stream, 'close');
    expect(events).toEqual(['end', 'close']);
    expect(file.closed).toBe(false);
    expect(stream.path).toBe(contentPath);
    expect([stream.start, stream.end, stream.pending]).toEqual([0, 99, false]);
    expect(await collect(file.createReadStream({ start: 10, end: 19, autoClose: false }))).toEqual(content.subarray(10, 20));
    await file.close();
  });

  it('hands out fresh Buffers: a chunk kept is never overwritten by later reads; the copy is counted', async () => {
    const file = await client.open(contentPath);
    const copied = client.metrics().copiedBytes;
    const kept: Buffer[] = [];
    for await (const chunk of file.createReadStream({ highWaterMark: 64 * KiB, readAhead: 2 })) kept.push(chunk);
    expectSame(Buffer.concat(kept), content);
    expect(new Set(kept.map((k) => k.buffer)).size, 'no two chunks share memory').toBe(kept.length);
    expect(client.metrics().copiedBytes - copied).toBe(SIZE);
  });

  it('works with stream.pipeline and node:zlib', async () => {
    const file = await client.open(contentPath);
    const out: Buffer[] = [];
    await pipeline(file.createReadStream(), createGzip(), createGunzip(), new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
    expectSame(Buffer.concat(out), content);
  });

  it('back-pressure: a paused stream stops reading ahead at readAhead reads (and the one handed out)', async () => {
    const before = client.info().ioBuffers;
    const file = await client.open(bigPath);
    const hwm = 64 * KiB;
    const stream = file.createReadStream({ highWaterMark: hwm, readAhead: 2 });
    const readBytes = client.metrics().readBytes;
    stream.once('readable', () => stream.read(hwm)); // one chunk out, then nobody reads
    await once(stream, 'readable');
    await sleep(50); // time for reads that should not happen
    // The read being handed out, and at most readAhead more in flight or landed.
    const held = client.info().ioBuffers - before;
    expect(held).toBeGreaterThanOrEqual(1);
    expect(held).toBeLessThanOrEqual(3);
    expect(client.metrics().readBytes - readBytes).toBeLessThanOrEqual(3 * READ);
    await sleep(50);
    expect(client.info().ioBuffers - before).toBe(held);
    stream.destroy();
    await closed(stream);
    await expectBuffersBack(before);
  });

  it('the window of reads in flight grows while the consumer waits for the device, and stays at one read when it never does', async () => {
    /** Reads in flight at most over a whole stream; a slow consumer asks for a chunk only once no read is in flight. */
    const maxInFlight = async (slow: boolean) => {
      const file = await client.open(bigPath);
      const read = file.read.bind(file);
      let now = 0;
      let most = 0;
      file.read = async (buffer, fileOffset, length, options) => {
        most = Math.max(most, ++now);
        try {
          const n = await read(buffer, fileOffset, length, options);
          // Past a turn of the event loop: a consumer that asks at once finds the read not landed.
          await new Promise(setImmediate);
          return n;
        } finally {
          now--;
        }
      };
      const parts: Buffer[] = [];
      for await (const chunk of file.chunks({ readAhead: 2 })) {
        parts.push(chunk);
        if (slow) expect(await eventually(() => now, 0)).toBe(0);
      }
      expectSame(Buffer.concat(parts), big);
      await file.close();
      return most;
    };
    expect(await maxInFlight(false)).toBe(2);
    expect(await maxInFlight(true)).toBe(1);
  });

  it('reads go to the device 4 MiB at a time, whatever the chunk size', async () => {
    const file = await client.open(bigPath);
    const reads: number[] = [];
    const read = file.read.bind(file);
    file.read = (buffer, fileOffset, length, options) => (reads.push(length ?? -1), read(buffer, fileOffset, length, options));
    const got = await collect(file.createReadStream({ highWaterMark: 64 * KiB }));
    expectSame(got, big);
    // Reads of 4 MiB (the end of the file unknown, the last asks 4 MiB too, and a few already in
    // flight past it come back empty), not one read per 64 KiB chunk.
    expect(reads.every((n) => n === READ)).toBe(true);
    expect(reads.length).toBeGreaterThanOrEqual(5);
    expect(reads.length).toBeLessThanOrEqual(5 + 8);
  });

  it('destroyed mid-batch: reads in flight are canceled, their memory is freed, the file closed', async () => {
    const before = client.info().ioBuffers;
    for (const error of [undefined, new Error('consumer gave up')]) {
      const file = await client.open(contentPath);
      const stream = file.createReadStream({ highWaterMark: 256 * KiB, readAhead: 8 });
      const events: string[] = [];
      stream.on('error', (e) => events.push(`error:${e.message}`));
      stream.on('close', () => events.push('close'));
      await once(stream, 'data');
      stream.destroy(error);
      await closed(stream);
      expect(events).toEqual(error ? [`error:${error.message}`, 'close'] : ['close']);
      expect(file.closed).toBe(true);
      await expectBuffersBack(before);
    }
  });

  it('abort via signal: an AbortError (ThreeFSError, ABORT_ERR) then close, memory freed; an aborted signal fails at once', async () => {
    const before = client.info().ioBuffers;
    const ac = new AbortController();
    const file = await client.open(contentPath);
    const stream = file.createReadStream({ signal: ac.signal, highWaterMark: 64 * KiB });
    const ended = closed(stream);
    await once(stream, 'data');
    ac.abort(new Error('stop'));
    const [e] = await once(stream, 'error');
    expect(e).toBeInstanceOf(ThreeFSError);
    expect([e.code, e.name, e.cause?.message]).toEqual(['ABORT_ERR', 'AbortError', 'stop']);
    await ended;
    await expectBuffersBack(before);

    const file2 = await client.open(contentPath);
    const stream2 = file2.createReadStream({ signal: AbortSignal.abort() });
    const [e2] = await once(stream2, 'error');
    expect(e2.code).toBe('ABORT_ERR');
    await expectBuffersBack(before);
  });

  it('bad options are refused with typed errors before anything is allocated', async () => {
    const file = await client.open(contentPath);
    const before = client.info().ioBuffers;
    const bad: [unknown, string][] = [
      [{ start: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ start: 1.5 }, 'ERR_OUT_OF_RANGE'],
      [{ start: '0' }, 'ERR_INVALID_ARG_TYPE'],
      [{ start: 10, end: 9 }, 'ERR_OUT_OF_RANGE'],
      [{ end: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ highWaterMark: 0 }, 'ERR_OUT_OF_RANGE'],
      [{ highWaterMark: NaN }, 'ERR_OUT_OF_RANGE'],
      [{ readAhead: 0 }, 'ERR_OUT_OF_RANGE'],
      [{ readAhead: 65 }, 'ERR_OUT_OF_RANGE'],
      [{ signal: {} }, 'ERR_INVALID_ARG_TYPE'],
      ['r', 'ERR_INVALID_ARG_TYPE'],
    ];
    for (const [options, code] of bad) {
      for (const make of [
        () => file.createReadStream(options as ReadStreamOptions),
        () => file.readableWebStream(options as ReadStreamOptions),
        () => file.chunks(options as ReadStreamOptions),
      ]) {
        const e = await failure(make);
        expect(e.code, JSON.stringify(options)).toBe(code);
      }
    }
    expect((await failure(() => file.createReadStream({ autoClose: 1 } as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => file.chunks({ borrow: 'yes' } as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    for (const [options, code] of [
      [{ start: -1 }, 'ERR_OUT_OF_RANGE'],
      [{ highWaterMark: 0 }, 'ERR_OUT_OF_RANGE'],
      [{ flush: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
    ] as const) {
      expect((await failure(() => file.createWriteStream(options as never))).code).toBe(code);
    }
    expect(client.info().ioBuffers).toBe(before);
    expect(file.closed).toBe(false);
    await file.close();
  });

  it('a file that shrinks under the stream: the stream ends where the file now does, without an error', async () => {
    const p = tmp.path('shrinks');
    writeFileSync(p, big);
    const file = await client.open(p);
    const shrunk = MiB + 123;
    // Read 3 onwards is issued only once read 1's chunks are out, after the truncation.
    const stream = file.createReadStream({ highWaterMark: 64 * KiB, readAhead: 1 });
    const parts: Buffer[] = [];
    stream.once('data', (chunk: Buffer) => {
      parts.push(chunk);
      truncateSync(p, shrunk);
      stream.on('data', (c: Buffer) => parts.push(c));
    });
    await once(stream, 'end');
    const got = Buffer.concat(parts);
    // Reads done before the truncation saw the old bytes; those after it stop at the new end.
    expect(got.length).toBeGreaterThanOrEqual(shrunk);
    expect(got.length).toBeLessThan(BIG);
    expectSame(got, big.subarray(0, got.length));
  });

  it('a file truncated to nothing before the first read gives an empty stream', async () => {
    const p = tmp.path('emptied');
    writeFileSync(p, content.subarray(0, 100 * KiB));
    const file = await client.open(p);
    const stream = file.createReadStream();
    truncateSync(p, 0);
    expect((await collect(stream)).length).toBe(0);
  });

  it('a client closed under a stream: a ThreeFSError, then close; its buffers freed, nothing hangs', async () => {
    const own = testConnect();
    const file = await own.open(bigPath);
    const stream = file.createReadStream({ highWaterMark: 64 * KiB, readAhead: 2 });
    const ended = closed(stream);
    await once(stream, 'data');
    stream.pause();
    const closing = own.close();
    stream.resume();
    const [e] = await once(stream, 'error');
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(['ECANCELED', 'ERR_CLIENT_CLOSED', 'ERR_FILE_CLOSED']).toContain(e.code);
    await ended;
    await closing;
    expect(own.info().ioBuffers).toBe(0);
  });

  it('a client closed before the stream starts: the first read fails with ERR_CLIENT_CLOSED', async () => {
    const own = testConnect();
    const file = await own.open(contentPath);
    await own.close();
    const stream = file.createReadStream().resume();
    const [e] = await once(stream, 'error');
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(['ERR_CLIENT_CLOSED', 'ERR_FILE_CLOSED']).toContain(e.code);
    expect(own.info().ioBuffers).toBe(0);
  });

  it('is a stream.Readable, FileReadStream', async () => {
    const file = await client.open(contentPath);
    const stream = file.createReadStream({ end: 0 });
    expect(stream).toBeInstanceOf(Readable);
    expect(stream).toBeInstanceOf(FileReadStream);
    expect(await collect(stream)).toEqual(content.subarray(0, 1));
  });
});

describe('chunks()', () => {
  it("gives the range's bytes as fresh Buffers by default", async () => {
    const file = await client.open(contentPath);
    expectSame(await collect(file.chunks({ start: 333, end: 2 * MiB })), content.subarray(333, 2 * MiB + 1));
    await file.close();
  });

  it('borrow: views of the read-ahead memory, reused, no copy counted', async () => {
    const before = client.info().ioBuffers;
    const file = await client.open(contentPath);
    const copied = client.metrics().copiedBytes;
    const memories = new Set<ArrayBufferLike>();
    let at = 0;
    for await (const chunk of file.chunks({ borrow: true, highWaterMark: 128 * KiB, readAhead: 2 })) {
      expectSame(chunk, content.subarray(at, at + chunk.length));
      at += chunk.length;
      memories.add(chunk.buffer);
    }
    expect(at).toBe(SIZE);
    expect(memories.size, 'the read-ahead buffers are reused').toBeLessThanOrEqual(3);
    expect(client.metrics().copiedBytes).toBe(copied);
    await expectBuffersBack(before);
    await file.close();
  });

  it('breaking out of the loop frees the memory before the loop exits', async () => {
    const before = client.info().ioBuffers;
    const file = await client.open(contentPath);
    for await (const chunk of file.chunks({ highWaterMark: 64 * KiB, readAhead: 6 })) {
      expect(chunk.length).toBe(64 * KiB);
      break;
    }
    expect(client.info().ioBuffers).toBe(before);
    await file.close();
  });

  it('abort via signal rejects the loop with ABORT_ERR', async () => {
    const file = await client.open(contentPath);
    const ac = new AbortController();
    const e = await failure(async () => {
      for await (const _ of file.chunks({ signal: ac.signal, highWaterMark: 64 * KiB })) ac.abort();
    });
    expect(e.code).toBe('ABORT_ERR');
    await file.close();
  });
});

describe('readableWebStream()', () => {
  it('new Response(stream) gives the bytes', async () => {
    const file = await client.open(contentPath);
    const body = Buffer.from(await new Response(file.readableWebStream({ start: 5, end: 3 * MiB })).arrayBuffer());
    expectSame(body, content.subarray(5, 3 * MiB + 1));
    expect(file.closed, 'as FileHandle.readableWebStream, the file stays open').toBe(false);
    await file.close();
  });

  it("BYOB reads of odd sizes fill the reader's own memory", async () => {
    const file = await client.open(contentPath);
    const reader = file.readableWebStream({ highWaterMark: 100_000 }).getReader({ mode: 'byob' });
    const parts: Buffer[] = [];
    for (let size = 1; ; size = (size * 7 + 13) % 300_000 || 1) {
      const { value, done } = await reader.read(new Uint8Array(size));
      if (done) break;
      expect(value.byteLength).toBeLessThanOrEqual(size);
      parts.push(Buffer.from(value));
    }
    expectSame(Buffer.concat(parts), content);
    await file.close();
  });

  it('cancel frees the memory; autoClose closes the file', async () => {
    const before = client.info().ioBuffers;
    const file = await client.open(contentPath);
    const reader = file.readableWebStream({ autoClose: true, readAhead: 4, highWaterMark: 256 * KiB }).getReader();
    await reader.read();
    await reader.cancel();
    expect(client.info().ioBuffers).toBe(before);
    expect(file.closed).toBe(true);
  });

  it('abort via signal errors the reader with ABORT_ERR and frees the memory', async () => {
    const before = client.info().ioBuffers;
    const file = await client.open(contentPath);
    const ac = new AbortController();
    const reader = file.readableWebStream({ signal: ac.signal, highWaterMark: 64 * KiB }).getReader();
    await reader.read();
    ac.abort();
    const e = await failure(() => reader.read());
    expect(e.code).toBe('ABORT_ERR');
    await expectBuffersBack(before);
    await file.close();
  });
});

describe('createWriteStream', () => {
  it('pipeline from node:fs: the same bytes, at start; finish then close; the file closed', async () => {
    const p = tmp.path('written');
    writeFileSync(p, Buffer.alloc(100, 1));
    const file = await client.open(p, 'r+');
    const stream = file.createWriteStream({ start: 10 });
    expect(stream).toBeInstanceOf(Writable);
    expect(stream).toBeInstanceOf(FileWriteStream);
    const events: string[] = [];
    for (const name of ['finish', 'close', 'error']) stream.on(name, () => events.push(name));
    await pipeline(fsReadStream(contentPath, { highWaterMark: 100_000 }), stream);
    await closed(stream);
    expect(events).toEqual(['finish', 'close']);
    expect(stream.bytesWritten).toBe(SIZE);
    expect(file.closed).toBe(true);
    const want = Buffer.concat([Buffer.alloc(10, 1), content]);
    expectSame(readFileSync(p), want);
  });

  it('registered memory goes out without a copy; a write callback runs once its bytes are in the file', async () => {
    const p = tmp.path('registered');
    const file = await client.open(p, 'w');
    const io = client.alloc(MiB);
    io.bytes.set(content.subarray(0, MiB));
    const before = client.metrics();
    const stream = file.createWriteStream({ autoClose: false, flush: true });
    await new Promise<void>((resolve, reject) => stream.write(io.bytes, (e) => (e ? reject(e) : resolve())));
    expectSame(readFileSync(p), content.subarray(0, MiB));
    stream.end();
    await once(stream, 'finish');
    const after = client.metrics();
    expect(after.copiedBytes - before.copiedBytes).toBe(0);
    // The threads engine registers nothing: its registeredBytes stay 0.
    expect(after.registeredBytes - before.registeredBytes).toBe(THREADS ? 0 : MiB);
    await file.close();
    io.free();
  });

  it('a file open read-only: EBADF on the first write, then close', async () => {
    const file = await client.open(contentPath, 'r');
    const stream = file.createWriteStream();
    const ended = closed(stream);
    stream.write(Buffer.from('x'));
    const [e] = await once(stream, 'error');
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(e.code).toBe('EBADF');
    await ended;
    expectSame(readFileSync(contentPath), content);
  });

  it('abort via signal mid-stream: AbortError, close after the writes in flight let go', async () => {
    const p = tmp.path('aborted');
    const file = await client.open(p, 'w');
    const ac = new AbortController();
    const stream = file.createWriteStream({ signal: ac.signal });
    const source = new PassThrough();
    const done = pipeline(source, stream).catch((e) => e);
    source.write(content.subarray(0, MiB));
    ac.abort();
    const e = await done;
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(e.code).toBe('ABORT_ERR');
    await closed(stream);
    expect(file.closed).toBe(true);
  });

  it('streams over the buffers a read stream hands out, file to file', async () => {
    const p = tmp.path('copy');
    const from = await client.open(contentPath);
    const to = await client.open(p, 'w');
    await pipeline(from.createReadStream({ highWaterMark: 512 * KiB }), to.createWriteStream());
    expectSame(readFileSync(p), content);
    await collectGarbage(1);
  });
});
