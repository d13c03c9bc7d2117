// Units of the bench: binary sizes, and the sizes and durations its options are written in.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const units: Record<string, number> = {
  '': 1, b: 1,
  k: KiB, kib: KiB, kb: 1e3,
  m: MiB, mib: MiB, mb: 1e6,
  g: GiB, gib: GiB, gb: 1e9,
  t: 1024 * GiB, tib: 1024 * GiB, tb: 1e12,
};

/** '1GiB', '256M', '4k', '1e9' → bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? units[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`cannot read size '${text}' (use e.g. 1GiB, 256M, 4096)`);
  return Math.floor(Number(m[1]) * unit);
}

/** '3', '3s', '1500ms', '1m' → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/i.exec(text);
  if (!m) throw new Error(`cannot read duration '${text}' (use e.g. 3, 3s, 1500ms)`);
  const scale = { ms: 1, s: 1000, m: 60000 }[(m[2] ?? 's').toLowerCase() as 'ms' | 's' | 'm'];
  return Number(m[1]) * scale;
}

/** 4096 → '4KiB', 4194304 → '4MiB', otherwise e.g. '1.5GiB'. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (bytes >= size) {
      const v = bytes / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    }
  }
  return `${bytes}B`;
}
