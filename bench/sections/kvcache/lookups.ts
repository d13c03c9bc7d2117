// Lookup keys/s: warm (random batches of keys this process put) and cold (a new instance on the
// same root, nothing in its index), with the I/O rounds each took counted from the client's metrics.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { KVCache, type Client, type KVCacheOptions } from '../../../lib/index';
import { makeRng } from '../../support/rng';
import { KiB } from '../../support/units';
import { benchKey } from './payloads';
import { capacityFor, LOOKUP_BATCH, NAMESPACE, type KvLookupRun } from './records';

type Log = (line: string) => void;

/** Warm lookups (this process put the keys) and one cold lookup of 128 keys by a new instance. */
export async function lookupRun(client: Client, dir: string, distinct: number, total: number, rep: number, log: Log): Promise<KvLookupRun[]> {
  const root = join(dir, `lookup-r${rep}`);
  // Small pages, many ways and 4x the room: no key is evicted, so every lookup finds all its keys.
  const opts: KVCacheOptions = { client, root, namespace: NAMESPACE, pageBytes: 4 * KiB, capacityBytes: capacityFor(distinct, 4 * KiB, 32, 4), ways: 32 };
  const cache = await KVCache.open(opts);
  let cold: KVCache | undefined;
  try {
    const keys = Array.from({ length: distinct }, (_, i) => benchKey(`lookup/${rep}`, i));
    const stored = await putKeys(cache, keys, rep, log);
    const rng = makeRng(0x10c + rep);
    const pick = () => keys[Math.floor(rng() * distinct)];
    const calls = Math.ceil(total / LOOKUP_BATCH);
    const batches = Array.from({ length: calls }, (_, c) => Array.from({ length: Math.min(LOOKUP_BATCH, total - c * LOOKUP_BATCH) }, pick));
    const warm = record('warm', rep, stored, calls, await measured(client, cache, batches), 1e3);
    // Cold: a new instance on the same root (nothing in its index) looks up 128 present keys.
    cold = await KVCache.open({ ...opts });
    const sample = Array.from({ length: LOOKUP_BATCH }, pick);
    const coldRun = record('cold', rep, stored, 1, await measured(client, cold, [sample]), 1e6);
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

/** Setup, not measured: bigger batches than the lookups' take fewer I/O rounds. Returns the keys stored. */
async function putKeys(cache: KVCache, keys: string[], rep: number, log: Log): Promise<number> {
  const payload = new Uint8Array(64).fill(0x5a);
  const t = performance.now();
  let stored = 0;
  for (let i = 0; i < keys.length; i += 1024) {
    const ks = keys.slice(i, i + 1024);
    const rs = await cache.put(ks, ks.map(() => payload));
    stored += rs.filter((r) => r.status === 'stored').length;
  }
  log(`  lookups${rep > 1 ? ` (run ${rep})` : ''}: put ${stored.toLocaleString('en-US')} keys in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return stored;
}

type Measured = Pick<KvLookupRun, 'keys' | 'found' | 'seconds' | 'keysPerSec' | 'ioBatches' | 'submitCalls'>;

/** A lookup run's record; its seconds rounded to 1/`scale`. */
function record(kind: KvLookupRun['kind'], repeat: number, distinctKeys: number, calls: number, m: Measured, scale: number): KvLookupRun {
  const seconds = Math.round(m.seconds * scale) / scale;
  return { kind, repeat, distinctKeys, keys: m.keys, found: m.found, calls, seconds, keysPerSec: m.keysPerSec, ioBatches: m.ioBatches, submitCalls: m.submitCalls };
}

/** Looks up every batch in turn: keys found, seconds, keys/s, and the I/O rounds it took. */
async function measured(client: Client, cache: KVCache, batches: string[][]): Promise<Measured> {
  const keys = batches.reduce((a, b) => a + b.length, 0);
  const m0 = client.metrics();
  const t0 = performance.now();
  let found = 0;
  for (const b of batches) found += await cache.lookup(b);
  const ms = performance.now() - t0;
  const m1 = client.metrics();
  return { keys, found, seconds: ms / 1000, keysPerSec: Math.round(keys / (ms / 1000)), ioBatches: m1.batches - m0.batches, submitCalls: m1.submitCalls - m0.submitCalls };
}
