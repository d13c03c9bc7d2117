// A KV-cache page store in a few preallocated files, shared by many processes with no metadata
// server: a set-associative cache.
//
//   key --sha256(namespaceHash || key)--> 128-bit id;   set = id mod sets;   shard = set mod shards
//   set region (in its shard file):  [ directory 4 KiB ][ slot 0 ] ... [ slot ways-1 ]
//   slot:                            [ header 4 KiB ][ payload, up to pageBytes, padded to 4 KiB ]
//
// The slot header (slot-header.ts) is the truth and is written in the same op as the payload. The
// set directory (set-directory.ts) is a hint that saves reading every header; the in-memory index
// (key-index.ts) is a hint that saves reading the directory. Every disagreement, torn write or
// race ends as a miss, never as wrong bytes. Nothing is rebuilt on open (meta.ts): stale listings
// are fixed lazily by put (put.ts), get (repair.ts) and delete (delete.ts).
//
// This class holds the parts of an open cache (context.ts) and hands each call to its path.
import { clientFor } from '../clients';
import { allocPacked, type Client } from '../core/client';
import { argError } from '../core/errors';
import { IoBuffer } from '../core/io-buffer';
import { ERR, wholeNumber } from './checks';
import type { CacheParts } from './context';
import { del } from './delete';
import { DirLocks } from './dir-locks';
import { get } from './get';
import { IdIndex } from './key-index';
import { KeyIds } from './key-ids';
import { exists, lookup } from './locate';
import { namespaceHash, openMeta } from './meta';
import { Pins } from './pins';
import { put } from './put';
import { SetLocks } from './set-locks';
import { Shards } from './shards';
import { EpochClock, HEADER_BYTES, slotSpan } from './slot-header';
import { SlotPool } from './slot-pool';
import { Staging } from './staging';
import { newCounters } from './stats';
import type { GetResult, KVCacheOptions, KVCacheStats, KVGeometry, KVKey, KVPayload, PutOptions, PutResult } from './types';
import { Writing } from './writing';

export { namespaceHash } from './meta';
export { KVCACHE_FORMAT } from './slot-header';
export type { GetResult, KVCacheOptions, KVCacheStats, KVGeometry, KVKey, KVNamespace, KVPayload, PutOptions, PutResult } from './types';

/**
 * A shared KV-cache page store. Open with KVCache.open(); every method takes a batch of keys and
 * does its I/O in a few batched calls (a put: the directories, then the slots with their entries).
 */
