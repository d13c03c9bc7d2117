// How the KVCache bench measures: a phase is a run of batches, some in flight at once, timed as a
// whole (wall time, each call's latency, process CPU); two paths over the same batches alternate.
import { percentile } from '../../support/stats';

export class Phase {
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

export interface PhaseResult {
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


/** Runs one batch: `lane` picks the memory of one of the batches in flight; `index` is the batch's number in the phase. */
export type BatchRunner = (batch: number[], lane: number, index: number) => Promise<{ bytes: number; misses: number }>;

/**
 * Two paths over the same batches, alternating in blocks (A B, B A, ...) so a drifting device
 * favours neither; with too few batches for two blocks, A-B-A (`a(again)` says which A). Returns
 * A's and B's figures and how they were taken.
 */
export async function interleaved(batches: number[][], inflight: number, a: (again: boolean) => Promise<BatchRunner>, b: BatchRunner): Promise<[PhaseResult, PhaseResult, string]> {
  // A block of 4 x inflight batches: the pipeline fills and drains in each, alike for both paths.
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
export async function timed(batches: number[][], lanes: number, run: BatchRunner): Promise<PhaseResult> {
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
export function joinPhases(a: PhaseResult, b: PhaseResult): PhaseResult {
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
