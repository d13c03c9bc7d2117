// The ring the JS thread drives (native/engines/uring_direct.cc): small batches of independent ops
// are submitted from the JS thread and reaped there, through the ring's fd polled by the event loop;
// the rest go to the ring threads. A FIFO read blocks until the test writes to the FIFO, so an op
// stays in flight exactly as long as a test needs (O_RDWR: open does not wait for a writer).
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type Client, type File } from '../../../lib/index';
import { DIST_LIB, KiB, makeTmpDir, MiB, Rng, seedFor } from '../../helpers';

const tmp = makeTmpDir('direct-ring');
afterAll(() => tmp.cleanup());

let fifos = 0;
async function fifo(client: Client): Promise<{ file: File; write: (bytes: Buffer) => void }> {
  const path = tmp.path(`fifo-${fifos++}`);
  execFileSync('mkfifo', [path]);
  const file = await client.open(path, 'r+', undefined, { direct: 'never' });
  return {
    file,
    write: (bytes) => {
      const fd = openSync(path, 'w');
      writeSync(fd, bytes);
      closeSync(fd);
    },
  };
}

describe('1-op reads in flight on the JS thread\'s ring', () => {
  it('a timeout, an abort and close() each settle them; the client goes on working until closed', async () => {
    const client = connect({ engine: 'io_uring' });
    const { file } = await fifo(client);
    const io = client.alloc(4 * KiB);
    const [timedOut] = await file.batchRead([{ buffer: io, fileOffset: 0 }], { timeout: 20 });
    expect(timedOut.error).toMatchObject({ code: 'ETIMEDOUT', index: 0 });
    const ac = new AbortController();
    const aborted = file.batchRead([{ buffer: io, fileOffset: 0 }], { signal: ac.signal });
    setImmediate(() => ac.abort());
    await expect(aborted).rejects.toMatchObject({ code: 'ABORT_ERR' });
    const inFlight = file.batchRead([{ buffer: io, fileOffset: 0 }]);
    await client.close();
    const [canceled] = await inFlight;
    expect(canceled.error).toMatchObject({ code: 'ECANCELED' });
    expect(client.info().closed).toBe(true);
  });

  it('close() while an O_DIRECT read that no cancel can stop is at the device: close waits for it, the read lands, the process goes on', async () => {
    // The engines close on a worker thread long before the device is done with 128 MiB, so the
    // read's completion, not close(), is what lets close()'s promise settle: from the event loop,
    // where that promise once settled outside any scope and V8 aborted the process.
    const path = tmp.path('close-under-read');
    const content = new Rng(seedFor('direct-ring-close')).bytes(128 * MiB);
    writeFileSync(path, content, { flush: true }); // no dirty pages: the read goes to the device at once, not to a worker a cancel stops
    const client = connect({ engine: 'io_uring' });
    const file = await client.open(path, 'r', undefined, { direct: 'always' });
    const io = client.alloc(128 * MiB);
    const reading = file.batchRead([{ buffer: io, fileOffset: 0 }]);
    await client.close();
    const [r] = await reading;
    if (r.error) expect(r.error.code).toBe('ECANCELED');
    else expect(r.bytes).toBe(content.length);
    expect(client.info().closed).toBe(true);
  });

  it('16 clients, each with a read in flight on its own FIFO, written in reverse order: each lands in its own buffer', async () => {
    const clients = Array.from({ length: 16 }, () => connect({ engine: 'io_uring' }));
    const fifosOf = await Promise.all(clients.map((c) => fifo(c)));
    const buffers = clients.map((c) => c.alloc(4 * KiB));
    const reads = fifosOf.map(({ file }, i) => file.batchRead([{ buffer: buffers[i], fileOffset: 0 }]));
    for (let i = clients.length - 1; i >= 0; i--) fifosOf[i].write(Buffer.alloc(4 * KiB, i + 1));
    const results = await Promise.all(reads);
    results.forEach(([r], i) => {
      expect(r).toEqual({ bytes: 4 * KiB, eof: false, error: null });
      expect(buffers[i].bytes.every((b) => b === i + 1)).toBe(true);
    });
    for (const [i, c] of clients.entries()) {
      buffers[i].free();
      await fifosOf[i].file.close();
      await c.close();
    }
  });
});

