// `3fs-client bench --fallback`: what someone whose container blocks io_uring gets. The 'threads'
// engine beside io_uring and fio's psync and libaio engines, alternating on one O_DIRECT file, with
// the main bench's seq-read and rand-read (qd 64) workloads.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeBenchDir } from '../support/bench-dir';
import { checkBenchFile, writeBenchFile } from '../support/bench-files';
import { benchBase, checkFreeSpace, fileSystemType, otherCpuUse } from '../support/machine';
import { toResult, workloadLabel, type Measured, type Workload } from '../support/records';
import { median } from '../support/stats';
import { formatSize, GiB, MiB } from '../support/units';
import { FIO_MISSING, fioVersion, runFio, type FioEngine } from '../tools/fio';
import { runOurs } from '../tools/ours';
import { workloads } from './matrix';

export interface FallbackBenchOptions {
  /** Where to make the temporary bench directory (default: os.tmpdir()). Must exist. */
  dir?: string;
  /** Data file size in bytes (default 1 GiB; 256 MiB with quick). */
  size?: number;
  durationMs?: number;
  rampMs?: number;
  /** Runs of each tool per workload, alternating; the table shows medians. Default 3 (1 with quick). */
  repeat?: number;
  /** Worker threads of the threads engine (ClientOptions.threads; default the client's). */
  threads?: number;
  quick?: boolean;
  err?: (text: string) => void;
  out?: (text: string) => void;
}

/** The columns, in the order they run. */
export const FALLBACK_TOOLS = ['io_uring', 'threads', 'fio psync', 'fio libaio'] as const;
export type FallbackTool = (typeof FALLBACK_TOOLS)[number];

export interface FallbackRun {
  workload: string;
  tool: FallbackTool;
  blockSize: number;
  queueDepth: number;
  iops: number;
  gibps: number;
  p50us: number;
  p99us: number;
  cpuSecPerGiB: number;
  mode: string;
  repeat: number;
}

export async function runFallbackBench(options: FallbackBenchOptions = {}): Promise<FallbackRun[]> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const quick = options.quick ?? false;
  const repeat = options.repeat ?? (quick ? 1 : 3);
  const runOpts = { rampMs: options.rampMs ?? (quick ? 200 : 500), durationMs: options.durationMs ?? (quick ? 1000 : 3000), seed: 0x3f5 };
  const size = Math.floor((options.size ?? (quick ? 256 * MiB : 1 * GiB)) / (4 * MiB)) * 4 * MiB;
  if (size < 32 * MiB) throw new Error(`--size must be at least 32MiB (got ${formatSize(size)})`);
  const selected: Workload[] = workloads(true).filter((w) => w.name === 'seq-read' || (w.name === 'rand-read' && w.queueDepth === 64));
  const fio = fioVersion();
  if (fio === null) err(FIO_MISSING + '\n');
  const busy = await otherCpuUse(300);
  if (busy > 0.25) err(`warning: other processes are using ${busy.toFixed(1)} CPUs: expect noisy numbers\n`);

  const base = benchBase(options.dir);
  checkFreeSpace(base, size, 'the bench');
  const dir = makeBenchDir(base, options.dir !== undefined ? '.bench-fallback-' : '3fs-client-bench-fallback-');
  try {
    const path = join(dir, 'data.bin');
    await writeBenchFile(path, size, false);
    await checkBenchFile(path, size);
    err(`fallback bench in ${dir} (${fileSystemType(dir)}): ${formatSize(size)} O_DIRECT file, ${repeat} run${repeat > 1 ? 's' : ''} of each tool per workload, alternating\n`);
    const threads = options.threads !== undefined ? { threads: options.threads } : {};
    const runs: FallbackRun[] = [];
    for (const w of selected) {
      for (let r = 1; r <= repeat; r++) {
        for (const tool of FALLBACK_TOOLS) {
          if (tool.startsWith('fio') && fio === null) continue;
          let m: Measured & { mode: string };
          if (tool === 'io_uring' || tool === 'threads') {
            m = await runOurs(w, path, size, runOpts, { engine: tool, ...(tool === 'threads' ? threads : {}) });
          } else {
            m = await runFio(w, path, size, runOpts, tool.slice(4) as FioEngine);
          }
          const res = toResult(w, '3fs-client', m, m.mode, w.direct);
          const run: FallbackRun = { workload: w.name, tool, blockSize: w.blockSize, queueDepth: w.queueDepth, iops: res.iops, gibps: res.gibps, p50us: res.p50us, p99us: res.p99us, cpuSecPerGiB: res.cpuSecPerGiB, mode: m.mode, repeat: r };
          runs.push(run);
          err(`  ${workloadLabel(w)} ${tool} run ${r}: ${run.iops} IOPS, ${run.gibps.toFixed(3)} GiB/s, p99 ${Math.round(run.p99us)} us\n`);
        }
      }
    }
    out(formatFallbackTable(runs));
    return runs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Medians per workload and tool, and each tool's throughput relative to our io_uring engine. */
export function formatFallbackTable(runs: FallbackRun[]): string {
  const lines = ['workload            tool            IOPS     GiB/s  p50 us  p99 us  CPU s/GiB  /io_uring  how'];
  for (const name of [...new Set(runs.map((r) => r.workload))]) {
    const of = (tool: FallbackTool) => runs.filter((r) => r.workload === name && r.tool === tool);
    const uring = median(of('io_uring').map((r) => r.gibps));
    for (const tool of FALLBACK_TOOLS) {
      const rs = of(tool);
      if (rs.length === 0) continue;
      const gibps = median(rs.map((r) => r.gibps));
      const label = tool === 'io_uring' ? `${name} ${formatSize(rs[0].blockSize)} qd${rs[0].queueDepth}` : '';
      lines.push(
        [
          label.padEnd(20),
          tool.padEnd(12),
          String(median(rs.map((r) => r.iops))).padStart(8),
          gibps.toFixed(3).padStart(10),
          median(rs.map((r) => r.p50us)).toFixed(0).padStart(8),
          median(rs.map((r) => r.p99us)).toFixed(0).padStart(8),
          median(rs.map((r) => r.cpuSecPerGiB)).toFixed(2).padStart(11),
          (uring > 0 ? `${(gibps / uring).toFixed(2)}x` : '').padStart(11),
          `  ${rs[0].mode}`,
        ].join(''),
      );
    }
  }
  return lines.join('\n') + '\n(medians over the runs; the same O_DIRECT file for every tool; /io_uring: throughput relative to our io_uring engine)\n';
}
