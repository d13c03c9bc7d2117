// The KVCache section: put/get of pages through KVCache next to raw batch I/O of the same bytes on
// the same client (what KVCache adds on top of the engine) and next to a file per key with node:fs
// (what a user would write otherwise); the same against raw on tmpfs (/dev/shm: a memory-speed
// backend, where fixed costs show); then lookup keys/s, warm and cold.
import { randomInt } from 'node:crypto';
import { existsSync, rmSync, statfsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeBenchDir } from '../../support/bench-dir';
import { connect, findHf3fsMount, KVCache, type Client } from '../../../lib/index';
import { removeOnInterrupt, stopChildren } from '../../support/children';
import { benchBase, checkFreeSpace, machineInfo } from '../../support/machine';
import { formatSize, KiB, MiB } from '../../support/units';
import { lookupRun } from './lookups';
import { judgeKv } from './verdicts';
import { pageSizeRun, type PageSizeOutcome } from './page-size-run';
import { capacityFor, NAMESPACE, WAYS, type KvBenchDocument, type KvLookupRun, type KvRun, type KvWhere } from './records';
import { formatKvTable } from './table';

export { formatKvTable } from './table';
export type { KvBenchDocument, KvLookupRun, KvPath, KvRun } from './records';

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
  /** Page sizes (default 64 KiB, 1 MiB, 4 MiB, 16 MiB; with quick 64 KiB, 1 MiB). */
  pageSizes?: number[];
  /**
   * The same page sizes again on tmpfs (/dev/shm), KVCache against raw only, with at most
   * TMPFS_BYTES of pages per page size. Default true (false with `section`); skipped, and the
   * document says why, without a tmpfs there.
   */
  tmpfs?: boolean;
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

const MAX_BATCH = 128;
/** Payload memory one batch may pin: 128 x 1 MiB, 16 x 16 MiB. */
const BATCH_BYTES = 256 * MiB;
const MIN_PAGES = 32;
/** Bytes of pages per page size on tmpfs at most: its files are memory. */
const TMPFS_BYTES = 512 * MiB;
const TMPFS_DIR = '/dev/shm';
const TMPFS_MAGIC = 0x01021994;

type Log = (line: string) => void;

interface Settings {
  quick: boolean;
  pageSizes: number[];
  size: number;
  repeats: number;
  lookupKeys: number;
  lookups: number;
  /** Per page size: its pages, and the pages of one batch. */
  plan: Plan;
  /** The tmpfs runs' plan, or why there are none. */
  tmpfs: { plan: Plan; size: number } | { why: string };
}

type Plan = { pageBytes: number; pages: number; batch: number }[];

function planOf(pageSizes: number[], size: number): Plan {
  return pageSizes.map((pageBytes) => {
    const pages = Math.max(MIN_PAGES, Math.floor(size / pageBytes));
    const batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_BYTES / pageBytes), pages));
    return { pageBytes, pages, batch };
  });
}

/** Whether /dev/shm is a tmpfs to run on, or why not. */
function tmpfsWhy(wanted: boolean): string | undefined {
  if (!wanted) return 'not asked for';
  try {
    return existsSync(TMPFS_DIR) && statfsSync(TMPFS_DIR).type === TMPFS_MAGIC ? undefined : `${TMPFS_DIR} is not a tmpfs here`;
  } catch (e) {
    return `${TMPFS_DIR}: ${(e as Error).message}`;
  }
}

/** The options with their defaults, checked. */
function settingsOf(options: KvBenchOptions): Settings {
  const quick = options.quick ?? false;
  const pageSizes = options.pageSizes ?? (quick ? [64 * KiB, 1 * MiB] : [64 * KiB, 1 * MiB, 4 * MiB, 16 * MiB]);
  for (const p of pageSizes) if (!Number.isSafeInteger(p) || p < 4 * KiB || p % (4 * KiB) !== 0) throw new Error(`page size ${p}: must be a multiple of 4KiB`);
  const size = options.size ?? (quick ? 256 * MiB : 2048 * MiB);
  if (!(size >= 1 * MiB)) throw new Error('--size must be at least 1MiB');
  const repeats = options.repeat ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) throw new Error('--repeat must be a whole number from 1 to 100');
  const why = tmpfsWhy(options.tmpfs ?? !options.section);
  const tmpfsSize = Math.min(size, TMPFS_BYTES);
  const tmpfs = why === undefined ? { plan: planOf(pageSizes, tmpfsSize), size: tmpfsSize } : { why };
  const lookupKeys = options.lookupKeys ?? (quick ? 20_000 : 100_000);
  return { quick, pageSizes, size, repeats, lookupKeys, lookups: options.lookups ?? (quick ? 200_000 : 1_000_000), plan: planOf(pageSizes, size), tmpfs };
}

