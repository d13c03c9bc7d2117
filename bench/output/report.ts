// Turns the runs into the table on stdout (ratios next to ours) and the JSON document.
import { writeFile } from 'node:fs/promises';
import type { Machine } from '../support/machine';
import type { Ceiling, MicroResult, RunResult } from '../support/records';
import { median } from '../support/stats';
import { formatSize } from '../support/units';
import { describeDevice, type BlockDevice } from '../support/device';
import type { Judged } from '../support/targets';
import { markdownTable } from './markdown';
import { rowTargetCells } from './targets';

export interface BenchSettings {
  dir: string;
  fsType: string;
  size: number;
  cachedSize: number;
  durationMs: number;
  rampMs: number;
  quick: boolean;
  repeat: number;
  /** CPUs' worth of other processes' work on the machine just before the bench started. */
  busyCpusAtStart: number;
  /** Our engine: 'local' (io_uring, or the threads fallback) or 'hf3fs' (USRBIO). */
  engine?: 'local' | 'hf3fs';
  /** The block device under the files (sysfs), null when they are on none (tmpfs, FUSE). */
  device?: BlockDevice | null;
}

export interface BenchDocument {
  version: 1;
  machine: Machine;
  settings: BenchSettings;
  runs: RunResult[];
  /** The machine's limits measured in the same run (fio's device line, memory copy). */
  ceilings?: Ceiling[];
  /** Per-call overheads (tinybench). */
  micro?: MicroResult[];
  /** Runs of other tools that failed and are left out of `runs`, with the line that says why. */
  notRun?: NotRun[];
  /** Every target of the run with its verdict (bench/support/targets.ts), in the targets table's order. */
  targets?: Judged[];
}

export interface NotRun {
  tool: string;
  /** The workload's label, e.g. 'seq-read 4MiB qd8'. */
  workload: string;
  reason: string;
}

/** One line per tool whose runs failed: how many, which, and the first reason. */
export function notRunLines(notRun: NotRun[]): string[] {
  const tools = [...new Set(notRun.map((n) => n.tool))];
  return tools.map((tool) => {
    const mine = notRun.filter((n) => n.tool === tool);
    return `not run: ${tool}, ${mine.length} run${mine.length === 1 ? '' : 's'} (${mine.map((n) => n.workload).join(', ')}): ${mine[0].reason}`;
  });
}

/** Ours relative to fio and to node:fs (the run whose thread pool matches the depth), by throughput. */
export function ratios(runs: RunResult[], ours: RunResult): { fio?: number; nodeFs?: number } {
  const same = (r: RunResult) => r.workload === ours.workload && r.blockSize === ours.blockSize && r.queueDepth === ours.queueDepth;
  const fio = runs.find((r) => same(r) && r.tool === 'fio');
  const nodeFs =
    runs.find((r) => same(r) && r.tool === 'node:fs' && r.uvThreads === r.queueDepth) ?? runs.find((r) => same(r) && r.tool === 'node:fs');
  const ratio = (peer?: RunResult) => (peer && peer.gibps > 0 ? ours.gibps / peer.gibps : undefined);
  return { fio: ratio(fio), nodeFs: ratio(nodeFs) };
}

function fmtNum(v: number, digits: number): string {
  return v.toFixed(digits);
}

function fmtLat(us: number): string {
  if (us === 0) return '-';
  return us >= 100 ? Math.round(us).toString() : us.toFixed(1);
}

function fmtRatio(v: number | undefined): string {
  if (v === undefined) return '';
  return `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}x`;
}

/**
 * One row per workload and tool: the run itself, or with --repeat the median run by throughput,
 * its `how` saying so with the range.
 */
