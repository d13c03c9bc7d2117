// IoOp.crc32c: checksums the engine takes on its own thread as each op's turn comes (sealed into a
// write's buffer before it goes out, taken from a read's bytes once they land). The oracle is the
// table-driven software CRC32C (crc32c.test.ts checks it against published vectors) over the bytes
// node:fs sees in the file. Runs on every engine; on hf3fs, memory that is not an iov is bounced.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Crc32cRange, IoBuffer } from '../../lib/index';
import { native } from '../../lib/core/native';
import { failure, KiB, makeTmpDir, MiB, Rng, seedFor, withClient } from '../helpers';

/** A batch op with its checksum range always set, as these tests build them. */
interface CheckedOp {
  buffer: IoBuffer | Uint8Array;
  fileOffset: number;
  crc32c: Crc32cRange;
}

const tmp = makeTmpDir('checksum');
afterAll(() => tmp.cleanup());

/** The reference: CRC32C in software, whatever the CPU offers. */
const softCrc = (bytes: Uint8Array): number => native().crc32cSync(bytes, true) >>> 0;

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng.next() * 256);
  return b;
}

// Every kernel this CPU has, then the fastest again with each op's checksum spread over 3 threads
// and over 1 (the engines cut ranges of 512 KiB and more into pieces and join their CRCs).
const { supported, current } = native().crc32cKernels();
const runs: { kernel: string; threads?: number }[] = [...supported.map((kernel) => ({ kernel })), { kernel: current, threads: 3 }, { kernel: current, threads: 1 }];

