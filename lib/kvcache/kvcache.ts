// A KV-cache page store in a few preallocated files, shared by many processes with no metadata
// server: a set-associative cache (see /work/shared/design/kvcache.md and the notes below).
//
//   key --sha256(namespaceHash || key)--> 128-bit id;   set = id mod sets;   shard = set mod shards
//   set region (in its shard file):  [ directory 4 KiB ][ slot 0 ] ... [ slot ways-1 ]
//   slot:                            [ header 4 KiB ][ payload, up to pageBytes, padded to 4 KiB ]
//   header block:                    [ zeros 3.5 KiB ][ header fields, in its last 512 B ]
//
// The header's fields sit at the end of its 4 KiB block, next to the payload: a get reads the last
// 512 bytes of the block and the payload in one O_DIRECT op (512-byte aligned, and as fast as the
// payload alone), while a put still writes whole 4 KiB sectors (a partial one costs the device a
// read-modify-write: a 64.5 KiB write ran at a third of the speed of 64 or 68 KiB here). Where
// O_DIRECT needs more than 512-byte alignment, a read takes that much of the block's end instead.
//
// The slot header is the truth (id, length, payload CRC32C, epoch, expiry, header CRC32C) and is
// written in the same op as the payload. The set directory is a hint that saves reading every
// header; the in-memory index is a hint that saves reading the directory. Every disagreement, torn
// write or race ends as a miss, never as wrong bytes.
//
// Crash safety (kill -9 at any moment): a put writes each slot (header + payload, one op) before
// the directory entry that lists it (the entry waits for its slot inside the engine, IoOp.after,
// in the same batch), so a crash leaves either the old listing (whose slot header now
// names another key, or fails its CRC: a miss) or the new one over a whole slot. Nothing is
// rebuilt on open: open() reads meta.json and opens the shard files, no slot or directory
// (a 1 TiB cache opens without reading it). Stale listings are fixed lazily: put() checks the
// slot header before it calls a key 'present', get() clears a listing whose slot failed its checks
// (stats().repaired), delete() zeroes a header only if it still holds the key.
// test/kvcache/kvcache-crash.test.ts kills writers 50 times in a loop and checks every key afterwards.
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { clientFor } from '../clients';
import { allocPacked, type Client, type FileIoOp } from '../core/client';
import { crc32cBytes } from '../core/crc32c';
import { argError, ThreeFSError, type OpResult } from '../core/errors';
import type { File } from '../core/file';
import { native } from '../core/native';
import { IoBuffer, isDetached } from '../core/io-buffer';
import { IdIndex, IdRecord, type Loc } from './key-index';
import { DIR_BYTES, DIR_ENTRY, MAX_WAYS, SetDirectory } from './set-directory';

export const KVCACHE_FORMAT = 3;
const ALIGN = 4096;
const HEADER_BYTES = 4096; // the header block in front of each payload
const HEAD_READ = 512; // the header's fields: the last 512 bytes of the block
const HEAD_AT = HEADER_BYTES - HEAD_READ; // where the fields start in the block
const SLOT_MAGIC = 0x3143564b; // 'KVC1' little-endian
const HEADER_CRC_AT = 60;
const PAYLOAD_CRC_AT = 64; // outside the header CRC's bytes: the engine seals it as the slot goes out
const ID_MEMO_MAX = 1 << 20; // string keys whose ids are remembered (about 100 MiB at most)
const LONE_SURROGATE = /\p{Cs}/u; // UTF-8 makes U+FFFD of it: two such keys would share an id

/** A string key must be well-formed UTF-16: its UTF-8 bytes (what is hashed) then name it alone. */
function checkStringKey(key: string, index: number): void {
  if (LONE_SURROGATE.test(key)) throw argError('ERR_INVALID_ARG_VALUE', `key ${index} has a lone surrogate (not valid Unicode)`, { index });
}

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
  /** Ways per set (1..100). Default 8. */
  ways?: number;
  /** Make the cache if it is missing. Default true; false: ENOENT-like ERR_KVCACHE_NOT_FOUND. */
  create?: boolean;
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

export interface PutResult {
  status: 'stored' | 'present' | 'failed';
  error?: ThreeFSError;
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
  /** get() pool: Buffers lent to callers and not yet recycled (or collected). */
  lent: number;
  /** get() pool: registered bytes it holds (idle and lent). */
  poolBytes: number;
  /** get() pool: registered allocations it made (each a USRBIO iov on 3FS). */
  poolAllocs: number;
  indexSize: number;
  pinned: number;
}

/** One allocation of get()'s pool: `slots` slot-sized pieces of registered memory. */
interface Slab {
  mem: IoBuffer;
  slots: number;
  idle: number;
  /** Slots lent and then dropped by the caller without recycle(): never reused. */
  abandoned: number;
  retired: boolean;
}

interface Slot {
  slab: Slab;
  mem: IoBuffer;
}

const ERR = {
  mismatch: 'ERR_KVCACHE_MISMATCH',
  closed: 'ERR_KVCACHE_CLOSED',
  notFound: 'ERR_KVCACHE_NOT_FOUND',
  full: 'ERR_KVCACHE_SET_PINNED',
  setFull: 'ERR_KVCACHE_SET_FULL',
  small: 'ERR_KVCACHE_BUFFER_TOO_SMALL',
  corrupt: 'ERR_KVCACHE_CORRUPT',
  raced: 'ERR_KVCACHE_RACED',
} as const;

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

