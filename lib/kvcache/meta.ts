// A cache's identity on disk: its geometry in meta.json, its shard files, and the namespace hash
// that scopes its ids. Shard files are made before meta.json: a cache is never announced before
// its files exist, and no file another process may already use is shrunk or truncated.
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Client } from '../core/client';
import { argError, fromNative, ThreeFSError } from '../core/errors';
import { ERR, wholeNumber } from './checks';
import { DIR_BYTES, MAX_WAYS } from './set-directory';
import { ALIGN, HEADER_BYTES, KVCACHE_FORMAT, roundUp } from './slot-header';
import type { KVCacheOptions, KVGeometry, KVNamespace } from './types';

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

export function geometryOf(o: KVCacheOptions): KVGeometry {
  const pageBytes = wholeNumber(o.pageBytes, 'pageBytes', 1, 2 ** 32 - 1 - HEADER_BYTES - ALIGN);
  const ways = wholeNumber(o.ways ?? 8, 'ways', 1, MAX_WAYS);
  const slotBytes = HEADER_BYTES + roundUp(pageBytes, ALIGN);
  const setBytes = DIR_BYTES + ways * slotBytes;
  const capacityBytes = wholeNumber(o.capacityBytes, 'capacityBytes', setBytes, Number.MAX_SAFE_INTEGER);
  const sets = Math.floor(capacityBytes / setBytes);
  const shards = wholeNumber(o.shards ?? Math.min(16, sets), 'shards', 1, Math.min(4096, sets));
  return { format: KVCACHE_FORMAT, pageBytes, slotBytes, sets, ways, shards };
}

/** Bytes of one set in its shard file: its directory, then its slots. */
export function setBytesOf(g: KVGeometry): number {
  return DIR_BYTES + g.ways * g.slotBytes;
}

export function shardName(s: number): string {
  return `shard-${String(s).padStart(4, '0')}.kv`;
}

function shardSets(g: KVGeometry, shard: number): number {
  return Math.floor(g.sets / g.shards) + (shard < g.sets % g.shards ? 1 : 0);
}

export async function readMeta(path: string): Promise<KVGeometry | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw fromNative(e, { path });
  }
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw argError(ERR.mismatch, `meta.json is not JSON: '${path}'`, { path, cause: e });
  }
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw argError(ERR.mismatch, `meta.json is not a JSON object: '${path}'`, { path });
  const g = { format: m.format, pageBytes: m.pageBytes, slotBytes: m.slotBytes, sets: m.sets, ways: m.ways, shards: m.shards };
  for (const [k, v] of Object.entries(g)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw argError(ERR.mismatch, `meta.json: ${k} is missing or bad: '${path}'`, { path });
  }
  if (g.format !== KVCACHE_FORMAT) throw argError(ERR.mismatch, `meta.json: format ${g.format}, this library reads ${KVCACHE_FORMAT}: '${path}'`, { path });
  return g as KVGeometry;
}

/** The cache's geometry from meta.json, making the cache first if it is missing (and allowed). */
export async function openMeta(options: KVCacheOptions, ns: Buffer, client: Client): Promise<KVGeometry> {
  const { root } = options;
  const metaPath = join(root, 'meta.json');
  let geometry = await readMeta(metaPath);
  if (!geometry) {
    if (options.create === false) throw argError(ERR.notFound, `no KV cache in '${root}' (meta.json missing)`, { path: root });
    // The defaults (8 ways, min(16, sets) shards) only for a new cache: an existing one gives its own.
    await makeCache(root, geometryOf(options), ns, client, options.overcommit === true);
    geometry = await readMeta(metaPath);
    if (!geometry) throw argError(ERR.mismatch, `meta.json in '${root}' vanished while the cache was made`, { path: metaPath });
  }
  checkAgrees(options, geometry, metaPath);
  return geometry;
}