describe('submissions from completions', () => {
  it('the batches a completion\'s reactions submit go to the kernel in one io_uring_enter, and land', async () => {
    const client = connect({ engine: 'io_uring' });
    const { file, write } = await fifo(client);
    const path = tmp.path('after-fifo');
    const content = new Rng(seedFor('direct-ring-after-fifo')).bytes(64 * KiB);
    writeFileSync(path, content);
    const cached = await client.open(path, 'r', undefined, { direct: 'never' });
    const io = client.alloc(4 * KiB);
    const buffers = Array.from({ length: 6 }, () => client.alloc(4 * KiB));
    const first = file.batchRead([{ buffer: io, fileOffset: 0 }]);
    setImmediate(() => write(Buffer.alloc(4 * KiB, 1)));
    expect(await first).toEqual([{ bytes: 4 * KiB, eof: false, error: null }]);
    // Still in the reactions to the FIFO read's completion: these 6 are only prepared.
    const before = client.metrics().submitCalls;
    const reads = buffers.map((buffer, i) => cached.batchRead([{ buffer, fileOffset: i * 8 * KiB }]));
    const results = await Promise.all(reads);
    expect(client.metrics().submitCalls - before).toBe(1);
    results.forEach(([r], i) => {
      expect(r).toEqual({ bytes: 4 * KiB, eof: false, error: null });
      expect(Buffer.from(buffers[i].bytes).equals(content.subarray(i * 8 * KiB, i * 8 * KiB + 4 * KiB))).toBe(true);
    });
    for (const b of [io, ...buffers]) b.free();
    await file.close();
    await cached.close();
    await client.close();
  });

  // Two FIFO reads complete in one wake-up. The reaction to the first submits a read; whether that
  // read is in the kernel when the second settles depends on its size: 64 KiB go at once (the
  // device would otherwise wait for the second's reactions), 4 KiB wait for the wake-up's end.
  it.each([
    [64 * KiB, 1],
    [4 * KiB, 0],
  ])('the completions of one wake-up are taken batch by batch: a %i-byte read submitted by the first one\'s reactions takes %i io_uring_enter before the second settles', async (bytes, calls) => {
    const client = connect({ engine: 'io_uring' });
    const fifosOf = [await fifo(client), await fifo(client)];
    const path = tmp.path(`after-two-fifos-${bytes}`);
    const content = new Rng(seedFor('direct-ring-after-two-fifos')).bytes(bytes);
    writeFileSync(path, content);
    // O_DIRECT: a buffered read of 64 KiB would go to the ring threads.
    const disk = await client.open(path, 'r', undefined, { direct: 'always' });
    const [a, b, c] = [4 * KiB, 4 * KiB, bytes].map((n) => client.alloc(n));
    const seen: number[] = [];
    let followUp: Promise<unknown> | undefined;
    const first = fifosOf[0].file.batchRead([{ buffer: a, fileOffset: 0 }]).then(() => {
      seen.push(client.metrics().submitCalls);
      followUp = disk.batchRead([{ buffer: c, fileOffset: 0 }]);
    });
    const second = fifosOf[1].file.batchRead([{ buffer: b, fileOffset: 0 }]).then(() => seen.push(client.metrics().submitCalls));
    // Both FIFOs written in one callback: both reads complete before the event loop next polls.
    setImmediate(() => fifosOf.forEach(({ write }, i) => write(Buffer.alloc(4 * KiB, i + 1))));
    await Promise.all([first, second]);
    expect(seen[1] - seen[0]).toBe(calls);
    expect(await followUp).toEqual([{ bytes, eof: false, error: null }]);
    expect(Buffer.from(c.bytes).equals(content)).toBe(true);
    expect([a.bytes.every((x) => x === 1), b.bytes.every((x) => x === 2)]).toEqual([true, true]);
    for (const x of [a, b, c]) x.free();
    for (const { file } of fifosOf) await file.close();
    await disk.close();
    await client.close();
  });

  it('a reaction that aborts a batch whose completion waits in the same wake-up: both settle, and the loop goes on', async () => {
    const client = connect({ engine: 'io_uring' });
    const fifosOf = [await fifo(client), await fifo(client)];
    const [a, b] = [0, 1].map(() => client.alloc(4 * KiB));
    const ac = new AbortController();
    const first = fifosOf[0].file.batchRead([{ buffer: a, fileOffset: 0 }]).then((results) => {
      ac.abort(); // the abort's cancel reaps the second read's completion at once
      return results;
    });
    const second = fifosOf[1].file.batchRead([{ buffer: b, fileOffset: 0 }], { signal: ac.signal });
    setImmediate(() => fifosOf.forEach(({ write }, i) => write(Buffer.alloc(4 * KiB, i + 1))));
    expect(await first).toEqual([{ bytes: 4 * KiB, eof: false, error: null }]);
    // The second read had landed: the abort came too late to cancel it, but the batch still
    // rejects as aborted, with its result.
    const e = await second.then(() => null, (x: unknown) => x);
    expect(e).toMatchObject({ code: 'ABORT_ERR', results: [{ bytes: 4 * KiB, eof: false, error: null }] });
    await new Promise(setImmediate); // the event loop turns again
    for (const x of [a, b]) x.free();
    for (const { file } of fifosOf) await file.close();
    await client.close();
  });
});

