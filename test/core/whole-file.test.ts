// readFile / writeFile against node:fs as the oracle, on the process-wide client for each path
// (USRBIO on the 3FS mount in the hf3fs project): the bytes of files of many sizes, one
// buffer back (an iov on 3FS), typed errors, abort, and memory returned on failure.
// Runs on every engine (test/helpers.ts ENGINE).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { clientFor, connect, IoBuffer, readFile, writeFile } from '../../lib/index';
import { ENGINE_NAME, failure, firstDiff, KiB, makeTmpDir, MiB, Rng, seedFor } from '../helpers';

const tmp = makeTmpDir('whole-file');
const rng = new Rng(seedFor('whole-file'));
afterAll(async () => {
  await clientFor(tmp.dir).close();
  tmp.cleanup();
});

const SIZES = [0, 1, 4095, 4096, 4097, 4 * MiB, 4 * MiB + 1, 9 * MiB + 3];

describe('readFile', () => {
  for (const size of SIZES) {
    it(`gives node:fs's bytes of a ${size}-byte file in one IoBuffer of the path's client`, async () => {
      const p = tmp.path(`read-${size}`);
      const want = rng.bytes(size);
      writeFileSync(p, want);
      const client = clientFor(p);
      const buffers = client.info().ioBuffers;
      const io = await readFile(p);
      expect(io).toBeInstanceOf(IoBuffer);
      expect(io.byteLength).toBe(size);
      expect(firstDiff(io.bytes, want)).toBe(-1);
      expect(client.info().engine).toBe(ENGINE_NAME);
      // Locally not registered: registering would fault in the whole buffer on the JS thread at
      // once. On 3FS it is an iov, always registered.
      expect(io.registered).toBe(ENGINE_NAME === 'usrbio' && size > 0);
      expect(client.info().ioBuffers).toBe(buffers + 1);
      io.free();
      expect(client.info().ioBuffers).toBe(buffers);
    });
  }

  it('typed errors: ENOENT and EISDIR with the path; bad options; nothing left allocated', async () => {
    const client = clientFor(tmp.dir);
    const buffers = client.info().ioBuffers;
    const missing = await failure(() => readFile(tmp.path('missing')));
    expect([missing.code, missing.path]).toEqual(['ENOENT', tmp.path('missing')]);
    mkdirSync(tmp.path('dir'), { recursive: true });
    expect((await failure(() => readFile(tmp.path('dir')))).code).toBe('EISDIR');
    expect((await failure(() => readFile(tmp.path('x'), { signal: 'no' } as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => readFile(tmp.path('x'), 'utf8' as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => readFile(''))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(client.info().ioBuffers).toBe(buffers);
  });

  it('abort via signal: ABORT_ERR, before or during the reads; the buffer is freed', async () => {
    const p = tmp.path('abort-read');
    writeFileSync(p, rng.bytes(16 * MiB));
    const client = clientFor(p);
    const buffers = client.info().ioBuffers;
    expect((await failure(() => readFile(p, { signal: AbortSignal.abort() }))).code).toBe('ABORT_ERR');
    const ac = new AbortController();
    const reading = readFile(p, { signal: ac.signal });
    ac.abort(new Error('enough'));
    const e = await failure(() => reading);
    expect([e.code, e.name]).toEqual(['ABORT_ERR', 'AbortError']);
    expect(client.info().ioBuffers).toBe(buffers);
  });
});

describe('writeFile', () => {
  for (const size of SIZES) {
    it(`writes ${size} bytes that node:fs reads back, replacing a longer file`, async () => {
      const p = tmp.path(`write-${size}`);
      writeFileSync(p, Buffer.alloc(size + 5000, 7));
      const data = rng.bytes(size);
      await writeFile(p, data);
      expect(firstDiff(readFileSync(p), data)).toBe(-1);
    });
  }

  it('strings (with an encoding), typed arrays and views at an offset', async () => {
    const p = tmp.path('kinds');
    await writeFile(p, 'héllo wörld');
    expect(readFileSync(p, 'utf8')).toBe('héllo wörld');
    await writeFile(p, 'aGk=', { encoding: 'base64' });
    expect(readFileSync(p, 'utf8')).toBe('hi');
    const words = new Uint32Array([1, 2, 3, 4]);
    await writeFile(p, words.subarray(1, 3));
    expect(readFileSync(p)).toEqual(Buffer.from(words.buffer, 4, 8));
  });

  it("an IoBuffer of the path's client goes out without a copy; another client's is copied and counted", async () => {
    const p = tmp.path('io');
    const client = clientFor(p);
    const io = client.alloc(MiB);
    rng.fill(io.bytes);
    const before = client.metrics();
    await writeFile(p, io.subarray(0, MiB - 3));
    expect(firstDiff(readFileSync(p), io.bytes.subarray(0, MiB - 3))).toBe(-1);
    expect(client.metrics().copiedBytes).toBe(before.copiedBytes);
    const other = connect({ engine: 'local' });
    const foreign = other.alloc(64 * KiB);
    rng.fill(foreign.bytes);
    await writeFile(p, foreign.bytes);
    expect(firstDiff(readFileSync(p), foreign.bytes)).toBe(-1);
    expect(client.metrics().copiedBytes - before.copiedBytes).toBe(64 * KiB);
    io.free();
    await other.close();
  });

  it('typed errors: flag wx on an existing file, bad data, a freed buffer; abort', async () => {
    const p = tmp.path('errors');
    writeFileSync(p, 'keep');
    expect((await failure(() => writeFile(p, 'x', { flag: 'wx' }))).code).toBe('EEXIST');
    expect((await failure(() => writeFile(p, 42 as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => writeFile(p, 'x', { flush: 1 } as never))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await failure(() => writeFile(p, 'x', { signal: AbortSignal.abort() }))).code).toBe('ABORT_ERR');
    expect(readFileSync(p, 'utf8')).toBe('keep');
    const io = clientFor(p).alloc(10);
    io.free();
    expect((await failure(() => writeFile(p, io))).code).toBe('ERR_BUFFER_FREED');
    expect(readFileSync(p, 'utf8'), 'refused before the file was truncated').toBe('keep');
    await writeFile(p, 'flushed', { flush: true, mode: 0o600 });
    expect(readFileSync(p, 'utf8')).toBe('flushed');
  });
});