export class KVCache {
  readonly root: string;
  readonly geometry: KVGeometry;
  readonly namespaceHash: Buffer;
  readonly #parts: CacheParts;
  readonly #calls = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  private constructor(root: string, ns: Buffer, parts: CacheParts) {
    this.root = root;
    this.geometry = parts.geometry;
    this.namespaceHash = ns;
    this.#parts = parts;
  }

  /**
   * Opens the cache in `root`, making it (meta.json and preallocated shard files) if missing. An
   * existing cache made with another geometry fails with ERR_KVCACHE_MISMATCH. Namespaces share a
   * cache: they only change the ids.
   */
  static async open(options: KVCacheOptions): Promise<KVCache> {
    if (options === null || typeof options !== 'object') throw argError('ERR_INVALID_ARG_TYPE', 'options must be an object');
    const { root } = options;
    if (typeof root !== 'string' || root.length === 0 || root.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', 'root must be a non-empty path');
    const ns = namespaceHash(options.namespace);
    const poolBytes = options.poolBytes === undefined ? 1 << 30 : wholeNumber(options.poolBytes, 'poolBytes', 0, Number.MAX_SAFE_INTEGER);
    const client = options.client ?? clientFor(root);
    const geometry = await openMeta(options, ns, client);
    const stats = newCounters();
    const shards = await Shards.open(client, root, geometry, stats);
    return new KVCache(root, ns, partsOf(client, geometry, ns, shards, poolBytes, stats));
  }

  /** The 128-bit id of a key in this cache's namespace. */
  idOf(key: KVKey, index = 0): Buffer {
    return this.#parts.keys.idOf(key, index);
  }

  /**
   * Memory for a payload of `bytes` that put() writes without copying: 4 KiB of header room sit
   * in front of it, in the same allocation. Fill it, then pass it (this very object) to put().
   */
  alloc(bytes: number): IoBuffer {
    this.#checkOpen();
    wholeNumber(bytes, 'bytes', 0, this.geometry.pageBytes);
    const whole = allocPacked(this.#parts.client, slotSpan(Math.max(bytes, 1)));
    // The header room's page is touched now, not by the first put (a page fault per page there).
    whole.bytes.fill(0, 0, HEADER_BYTES);
    // The payload owns the allocation (not a view of it): its free() returns the header room too.
    const payload = new IoBuffer(whole.region, whole.byteOffset + HEADER_BYTES, bytes);
    this.#parts.payloadOf.set(payload, whole);
    return payload;
  }

  /**
   * Hands Buffers that get() lent (or the results holding them) back to the pool, which reuses
   * their memory: do not touch them afterwards. Anything else (misses, `into` results, Buffers
   * already recycled or not from this cache) is ignored. Works after close() too.
   */
  recycle(items: GetResult | Uint8Array | readonly (GetResult | Uint8Array | undefined | null)[]): void {
    const list = Array.isArray(items) ? items : [items];
    for (const item of list) {
      const view = item instanceof Uint8Array ? item : (item as GetResult | undefined)?.buffer;
      if (view instanceof Uint8Array) this.#parts.pool.recycle(view);
    }
  }

  /**
   * Stores pages. Keys already present are skipped ('present'). Payloads from cache.alloc() go out
   * without a copy; others are copied into staging memory (counted in stats().bytesCopied).
   *
   * 'present' is decided on disk, never from this process's index (another process may have
   * evicted the page): the set directory must list the key, and the slot header it points at must
   * still hold it (one batched read of the header's fields per such key, only when there are
   * any). A directory entry that the header contradicts is stale (a crash or a lost race) and the
   * key is stored.
   */
  put(keys: readonly KVKey[], buffers: readonly KVPayload[], options: PutOptions = {}): Promise<PutResult[]> {
    return this.#track(() => put(this.#parts, keys, buffers, options));
  }

  /**
   * Reads pages. Each hit's header (id, length, expiry, CRC) and payload CRC32C are checked;
   * anything else is a miss. With `into`, payload i is read into into[i] (an IoBuffer or a view,
   * at least as long as the stored payload; shorter: a miss with ERR_KVCACHE_BUFFER_TOO_SMALL).
   * Buffers from `cache.alloc()` take header and payload in one op (the header room in front); the
   * bytes of into[i] past the page's length are then unspecified (the slot's padding). The
   * buffers must not share bytes (ERR_OVERLAPPING_BUFFERS, before any I/O).
   *
   * Without `into`, each hit's `buffer` is lent, zero-copy, from a pool of registered memory
   * (slot-sized pieces of a few large allocations: no new USRBIO iov per call once warm). It is
   * the caller's until `cache.recycle(results)`; recycle as soon as the bytes are consumed, or the
   * pool keeps allocating. A lent Buffer is never reused behind the caller's back: one dropped
   * without recycle() is freed by the collector (keep the Buffer itself alive while any subarray
   * or the underlying ArrayBuffer is in use). close() does not free lent Buffers.
   *
   * A slot that fails its checks where the directory still points at it (stale after a crash or
   * a lost race) has its directory entry cleared (stats().repaired), so later puts store it again.
   */
  get(keys: readonly KVKey[], into?: readonly KVPayload[]): Promise<GetResult[]> {
    return this.#track(() => get(this.#parts, keys, into));
  }

  /**
   * How many leading keys are present (stops at the first absent one): the index, then one batch
   * of directory reads. Directory presence only: a later get can still miss (reused or torn slot).
   * `pin`: the found entries are kept from this process's eviction until release().
   */
  async lookup(keys: readonly KVKey[], options: { pin?: boolean } = {}): Promise<number> {
    this.#checkOpen();
    return lookup(this.#parts, keys, !!options?.pin);
  }

  /** Whether each key is present (index or directory; not checked against the slot). */
  async exists(keys: readonly KVKey[]): Promise<boolean[]> {
    this.#checkOpen();
    return exists(this.#parts, keys);
  }

  /** Drops one pin of each key (lookup(..., { pin: true }) adds one). Unknown keys are ignored. */
  release(keys: readonly KVKey[]): void {
    this.#checkOpen();
    for (const id of this.#parts.keys.ids(keys)) this.#parts.pins.release(id.toString('hex'));
  }

  /**
   * Removes entries: clears their directory entries and zeroes the slot header, but only where
   * the header still holds that key (read first, in one batch: another process may have reused
   * the way since the directory was written). Resolves with whether each key's slot held it.
   * Rejects with the first I/O error (a directory or header read, a write) once the rest is done:
   * the keys may then still be there, and deleting them again is safe.
   */
  delete(keys: readonly KVKey[]): Promise<boolean[]> {
    return this.#track(() => del(this.#parts, keys));
  }

  stats(): KVCacheStats {
    const p = this.#parts;
    return { ...p.stats, indexSize: p.index.size, pinned: p.pins.size, lent: p.pool.lent, poolBytes: p.pool.bytes };
  }

  /** Closes the shard files (after the puts and gets under way) and frees staging memory. The client is the caller's. */
  close(): Promise<void> {
    const p = this.#parts;
    this.#closing ??= (async () => {
      p.closing = p.staging.closing = p.pool.closing = true;
      await Promise.allSettled([...this.#calls]); // every lock is taken inside a tracked call
      await p.shards.close();
      p.staging.freeAll();
      p.pool.retireIdle();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs a put, get or delete, tracked: close() lets it finish before it closes the files. */
  #track<T>(run: () => Promise<T>): Promise<T> {
    const call = (async () => {
      this.#checkOpen();
      return run();
    })();
    this.#calls.add(call);
    const drop = () => this.#calls.delete(call);
    call.then(drop, drop);
    return call;
  }

  #checkOpen(): void {
    if (this.#closing) throw argError(ERR.closed, 'the KV cache is closed');
  }
}

function partsOf(client: Client, geometry: KVGeometry, ns: Buffer, shards: Shards, poolBytes: number, stats: CacheParts['stats']): CacheParts {
  const alloc = (bytes: number) => allocPacked(client, bytes); // slots and headers are packed in it
  const index = new IdIndex();
  return {
    geometry,
    client,
    shards,
    index,
    keys: new KeyIds(ns, index),
    locks: new SetLocks(),
    dirLocks: new DirLocks(shards, stats),
    staging: new Staging(alloc),
    pool: new SlotPool(alloc, geometry.slotBytes, poolBytes, stats),
    pins: new Pins(geometry.ways),
    writing: new Writing(geometry.ways),
    stats,
    clock: new EpochClock(),
    payloadOf: new WeakMap(),
    closing: false,
  };
}
