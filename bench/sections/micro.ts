// Micro-benchmarks (tinybench) of what one call costs, apart from the device: a batch of N reads
// from the page cache (one N-API call, N ops on the engine's thread, one settlement), a warm
// KVCache lookup of N keys, and an alloc/free of registered memory.
import { join } from 'node:path';
import { connect, KVCache, type IoBuffer, type IoOp } from '../../lib/index';
import { markdownTable } from '../output/markdown';
import { rowTargetCells } from '../output/targets';
import type { Judged } from '../support/targets';
import { writeBenchFile } from '../support/bench-files';
import type { MicroResult } from '../support/records';
import { KiB, MiB } from '../support/units';
import { benchKey } from './kvcache/payloads';

export interface MicroOptions {
  dir: string;
  /** Time per task, ms (tinybench's `time`). Default 200. */
  timeMs?: number;
}

/** Why the micro-benchmarks cannot run on this Node, or undefined when they can. */
export async function microUnavailable(): Promise<string | undefined> {
  try {
    await import('tinybench');
    return undefined;
  } catch (e) {
    // tinybench is an ES module; this CommonJS build loads it with require(), which Node does from 20.19 on.
    if ((e as NodeJS.ErrnoException).code === 'ERR_REQUIRE_ESM') return `the micro-benchmarks need Node 20.19 or later (tinybench is an ES module; this is ${process.version})`;
    throw e;
  }
}

export async function runMicro(options: MicroOptions): Promise<MicroResult[]> {
  const { Bench } = await import('tinybench');
  const timeMs = options.timeMs ?? 200;
  const client = connect({ queueDepth: 256 });
  const path = join(options.dir, 'micro.bin');
  const buffers: IoBuffer[] = [];
  let cache: KVCache | undefined;
  try {
    await writeBenchFile(path, 4 * MiB, true); // buffered: it stays in the page cache
    const file = await client.open(path, 'r', 0o644, { direct: 'never' });
    for (let i = 0; i < 256; i++) buffers.push(client.alloc(4 * KiB));
    const batchOf = (n: number): IoOp[] => buffers.slice(0, n).map((buffer, i) => ({ buffer, fileOffset: i * 4 * KiB }));

    const keys = Array.from({ length: 1024 }, (_, i) => benchKey('micro', i));
    cache = await KVCache.open({ client, root: join(options.dir, 'micro-kv'), namespace: { model: '3fs-client-micro', dtype: 'bytes' }, pageBytes: 4 * KiB, capacityBytes: 64 * MiB, ways: 32 });
    const payload = new Uint8Array(64).fill(0x5a);
    await cache.put(keys, keys.map(() => payload));
    const kv = cache;

    const bench = new Bench({ time: timeMs, warmupTime: Math.min(50, timeMs), retainSamples: false });
    const sizes: Record<string, number> = {};
    const add = (task: string, n: number, fn: () => unknown) => {
      sizes[task] = n;
      bench.add(task, fn);
    };
    for (const n of [1, 16, 256]) {
      const ops = batchOf(n);
      add(`batchRead ${n} x 4KiB (page cache)`, n, () => file.batchRead(ops));
    }
    for (const n of [16, 256]) {
      const some = keys.slice(0, n);
      add(`KVCache lookup of ${n} keys (warm)`, n, () => kv.lookup(some));
    }
    for (const bytes of [4 * KiB, 4 * MiB]) add(`alloc + free ${bytes >= MiB ? `${bytes / MiB}MiB` : `${bytes / KiB}KiB`}`, 1, () => client.alloc(bytes).free());
    await bench.run();
    await file.close();
    return bench.tasks.map((t) => {
      const r = t.result as { state: string; latency?: { mean: number; p50?: number; p99?: number; samplesCount: number } } | undefined;
      const lat = r?.latency;
      if (!r || !lat || r.state !== 'completed') throw new Error(`micro-benchmark '${t.name}' did not complete (${r?.state ?? 'no result'})`);
      const n = sizes[t.name];
      const us = (ms: number | undefined) => Math.round((ms ?? 0) * 1000 * 100) / 100;
      return { task: t.name, n, samples: lat.samplesCount, meanUs: us(lat.mean), p50Us: us(lat.p50), p99Us: us(lat.p99), perItemUs: Math.round(((lat.mean * 1000) / n) * 1000) / 1000 };
    });
  } finally {
    await cache?.close().catch(() => undefined);
    for (const b of buffers) b.free();
    await client.close().catch(() => undefined);
  }
}

/** The micro table; a task with a target (the micro section's `judged`) shows it and its verdict. */
export function formatMicro(results: MicroResult[], judged: readonly Judged[] = []): string {
  const rows = results.map((r) => {
    const { target, verdict } = rowTargetCells(judged.filter((j) => j.section === 'micro' && j.row === r.task));
    return [r.task, r.meanUs.toFixed(2), r.p50Us.toFixed(2), r.p99Us.toFixed(2), r.n > 1 ? r.perItemUs.toFixed(3) : '', r.samples.toLocaleString('en-US'), target, verdict];
  });
  return markdownTable(['per call (tinybench)', 'mean us', 'p50 us', 'p99 us', 'us per item', 'samples', 'target', 'verdict'], rows, [1, 2, 3, 4, 5]);
}