function wholeNumber(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** sha256 of the namespace in a canonical form (sorted keys), with the format version. */
export function namespaceHash(ns: KVNamespace): Buffer {
  if (ns === null || typeof ns !== 'object') throw argError('ERR_INVALID_ARG_TYPE', 'namespace must be an object { model, dtype, layout?, rank? }');
  for (const k of ['model', 'dtype'] as const) {
    if (typeof ns[k] !== 'string' || ns[k].length === 0) throw argError('ERR_INVALID_ARG_VALUE', `namespace.${k} must be a non-empty string`);
  }
  const canon: [string, string | number | boolean][] = [];
  for (const k of Object.keys(ns).sort()) {
    const v = ns[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) {
      throw argError('ERR_INVALID_ARG_VALUE', `namespace.${k} must be a string, a finite number or a boolean`);
    }
    canon.push([k, v]);
  }
  return createHash('sha256').update(JSON.stringify({ kvcache: KVCACHE_FORMAT, namespace: canon })).digest();
}

function geometryOf(o: KVCacheOptions): KVGeometry {
  const pageBytes = wholeNumber(o.pageBytes, 'pageBytes', 1, 2 ** 32 - 1 - HEADER_BYTES - ALIGN);
  const ways = wholeNumber(o.ways ?? 8, 'ways', 1, MAX_WAYS);
  const slotBytes = HEADER_BYTES + roundUp(pageBytes, ALIGN);
  const setBytes = DIR_BYTES + ways * slotBytes;
  const capacityBytes = wholeNumber(o.capacityBytes, 'capacityBytes', setBytes, Number.MAX_SAFE_INTEGER);
  const sets = Math.floor(capacityBytes / setBytes);
  const shards = wholeNumber(o.shards ?? Math.min(16, sets), 'shards', 1, Math.min(4096, sets));
  return { format: KVCACHE_FORMAT, pageBytes, slotBytes, sets, ways, shards };
}

type Lock = { release: () => void };
/** A call waiting for (or holding) sets: how many of them are still another's; `go` lets it on. */
type SetWaiter = { blocked: number; sets: number[]; go: (() => void) | undefined };
/** A way of a set whose directory entry changed (in `dir`) and must be written. */
type DirWay = { set: number; way: number; dir: SetDirectory };
/** A key of a put: where it goes and, once chosen, its way; its slot's memory (header room, then payload). */
type PutKey = { i: number; id: Buffer; hex: string; set: number; length: number; epoch: number; way: number; slot: IoBuffer | undefined };

/**
 * A shared KV-cache page store. Open with KVCache.open(); every method takes a batch of keys and
 * does its I/O in a few batched calls (a put: the directories, then the slots with their entries).
 */
export class KVCache {
  readonly root: string;
  readonly geometry: KVGeometry;
  readonly namespaceHash: Buffer;
  readonly #client: Client;
  readonly #files: File[]; // slots: O_DIRECT where the file system has it
  readonly #dirFiles: File[]; // set directories: 4 KiB read and rewritten by every put, kept in the page cache
  readonly #setBytes: number;
  // What a read takes of a header block (its last bytes, the fields at their end): HEAD_READ, or
  // the slot files' O_DIRECT alignment where that is more (4 KiB on tmpfs, on 4Kn disks, and on
  // kernels without STATX_DIOALIGN): a read from HEAD_AT there is not aligned, and 'auto' would
  // send it, payload and all, through the page cache.
  readonly #headRead: number;
  readonly #index = new IdIndex(); // id hex -> where this process last saw it
  readonly #idMemo = new Map<string, IdRecord>(); // string keys seen lately: their ids' records (the index's own where it has one)
  readonly #pins = new Map<string, { set: number; way: number; count: number }>();
  readonly #pinnedWays = new Map<number, number>(); // set * ways + way -> pin count
  // What this process's puts are writing, from their plan until their directory entries are
  // written: other calls choose none of these ways, and take these keys as present.
  readonly #writingWays = new Map<number, number>(); // set * ways + way -> calls writing it
  readonly #writingIds = new Set<string>(); // id hex
  readonly #calls = new Set<Promise<unknown>>();
  readonly #payloadOf = new WeakMap<IoBuffer, IoBuffer>(); // payload view from alloc() -> header+payload
  readonly #setQueues = new Map<number, SetWaiter[]>(); // set -> calls holding (first) or waiting for it
  readonly #staging: IoBuffer[] = [];
  // get()'s pool (without `into`): slot-sized registered memory lent to callers until recycle().
  readonly #poolIdle: Slot[] = [];
  readonly #slabs = new Set<Slab>();
  readonly #lent = new WeakMap<Uint8Array, Slot>();
  #lentCount = 0;
  readonly #maxIdleSlots: number;
  // A lent Buffer that is collected without recycle(): its slot is written off (never reused,
  // since a subarray of it may still be alive), and its slab is left to the collector.
  readonly #abandon = new FinalizationRegistry<Slot>((slot) => {
    slot.slab.abandoned++;
    this.#lentCount--;
  });
  #lastEpoch = 0;
  #closing: Promise<void> | undefined;
  readonly #stats = { hits: 0, misses: 0, corrupt: 0, raced: 0, stored: 0, present: 0, failed: 0, evicted: 0, deleted: 0, bytesRead: 0, bytesWritten: 0, bytesCopied: 0, repaired: 0, unlisted: 0, poolAllocs: 0 };

  private constructor(root: string, client: Client, files: File[], dirFiles: File[], geometry: KVGeometry, ns: Buffer, poolBytes: number, headRead: number) {
    this.root = root;
    this.#headRead = headRead;
    this.#maxIdleSlots = Math.max(1, Math.floor(poolBytes / geometry.slotBytes));
    this.#client = client;
    this.#files = files;
    this.#dirFiles = dirFiles;
    this.geometry = geometry;
    this.namespaceHash = ns;
    this.#setBytes = DIR_BYTES + geometry.ways * geometry.slotBytes;
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
    const metaPath = join(root, 'meta.json');

    let geometry = await readMeta(metaPath);
    if (!geometry) {
      if (options.create === false) throw argError(ERR.notFound, `no KV cache in '${root}' (meta.json missing)`, { path: root });
      // The defaults (8 ways, min(16, sets) shards) only for a new cache: an existing one gives its own, below.
      const wanted = geometryOf(options);
      // Owner-only, whatever the umask: a cache holds a model's activations (issue 5, point 6).
      await fsp.mkdir(root, { recursive: true, mode: 0o700 });
      const setBytes = DIR_BYTES + wanted.ways * wanted.slotBytes;
      // Shards first, then meta.json: a cache is never announced before its files exist. Never
      // shrink or truncate a file another process may already be using.
      for (let s = 0; s < wanted.shards; s++) {
        const size = shardSets(wanted, s) * setBytes;
        const fh = await fsp.open(join(root, shardName(s)), fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
        try {
          if ((await fh.stat()).size < size) await fh.truncate(size);
        } finally {
          await fh.close();
        }
      }
      const meta = { ...wanted, capacityBytes: wanted.sets * setBytes, createdBy: { namespaceHash: ns.toString('hex'), pid: process.pid, at: new Date().toISOString() } };
      const tmp = `${metaPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
      await fsp.writeFile(tmp, JSON.stringify(meta, null, 2) + '\n', { flag: 'wx', mode: 0o600 });
      try {
        // No-clobber publish: a second creator racing us gets EEXIST and checks what won.
        await client.hardlink(tmp, metaPath).catch(async (e: unknown) => {
          if ((e as { code?: string }).code === 'EEXIST') return;
          await fsp.rename(tmp, metaPath); // file systems without hard links: atomic, last writer wins
        });
      } finally {
        await fsp.rm(tmp, { force: true });
      }
      geometry = await readMeta(metaPath);
      if (!geometry) throw argError(ERR.mismatch, `meta.json in '${root}' vanished while the cache was made`, { path: metaPath });
    }
    // Options left unset (ways, shards) take the cache's values; the rest must agree.
    const asked = geometryOf({ ...options, ways: options.ways ?? geometry.ways, shards: options.shards ?? geometry.shards });
    for (const k of ['format', 'pageBytes', 'slotBytes', 'ways', 'shards', 'sets'] as const) {
      if (geometry[k] !== asked[k]) {
        throw argError(ERR.mismatch, `the KV cache in '${root}' has ${k} ${geometry[k]}, not ${asked[k]} (meta.json: ${JSON.stringify(geometry)})`, { path: metaPath });
      }
    }
    const files: File[] = [];
    const dirFiles: File[] = [];
    let headRead = HEAD_READ;
    try {
      for (let s = 0; s < geometry.shards; s++) {
        const path = join(root, shardName(s));
        files.push(await client.open(path, 'r+'));
        dirFiles.push(await client.open(path, 'r+', undefined, { direct: 'never' }));
      }
      // The shards share a directory, so one file system: the first says what O_DIRECT needs
      // (USRBIO needs no alignment). Past 4 KiB the payload reads are not aligned either.
      const { engine, direct } = await files[0].stat();
      if (engine !== 'usrbio' && direct.active) headRead = Math.min(HEADER_BYTES, Math.max(HEAD_READ, direct.memoryAlign, direct.offsetAlign));
    } catch (e) {
      await Promise.allSettled([...files, ...dirFiles].map((f) => f.close()));
      throw e;
    }
    return new KVCache(root, client, files, dirFiles, geometry, ns, poolBytes, headRead);
  }

  // ---------------------------------------------------------------------------------------------
  // Ids and places

  /** The 128-bit id of a key in this cache's namespace. */
  idOf(key: KVKey, index = 0): Buffer {
    return typeof key === 'string' ? this.#recordOf(key, index).id : this.#idOfBytes(key, index);
  }

  #idOfBytes(key: Uint8Array, index: number): Buffer {
    if (!(key instanceof Uint8Array)) throw argError('ERR_INVALID_ARG_TYPE', `key ${index} must be a string or a Uint8Array`, { index });
    return createHash('sha256').update(this.namespaceHash).update(key).digest().subarray(0, 16);
  }

  /** The record of a key's id: from memory for a string key seen lately, else hashed. */
  #recordOf(key: KVKey, index: number): IdRecord {
    if (typeof key === 'string') {
      // Keys come back again and again (every lookup walks a prefix of the same chain): hashing
      // each time would cap lookups of seen keys near 0.3M keys/s; a map of recent ones does not.
      const seen = this.#seen(key);
      if (seen !== undefined) return seen;
      checkStringKey(key, index);
      return this.#remember(key, this.#hashOf(key));
    }
    return this.#recordOfId(this.#idOfBytes(key, index));
  }

  /** The index's record of an id if it has one, else a record of its own (not in the index). */
  #recordOfId(id: Buffer): IdRecord {
    const hex = id.toString('hex');
    return this.#index.record(hex) ?? new IdRecord(hex, id);
  }

  /**
   * The memo's record of a string key, or undefined if the key was not seen lately. It is the
   * index's own record whenever the index has the id, so that its place is one read away (the
   * index makes a new record when a put or a directory read lists an id the memo met first, or
   * lists it again after dropping it: the memo follows it here, once).
   */
  #seen(key: string): IdRecord | undefined {
    const r = this.#idMemo.get(key);
    if (r === undefined || r.loc !== undefined) return r;
    const live = this.#index.record(r.hex);
    if (live === undefined) return r;
    this.#idMemo.set(key, live);
    return live;
  }

  #setOf(id: Buffer): number {
    return id.readUIntLE(0, 6) % this.geometry.sets;
  }

  #fileOf(set: number): File {
    return this.#files[set % this.geometry.shards];
  }

  #dirFileOf(set: number): File {
    return this.#dirFiles[set % this.geometry.shards];
  }

  #dirOffset(set: number): number {
    return Math.floor(set / this.geometry.shards) * this.#setBytes;
  }

  #slotOffset(set: number, way: number): number {
    return this.#dirOffset(set) + DIR_BYTES + way * this.geometry.slotBytes;
  }

  #ids(keys: readonly KVKey[]): Buffer[] {
    if (!Array.isArray(keys)) throw argError('ERR_INVALID_ARG_TYPE', 'keys must be an array of strings or Uint8Arrays');
    const ids: Buffer[] = new Array(keys.length);
    const fresh = this.#fromMemo(keys, (i, r) => (ids[i] = r.id));
    this.#hashKeys(keys, fresh, (i, id) => (ids[i] = typeof keys[i] === 'string' ? this.#remember(keys[i] as string, id).id : id));
    return ids;
  }

  /** The keys' id records: id and hex at hand, and (for keys seen lately) their place. */
  #records(keys: readonly KVKey[]): IdRecord[] {
    if (!Array.isArray(keys)) throw argError('ERR_INVALID_ARG_TYPE', 'keys must be an array of strings or Uint8Arrays');
    const records: IdRecord[] = new Array(keys.length);
    const fresh = this.#fromMemo(keys, (i, r) => (records[i] = r));
    this.#hashKeys(keys, fresh, (i, id) => (records[i] = typeof keys[i] === 'string' ? this.#remember(keys[i] as string, id) : this.#recordOfId(id)));
    return records;
  }

  /** Hands over the memo's record of each string key seen lately; returns the positions of the rest. */
  #fromMemo(keys: readonly KVKey[], found: (i: number, r: IdRecord) => void): number[] {
    const fresh: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const r = typeof k === 'string' ? this.#seen(k) : undefined;
      if (r !== undefined) found(i, r);
      else if (typeof k === 'string') {
        checkStringKey(k, i);
        fresh.push(i);
      } else if (k instanceof Uint8Array) fresh.push(i);
      else throw argError('ERR_INVALID_ARG_TYPE', `key ${i} must be a string or a Uint8Array`, { index: i });
    }
    return fresh;
  }

  /** Ids of keys[i] for i in `which`: in one call into the addon where it can hash, else one by one. */
  #hashKeys(keys: readonly KVKey[], which: readonly number[], each: (i: number, id: Buffer) => void): void {
    if (which.length === 0) return;
    const keyIds = native().keyIds;
    if (keyIds === undefined) {
      for (const i of which) each(i, typeof keys[i] === 'string' ? this.#hashOf(keys[i]) : this.#idOfBytes(keys[i] as Uint8Array, i));
      return;
    }
    const ids = Buffer.allocUnsafe(which.length * 16);
    keyIds(this.namespaceHash, which.length === keys.length ? keys : which.map((i) => keys[i]), ids);
    which.forEach((i, k) => each(i, ids.subarray(k * 16, k * 16 + 16)));
  }

  #hashOf(key: string): Buffer {
    return createHash('sha256').update(this.namespaceHash).update(key, 'utf8').digest().subarray(0, 16);
  }

  /** The record of a string key just hashed, remembered in the memo. */
  #remember(key: string, id: Buffer): IdRecord {
    const r = this.#recordOfId(id);
    if (this.#idMemo.size >= ID_MEMO_MAX) this.#idMemo.clear();
    this.#idMemo.set(key, r);
    return r;
  }

  #epoch(): number {
    // Milliseconds since the epoch, strictly increasing within this process (fractions break ties).
    this.#lastEpoch = Math.max(Date.now(), this.#lastEpoch + 1 / 1024);
    return this.#lastEpoch;
  }

  #alive(loc: { expiry: number }, now: number): boolean {
    return loc.expiry === 0 || loc.expiry > now;
  }

  // ---------------------------------------------------------------------------------------------
  // Memory

  /**
   * Memory for a payload of `bytes` that put() writes without copying: 4 KiB of header room sit
   * in front of it, in the same allocation. Fill it, then pass it (this very object) to put().
   */
  alloc(bytes: number): IoBuffer {
    this.#checkOpen();
    wholeNumber(bytes, 'bytes', 0, this.geometry.pageBytes);
    const whole = this.#alloc(HEADER_BYTES + roundUp(Math.max(bytes, 1), ALIGN));
    // The header room's page is touched now, not by the first put (a page fault per page there).
    whole.bytes.fill(0, 0, HEADER_BYTES);
    const payload = whole.subarray(HEADER_BYTES, HEADER_BYTES + bytes);
    this.#payloadOf.set(payload, whole);
    return payload;
  }

  /** The cache's memory (payloads, staging, the pool): slots and headers are packed in it. */
  #alloc(bytes: number): IoBuffer {
    return allocPacked(this.#client, bytes);
  }

  #takeStaging(bytes: number): IoBuffer {
    const i = this.#staging.findIndex((b) => b.byteLength >= bytes && !b.freed);
    if (i >= 0) return this.#staging.splice(i, 1)[0];
    return this.#alloc(roundUp(Math.max(bytes, ALIGN), 1 << 20));
  }

  #giveStaging(b: IoBuffer): void {
    if (this.#closing || this.#staging.length >= 4) b.free();
    else this.#staging.push(b);
  }

  /** `n` slot-sized pieces of registered memory: idle ones first, the rest from one new slab. */
  #takeSlots(n: number): Slot[] {
    const missing = n - this.#poolIdle.length;
    if (missing > 0) {
      // The new slab first: if its allocation fails, the idle slots are still the pool's.
      const S = this.geometry.slotBytes;
      const count = Math.max(missing, Math.min(8, this.#maxIdleSlots, Math.floor((32 << 20) / S)));
      const slab: Slab = { mem: this.#alloc(count * S), slots: count, idle: count, abandoned: 0, retired: false };
      this.#slabs.add(slab);
      this.#stats.poolAllocs++;
      for (let k = 0; k < count; k++) this.#poolIdle.push({ slab, mem: slab.mem.subarray(k * S, (k + 1) * S) });
    }
    const out = this.#poolIdle.splice(this.#poolIdle.length - n);
    for (const s of out) s.slab.idle--;
    return out;
  }

  /** Back to the pool (a miss's slot, or a recycled one); whole idle slabs beyond poolBytes go. */
  #giveSlot(slot: Slot): void {
    if (slot.slab.retired) return;
    slot.slab.idle++;
    this.#poolIdle.push(slot);
    if (this.#poolIdle.length <= this.#maxIdleSlots && !this.#closing) return;
    for (const slab of this.#slabs) {
      if (this.#poolIdle.length <= this.#maxIdleSlots && !this.#closing) break;
      if (slab.idle + slab.abandoned !== slab.slots) continue;
      this.#retire(slab);
    }
  }

  #retire(slab: Slab): void {
    slab.retired = true;
    this.#slabs.delete(slab);
    for (let k = this.#poolIdle.length - 1; k >= 0; k--) if (this.#poolIdle[k].slab === slab) this.#poolIdle.splice(k, 1);
    // A slab with an abandoned slot may still be viewed by a subarray the caller kept: the
    // collector frees it; otherwise it goes now.
    if (slab.abandoned === 0) slab.mem.free();
  }

  /** Lends a hit's payload (a view of its slot) to the caller. */
  #lend(slot: Slot, length: number): Buffer {
    const view = slot.mem.bytes.subarray(HEADER_BYTES, HEADER_BYTES + length);
    this.#lent.set(view, slot);
    this.#abandon.register(view, slot, view);
    this.#lentCount++;
    return view;
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
      if (!(view instanceof Uint8Array)) continue;
      const slot = this.#lent.get(view);
      if (!slot) continue;
      this.#lent.delete(view);
      this.#abandon.unregister(view);
      this.#lentCount--;
      this.#giveSlot(slot); // after close(): frees its slab once no Buffer of it is lent
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Directories

  /** Each set's directory; null where its read failed (that read's error in `errors[i]`, if given). */
  async #readDirs(sets: readonly number[], into: IoBuffer, errors?: (ThreeFSError | undefined)[]): Promise<(SetDirectory | null)[]> {
    const ops = sets.map((set, i) => ({ file: this.#dirFileOf(set), buffer: into.subarray(i * DIR_BYTES, (i + 1) * DIR_BYTES), fileOffset: this.#dirOffset(set) }));
    const results = ops.length ? await this.#client.batchRead(ops) : [];
    return results.map((r, i) => {
      if (r.error) {
        if (errors) errors[i] = r.error;
        return null;
      }
      this.#stats.bytesRead += r.bytes;
      return SetDirectory.parse(into.bytes.subarray(i * DIR_BYTES, (i + 1) * DIR_BYTES), this.geometry.ways);
    });
  }

  /**
   * Writes of these ways' directory entries, each on its own (DIR_ENTRY bytes at its place in the
   * set's directory), from `mem`.
   */
  #entryWrites(ways: readonly DirWay[], mem: IoBuffer): FileIoOp[] {
    const bytes = mem.bytes;
    return ways.map(({ set, way, dir }, k) => {
      dir.copyEntry(way, bytes, k * DIR_ENTRY);
      return { file: this.#dirFileOf(set), buffer: mem.subarray(k * DIR_ENTRY, (k + 1) * DIR_ENTRY), fileOffset: this.#dirOffset(set) + SetDirectory.offsetOf(way) };
    });
  }

  /** Runs writes in one batch and counts the bytes written. */
  async #write(ops: FileIoOp[]): Promise<OpResult[]> {
    const rs = ops.length ? await this.#client.batchWrite(ops) : [];
    for (const r of rs) if (!r.error) this.#stats.bytesWritten += r.bytes;
    return rs;
  }

  /** Where each id is: the index first, then one batch of directory reads. `undefined`: absent. */
  /** Where each key is: the index, then the directories. `failed[i]`: key i's directory could not be read (its error). */
  async #locate(refs: readonly IdRecord[], useIndex: boolean, now: number, failed?: (ThreeFSError | undefined)[]): Promise<(Loc | undefined)[]> {
    const out: (Loc | undefined)[] = new Array(refs.length).fill(undefined); // no holes: callers map over it
    const need = new Map<number, number[]>(); // set -> positions
    refs.forEach((r, i) => {
      const known = useIndex ? this.#index.locOf(r) : undefined;
      if (known && this.#alive(known, now)) out[i] = known;
      else {
        const set = this.#setOf(r.id);
        const list = need.get(set);
        if (list) list.push(i);
        else need.set(set, [i]);
      }
    });
    if (need.size === 0) return out;
    const sets = [...need.keys()];
    const buf = this.#takeStaging(sets.length * DIR_BYTES);
    try {
      const errors: (ThreeFSError | undefined)[] = [];
      const dirs = await this.#readDirs(sets, buf, errors);
      sets.forEach((set, s) => {
        const dir = dirs[s];
        for (const i of need.get(set)!) {
          if (failed && errors[s]) failed[i] = errors[s];
          const { id, hex } = refs[i];
          const way = dir ? dir.find(id, now) : -1;
          if (way < 0) {
            this.#index.delete(hex);
            continue;
          }
          const loc = dir!.loc(set, way);
          this.#index.set(hex, loc);
          out[i] = loc;
        }
      });
    } finally {
      this.#giveStaging(buf);
    }
    return out;
  }

  /**
   * Per-set locks of this process. Each set has a queue of the calls that want it, its holder
   * first. A call joins the queues of all its sets at once (synchronously, so two calls can never
   * each hold a set the other waits for) and goes on once it heads every one of them: no promise
   * unless it has to wait.
   */
  #lockSets(sets: readonly number[]): Lock | Promise<Lock> {
    const waiter: SetWaiter = { blocked: 0, sets: [], go: undefined };
    for (const set of sets) {
      const queue = this.#setQueues.get(set);
      if (queue === undefined) this.#setQueues.set(set, [waiter]);
      else if (queue[queue.length - 1] === waiter) continue; // a set named twice
      else {
        queue.push(waiter);
        waiter.blocked++;
      }
      waiter.sets.push(set);
    }
    let released = false;
    const lock: Lock = {
      release: () => {
        if (released) return;
        released = true;
        this.#unlockSets(waiter);
      },
    };
    if (waiter.blocked === 0) return lock;
    return new Promise((resolve) => (waiter.go = () => resolve(lock)));
  }

  #unlockSets(holder: SetWaiter): void {
    for (const set of holder.sets) {
      const queue = this.#setQueues.get(set)!;
      queue.shift(); // the holder heads every queue it is in
      if (queue.length === 0) {
        this.#setQueues.delete(set);
        continue;
      }
      const next = queue[0];
      if (--next.blocked === 0) next.go!();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // put

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
  put(keys: readonly KVKey[], buffers: readonly KVPayload[], options: { ttlMs?: number } = {}): Promise<PutResult[]> {
    return this.#track(this.#put(keys, buffers, options));
  }

  async #put(keys: readonly KVKey[], buffers: readonly KVPayload[], options: { ttlMs?: number }): Promise<PutResult[]> {
    this.#checkOpen();
    const records = this.#records(keys); // id and hex of each key
    const ids = records.map((r) => r.id);
    if (!Array.isArray(buffers) || buffers.length !== ids.length) throw argError('ERR_INVALID_ARG_VALUE', 'buffers must be an array with one payload per key');
    options ??= {};
    const ttl = options.ttlMs === undefined ? 0 : wholeNumber(options.ttlMs, 'ttlMs', 0, 2 ** 46);
    const payloads = buffers.map((b, i) => {
      if (b instanceof IoBuffer) {
        if (b.freed) throw argError('ERR_BUFFER_FREED', `buffer ${i} was freed`, { index: i });
      } else if (!ArrayBuffer.isView(b)) throw argError('ERR_INVALID_ARG_TYPE', `buffer ${i} must be an IoBuffer or an ArrayBufferView`, { index: i });
      else if (b.byteLength === 0 && isDetached(b.buffer)) throw argError('ERR_BUFFER_FREED', `buffer ${i}: its ArrayBuffer is detached (transferred)`, { index: i });
      if (b.byteLength > this.geometry.pageBytes) {
        throw argError('ERR_OUT_OF_RANGE', `buffer ${i}: ${b.byteLength} bytes is more than pageBytes (${this.geometry.pageBytes})`, { index: i });
      }
      return b;
    });
    const results: PutResult[] = ids.map(() => ({ status: 'failed' }));
    const now = Date.now();
    const expiry = ttl > 0 ? now + ttl : 0;

    // Dedup within this call; against the cache, below (directories, then slot headers).
    const todo: PutKey[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const hex = records[i].hex;
      if (seen.has(hex)) results[i] = { status: 'present' };
      else {
        seen.add(hex);
        todo.push({ i, id, hex, set: this.#setOf(id), length: payloads[i].byteLength, epoch: 0, way: -1, slot: undefined });
      }
    }
    if (todo.length === 0) return this.#count(results);

    const sets = [...new Set(todo.map((t) => t.set))];
    // The sets' lock covers reading their directories and choosing ways; the ways chosen stay this
    // call's (#writingWays) while their slots and entries are written, without the lock, so other
    // calls' puts to the same sets go on meanwhile.
    // Staging before the lock: a failed allocation must not leave the sets locked.
    const dirBuf = this.#takeStaging(sets.length * DIR_BYTES);
    let lock: Lock | undefined = await this.#lockSets(sets);
    let staging: IoBuffer | undefined;
    const writing: { set: number; way: number; hex: string }[] = [];
    try {
      // 1. The directories, in one batch: dedup and the choice of ways. Meanwhile each slot's
      //    memory is made ready (its header does not name the way), so that work costs no time.
      const dirErrors: (ThreeFSError | undefined)[] = [];
      const reading = this.#readDirs(sets, dirBuf, dirErrors);
      try {
        staging = this.#slotMemory(todo, payloads, expiry);
      } catch (e) {
        await reading.catch(() => undefined); // dirBuf is the device's until then
        throw e;
      }
      const dirs = await reading;
      const dirBySet = new Map(sets.map((s, k) => [s, dirs[k]]));
      const dirErrorOf = new Map(sets.map((s, k) => [s, dirErrors[k]]));
      const presentAt = await this.#listedAndWhole(todo, dirBySet, now);

      // 2. A way for each key still to store.
      const W = this.geometry.ways;
      const taken = new Set<number>(); // set * ways + way chosen in this call
      const changed = new Map<number, SetDirectory>(); // set * ways + way -> its directory: entries to write
      const plan: PutKey[] = [];
      for (const t of todo) {
        const dir = dirBySet.get(t.set);
        if (!dir) {
          this.#index.delete(t.hex);
          results[t.i] = { status: 'failed', error: forKey(dirErrorOf.get(t.set)!, t.i) };
          continue;
        }
        const at = presentAt.get(t.i);
        if (at !== undefined) {
          this.#index.set(t.hex, dir.loc(t.set, at));
          results[t.i] = { status: 'present' };
          continue;
        }
        if (this.#writingIds.has(t.hex)) {
          results[t.i] = { status: 'present' }; // another call of this process is storing it
          continue;
        }
        this.#index.delete(t.hex);
        // A listing the slot header contradicts is stale: that way is free for this put.
        const stale = dir.find(t.id);
        if (stale >= 0) {
          dir.clear(stale);
          changed.set(t.set * W + stale, dir);
        }
        const way = this.#chooseWay(t.set, dir, taken, now);
        if (way < 0) {
          let byThisCall = false;
          for (let w = 0; w < W; w++) byThisCall ||= taken.has(t.set * W + w);
          results[t.i] = {
            status: 'failed',
            error: byThisCall
              ? argError(ERR.setFull, `set ${t.set}: this call has more keys for it than it has ways (${W}, less any pinned)`, { index: t.i })
              : argError(ERR.full, `set ${t.set}: every way is pinned by this process`, { index: t.i }),
          };
          continue;
        }
        taken.add(t.set * W + way);
        t.way = way;
        plan.push(t);
      }
      for (const t of plan) {
        const key = t.set * W + t.way;
        this.#writingWays.set(key, (this.#writingWays.get(key) ?? 0) + 1);
        this.#writingIds.add(t.hex);
        writing.push({ set: t.set, way: t.way, hex: t.hex });
      }
      lock.release();
      lock = undefined;
      if (plan.length === 0) return this.#count(results);

      // 3. One batch: every slot (header and payload in one op, its payload CRC32C sealed by the
      //    engine as it goes out), and each slot's directory entry, which makes the page visible
      //    to other processes, written by the engine once that slot is whole (IoOp.after): a
      //    crash or a reader never finds an entry over a slot still being written. Listings found
      //    stale go alongside.
      let range = { offset: HEADER_BYTES, length: -1, at: HEAD_AT + PAYLOAD_CRC_AT };
      const ops: FileIoOp[] = plan.map((t) => {
        if (range.length !== t.length) range = { offset: HEADER_BYTES, length: t.length, at: HEAD_AT + PAYLOAD_CRC_AT }; // shared while lengths repeat
        return { file: this.#fileOf(t.set), buffer: t.slot!, fileOffset: this.#slotOffset(t.set, t.way), crc32c: range };
      });
      const evicts: (string | undefined)[] = plan.map((t) => {
        const dir = dirBySet.get(t.set)!;
        const old = dir.alive(t.way, now) && !dir.holds(t.way, t.id) ? dir.id(t.way).toString('hex') : undefined;
        dir.list(t.way, t.id, t.length, t.epoch, expiry);
        changed.delete(t.set * W + t.way);
        return old;
      });
      const entries: DirWay[] = plan.map((t) => ({ set: t.set, way: t.way, dir: dirBySet.get(t.set)! }));
      for (const [key, dir] of changed) entries.push({ set: Math.floor(key / W), way: key % W, dir });
      const entryOps = this.#entryWrites(entries, dirBuf);
      entryOps.forEach((op, k) => {
        if (k < plan.length) op.after = k;
        ops.push(op);
      });
      const rs = await this.#client.batchWrite(ops);

      plan.forEach((t, k) => {
        const r = rs[k];
        if (r.error) {
          results[t.i] = { status: 'failed', error: forKey(r.error, t.i) };
          return;
        }
        this.#stats.bytesWritten += r.bytes;
        const old = evicts[k];
        if (old !== undefined) {
          this.#stats.evicted++;
          this.#index.delete(old);
        }
        this.#index.set(t.hex, { set: t.set, way: t.way, length: t.length, epoch: t.epoch, expiry });
        results[t.i] = { status: 'stored' };
      });
      // A slot whose entry write failed is still found by this process (index), and is a miss for
      // others: a cache may lose entries, so it counts as stored (stats().unlisted).
      entries.forEach((e, k) => {
        const r = rs[plan.length + k];
        if (!r.error) this.#stats.bytesWritten += r.bytes;
        else if ((k >= plan.length || !rs[k].error) && e.dir.valid(e.way)) this.#stats.unlisted++;
      });
      return this.#count(results);
    } finally {
      lock?.release();
      if (staging) this.#giveStaging(staging);
      this.#giveStaging(dirBuf);
      if (writing.length > 0) await this.#doneWriting(writing);
    }
  }

  /**
   * The memory each key's slot goes out from, header room then payload: in place for a payload
   * from cache.alloc() (once per call: a second key with the same memory is copied), else a copy
   * in staging memory (returned; stats().bytesCopied). Writes each header, and each key's epoch.
   */
  #slotMemory(todo: PutKey[], payloads: readonly KVPayload[], expiry: number): IoBuffer | undefined {
    const used = new Set<IoBuffer>();
    const copies: PutKey[] = [];
    for (const t of todo) {
      t.epoch = this.#epoch();
      const whole = this.#payloadOf.get(payloads[t.i] as IoBuffer);
      if (whole && !used.has(whole)) {
        used.add(whole);
        const span = HEADER_BYTES + roundUp(t.length, ALIGN);
        t.slot = span === whole.byteLength ? whole : whole.subarray(0, span);
        writeHeader(whole.bytes, 0, t.id, t.length, t.epoch, expiry);
      } else copies.push(t);
    }
    if (copies.length === 0) return undefined;
    let total = 0;
    for (const t of copies) total += HEADER_BYTES + roundUp(t.length, ALIGN);
    const staging = this.#takeStaging(total);
    const bytes = staging.bytes;
    let at = 0;
    for (const t of copies) {
      const span = HEADER_BYTES + roundUp(t.length, ALIGN);
      const payload = payloads[t.i];
      const src = payload instanceof IoBuffer ? payload.bytes : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
      bytes.set(src, at + HEADER_BYTES);
      bytes.fill(0, at + HEADER_BYTES + src.byteLength, at + span);
      this.#stats.bytesCopied += src.byteLength;
      writeHeader(bytes, at, t.id, t.length, t.epoch, expiry);
      t.slot = staging.subarray(at, at + span);
      at += span;
    }
    return staging;
  }

  /**
   * Keys the directories list whose slot headers (one batch of reads of their fields, only when
   * there are any) still hold them: position -> way. 'present' is decided on disk, never from this
   * process's index (another process may have evicted the page); a listing the header
   * contradicts is stale (a crash or a lost race), and the key is stored again.
   */
  async #listedAndWhole(todo: readonly PutKey[], dirBySet: Map<number, SetDirectory | null>, now: number): Promise<Map<number, number>> {
    const presentAt = new Map<number, number>();
    const listed: { t: PutKey; way: number }[] = [];
    for (const t of todo) {
      const at = dirBySet.get(t.set)?.find(t.id, now) ?? -1;
      if (at >= 0) listed.push({ t, way: at });
    }
    if (listed.length === 0) return presentAt;
    const R = this.#headRead; // the fields are its last HEAD_READ bytes
    const heads = this.#takeStaging(listed.length * R);
    try {
      const rs = await this.#client.batchRead(listed.map((x, k) => ({ file: this.#fileOf(x.t.set), buffer: heads.subarray(k * R, (k + 1) * R), fileOffset: this.#slotOffset(x.t.set, x.way) + HEADER_BYTES - R })));
      listed.forEach((x, k) => {
        const r = rs[k];
        if (r.error) return; // unreadable: store it again
        this.#stats.bytesRead += r.bytes;
        const length = dirBySet.get(x.t.set)!.length(x.way);
        if (checkHeader(heads.bytes, (k + 1) * R - HEAD_READ, x.t.id, length, this.geometry.pageBytes, now) === 'ok') presentAt.set(x.t.i, x.way);
      });
    } finally {
      this.#giveStaging(heads);
    }
    return presentAt;
  }

  /**
   * Gives ways and keys back once their entries are written. Under the sets' lock: a call that
   * read a directory before those entries landed must have chosen its ways before these are free.
   */
  async #doneWriting(writing: { set: number; way: number; hex: string }[]): Promise<void> {
    const lock = await this.#lockSets(writing.map((w) => w.set));
    for (const w of writing) {
      const key = w.set * this.geometry.ways + w.way;
      const left = (this.#writingWays.get(key) ?? 1) - 1;
      if (left > 0) this.#writingWays.set(key, left);
      else this.#writingWays.delete(key);
      this.#writingIds.delete(w.hex);
    }
    lock.release();
  }

  /**
   * Free way, else an expired one, else the oldest epoch; never one pinned here or taken in this
   * call. A way another call of this process is writing comes last: taking it costs that call's
   * page (a miss later, never wrong data), which only a set full of concurrent puts should do.
   */
  #chooseWay(set: number, dir: SetDirectory, taken: Set<number>, now: number): number {
    const W = this.geometry.ways;
    let best = -1;
    let bestRank = Infinity;
    for (let w = 0; w < W; w++) {
      const key = set * W + w;
      if (taken.has(key) || this.#pinnedWays.has(key)) continue;
      const rank = this.#writingWays.has(key) ? Number.MAX_VALUE : !dir.valid(w) ? -2 : !dir.alive(w, now) ? -1 : dir.epoch(w);
      if (rank === -2) return w; // a free way: nothing ranks before it
      if (rank < bestRank) {
        bestRank = rank;
        best = w;
      }
    }
    return best;
  }

  #count(results: PutResult[]): PutResult[] {
    for (const r of results) this.#stats[r.status === 'stored' ? 'stored' : r.status === 'present' ? 'present' : 'failed']++;
    return results;
  }

  // ---------------------------------------------------------------------------------------------
  // get

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
    return this.#track(this.#get(keys, into));
  }

  async #get(keys: readonly KVKey[], into?: readonly KVPayload[]): Promise<GetResult[]> {
    this.#checkOpen();
    const refs = this.#records(keys);
    const n = refs.length;
    if (into !== undefined) {
      if (!Array.isArray(into) || into.length !== n) throw argError('ERR_INVALID_ARG_VALUE', 'into must be an array with one buffer per key');
      into.forEach((b, i) => {
        if (!(b instanceof IoBuffer) && !ArrayBuffer.isView(b)) throw argError('ERR_INVALID_ARG_TYPE', `into[${i}] must be an IoBuffer or an ArrayBufferView`, { index: i });
      });
      this.#checkApart(into);
    }
    const results: GetResult[] = refs.map(() => ({ status: 'miss' }));
    let pending = refs.map((_, i) => i);
    const stale: { id: Buffer; loc: Loc }[] = [];
    // Round 1 trusts the index; what failed there is looked up again in the directories (round 2).
    const tried: (Loc | undefined)[] = new Array(n).fill(undefined); // round 1: where each key was sent
    const fromIndex = new Uint8Array(n); // round 1: 1 where the index sent it (worth a second round)
    for (let round = 0; round < 2 && pending.length > 0; round++) {
      const now = Date.now();
      if (round === 0) for (const i of pending) fromIndex[i] = this.#aliveInIndex(refs[i], now) ? 1 : 0;
      const unread: (ThreeFSError | undefined)[] = [];
      let locs = await this.#locate(pending.map((i) => refs[i]), round === 0, now, unread);
      unread.forEach((e, k) => {
        if (e) results[pending[k]] = { status: 'miss', error: forKey(e, pending[k]) }; // its directory could not be read
      });
      if (round === 0) pending.forEach((i, k) => (tried[i] = locs[k]));
      else {
        // The directory sends it to the very slot that just failed: that answer stands.
        const same = (a: Loc | undefined, b: Loc | undefined) => !!a && !!b && a.set === b.set && a.way === b.way && a.epoch === b.epoch;
        const keep = pending.map((i, k) => !same(locs[k], tried[i]));
        pending = pending.filter((_, k) => keep[k]);
        locs = locs.filter((_, k) => keep[k]);
      }
      const retry = await this.#readSlots(refs, pending, locs, into, results, now, stale);
      pending = round === 0 ? retry.filter((i) => fromIndex[i] === 1) : [];
    }
    if (stale.length > 0 && !this.#closing) await this.#repair(stale);
    for (const r of results) this.#stats[r.status === 'hit' ? 'hits' : 'misses']++;
    return results;
  }

  /**
   * Throws ERR_OVERLAPPING_BUFFERS, before any I/O, if two `into` buffers share bytes (the same
   * buffer named twice, overlapping views): each key's page must land in memory of its own. A
   * buffer from cache.alloc() counts with its header room, which its read fills too.
   */
  #checkApart(into: readonly KVPayload[]): void {
    const byMemory = new Map<ArrayBufferLike, { i: number; start: number; end: number }[]>();
    into.forEach((b, i) => {
      if (b.byteLength === 0) return;
      const roomy = b instanceof IoBuffer ? this.#payloadOf.get(b) : undefined;
      const memory = b instanceof IoBuffer ? b.region.memory : b.buffer;
      const start = roomy ? roomy.byteOffset : b.byteOffset;
      const span = { i, start, end: roomy ? roomy.byteOffset + roomy.byteLength : b.byteOffset + b.byteLength };
      const list = byMemory.get(memory);
      if (list) list.push(span);
      else byMemory.set(memory, [span]);
    });
    for (const spans of byMemory.values()) {
      if (spans.length < 2) continue;
      // By start: if any two share bytes, two neighbours do.
      spans.sort((x, y) => x.start - y.start);
      for (let k = 1; k < spans.length; k++) {
        if (spans[k - 1].end <= spans[k].start) continue;
        const [first, second] = [spans[k - 1].i, spans[k].i].sort((x, y) => x - y);
        throw argError('ERR_OVERLAPPING_BUFFERS', `into[${second}] overlaps into[${first}]: each key's page needs memory of its own`, { index: second });
      }
    }
  }

  /**
   * Clears directory entries that still name a slot which failed its checks (same id, way and
   * epoch as when it was located): a crash between a slot write and its directory write, a torn
   * slot or a lost race leaves such entries, and they would make put() say 'present' forever.
   */
  async #repair(stale: { id: Buffer; loc: Loc }[]): Promise<void> {
    const sets = [...new Set(stale.map((x) => x.loc.set))];
    const buf = this.#takeStaging(sets.length * DIR_BYTES); // before the lock (see #put)
    const lock = await this.#lockSets(sets);
    try {
      const dirs = await this.#readDirs(sets, buf);
      const cleared: DirWay[] = [];
      sets.forEach((set, k) => {
        const dir = dirs[k];
        if (!dir) return;
        for (const { id, loc } of stale) {
          if (loc.set !== set) continue;
          if (this.#beingWritten(set, loc.way)) continue; // a put of this process lists its own key there
          if (!dir.valid(loc.way) || !dir.holds(loc.way, id) || dir.epoch(loc.way) !== loc.epoch) continue;
          dir.clear(loc.way);
          cleared.push({ set, way: loc.way, dir });
        }
      });
      const rs = await this.#write(this.#entryWrites(cleared, buf));
      this.#stats.repaired += rs.filter((r) => !r.error).length;
    } finally {
      this.#giveStaging(buf);
      lock.release();
    }
  }

  /** Reads and checks the located slots; returns the positions that missed after being located. */
  async #readSlots(refs: readonly IdRecord[], which: number[], locs: (Loc | undefined)[], into: readonly KVPayload[] | undefined, results: GetResult[], now: number, stale: { id: Buffer; loc: Loc }[]): Promise<number[]> {
    const jobs: { i: number; loc: Loc }[] = [];
    which.forEach((i, k) => {
      const loc = locs[k];
      if (!loc) return;
      if (loc.length > this.geometry.pageBytes) {
        // A damaged directory entry (it has no checksum): no slot holds that much, so no read.
        this.#stats.corrupt++;
        results[i] = { status: 'miss', error: argError(ERR.corrupt, `key ${i}: its directory entry is damaged (length ${loc.length})`, { index: i }) };
        this.#index.delete(refs[i].hex);
        stale.push({ id: refs[i].id, loc });
        return;
      }
      if (into && into[i].byteLength < loc.length) {
        results[i] = { status: 'miss', error: argError(ERR.small, `into[${i}] has ${into[i].byteLength} bytes, the page has ${loc.length}`, { index: i }) };
        return;
      }
      jobs.push({ i, loc });
    });
    if (jobs.length === 0) return [];
    // Without `into`: header and payload land together in a slot-sized piece of the pool, lent to
    // the caller on a hit. With `into`: headers go to staging, payloads straight to the caller's
    // memory. One batch either way; the engine takes each payload's CRC32C as its bytes land.
    // A read takes the last #headRead bytes of the header block (the fields end it): from `from`.
    const R = this.#headRead;
    const from = HEADER_BYTES - R;
    const slots = into ? [] : this.#takeSlots(jobs.length);
    const mem = into ? this.#takeStaging(jobs.length * R) : undefined;
    const lent = new Uint8Array(slots.length); // 1: slots[k] went to the caller
    try {
      const ops: FileIoOp[] = [];
      const heads: Buffer[] = []; // jobs[k]'s header is in heads[k] from headAt[k] (no view per key)
      const headAt: number[] = [];
      const firstOp: number[] = []; // jobs[k]'s ops are ops[firstOp[k]] up to firstOp[k + 1]
      jobs.forEach((j, k) => {
        const file = this.#fileOf(j.loc.set);
        const off = this.#slotOffset(j.loc.set, j.loc.way);
        const span = HEADER_BYTES + roundUp(j.loc.length, ALIGN); // header block and padded payload
        firstOp.push(ops.length);
        const roomy = into ? this.#payloadOf.get(into[j.i] as IoBuffer) : undefined;
        if (roomy) {
          // From cache.alloc(): the header room in front takes the header, so the slot is one op
          // (the bytes past the page's length, up to 4 KiB, get the slot's padding).
          ops.push({ file, buffer: roomy.subarray(from, span), fileOffset: off + from, crc32c: { offset: R, length: j.loc.length } });
          heads.push(roomy.bytes);
          headAt.push(HEAD_AT);
        } else if (into) {
          ops.push({ file, buffer: mem!.subarray(k * R, (k + 1) * R), fileOffset: off + from });
          ops.push({ file, buffer: into[j.i], fileOffset: off + HEADER_BYTES, length: j.loc.length, crc32c: { offset: 0, length: j.loc.length } });
          heads.push(mem!.bytes);
          headAt.push((k + 1) * R - HEAD_READ);
        } else {
          ops.push({ file, buffer: slots[k].mem.subarray(from, span), fileOffset: off + from, crc32c: { offset: R, length: j.loc.length } });
          heads.push(slots[k].mem.bytes);
          headAt.push(HEAD_AT);
        }
      });
      firstOp.push(ops.length);
      const reads = await this.#client.batchRead(ops);
      const missed: number[] = [];
      for (let k = 0; k < jobs.length; k++) {
        const { i, loc } = jobs[k];
        let failed: OpResult | undefined;
        for (let o = firstOp[k]; o < firstOp[k + 1]; o++) {
          if (!reads[o].error) this.#stats.bytesRead += reads[o].bytes;
          else failed ??= reads[o];
        }
        if (failed) {
          results[i] = { status: 'miss', error: forKey(failed.error!, i) };
          missed.push(i);
          continue;
        }
        const verdict = checkHeader(heads[k], headAt[k], refs[i].id, loc.length, this.geometry.pageBytes, now);
        const payloadOk = verdict === 'ok' && reads[firstOp[k + 1] - 1].crc32c === heads[k].readUInt32LE(headAt[k] + PAYLOAD_CRC_AT);
        if (!payloadOk) {
          // A slot that fails a check is a miss, and its listing is stale (see #repair).
          const why = verdict === 'ok' ? 'corrupt' : verdict;
          const message = verdict === 'ok' ? 'payload CRC32C mismatch (torn or damaged slot)' : `the slot ${verdict === 'corrupt' ? 'header is damaged' : 'holds another entry now'}`;
          this.#stats[why]++;
          results[i] = { status: 'miss', error: argError(ERR[why], `key ${i}: ${message}`, { index: i }) };
          this.#index.delete(refs[i].hex);
          stale.push({ id: refs[i].id, loc });
          missed.push(i);
        } else if (into) results[i] = { status: 'hit', bytes: loc.length };
        else {
          results[i] = { status: 'hit', bytes: loc.length, buffer: this.#lend(slots[k], loc.length) };
          lent[k] = 1;
        }
      }
      return missed;
    } finally {
      if (mem) this.#giveStaging(mem);
      slots.forEach((slot, k) => lent[k] === 1 || this.#giveSlot(slot));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // lookup, exists, pins, delete

  /**
   * How many leading keys are present (stops at the first absent one): the index, then one batch
   * of directory reads. Directory presence only: a later get can still miss (reused or torn slot).
   * `pin`: the found entries are kept from this process's eviction until release().
   */
  async lookup(keys: readonly KVKey[], options: { pin?: boolean } = {}): Promise<number> {
    this.#checkOpen();
    if (!Array.isArray(keys)) throw argError('ERR_INVALID_ARG_TYPE', 'keys must be an array of strings or Uint8Arrays');
    const now = Date.now();
    // The leading keys this process knows: one map lookup each (key to its id's record, which
    // holds the place), no hashing and no I/O.
    let locs: (Loc | undefined)[] = [];
    for (const key of keys) {
      const loc = typeof key === 'string' ? this.#seen(key)?.locAt(now) : undefined;
      if (loc === undefined) break;
      locs.push(loc);
    }
    const known = locs.length;
    if (known < keys.length) {
      const rest = keys.slice(known).map((k, i) => this.#recordOf(k, known + i));
      locs = locs.concat(await this.#locate(rest, true, now));
    }
    let n = 0;
    while (n < keys.length && locs[n]) n++;
    if (options?.pin) for (let i = 0; i < n; i++) this.#pin(this.idOf(keys[i], i), locs[i]!);
    return n;
  }

  #aliveInIndex(r: IdRecord, now: number): boolean {
    const loc = this.#index.locOf(r);
    return loc !== undefined && this.#alive(loc, now);
  }

  /** Whether each key is present (index or directory; not checked against the slot). */
  async exists(keys: readonly KVKey[]): Promise<boolean[]> {
    this.#checkOpen();
    const locs = await this.#locate(this.#records(keys), true, Date.now());
    return locs.map((l) => l !== undefined);
  }

  #pin(id: Buffer, loc: Loc): void {
    const hex = id.toString('hex');
    const pin = this.#pins.get(hex);
    if (pin) {
      pin.count++;
      // The key was stored again elsewhere since (deleted, or lost to another process): the pin
      // protects where it is now, not the way it left.
      if (pin.set !== loc.set || pin.way !== loc.way) {
        this.#unpinWay(pin.set, pin.way);
        pin.set = loc.set;
        pin.way = loc.way;
        const w = loc.set * this.geometry.ways + loc.way;
        this.#pinnedWays.set(w, (this.#pinnedWays.get(w) ?? 0) + 1);
      }
      return;
    }
    this.#pins.set(hex, { set: loc.set, way: loc.way, count: 1 });
    const w = loc.set * this.geometry.ways + loc.way;
    this.#pinnedWays.set(w, (this.#pinnedWays.get(w) ?? 0) + 1);
  }

  /** Drops one pin of each key (lookup(..., { pin: true }) adds one). Unknown keys are ignored. */
  release(keys: readonly KVKey[]): void {
    this.#checkOpen();
    for (const id of this.#ids(keys)) {
      const hex = id.toString('hex');
      const pin = this.#pins.get(hex);
      if (!pin) continue;
      if (--pin.count > 0) continue;
      this.#pins.delete(hex);
      this.#unpinWay(pin.set, pin.way);
    }
  }

  /** Whether a put of this process chose this way and is still writing its slot and entry. */
  #beingWritten(set: number, way: number): boolean {
    return this.#writingWays.has(set * this.geometry.ways + way);
  }

  #unpinWay(set: number, way: number): void {
    const w = set * this.geometry.ways + way;
    const c = (this.#pinnedWays.get(w) ?? 1) - 1;
    if (c > 0) this.#pinnedWays.set(w, c);
    else this.#pinnedWays.delete(w);
  }

  /**
   * Removes entries: clears their directory entries and zeroes the slot header, but only where
   * the header still holds that key (read first, in one batch: another process may have reused
   * the way since the directory was written). Resolves with whether each key's slot held it.
   * Rejects with the first I/O error (a directory or header read, a write) once the rest is done:
   * the keys may then still be there, and deleting them again is safe.
   */
  delete(keys: readonly KVKey[]): Promise<boolean[]> {
    return this.#track(this.#delete(keys));
  }

  async #delete(keys: readonly KVKey[]): Promise<boolean[]> {
    this.#checkOpen();
    const ids = this.#ids(keys);
    const sets = [...new Set(ids.map((id) => this.#setOf(id)))];
    const dirBuf = this.#takeStaging(sets.length * DIR_BYTES + HEADER_BYTES); // before the lock (see #put)
    const lock = await this.#lockSets(sets);
    let heads: IoBuffer | undefined;
    let failure: ThreeFSError | undefined; // the first read or write that failed
    try {
      const dirErrors: (ThreeFSError | undefined)[] = [];
      const dirs = await this.#readDirs(sets, dirBuf, dirErrors);
      const found = ids.map(() => false);
      const listed: { i: number; set: number; way: number }[] = [];
      const cleared: DirWay[] = [];
      sets.forEach((set, k) => {
        const dir = dirs[k];
        if (!dir) {
          failure ??= dirErrors[k];
          return;
        }
        ids.forEach((id, i) => {
          if (this.#setOf(id) !== set) return;
          this.#index.delete(id.toString('hex'));
          for (let way = dir.find(id); way >= 0; way = dir.find(id)) {
            dir.clear(way);
            if (this.#beingWritten(set, way)) {
              // A put of this process is replacing it there: the key goes with that put, and its
              // new slot and entry must not be zeroed or cleared behind it.
              found[i] = true;
              continue;
            }
            listed.push({ i, set, way });
            cleared.push({ set, way, dir });
          }
        });
      });
      const ops: FileIoOp[] = [];
      if (listed.length > 0) {
        const R = this.#headRead; // the fields are its last HEAD_READ bytes
        heads = this.#takeStaging(listed.length * R);
        const rs = await this.#client.batchRead(listed.map((x, k) => ({ file: this.#fileOf(x.set), buffer: heads!.subarray(k * R, (k + 1) * R), fileOffset: this.#slotOffset(x.set, x.way) + HEADER_BYTES - R })));
        const zeros = dirBuf.subarray(sets.length * DIR_BYTES, sets.length * DIR_BYTES + HEADER_BYTES);
        zeros.bytes.fill(0);
        listed.forEach((x, k) => {
          if (rs[k].error) {
            failure ??= rs[k].error!;
            return;
          }
          this.#stats.bytesRead += rs[k].bytes;
          const at = (k + 1) * R - HEAD_READ;
          if (heads!.bytes.readUInt32LE(at) !== SLOT_MAGIC || !holdsId(heads!.bytes, at, ids[x.i])) return; // reused (or never written): not ours to clear
          found[x.i] = true;
          ops.push({ file: this.#fileOf(x.set), buffer: zeros, fileOffset: this.#slotOffset(x.set, x.way) });
        });
      }
      for (const r of await this.#write([...ops, ...this.#entryWrites(cleared, dirBuf)])) failure ??= r.error ?? undefined;
      this.#stats.deleted += found.filter(Boolean).length;
      if (failure) throw failure;
      // A key named twice: its first place did the work, and both say what the slot held.
      const held = new Set(ids.filter((_, i) => found[i]).map((id) => id.toString('hex')));
      return ids.map((id) => held.has(id.toString('hex')));
    } finally {
      if (heads) this.#giveStaging(heads);
      this.#giveStaging(dirBuf);
      lock.release();
    }
  }

  stats(): KVCacheStats {
    let poolBytes = 0;
    for (const slab of this.#slabs) poolBytes += slab.mem.byteLength;
    return { ...this.#stats, indexSize: this.#index.size, pinned: this.#pins.size, lent: this.#lentCount, poolBytes };
  }

  /** Puts and gets under way: close() lets them finish before it closes the files. */
  #track<T>(call: Promise<T>): Promise<T> {
    this.#calls.add(call);
    const drop = () => this.#calls.delete(call);
    call.then(drop, drop);
    return call;
  }

  /** Closes the shard files (after the puts and gets under way) and frees staging memory. The client is the caller's. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#calls]); // every lock is taken inside a tracked call
      await Promise.all([...this.#files, ...this.#dirFiles].map((f) => f.close()));
      for (const b of this.#staging.splice(0)) b.free();
      // The pool: slabs wholly idle go now; one with Buffers still lent is left to the collector.
      for (const slab of [...this.#slabs]) if (slab.idle + slab.abandoned === slab.slots) this.#retire(slab);
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(): void {
    if (this.#closing) throw argError(ERR.closed, 'the KV cache is closed');
  }
}

/**
 * The error of one of the cache's own ops (a directory or slot read or write), as key `index`'s:
 * its code, errno, call, file and offset, and the key's place in the caller's array.
 */
function forKey(e: ThreeFSError, index: number): ThreeFSError {
  return new ThreeFSError(e.code, e.message, { errno: e.errno, syscall: e.syscall, path: e.path, offset: e.offset, index, cause: e });
}

// -----------------------------------------------------------------------------------------------
// On-disk formats

function shardName(s: number): string {
  return `shard-${String(s).padStart(4, '0')}.kv`;
}

function shardSets(g: KVGeometry, shard: number): number {
  return Math.floor(g.sets / g.shards) + (shard < g.sets % g.shards ? 1 : 0);
}

async function readMeta(path: string): Promise<KVGeometry | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw argError(ERR.mismatch, `meta.json is not JSON: '${path}'`, { path, cause: e });
  }
  const g = { format: m.format, pageBytes: m.pageBytes, slotBytes: m.slotBytes, sets: m.sets, ways: m.ways, shards: m.shards };
  for (const [k, v] of Object.entries(g)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw argError(ERR.mismatch, `meta.json: ${k} is missing or bad: '${path}'`, { path });
  }
  if (g.format !== KVCACHE_FORMAT) throw argError(ERR.mismatch, `meta.json: format ${g.format}, this library reads ${KVCACHE_FORMAT}: '${path}'`, { path });
  return g as KVGeometry;
}

// Slot header fields (little-endian, from HEAD_AT in the header block): magic u32 @0 | version
// u16 @4 | flags u16 @6 | id 16 B @8 | length u32 @24 | reserved u32 @28 | epoch f64 @32 | expiry
// f64 @40 | reserved | header CRC32C u32 @60 over bytes 0..60 | payload CRC32C u32 @64, sealed by
// the engine as the slot is written. The rest of the block is zero. (A damaged payload CRC is a
// mismatch like a damaged payload.)
/** Writes a slot's header block (HEADER_BYTES: zeros, then the fields at HEAD_AT) at `block` in `h`. */
function writeHeader(h: Buffer, block: number, id: Buffer, length: number, epoch: number, expiry: number): void {
  h.fill(0, block, block + HEADER_BYTES);
  const at = block + HEAD_AT;
  h.writeUInt32LE(SLOT_MAGIC, at);
  h.writeUInt16LE(KVCACHE_FORMAT, at + 4);
  id.copy(h, at + 8);
  h.writeUInt32LE(length, at + 24);
  h.writeDoubleLE(epoch, at + 32);
  h.writeDoubleLE(expiry, at + 40);
  h.writeUInt32LE(crc32cBytes(h, at, at + HEADER_CRC_AT), at + HEADER_CRC_AT);
}

/** Whether the header fields at `at` in `h` name `id` (their bytes 8..24). */
function holdsId(h: Buffer, at: number, id: Buffer): boolean {
  for (let b = 0; b < 16; b++) if (h[at + 8 + b] !== id[b]) return false;
  return true;
}

/** The header fields at `at` in `h`, checked against the key and length its listing gave. */
function checkHeader(h: Buffer, at: number, id: Buffer, length: number, pageBytes: number, now: number): 'ok' | 'corrupt' | 'raced' {
  const magic = h.readUInt32LE(at);
  if (magic === 0) return 'raced'; // deleted or never written
  if (magic !== SLOT_MAGIC || h.readUInt16LE(at + 4) !== KVCACHE_FORMAT) return 'corrupt';
  // In JS, and no views: this runs for every hit, on the JS thread.
  if (crc32cBytes(h, at, at + HEADER_CRC_AT) !== h.readUInt32LE(at + HEADER_CRC_AT)) return 'corrupt';
  const len = h.readUInt32LE(at + 24);
  if (len > pageBytes) return 'corrupt';
  if (!holdsId(h, at, id) || len !== length) return 'raced';
  const expiry = h.readDoubleLE(at + 40);
  if (expiry !== 0 && expiry <= now) return 'raced';
  return 'ok';
}
