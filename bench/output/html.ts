// `bench --html F`: one self-contained page (no script, no network): the machine and its ceilings,
// charts of GB/s against block size and against queue depth (hand-written inline SVG), the main
// table, the micro-benchmarks and the targets with their verdicts.
import { writeFile } from 'node:fs/promises';
import type { Ceiling, MicroResult, RunResult, Tool } from '../support/records';
import { formatSize } from '../support/units';
import { ratios, setupLines, summarize, type BenchDocument } from './report';
import { targetCells, TARGETS_HEADER } from './targets';

export interface Series {
  name: string;
  color: string;
  /** One value per x label; null where there is no run. */
  values: (number | null)[];
  /** Which of the dash patterns (the color says the tool, the dash the depth or block size). */
  dash?: number;
}

export interface LineChart {
  title: string;
  xTitle: string;
  xLabels: string[];
  yTitle: string;
  series: Series[];
  /** Horizontal dashed lines: the machine's limits. */
  ceilings?: { name: string; value: number }[];
  /** A log10 y axis (block sizes span 256x, and their GB/s nearly as much). */
  logY?: boolean;
}

const TOOL_COLORS: Record<Tool, string> = { '3fs-client': '#1f77b4', fio: '#ff7f0e', 'node:fs': '#2ca02c' };
const DASHES = ['', '6 3', '2 3', '8 3 2 3'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A 'nice' step (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to `max`. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
}

/** An SVG line chart: categorical x, linear y from 0. */
export function lineChart(c: LineChart): string {
  const W = 640, H = 360, L = 60, R = 170, T = 36, B = 50;
  const pw = W - L - R, ph = H - T - B;
  const values = c.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const top = Math.max(...values, ...(c.ceilings ?? []).map((x) => x.value), 1e-9) * 1.08;
  const x = (i: number) => L + (c.xLabels.length === 1 ? pw / 2 : (i * pw) / (c.xLabels.length - 1));
  let y: (v: number) => number;
  let ticks: number[];
  if (c.logY) {
    const positive = values.filter((v) => v > 0);
    const lo = 10 ** Math.floor(Math.log10(Math.min(...positive, top) / 1.08));
    const hi = 10 ** Math.ceil(Math.log10(top));
    y = (v: number) => T + ph - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * ph;
    ticks = [];
    for (let d = lo; d <= hi * 1.0001; d *= 10) for (const m of [1, 2, 5]) if (d * m <= hi * 1.0001) ticks.push(d * m);
  } else {
    const step = niceStep(top, 5);
    const yMax = Math.ceil(top / step) * step;
    y = (v: number) => T + ph - (v / yMax) * ph;
    ticks = [];
    for (let v = 0; v <= yMax + step / 2; v += step) ticks.push(v);
  }
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(c.title)}">`);
  parts.push(`<text x="${L}" y="20" class="title">${esc(c.title)}</text>`);
  for (const v of ticks) {
    parts.push(`<line x1="${L}" x2="${L + pw}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`);
    parts.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`);
  }
  c.xLabels.forEach((label, i) => parts.push(`<text x="${x(i)}" y="${T + ph + 18}" text-anchor="middle">${esc(label)}</text>`));
  parts.push(`<text x="${L + pw / 2}" y="${H - 8}" text-anchor="middle" class="axis">${esc(c.xTitle)}</text>`);
  parts.push(`<text transform="translate(16 ${T + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">${esc(c.yTitle)}</text>`);
  for (const ceil of c.ceilings ?? []) {
    parts.push(`<line x1="${L}" x2="${L + pw}" y1="${y(ceil.value)}" y2="${y(ceil.value)}" class="ceiling"/>`);
    parts.push(`<text x="${L + pw - 4}" y="${y(ceil.value) - 4}" text-anchor="end" class="ceiling-label">${esc(ceil.name)} ${ceil.value.toFixed(2)}</text>`);
  }
  c.series.forEach((s, k) => {
    const points = s.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`));
    // Gaps split the line: a missing run is not drawn as a slope.
    const runs: string[][] = [[]];
    for (const p of points) (p === null ? runs.push([]) : runs[runs.length - 1].push(p));
    const dash = DASHES[(s.dash ?? k) % DASHES.length];
    for (const r of runs.filter((r) => r.length > 0)) {
      parts.push(`<polyline class="series" data-series="${esc(s.name)}" points="${r.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    }
    for (const p of points) if (p) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${s.color}"/>`);
    const ly = T + 10 + k * 18;
    parts.push(`<line x1="${L + pw + 14}" x2="${L + pw + 34}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    parts.push(`<text x="${L + pw + 40}" y="${ly + 4}" class="legend">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** The random-read runs as charts: GB/s against block size (one line per tool and depth), and against depth (per block size). */
export function randomReadCharts(doc: BenchDocument & { ceilings?: Ceiling[] }): LineChart[] {
  const runs = summarize(doc.runs).filter((r) => r.workload === 'rand-read' && (r.tool !== 'node:fs' || r.uvThreads === r.queueDepth));
  if (runs.length === 0) return [];
  const sizes = [...new Set(runs.map((r) => r.blockSize))].sort((a, b) => a - b);
  const depths = [...new Set(runs.map((r) => r.queueDepth))].sort((a, b) => a - b);
  const tools = [...new Set(runs.map((r) => r.tool))];
  const find = (tool: Tool, bs: number, qd: number) => runs.find((r) => r.tool === tool && r.blockSize === bs && r.queueDepth === qd);
  const ceilings = (doc.ceilings ?? []).filter((c) => c.what === 'device read').map((c) => ({ name: 'device read (fio)', value: c.gbps }));
  // One chart per axis: x is block size or depth, one line per tool and value of the other.
  const along = (x: 'blockSize' | 'queueDepth'): LineChart => {
    const xs = x === 'blockSize' ? sizes : depths;
    const others = x === 'blockSize' ? depths : sizes;
    const at = (tool: Tool, xv: number, other: number) => (x === 'blockSize' ? find(tool, xv, other) : find(tool, other, xv));
    const lineName = (other: number) => (x === 'blockSize' ? `qd${other}` : formatSize(other));
    return {
      title: `Random reads (O_DIRECT): GB/s against ${x === 'blockSize' ? 'block size' : 'queue depth'}`,
      xTitle: x === 'blockSize' ? 'block size' : 'queue depth (ops in flight)',
      xLabels: xs.map((v) => (x === 'blockSize' ? formatSize(v) : String(v))),
      yTitle: 'GB/s',
      series: tools.flatMap((tool) =>
        others
          .filter((other) => xs.some((xv) => at(tool, xv, other)))
          .map((other) => ({ name: `${tool} ${lineName(other)}`, color: TOOL_COLORS[tool], dash: others.indexOf(other), values: xs.map((xv) => at(tool, xv, other)?.gbps ?? null) })),
      ),
      ceilings,
      // Block sizes span 256x, and their GB/s nearly as much.
      logY: x === 'blockSize',
    };
  };
  return [along('blockSize'), along('queueDepth')];
}

function table(header: string[], rows: string[][]): string {
  const tr = (cells: string[], tag: string) => `<tr>${cells.map((c) => `<${tag}>${esc(c)}</${tag}>`).join('')}</tr>`;
  return `<table><thead>${tr(header, 'th')}</thead><tbody>${rows.map((r) => tr(r, 'td')).join('\n')}</tbody></table>`;
}

export function renderHtml(doc: BenchDocument & { ceilings?: Ceiling[]; micro?: MicroResult[] }): string {
  const m = doc.machine;
  const s = doc.settings;
  const shown = summarize(doc.runs);
  const runRows = shown.map((r: RunResult) => {
    const rat = r.tool === '3fs-client' ? ratios(shown, r) : {};
    return [
      `${r.workload} ${formatSize(r.blockSize)} qd${r.queueDepth}`,
      r.tool,
      r.gbps.toFixed(3),
      r.iops.toLocaleString('en-US'),
      r.p50us.toFixed(0),
      r.p99us.toFixed(0),
      r.cpuSecPerGB.toFixed(3),
      rat.fio === undefined ? '' : `${rat.fio.toFixed(2)}x`,
      rat.nodeFs === undefined ? '' : `${rat.nodeFs.toFixed(2)}x`,
      r.mode,
    ];
  });
  const charts = randomReadCharts(doc).map(lineChart).join('\n');
  const ceilings = (doc.ceilings ?? []).map((c) => `<li><b>${esc(c.what)}</b>: ${c.gbps.toFixed(2)} GB/s <span class="how">(${esc(c.how)})</span></li>`).join('');
  const micro = doc.micro?.length
    ? `<h2>Per-call overheads (tinybench)</h2>${table(['call', 'mean us', 'p50 us', 'p99 us', 'us per item', 'samples'], doc.micro.map((r) => [r.task, r.meanUs.toFixed(2), r.p50Us.toFixed(2), r.p99Us.toFixed(2), r.n > 1 ? r.perItemUs.toFixed(3) : '', String(r.samples)]))}`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>3fs-client bench</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg.chart { border: 1px solid #ddd; background: #fff; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg text.title { font-size: 13px; font-weight: 600; }
svg text.axis { font-size: 12px; }
svg .grid { stroke: #eee; }
svg .ceiling { stroke: #d62728; stroke-dasharray: 5 4; }
svg text.ceiling-label { fill: #d62728; }
table { border-collapse: collapse; margin: 8px 0 24px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, th:nth-child(2), th:last-child, td:first-child, td:nth-child(2), td:last-child { text-align: left; }
.how { color: #666; }
</style>
</head>
<body>
<h1>3fs-client bench</h1>
<p>${esc(`${m.cpus} CPUs (${m.cpuModel}), ${formatSize(m.memory)} RAM, Linux ${m.kernel}, node ${m.node}, ${m.fio ?? 'no fio'}`)}<br>
${setupLines(s).map(esc).join('<br>\n')}</p>
${ceilings ? `<h2>Ceilings</h2><ul>${ceilings}</ul>` : ''}
<div class="charts">
${charts}
</div>
<h2>Runs</h2>
${table(['workload', 'tool', 'GB/s', 'IOPS', 'p50 us', 'p99 us', 'CPU s/GB', 'vs fio', 'vs node:fs', 'how'], runRows)}
${micro}
${doc.targets?.length ? `<h2>Targets</h2>${table(TARGETS_HEADER, doc.targets.map(targetCells))}` : ''}
</body>
</html>
`;
}

export async function writeHtml(path: string, doc: Parameters<typeof renderHtml>[0]): Promise<void> {
  await writeFile(path, renderHtml(doc));
}
