// The KVCache section: put/get throughput of 64 KiB, 1 MiB and 16 MiB pages through KVCache, next
// to raw batch writes/reads of the same bytes in the same batch shape through the same client (what
// KVCache adds on top of the engine), and next to a file-per-key cache written with node:fs (what a
// user would write otherwise); then lookup keys/s, warm (keys this process has seen) and cold (a new
// instance on the same root, with its I/O rounds counted).
//
// The raw baseline and the KVCache phase alternate, batch by batch with one in flight (in blocks of
// 4 x in-flight batches with more), so a device whose speed drifts during a run moves both figures
// alike; with too few batches for that, raw runs just before and again just after. A short
// untimed warm-up of both paths comes first, so the JIT's compiling stays out of the figures.
//
// Each repetition of each page size starts from nothing: a fresh cache sized at four times the data
// (so eviction stays out of the numbers), fresh raw files, a fresh directory of files. Each runs
// with one batch in flight (a serving process loading or saving one request's pages, call after
// call) and with several (concurrent requests). Payloads are derived from their page, so gets are
// checked: every page's stamps, and a sample byte for byte.
//
// This file is also the entry point of the node:fs child (its own libuv pool and CPU time).
import { spawnSync } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client, File, IoBuffer } from '../lib/index';
import type { KVCache, KVCacheOptions, KVNamespace } from '../lib/kvcache/kvcache';
import { machineInfo, type Machine } from './report';
import { benchBase, children, formatSize, GiB, KiB, makeRng, MiB, percentile, runChild } from './shared';

export interface KvBenchOptions {
  /** Where to make the temporary directory (default: os.tmpdir()). Must exist. */
  dir?: string;
  /** 64 KiB and 1 MiB pages only, less data, fewer lookups. */
  quick?: boolean;
  /**
   * Bytes of pages per page size (default 2 GiB: 16 batches of 1 MiB pages, enough to alternate
   * raw and KVCache on a drifting disk; 256 MiB with quick). At least 32 pages are used.
   */
  size?: number;
  /** Page sizes (default 64 KiB, 1 MiB, 16 MiB; with quick 64 KiB, 1 MiB). */
  pageSizes?: number[];
  /** Repetitions of every measurement; the table shows medians. Default 1. */
  repeat?: number;
  /** Distinct keys for the lookups (default 100,000; 20,000 with quick). */
  lookupKeys?: number;
  /** Keys looked up in the warm measurement (default 1,000,000; 200,000 with quick). */
  lookups?: number;
  /** Write the results as JSON here. */
  json?: string;
  /** Part of the main bench: no machine line (the main table has it), no signal handling of its own. */
  section?: boolean;
  err?: (text: string) => void;
  out?: (text: string) => void;
}

export type KvPath = 'kvcache' | 'raw' | 'node:fs';

/** One measured phase: every page of one page size written (put) or read (get) once. */
export interface KvRun {
  path: KvPath;
  op: 'put' | 'get';
  pageBytes: number;
  pages: number;
  batch: number;
  /** Batches in flight at once (node:fs: always 1). */
  inflight: number;
  repeat: number;
  /**
   * kvcache and raw: wall time of the phase, from the first call to the last settling (gets
   * include checking each batch's pages). node:fs: the sum of its batch calls' durations.
   */
  seconds: number;
  /** Payload bytes moved (gets: of hits only). */
  bytes: number;
  gibps: number;
  gbps: number;
  pagesPerSec: number;
  /** Per batch call, submission to settlement. */
  p50ms: number;
  p99ms: number;
  /** user+sys CPU of the process over the batch calls (node:fs: the child's). */
  cpuSecPerGiB: number;
  /** Pages checked byte for byte (all gets' pages have their stamps checked). */
  verified: number;
  /** Gets that missed, puts that did not store. */
  misses: number;
  mode: string;
}

export interface KvLookupRun {
  kind: 'warm' | 'cold';
  repeat: number;
  /** Distinct keys in the cache. */
  distinctKeys: number;
  /** Keys looked up, and how many were found. */
  keys: number;
  found: number;
  calls: number;
  seconds: number;
  keysPerSec: number;
  /** I/O rounds: batches the client's engine accepted during the lookups, and its submit calls. */
  ioBatches: number;
  submitCalls: number;
}

export interface KvBenchDocument {
  version: 1;
  machine: Machine;
  settings: { dir: string; engine: string; direct: boolean; size: number; pageSizes: number[]; repeat: number; quick: boolean; lookupKeys: number; lookups: number; cacheState: string };
  runs: KvRun[];
  lookups: KvLookupRun[];
}

const NAMESPACE: KVNamespace = { model: '3fs-client-bench', dtype: 'bytes' };
const MAX_BATCH = 128;
/** Payload memory one batch may pin: 128 x 1 MiB, 16 x 16 MiB. */
const BATCH_BYTES = 256 * MiB;
const MIN_PAGES = 32;
const WAYS = 16;
const LOOKUP_BATCH = 128;
/** Batches in flight: one (a request's pages, as a serving process loads or saves them) and several (a serving process's concurrent requests). */
const IN_FLIGHT = [1, 4];

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

function capacityFor(pages: number, pageBytes: number, ways: number, factor: number): number {
  const setBytes = 4 * KiB + ways * (4 * KiB + roundUp(pageBytes, 4 * KiB));
  return Math.max(1, Math.ceil((pages * factor) / ways)) * setBytes;
}

