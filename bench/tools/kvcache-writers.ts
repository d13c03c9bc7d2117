// Lost acknowledged puts: several writer processes put different keys into one set-heavy KVCache
// (16 sets of 32 ways, one shard) at once. Each writer keeps a window of its own keys stored: it
// checks its oldest batch through a second handle of the cache (its own index, so it sees what
// another process would see), then deletes it. The window is far below the sets' ways, so nothing
// is ever evicted: every acknowledged put that is not a hit when checked was lost to a race.
// This file is both the launcher (measureWriters) and each writer's entry point; run on its own,
//   node dist/bench/tools/kvcache-writers.js <writers> <puts per writer> [dir]
// it prints the figures as JSON.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVCache } from '../../lib/index';
import { runChild } from '../support/children';

const NAMESPACE = { model: 'writers', dtype: 'bf16' };
const GEOMETRY = { pageBytes: 512, ways: 32, shards: 1 };
const SETS = 16;
const BATCH = 4;
/** Keys each writer keeps stored at a time: 4 writers fill about a quarter of the ways. */
const WINDOW = 32;

export interface WritersSpec {
  root: string;
  writers: number;
  putsPerWriter: number;
}

/** What the writers saw, summed. */
export interface WritersResult {
  writers: number;
  /** Puts answered 'stored'. */
  acknowledged: number;
  /** Of those, misses when checked: lost without a word. */
  lost: number;
  /** Hits with bytes other than their own (never expected: a check failing). */
  wrong: number;
  /** Puts answered 'failed', and pages evicted (neither is expected with this window). */
  failed: number;
  evicted: number;
  /** Calls that waited for a set another process held. */
  lockWaits: number;
  seconds: number;
}

type WriterResult = Omit<WritersResult, 'writers' | 'seconds'>;

const capacityBytes = SETS * (4096 + GEOMETRY.ways * (4096 + 4096));
const cacheOptions = (root: string) => ({ root, namespace: NAMESPACE, capacityBytes, ...GEOMETRY });

/** Makes the cache, runs the writers at once and sums what they saw. */
export async function measureWriters(spec: WritersSpec): Promise<WritersResult> {
  await (await KVCache.open(cacheOptions(spec.root))).close(); // made first: the writers race on puts only
  const started = process.hrtime.bigint();
  const outs = await Promise.all(
    Array.from({ length: spec.writers }, (_, w) => runChild(`kvcache writer ${w}`, process.execPath, [__filename, '--writer', JSON.stringify({ ...spec, writer: w })], process.env)),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const sum: WritersResult = { writers: spec.writers, acknowledged: 0, lost: 0, wrong: 0, failed: 0, evicted: 0, lockWaits: 0, seconds };
  for (const out of outs) {
    const r = JSON.parse(out) as WriterResult;
    for (const k of ['acknowledged', 'lost', 'wrong', 'failed', 'evicted', 'lockWaits'] as const) sum[k] += r[k];
  }
  return sum;
}

/** The bytes of key k of a writer: its numbers at the front, a byte of them after. */
function pageOf(writer: number, k: number): Buffer {
  const page = Buffer.alloc(GEOMETRY.pageBytes, (writer * 31 + k) & 255);
  page.writeUInt32LE(writer, 0);
  page.writeUInt32LE(k, 4);
  return page;
}

async function writerMain(spec: WritersSpec & { writer: number }): Promise<WriterResult> {
  const cache = await KVCache.open(cacheOptions(spec.root));
  const reader = await KVCache.open(cacheOptions(spec.root));
  const result: WriterResult = { acknowledged: 0, lost: 0, wrong: 0, failed: 0, evicted: 0, lockWaits: 0 };
  const window: number[][] = []; // batches of stored key numbers, oldest first
  const keyOf = (k: number) => `w${spec.writer}-${k}`;
  const check = async (ks: number[]) => {
    const rs = await reader.get(ks.map(keyOf));
    rs.forEach((r, j) => {
      if (r.status !== 'hit') result.lost++;
      else if (!r.buffer!.equals(pageOf(spec.writer, ks[j]))) result.wrong++;
    });
    reader.recycle(rs);
    await cache.delete(ks.map(keyOf));
  };
  for (let i = 0; i < spec.putsPerWriter; i += BATCH) {
    const ks = Array.from({ length: Math.min(BATCH, spec.putsPerWriter - i) }, (_, j) => i + j);
    const rs = await cache.put(ks.map(keyOf), ks.map((k) => pageOf(spec.writer, k)));
    window.push(ks.filter((_, j) => rs[j].status === 'stored'));
    result.acknowledged += window[window.length - 1].length;
    result.failed += rs.filter((r) => r.status === 'failed').length;
    if (window.length * BATCH > WINDOW) await check(window.shift()!);
  }
  for (const ks of window) await check(ks);
  result.evicted = cache.stats().evicted;
  result.lockWaits = cache.stats().lockWaits + reader.stats().lockWaits;
  await Promise.all([cache.close(), reader.close()]);
  return result;
}

if (require.main === module) {
  const [first, second, third] = process.argv.slice(2);
  if (first === '--writer') {
    writerMain(JSON.parse(second)).then(
      (r) => process.stdout.write(JSON.stringify(r)),
      (e) => {
        process.stderr.write(`${(e as Error).stack ?? e}\n`);
        process.exit(1);
      },
    );
  } else {
    const dir = mkdtempSync(join(third ?? tmpdir(), 'kvcache-writers-'));
    measureWriters({ root: join(dir, 'cache'), writers: Number(first ?? 2), putsPerWriter: Number(second ?? 50_000) })
      .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
      .finally(() => rmSync(dir, { recursive: true, force: true }));
  }
}
