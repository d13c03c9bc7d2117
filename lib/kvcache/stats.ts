// The KVCache's counters: each call adds to them, stats() reads them with the pool's and index's sizes.
import type { GetResult, KVCacheStats, PutResult } from './types';

/** What the calls count: the stats less the sizes stats() reads from the pool and the index. */
export type Counters = Omit<KVCacheStats, 'lent' | 'poolBytes' | 'indexSize' | 'pinned'>;

export function newCounters(): Counters {
  return { hits: 0, misses: 0, corrupt: 0, raced: 0, stored: 0, present: 0, failed: 0, lost: 0, evicted: 0, deleted: 0, bytesRead: 0, bytesWritten: 0, bytesCopied: 0, repaired: 0, unlisted: 0, lockWaits: 0, poolAllocs: 0 };
}

export function countPuts(stats: Counters, results: PutResult[]): PutResult[] {
  for (const r of results) stats[r.status === 'stored' ? 'stored' : r.status === 'present' ? 'present' : r.status === 'lost' ? 'lost' : 'failed']++;
  return results;
}

export function countGets(stats: Counters, results: GetResult[]): GetResult[] {
  for (const r of results) stats[r.status === 'hit' ? 'hits' : 'misses']++;
  return results;
}
