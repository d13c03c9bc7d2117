// KVCache (lib/kvcache/kvcache.ts) against an oracle: every page's bytes are a function of its key (as in a
// real KV cache, where the key is a hash of the tokens), so any hit must be exactly those bytes;
// what must be present (just stored, not evicted) is tracked in a Map. Runs on both engines.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BatchOptions, Client, FileIoOp } from '../../lib/index';
import { KVCache, type KVCacheOptions, type KVNamespace, type KVPayload } from '../../lib/kvcache/kvcache';
import { errnoError, ThreeFSError } from '../../lib/core/errors';
import { native } from '../../lib/core/native';
import { DIST_LIB, ENGINE, FIXTURES, HF3FS, KiB, Rng, failure, firstDiff, iovMappings, makeTmpDir, seedFor, settledWithin, testConnect } from '../helpers';

const tmp = makeTmpDir('kvcache');
let client: Client;
beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client?.close();
  tmp.cleanup();
});

const NS: KVNamespace = { model: 'tiny-llm', dtype: 'bf16', layout: 'NHD', rank: 0 };
const PAGE = 20_000; // not a multiple of 4 KiB on purpose
let dirs = 0;

function options(extra: Partial<KVCacheOptions> = {}): KVCacheOptions {
  return { client, root: tmp.path(`c${dirs}`), namespace: NS, pageBytes: PAGE, capacityBytes: 8 << 20, ways: 4, shards: 4, ...extra };
}

/** A new cache directory and a cache on it; `again()` opens another instance (fresh index) on the same directory. */
async function fresh(extra: Partial<KVCacheOptions> = {}) {
  dirs++;
  const o = options(extra);
  const cache = await KVCache.open(o);
  const opened: KVCache[] = [cache];
  return {
    cache,
    o,
    again: async (more: Partial<KVCacheOptions> = {}) => {
      const c = await KVCache.open({ ...o, ...more });
      opened.push(c);
      return c;
    },
    close: () => Promise.all(opened.map((c) => c.close())),
  };
}

/** The page of a key: its bytes depend on the key only (length in [0, max]). */
function pageOf(key: string, max = PAGE): Buffer {
  const rng = new Rng(seedFor(`page:${key}`));
  return rng.bytes(rng.int(0, max));
}

function expectHit(r: { status: string; bytes?: number; buffer?: Uint8Array }, want: Buffer, what: string): void {
  expect(r.status, what).toBe('hit');
  expect(r.bytes, what).toBe(want.length);
  if (r.buffer) {
    expect(r.buffer.byteLength, what).toBe(want.length);
    expect(firstDiff(r.buffer, want), what).toBe(-1);
  }
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string): Promise<ThreeFSError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(ThreeFSError);
  expect((err as ThreeFSError).code).toBe(code);
  return err as ThreeFSError;
}

type OpSeen = { write: boolean; fileOffset: number; length: number };

