// The KVCache's public types: its options, its geometry and what its calls resolve with.
import type { ThreeFSError } from '../core/errors';
import type { Client } from '../core/client';
import type { IoBuffer } from '../core/io-buffer';

/** What a cache holds is for one model, dtype, layout and rank: part of every key's identity. */
export interface KVNamespace {
  model: string;
  dtype: string;
  layout?: string;
  rank?: number | string;
  [extra: string]: string | number | boolean | undefined;
}

export interface KVCacheOptions {
  /** The client doing the I/O. Default: clientFor(root) (3FS USRBIO on a 3FS mount, io_uring elsewhere); not closed by close(). */
  client?: Client;
  /** The cache's directory (made if missing). */
  root: string;
  namespace: KVNamespace;
  /** Largest payload of one page. */
  pageBytes: number;
  /** Total bytes of the shard files (slots, headers and directories); fixed when the cache is made. */
  capacityBytes: number;
  /** Shard files. Default min(16, sets). */
  shards?: number;
  /** Ways per set (1..102: their directory entries fill one 4 KiB block). Default 8. */
  ways?: number;
  /** Make the cache if it is missing. Default true; false: ENOENT-like ERR_KVCACHE_NOT_FOUND. */
  create?: boolean;
  /**
   * Make a new cache even where the file system reports less free space than capacityBytes (its
   * shard files are sparse; puts past the space fail with ENOSPC). Default false: refused with ENOSPC.
   */
  overcommit?: boolean;
  /**
   * Idle registered memory that get() (without `into`) keeps for reuse, in bytes (about: whole
   * slabs are given back). Default 1 GiB; at least one slot is always kept.
   */
  poolBytes?: number;
}

export interface KVGeometry {
  format: number;
  pageBytes: number;
  slotBytes: number;
  sets: number;
  ways: number;
  shards: number;
}

export type KVKey = string | Uint8Array;
export type KVPayload = IoBuffer | ArrayBufferView;

/**
 * 'stored': this process wrote the slot and its directory entry, and they were whole when the
 * call returned. Other processes may evict it (a later put choosing its way as the oldest of a
 * full set); they cannot race it, since a put holds its sets' directories locked across
 * processes until its entries are written (where the file system keeps byte-range locks: see
 * docs/kvcache.md). With `verify`, a put whose way another process took meanwhile is 'lost'.
 */
export interface PutResult {
  status: 'stored' | 'present' | 'failed' | 'lost';
  error?: ThreeFSError;
}

export interface PutOptions {
  /** Milliseconds the pages live; 0 or absent: until evicted. */
  ttlMs?: number;
  /**
   * Read the sets' directories again once the pages are written (one 4 KiB read per set): a key
   * another process's put took the way of meanwhile is 'lost' (ERR_KVCACHE_RACED), not 'stored'.
   */
  verify?: boolean;
}

export interface GetResult {
  status: 'hit' | 'miss';
  /** Payload length (hits). */
  bytes?: number;
  /**
   * Hits without `into`: the payload, a Buffer over registered memory lent from the cache's pool
   * (no copy). It is the caller's until handed back with `cache.recycle()`; after that the pool
   * reuses the memory and the Buffer's bytes change under it. A Buffer never recycled is never
   * reused: it is freed by the garbage collector once unreachable. With `into`: into[i] holds it.
   */
  buffer?: Buffer;
  /** Why a located entry was a miss, when it was not simply absent. */
  error?: ThreeFSError;
}

export interface KVCacheStats {
  hits: number;
  misses: number;
  /** Located entries whose header or payload failed a check (CRC, magic): torn or damaged slots. */
  corrupt: number;
  /** Located entries whose slot held another key, another length or an expired entry: reused under us. */
  raced: number;
  stored: number;
  present: number;
  failed: number;
  /** put({ verify: true }): keys found overwritten by another process's put once stored. */
  lost: number;
  evicted: number;
  deleted: number;
  bytesRead: number;
  bytesWritten: number;
  /** Payload bytes copied into staging memory by put (buffers not from cache.alloc()). */
  bytesCopied: number;
  /** Directory entries found stale by get (the slot held something else, or was torn) and cleared. */
  repaired: number;
  /** Stored pages whose directory write failed: this process finds them, others miss them. */
  unlisted: number;
  /** Calls that found a set's directory locked by another process's put or delete, and waited. */
  lockWaits: number;
  /** get() pool: Buffers lent to callers and not yet recycled (or collected). */
  lent: number;
  /** get() pool: registered bytes it holds (idle and lent). */
  poolBytes: number;
  /** get() pool: registered allocations it made (each a USRBIO iov on 3FS). */
  poolAllocs: number;
  indexSize: number;
  pinned: number;
}
