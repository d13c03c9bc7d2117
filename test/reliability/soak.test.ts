// Memory and descriptors under a long mixed load (issue 5, point 4). Rounds of mixed operations
// (batch reads and writes of 1 B to 256 KiB, registered and plain memory, alloc/free, open/close,
// KVCache put/get/lookup/delete, CRC32C, stat, aborted and timed-out batches); between rounds,
// with nothing in flight, it samples RSS, open descriptors, /dev/shm entries, mapped regions
// (/proc/self/maps lines), /dev/shm objects held (open or mapped) and iov mappings. After warm-up (the first quarter) all must be flat:
// descriptors, /dev/shm entries and iov mappings exactly, mappings within a few, RSS within a
// bound, and the second half's median RSS not above the first's by more than that bound.
// THREEFS_SOAK=long (npm run soak): 1e6 ops at least and at least 3 minutes per engine.
// Default (npm test): THREEFS_SOAK_OPS ops (1e6 on io_uring, 2e5 on the other engines).
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { KVCache, crc32c } from '../../lib/index';
import { EMBEDDED, ENGINE, KiB, MiB, Rng, collectGarbage, fdCount, firstDiff, iovMappings, makeTmpDir, seedFor, testConnect } from '../helpers';
import { record } from './record';

const LONG = process.env.THREEFS_SOAK === 'long';
const OPS = Number(process.env.THREEFS_SOAK_OPS ?? (LONG || (ENGINE === 'local' && EMBEDDED === 'io_uring') ? 1e6 : 2e5));
const MIN_MS = LONG ? 180_000 : 0;
// Under ASan freed memory is held back (quarantine_size_mb, scripts/sanitize-env.sh) and fills
// over the run: it is added to the RSS bounds.
const QUARANTINE_MIB = Number(/quarantine_size_mb=(\d+)/.exec(process.env.ASAN_OPTIONS ?? '')?.[1] ?? 0);
const RSS_SLACK_MIB = Number(process.env.THREEFS_SOAK_RSS_MIB ?? 48) + QUARANTINE_MIB;

const tmp = makeTmpDir('soak');
afterAll(() => tmp.cleanup());

interface Sample {
  ops: number;
  rss: number;
  fds: number;
  shm: number;
  maps: number;
  iovs: number;
}

/**
 * /dev/shm objects this process holds: open or mapped (named or already unlinked). Counting
 * /dev/shm itself would count the other test processes' iovs too.
 */
function shmHeld(maps: string): number {
  const held = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith('/dev/shm/')) held.add(target);
    } catch {
      /* closed meanwhile */
    }
  }
  for (const line of maps.split('\n')) {
    const at = line.indexOf('/dev/shm/');
    if (at >= 0) held.add(line.slice(at));
  }
  return held.size;
}

