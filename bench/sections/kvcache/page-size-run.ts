// One page size, one repetition of the KVCache bench: node:fs put; then, for each number of
// batches in flight, raw put with KVCache put and raw get with KVCache get (each pair interleaved);
// then node:fs get (on tmpfs no node:fs: the comparison there is with raw I/O alone). Every get
// checks what it read.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { KVCache, type Client, type File, type IoBuffer } from '../../../lib/index';
import { dropPageCache } from '../../support/page-cache';
import { makeRng } from '../../support/rng';
import { formatSize } from '../../support/units';
import { runFsChild, type FsSpec } from './fs-child';
import { benchKey, Payloads, sampled } from './payloads';
import { interleaved, type BatchRunner, type PhaseResult } from './phases';
import { capacityFor, IN_FLIGHT, NAMESPACE, toRun, WAYS, type KvPath, type KvRun, type KvWhere } from './records';

type Log = (line: string) => void;

export interface PageSizeSpec {
  pageBytes: number;
  pages: number;
  batch: number;
  rep: number;
  salt: number;
  where: KvWhere;
}

export interface PageSizeOutcome {
  runs: KvRun[];
  direct: boolean;
  cacheState: string;
}

export async function pageSizeRun(client: Client, dir: string, spec: PageSizeSpec, log: Log): Promise<PageSizeOutcome> {
  const run = new PageSizeRun(client, dir, spec, log);
  mkdirSync(run.fsDir, { recursive: true });
  const nodeFs = spec.where === 'dir';
  const dropped = nodeFs ? await run.fsPut() : false;
  try {
    await run.open();
    for (const inflight of IN_FLIGHT) {
      const f = await run.rawFile(`raw-q${inflight}.bin`);
      await run.putPhase(inflight, f);
      await run.getPhase(inflight, f);
    }
    if (nodeFs) await run.fsGet(dropped);
    else run.logRatios();
    return { runs: run.runs, direct: run.direct, cacheState: run.cacheState };
  } finally {
    await run.close();
  }
}

class PageSizeRun {
  readonly runs: KvRun[] = [];
  readonly here: string;
  readonly fsDir: string;
  readonly label: string;
  readonly keys: string[];
  readonly batches: number[][] = [];
  readonly payloads: Payloads;
  readonly scratch: Buffer;
  readonly fsSpec: FsSpec;
  /** node:fs's libuv pool: as many threads as a batch has pages (at least libuv's 4). */
  readonly uv: number;
  readonly fsMode: string;
  cacheState = '';
  direct = true;
  /** How our side ran (engine, O_DIRECT, registered buffers), for the rows' modes. */
  how = '';
  cache: KVCache | undefined;
  /** Every page, filled once before any timing: the puts then measure only the I/O path. */
  readonly data: IoBuffer[] = [];
  /** The memory of each batch in flight, for gets. */
  readonly lanes: IoBuffer[][] = [];
  /** Where page i goes in a raw file: shuffled, as the cache's slots are spread over its shard files. */
  readonly slot: number[];
  readonly #rawFiles: File[] = [];

  constructor(
    readonly client: Client,
    dir: string,
    readonly spec: PageSizeSpec,
    readonly log: Log,
  ) {
    const { pageBytes, pages, batch, rep, salt } = spec;
    const scope = `${pageBytes}/${rep}`;
    this.here = join(dir, `p${pageBytes}-r${rep}`);
    this.fsDir = join(this.here, 'files');
    this.label = `${spec.where === 'tmpfs' ? 'tmpfs: ' : ''}${formatSize(pageBytes)} pages${rep > 1 ? ` (run ${rep})` : ''}`;
    this.keys = Array.from({ length: pages }, (_, i) => benchKey(scope, i));
    for (let i = 0; i < pages; i += batch) this.batches.push(Array.from({ length: Math.min(batch, pages - i) }, (_, k) => i + k));
    this.payloads = new Payloads(pageBytes, salt);
    this.scratch = Buffer.allocUnsafe(pageBytes);
    this.uv = Math.max(4, batch);
    this.fsSpec = { dir: this.fsDir, pageBytes, pages, batch, scope, salt, op: 'put' };
    this.fsMode = `writeFile/readFile of <dir>/<hex key>, Promise.all of ${batch}, UV_THREADPOOL_SIZE=${this.uv}, buffered`;
    const rng = makeRng(salt ^ pageBytes ^ rep);
    this.slot = Array.from({ length: pages }, (_, i) => i);
    for (let i = pages - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [this.slot[i], this.slot[j]] = [this.slot[j], this.slot[i]];
    }
  }

