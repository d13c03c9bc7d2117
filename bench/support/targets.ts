// Targets and their verdicts. API: `atLeast(0.95, 'x fio')` / `atMost(12, 'us mean', 1)` make a
// Target; `judge({ section, row, measure }, target, value, runs, why?)` gives a Judged (JSON as is);
// `targetText(t)` and `verdictText(j)` are the table cells. A value of undefined is 'not measured'.

export type Verdict = 'met' | 'not met' | 'not measured';

/** A bound on one figure of one row, as an issue states it. */
export interface Target {
  op: '>=' | '<=';
  bound: number;
  /** What the figure is, written after the bound: 'x fio', 'x node:fs', 'us mean', "x fio's". */
  unit: string;
  /** Runs the figure must be the median of (1: one run is the measure, e.g. tinybench's mean). */
  runs: number;
  /** Where it comes from, e.g. 'issue 18'. */
  source: string;
}

/** A target with its verdict: one entry of the JSON's `targets`, one line of the targets table. */
export interface Judged {
  /** 'main', 'micro', 'datasets', 'streams', 'kvcache', ... */
  section: string;
  /** The row's label as its table prints it, e.g. 'rand-read 64KiB qd8'. */
  row: string;
  /** The figure judged, e.g. 'GB/s vs fio'. */
  measure: string;
  /** targetText(target), e.g. '>= 0.95x fio'. */
  target: string;
  op: '>=' | '<=';
  bound: number;
  unit: string;
  source: string;
  /** The figure (the median of `runs` runs), or null when it was not measured. */
  value: number | null;
  runs: number;
  /** Runs the target asks the median of. */
  runsWanted: number;
  verdict: Verdict;
  /** Why it was not measured, or that it had fewer runs than the target asks. */
  note?: string;
}

export function atLeast(bound: number, unit: string, runs = 3, source = 'issue 18'): Target {
  return { op: '>=', bound, unit, runs, source };
}

export function atMost(bound: number, unit: string, runs = 3, source = 'issue 18'): Target {
  return { op: '<=', bound, unit, runs, source };
}

/** '>= 0.95x fio', '>= 1.0x node:fs', '<= 12 us mean': the bound joined to its unit as the issue writes it. */
export function targetText(t: Pick<Target, 'op' | 'bound' | 'unit'>): string {
  const ratio = t.unit.startsWith('x');
  return `${t.op} ${ratio && Number.isInteger(t.bound) ? t.bound.toFixed(1) : t.bound}${ratio ? '' : ' '}${t.unit}`;
}

/** Judges `value` (the median of `runs` runs; undefined: not measured, `why` says why). */
export function judge(where: { section: string; row: string; measure: string }, t: Target, value: number | undefined, runs: number, why?: string): Judged {
  const measured = value !== undefined && Number.isFinite(value);
  const met = measured && (t.op === '>=' ? value >= t.bound : value <= t.bound);
  const verdict: Verdict = !measured ? 'not measured' : met ? 'met' : 'not met';
  const note = !measured ? (why ?? 'no run') : runs < t.runs ? `${runs} of the ${t.runs} runs it asks for` : undefined;
  return {
    ...where,
    target: targetText(t),
    op: t.op,
    bound: t.bound,
    unit: t.unit,
    source: t.source,
    value: measured ? round(value) : null,
    runs: measured ? runs : 0,
    runsWanted: t.runs,
    verdict,
    ...(note !== undefined ? { note } : {}),
  };
}

/** The verdict cell: 'met', 'not met', 'not measured', with '(1 of 3 runs)' when it had too few. */
export function verdictText(j: Judged): string {
  if (j.verdict === 'not measured' || j.runs >= j.runsWanted) return j.verdict;
  return `${j.verdict} (${j.runs} of ${j.runsWanted} runs)`;
}

/** The value cell, as the target's unit reads: '0.87x', '14.2 us'. */
export function valueText(j: Judged): string {
  if (j.value === null) return '-';
  const v = j.value;
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return j.unit.startsWith('x') ? `${v.toFixed(2)}x` : `${v.toFixed(digits)} ${j.unit.split(' ')[0]}`;
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