/** SGLang-like keys: 64 hex digits. */
export function benchKey(scope: string, i: number): string {
  return createHash('sha256').update(`3fs-client bench ${scope} ${i}`).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Payloads: a window of a seeded random block (a different window per key), with every 4 KiB block
// stamped (key index, block index, salt). The same in the parent and the node:fs child.

function randomBlock(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(roundUp(bytes, 4));
  const u = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < u.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u[i] = x >>> 0;
  }
  return b.subarray(0, bytes);
}

class Payloads {
  readonly base: Buffer;
  constructor(
    readonly pageBytes: number,
    readonly salt: number,
  ) {
    this.base = randomBlock(pageBytes + 64 * KiB, salt ^ pageBytes);
  }

  fill(dst: Uint8Array, key: number): void {
    const n = this.pageBytes;
    const shift = (Math.imul(key, 2654435761) >>> 0) % (64 * KiB);
    dst.set(this.base.subarray(shift, shift + n));
    const dv = new DataView(dst.buffer, dst.byteOffset, n);
    for (let o = 0; o + 12 <= n; o += 4 * KiB) {
      dv.setUint32(o, key, true);
      dv.setUint32(o + 4, o / (4 * KiB), true);
      dv.setUint32(o + 8, this.salt, true);
    }
  }

  /** Wipes what stampsOk() checks, so a read that left the memory alone cannot pass. */
  clear(dst: Uint8Array): void {
    const last = lastBlock(this.pageBytes);
    dst.fill(0, 0, 12);
    dst.fill(0, last, last + 12);
  }

  stampsOk(dst: Uint8Array, key: number): boolean {
    const dv = new DataView(dst.buffer, dst.byteOffset, this.pageBytes);
    for (const o of [0, lastBlock(this.pageBytes)]) {
      if (dv.getUint32(o, true) !== key || dv.getUint32(o + 4, true) !== o / (4 * KiB) || dv.getUint32(o + 8, true) !== this.salt) return false;
    }
    return true;
  }

  /** Byte for byte; `scratch` holds at least one page. */
  exact(dst: Uint8Array, key: number, scratch: Buffer): boolean {
    this.fill(scratch, key);
    return Buffer.compare(scratch.subarray(0, this.pageBytes), Buffer.from(dst.buffer, dst.byteOffset, this.pageBytes)) === 0;
  }
}

function lastBlock(pageBytes: number): number {
  return Math.max(0, Math.floor((pageBytes - 12) / (4 * KiB)) * 4 * KiB);
}

/** Which pages of a batch are checked byte for byte: all of the first batch, then the first and last of each. */
function sampled(batchIndex: number, k: number, len: number): boolean {
  return batchIndex === 0 || k === 0 || k === len - 1;
}

// ---------------------------------------------------------------------------------------------
// Measuring

class Phase {
  readonly lat: number[] = [];
  seconds = 0;
  bytes = 0;
  cpu = 0;
  verified = 0;
  misses = 0;
  #t0 = 0;
  #cpu0: NodeJS.CpuUsage | undefined;

  begin(): void {
    this.#cpu0 = process.cpuUsage();
    this.#t0 = performance.now();
  }