  #push(path: KvPath, op: 'put' | 'get', inflight: number, m: PhaseResult, mode: string): void {
    const { pageBytes, pages, batch, rep } = this.spec;
    this.runs.push(toRun(path, this.spec.where, op, pageBytes, pages, batch, inflight, rep, m, mode));
  }

  /**
   * node:fs first, then its dirty pages are written back and dropped: the O_DIRECT phases that
   * follow neither wait behind its writeback nor leave it anything in the page cache.
   */
  async fsPut(): Promise<boolean> {
    this.log(`  ${this.label}: node:fs put ...`);
    const fsPut = await runFsChild(this.fsSpec, this.uv);
    const dropped = dropPageCache(this.fsDir);
    this.cacheState = dropped ? 'cold (synced, then dropped with posix_fadvise)' : 'warm (just written; could not drop the page cache: no python3)';
    this.#push('node:fs', 'put', 1, fsPut, `${this.fsMode}, no fsync`);
    return dropped;
  }

  /** The cache, with room for both in-flight settings' keys four times over (no eviction), and its pages. */
  async open(): Promise<void> {
    const { pageBytes, pages, batch } = this.spec;
    const capacityBytes = capacityFor(pages * IN_FLIGHT.length, pageBytes, WAYS, 4);
    const cache = await KVCache.open({ client: this.client, root: join(this.here, 'kv'), namespace: NAMESPACE, pageBytes, capacityBytes, ways: WAYS });
    this.cache = cache;
    for (let i = 0; i < pages; i++) {
      const b = cache.alloc(pageBytes);
      this.payloads.fill(b.bytes, i);
      this.data.push(b);
    }
    for (let l = 0; l < Math.max(...IN_FLIGHT); l++) this.lanes.push(Array.from({ length: batch }, () => cache.alloc(pageBytes)));
  }

  /**
   * A fresh raw file, sized up front as the cache's shard files are: both then write into holes of
   * a file of fixed length (a write past the end of a file takes a slower path on some file systems).
   */
  async rawFile(name: string): Promise<File> {
    const f = await this.client.open(join(this.here, name), 'w+', 0o644, { direct: 'auto' });
    this.#rawFiles.push(f);
    await f.truncate(this.spec.pages * this.spec.pageBytes);
    return f;
  }

  /** Raw put and KVCache put of fresh keys, interleaved; a second raw put (A-B-A) goes to a fresh file too. */
  async putPhase(inflight: number, f: File): Promise<void> {
    const { pageBytes, batch } = this.spec;
    const cache = this.cache!;
    const q = inflight > 1 ? `, ${inflight} batches in flight` : '';
    const ks = this.keys.map((k) => `${k}/q${inflight}`);
    this.log(`  ${this.label}${q}: raw put and kvcache put, interleaved ...`);
    const rawPut = async (again: boolean) => this.rawPutRunner(again ? await this.rawFile(`raw-q${inflight}-again.bin`) : f);
    let warned = false;
    const kvPut: BatchRunner = async (b) => {
      const rs = await cache.put(b.map((i) => ks[i]), b.map((i) => this.data[i]));
      const stored = rs.filter((r) => r.status === 'stored').length;
      const failed = rs.find((r) => r.status !== 'stored');
      if (failed && !warned) {
        warned = true;
        this.log(`  warning: kvcache put: a fresh key was ${failed.status}${failed.error ? `: ${failed.error.message}` : ''}`);
      }
      return { bytes: stored * pageBytes, misses: b.length - stored };
    };
    const [rawM, kvM, how] = await interleaved(this.batches, inflight, rawPut, kvPut);
    await this.describe(f);
    this.#push('raw', 'put', inflight, rawM, `file.batchWrite of ${batch}${q}, ${this.how}, ${how}`);
    this.#push('kvcache', 'put', inflight, kvM, `put of ${batch} fresh keys${q}, cache.alloc() payloads, ${this.how}`);
    const copied = cache.stats().bytesCopied;
    if (copied > 0) this.log(`  warning: kvcache put copied ${formatSize(copied)} of cache.alloc() payloads`);
  }

  rawPutRunner(file: File): BatchRunner {
    const { pageBytes } = this.spec;
    return async (b) => {
      const rs = await file.batchWrite(b.map((i) => ({ buffer: this.data[i], fileOffset: this.slot[i] * pageBytes })));
      rs.forEach((r, k) => {
        if (r.error) throw r.error;
        if (r.bytes !== pageBytes) throw new Error(`raw put: short write of page ${b[k]}`);
      });
      return { bytes: rs.reduce((a, r) => a + r.bytes, 0), misses: 0 };
    };
  }

  /** Whether the raw file ran O_DIRECT, and how our side ran, as the rows' modes say it. */
  async describe(f: File): Promise<void> {
    const st = await f.stat();
    this.direct &&= st.direct.active;
    const engine = this.client.info().engine;
    const registered = this.data.every((b) => b.registered);
    this.how = `${engine}, ${st.direct.active ? (engine === 'usrbio' ? 'iovs' : 'O_DIRECT') : 'buffered'}${registered && engine !== 'usrbio' ? ', registered buffers' : ''}`;
  }

  /** Raw get and KVCache get of what the put phase stored, interleaved, each checking its pages. */
  async getPhase(inflight: number, f: File): Promise<void> {
    const { pageBytes, pages, batch } = this.spec;
    const cache = this.cache!;
    const q = inflight > 1 ? `, ${inflight} batches in flight` : '';
    const ks = this.keys.map((k) => `${k}/q${inflight}`);
    this.log(`  ${this.label}${q}: raw get and kvcache get, interleaved ...`);
    let rawExact = 0;
    let kvExact = 0;
    const rawGet: BatchRunner = async (b, lane, n) => {
      const into = this.lanes[lane];
      b.forEach((_, k) => this.payloads.clear(into[k].bytes));
      const rs = await f.batchRead(b.map((i, k) => ({ buffer: into[k], fileOffset: this.slot[i] * pageBytes })));
      rs.forEach((r, k) => {
        if (r.error) throw r.error;
        if (r.bytes !== pageBytes) throw new Error(`raw get: short read of page ${b[k]}`);
      });
      rawExact += this.check('raw get', into, b, n, () => true);
      return { bytes: rs.reduce((a, r) => a + r.bytes, 0), misses: 0 };
    };
    const kvGet: BatchRunner = async (b, lane, n) => {
      const into = this.lanes[lane].slice(0, b.length);
      b.forEach((_, k) => this.payloads.clear(into[k].bytes));
      const rs = await cache.get(b.map((i) => ks[i]), into);
      rs.forEach((r, k) => {
        if (r.status === 'hit' && r.bytes !== pageBytes) throw new Error(`kvcache get: page ${b[k]} came back with ${r.bytes} bytes`);
      });
      kvExact += this.check('kvcache get', into, b, n, (k) => rs[k].status === 'hit');
      const hits = rs.filter((r) => r.status === 'hit').length;
      return { bytes: hits * pageBytes, misses: b.length - hits };
    };
    const [rawM, kvM, how] = await interleaved(this.batches, inflight, async () => rawGet, kvGet);
    rawM.verified = rawExact;
    kvM.verified = kvExact;
    this.#push('raw', 'get', inflight, rawM, `file.batchRead of ${batch}${q}, ${this.how}, ${how}`);
    this.#push('kvcache', 'get', inflight, kvM, `get of ${batch} hits into preallocated buffers${q}, ${this.how}`);
    const s = cache.stats();
    if (kvM.misses > 0) this.log(`  note: kvcache get: ${kvM.misses} of ${pages} pages missed (${s.evicted} evicted, ${s.corrupt} corrupt, ${s.raced} raced); GB/s counts hits only`);
  }

  /** Checks the pages `ok` picks: every one's stamps, and a sample byte for byte. Returns the pages compared. */
  check(what: string, into: IoBuffer[], b: number[], n: number, ok: (k: number) => boolean): number {
    let exact = 0;
    b.forEach((i, k) => {
      if (!ok(k)) return;
      if (!this.payloads.stampsOk(into[k].bytes, i)) throw new Error(`${what}: page ${i} is not what was written (data check failed)`);
      if (sampled(n, k, b.length)) {
        if (!this.payloads.exact(into[k].bytes, i, this.scratch)) throw new Error(`${what}: page ${i} differs from what was written`);
        exact++;
      }
    });
    return exact;
  }

  async fsGet(dropped: boolean): Promise<void> {
    this.log(`  ${this.label}: node:fs get ...`);
    const fsGet = await runFsChild({ ...this.fsSpec, op: 'get' }, this.uv);
    this.#push('node:fs', 'get', 1, fsGet, `${this.fsMode}, ${dropped ? 'cold cache' : 'warm cache'}`);
    const show = (op: 'put' | 'get') => {
      const g = (path: KvPath) => this.runs.find((r) => r.path === path && r.op === op && r.inflight === 1)!.gbps;
      return `${op} kvcache ${g('kvcache').toFixed(2)} GB/s, raw ${g('raw').toFixed(2)}, node:fs ${g('node:fs').toFixed(2)}`;
    };
    this.log(`  ${this.label}: ${show('put')}; ${show('get')}`);
  }

  /** The tmpfs runs' line in the log: kv/raw of each op with 1 and more batches in flight. */
  logRatios(): void {
    const ratio = (op: 'put' | 'get', q: number) => {
      const g = (path: KvPath) => this.runs.find((r) => r.path === path && r.op === op && r.inflight === q)!.gbps;
      return `${(g('kvcache') / g('raw')).toFixed(2)}x`;
    };
    this.log(`  ${this.label}: kv/raw ${IN_FLIGHT.map((q) => `put ${ratio('put', q)} get ${ratio('get', q)} (${q} in flight)`).join(', ')}`);
  }

  async close(): Promise<void> {
    for (const b of [...this.data, ...this.lanes.flat()]) b.free();
    await Promise.allSettled(this.#rawFiles.map((f) => f.close()));
    await this.cache?.close().catch(() => undefined);
    rmSync(this.here, { recursive: true, force: true });
  }
}
