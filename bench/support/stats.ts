// The bench's two statistics: the median of repeated runs and percentiles of latencies.

/** The median (the lower middle one for an even count): of numbers, or of records by a figure. */
export function median(xs: readonly number[]): number;
export function median<T>(xs: readonly T[], by: (x: T) => number): T;
export function median<T>(xs: readonly T[], by?: (x: T) => number): T {
  const key = by ?? ((x: T) => x as unknown as number);
  return [...xs].sort((a, b) => key(a) - key(b))[Math.floor((xs.length - 1) / 2)];
}

/** Nearest-rank percentile of sorted values; 0 when empty. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank];
}