describe('batches of every size, side by side, agree with node:fs', () => {
  // Up to 64 independent ops take the direct ring; bigger batches, ordered or checksummed ones, and
  // those past the client's queue depth take the ring threads, and so do buffered reads above 16 KiB.
  it('1 to 200 ops, buffered and O_DIRECT, registered and plain memory, 4 KiB to 1 MiB', async () => {
    const rng = new Rng(seedFor('direct-ring-mix'));
    const content = rng.bytes(32 * MiB);
    const path = tmp.path('mix');
    writeFileSync(path, content);
    const client = connect({ engine: 'io_uring', queueDepth: 96 });
    const auto = await client.open(path, 'r');
    const cached = await client.open(path, 'r', undefined, { direct: 'never' });
    const sizes = [1, 2, 8, 63, 64, 65, 200];
    const calls = sizes.flatMap((n, k) =>
      [auto, cached].map(async (file, j) => {
        const length = [4 * KiB, 20 * KiB, 1 * MiB][(k + j) % 3] / (n > 64 ? 4 : 1);
        const io = (k + j) % 2 ? client.alloc(n * length) : undefined;
        const plain = io ? undefined : Buffer.alloc(n * length);
        const buffer = (i: number) => (io ? io.subarray(i * length, (i + 1) * length) : plain!.subarray(i * length, (i + 1) * length));
        const landed = (i: number) => (io ? io.bytes : plain!).subarray(i * length, (i + 1) * length);
        const ops = Array.from({ length: n }, (_, i) => ({ buffer: buffer(i), fileOffset: Math.floor(rng.next() * ((content.length - length) / 4096)) * 4096 }));
        const results = await file.batchRead(ops);
        results.forEach((r, i) => {
          expect(r).toEqual({ bytes: length, eof: false, error: null });
          expect(landed(i).equals(content.subarray(ops[i].fileOffset, ops[i].fileOffset + length)), `${n} ops, op ${i}`).toBe(true);
        });
        io?.free();
      }),
    );
    await Promise.all(calls);
    await auto.close();
    await cached.close();
    await client.close();
  });

  it('a 1-op read past the end of the file, and writes of 1 op read back', async () => {
    const path = tmp.path('eof');
    writeFileSync(path, Buffer.alloc(6000, 9));
    const client = connect({ engine: 'io_uring' });
    const f = await client.open(path, 'r+');
    const io = client.alloc(8 * KiB);
    expect(await f.batchRead([{ buffer: io, fileOffset: 4096 }])).toEqual([{ bytes: 6000 - 4096, eof: true, error: null }]);
    io.bytes.fill(7);
    expect(await f.batchWrite([{ buffer: io, fileOffset: 8192 }])).toEqual([{ bytes: 8 * KiB, eof: false, error: null }]);
    const back = readFileSync(path);
    expect(back.length).toBe(16 * KiB);
    expect(back.subarray(8192).every((b) => b === 7)).toBe(true);
    io.free();
    await f.close();
    await client.close();
  });
});

describe('the event loop', () => {
  it('a process whose client has nothing in flight exits without close(); one with a read in flight waits for it', () => {
    const script = (pending: boolean) => `
      const { connect } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
      const { execFileSync } = require('node:child_process');
      const fs = require('node:fs');
      (async () => {
        const c = connect({ engine: 'io_uring' });
        const path = ${JSON.stringify(tmp.path('exit-'))} + process.pid;
        execFileSync('mkfifo', [path]);
        const f = await c.open(path, 'r+', undefined, { direct: 'never' });
        const io = c.alloc(4096);
        if (${pending}) {
          f.batchRead([{ buffer: io, fileOffset: 0 }]).then(([r]) => console.log('landed', r.bytes));
          setTimeout(() => { const fd = fs.openSync(path, 'w'); fs.writeSync(fd, Buffer.alloc(4096, 1)); fs.closeSync(fd); }, 100).unref();
        } else {
          fs.writeFileSync(path + '.txt', 'x');
          const g = await c.open(path + '.txt', 'r');
          const [r] = await g.batchRead([{ buffer: io, fileOffset: 0 }]);
          console.log('read', r.bytes);
        }
      })();`;
    const idle = spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8', timeout: 30_000 });
    expect(idle.stderr).toBe('');
    expect(idle.stdout.trim()).toBe('read 1');
    expect(idle.status).toBe(0);
    const busy = spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8', timeout: 30_000 });
    expect(busy.stderr).toBe('');
    expect(busy.stdout.trim()).toBe('landed 4096');
    expect(busy.status).toBe(0);
  });
});