  end(bytes: number): void {
    const t1 = performance.now();
    const u = process.cpuUsage(this.#cpu0);
    this.lat.push(t1 - this.#t0);
    this.seconds += (t1 - this.#t0) / 1000;
    this.cpu += (u.user + u.system) / 1e6;
    this.bytes += bytes;
  }

  measured(): PhaseResult {
    const sorted = Float64Array.from(this.lat).sort();
    return { seconds: this.seconds, bytes: this.bytes, p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99), cpuSeconds: this.cpu, verified: this.verified, misses: this.misses, latencies: sorted };
  }
}

interface PhaseResult {
  seconds: number;
  bytes: number;
  p50ms: number;
  p99ms: number;
  cpuSeconds: number;
  verified: number;
  misses: number;
  /** Each call's milliseconds, sorted. */
  latencies: Float64Array;
}

function toRun(path: KvPath, op: 'put' | 'get', pageBytes: number, pages: number, batch: number, inflight: number, repeat: number, m: PhaseResult, mode: string): KvRun {
  const r = (v: number, d: number) => Math.round(v * 10 ** d) / 10 ** d;
  const s = m.seconds;
  return {
    path,
    op,
    pageBytes,
    pages,
    batch,
    inflight,
    repeat,
    seconds: r(s, 4),
    bytes: m.bytes,
    gibps: r(s > 0 ? m.bytes / GiB / s : 0, 4),
    gbps: r(s > 0 ? m.bytes / 1e9 / s : 0, 4),
    pagesPerSec: Math.round(s > 0 ? m.bytes / pageBytes / s : 0),
    p50ms: r(m.p50ms, 3),
    p99ms: r(m.p99ms, 3),
    cpuSecPerGiB: r(m.bytes > 0 ? m.cpuSeconds / (m.bytes / GiB) : 0, 4),
    verified: m.verified,
    misses: m.misses,
    mode,
  };
}

// ---------------------------------------------------------------------------------------------
// The run

export async function runKvBench(options: KvBenchOptions = {}): Promise<KvBenchDocument> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const log = (line: string) => err(line + '\n');
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const began = performance.now();
  const quick = options.quick ?? false;
  const pageSizes = options.pageSizes ?? (quick ? [64 * KiB, 1 * MiB] : [64 * KiB, 1 * MiB, 16 * MiB]);
  for (const p of pageSizes) if (!Number.isSafeInteger(p) || p < 4 * KiB || p % (4 * KiB) !== 0) throw new Error(`page size ${p}: must be a multiple of 4KiB`);
  const size = options.size ?? (quick ? 256 * MiB : 2048 * MiB);
  if (!(size >= 1 * MiB)) throw new Error('--size must be at least 1MiB');
  const repeats = options.repeat ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) throw new Error('--repeat must be a whole number from 1 to 100');
  const lookupKeys = options.lookupKeys ?? (quick ? 20_000 : 100_000);
  const lookups = options.lookups ?? (quick ? 200_000 : 1_000_000);
  const plan = pageSizes.map((pageBytes) => {
    const pages = Math.max(MIN_PAGES, Math.floor(size / pageBytes));
    const batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_BYTES / pageBytes), pages));
    return { pageBytes, pages, batch };
  });

  const base = benchBase(options.dir);
  // At once on disk: one page size's cache, raw file and file-per-key directory.
  const need = Math.max(...plan.map((p) => 3 * p.pages * (p.pageBytes + 4 * KiB)), lookupKeys * 8 * KiB);
  const fsInfo = statfsSync(base);
  const free = fsInfo.bavail * fsInfo.bsize;
  if (free < need + 256 * MiB) throw new Error(`${base} has ${formatSize(free)} free; the KVCache bench needs ${formatSize(need)} plus room to spare (try a smaller --size)`);

  const { connect, findHf3fsMount } = await import('../lib/index');
  const { KVCache } = await import('../lib/kvcache/kvcache');
  const dir = mkdtempSync(join(base, options.dir !== undefined || options.section ? '.bench-kvcache-' : '3fs-client-bench-kvcache-'));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (signal: NodeJS.Signals) => {
    for (const c of children) c.kill('SIGTERM');
    removeDir();
    process.stderr.write(`\n3fs-client: interrupted (${signal}); removed ${dir}\n`);
    process.exit(signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 129);
  };
  if (!options.section) for (const s of signals) process.on(s, onSignal);

  // One client for the cache and the raw baseline: 3FS's USRBIO on a 3FS mount, io_uring elsewhere.
  let client: Client;
  const mount = findHf3fsMount(dir);
  try {
    client = connect(mount ? { engine: 'hf3fs', mount: mount.mountPoint } : {});
  } catch (e) {
    if (!mount) throw e;
    log(`note: 3FS's library did not load (${(e as Error).message}); the KVCache bench uses the local engine through FUSE`);
    client = connect({});
  }

  try {
    const salt = randomInt(1, 2 ** 31);
    const info = client.info();
    log(`KVCache bench in ${dir}: ${info.engine}${info.mount ? ` on ${info.mount}` : ''}, pages ${plan.map((p) => `${formatSize(p.pageBytes)} x ${p.pages} in batches of ${p.batch}`).join(', ')}${repeats > 1 ? `, ${repeats} runs each` : ''}`);
    const runs: KvRun[] = [];
    const lookupRuns: KvLookupRun[] = [];
    let direct = true;
    let cacheState = '';
    await warmUp(client, KVCache, dir);
    for (const p of plan) {
      for (let rep = 1; rep <= repeats; rep++) {
        const r = await pageSizeRun(client, KVCache, dir, p.pageBytes, p.pages, p.batch, rep, salt, log);
        direct &&= r.direct;
        cacheState = r.cacheState;
        runs.push(...r.runs);
      }
    }
    for (let rep = 1; rep <= repeats; rep++) lookupRuns.push(...(await lookupRun(client, KVCache, dir, lookupKeys, lookups, rep, log)));

    const doc: KvBenchDocument = {
      version: 1,
      machine: machineInfo(null),
      settings: { dir: base, engine: info.engine, direct, size, pageSizes, repeat: repeats, quick, lookupKeys, lookups, cacheState },
      runs,
      lookups: lookupRuns,
    };
    out(formatKvTable(doc, !options.section));
    if (options.json) {
      await writeFile(options.json, JSON.stringify(doc, null, 2) + '\n');
      log(`wrote ${options.json}`);
    }
    log(`KVCache section done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    return doc;
  } finally {
    if (!options.section) for (const s of signals) process.off(s, onSignal);
    for (const c of children) c.kill('SIGTERM');
    await client.close().catch(() => undefined);
    removeDir();
  }
}

type KVCacheClass = typeof KVCache;

/**
 * Untimed: puts, gets and lookups through a small cache, and raw batch writes and reads, so the
 * JIT has compiled both paths before anything is measured (as fio's ramp time keeps start-up out
 * of its figures). Small pages: compiled code does not depend on the page size.
 */
async function warmUp(client: Client, KV: KVCacheClass, dir: string): Promise<void> {
  const root = join(dir, 'warm-up');
  const P = 4 * KiB;
  const N = 128;
  const cache = await KV.open({ client, root, namespace: NAMESPACE, pageBytes: P, capacityBytes: capacityFor(8 * N, P, WAYS, 4), ways: WAYS });
  const bufs = Array.from({ length: N }, () => cache.alloc(P));
  const raw = await client.open(join(root, 'raw.bin'), 'w+');
  try {
    for (let round = 0; round < 8; round++) {
      const keys = bufs.map((_, k) => `warm-up/${round}/${k}`);
      await cache.put(keys, bufs);
      await cache.get(keys, bufs);
      await cache.lookup(keys);
      await raw.batchWrite(bufs.map((b, k) => ({ buffer: b, fileOffset: (round * N + k) * P })));
      await raw.batchRead(bufs.map((b, k) => ({ buffer: b, fileOffset: (round * N + k) * P })));
    }
  } finally {
    for (const b of bufs) b.free();
    await raw.close();
    await cache.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/** One page size, one repetition: node:fs put, raw put, KVCache put, raw get, KVCache get, node:fs get. */
async function pageSizeRun(
  client: Client,
  KV: KVCacheClass,
  dir: string,
  pageBytes: number,
  pages: number,
  batch: number,
  rep: number,
  salt: number,
  log: (line: string) => void,
): Promise<{ runs: KvRun[]; direct: boolean; cacheState: string }> {
  const scope = `${pageBytes}/${rep}`;
  const here = join(dir, `p${pageBytes}-r${rep}`);
  const fsDir = join(here, 'files');
  mkdirSync(fsDir, { recursive: true });
  const label = `${formatSize(pageBytes)} pages${rep > 1 ? ` (run ${rep})` : ''}`;
  const keys = Array.from({ length: pages }, (_, i) => benchKey(scope, i));
  const batches: number[][] = [];
  for (let i = 0; i < pages; i += batch) batches.push(Array.from({ length: Math.min(batch, pages - i) }, (_, k) => i + k));
  const payloads = new Payloads(pageBytes, salt);
  const scratch = Buffer.allocUnsafe(pageBytes);
  const runs: KvRun[] = [];

  // node:fs first, then its dirty pages are written back and dropped: the O_DIRECT phases that
  // follow neither wait behind its writeback nor leave it anything in the page cache.
  const uv = Math.max(4, batch);
  const fsSpec: FsSpec = { dir: fsDir, pageBytes, pages, batch, scope, salt, op: 'put' };
  log(`  ${label}: node:fs put ...`);
  const fsPut = await runFsChild(fsSpec, uv);
  const dropped = dropDirCache(fsDir);
  const cacheState = dropped ? 'cold (synced, then dropped with posix_fadvise)' : 'warm (just written; could not drop the page cache: no python3)';
  const fsMode = `writeFile/readFile of <dir>/<hex key>, Promise.all of ${batch}, UV_THREADPOOL_SIZE=${uv}, buffered`;
  runs.push(toRun('node:fs', 'put', pageBytes, pages, batch, 1, rep, fsPut, `${fsMode}, no fsync`));

  // Room for both in-flight settings' keys, four times over: eviction stays out of the numbers.
  const cache = await KV.open({ client, root: join(here, 'kv'), namespace: NAMESPACE, pageBytes, capacityBytes: capacityFor(pages * IN_FLIGHT.length, pageBytes, WAYS, 4), ways: WAYS });
  const data: IoBuffer[] = [];
  const lanes: IoBuffer[][] = [];
  const rawFiles: File[] = [];
  try {
    // Every page is filled once, before any timing: the puts then measure only the I/O path.
    for (let i = 0; i < pages; i++) {
      const b = cache.alloc(pageBytes);
      payloads.fill(b.bytes, i);
      data.push(b);
    }
    for (let l = 0; l < Math.max(...IN_FLIGHT); l++) lanes.push(Array.from({ length: batch }, () => cache.alloc(pageBytes)));
    const registered = data.every((b) => b.registered);
    // The raw pages go to shuffled offsets, as the cache's slots are spread over its shard files.
    const rng = makeRng(salt ^ pageBytes ^ rep);
    const slot = Array.from({ length: pages }, (_, i) => i);
    for (let i = pages - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [slot[i], slot[j]] = [slot[j], slot[i]];
    }
    let how = '';
    let direct = true;

    for (const inflight of IN_FLIGHT) {
      const q = inflight > 1 ? `, ${inflight} batches in flight` : '';
      // A fresh raw file and fresh keys per setting, so every put writes where nothing was written.
      const f = await client.open(join(here, `raw-q${inflight}.bin`), 'w+', 0o644, { direct: 'auto' });
      rawFiles.push(f);
      // Sized up front, as the cache's shard files are: both then write into holes of a file of
      // fixed length (a write past the end of a file takes a slower path on some file systems).
      await f.truncate(pages * pageBytes);
      // Where raw put runs twice over the same pages (too few batches to interleave), the second
      // time goes to a fresh file of its own, so it too writes into holes.
      let fAgain: File | undefined;
      const rawFile = async (again: boolean) => {
        if (!again) return f;
        if (!fAgain) {
          fAgain = await client.open(join(here, `raw-q${inflight}-again.bin`), 'w+', 0o644, { direct: 'auto' });
          rawFiles.push(fAgain);
          await fAgain.truncate(pages * pageBytes);
        }
        return fAgain;
      };
      const ks = keys.map((k) => `${k}/q${inflight}`);
      // Gets check what they read: every page's stamps, and a sample byte for byte.
      const check = (what: string, into: IoBuffer[], b: number[], n: number, ok: (k: number) => boolean) => {
        b.forEach((i, k) => {
          if (!ok(k)) return;
          if (!payloads.stampsOk(into[k].bytes, i)) throw new Error(`${what}: page ${i} is not what was written (data check failed)`);
          if (sampled(n, k, b.length)) {
            if (!payloads.exact(into[k].bytes, i, scratch)) throw new Error(`${what}: page ${i} differs from what was written`);
            verified[what] = (verified[what] ?? 0) + 1;
          }
        });
      };
      const verified: Record<string, number> = {};

      log(`  ${label}${q}: raw put and kvcache put, interleaved ...`);
      const rawPut = async (again: boolean): Promise<BatchRunner> => {
        const file = await rawFile(again);
        return async (b) => {
          const rs = await file.batchWrite(b.map((i) => ({ buffer: data[i], fileOffset: slot[i] * pageBytes })));
          rs.forEach((r, k) => {
            if (r.error) throw r.error;
            if (r.bytes !== pageBytes) throw new Error(`raw put: short write of page ${b[k]}`);
          });
          return { bytes: rs.reduce((a, r) => a + r.bytes, 0), misses: 0 };
        };
      };
      let warned = false;
      const kvPutBatch: BatchRunner = async (b) => {
        const rs = await cache.put(b.map((i) => ks[i]), b.map((i) => data[i]));
        const stored = rs.filter((r) => r.status === 'stored').length;
        const failed = rs.find((r) => r.status !== 'stored');
        if (failed && !warned) {
          warned = true;
          log(`  warning: kvcache put: a fresh key was ${failed.status}${failed.error ? `: ${failed.error.message}` : ''}`);
        }
        return { bytes: stored * pageBytes, misses: b.length - stored };
      };
      const [rawPutM, kvPut, putHow] = await interleaved(batches, inflight, rawPut, kvPutBatch);
      const st = await f.stat();
      direct &&= st.direct.active;
      const engine = client.info().engine;
      how = `${engine}, ${st.direct.active ? (engine === 'usrbio' ? 'iovs' : 'O_DIRECT') : 'buffered'}${registered && engine !== 'usrbio' ? ', registered buffers' : ''}`;
      const s0 = cache.stats();
      runs.push(toRun('raw', 'put', pageBytes, pages, batch, inflight, rep, rawPutM, `file.batchWrite of ${batch}${q}, ${how}, ${putHow}`));
      runs.push(toRun('kvcache', 'put', pageBytes, pages, batch, inflight, rep, kvPut, `put of ${batch} fresh keys${q}, cache.alloc() payloads, ${how}`));
      if (s0.bytesCopied > 0) log(`  warning: kvcache put copied ${formatSize(s0.bytesCopied)} of cache.alloc() payloads`);

      log(`  ${label}${q}: raw get and kvcache get, interleaved ...`);
      const rawGet: BatchRunner = async (b, lane, n) => {
        const into = lanes[lane];
        b.forEach((_, k) => payloads.clear(into[k].bytes));
        const rs = await f.batchRead(b.map((i, k) => ({ buffer: into[k], fileOffset: slot[i] * pageBytes })));
        rs.forEach((r, k) => {
          if (r.error) throw r.error;
          if (r.bytes !== pageBytes) throw new Error(`raw get: short read of page ${b[k]}`);
        });
        check('raw get', into, b, n, () => true);
        return { bytes: rs.reduce((a, r) => a + r.bytes, 0), misses: 0 };
      };
      const kvGetBatch: BatchRunner = async (b, lane, n) => {
        const into = lanes[lane].slice(0, b.length);
        b.forEach((_, k) => payloads.clear(into[k].bytes));
        const rs = await cache.get(b.map((i) => ks[i]), into);
        rs.forEach((r, k) => {
          if (r.status === 'hit' && r.bytes !== pageBytes) throw new Error(`kvcache get: page ${b[k]} came back with ${r.bytes} bytes`);
        });
        check('kvcache get', into, b, n, (k) => rs[k].status === 'hit');
        const hits = rs.filter((r) => r.status === 'hit').length;
        return { bytes: hits * pageBytes, misses: b.length - hits };
      };
      const [rawGetM, kvGet, getHow] = await interleaved(batches, inflight, async () => rawGet, kvGetBatch);
      rawGetM.verified = verified['raw get'] ?? 0;
      kvGet.verified = verified['kvcache get'] ?? 0;
      const s1 = cache.stats();
      runs.push(toRun('raw', 'get', pageBytes, pages, batch, inflight, rep, rawGetM, `file.batchRead of ${batch}${q}, ${how}, ${getHow}`));
      runs.push(toRun('kvcache', 'get', pageBytes, pages, batch, inflight, rep, kvGet, `get of ${batch} hits into preallocated buffers${q}, ${how}`));
      if (kvGet.misses > 0) log(`  note: kvcache get: ${kvGet.misses} of ${pages} pages missed (${s1.evicted} evicted, ${s1.corrupt} corrupt, ${s1.raced} raced); GB/s counts hits only`);
    }

    log(`  ${label}: node:fs get ...`);
    const fsGet = await runFsChild({ ...fsSpec, op: 'get' }, uv);
    runs.push(toRun('node:fs', 'get', pageBytes, pages, batch, 1, rep, fsGet, `${fsMode}, ${dropped ? 'cold cache' : 'warm cache'}`));
    const show = (op: 'put' | 'get') => {
      const g = (path: KvPath) => runs.find((r) => r.path === path && r.op === op && r.inflight === 1)!.gbps;
      return `${op} kvcache ${g('kvcache').toFixed(2)} GB/s, raw ${g('raw').toFixed(2)}, node:fs ${g('node:fs').toFixed(2)}`;
    };
    log(`  ${label}: ${show('put')}; ${show('get')}`);
    return { runs, direct, cacheState };
  } finally {
    for (const b of [...data, ...lanes.flat()]) b.free();
    await Promise.allSettled(rawFiles.map((f) => f.close()));
    await cache.close().catch(() => undefined);
    rmSync(here, { recursive: true, force: true });
  }
}

/** Runs one batch: `lane` picks the memory of one of the batches in flight; `index` is the batch's number in the phase. */
type BatchRunner = (batch: number[], lane: number, index: number) => Promise<{ bytes: number; misses: number }>;

/**
 * Two paths over the same batches, alternating in blocks (A B, B A, A B, ...: each pair the other
 * way round, so a device whose speed drifts during the run favours neither). A block is one batch
 * with one in flight, else 4 x inflight batches (the pipeline fills and drains in each, alike for
 * both paths). With too few batches for two blocks, A runs just before B and again just after
 * (A-B-A), all the batches each time; `a(again)` is told which. Returns A's and B's figures and
 * how they were taken.
 */
async function interleaved(batches: number[][], inflight: number, a: (again: boolean) => Promise<BatchRunner>, b: BatchRunner): Promise<[PhaseResult, PhaseResult, string]> {
  const block = inflight === 1 ? 1 : 4 * inflight;
  if (batches.length < 2 * block) {
    const first = await timed(batches, inflight, await a(false));
    const mid = await timed(batches, inflight, b);
    const last = await timed(batches, inflight, await a(true));
    return [joinPhases(first, last), mid, 'all batches just before and again just after the KVCache phase'];
  }
  const runA = await a(false);
  let ra: PhaseResult | undefined;
  let rb: PhaseResult | undefined;
  for (let start = 0, j = 0; start < batches.length; start += block, j++) {
    const part = batches.slice(start, start + block);
    const runs: [BatchRunner, BatchRunner] = j % 2 === 0 ? [runA, b] : [b, runA];
    for (const run of runs) {
      const m = await timed(part, inflight, (x, lane, n) => run(x, lane, start + n));
      if (run === runA) ra = ra ? joinPhases(ra, m) : m;
      else rb = rb ? joinPhases(rb, m) : m;
    }
  }
  const what = block === 1 ? 'batch by batch' : `in blocks of ${block} batches`;
  return [ra!, rb!, `interleaved with the KVCache phase ${what}`];
}

/**
 * Runs every batch, `lanes` of them in flight at once (a lane takes the next batch as soon as
 * its last one settles), and measures the whole: wall time, each call's latency, process CPU.
 * `run` returns the payload bytes moved and the pages that missed.
 */
async function timed(batches: number[][], lanes: number, run: BatchRunner): Promise<PhaseResult> {
  const lat: number[] = [];
  let bytes = 0;
  let misses = 0;
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(lanes, batches.length) }, async (_, lane) => {
      for (let n = next++; n < batches.length; n = next++) {
        const c0 = performance.now();
        const r = await run(batches[n], lane, n);
        lat.push(performance.now() - c0);
        bytes += r.bytes;
        misses += r.misses;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(cpu0);
  const sorted = Float64Array.from(lat).sort();
  return { seconds, bytes, p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99), cpuSeconds: (u.user + u.system) / 1e6, verified: 0, misses, latencies: sorted };
}

/** One phase measured in parts: times, bytes and CPU add up; percentiles over every call. */
function joinPhases(a: PhaseResult, b: PhaseResult): PhaseResult {
  const latencies = Float64Array.from([...a.latencies, ...b.latencies]).sort();
  return {
    seconds: a.seconds + b.seconds,
    bytes: a.bytes + b.bytes,
    p50ms: percentile(latencies, 0.5),
    p99ms: percentile(latencies, 0.99),
    cpuSeconds: a.cpuSeconds + b.cpuSeconds,
    verified: a.verified + b.verified,
    misses: a.misses + b.misses,
    latencies,
  };
}

/** Warm lookups (this process put the keys) and one cold lookup of 128 keys by a new instance. */
async function lookupRun(client: Client, KV: KVCacheClass, dir: string, distinct: number, total: number, rep: number, log: (line: string) => void): Promise<KvLookupRun[]> {
  const root = join(dir, `lookup-r${rep}`);
  // Small pages, many ways and 4x the room: no key is evicted, so every lookup finds all its keys.
  const opts: KVCacheOptions = { client, root, namespace: NAMESPACE, pageBytes: 4 * KiB, capacityBytes: capacityFor(distinct, 4 * KiB, 32, 4), ways: 32 };
  const cache = await KV.open(opts);
  let cold: KVCache | undefined;
  try {
    const keys = Array.from({ length: distinct }, (_, i) => benchKey(`lookup/${rep}`, i));
    const payload = new Uint8Array(64).fill(0x5a);
    const t = performance.now();
    let stored = 0;
    // Setup, not measured: bigger batches than the lookups' take fewer I/O rounds.
    for (let i = 0; i < distinct; i += 1024) {
      const ks = keys.slice(i, i + 1024);
      const rs = await cache.put(ks, ks.map(() => payload));
      stored += rs.filter((r) => r.status === 'stored').length;
    }
    log(`  lookups${rep > 1 ? ` (run ${rep})` : ''}: put ${stored.toLocaleString('en-US')} keys in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // Warm: random batches of keys this process has seen.
    const rng = makeRng(0x10c + rep);
    const calls = Math.ceil(total / LOOKUP_BATCH);
    const batches = Array.from({ length: calls }, (_, c) => Array.from({ length: Math.min(LOOKUP_BATCH, total - c * LOOKUP_BATCH) }, () => keys[Math.floor(rng() * distinct)]));
    const m0 = client.metrics();
    const t0 = performance.now();
    let found = 0;
    for (const b of batches) found += await cache.lookup(b);
    const t1 = performance.now();
    const m1 = client.metrics();
    const warm: KvLookupRun = {
      kind: 'warm',
      repeat: rep,
      distinctKeys: stored,
      keys: total,
      found,
      calls,
      seconds: Math.round(t1 - t0) / 1000,
      keysPerSec: Math.round(total / ((t1 - t0) / 1000)),
      ioBatches: m1.batches - m0.batches,
      submitCalls: m1.submitCalls - m0.submitCalls,
    };

    // Cold: a new instance on the same root (nothing in its index) looks up 128 present keys.
    cold = await KV.open({ ...opts });
    const sample = Array.from({ length: LOOKUP_BATCH }, () => keys[Math.floor(rng() * distinct)]);
    const c0 = client.metrics();
    const ct0 = performance.now();
    const coldFound = await cold.lookup(sample);
    const ct1 = performance.now();
    const c1 = client.metrics();
    const coldRun: KvLookupRun = {
      kind: 'cold',
      repeat: rep,
      distinctKeys: stored,
      keys: sample.length,
      found: coldFound,
      calls: 1,
      seconds: Math.round((ct1 - ct0) * 1000) / 1e6,
      keysPerSec: Math.round(sample.length / ((ct1 - ct0) / 1000)),
      ioBatches: c1.batches - c0.batches,
      submitCalls: c1.submitCalls - c0.submitCalls,
    };
    log(
      `  lookups: warm ${(warm.keysPerSec / 1e6).toFixed(2)}M keys/s (${warm.ioBatches} I/O batches); cold ${coldRun.found}/${coldRun.keys} found in ${coldRun.ioBatches} I/O batches, ${(coldRun.seconds * 1000).toFixed(2)} ms`,
    );
    return [warm, coldRun];
  } finally {
    await cold?.close().catch(() => undefined);
    await cache.close().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

/** Writes back and drops the page cache of every file in `dir` (one python3 process). False when that failed. */
function dropDirCache(dir: string): boolean {
  const script = [
    'import os, sys',
    'os.sync()',
    'd = sys.argv[1]',
    'for n in os.listdir(d):',
    '    fd = os.open(os.path.join(d, n), os.O_RDONLY)',
    '    try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)',
    '    finally: os.close(fd)',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, dir], { stdio: 'ignore', timeout: 120_000 });
  return !r.error && r.status === 0;
}

// ---------------------------------------------------------------------------------------------
// Table

function median<T>(xs: T[], by: (x: T) => number): T {
  const sorted = [...xs].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export function formatKvTable(doc: KvBenchDocument, machineLine = true): string {
  const s = doc.settings;
  const m = doc.machine;
  const lines: string[] = [];
  if (machineLine) lines.push(`3fs-client bench: ${m.cpus} CPUs (${m.cpuModel}), ${formatSize(m.memory)} RAM, Linux ${m.kernel}, node ${m.node}`);
  lines.push(
    `KVCache: ${s.engine}${s.engine === 'usrbio' ? '' : s.direct ? ', O_DIRECT' : ', buffered'}, ${formatSize(s.size)} of pages per page size (at least 32 pages), ` +
      `${IN_FLIGHT.join(' and ')} batches in flight${s.repeat > 1 ? `, ${s.repeat} runs each (medians)` : ''}${s.quick ? ' (--quick)' : ''}`,
    '',
  );
  const header = ['page', 'op', 'batch', 'in flight', 'kvcache GB/s', 'pages/s', 'raw GB/s', 'kv/raw', 'node:fs GB/s', 'kv/node:fs', 'kv p50 ms', 'kv p99 ms', 'kv CPU s/GB', 'checked'];
  const rows: string[][] = [];
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : '');
  for (const pageBytes of s.pageSizes) {
    for (const op of ['put', 'get'] as const) {
      for (const inflight of [...new Set(doc.runs.map((r) => r.inflight))].sort((a, b) => a - b)) {
        const these = (path: KvPath) => doc.runs.filter((r) => r.pageBytes === pageBytes && r.op === op && r.path === path && (path === 'node:fs' || r.inflight === inflight));
        const pick = (path: KvPath) => {
          const rs = these(path);
          return rs.length ? median(rs, (r) => r.gbps) : undefined;
        };
        const kv = pick('kvcache');
        const raw = pick('raw');
        const fs = inflight === 1 ? pick('node:fs') : undefined;
        if (!kv) continue;
        const verified = these('kvcache').reduce((a, r) => a + r.verified, 0);
        const misses = these('kvcache').reduce((a, r) => a + r.misses, 0);
        const kvRaw = raw && raw.gbps > 0 ? kv.gbps / raw.gbps : undefined;
        rows.push([
          formatSize(pageBytes),
          op,
          String(kv.batch),
          String(inflight),
          kv.gbps.toFixed(2),
          kv.pagesPerSec.toLocaleString('en-US'),
          raw ? raw.gbps.toFixed(2) : '',
          kvRaw === undefined ? '' : `${kvRaw.toFixed(2)}${kvRaw < 0.9 ? ' <' : ''}`,
          fs ? fs.gbps.toFixed(2) : '',
          fs ? ratio(kv.gbps, fs.gbps) : '',
          kv.p50ms.toFixed(2),
          kv.p99ms.toFixed(2),
          (kv.cpuSecPerGiB / (GiB / 1e9)).toFixed(3),
          op === 'get' ? `${verified} exact${misses ? `, ${misses} missed` : ''}` : misses ? `${misses} not stored` : '',
        ]);
      }
    }
  }
  const numeric = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  lines.push(line(header));
  let prev = '';
  for (const r of rows) {
    if (prev && r[0] !== prev) lines.push('');
    prev = r[0];
    lines.push(line(r));
  }
  lines.push('');
  for (const kind of ['warm', 'cold'] as const) {
    const rs = doc.lookups.filter((l) => l.kind === kind);
    if (!rs.length) continue;
    const l = median(rs, (x) => (kind === 'warm' ? x.keysPerSec : x.seconds));
    if (kind === 'warm') {
      lines.push(
        `lookup, warm: ${l.keys.toLocaleString('en-US')} keys in calls of ${LOOKUP_BATCH}, over ${l.distinctKeys.toLocaleString('en-US')} keys this process put: ` +
          `${(l.keysPerSec / 1e6).toFixed(2)}M keys/s (target >= 1M), ${l.ioBatches} I/O batches, ${l.found === l.keys ? 'all found' : `${l.found} found`}`,
      );
    } else {
      lines.push(
        `lookup, cold: ${l.keys} keys by a new KVCache on the same root: ${l.ioBatches} I/O batch${l.ioBatches === 1 ? '' : 'es'} ` +
          `(${l.submitCalls} submit call${l.submitCalls === 1 ? '' : 's'}) (target <= 2), ${(l.seconds * 1000).toFixed(2)} ms, ${l.found === l.keys ? 'all found' : `${l.found} found`}`,
      );
    }
  }
  const fsRun = doc.runs.find((r) => r.path === 'node:fs');
  lines.push(
    '',
    'GB/s = 10^9 B/s of payload, over each phase (pages are filled before it; gets include checking what they read).',
    'kvcache: KVCache.put of fresh keys (cache.alloc() payloads, no copy; header, CRC32C, directories included) and',
    '  KVCache.get of hits into preallocated buffers; raw: file.batchWrite/batchRead of the same pages, same batches,',
    '  same client, one file at shuffled page offsets, alternating with the KVCache phase (batch by batch with 1 in',
    '  flight, blocks of 4 x in flight else; just before and just after when there are too few batches), so drift',
    '  in the device moves both alike. kv/raw target >= 0.90',
    '  ("<" marks a miss). in flight: batches at once (1: one request\'s pages, call after call; 4: concurrent',
    '  requests); node:fs runs one batch at a time.',
    `node:fs: a file per key (<dir>/<hex key>), writeFile / readFile, in a child process; get ${s.cacheState || 'cache state unknown'}.`,
    `checked: kvcache pages compared byte for byte (all of the first batch, then the first and last of each); every page's`,
    `  stamps are checked, and raw and node:fs reads are checked the same way.`,
  );
  if (fsRun === undefined) lines.push('(no node:fs runs)');
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// The node:fs child: a file per key, what a user would write without this library.

interface FsSpec {
  dir: string;
  pageBytes: number;
  pages: number;
  batch: number;
  scope: string;
  salt: number;
  op: 'put' | 'get';
}

async function runFsChild(spec: FsSpec, uvThreads: number): Promise<PhaseResult> {
  const out = await runChild('the node:fs file-per-key run', process.execPath, [__filename, JSON.stringify(spec)], { ...process.env, UV_THREADPOOL_SIZE: String(uvThreads) });
  return JSON.parse(out.trim().split('\n').pop() ?? '') as PhaseResult;
}

async function fsChild(spec: FsSpec): Promise<PhaseResult> {
  const { pageBytes, pages, batch } = spec;
  const payloads = new Payloads(pageBytes, spec.salt);
  const scratch = Buffer.allocUnsafe(pageBytes);
  const paths = Array.from({ length: pages }, (_, i) => join(spec.dir, benchKey(spec.scope, i)));
  const phase = new Phase();
  if (spec.op === 'put') {
    const bufs = Array.from({ length: batch }, () => Buffer.allocUnsafeSlow(pageBytes));
    for (let i = 0; i < pages; i += batch) {
      const n = Math.min(batch, pages - i);
      for (let k = 0; k < n; k++) payloads.fill(bufs[k], i + k);
      phase.begin();
      await Promise.all(Array.from({ length: n }, (_, k) => writeFile(paths[i + k], bufs[k])));
      phase.end(n * pageBytes);
    }
  } else {
    for (let i = 0, b = 0; i < pages; i += batch, b++) {
      const n = Math.min(batch, pages - i);
      phase.begin();
      const got = await Promise.all(Array.from({ length: n }, (_, k) => readFile(paths[i + k])));
      phase.end(got.reduce((a, g) => a + g.length, 0));
      got.forEach((g, k) => {
        if (g.length !== pageBytes || !payloads.stampsOk(g, i + k)) throw new Error(`node:fs get: file of page ${i + k} is not what was written`);
        if (sampled(b, k, n)) {
          if (!payloads.exact(g, i + k, scratch)) throw new Error(`node:fs get: page ${i + k} differs from what was written`);
          phase.verified++;
        }
      });
    }
  }
  return phase.measured();
}

if (require.main === module) {
  fsChild(JSON.parse(process.argv[2]) as FsSpec).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