export async function runKvBench(options: KvBenchOptions = {}): Promise<KvBenchDocument> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const log = (line: string) => err(line + '\n');
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const began = performance.now();
  const s = settingsOf(options);
  const base = benchBase(options.dir);
  // At once on disk: one page size's cache, raw file and file-per-key directory.
  checkFreeSpace(base, Math.max(...s.plan.map((p) => 3 * p.pages * (p.pageBytes + 4 * KiB)), s.lookupKeys * 8 * KiB), 'the KVCache bench');
  const dir = makeBenchDir(base, options.dir !== undefined || options.section ? '.bench-kvcache-' : '3fs-client-bench-kvcache-');
  const shm = 'plan' in s.tmpfs ? makeBenchDir(TMPFS_DIR, '3fs-client-bench-kvcache-') : undefined;
  // Part of the main bench: its handler removes the whole directory (and it runs no tmpfs part).
  const release = options.section ? () => undefined : removeOnInterrupt(dir, ...(shm ? [shm] : []));
  let client: Client | undefined;
  try {
    client = clientFor(dir, log);
    const doc = await measure(client, dir, shm, base, s, log);
    out(formatKvTable(doc, !options.section));
    if (options.json) {
      await writeFile(options.json, JSON.stringify(doc, null, 2) + '\n');
      log(`wrote ${options.json}`);
    }
    log(`KVCache section done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    return doc;
  } finally {
    release();
    stopChildren();
    await client?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    if (shm) rmSync(shm, { recursive: true, force: true });
  }
}

/** One client for the cache and the raw baseline: 3FS's USRBIO on a 3FS mount, io_uring elsewhere. */
function clientFor(dir: string, log: Log): Client {
  const mount = findHf3fsMount(dir);
  try {
    return connect(mount ? { engine: 'hf3fs', mount: mount.mountPoint } : {});
  } catch (e) {
    if (!mount) throw e;
    log(`note: 3FS's library did not load (${(e as Error).message}); the KVCache bench uses the local engine through FUSE`);
    return connect({});
  }
}

/** Every page size's runs, then the lookups, each repeated, in `dir` (made under `base`). */
async function measure(client: Client, dir: string, shm: string | undefined, base: string, s: Settings, log: Log): Promise<KvBenchDocument> {
  const salt = randomInt(1, 2 ** 31);
  const info = client.info();
  log(`KVCache bench in ${dir}: ${info.engine}${info.mount ? ` on ${info.mount}` : ''}, pages ${s.plan.map((p) => `${formatSize(p.pageBytes)} x ${p.pages} in batches of ${p.batch}`).join(', ')}${s.repeats > 1 ? `, ${s.repeats} runs each` : ''}`);
  const runs: KvRun[] = [];
  const lookupRuns: KvLookupRun[] = [];
  let direct = true;
  let cacheState = '';
  await warmUp(client, dir);
  for (const r of await planRuns(client, dir, 'dir', s.plan, s.repeats, salt, log)) {
    direct &&= r.direct;
    cacheState = r.cacheState;
    runs.push(...r.runs);
  }
  if (shm && 'plan' in s.tmpfs) runs.push(...(await tmpfsRuns(shm, s.tmpfs.plan, s.repeats, salt, log)));
  for (let rep = 1; rep <= s.repeats; rep++) lookupRuns.push(...(await lookupRun(client, dir, s.lookupKeys, s.lookups, rep, log)));
  const { quick, size, pageSizes, repeats: repeat, lookupKeys, lookups } = s;
  return {
    version: 1,
    machine: machineInfo(null),
    settings: { dir: base, engine: info.engine, direct, size, pageSizes, repeat, quick, lookupKeys, lookups, cacheState, tmpfs: 'plan' in s.tmpfs ? { dir: TMPFS_DIR, size: s.tmpfs.size } : { dir: null, why: s.tmpfs.why } },
    runs,
    lookups: lookupRuns,
    targets: judgeKv(runs, pageSizes),
  };
}

/** Every page size of `plan`, each repeated, in `dir`. */
async function planRuns(client: Client, dir: string, where: KvWhere, plan: Plan, repeats: number, salt: number, log: Log): Promise<PageSizeOutcome[]> {
  const outcomes: PageSizeOutcome[] = [];
  for (const p of plan) {
    for (let rep = 1; rep <= repeats; rep++) outcomes.push(await pageSizeRun(client, dir, { ...p, rep, salt, where }, log));
  }
  return outcomes;
}

/** The runs on tmpfs, in `dir`, through a client of their own (the local engine, whatever --dir's is). */
async function tmpfsRuns(dir: string, plan: Plan, repeats: number, salt: number, log: Log): Promise<KvRun[]> {
  const client = connect({});
  try {
    log(`KVCache bench on tmpfs in ${dir}: ${client.info().engine}, pages ${plan.map((p) => `${formatSize(p.pageBytes)} x ${p.pages} in batches of ${p.batch}`).join(', ')}`);
    await warmUp(client, dir);
    return (await planRuns(client, dir, 'tmpfs', plan, repeats, salt, log)).flatMap((r) => r.runs);
  } finally {
    await client.close().catch(() => undefined);
  }
}

/**
 * Untimed: puts, gets and lookups through a small cache, and raw batch writes and reads, so the
 * JIT has compiled both paths before anything is measured (as fio's ramp time keeps start-up out
 * of its figures). Small pages: compiled code does not depend on the page size.
 */
async function warmUp(client: Client, dir: string): Promise<void> {
  const root = join(dir, 'warm-up');
  const P = 4 * KiB;
  const N = 128;
  const cache = await KVCache.open({ client, root, namespace: NAMESPACE, pageBytes: P, capacityBytes: capacityFor(8 * N, P, WAYS, 4), ways: WAYS });
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
