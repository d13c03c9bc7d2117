// Issue 18's targets for the main table and the micro-benchmarks, and their verdicts from a run.
// A ratio is taken in each repetition (ours over the peer's run of the same repetition, same
// file) and the verdict is on the median of those ratios.
import type { MicroResult, RunResult } from '../support/records';
import { median } from '../support/stats';
import { atLeast, atMost, judge, type Judged, type Target } from '../support/targets';
import { formatSize, KiB, MiB } from '../support/units';
import { workloads } from './matrix';

/** A row of the main table by its workload, block size and depth. */
interface RowKey {
  workload: string;
  blockSize: number;
  queueDepth: number;
}

/** The throughput targets against fio: issue 18's items 1-3. */
export const THROUGHPUT_TARGETS: (RowKey & { target: Target })[] = [
  { workload: 'seq-read', blockSize: 4 * MiB, queueDepth: 8, target: atLeast(0.97, 'x fio') },
  { workload: 'rand-read', blockSize: 4 * KiB, queueDepth: 8, target: atLeast(0.8, 'x fio') },
  { workload: 'rand-read', blockSize: 64 * KiB, queueDepth: 8, target: atLeast(0.95, 'x fio') },
  { workload: 'rand-read', blockSize: 64 * KiB, queueDepth: 64, target: atLeast(0.95, 'x fio') },
  { workload: 'rand-read', blockSize: 1 * MiB, queueDepth: 8, target: atLeast(0.95, 'x fio') },
  { workload: 'rand-read', blockSize: 1 * MiB, queueDepth: 64, target: atLeast(0.95, 'x fio') },
  { workload: 'cached-read', blockSize: 1 * MiB, queueDepth: 4, target: atLeast(0.9, 'x fio') },
];

/** Item 6: on every O_DIRECT row, the client's CPU per GB at most fio's plus 50%. */
export const CPU_TARGET = atMost(1.5, "x fio's");

/** Items 1 and 5: what one call costs, tinybench's mean over its samples (one run). */
export const MICRO_TARGETS: { task: string; target: Target }[] = [
  { task: 'batchRead 1 x 4KiB (page cache)', target: atMost(12, 'us mean', 1) },
  { task: 'alloc + free 4KiB', target: atMost(5, 'us mean', 1) },
];

export function rowLabel(k: RowKey): string {
  return `${k.workload} ${formatSize(k.blockSize)} qd${k.queueDepth}`;
}

/** Why a row has no figure: not in the plan, fio missing, or its run failed. */
export interface Absent {
  /** Labels of the rows the run planned. */
  planned: Set<string>;
  /** Why there are no fio runs at all (not installed, not selected), or undefined. */
  noFio: string | undefined;
  quick: boolean;
  /** Labels of rows whose fio run failed, with the reason. */
  failed: Map<string, string>;
}

/** Ours over fio, per repetition, by `figure`; the ratios (empty when either side is missing). */
function ratiosByRepeat(runs: RunResult[], k: RowKey, figure: (r: RunResult) => number): number[] {
  const same = (r: RunResult) => r.workload === k.workload && r.blockSize === k.blockSize && r.queueDepth === k.queueDepth;
  const ours = runs.filter((r) => same(r) && r.tool === '3fs-client');
  const out: number[] = [];
  for (const o of ours) {
    const peer = runs.find((r) => same(r) && r.tool === 'fio' && r.repeat === o.repeat);
    if (peer && figure(peer) > 0) out.push(figure(o) / figure(peer));
  }
  return out;
}

function absentWhy(label: string, a: Absent): string {
  if (!a.planned.has(label)) return a.quick ? 'not in --quick' : 'not selected';
  if (a.noFio !== undefined) return a.noFio;
  return a.failed.get(label) ?? 'no run';
}

/** The main table's verdicts: throughput against fio, then CPU on every O_DIRECT row. */
export function judgeMain(runs: RunResult[], absent: Absent): Judged[] {
  const out: Judged[] = [];
  const one = (k: RowKey, measure: string, t: Target, figure: (r: RunResult) => number) => {
    const row = rowLabel(k);
    const ratios = ratiosByRepeat(runs, k, figure);
    const value = ratios.length > 0 ? median(ratios) : undefined;
    out.push(judge({ section: 'main', row, measure }, t, value, ratios.length, absentWhy(row, absent)));
  };
  for (const k of THROUGHPUT_TARGETS) one(k, 'GB/s vs fio', k.target, (r) => r.gbps);
  for (const w of workloads(false).filter((w) => w.direct)) {
    one({ workload: w.name, blockSize: w.blockSize, queueDepth: w.queueDepth }, 'CPU s/GB vs fio', CPU_TARGET, (r) => r.cpuSecPerGB);
  }
  return out;
}

/** The micro-benchmarks' verdicts; `why` when they did not run. */
export function judgeMicro(micro: MicroResult[] | undefined, why: string): Judged[] {
  return MICRO_TARGETS.map(({ task, target }) => {
    const r = micro?.find((m) => m.task === task);
    return judge({ section: 'micro', row: task, measure: 'mean us per call' }, target, r?.meanUs, r ? 1 : 0, why);
  });
}
