// Issue 20 item 1: a deadline or an abort makes a big batch shorter, never longer. A timed-out or
// aborted batch of 100k ops builds no per-op error until one is read (each ThreeFSError costs a
// stack trace), and a batch is read a slice per turn of the event loop, so an abort meanwhile
// submits nothing. Checked by events (what ran before what, what reached the file), not by the clock.
import { readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreeFSError, type Client, type File, type IoOp } from '../../lib/index';
import { makeTmpDir, testConnect } from '../helpers';

const N = 100_000;
const tmp = makeTmpDir('big-batches');
let client: Client;

beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client.close();
  tmp.cleanup();
});

/** N one-byte writes, op i at offset i. */
function oneByteOps(): IoOp[] {
  const src = Buffer.alloc(N, 0x5a);
  return Array.from({ length: N }, (_, i) => ({ buffer: src.subarray(i, i + 1), fileOffset: i }));
}

async function fresh(name: string): Promise<File> {
  return client.open(tmp.path(name), 'w+');
}

describe('big batches with deadlines and aborts', () => {
  it('a timed-out batch: each failed op has an own, enumerable error made when first read, with its index and offset', async () => {
    const f = await fresh('deadline');
    try {
      const results = await f.batchWrite(oneByteOps(), { deadline: 0 }); // due before the call
      const failed = results.map((r, i) => [r, i] as const).filter(([r]) => r.bytes === 0 && Object.getOwnPropertyDescriptor(r, 'error')?.get);
      // Every op the deadline stopped is one whose error is not built yet.
      const stopped = results.filter((r) => r.bytes < 1).length;
      expect(stopped, 'a deadline before the call stops most of the batch').toBeGreaterThan(N / 2);
      expect(failed.length, 'results whose error is made on first read').toBe(stopped);
      for (const [r, i] of failed.slice(0, 50).concat(failed.slice(-50))) {
        expect(Object.keys(r)).toEqual(['bytes', 'eof', 'error']);
        const e = r.error!;
        expect(e).toBeInstanceOf(ThreeFSError);
        expect(e).toMatchObject({ code: 'ETIMEDOUT', syscall: 'write', index: i, offset: i, path: f.path });
        expect(r.error, 'the same error object on every read').toBe(e);
        expect({ ...r }.error).toBe(e);
      }
      // What the results say was written is what the file holds, and nothing else.
      const disk = readFileSync(f.path);
      const wrong = results.findIndex((r, i) => (disk[i] ?? 0) !== (r.bytes === 1 ? 0x5a : 0));
      expect(wrong, 'the first op whose byte on disk is not what its result says').toBe(-1);
    } finally {
      await f.close();
    }
  });

  it('aborted while its ops are being read: rejects with ABORT_ERR, nothing submitted, the file untouched', async () => {
    const f = await fresh('abort-prep');
    try {
      const ac = new AbortController();
      const writesBefore = client.metrics().writeOps;
      const pending = f.batchWrite(oneByteOps(), { signal: ac.signal }).then(
        () => null,
        (e: unknown) => e,
      );
      // The next turn of the event loop: before the fix, the whole batch had been read and submitted by then.
      setImmediate(() => ac.abort());
      const e = await pending;
      expect(e, 'the batch must not complete: the abort came while it was being read').toBeInstanceOf(ThreeFSError);
      expect((e as ThreeFSError).code).toBe('ABORT_ERR');
      expect((e as ThreeFSError).results, 'nothing was submitted, so there are no per-op results').toBeUndefined();
      expect(client.metrics().writeOps - writesBefore).toBe(0);
      expect(statSync(f.path).size).toBe(0);
    } finally {
      await f.close();
    }
  });

  it('a big batch read across turns of the event loop still writes every op', async () => {
    const f = await fresh('whole');
    try {
      const results = await f.batchWrite(oneByteOps());
      expect(results.every((r) => r.error === null && r.bytes === 1)).toBe(true);
      expect(readFileSync(f.path).equals(Buffer.alloc(N, 0x5a))).toBe(true);
    } finally {
      await f.close();
    }
  });
});
