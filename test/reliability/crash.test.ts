// Data safety under kill -9 (issue 5, point 5). A child process writes and is killed with SIGKILL
// 30-300 ms in, over and over; after each kill this process checks what is on disk.
// - File API: records of 4 KiB, 8 per batchWrite, then datasync(); the child says 'ack' only
//   after datasync resolved. Every acknowledged record reads back exactly; every block that passes
//   the record's own checks (magic, CRC32C) is exactly the record of its slot: nothing
//   half-written validates. Each slot is written once, so a later write cannot blur the oracle.
// - KVCache: keys acknowledged ('stored' or 'present') before the kill are hits with exactly their
//   bytes after it (the cache is far from full: nothing is evicted); every key attempted is a hit
//   with its bytes or a miss, never other bytes.
// (test/kvcache/kvcache-crash.test.ts kills puts 50 times over a small cache with evictions and flipped
// bytes; this one checks that acknowledged writes survive.)
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KVCache, crc32cSync } from '../../lib/index';
import { HF3FS, Rng, TIME_SCALE, crash, makeTmpDir, seedFor, testConnect } from '../helpers';
import { record } from './record';

const { recordOf, validRecord, payloadOf } = createRequire(__filename)('./fixtures/crash-records.cjs') as {
  recordOf: (slot: number, crc: (b: Uint8Array) => number) => Buffer;
  validRecord: (block: Buffer, crc: (b: Uint8Array) => number) => boolean;
  payloadOf: (key: string, max: number) => Buffer;
};

const tmp = makeTmpDir('crash');
afterAll(() => tmp.cleanup());
const libDir = join(resolve(__dirname, '..', '..'), 'dist', 'lib');
const ROUNDS = Number(process.env.THREEFS_CRASH_ROUNDS ?? 12);

interface Round {
  signal: NodeJS.Signals | null;
  code: number | null;
  acked: string[];
  tried: string[];
  stdout: string;
  stderr: string;
}

function crashRound(mode: 'file' | 'kv', options: object, first: number, killAfterMs: number): Promise<Round> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(__dirname, 'fixtures/crash-worker.cjs'), libDir, mode, JSON.stringify(options), String(first), '0'], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    let killed: Promise<void> | undefined;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!timer && stdout.includes('ready\n')) timer = setTimeout(() => (killed = crash(child)), killAfterMs);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000 * TIME_SCALE); // never ready: a hang
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      // Only whole lines count: the kill may cut the last one.
      const lines = stdout.split('\n').slice(0, -1);
      void Promise.resolve(killed).then(() => done({
        code,
        signal,
        stdout,
        stderr,
        acked: lines.filter((l) => l.startsWith('ack ')).map((l) => l.slice(4)),
        tried: lines.filter((l) => l.startsWith('try ')).flatMap((l) => l.slice(4).split(' ')),
      }), fail);
    });
  });
}

