// The client's distributions, named as 3FS's own monitor names them (storage_client.overall_latency,
// storage_client.request_bw), summarized here from the bucket counts the engines keep
// (native/engines/op_histogram.h): count, mean, min, max, p50, p90, p95, p99, over the client's life or
// over an interval (MetricsSampler), plus failed ops by errno code, and a Prometheus text exporter.
// Nothing here runs per op: the engines count, JS reads the counts when asked.
import { getSystemErrorName } from 'node:util';

// The bucket layout of native/engines/op_histogram.h: 0..7 exact, then 8 sub-buckets per power of two.
const SUB_BITS = 3;
const SUB = 1 << SUB_BITS;
export const HISTOGRAM_BUCKETS = (64 - SUB_BITS + 1) * SUB;
const ERRNO_SLOTS = 160;
const PER_HISTOGRAM = HISTOGRAM_BUCKETS + 1; // the counts, then the sum

/** The values bucket `i` holds: [lo, hi), as doubles (exact up to 2^53). */
export function bucketBounds(i: number): [number, number] {
  if (i < SUB) return [i, i + 1];
  const e = Math.floor(i / SUB) - 1 + SUB_BITS;
  const width = 2 ** (e - SUB_BITS);
  const lo = 2 ** e + (i % SUB) * width;
  return [lo, lo + width];
}

/** The bucket a value falls in (the native HistogramBucket, for tests and for callers' own counts). */
export function bucketOf(v: number): number {
  if (v < SUB) return Math.max(0, Math.floor(v));
  const e = Math.floor(Math.log2(v));
  // log2 rounds near powers of two; settle e exactly.
  const exp = 2 ** e > v ? e - 1 : 2 ** (e + 1) <= v ? e + 1 : e;
  const sub = Math.floor(v / 2 ** (exp - SUB_BITS)) % SUB;
  return (exp - SUB_BITS + 1) * SUB + sub;
}

/** One distribution over some span. Values in its unit; all 0 when count is 0. */
export interface DistributionSummary {
  count: number;
  /** Exact (from the exact sum). */
  mean: number;
  /** min, max and the percentiles are bucket midpoints (within 1/16 of the value), clamped to [min, max]. */
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  sum: number;
}

export const QUANTILES = [0.5, 0.9, 0.95, 0.99] as const;

/** Summarizes bucket counts and their values' sum (nearest-rank percentiles). */
export function summarizeBuckets(counts: ArrayLike<number>, sum: number): DistributionSummary {
  let count = 0;
  let first = -1;
  let last = -1;
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] > 0) {
      count += counts[i];
      if (first < 0) first = i;
      last = i;
    }
  }
  if (count === 0) return { count: 0, mean: 0, min: 0, max: 0, p50: 0, p90: 0, p95: 0, p99: 0, sum: 0 };
  const mid = (i: number) => {
    const [lo, hi] = bucketBounds(i);
    return hi - lo === 1 ? lo : Math.floor((lo + hi - 1) / 2);
  };
  const min = first < SUB ? first : bucketBounds(first)[0];
  const max = last < SUB ? last : bucketBounds(last)[1] - 1;
  const at = (p: number) => {
    const rank = Math.max(1, Math.ceil(p * count));
    let seen = 0;
    for (let i = first; i <= last; i++) {
      seen += counts[i];
      if (seen >= rank) return Math.min(max, Math.max(min, mid(i)));
    }
    return max;
  };
  return { count, mean: sum / count, min, max, p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), sum };
}

/** Raw counts as the addon returns them (Client.distributions()), or the difference of two. */
export type DistributionCounts = Float64Array;

export function countsSince(now: DistributionCounts, before: DistributionCounts | undefined): DistributionCounts {
  if (!before) return now;
  const d = new Float64Array(now.length);
  for (let i = 0; i < now.length; i++) d[i] = now[i] - before[i];
  return d;
}

/** A distribution by its 3FS monitor name and the op kind it is tagged with. */
export interface NamedDistribution extends DistributionSummary {
  /** 'storage_client.overall_latency' (unit ns) or 'storage_client.request_bw' (unit B/s). */
  name: string;
  op: 'read' | 'write';
  unit: 'ns' | 'B/s';
}

export interface OpDistributions {
  distributions: NamedDistribution[];
  /** Failed ops by errno name (EIO, ECANCELED, ...); only codes that occurred. */
  errorsByCode: Record<string, number>;
}

const LAYOUT: { name: string; op: 'read' | 'write'; unit: 'ns' | 'B/s' }[] = [
  { name: 'storage_client.overall_latency', op: 'read', unit: 'ns' },
  { name: 'storage_client.overall_latency', op: 'write', unit: 'ns' },
  { name: 'storage_client.request_bw', op: 'read', unit: 'B/s' },
  { name: 'storage_client.request_bw', op: 'write', unit: 'B/s' },
];