export function summarize(runs: RunResult[]): RunResult[] {
  const groups = new Map<string, RunResult[]>();
  for (const r of runs) {
    const key = `${r.workload}/${r.blockSize}/${r.queueDepth}/${r.tool}/${r.uvThreads}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()].map((g) => {
    if (g.length === 1) return g[0];
    const mid = median(g, (r) => r.gibps);
    const all = g.map((r) => r.gibps);
    const range = `${Math.min(...all).toFixed(3)}-${Math.max(...all).toFixed(3)}`;
    return { ...mid, mode: `${mid.mode}; median of ${g.length} (${range} GiB/s)` };
  });
}

/** The main table, in Markdown, with the machine's ceilings above it and the notes below. */
export function formatTable(doc: BenchDocument, fioMissing: boolean): string {
  const header = ['workload', 'tool', 'GB/s', 'IOPS', 'p50 us', 'p99 us', 'CPU s/GB', 'vs fio', 'vs node:fs', 'target', 'verdict', 'how'];
  const rows: string[][] = [];
  let last = '';
  const shown = summarize(doc.runs);
  for (const r of shown) {
    const label = `${r.workload} ${formatSize(r.blockSize)} qd${r.queueDepth}`;
    const rat = r.tool === '3fs-client' ? ratios(shown, r) : {};
    const judged = r.tool === '3fs-client' ? (doc.targets ?? []).filter((j) => j.section === 'main' && j.row === label) : [];
    const { target, verdict } = rowTargetCells(judged);
    rows.push([
      label === last ? '' : label,
      r.tool,
      fmtNum(r.gbps, r.gbps < 1 ? 3 : 2),
      r.iops.toLocaleString('en-US'),
      fmtLat(r.p50us),
      fmtLat(r.p99us),
      fmtNum(r.cpuSecPerGB, 3),
      fmtRatio(rat.fio),
      fmtRatio(rat.nodeFs),
      target,
      verdict,
      r.mode,
    ]);
    last = label;
  }
  // Ratio and target columns with nothing in them (no fio, no node:fs run, no target) are left out.
  const keep = header.map((_, i) => !(i >= 7 && i <= 10) || rows.some((row) => row[i] !== ''));
  const pick = <T>(cells: T[]) => cells.filter((_, i) => keep[i]);
  const numeric = pick(header.map((_, i) => i)).flatMap((col, at) => (col >= 2 && col <= 8 ? [at] : []));
  const m = doc.machine;
  const s = doc.settings;
  const out: string[] = [];
  out.push(`3fs-client bench: ${m.cpus} CPUs (${m.cpuModel}), ${formatSize(m.memory)} RAM, Linux ${m.kernel}, node ${m.node}, ${m.fio ?? 'no fio'}`, ...setupLines(s));
  if (s.busyCpusAtStart > 0.25) {
    out.push(`warning: other processes were using ${s.busyCpusAtStart.toFixed(1)} of ${m.cpus} CPUs when the bench started: numbers are noisy`);
  }
  if (doc.ceilings?.length) {
    out.push(`ceilings: ${doc.ceilings.map((c) => `${c.what} ${c.gbps.toFixed(2)} GB/s (${c.how})`).join('; ')}`);
  }
  out.push('');
  out.push(markdownTable(pick(header), rows.map(pick), numeric).trimEnd());
  out.push(
    '',
    'GB/s = 10^9 B/s (GiB/s in the JSON). Ratios compare throughput (same block size, so the IOPS ratio too).',
    'Latency per op: 3fs-client = submission to settlement of the batch holding the op; fio = lat_ns (submit to',
    '  completion); node:fs = FileHandle.read/write call to settlement. CPU = user+sys over the measured window:',
    '  3fs-client and node:fs of their whole process (JS, engine/libuv threads, io_uring workers); fio from',
    '  usr_cpu/sys_cpu, which count its job threads only (RUSAGE_THREAD), not io_uring\'s worker threads.',
    'node:fs cannot use O_DIRECT (Buffers are not aligned) or posix_fadvise: it runs buffered in a child process with',
    '  UV_THREADPOOL_SIZE = its concurrency; the bench drops the file\'s page cache (dd iflag=nocache) before it.',
  );
  if (fioMissing) out.push('fio is not installed: its column and the device ceiling are skipped. Install it with `sudo apt-get install fio`.');
  return out.join('\n') + '\n';
}

/** What the runs measured: where, on which device, which files read how, for how long. */
export function setupLines(s: BenchSettings): string[] {
  const where = `files in ${s.dir} (${s.fsType})${s.device !== undefined ? ` on ${describeDevice(s.device ?? undefined, s.fsType)}` : ''}`;
  const data = `data file ${formatSize(s.size)}: O_DIRECT for 3fs-client and fio, buffered for node:fs (page cache dropped first)`;
  const cached = `cached file ${formatSize(s.cachedSize)}: buffered, warm page cache`;
  const timing = `${(s.durationMs / 1000).toFixed(1)} s per run after ${(s.rampMs / 1000).toFixed(1)} s ramp${s.repeat > 1 ? `, ${s.repeat} runs each (median shown)` : ''}${s.quick ? ' (--quick)' : ''}${s.engine ? `; engine ${s.engine}` : ''}`;
  const order = '3fs-client and fio take turns going first, one repetition to the next; every run draws its random offsets from its own seed';
  const lines = [`${where}; ${timing}`, `${data}; ${cached}`, order];
  // A VM's disk may sit on a host cache the guest cannot drop: a small file can read faster than the disk.
  if (s.device?.driver.startsWith('virtio')) lines.push(`note: ${s.device.name} is a VM's virtio disk: a host cache below the guest is not dropped by the bench; --size sets the data file`);
  return lines;
}

export async function writeJson(path: string, doc: BenchDocument): Promise<void> {
  await writeFile(path, JSON.stringify(doc, null, 2) + '\n');
}