describe('kill -9 during writes', () => {
  it(`File API, ${ROUNDS} kills: every record acknowledged after datasync reads back exactly; no half-written record validates`, async () => {
    const rng = new Rng(seedFor('crash-file'));
    const path = tmp.path('records');
    const SLOTS = 64 * 1024; // 256 MiB sparse
    writeFileSync(path, '');
    const options = { path, mount: HF3FS?.mount };
    let next = 0, acked = 0, validUnacked = 0, torn = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const r = await crashRound('file', options, next, rng.int(30, 300));
      expect(r.stdout, `round ${round}: ${r.stderr}`).toContain('ready\n');
      expect(r.stdout, `round ${round}`).not.toMatch(/^error /m);
      expect(r.signal, `round ${round}: ${r.stderr}`).toBe('SIGKILL');
      const ackedSlots = new Set(r.acked.map(Number));
      acked += ackedSlots.size;
      // Read what the round may have touched: its slots up to a margin past the last ack.
      const last = ackedSlots.size ? Math.max(...ackedSlots) : next;
      const end = Math.min(SLOTS, last + 64);
      const fd = openSync(path, 'r');
      const block = Buffer.alloc(4096);
      for (let slot = next; slot < end; slot++) {
        const n = readSync(fd, block, 0, 4096, slot * 4096);
        if (n < 4096) block.fill(0, n);
        const valid = validRecord(block, crc32cSync);
        if (ackedSlots.has(slot)) {
          expect(valid, `round ${round}: acknowledged slot ${slot} does not validate`).toBe(true);
          expect(block.equals(recordOf(slot, crc32cSync)), `round ${round}: acknowledged slot ${slot} differs`).toBe(true);
        } else if (valid) {
          validUnacked++;
          expect(block.equals(recordOf(slot, crc32cSync)), `round ${round}: slot ${slot} validates with other bytes`).toBe(true);
        } else if (block.some((v) => v !== 0)) torn++;
      }
      closeSync(fd);
      next = end + 8;
    }
    expect(acked, 'the children must have acknowledged records').toBeGreaterThan(0);
    record('crash-file', { operations: acked, faults: ROUNDS, crashes: 0, leaks: 0, note: `${ROUNDS} SIGKILLs: ${acked} acknowledged records all exact; ${validUnacked} written but unacknowledged records whole; ${torn} blocks partly written, none validated` });
  }, 300_000);

  it(`KVCache, ${ROUNDS} kills: every acknowledged put is a hit with its bytes; every attempted key is its bytes or a miss`, async () => {
    const rng = new Rng(seedFor('crash-kv'));
    const pageBytes = 8 * 1024;
    // Room enough that no set overflows (an evicted key is a miss that is no fault): the children
    // try up to about 10,000 keys; in 1 GiB (10,485 sets of 8 ways) one set of this seed got 9 of
    // them, and the first was evicted. In 8 GiB (sparse files) a set would need 9 of 84,000.
    const options = { root: tmp.path('kv'), namespace: { model: 'crash', dtype: 'bf16' }, pageBytes, capacityBytes: 8 * 2 ** 30, mount: HF3FS?.mount };
    const client = testConnect();
    const ackedAll: string[] = [];
    const triedAll: string[] = [];
    let next = 0, hits = 0, misses = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const r = await crashRound('kv', options, next, rng.int(30, 300));
      expect(r.stdout, `round ${round}: ${r.stderr}`).toContain('ready\n');
      expect(r.stdout, `round ${round}`).not.toMatch(/^error /m);
      ackedAll.push(...r.acked);
      triedAll.push(...r.tried);
      next += r.tried.length + 64;
      const cache = await KVCache.open({ ...options, client });
      const acked = new Set(ackedAll);
      for (let at = 0; at < triedAll.length; at += 512) {
        const keys = triedAll.slice(at, at + 512);
        const got = await cache.get(keys);
        for (const [i, g] of got.entries()) {
          const want = payloadOf(keys[i], pageBytes);
          if (g.status === 'hit') {
            hits++;
            expect(Buffer.from(g.buffer!.subarray(0, g.buffer!.byteLength)).equals(want), `round ${round}: ${keys[i]} has other bytes`).toBe(true);
          } else {
            misses++;
            expect(acked.has(keys[i]), `round ${round}: acknowledged ${keys[i]} is a miss`).toBe(false);
          }
        }
        cache.recycle(got);
      }
      await cache.close();
    }
    await client.close();
    expect(ackedAll.length).toBeGreaterThan(0);
    record('crash-kvcache', { operations: triedAll.length, faults: ROUNDS, crashes: 0, leaks: 0, note: `${ROUNDS} SIGKILLs: ${ackedAll.length} acknowledged puts all hits with their bytes; ${triedAll.length} keys attempted, checked after every kill (${hits} hits, ${misses} misses, none with other bytes)` });
  }, 300_000);
});
