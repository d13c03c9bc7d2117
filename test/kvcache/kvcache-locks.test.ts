// The KVCache's lock across processes over a set's directory (lib/kvcache/dir-locks.ts): a put into
// a set whose directory another process holds waits (on timers, counted in stats().lockWaits) and
// goes on once it is released, or once that process dies: a crash leaves no set locked. Gets take
// no lock. Oracle: the put's settling, then a get of its bytes. Runs on every engine.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client, File } from '../../lib/index';
import { KVCache, type KVCacheOptions } from '../../lib/kvcache/kvcache';
import { shardName } from '../../lib/kvcache/meta';
import { DIST_LIB, eventually, makeTmpDir, testConnect } from '../helpers';

const tmp = makeTmpDir('kvcache-locks');
let client: Client;
beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client?.close();
  tmp.cleanup();
});

const PAGE = 4096;
let dirs = 0;

function options(): KVCacheOptions {
  return { client, root: tmp.path(`c${++dirs}`), namespace: { model: 'locks', dtype: 'bf16' }, pageBytes: PAGE, capacityBytes: 4 << 20, ways: 4, shards: 2 };
}

/** Where a key's set directory is: its shard file and the directory's offset there. */
function dirOf(cache: KVCache, root: string, key: string): { path: string; offset: number } {
  const { sets, shards, ways, slotBytes } = cache.geometry;
  const set = cache.idOf(key).readUIntLE(0, 6) % sets;
  return { path: join(root, shardName(set % shards)), offset: Math.floor(set / shards) * (4096 + ways * slotBytes) };
}

const turn = () => new Promise((r) => setImmediate(r));

/** Starts a put and waits until it found its set locked by another holder. */
async function blockedPut(cache: KVCache, key: string) {
  const page = Buffer.alloc(PAGE, 7);
  let settled = false;
  const putting = cache.put([key], [page]).finally(() => (settled = true));
  expect(await eventually(() => cache.stats().lockWaits, 1, turn), 'the put found the set locked').toBe(1);
  expect(settled, 'the put waits while the set is locked').toBe(false);
  return { putting, page, settled: () => settled };
}

describe('KVCache: sets locked across processes', () => {
  it('a put waits for a set whose directory another open file description holds, and stores once it is released; gets do not wait', async () => {
    const o = options();
    const cache = await KVCache.open(o);
    const other = await KVCache.open(o);
    try {
      const { path, offset } = dirOf(cache, o.root, 'k');
      expect((await cache.put(['k-before'], [Buffer.alloc(PAGE, 1)]))[0].status).toBe('stored');
      const holder = await client.open(path, 'r+');
      expect(holder.lockRange(offset, 4096, true)).toBe(true);
      const { putting, page } = await blockedPut(cache, 'k');
      // A get from another handle is not held up by the lock.
      expect((await other.get(['k-before']))[0].status).toBe('hit');
      expect(holder.lockRange(offset, 4096, false)).toBe(true);
      expect((await putting)[0].status).toBe('stored');
      const [got] = await other.get(['k']);
      expect(got.status).toBe('hit');
      expect(got.buffer!.equals(page)).toBe(true);
      await holder.close();
    } finally {
      await Promise.all([cache.close(), other.close()]);
    }
  });

  it('a process that dies holding a set leaves it unlocked: the waiting put stores', async () => {
    const o = options();
    const cache = await KVCache.open(o);
    try {
      const { path, offset } = dirOf(cache, o.root, 'k');
      const script = `
        const { connect } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
        (async () => {
          // Kept reachable: a collected File closes its descriptor, and its lock goes with it.
          globalThis.held = await connect().open(process.argv[1], 'r+');
          process.stdout.write(globalThis.held.lockRange(Number(process.argv[2]), 4096, true) ? 'locked' : 'busy');
          setInterval(() => {}, 1000); // holds it until killed
        })();`;
      const child = spawn(process.execPath, ['-e', script, path, String(offset)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const said = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
      expect(said).toBe('locked');
      const { putting, page } = await blockedPut(cache, 'k');
      child.kill('SIGKILL');
      expect((await putting)[0].status).toBe('stored');
      const [got] = await cache.get(['k']);
      expect(got.buffer!.equals(page)).toBe(true);
    } finally {
      await cache.close();
    }
  });

  it('File.lockRange: one open file description at a time; refused on a closed file and for bad ranges', async () => {
    const path = tmp.path('plain');
    const a = await client.open(path, 'w+');
    const b = await client.open(path, 'r+');
    try {
      expect(a.lockRange(0, 10, true)).toBe(true);
      expect(a.lockRange(0, 10, true), 'again on the same description').toBe(true);
      expect(b.lockRange(5, 1, true), 'part of a held range').toBe(false);
      expect(b.lockRange(10, 1, true), 'past it').toBe(true);
      expect(() => b.lockRange(-1, 1, true)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => b.lockRange(0, 0, true)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      await a.close();
      expect(b.lockRange(5, 1, true), 'closing the holder released it').toBe(true);
      expect(() => a.lockRange(0, 1, true)).toThrow(expect.objectContaining({ code: 'ERR_FILE_CLOSED' }));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
