// KVCache crash safety (lib/kvcache/kvcache.ts). The requirement: after kill -9 at any moment,
// every entry is either whole or a miss, and the cache opens again without a full scan.
// - A crash loop: a child process puts pages (bytes a pure function of the key) and is killed with
//   SIGKILL 20-200 ms in; this process reopens the cache (a new instance, nothing in memory) and
//   gets every key ever attempted: each is a miss or exactly its bytes. Every tenth round, bytes
//   are flipped at random in the shard files first: they must turn into misses too.
// - Opening a 1 TiB cache (sparse files) reads nothing from the shard files.
// Runs on both engines (vitest.config.ts); on hf3fs the child gets the mount in its options.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../../lib/index';
import { KVCache, type KVNamespace } from '../../lib/kvcache/kvcache';
import { DIST_LIB, ENGINE, FIXTURES, HF3FS, Rng, TIME_SCALE, crash, firstDiff, makeTmpDir, seedFor, sleep, testConnect } from '../helpers';

const { payloadOf } = createRequire(__filename)('../fixtures/kvcache-payload.cjs') as { payloadOf: (key: string, max: number) => Buffer };

const tmp = makeTmpDir('kvcache-crash');
let client: Client;
beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client?.close();
  tmp.cleanup();
});

const NS: KVNamespace = { model: 'crash-llm', dtype: 'fp8', layout: 'HND', rank: 3 };
const libDir = DIST_LIB;

interface Round {
  code: number | null;
  signal: NodeJS.Signals | null;
  ready: boolean;
  attempted: string[];
  stdout: string;
  stderr: string;
}

/**
 * Runs the child for one round and kills it `killAfterMs` after its `putsBeforeKill`-th put has
 * settled: counted in puts, not time, so a slow machine still kills it mid-work with pages stored.
 */
function crashRound(options: object, round: number, seed: number, putsBeforeKill: number, killAfterMs: number): Promise<Round> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(FIXTURES, 'kvcache-crash-worker.cjs'), libDir, JSON.stringify(options), String(round), String(seed)], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let ready = false;
    let armed = false;
    let killed: Promise<void> | undefined;
    child.stdout.on('data', (d) => {
      stdout += d;
      ready ||= stdout.startsWith('ready\n');
      if (ready && !armed && (stdout.match(/^p$/gm)?.length ?? 0) >= putsBeforeKill) {
        armed = true;
        setTimeout(() => (killed = crash(child)), killAfterMs);
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code, signal) => {
      const attempted: string[] = [];
      for (const line of stdout.split('\n')) {
        const [tag, ...rest] = line.split(' ');
        if (tag === 'k') {
          const [first, count] = rest.map(Number);
          for (let j = 0; j < count; j++) attempted.push(`r${round}-${first + j}`);
        } else if (tag === 'o') attempted.push(...rest);
      }
      void Promise.resolve(killed).then(() => done({ code, signal, ready, attempted, stdout, stderr }), fail);
    });
  });
}

/** Flips `n` random bytes of the shard files (the test's own fd, not the cache's). */
function flipBytes(root: string, shards: number, n: number, rng: Rng): void {
  for (let k = 0; k < n; k++) {
    const path = join(root, `shard-${String(rng.int(0, shards - 1)).padStart(4, '0')}.kv`);
    const at = rng.int(0, statSync(path).size - 1);
    const fd = openSync(path, 'r+');
    try {
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      b[0] ^= 1 << rng.int(0, 7);
      writeSync(fd, b, 0, 1, at);
    } finally {
      closeSync(fd);
    }
  }
}