/** Options left unset (ways, shards) take the cache's values; the rest must agree with meta.json. */
function checkAgrees(options: KVCacheOptions, geometry: KVGeometry, metaPath: string): void {
  const asked = geometryOf({ ...options, ways: options.ways ?? geometry.ways, shards: options.shards ?? geometry.shards });
  for (const k of ['format', 'pageBytes', 'slotBytes', 'ways', 'shards', 'sets'] as const) {
    if (geometry[k] === asked[k]) continue;
    if (k === 'sets') {
      const made = geometry.sets * setBytesOf(geometry);
      throw argError(ERR.mismatch, `the KV cache in '${options.root}' was made with capacityBytes ${made} (${geometry.sets} sets of ${setBytesOf(geometry)} bytes), not ${options.capacityBytes} (${asked.sets} sets): open it with capacityBytes ${made}, or make a new cache elsewhere`, { path: metaPath });
    }
    throw argError(ERR.mismatch, `the KV cache in '${options.root}' has ${k} ${geometry[k]}, not ${asked[k]} (meta.json: ${JSON.stringify(geometry)})`, { path: metaPath });
  }
}

async function makeCache(root: string, g: KVGeometry, ns: Buffer, client: Client, overcommit: boolean): Promise<void> {
  if (!overcommit) await checkFreeSpace(root, g.sets * setBytesOf(g));
  // Owner-only, whatever the umask: a cache holds a model's activations.
  await fsp.mkdir(root, { recursive: true, mode: 0o700 }).catch((e: unknown) => Promise.reject(fromNative(e, { path: root })));
  for (let s = 0; s < g.shards; s++) await makeShard(join(root, shardName(s)), shardSets(g, s) * setBytesOf(g));
  const meta = { ...g, capacityBytes: g.sets * setBytesOf(g), createdBy: { namespaceHash: ns.toString('hex'), pid: process.pid, at: new Date().toISOString() } };
  await publishMeta(join(root, 'meta.json'), JSON.stringify(meta, null, 2) + '\n', client);
}

/**
 * Shard files are sparse: a cache larger than its file system opens, and then every put fails
 * with ENOSPC. Refused at creation instead, as far as statfs(2) tells (3FS reports its cluster's).
 */
async function checkFreeSpace(root: string, bytes: number): Promise<void> {
  let at = resolve(root);
  for (;;) {
    try {
      const fs = await fsp.statfs(at);
      const free = fs.bavail * fs.bsize;
      if (free >= bytes) return;
      const message = `ENOSPC: the KV cache in '${root}' needs ${bytes} bytes (capacityBytes), and its file system has ${free} free (overcommit: true makes it anyway)`;
      throw new ThreeFSError('ENOSPC', message, { path: root, syscall: 'statfs', errno: -osConstants.errno.ENOSPC });
    } catch (e) {
      if (e instanceof ThreeFSError) throw e;
      const up = dirname(at);
      if ((e as { code?: string }).code !== 'ENOENT' || up === at) return; // the mkdir that follows reports it
      at = up;
    }
  }
}

/** A shard file at least `size` bytes long (grown, never shrunk). */
async function makeShard(path: string, size: number): Promise<void> {
  const fh = await fsp.open(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600).catch((e: unknown) => Promise.reject(fromNative(e, { path })));
  try {
    if ((await fh.stat()).size < size) await fh.truncate(size);
  } catch (e) {
    throw fromNative(e, { path });
  } finally {
    await fh.close();
  }
}

/** No-clobber publish: a second creator racing us gets EEXIST and then reads what won. */
async function publishMeta(metaPath: string, text: string, client: Client): Promise<void> {
  const tmp = `${metaPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, text, { flag: 'wx', mode: 0o600 }).catch((e: unknown) => Promise.reject(fromNative(e, { path: tmp })));
    await client.hardlink(tmp, metaPath).catch(async (e: unknown) => {
      if ((e as { code?: string }).code === 'EEXIST') return;
      await fsp.rename(tmp, metaPath).catch((r: unknown) => Promise.reject(fromNative(r, { path: metaPath }))); // file systems without hard links: atomic, last writer wins
    });
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}
