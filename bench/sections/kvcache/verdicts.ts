// The KVCache section's targets (issue 19): put and get of pages of 1 MiB and more at >= 0.90x raw
// batch I/O of the same bytes, with checksums on, in the bench's directory and on tmpfs. 64 KiB
// rows are reported with no target. A ratio is the median of the repetitions' own ratios.
import { median } from '../../support/stats';
import { atLeast, judge, type Judged } from '../../support/targets';
import { formatSize, MiB } from '../../support/units';
import { IN_FLIGHT, type KvRun, type KvWhere } from './records';

export const KV_TARGET = atLeast(0.9, 'x raw', 1, 'issue 19');
const TARGETED_FROM = 1 * MiB;

export const hasTarget = (pageBytes: number): boolean => pageBytes >= TARGETED_FROM;

/** The row's label in the targets table: 'tmpfs 4MiB put, 4 in flight'. */
export function kvRowLabel(where: KvWhere, pageBytes: number, op: 'put' | 'get', inflight: number): string {
  return `${where === 'tmpfs' ? 'tmpfs' : 'dir'} ${formatSize(pageBytes)} ${op}, ${inflight} in flight`;
}

/** kv/raw of one row: the median over repetitions of each one's ratio, and how many there were. */
export function kvRatio(runs: readonly KvRun[], where: KvWhere, pageBytes: number, op: 'put' | 'get', inflight: number): { ratio: number | undefined; reps: number } {
  const of = (path: 'kvcache' | 'raw', repeat: number) => runs.find((r) => r.path === path && r.where === where && r.pageBytes === pageBytes && r.op === op && r.inflight === inflight && r.repeat === repeat);
  const ratios: number[] = [];
  for (const kv of runs) {
    if (kv.path !== 'kvcache' || kv.where !== where || kv.pageBytes !== pageBytes || kv.op !== op || kv.inflight !== inflight) continue;
    const raw = of('raw', kv.repeat);
    if (raw && raw.gbps > 0) ratios.push(kv.gbps / raw.gbps);
  }
  return { ratio: ratios.length ? median(ratios) : undefined, reps: ratios.length };
}

/** Every targeted row that ran, judged: the document's `targets`, in table order. */
export function judgeKv(runs: readonly KvRun[], pageSizes: readonly number[]): Judged[] {
  const judged: Judged[] = [];
  for (const where of ['dir', 'tmpfs'] as const) {
    if (!runs.some((r) => r.where === where)) continue;
    for (const pageBytes of pageSizes.filter(hasTarget)) {
      for (const op of ['put', 'get'] as const) {
        for (const inflight of IN_FLIGHT) {
          const { ratio, reps } = kvRatio(runs, where, pageBytes, op, inflight);
          judged.push(judge({ section: 'kvcache', row: kvRowLabel(where, pageBytes, op, inflight), measure: 'GB/s vs raw' }, KV_TARGET, ratio, reps, 'no run'));
        }
      }
    }
  }
  return judged;
}