describe('KVCache crash safety', () => {
  it('crash loop: 50 rounds of kill -9 during puts, reopen, every key ever attempted is a miss or exactly its bytes; flipped bytes are misses', async () => {
    // 64 sets x 4 ways of 24 KiB pages (~7 MiB): the children churn it, so slots are overwritten
    // (evictions) while they are killed.
    const pageBytes = 24 * 1024 - 100;
    const options = { root: tmp.path('loop'), namespace: NS, pageBytes, capacityBytes: 64 * (4096 + 4 * (4096 + 24 * 1024)), ways: 4, shards: 4, mount: HF3FS?.mount };
    const rng = new Rng(seedFor('kvcache-crash-loop'));
    const ever = new Set<string>();
    const BATCH = 512;
    const intoBufs = Array.from({ length: BATCH }, () => Buffer.alloc(pageBytes));
    const totals = { rounds: 0, killed: 0, hits: 0, misses: 0, corrupt: 0, raced: 0, repaired: 0, flipRounds: 0, flipCorrupt: 0, hitRounds: 0 };
    const started = Date.now();
    let childMs = 0;
    let verifyMs = 0;
    for (let round = 0; round < 50; round++) {
      const c0 = Date.now();
      const r = await crashRound(options, round, rng.int(1, 2 ** 31), rng.int(1, 12), rng.int(0, 30));
      expect(r.ready, `round ${round}: child never opened the cache: ${r.stdout} ${r.stderr}`).toBe(true);
      expect(r.stdout, `round ${round}`).not.toMatch(/^error /m);
      if (r.signal === 'SIGKILL') totals.killed++;
      else expect(r.code, `round ${round}: ${r.stderr}`).toBe(0);
      for (const k of r.attempted) ever.add(k);
      const flip = round % 10 === 9;
      if (flip) {
        flipBytes(options.root, options.shards, 64, rng);
        totals.flipRounds++;
      }

      // Reopen: a new instance, nothing in memory. Every key ever attempted, in batches of 512,
      // alternately into the caller's memory (zeroed first) and lent from the pool.
      const v0 = Date.now();
      childMs += v0 - c0;
      const cache = await KVCache.open({ ...options, client });
      const keys = [...ever];
      let roundHits = 0;
      for (let at = 0; at < keys.length; at += BATCH) {
        const batch = keys.slice(at, at + BATCH);
        const into = (at / BATCH) % 2 === 1 ? intoBufs.slice(0, batch.length).map((b) => b.fill(0)) : undefined;
        const got = await cache.get(batch, into);
        got.forEach((g, i) => {
          if (g.status !== 'hit') return;
          roundHits++;
          const want = payloadOf(batch[i], pageBytes);
          const bytes = into ? into[i].subarray(0, g.bytes) : g.buffer!;
          expect(g.bytes, batch[i]).toBe(want.length);
          expect(firstDiff(bytes, want), `round ${round}: ${batch[i]} came back with other bytes`).toBe(-1);
        });
        cache.recycle(got);
      }
      const s = cache.stats();
      await cache.close();
      verifyMs += Date.now() - v0;
      totals.rounds++;
      totals.hits += roundHits;
      totals.misses += keys.length - roundHits;
      totals.corrupt += s.corrupt;
      totals.raced += s.raced;
      totals.repaired += s.repaired;
      if (flip) totals.flipCorrupt += s.corrupt;
      if (roundHits > 0) totals.hitRounds++;
    }
    if (process.env.KV_DEBUG) console.log(JSON.stringify({ ...totals, keys: ever.size, ms: Date.now() - started, childMs, verifyMs }));
    expect(totals.rounds).toBe(50);
    expect(totals.killed).toBeGreaterThanOrEqual(45); // the children were killed mid-work, not done
    expect(totals.hits).toBeGreaterThan(0);
    expect(totals.hitRounds).toBeGreaterThanOrEqual(40);
    expect(totals.flipCorrupt).toBeGreaterThan(0); // flipped bytes were caught (as misses), not served
  }, 180_000 * TIME_SCALE); // 50 children, each a Node start: a loaded machine takes minutes


  it('open does not scan: a 1 TiB cache (sparse shard files) reopens without reading, in seconds not minutes', async () => {
    const TiB = 2 ** 40;
    const options = { client, root: tmp.path('big'), namespace: NS, pageBytes: 16 << 20, capacityBytes: TiB, ways: 8, shards: 16, overcommit: true };
    const written = client.metrics().writeBytes;
    const made = await KVCache.open(options);
    const g = made.geometry;
    expect(g.sets * (4096 + g.ways * g.slotBytes)).toBeGreaterThan(0.99 * TiB);
    await made.close();
    const before = client.metrics();
    const t0 = performance.now();
    const cache = await KVCache.open({ ...options, create: false });
    const ms = performance.now() - t0;
    const after = client.metrics();
    // The client's counters catch a scan through the client; the clock one through anything else
    // (1 TiB, even of holes, reads for minutes), with room for ASan and a loaded machine.
    expect(ms).toBeLessThan(10_000);
    expect(cache.stats().bytesRead).toBe(0);
    expect(after.readBytes - before.readBytes).toBe(0);
    expect(after.readOps - before.readOps).toBe(0);
    // Nothing was written to make it either: the shard files are holes. (3FS reports st_blocks
    // from the length, holes or not: there the writes are counted instead.)
    let allocated = 0;
    for (let s = 0; s < g.shards; s++) allocated += statSync(join(options.root, `shard-${String(s).padStart(4, '0')}.kv`)).blocks * 512;
    if (ENGINE === 'hf3fs') expect(client.metrics().writeBytes - written).toBeLessThan(1 << 20);
    else expect(allocated).toBeLessThan(1 << 20);
    // And it works: a lookup of 128 unseen keys is one batch of directory reads (128 x 4 KiB at most).
    const keys = Array.from({ length: 128 }, (_, i) => `big-${i}`);
    const r0 = client.metrics();
    expect(await cache.lookup(keys)).toBe(0);
    const r1 = client.metrics();
    expect(r1.readBytes - r0.readBytes).toBeLessThanOrEqual(128 * 4096);
    const page = payloadOf('big-0', 1 << 20);
    expect((await cache.put(['big-0'], [page]))[0].status).toBe('stored');
    const [hit] = await (await KVCache.open({ ...options, create: false })).get(['big-0']);
    expect(hit.status).toBe('hit');
    expect(firstDiff(hit.buffer!, page)).toBe(-1);
    await cache.close();
    await sleep(0);
  });
});