/** The test's client, but ops for which `failing(op)` is true fail with EIO without being submitted (the rest go in one batch, as asked). */
function flakyIo(): { flaky: Client; failWhen: (f: ((op: OpSeen) => boolean) | undefined) => void } {
  let failing: ((op: OpSeen) => boolean) | undefined;
  const batch = (target: Client, write: boolean) => async (ops: FileIoOp[], options?: BatchOptions) => {
    // errno per op: 5 (EIO) where it fails, 125 (ECANCELED) where it waits for one that fails (IoOp.after), 0 otherwise.
    const errnos: number[] = ops.map((op) => (failing?.({ write, fileOffset: op.fileOffset, length: op.length ?? op.buffer.byteLength }) ? 5 : 0));
    ops.forEach((op, i) => {
      if (op.after !== undefined && errnos[op.after] !== 0) errnos[i] ||= 125;
    });
    const kept: number[] = []; // kept[k]: the index in `ops` of the k-th op submitted
    const place = new Map<number, number>();
    ops.forEach((_, i) => errnos[i] === 0 && (place.set(i, kept.length), kept.push(i)));
    const rest = kept.map((i) => ({ ...ops[i], after: ops[i].after === undefined ? undefined : place.get(ops[i].after!) }));
    const done = rest.length > 0 ? await (write ? target.batchWrite(rest, options) : target.batchRead(rest, options)) : [];
    return ops.map((op, i) => (errnos[i] ? { bytes: 0, eof: false, error: errnoError(errnos[i], write ? 'write' : 'read', { path: op.file.path, offset: op.fileOffset, index: i }) } : done[place.get(i)!]));
  };
  const flaky = new Proxy(client, {
    get(target, prop) {
      if (prop === 'batchRead') return batch(target, false);
      if (prop === 'batchWrite') return batch(target, true);
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Client;
  return { flaky, failWhen: (f) => (failing = f) };
}

/** The test's client, but its alloc() fails (ENOMEM) `n` times after fail(n); fail() says how many are left. */
function flakyAlloc(): { flaky: Client; fail: (n: number) => number } {
  let left = 0;
  const flaky = new Proxy(client, {
    get(target, prop) {
      if (prop === 'alloc') {
        return (...args: Parameters<Client['alloc']>) => {
          if (left > 0) {
            left--;
            throw new ThreeFSError('ENOMEM', 'test: no memory');
          }
          return target.alloc(...args);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Client;
  return { flaky, fail: (n) => (n > 0 ? (left = n) : left) };
}


/** The way holding `id` in the first set of a shard file: the place of its 40-byte directory entry (id in its first 16 bytes). */
function wayIn(shard: Buffer, id: Uint8Array, ways: number): number {
  for (let w = 0; w < ways; w++) if (shard.subarray(w * 40, w * 40 + 16).equals(id)) return w;
  throw new Error('the key is not listed in the set');
}

describe('KVCache', () => {
  it('put/get round trip: byte-exact for random sizes up to pageBytes, with and without `into`', async () => {
    const t = await fresh({ capacityBytes: 64 << 20, ways: 8 });
    const rng = new Rng(seedFor('roundtrip'));
    const keys = Array.from({ length: 60 }, (_, i) => `rt-${i}-${rng.int(0, 1e9)}`);
    keys.push('empty-page');
    const pages = keys.map((k) => (k === 'empty-page' ? Buffer.alloc(0) : pageOf(k)));
    pages[1] = rng.bytes(PAGE); // a full page
    const put = await t.cache.put(keys, pages);
    expect(put.map((r) => r.status)).toEqual(keys.map(() => 'stored'));

    const read0 = t.cache.stats().bytesRead;
    const got = await t.cache.get(keys);
    got.forEach((r, i) => expectHit(r, pages[i], keys[i]));
    // Each hit reads the header's 512 bytes and the page padded to 4 KiB, in one op: not the
    // header's whole 4 KiB block (unless O_DIRECT needs 4 KiB alignment here, as on tmpfs).
    const shard = await client.open(join(t.o.root, 'shard-0000.kv'), 'r');
    const st = await shard.stat();
    await shard.close();
    const head = st.engine !== 'usrbio' && st.direct.active ? Math.min(4096, Math.max(512, st.direct.memoryAlign, st.direct.offsetAlign)) : 512;
    expect(t.cache.stats().bytesRead - read0).toBe(pages.reduce((a, p) => a + head + Math.ceil(p.length / 4096) * 4096, 0));

    // into: IoBuffers, plain Buffers and cache.alloc() buffers (header and payload in one op),
    // larger than the page; the rest of a plain Buffer is not touched.
    const into = keys.map((_, i) => (i % 3 === 1 ? client.alloc(PAGE + 100) : i % 3 === 2 ? t.cache.alloc(PAGE) : Buffer.alloc(PAGE + 100, 0xa5)));
    const opsBefore = client.metrics().readOps;
    const got2 = await t.cache.get(keys, into);
    got2.forEach((r, i) => {
      expectHit(r, pages[i], keys[i]);
      const b = into[i];
      const bytes = 'bytes' in b && !(b instanceof Buffer) ? b.bytes : (b as Buffer);
      expect(firstDiff(bytes.subarray(0, pages[i].length), pages[i])).toBe(-1);
      if (b instanceof Buffer) expect(b[pages[i].length]).toBe(0xa5);
    });
    // Two ops per page, but one for each cache.alloc() buffer.
    const hits = got2.filter((r) => r.status === 'hit').length;
    const roomy = got2.filter((r, i) => r.status === 'hit' && i % 3 === 2).length;
    expect(client.metrics().readOps - opsBefore).toBe(2 * hits - roomy);

    // A second instance (empty index) reads through the directories.
    const other = await t.again();
    const got3 = await other.get(keys);
    got3.forEach((r, i) => expectHit(r, pages[i], keys[i]));
    const s = t.cache.stats();
    expect(s).toMatchObject({ stored: keys.length, hits: 2 * keys.length, misses: 0, corrupt: 0, raced: 0, evicted: 0 });
    expect(s.bytesCopied).toBe(pages.reduce((a, p) => a + p.length, 0));
    expect(s.indexSize).toBe(keys.length);
    expect(other.stats()).toMatchObject({ hits: keys.length, indexSize: keys.length });
    await t.close();
  });

  it('get into buffers that share bytes (one named twice, overlapping views): ERR_OVERLAPPING_BUFFERS naming them, before any I/O', async () => {
    const t = await fresh();
    await t.cache.put(['a', 'b', 'c'], [pageOf('a'), pageOf('b'), pageOf('c')]);
    const roomy = t.cache.alloc(PAGE);
    const plain = Buffer.alloc(3 * PAGE);
    const io = client.alloc(3 * PAGE);
    const cases: [string, KVPayload[], number, number][] = [
      ['a cache.alloc() buffer twice', [roomy, client.alloc(PAGE), roomy], 2, 0],
      ['a Buffer twice', [plain, Buffer.alloc(PAGE), plain], 2, 0],
      ['overlapping views of one Buffer', [plain.subarray(0, PAGE), plain.subarray(2 * PAGE), plain.subarray(PAGE - 1, 2 * PAGE)], 2, 0],
      ['overlapping views of one IoBuffer', [io.subarray(PAGE, 2 * PAGE), io.subarray(0, PAGE + 1), io.subarray(2 * PAGE)], 1, 0],
      ['a Buffer over an IoBuffer and the IoBuffer', [Buffer.alloc(PAGE), io.bytes.subarray(10, 20), io.subarray(0, PAGE)], 2, 1],
    ];
    for (const [what, into, index, other] of cases) {
      const reads = client.metrics().readOps;
      const e = await failure(() => t.cache.get(['a', 'b', 'c'], into));
      expect(e.code, what).toBe('ERR_OVERLAPPING_BUFFERS');
      expect(e.index, what).toBe(index);
      expect(e.message, what).toContain(`into[${index}] overlaps into[${other}]`);
      expect(client.metrics().readOps, `${what}: no I/O`).toBe(reads);
    }
    // Neighbours that only touch are apart; so are empty views anywhere.
    const got = await t.cache.get(['a', 'b', 'c'], [plain.subarray(0, PAGE), plain.subarray(PAGE, 2 * PAGE), plain.subarray(2 * PAGE)]);
    got.forEach((r, i) => expect(r.status, `key ${i}`).toBe('hit'));
    ['a', 'b', 'c'].forEach((k, i) => expect(firstDiff(plain.subarray(i * PAGE, i * PAGE + pageOf(k).length), pageOf(k))).toBe(-1));
    const empty = await t.cache.get(['zz', 'a'], [plain.subarray(5, 5), plain.subarray(0, PAGE)]);
    expect(empty.map((r) => r.status)).toEqual(['miss', 'hit']);
    await t.close();
  });

  it.skipIf(ENGINE !== 'hf3fs')("hf3fs: a client whose iovs have a blockSize: the cache's own memory is one block, so no op crosses one", async () => {
    // alloc() gives every iov of this client 64 KiB blocks unless told otherwise; 3FS refuses an
    // op whose memory crosses a block. Slots of 24 KiB packed in the pool's slabs and staging
    // would cross them.
    const blocky = testConnect({ blockSize: 64 * KiB });
    try {
      const t = await fresh({ client: blocky, capacityBytes: 16 << 20 });
      const keys = Array.from({ length: 40 }, (_, i) => `blk-${i}`);
      const put = await t.cache.put(keys, keys.map((k) => pageOf(k))); // plain Buffers: copied into staging
      expect(put.map((r) => r.error?.message ?? r.status)).toEqual(keys.map(() => 'stored'));
      const got = await t.cache.get(keys); // into the pool's slabs
      got.forEach((r, i) => expectHit(r, pageOf(keys[i]), keys[i]));
      t.cache.recycle(got);
      const mine = keys.map(() => t.cache.alloc(PAGE));
      const got2 = await t.cache.get(keys, mine); // cache.alloc() memory: header and page in one op
      got2.forEach((r, i) => expect(r.status, keys[i]).toBe('hit'));
      await t.close();
    } finally {
      await blocky.close();
    }
  });

  it('dedup: a present key is not written again ("present"), from memory or from the directory; duplicates in one call too', async () => {
    const t = await fresh();
    const keys = ['a', 'b', 'c'];
    expect((await t.cache.put(keys, keys.map((k) => pageOf(k)))).map((r) => r.status)).toEqual(['stored', 'stored', 'stored']);
    const written = t.cache.stats().bytesWritten;
    expect((await t.cache.put(['a', 'b', 'd', 'd'], ['a', 'b', 'd', 'd'].map((k) => pageOf(k)))).map((r) => r.status)).toEqual(['present', 'present', 'stored', 'present']);
    const other = await t.again();
    expect((await other.put(['c', 'd'], [pageOf('c'), pageOf('d')])).map((r) => r.status)).toEqual(['present', 'present']);
    expect(other.stats()).toMatchObject({ present: 2, stored: 0, bytesWritten: 0 });
    expect(t.cache.stats().bytesWritten).toBeGreaterThan(written);
    expect(t.cache.stats()).toMatchObject({ stored: 4, present: 3 });
    await t.close();
  });

  it('zero-copy put from cache.alloc(): no staging copy, same bytes back', async () => {
    const t = await fresh();
    const want = pageOf('zc', PAGE);
    const p = t.cache.alloc(want.length);
    p.bytes.set(want);
    const q = t.cache.alloc(777);
    q.bytes.set(pageOf('zc2', 777).subarray(0, 777));
    const r = await t.cache.put(['zc', 'zc2'], [p, q]);
    expect(r.map((x) => x.status)).toEqual(['stored', 'stored']);
    expect(t.cache.stats().bytesCopied).toBe(0);
    const [g1, g2] = await (await t.again()).get(['zc', 'zc2']);
    expectHit(g1, want, 'zc');
    expectHit(g2, Buffer.from(q.bytes), 'zc2');
    await t.close();
  });

  it('cache.alloc() buffers of pages from under 1 MiB to 4 MiB: zero-copy put, get into them, byte-exact', async () => {
    const MiB = 1 << 20;
    const t = await fresh({ pageBytes: 4 * MiB, capacityBytes: 80 * MiB, shards: 2 });
    const sizes = [MiB - 4096, MiB, 3 * MiB, 4 * MiB];
    const bufs = sizes.map((n) => t.cache.alloc(n));
    const keys = sizes.map((n) => `big-${n}`);
    const pages = sizes.map((n, i) => new Rng(seedFor(keys[i])).bytes(n));
    bufs.forEach((b, i) => b.bytes.set(pages[i]));
    expect((await t.cache.put(keys, bufs)).map((r) => r.status)).toEqual(keys.map(() => 'stored'));
    expect(t.cache.stats().bytesCopied).toBe(0);
    const into = sizes.map((n) => t.cache.alloc(n));
    (await (await t.again()).get(keys, into)).forEach((r, i) => expectHit(r, pages[i], keys[i]));
    into.forEach((b, i) => expect(firstDiff(b.bytes, pages[i])).toBe(-1));
    await t.close();
  });

  it('namespace isolation: the same key under another dtype (or rank) is another entry', async () => {
    const t = await fresh();
    await t.cache.put(['shared-key'], [pageOf('shared-key')]);
    const fp8 = await t.again({ namespace: { ...NS, dtype: 'fp8' } });
    const rank1 = await t.again({ namespace: { ...NS, rank: 1 } });
    const same = await t.again({ namespace: { rank: 0, layout: 'NHD', dtype: 'bf16', model: 'tiny-llm' } }); // key order does not matter
    expect((await fp8.get(['shared-key']))[0].status).toBe('miss');
    expect(await fp8.exists(['shared-key'])).toEqual([false]);
    expect(await rank1.lookup(['shared-key'])).toBe(0);
    expectHit((await same.get(['shared-key']))[0], pageOf('shared-key'), 'same namespace');
    expect(fp8.namespaceHash.equals(t.cache.namespaceHash)).toBe(false);
    // fp8 stores its own page under the same key; bf16 still reads its own.
    const other = Buffer.from('fp8 bytes');
    expect((await fp8.put(['shared-key'], [other]))[0].status).toBe('stored');
    expectHit((await fp8.get(['shared-key']))[0], other, 'fp8');
    expectHit((await t.cache.get(['shared-key']))[0], pageOf('shared-key'), 'bf16');
    await t.close();
  });

  it('ids: SHA-256 of the namespace hash and the key (node:crypto), batched or not, with or without the addon\'s hashing', async () => {
    const t = await fresh();
    const oracle = (k: string | Uint8Array) => createHash('sha256').update(t.cache.namespaceHash).update(typeof k === 'string' ? Buffer.from(k, 'utf8') : k).digest().subarray(0, 16);
    const keys = ['k0', 'é🙂', '', 'x'.repeat(5000)]; // lone surrogates are refused (see below)
    const bytes = [Buffer.from('b0'), new Uint8Array([9, 9])];
    // A put hashes its keys in one batch; idOf then answers from the memo what that batch computed.
    expect((await t.cache.put([...keys, ...bytes], [...keys, ...bytes].map(() => Buffer.alloc(8)))).every((r) => r.status === 'stored')).toBe(true);
    for (const k of [...keys, ...bytes]) expect(t.cache.idOf(k).equals(oracle(k)), String(k).slice(0, 9)).toBe(true);
    // Without the addon's hashing: node:crypto, the same ids, found by a new instance.
    const saved = native().keyIds;
    (native() as { keyIds?: unknown }).keyIds = undefined;
    try {
      const c = await t.again();
      expect(await c.exists([...keys, ...bytes])).toEqual([...keys, ...bytes].map(() => true));
      for (const k of keys) expect(c.idOf(k).equals(oracle(k))).toBe(true);
    } finally {
      (native() as { keyIds?: unknown }).keyIds = saved;
    }
    await t.close();
  });

  it('string keys with a lone surrogate are refused (UTF-8 would make them another key: U+FFFD)', async () => {
    const t = await fresh();
    const c = t.cache;
    await rejectsWith(() => c.put(['a\uD800'], [pageOf('x')]), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.put(['ok', '\uDC00b'], [pageOf('x'), pageOf('y')]), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.get(['\uD800']), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.lookup(['\uD800']), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.exists(['\uD800']), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.delete(['\uD800']), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.idOf('\uD800'), 'ERR_INVALID_ARG_VALUE');
    expect(c.stats().bytesWritten).toBe(0);
    // What was refused is not stored under the key it would have collided with.
    expect((await c.get(['a\uFFFD']))[0].status).toBe('miss');
    // Surrogate pairs are fine, and distinct from U+FFFD.
    await c.put(['\u{1F600}'], [pageOf('emoji')]);
    expectHit((await c.get(['\u{1F600}']))[0], pageOf('emoji'), 'emoji');
    expect((await c.get(['\uFFFD\uFFFD']))[0].status).toBe('miss');
    await t.close();
  });

  it('lookup: the number of leading keys present, from memory or the directories; uint8 keys', async () => {
    const t = await fresh();
    const keys = ['p0', 'p1', 'p2', new Uint8Array([1, 2, 3]), 'p4'];
    await t.cache.put(keys, keys.map((_, i) => pageOf(`p${i}`)));
    expect(await t.cache.lookup(keys)).toBe(5);
    expect(await t.cache.lookup(['p0', 'p1', 'nope', 'p2'])).toBe(2);
    expect(await t.cache.lookup(['nope', 'p0'])).toBe(0);
    expect(await t.cache.lookup([])).toBe(0);
    const other = await t.again();
    expect(await other.lookup([...keys, 'nope', 'p0'])).toBe(5);
    expect(await other.lookup([keys[0], keys[1], new Uint8Array([1, 2, 4])])).toBe(2);
    expect(await other.exists(['p0', 'nope', new Uint8Array([1, 2, 3])])).toEqual([true, false, true]);
    await t.close();
  });

  it('lookups of seen keys follow the index from memory: delete, put again, eviction by another key', async () => {
    const t = await fresh({ ways: 1, shards: 1 });
    const { sets } = t.cache.geometry;
    const setOf = (k: string) => t.cache.idOf(k).readUIntLE(0, 6) % sets;
    const a = 'mem-a';
    let b = '';
    for (let i = 0; !b; i++) if (setOf(`mem-b${i}`) === setOf(a)) b = `mem-b${i}`;
    const fromMemory = async (keys: string[]) => {
      const before = client.metrics().batches;
      const n = await t.cache.lookup(keys);
      expect(client.metrics().batches, `lookup of ${keys.join(', ')}: no I/O`).toBe(before);
      return n;
    };
    await t.cache.put([a], [pageOf(a)]);
    expect(await fromMemory([a])).toBe(1);
    expect(await fromMemory([a])).toBe(1);
    await t.cache.delete([a]);
    expect(await t.cache.lookup([a])).toBe(0);
    expect(await t.cache.exists([a])).toEqual([false]);
    expect((await t.cache.put([a], [pageOf(a)]))[0].status).toBe('stored');
    expect(await fromMemory([a])).toBe(1);
    expectHit((await t.cache.get([a], [Buffer.alloc(PAGE)]))[0], pageOf(a), a);
    // One way per set: b takes a's slot, and this process's memory of a goes with it.
    expect((await t.cache.put([b], [pageOf(b)]))[0].status).toBe('stored');
    expect(t.cache.stats().evicted).toBe(1);
    expect(await t.cache.lookup([a])).toBe(0);
    expect(await fromMemory([b])).toBe(1);
    expect(await t.cache.exists([a, b])).toEqual([false, true]);
    expect((await t.cache.get([a]))[0].status).toBe('miss');
    const got = await t.cache.get([b]);
    expectHit(got[0], pageOf(b), b);
    t.cache.recycle(got);
    expect(t.cache.stats().indexSize).toBe(1);
    await t.close();
  });

  it('eviction at capacity: a full set gives up its oldest entry (stats.evicted), seen by other instances too', async () => {
    // One set of 3 ways: capacity is exactly one set region.
    const setBytes = 4096 + 3 * (4096 + 20480);
    const t = await fresh({ ways: 3, shards: 1, capacityBytes: setBytes });
    expect(t.cache.geometry).toMatchObject({ sets: 1, ways: 3, shards: 1 });
    for (const k of ['e1', 'e2', 'e3']) expect((await t.cache.put([k], [pageOf(k)]))[0].status).toBe('stored');
    expect(t.cache.stats().evicted).toBe(0);
    expect((await t.cache.put(['e4'], [pageOf('e4')]))[0].status).toBe('stored');
    expect(t.cache.stats().evicted).toBe(1);
    const got = await t.cache.get(['e1', 'e2', 'e3', 'e4']);
    expect(got.map((r) => r.status)).toEqual(['miss', 'hit', 'hit', 'hit']);
    // Another process's view: it evicts the next oldest (e2) for its own put.
    const other = await t.again();
    expect((await other.put(['e5'], [pageOf('e5')]))[0].status).toBe('stored');
    expect(other.stats().evicted).toBe(1);
    expect((await other.get(['e2', 'e3', 'e4', 'e5'])).map((r) => r.status)).toEqual(['miss', 'hit', 'hit', 'hit']);
    // The first instance's index still points at e2's old way: the header check makes it a miss.
    const [e2] = await t.cache.get(['e2']);
    expect(e2.status).toBe('miss');
    expect(t.cache.stats().raced).toBe(1);
    // More keys than ways in one call: the last ones win, all report stored, only 3 remain.
    const many = ['m1', 'm2', 'm3', 'm4', 'm5'];
    const r = await t.cache.put(many, many.map((k) => pageOf(k)));
    expect(r.filter((x) => x.status === 'failed').map((x) => x.error?.code)).toEqual(['ERR_KVCACHE_SET_FULL', 'ERR_KVCACHE_SET_FULL']);
    expect(r.filter((x) => x.status === 'stored').length).toBe(3);
    await t.close();
  });

  it('TTL: an expired entry is a miss and its way is reused first', async () => {
    const setBytes = 4096 + 2 * (4096 + 20480);
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: setBytes });
    await t.cache.put(['old'], [pageOf('old')]);
    // A TTL is wall-clock time: Date alone is faked (timers and I/O stay real), so the checks
    // before expiry take no time on its clock however loaded the machine, and expiry is one step.
    const TTL = 1000;
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const putAt = Date.now();
      await t.cache.put(['short'], [pageOf('short')], { ttlMs: TTL });
      vi.setSystemTime(putAt + TTL - 1);
      expectHit((await t.cache.get(['short']))[0], pageOf('short'), 'before expiry');
      expect(await (await t.again()).lookup(['short'])).toBe(1);
      vi.setSystemTime(putAt + TTL);
      expect((await t.cache.get(['short']))[0].status).toBe('miss');
      expect(await (await t.again()).exists(['short'])).toEqual([false]);
      expect(await t.cache.lookup(['short'])).toBe(0);
      // The expired way goes before the oldest live one ('old'), and that is not an eviction.
      await t.cache.put(['new'], [pageOf('new')]);
      expect((await t.cache.get(['old', 'new'])).map((r) => r.status)).toEqual(['hit', 'hit']);
      expect(t.cache.stats().evicted).toBe(0);
      // A TTL put of a key present is 'present' (dedup), not a refresh.
      expect((await t.cache.put(['old'], [pageOf('old')], { ttlMs: 1 }))[0].status).toBe('present');
    } finally {
      vi.useRealTimers();
    }
    await t.close();
  });

  it('concurrent puts in one process: a key is stored once, and no two calls pick the same free way', async () => {
    // One set of 8 ways: every call reads the same directory before any of them has written.
    const t = await fresh({ ways: 8, shards: 1, capacityBytes: 4096 + 8 * (4096 + 20480) });
    const same = await Promise.all([0, 1, 2].map(() => t.cache.put(['dup'], [pageOf('dup')])));
    expect(same.map((r) => r[0].status).sort()).toEqual(['present', 'present', 'stored']);
    const keys = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
    const rs = await Promise.all(keys.map((k) => t.cache.put([k], [pageOf(k)])));
    expect(rs.map((r) => r[0].status)).toEqual(keys.map(() => 'stored'));
    expect(t.cache.stats().evicted).toBe(0);
    // Seen from another instance (directories only, nothing in its memory): all seven are there.
    const other = await t.again();
    const got = await other.get(['dup', ...keys]);
    got.forEach((g, i) => expectHit(g, pageOf(['dup', ...keys][i]), ['dup', ...keys][i]));
    await t.close();
  });

  it('close() during puts and gets lets them finish: nothing fails with a closed file, and what was stored is there', async () => {
    const t = await fresh();
    await t.cache.put(['before'], [pageOf('before')]);
    const keys = Array.from({ length: 24 }, (_, i) => `closing-${i}`);
    const puts = keys.map((k) => t.cache.put([k], [pageOf(k)]));
    const get = t.cache.get(['before']);
    const closed = t.cache.close();
    const rs = await Promise.all(puts);
    expect(rs.map((r) => r[0].status)).toEqual(keys.map(() => 'stored'));
    expectHit((await get)[0], pageOf('before'), 'before');
    await closed;
    await expect(t.cache.put(['late'], [pageOf('late')])).rejects.toMatchObject({ code: 'ERR_KVCACHE_CLOSED' });
    const other = await t.again();
    (await other.get(keys)).forEach((g, i) => expectHit(g, pageOf(keys[i]), keys[i]));
    await t.close();
  });

  it('pins: lookup({ pin: true }) keeps entries from this process evicting them until release()', async () => {
    const setBytes = 4096 + 2 * (4096 + 20480);
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: setBytes });
    await t.cache.put(['a'], [pageOf('a')]);
    await t.cache.put(['b'], [pageOf('b')]);
    expect(await t.cache.lookup(['a'], { pin: true })).toBe(1);
    expect(t.cache.stats().pinned).toBe(1);
    await t.cache.put(['c'], [pageOf('c')]); // evicts b, not the older but pinned a
    await t.cache.put(['d'], [pageOf('d')]); // evicts c
    expect((await t.cache.get(['a', 'b', 'c', 'd'])).map((r) => r.status)).toEqual(['hit', 'miss', 'miss', 'hit']);
    // Both ways pinned: nothing can be stored in the set.
    expect(await t.cache.lookup(['a', 'd'], { pin: true })).toBe(2);
    const [full] = await t.cache.put(['e'], [pageOf('e')]);
    expect(full.status).toBe('failed');
    expect(full.error?.code).toBe('ERR_KVCACHE_SET_PINNED');
    // Pins count: a was pinned twice, d once.
    t.cache.release(['a', 'd']);
    expect((await t.cache.put(['e'], [pageOf('e')]))[0].status).toBe('stored'); // d goes (a still pinned)
    expect((await t.cache.get(['a', 'd'])).map((r) => r.status)).toEqual(['hit', 'miss']);
    t.cache.release(['a', 'never-pinned']);
    expect(t.cache.stats().pinned).toBe(0);
    expect((await t.cache.put(['f'], [pageOf('f')]))[0].status).toBe('stored'); // a, the oldest, goes now
    expect((await t.cache.get(['a', 'e', 'f'])).map((r) => r.status)).toEqual(['miss', 'hit', 'hit']);
    await t.close();
  });

  it('pins follow the key: pinned again after it was deleted and stored in another way, it is not evicted', async () => {
    const setBytes = 4096 + 2 * (4096 + 20480);
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: setBytes });
    await t.cache.put(['a'], [pageOf('a')]); // way 0
    expect(await t.cache.lookup(['a'], { pin: true })).toBe(1);
    await t.cache.delete(['a']); // way 0 free, but still pinned here
    await t.cache.put(['a'], [pageOf('a')]); // way 1
    expect(await t.cache.lookup(['a'], { pin: true })).toBe(1); // a's pin is where a is now
    await t.cache.put(['c'], [pageOf('c')]); // the way a left, not a
    expect((await t.cache.get(['a', 'c'])).map((r) => r.status)).toEqual(['hit', 'hit']);
    t.cache.release(['a', 'a']);
    expect(t.cache.stats().pinned).toBe(0);
    await t.cache.put(['d'], [pageOf('d')]); // a, the oldest, goes now
    expect((await t.cache.get(['a', 'c', 'd'])).map((r) => r.status)).toEqual(['miss', 'hit', 'hit']);
    await t.close();
  });

  it('delete: clears the directory entry and the slot header; others see it gone', async () => {
    const t = await fresh();
    await t.cache.put(['x', 'y'], [pageOf('x'), pageOf('y')]);
    const other = await t.again();
    expect(await other.lookup(['x', 'y'])).toBe(2); // other's index now knows x and y
    expect(await t.cache.delete(['x', 'zzz', 'x'])).toEqual([true, false, true]); // a key named twice: both true
    expect((await t.cache.get(['x', 'y'])).map((r) => r.status)).toEqual(['miss', 'hit']);
    // other's index is stale: the zeroed header makes it a miss, never old bytes.
    expect((await other.get(['x']))[0].status).toBe('miss');
    expect(await (await t.again()).exists(['x', 'y'])).toEqual([false, true]);
    expect(t.cache.stats().deleted).toBe(1);
    // Deleted keys can be stored again.
    expect((await t.cache.put(['x'], [pageOf('x')]))[0].status).toBe('stored');
    expectHit((await other.get(['x']))[0], pageOf('x'), 'x again');
    await t.close();
  });

  it('delete of a key a concurrent put of this process is evicting leaves the new page whole and listed', async () => {
    // One set, one way: each put evicts the last key. The delete of the old key comes while the put
    // that replaces it is writing (its ways chosen, its slot and entry not yet on disk): it must not
    // zero the new slot's header or clear its entry.
    const t = await fresh({ ways: 1, shards: 1, capacityBytes: 4096 + 4096 + 20480 });
    let prev = 'k0';
    expect((await t.cache.put([prev], [pageOf(prev)]))[0].status).toBe('stored');
    for (let round = 1; round <= 30; round++) {
      const key = `k${round}`;
      const putting = t.cache.put([key], [pageOf(key)]);
      const deleting = t.cache.delete([prev]);
      expect((await putting)[0].status, key).toBe('stored');
      await deleting;
      expectHit((await t.cache.get([key]))[0], pageOf(key), `${key}, this instance`);
      const other = await t.again();
      expectHit((await other.get([key]))[0], pageOf(key), `${key}, a new instance (from the directory)`);
      prev = key;
    }
    await t.close();
  });

  it('a get that repairs a stale listing while a put of this process rewrites that way leaves the new entry listed', async () => {
    // One set, one way; the directory lists y while the slot holds z (a crash between z's slot and
    // its entry). A get of y through a stale index misses and repairs the listing; meanwhile a put
    // of w takes that way. The repair must not clear w's entry.
    const t = await fresh({ ways: 1, shards: 1, capacityBytes: 4096 + 4096 + 20480 });
    const shard = join(t.o.root, 'shard-0000.kv');
    for (let round = 1; round <= 20; round++) {
      const [y, z, w] = [`y${round}`, `z${round}`, `w${round}`];
      const reader = await t.again();
      await reader.put([y], [pageOf(y)]); // reader's index: y in way 0
      const listY = readFileSync(shard).subarray(0, 4096);
      const writer = await t.again();
      await writer.put([z], [pageOf(z)]);
      const now = readFileSync(shard);
      listY.copy(now, 0);
      writeFileSync(shard, now); // lists y, holds z
      const putting = reader.put([w], [pageOf(w)]);
      const getting = reader.get([y]);
      expect((await putting)[0].status, w).toBe('stored');
      expect((await getting)[0].status, y).toBe('miss');
      expectHit((await (await t.again()).get([w]))[0], pageOf(w), `${w}, a new instance (from the directory)`);
    }
    await t.close();
  });

  it('dedup decides on disk: a page another instance evicted is stored again, whatever this index says', async () => {
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: 4096 + 2 * (4096 + 20480) });
    expect((await t.cache.put(['a'], [pageOf('a')]))[0].status).toBe('stored');
    const other = await t.again();
    await other.put(['b', 'c'], [pageOf('b'), pageOf('c')]); // one set of 2 ways: a goes
    expect(other.stats().evicted).toBe(1);
    expect(t.cache.stats().indexSize).toBe(1); // t.cache still remembers a
    expect((await t.cache.put(['a'], [pageOf('a')]))[0].status).toBe('stored');
    expectHit((await other.get(['a']))[0], pageOf('a'), 'a after re-put');
    await t.close();
  });

  it('a directory entry its slot header contradicts (crash between slot and directory write): not present, not deleted, repaired', async () => {
    // One set, one way. The directory is made to list x while the slot holds y: what a process
    // killed after writing y's slot and before rewriting the directory leaves behind.
    const t = await fresh({ ways: 1, shards: 1, capacityBytes: 4096 + 4096 + 20480 });
    const shard = join(t.o.root, 'shard-0000.kv');
    const staleDir = () => {
      const d = readFileSync(shard);
      return () => {
        const now = readFileSync(shard);
        d.copy(now, 0, 0, 4096);
        writeFileSync(shard, now);
      };
    };
    await t.cache.put(['x'], [pageOf('x')]);
    const listX = staleDir();
    const holder = await t.again();
    expect((await holder.put(['y'], [pageOf('y')]))[0].status).toBe('stored');
    listX();
    // delete(x) reads the header first: y's slot is left alone (holder still reads y through its index).
    const c1 = await t.again();
    expect(await c1.delete(['x'])).toEqual([false]);
    expectHit((await holder.get(['y']))[0], pageOf('y'), 'y after delete(x)');
    // put(x) is not fooled into 'present'.
    listX();
    const c2 = await t.again();
    expect((await c2.put(['x'], [pageOf('x')]))[0].status).toBe('stored');
    expectHit((await (await t.again()).get(['x']))[0], pageOf('x'), 'x stored again');
    // get(x) on the stale listing: a miss that clears the entry, seen by everyone afterwards.
    await holder.put(['y2'], [pageOf('y2')]); // slot now y2, listed
    const listY2 = staleDir();
    await holder.put(['y3'], [pageOf('y3')]);
    listY2(); // lists y2, holds y3
    const c3 = await t.again();
    const [g] = await c3.get(['y2']);
    expect([g.status, g.error?.code]).toEqual(['miss', 'ERR_KVCACHE_RACED']);
    expect(c3.stats().repaired).toBe(1);
    expect(await (await t.again()).exists(['y2'])).toEqual([false]);
    await t.close();
  });

  it('get without `into`: zero-copy Buffers lent from a reusable pool until recycle(); lent memory is never reused', async () => {
    const t = await fresh({ capacityBytes: 64 << 20, ways: 8 });
    const keys = Array.from({ length: 32 }, (_, i) => `pool-${i}`);
    await t.cache.put(keys, keys.map((k) => pageOf(k)));
    const first = await t.cache.get(keys);
    first.forEach((r, i) => expectHit(r, pageOf(keys[i]), keys[i]));
    expect(first[0].buffer).toBeInstanceOf(Buffer);
    expect(t.cache.stats().lent).toBe(32);
    const second = await t.cache.get([...keys].reverse());
    // The first call's Buffers are still the caller's: intact after another get.
    first.forEach((r, i) => expectHit(r, pageOf(keys[i]), `${keys[i]} still lent`));
    expect(t.cache.stats().lent).toBe(64);
    t.cache.recycle(first);
    t.cache.recycle(second.map((r) => r.buffer!));
    t.cache.recycle(second); // twice: ignored
    t.cache.recycle([undefined, Buffer.alloc(3), { status: 'miss' }]);
    expect(t.cache.stats().lent).toBe(0);
    // Warm: later gets (hits and misses) take no new registered memory (no new iov on 3FS).
    const { poolAllocs, poolBytes } = t.cache.stats();
    const iovs = iovMappings();
    for (let n = 0; n < 20; n++) {
      const rs = await t.cache.get([...keys.slice(n, n + 8), `absent-${n}`]);
      rs.slice(0, -1).forEach((r, i) => expectHit(r, pageOf(keys[n + i]), keys[n + i]));
      expect(rs.at(-1)!.status).toBe('miss');
      t.cache.recycle(rs);
    }
    expect(t.cache.stats()).toMatchObject({ poolAllocs, poolBytes, lent: 0 });
    expect(iovMappings()).toBe(iovs);
    // A tiny poolBytes keeps little idle memory: whole idle slabs beyond it are freed.
    const small = await t.again({ poolBytes: 0 });
    small.recycle(await small.get(keys));
    expect(small.stats().poolBytes).toBeLessThanOrEqual(8 * small.geometry.slotBytes);
    // Lent Buffers outlive close(); recycle() after close() is fine.
    const kept = await small.get(keys.slice(0, 2));
    await t.close();
    kept.forEach((r, i) => expectHit(r, pageOf(keys[i]), `${keys[i]} after close`));
    small.recycle(kept);
    expect(small.stats().lent).toBe(0);
  });

  it('damaged bytes in a shard file are a miss (corrupt), never wrong data', async () => {
    const setBytes = 4096 + 4 * (4096 + 20480);
    const t = await fresh({ ways: 4, shards: 1, capacityBytes: setBytes });
    const keys = ['d0', 'd1', 'd2', 'd3'];
    const pages = keys.map((k, i) => new Rng(seedFor(k)).bytes(1000 + i));
    await t.cache.put(keys, pages);
    const shard = join(t.o.root, 'shard-0000.kv');
    const data = readFileSync(shard);
    // Each key's slot, from its directory entry (free ways are tried in an order from the key's id).
    const slot = (i: number) => 4096 + wayIn(data, t.cache.idOf(keys[i]), 4) * (4096 + 20480);
    // Damage key 0's payload, key 1's length field, key 2's header CRC (the header's fields are
    // the last 512 bytes of its 4 KiB block); key 3 stays whole.
    const fields = 4096 - 512;
    data[slot(0) + 4096 + 500] ^= 0x40;
    data[slot(1) + fields + 24] ^= 0x01;
    data[slot(2) + fields + 60] ^= 0xff;
    writeFileSync(shard, data);
    const got = await t.cache.get(keys);
    expect(got.filter((r) => r.status === 'hit').length).toBe(1);
    got.forEach((r, i) => {
      if (r.status === 'hit') expectHit(r, pages[i], keys[i]);
      else expect(['ERR_KVCACHE_CORRUPT', 'ERR_KVCACHE_RACED']).toContain(r.error?.code);
    });
    expect(t.cache.stats()).toMatchObject({ corrupt: 3, repaired: 3 });
    // The failed slots' directory entries were cleared: another instance sees plain misses, and
    // put() stores those keys again instead of calling them present.
    const other = await t.again();
    expect((await other.get(keys)).map((r) => [r.status, r.error?.code])).toEqual([['miss', undefined], ['miss', undefined], ['miss', undefined], ['hit', undefined]]);
    expect((await other.put(keys, pages)).map((r) => r.status)).toEqual(['stored', 'stored', 'stored', 'present']);
    (await t.again().then((c) => c.get(keys))).forEach((r, i) => expectHit(r, pages[i], keys[i]));
    // A torn slot (the first 4 KiB of a new page over an old one) fails the CRC too.
    const t2 = await fresh({ ways: 1, shards: 1, capacityBytes: 4096 + 4096 + 20480 });
    const big = new Rng(seedFor('torn')).bytes(PAGE);
    await t2.cache.put(['torn'], [big]);
    const shard2 = join(t2.o.root, 'shard-0000.kv');
    const d2 = readFileSync(shard2);
    d2.fill(0x11, 4096 + 4096 + 8192, 4096 + 4096 + 12288);
    writeFileSync(shard2, d2);
    const [torn] = await (await t2.again()).get(['torn']);
    expect(torn.status).toBe('miss');
    expect(torn.error?.code).toBe('ERR_KVCACHE_CORRUPT');
    await Promise.all([t.close(), t2.close()]);
  });

  it('a damaged directory entry is a miss, and the set is usable again', async () => {
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: 4096 + 2 * (4096 + 20480) });
    await t.cache.put(['k'], [pageOf('k')]);
    const shard = join(t.o.root, 'shard-0000.kv');
    const data = readFileSync(shard);
    data[wayIn(data, t.cache.idOf('k'), 2) * 40 + 3] ^= 0x55; // inside k's directory entry: its id
    writeFileSync(shard, data);
    const other = await t.again();
    expect((await other.get(['k']))[0].status).toBe('miss');
    expect((await other.put(['k2'], [pageOf('k2')]))[0].status).toBe('stored');
    expectHit((await other.get(['k2']))[0], pageOf('k2'), 'k2');
    await t.close();
  });

  it('a directory entry with a damaged length (beyond pageBytes) is a miss for that key only, never a rejected get', async () => {
    const t = await fresh({ ways: 2, shards: 1, capacityBytes: 4096 + 2 * (4096 + 20480) });
    await t.cache.put(['k', 'j'], [pageOf('k'), pageOf('j')]);
    const shard = join(t.o.root, 'shard-0000.kv');
    const whole = readFileSync(shard);
    for (const into of [undefined, 'alloc', 'plain'] as const) {
      const data = Buffer.from(whole);
      data.writeUInt32LE(PAGE + 50_000, wayIn(whole, t.cache.idOf('k'), 2) * 40 + 16); // k's directory entry: its length field
      writeFileSync(shard, data);
      const other = await t.again();
      const bufs = into === 'alloc' ? [other.alloc(PAGE), other.alloc(PAGE)] : into === 'plain' ? [Buffer.alloc(PAGE + 50_000), Buffer.alloc(PAGE)] : undefined;
      const got = await other.get(['k', 'j'], bufs);
      expect(got[0].status, String(into)).toBe('miss');
      expect(got[0].error?.code, String(into)).toBe('ERR_KVCACHE_CORRUPT');
      expect(got[1].status, String(into)).toBe('hit');
      expect(other.stats().repaired, String(into)).toBe(1); // the entry is cleared: k can be stored again
    }
    expect((await t.cache.put(['k'], [pageOf('k')]))[0].status).toBe('stored');
    await t.close();
  });

  it('open: meta.json and preallocated shards; geometry mismatch is ERR_KVCACHE_MISMATCH', async () => {
    const t = await fresh({ capacityBytes: 4 << 20, ways: 4, shards: 3 });
    const meta = JSON.parse(readFileSync(join(t.o.root, 'meta.json'), 'utf8'));
    const g = t.cache.geometry;
    expect(meta).toMatchObject({ format: 3, pageBytes: PAGE, slotBytes: 4096 + 20480, ways: 4, shards: 3, sets: g.sets });
    expect(g.sets).toBe(Math.floor((4 << 20) / (4096 + 4 * (4096 + 20480))));
    // Unset ways and shards take the cache's; other namespaces share it.
    const { ways: _w, shards: _s, ...loose } = t.o;
    const c2 = await KVCache.open({ ...loose, namespace: { model: 'other', dtype: 'fp8' } });
    expect(c2.geometry).toEqual(g);
    await c2.close();
    // A cache smaller than one set of the default 8 ways opens without `ways` too.
    const small = await fresh({ ways: 2, shards: 1, capacityBytes: 4096 + 2 * (4096 + 20480) });
    const { ways: _w2, shards: _s2, ...smallLoose } = small.o;
    const c3 = await KVCache.open(smallLoose);
    expect(c3.geometry).toEqual(small.cache.geometry);
    await Promise.all([c3.close(), small.close()]);
    await rejectsWith(KVCache.open({ ...t.o, pageBytes: PAGE + 8192 }), 'ERR_KVCACHE_MISMATCH');
    await rejectsWith(KVCache.open({ ...t.o, ways: 8 }), 'ERR_KVCACHE_MISMATCH');
    await rejectsWith(KVCache.open({ ...t.o, shards: 2 }), 'ERR_KVCACHE_MISMATCH');
    await rejectsWith(KVCache.open({ ...t.o, capacityBytes: 8 << 20 }), 'ERR_KVCACHE_MISMATCH');
    await rejectsWith(KVCache.open({ ...t.o, root: tmp.path('never-made'), create: false }), 'ERR_KVCACHE_NOT_FOUND');
    writeFileSync(join(t.o.root, 'meta.json'), '{ not json');
    await rejectsWith(KVCache.open(t.o), 'ERR_KVCACHE_MISMATCH');
    await t.close();
  });

  it('two instances opening a new cache at once agree on one meta.json', async () => {
    dirs++;
    const o = options({ capacityBytes: 2 << 20 });
    const caches = await Promise.all([KVCache.open(o), KVCache.open(o), KVCache.open(o)]);
    await caches[0].put(['shared'], [pageOf('shared')]);
    expectHit((await caches[2].get(['shared']))[0], pageOf('shared'), 'shared');
    await Promise.all(caches.map((c) => c.close()));
  });

  it('I/O errors: each key whose directory or slot cannot be read or written gets that error; delete rejects with it', async () => {
    const { flaky, failWhen } = flakyIo();
    // One set of two ways in one shard: its directory is the first 4 KiB of the file.
    const t = await fresh({ client: flaky, ways: 2, shards: 1, capacityBytes: 4096 + 2 * (4096 + 20480) });
    const shard = join(t.o.root, 'shard-0000.kv');
    const dirRead = (op: OpSeen) => !op.write && op.fileOffset === 0;
    const expectEio = (e: ThreeFSError | null | undefined, index: number, what: string) => {
      expect(e, what).toBeInstanceOf(ThreeFSError);
      expect([e!.code, e!.errno, e!.path, e!.index], what).toEqual(['EIO', -5, shard, index]);
    };
    failWhen(dirRead);
    const [p] = await t.cache.put(['a'], [pageOf('a')]);
    expect(p.status).toBe('failed');
    expectEio(p.error, 0, 'put, directory unreadable');
    failWhen((op) => op.write && op.fileOffset > 0 && op.length > 4096); // the slot write
    const [p2, p3] = await t.cache.put(['x', 'a'], [pageOf('x'), pageOf('a')]);
    expect([p2.status, p3.status]).toEqual(['failed', 'failed']);
    expectEio(p3.error, 1, 'put, slot write failed');
    failWhen(undefined);
    expect((await t.cache.put(['a'], [pageOf('a')]))[0].status).toBe('stored');
    // A new instance finds 'a' through the directory: unreadable, a miss with the read's error.
    const other = await t.again();
    failWhen(dirRead);
    const [g] = await other.get(['b', 'a']).then((rs) => [rs[1]]);
    expect(g.status).toBe('miss');
    expectEio(g.error, 1, 'get, directory unreadable');
    // Slot unreadable: a miss with that error (this instance knows where 'a' is).
    failWhen((op) => !op.write && op.fileOffset > 0);
    const [g2] = await t.cache.get(['a']);
    expect(g2.status).toBe('miss');
    expectEio(g2.error, 0, 'get, slot unreadable');
    // delete: the directory unreadable, then the writes failing: it rejects, and 'a' is still there.
    failWhen(dirRead);
    expect((await rejectsWith(t.cache.delete(['a']), 'EIO')).path).toBe(shard);
    failWhen((op) => op.write);
    await rejectsWith(t.cache.delete(['a']), 'EIO');
    failWhen(undefined);
    expectHit((await (await t.again()).get(['a']))[0], pageOf('a'), 'a after the failed deletes');
    expect(await t.cache.delete(['a'])).toEqual([true]);
    await t.close();
  });

  it('a failed allocation (put, delete) rejects that call and leaves no set locked', async () => {
    const { flaky, fail } = flakyAlloc();
    // 400 sets of one way: a call over most of them stages more than the 1 MiB buffers idle.
    const t = await fresh({ client: flaky, pageBytes: 100, ways: 1, shards: 1, capacityBytes: 400 * (4096 + 8192) });
    const keys = Array.from({ length: 2000 }, (_, i) => `many-${i}`);
    const within = <T,>(p: Promise<T>) => settledWithin(p, 3000, 'a call after the failed allocation (a set left locked)');
    fail(1); // the put's directory staging
    await rejectsWith(t.cache.put(keys, keys.map(() => Buffer.alloc(10))), 'ENOMEM');
    expect((await within(t.cache.put(['a'], [Buffer.alloc(10, 1)])))).toEqual([{ status: 'stored' }]);
    fail(1); // the delete's staging
    await rejectsWith(t.cache.delete(keys), 'ENOMEM');
    expect(await within(t.cache.delete(['a']))).toEqual([true]);
    expect(fail(0)).toBe(0);
    await t.close();
  });

  it('a failed pool allocation in get() keeps the idle slots it had taken', async () => {
    const { flaky, fail } = flakyAlloc();
    const t = await fresh({ client: flaky });
    const keys = Array.from({ length: 9 }, (_, i) => `pool-${i}`);
    expect((await t.cache.put(keys, keys.map((k) => pageOf(k)))).map((r) => r.status)).toEqual(keys.map(() => 'stored'));
    t.cache.recycle(await t.cache.get(keys.slice(0, 1))); // the pool's first slab: 8 slots, now idle
    const allocs = t.cache.stats().poolAllocs;
    fail(1); // 9 slots wanted: the 8 idle ones and a new slab, which fails
    await rejectsWith(t.cache.get(keys), 'ENOMEM');
    const got = await t.cache.get(keys.slice(0, 8)); // the 8 idle slots are still there
    got.forEach((r, i) => expectHit(r, pageOf(keys[i]), keys[i]));
    expect(t.cache.stats().poolAllocs).toBe(allocs);
    t.cache.recycle(got);
    await t.close();
  });

  it('bad input: ThreeFSError codes, nothing written', async () => {
    const t = await fresh();
    const c = t.cache;
    await rejectsWith(() => c.put([42 as unknown as string], [Buffer.alloc(1)]), 'ERR_INVALID_ARG_TYPE');
    await rejectsWith(() => c.put('k' as unknown as string[], [Buffer.alloc(1)]), 'ERR_INVALID_ARG_TYPE');
    await rejectsWith(() => c.put(['k'], []), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.put(['k'], ['str' as unknown as Buffer]), 'ERR_INVALID_ARG_TYPE');
    await rejectsWith(() => c.put(['k'], [Buffer.alloc(PAGE + 1)]), 'ERR_OUT_OF_RANGE');
    await rejectsWith(() => c.put(['k'], [Buffer.alloc(1)], { ttlMs: -1 }), 'ERR_OUT_OF_RANGE');
    const moved = new ArrayBuffer(100);
    const view = new Uint8Array(moved);
    structuredClone(moved, { transfer: [moved] }); // detached: the view now has no bytes
    await rejectsWith(() => c.put(['k'], [view]), 'ERR_BUFFER_FREED');
    await rejectsWith(() => c.get(['k'], []), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(() => c.get([{} as unknown as string]), 'ERR_INVALID_ARG_TYPE');
    await rejectsWith(() => c.alloc(PAGE + 1), 'ERR_OUT_OF_RANGE');
    expect(c.stats()).toMatchObject({ bytesWritten: 0, stored: 0 });
    expect((await c.put(['empty'], [new Uint8Array(new ArrayBuffer(0))]))[0].status).toBe('stored'); // empty, not detached
    // A buffer too small for the stored page: a miss saying so.
    await c.put(['k'], [Buffer.alloc(5000, 7)]);
    const [small] = await c.get(['k'], [Buffer.alloc(4999)]);
    expect(small.status).toBe('miss');
    expect(small.error?.code).toBe('ERR_KVCACHE_BUFFER_TOO_SMALL');
    // Bad options.
    await rejectsWith(KVCache.open({ ...t.o, namespace: { model: 'm' } as unknown as KVNamespace }), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(KVCache.open({ ...t.o, namespace: { ...NS, extra: {} as unknown as string } }), 'ERR_INVALID_ARG_VALUE');
    await rejectsWith(KVCache.open({ ...t.o, pageBytes: 0 }), 'ERR_OUT_OF_RANGE');
    await rejectsWith(KVCache.open({ ...t.o, ways: 101 }), 'ERR_OUT_OF_RANGE');
    await rejectsWith(KVCache.open({ ...t.o, capacityBytes: 4096 }), 'ERR_OUT_OF_RANGE');
    await rejectsWith(KVCache.open({ ...t.o, root: '' }), 'ERR_INVALID_ARG_VALUE');
    await t.close();
    await rejectsWith(() => c.get(['k']), 'ERR_KVCACHE_CLOSED');
    await rejectsWith(() => c.put(['k'], [Buffer.alloc(1)]), 'ERR_KVCACHE_CLOSED');
    await rejectsWith(() => c.lookup(['k']), 'ERR_KVCACHE_CLOSED');
  });

  it('randomized workload against the oracle, with eviction and concurrent calls: every hit is exact', async () => {
    const t = await fresh({ ways: 4, shards: 2, capacityBytes: 4 * (4096 + 4 * (4096 + 20480)) }); // 4 sets x 4 ways
    const rng = new Rng(seedFor('workload'));
    const universe = Array.from({ length: 40 }, (_, i) => `w${i}`);
    const other = await t.again();
    let hits = 0;
    for (let round = 0; round < 40; round++) {
      const calls: Promise<void>[] = [];
      for (let c = 0; c < 4; c++) {
        const cache = rng.bool() ? t.cache : other;
        const keys = Array.from({ length: rng.int(1, 6) }, () => rng.pick(universe));
        const op = rng.int(0, 9);
        if (op < 4) {
          // More keys of one set than it has ways fail with SET_FULL; nothing else may fail.
          calls.push(cache.put(keys, keys.map((k) => pageOf(k))).then((rs) => rs.forEach((r) => r.status === 'failed' && expect(r.error?.code).toBe('ERR_KVCACHE_SET_FULL'))));
        } else if (op < 9) {
          calls.push(
            cache.get(keys).then((rs) =>
              rs.forEach((r, i) => {
                if (r.status === 'hit') {
                  hits++;
                  expectHit(r, pageOf(keys[i]), keys[i]);
                }
              }),
            ),
          );
        } else calls.push(cache.delete(keys).then(() => undefined));
      }
      await Promise.all(calls);
      // Quiet now: a new key one instance just stored is a hit for the other (directory path).
      const k = `q${round}`;
      expect((await t.cache.put([k], [pageOf(k)]))[0].status).toBe('stored');
      expectHit((await other.get([k]))[0], pageOf(k), `${k} after put`);
    }
    expect(hits).toBeGreaterThan(40);
    // No corrupt count is asserted: a get that reads a slot while a concurrent put rewrites it can
    // see half of each, which fails the payload CRC like damage does. It is a miss either way.
    await t.close();
  });

  it('pageBytes and capacity of a realistic shape: 1 MiB pages, 4 KiB-aligned offsets', async () => {
    const t = await fresh({ pageBytes: 1 << 20, capacityBytes: 24 << 20, ways: 4, shards: 2 });
    expect(t.cache.geometry.slotBytes).toBe((1 << 20) + 4 * KiB);
    const rng = new Rng(seedFor('mib'));
    const pages = [rng.bytes(1 << 20), rng.bytes((1 << 20) - 1), rng.bytes(12345)];
    const keys = ['m0', 'm1', 'm2'];
    await t.cache.put(keys, pages);
    const into = pages.map(() => client.alloc(1 << 20));
    const got = await (await t.again()).get(keys, into);
    got.forEach((r, i) => {
      expect(r.status).toBe('hit');
      expect(firstDiff(into[i].bytes.subarray(0, pages[i].length), pages[i])).toBe(-1);
    });
    await t.close();
  });

  it('where O_DIRECT needs 4 KiB alignment (tmpfs here; any file system on kernels without STATX_DIOALIGN), slot reads still go direct', async (ctx) => {
    // The header's last 512 bytes start 512 bytes before the payload: on such a file neither that
    // read nor a header-plus-payload one from there is aligned, and 'auto' sends it through the
    // page cache instead (the whole page, on every get).
    if (ENGINE !== 'local' || !existsSync('/dev/shm')) return ctx.skip();
    const shm = mkdtempSync(join('/dev/shm', '3fs-test-kvcache-align-'));
    try {
      const probe = join(shm, 'probe');
      writeFileSync(probe, Buffer.alloc(4096));
      const f = await client.open(probe, 'r');
      const { direct } = await f.stat();
      await f.close();
      if (!direct.active || Math.max(direct.memoryAlign, direct.offsetAlign) !== 4096) return ctx.skip();
      const cache = await KVCache.open({ client, root: join(shm, 'c'), namespace: NS, pageBytes: PAGE, capacityBytes: 8 << 20, ways: 4, shards: 2 });
      const keys = Array.from({ length: 12 }, (_, i) => `align-${i}`);
      const pages = keys.map((k) => pageOf(k));
      expect((await cache.put(keys, pages)).map((r) => r.status)).toEqual(keys.map(() => 'stored'));
      const sets = new Set(keys.map((k) => cache.idOf(k).readUIntLE(0, 6) % cache.geometry.sets)).size;
      const into = keys.map((_, i) => (i % 2 === 0 ? cache.alloc(PAGE) : client.alloc(PAGE)));
      for (const how of ['pool', 'into'] as const) {
        const m0 = client.metrics();
        const got = await cache.get(keys, how === 'into' ? into : undefined);
        got.forEach((r, i) => expectHit(r, pages[i], keys[i]));
        cache.recycle(got);
        const m1 = client.metrics();
        // into client.alloc() memory (odd keys): the payload is its own op of the page's length,
        // buffered unless that is a multiple of 4 KiB; its header read must still be direct.
        const plain = how === 'into' ? pages.reduce((a, p, i) => a + (i % 2 === 1 && p.length % 4096 !== 0 ? p.length : 0), 0) : 0;
        expect(m1.bufferedBytes - m0.bufferedBytes, `get, ${how}: bytes through the page cache`).toBe(plain);
      }
      // put of present keys reads their headers; delete too. Only the directories (4 KiB each,
      // kept in the page cache on purpose, and delete's 40-byte entry writes) are buffered.
      let m0 = client.metrics();
      expect((await cache.put(keys, pages)).map((r) => r.status)).toEqual(keys.map(() => 'present'));
      expect(client.metrics().bufferedBytes - m0.bufferedBytes, 'put of present keys').toBe(sets * 4096);
      m0 = client.metrics();
      expect(await cache.delete(keys)).toEqual(keys.map(() => true));
      expect(client.metrics().bufferedBytes - m0.bufferedBytes, 'delete').toBe(sets * 4096 + keys.length * 40);
      await cache.close();
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  it('processes putting and getting the same keys at once: every get is a miss or the exact bytes', async () => {
    // The children load the compiled CommonJS build (npm test's pretest makes it), as users would.
    const libDir = DIST_LIB;
    dirs++;
    // 6 sets x 4 ways for 48 keys: constant eviction and way reuse between the processes.
    const o = { root: tmp.path(`c${dirs}`), namespace: NS, pageBytes: 3 * 4096 + 100, capacityBytes: 6 * (4096 + 4 * (4096 + 16384)), ways: 4, shards: 2, mount: HF3FS?.mount };
    const env = { ...process.env };
    const run = (seed: number) =>
      new Promise<Record<string, unknown>>((done, fail) => {
        const child = spawn(process.execPath, [join(FIXTURES, 'kvcache-worker.cjs'), libDir, JSON.stringify(o), String(seed), '400'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('error', fail);
        child.on('close', (code) => {
          try {
            done({ code, ...JSON.parse(out.trim().split('\n').pop() ?? '{}'), stderr: err });
          } catch {
            fail(new Error(`child ${seed}: exit ${code}, stdout ${out}, stderr ${err}`));
          }
        });
      });
    const results = await Promise.all([1, 2, 3].map((k) => run(seedFor(`child-${k}`))));
    if (process.env.KV_DEBUG) console.log(JSON.stringify(results.map(({ stderr: _e, ...r }) => r)));
    for (const r of results) {
      expect(r.error, String(r.stderr)).toBeUndefined();
      expect(r.code).toBe(0);
      expect(r.wrong).toBe(0);
      expect(r.failed).toEqual([]);
      expect(r.hits as number).toBeGreaterThan(0);
    }
  });
});