export function decodeDistributions(counts: DistributionCounts): OpDistributions {
  if (counts.length !== LAYOUT.length * PER_HISTOGRAM + ERRNO_SLOTS) throw new Error('the addon and lib/core/metrics.ts disagree on the histogram layout');
  const distributions = LAYOUT.map((d, h) => {
    const at = h * PER_HISTOGRAM;
    return { ...d, ...summarizeBuckets(counts.subarray(at, at + HISTOGRAM_BUCKETS), counts[at + HISTOGRAM_BUCKETS]) };
  });
  const errorsByCode: Record<string, number> = {};
  const base = LAYOUT.length * PER_HISTOGRAM;
  for (let e = 1; e < ERRNO_SLOTS; e++) {
    const n = counts[base + e];
    if (n > 0) errorsByCode[errnoName(e, e === ERRNO_SLOTS - 1)] = n;
  }
  return { distributions, errorsByCode };
}

function errnoName(errno: number, overflow: boolean): string {
  if (overflow) return `E${errno}+`;
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/** What a MetricsSampler reports for one interval. */
export interface MetricsInterval extends OpDistributions {
  /** Seconds since the previous sample (or since the sampler was made). */
  seconds: number;
  /** Differences of the client's counters (readBytes, bouncedBytes, errors, ...) over the interval. */
  counters: Record<string, number>;
}

/** Where a sampler reads from: a Client (client.metrics() and its distributions' raw counts). */
export interface MetricsSource {
  metrics(): object;
  distributionCounts(): DistributionCounts;
}

/**
 * Per-interval figures, as 3FS's monitor reports them: each sample() covers the time since the
 * previous one.
 */
export class MetricsSampler {
  #source: MetricsSource;
  #counts: DistributionCounts;
  #counters: Record<string, number>;
  #at: number;

  constructor(source: MetricsSource) {
    this.#source = source;
    this.#counts = source.distributionCounts();
    this.#counters = numbers(source.metrics());
    this.#at = performance.now();
  }

  sample(): MetricsInterval {
    const counts = this.#source.distributionCounts();
    const counters = numbers(this.#source.metrics());
    const now = performance.now();
    const delta: Record<string, number> = {};
    for (const [k, v] of Object.entries(counters)) delta[k] = v - (this.#counters[k] ?? 0);
    const out = { seconds: (now - this.#at) / 1000, counters: delta, ...decodeDistributions(countsSince(counts, this.#counts)) };
    this.#counts = counts;
    this.#counters = counters;
    this.#at = now;
    return out;
  }
}

function numbers(o: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number') out[k] = v;
  return out;
}

/** snake_case of a counter name: bouncedBytes -> bounced_bytes. */
function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The client's metrics in Prometheus's text format (version 0.0.4): the counters as
 * threefs_client_<name>_total, the distributions as summaries (latency in seconds, bandwidth in
 * bytes per second) with op and quantile labels, and failed ops by code. `labels` are added to
 * every sample (e.g. { instance: 'trainer-0' }).
 */
export function prometheusText(metrics: object & OpDistributions, labels: Record<string, string> = {}): string {
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  const fmt = (extra: Record<string, string>) => {
    const all = { ...labels, ...extra };
    const parts = Object.entries(all).map(([k, v]) => `${k}="${esc(v)}"`);
    return parts.length ? `{${parts.join(',')}}` : '';
  };
  const lines: string[] = [];
  for (const [key, value] of Object.entries(numbers(metrics))) {
    const name = `threefs_client_${snake(key)}_total`;
    lines.push(`# TYPE ${name} counter`, `${name}${fmt({})} ${value}`);
  }
  const seen = new Set<string>();
  for (const d of metrics.distributions) {
    const seconds = d.unit === 'ns';
    const name = d.name.replace(/\./g, '_') + (seconds ? '_seconds' : '_bytes_per_second');
    const scale = seconds ? 1e-9 : 1;
    if (!seen.has(name)) {
      seen.add(name);
      lines.push(`# HELP ${name} ${d.name} of each ${seconds ? 'op, from its batch\'s submission to its settlement' : 'op that moved bytes'}`, `# TYPE ${name} summary`);
    }
    const q = { p50: 0.5, p90: 0.9, p95: 0.95, p99: 0.99 } as const;
    for (const [field, quantile] of Object.entries(q)) lines.push(`${name}${fmt({ op: d.op, quantile: String(quantile) })} ${d[field as keyof typeof q] * scale}`);
    lines.push(`${name}_sum${fmt({ op: d.op })} ${d.sum * scale}`, `${name}_count${fmt({ op: d.op })} ${d.count}`);
  }
  const errName = 'threefs_client_op_errors_total';
  lines.push(`# TYPE ${errName} counter`);
  for (const [code, n] of Object.entries(metrics.errorsByCode)) lines.push(`${errName}${fmt({ code })} ${n}`);
  return lines.join('\n') + '\n';
}