function sample(ops: number): Sample {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  const maps = readFileSync('/proc/self/maps', 'utf8');
  return { ops, rss, fds: fdCount(), shm: shmHeld(maps), maps: maps.split('\n').length, iovs: iovMappings() };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

describe('soak', () => {
  it(`${OPS} mixed operations${LONG ? ' (long mode: at least 3 minutes)' : ''}: RSS, descriptors, /dev/shm, mappings flat after warm-up`, async () => {
    const rng = new Rng(seedFor('soak'));
    const client = testConnect({ queueDepth: 64 });
    const SIZE = 8 * MiB;
    const path = tmp.path('data');
    const model = rng.bytes(SIZE);
    writeFileSync(path, model);
    const file = await client.open(path, 'r+');
    const cache = await KVCache.open({ root: tmp.path('kv'), client, namespace: { model: 'soak', dtype: 'bf16' }, pageBytes: 64 * KiB, capacityBytes: 64 * MiB, poolBytes: 8 * MiB });
    const memory = client.alloc(4 * MiB);
    const plain = new Uint8Array(4 * MiB);
    const samples: Sample[] = [];
    const start = Date.now();
    let ops = 0, errors = 0, round = 0;
    const keyOf = (i: number) => Buffer.from(`soak-key-${i % 4096}`);
    while (ops < OPS || Date.now() - start < MIN_MS) {
      round++;
      // Reads: 1-64 ops, each its own part of the memory, checked against the model.
      const n = rng.int(1, 64);
      const len = rng.pick([1, 512, 4096, 16 * KiB, 64 * KiB]);
      const mem = rng.bool() ? memory.bytes : plain;
      const reads = Array.from({ length: n }, (_, i) => ({ buffer: rng.bool() && mem === memory.bytes ? memory.subarray(i * len, (i + 1) * len) : mem.subarray(i * len, (i + 1) * len), fileOffset: rng.int(0, SIZE - len) }));
      const rr = await file.batchRead(reads);
      ops += n;
      for (let i = 0; i < n; i++) {
        if (rr[i].bytes !== len) throw new Error(`round ${round} read ${i}: ${rr[i].bytes} bytes, ${rr[i].error?.code}`);
      }
      const k = rng.int(0, n - 1);
      if (firstDiff(mem.subarray(k * len, (k + 1) * len), model.subarray(reads[k].fileOffset, reads[k].fileOffset + len)) !== -1) throw new Error(`round ${round}: read ${k} differs`);
      // Writes: a few ops of fresh bytes into separate ranges, kept in the model.
      if (round % 2 === 0) {
        const w = rng.int(1, 16);
        const wl = rng.pick([512, 4096, 64 * KiB]);
        const base = rng.int(0, SIZE / wl - w - 1) * wl;
        const src = memory.bytes.subarray(0, w * wl);
        rng.fill(src);
        const wr = await file.batchWrite(Array.from({ length: w }, (_, i) => ({ buffer: memory.subarray(i * wl, (i + 1) * wl), fileOffset: base + i * wl })));
        if (wr.some((r) => r.error || r.bytes !== wl)) throw new Error(`round ${round}: a write failed`);
        model.set(src, base);
        ops += w;
      }
      // Every few rounds: alloc/free, open/close, stat, CRC32C, KVCache, a stopped batch.
      if (round % 5 === 0) {
        const b = client.alloc(rng.pick([4096, 64 * KiB, 1 * MiB]));
        b.bytes[0] = 1;
        b.free();
        const f = await client.open(path, 'r');
        await f.stat();
        await f.close();
        await crc32c(memory.bytes.subarray(0, 64 * KiB));
        ops += 5;
      }
      if (round % 3 === 0) {
        const keys = Array.from({ length: 8 }, () => keyOf(rng.int(0, 1 << 20)));
        const pages = keys.map((key) => Buffer.concat([key, Buffer.alloc(1000)]));
        await cache.put(keys, pages);
        const got = await cache.get(keys);
        for (const [i, g] of got.entries()) if (g.status === 'hit' && Buffer.compare(g.buffer!.subarray(0, pages[i].length), pages[i]) !== 0) throw new Error(`round ${round}: KV hit with other bytes`);
        cache.recycle(got);
        await cache.lookup(keys);
        if (rng.bool(0.2)) await cache.delete([keys[0]]);
        ops += 3 * keys.length;
      }
      if (round % 7 === 0) {
        const ac = new AbortController();
        const p = file.batchRead(Array.from({ length: 32 }, (_, i) => ({ buffer: plain.subarray(i * 4096, (i + 1) * 4096), fileOffset: i * 4096 })), rng.bool() ? { signal: ac.signal } : { timeout: 0 });
        ac.abort();
        await p.catch(() => errors++);
        ops += 32;
      }
      if (round % 200 === 0) {
        await collectGarbage(1);
        samples.push(sample(ops));
      }
    }
    await collectGarbage(2);
    samples.push(sample(ops));
    const seconds = (Date.now() - start) / 1000;
    memory.free();
    await cache.close();
    await file.close();
    await client.close();

    expect(samples.length, 'too few samples').toBeGreaterThanOrEqual(8);
    const settled = samples.slice(Math.floor(samples.length / 4));
    const first = settled[0];
    const rssAll = settled.map((s) => s.rss);
    const half = Math.floor(settled.length / 2);
    const summary = `${ops} ops in ${seconds.toFixed(0)} s, ${samples.length} samples; after warm-up RSS ${Math.min(...rssAll).toFixed(0)}-${Math.max(...rssAll).toFixed(0)} MiB, fds ${first.fds}, /dev/shm ${first.shm}, maps ${Math.min(...settled.map((s) => s.maps))}-${Math.max(...settled.map((s) => s.maps))}, iovs ${first.iovs}`;
    for (const s of settled) {
      expect(s.fds, `descriptors at ${s.ops} ops (${summary})`).toBe(first.fds);
      expect(s.shm, `/dev/shm entries at ${s.ops} ops`).toBe(first.shm);
      expect(s.iovs, `iov mappings at ${s.ops} ops`).toBe(first.iovs);
      // V8 maps and unmaps its heap pages as it grows and shrinks: a few dozen either way is
      // noise; a leak of one region per alloc() would be hundreds.
      expect(Math.abs(s.maps - first.maps), `mapped regions at ${s.ops} ops (${summary})`).toBeLessThanOrEqual(128);
      expect(s.rss - first.rss, `RSS at ${s.ops} ops (${summary})`).toBeLessThan(RSS_SLACK_MIB);
    }
    expect(median(rssAll.slice(half)) - median(rssAll.slice(0, half)), `RSS trend (${summary})`).toBeLessThan((RSS_SLACK_MIB - QUARANTINE_MIB) / 2 + QUARANTINE_MIB);
    record(LONG ? 'soak-long' : 'soak', { operations: ops, faults: errors, crashes: 0, leaks: 0, note: summary });
  }, LONG ? 1_800_000 : 600_000);
});