for (const run of runs) {
  describe(`IoOp.crc32c, kernel ${run.kernel}${run.threads ? `, ${run.threads} checksum threads` : ''}`, () => {
    let before: { kernel: string; threads: number };
    beforeAll(() => {
      before = { kernel: native().setCrc32cKernel(run.kernel), threads: native().checksumThreads(run.threads) };
    });
    afterAll(() => {
      native().setCrc32cKernel(before.kernel);
      native().checksumThreads(before.threads);
    });

    it('writes: the CRC of the range lands at `at`, in the buffer and in the file, for random ranges and sizes', () =>
      withClient(async (client) => {
        const rng = new Rng(seedFor('crc32c writes'));
        const path = tmp.path('writes.bin');
        const f = await client.open(path, 'w+');
        const ops: CheckedOp[] = [];
        const expected: { at: number; fileOffset: number; crc: number }[] = [];
        let fileOffset = 0;
        for (let i = 0; i < 48; i++) {
          const length = 8 + Math.floor(rng.next() * (i % 3 === 0 ? 2 * MiB : 64 * KiB));
          const at = Math.floor(rng.next() * 4); // the CRC first, then the range after it
          const offset = at + 4 + Math.floor(rng.next() * (length - at - 4));
          const span = Math.floor(rng.next() * (length - offset + 1));
          // Every kind of memory: registered, a view of it, and plain JS memory (bounced on hf3fs).
          const buffer: IoBuffer | Uint8Array = i % 3 === 2 ? new Uint8Array(length) : client.alloc(length);
          const bytes = buffer instanceof Uint8Array ? buffer : buffer.bytes;
          bytes.set(randomBytes(rng, length));
          expected.push({ at, fileOffset, crc: softCrc(bytes.subarray(offset, offset + span)) });
          ops.push({ buffer: i % 3 === 1 ? (buffer as IoBuffer).bytes : buffer, fileOffset, crc32c: { offset, length: span, at } });
          fileOffset += length + 512;
        }
        const results = await f.batchWrite(ops);
        await f.close();
        const file = readFileSync(path);
        results.forEach((r, i) => {
          expect(r.error).toBeNull();
          expect(r.crc32c).toBeUndefined();
          const b = ops[i].buffer;
          const bytes = b instanceof Uint8Array ? b : b.bytes;
          expect(Buffer.from(bytes.buffer, bytes.byteOffset + expected[i].at, 4).readUInt32LE(0), `op ${i} buffer`).toBe(expected[i].crc);
          expect(file.readUInt32LE(expected[i].fileOffset + expected[i].at), `op ${i} file`).toBe(expected[i].crc);
        });
      }));

    it('reads: each result carries the CRC of its range as read; short reads (end of file) and empty ranges too', () =>
      withClient(async (client) => {
        const rng = new Rng(seedFor('crc32c reads'));
        const path = tmp.path('reads.bin');
        const content = randomBytes(rng, 3 * MiB + 123);
        writeFileSync(path, content);
        const f = await client.open(path, 'r');
        const ops: CheckedOp[] = [];
        for (let i = 0; i < 64; i++) {
          const length = 1 + Math.floor(rng.next() * (i % 4 === 0 ? MiB : 32 * KiB));
          const fileOffset = Math.floor(rng.next() * (content.length + 4096)); // some past the end
          const offset = Math.floor(rng.next() * length);
          const span = i % 9 === 0 ? 0 : Math.floor(rng.next() * (length - offset + 1));
          const buffer = i % 2 ? client.alloc(length) : new Uint8Array(length);
          ops.push({ buffer, fileOffset, crc32c: { offset, length: span } });
        }
        const results = await f.batchRead(ops);
        await f.close();
        results.forEach((r, i) => {
          expect(r.error).toBeNull();
          const { offset, length } = ops[i].crc32c;
          const b = ops[i].buffer;
          const bytes = b instanceof Uint8Array ? b : b.bytes;
          // Over the buffer as it is after the read: where the file ended, what the buffer held.
          expect(r.crc32c, `op ${i}`).toBe(softCrc(bytes.subarray(offset, offset + length)));
          const want = content.subarray(ops[i].fileOffset, ops[i].fileOffset + bytes.byteLength);
          expect(Buffer.compare(Buffer.from(bytes.buffer, bytes.byteOffset, r.bytes), want), `op ${i} bytes`).toBe(0);
        });
        // Ops that did not ask carry no crc32c, in the same batch as ops that did.
        const g = await client.open(path, 'r');
        const [asked, plain] = await g.batchRead([
          { buffer: new Uint8Array(100), fileOffset: 0, crc32c: { offset: 0, length: 100 } },
          { buffer: new Uint8Array(100), fileOffset: 100 },
        ]);
        await g.close();
        expect(asked.crc32c).toBe(softCrc(content.subarray(0, 100)));
        expect(plain.crc32c).toBeUndefined();
      }));

    it('a write sealed with its CRC reads back with the same CRC (round trip through the engine alone)', () =>
      withClient(async (client) => {
        const path = tmp.path('roundtrip.bin');
        const f = await client.open(path, 'w+');
        const slots = Array.from({ length: 16 }, (_, i) => {
          const b = client.alloc(4096 + (i + 1) * 64 * KiB);
          b.bytes.fill(i + 1, 4096);
          return b;
        });
        await f.batchWrite(slots.map((b, i) => ({ buffer: b, fileOffset: i * 2 * MiB, crc32c: { offset: 4096, length: b.byteLength - 4096, at: 64 } })));
        const back = slots.map((b) => client.alloc(b.byteLength));
        const rs = await f.batchRead(back.map((b, i) => ({ buffer: b, fileOffset: i * 2 * MiB, crc32c: { offset: 4096, length: b.byteLength - 4096 } })));
        await f.close();
        rs.forEach((r, i) => expect(r.crc32c).toBe(back[i].bytes.readUInt32LE(64)));
      }));

    it('bad requests are refused before anything is written, naming the op', () =>
      withClient(async (client) => {
        const path = tmp.path('bad.bin');
        writeFileSync(path, Buffer.alloc(8192, 7));
        const f = await client.open(path, 'r+');
        const b = client.alloc(4096);
        b.bytes.fill(1);
        const bad: [string, unknown, boolean][] = [
          ['ERR_INVALID_ARG_TYPE', 5, true],
          ['ERR_INVALID_ARG_TYPE', null, false],
          ['ERR_OUT_OF_RANGE', { offset: 4000, length: 100, at: 0 }, true], // past the op
          ['ERR_OUT_OF_RANGE', { offset: -1, length: 10, at: 100 }, true],
          ['ERR_OUT_OF_RANGE', { offset: 0, length: 1.5, at: 100 }, true],
          ['ERR_OUT_OF_RANGE', { offset: 0, length: 100, at: 98 }, true], // `at` inside the range
          ['ERR_OUT_OF_RANGE', { offset: 8, length: 100, at: 4093 }, true], // `at` past the op
          ['ERR_OUT_OF_RANGE', { offset: 8, length: 100 }, true], // a write needs `at`
          ['ERR_INVALID_ARG_VALUE', { offset: 0, length: 100, at: 200 }, false], // `at` on a read
          ['ERR_OUT_OF_RANGE', { offset: 0, length: 4097 }, false],
        ];
        for (const [code, crc32c, write] of bad) {
          const ops = [
            { buffer: b, fileOffset: 0 },
            { buffer: b, fileOffset: 4096, crc32c: crc32c as never },
          ];
          const e = await failure(() => (write ? f.batchWrite(ops) : f.batchRead(ops.slice(1))));
          expect(e.code, JSON.stringify(crc32c)).toBe(code);
          expect(e.index).toBe(write ? 1 : 0);
        }
        await f.close();
        // Nothing was written: neither the op before nor a CRC into the buffer.
        expect(readFileSync(path).equals(Buffer.alloc(8192, 7))).toBe(true);
        expect(b.bytes.every((x) => x === 1)).toBe(true);
      }));

    it('many batches at once, each op checksummed, on all rings', () =>
      withClient(async (client) => {
        const path = tmp.path('many.bin');
        const f = await client.open(path, 'w+');
        const rng = new Rng(seedFor('crc32c many'));
        const pages = Array.from({ length: 256 }, () => {
          const b = client.alloc(4096 + 16 * KiB);
          b.bytes.set(randomBytes(rng, 16 * KiB), 4096);
          return b;
        });
        const batches = [];
        for (let k = 0; k < pages.length; k += 16) {
          batches.push(f.batchWrite(pages.slice(k, k + 16).map((b, i) => ({ buffer: b, fileOffset: (k + i) * 20 * KiB, crc32c: { offset: 4096, length: 16 * KiB, at: 0 } }))));
        }
        await Promise.all(batches);
        const reads = [];
        const into = pages.map(() => client.alloc(4096 + 16 * KiB));
        for (let k = 0; k < pages.length; k += 16) {
          reads.push(f.batchRead(into.slice(k, k + 16).map((b, i) => ({ buffer: b, fileOffset: (k + i) * 20 * KiB, crc32c: { offset: 4096, length: 16 * KiB } }))));
        }
        const results = (await Promise.all(reads)).flat();
        await f.close();
        results.forEach((r, i) => {
          expect(r.crc32c).toBe(softCrc(pages[i].bytes.subarray(4096)));
          expect(into[i].bytes.readUInt32LE(0)).toBe(r.crc32c);
        });
      }));
  });
}
