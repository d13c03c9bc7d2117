// The main table's matrix: which workloads run, with which tools, in which order, and one planned
// run turned into a row. Every tool runs each workload on the same file, back to back; ours and
// fio take turns going first, and every run draws its random offsets from its own seed, so a
// cache below the guest (a VM host's) favours neither tool nor a later repetition.
import type { ClientOptions } from '../../lib/index';
import { dropPageCache } from '../support/page-cache';
import { toResult, type Measured, type RunResult, type Tool, type Workload } from '../support/records';
import { KiB, MiB } from '../support/units';
import { runFio } from '../tools/fio';
import { runNodeFs } from '../tools/node-fs';
import { runOurs, type RunOptions } from '../tools/ours';

export const WORKLOAD_NAMES = ['seq-read', 'rand-read', 'cached-read', 'seq-write'];
export const TOOL_NAMES: Tool[] = ['3fs-client', 'fio', 'node:fs'];

/** This matrix. */
export function workloads(quick: boolean): Workload[] {
  const rand = (blockSize: number, queueDepth: number, batch: number, inQuick: boolean) => ({
    w: { name: 'rand-read', write: false, pattern: 'rand', blockSize, queueDepth, direct: true, file: 'data', batch } as Workload,
    inQuick,
  });
  const list: { w: Workload; inQuick: boolean }[] = [
    // 3FS's `fio -numjobs=128 -iodepth=2 -ioengine=libaio -direct=1 -rw=read -bs=4M`, scaled to one
    // process (the line itself, scaled to the cores, measures the device ceiling: tools/ceilings.ts).
    { w: { name: 'seq-read', write: false, pattern: 'seq', blockSize: 4 * MiB, queueDepth: 8, direct: true, file: 'data', batch: 1 }, inQuick: true },
    // Random reads at three block sizes and shallow to deep queues: the charts' grid.
    rand(4 * KiB, 8, 1, true),
    rand(4 * KiB, 64, 16, true),
    rand(4 * KiB, 128, 16, false),
    rand(64 * KiB, 8, 1, true),
    rand(64 * KiB, 64, 16, false),
    rand(1 * MiB, 8, 1, true),
    rand(1 * MiB, 64, 4, false),
    { w: { name: 'cached-read', write: false, pattern: 'seq', blockSize: 1 * MiB, queueDepth: 4, direct: false, file: 'cached', batch: 1 }, inQuick: true },
    { w: { name: 'seq-write', write: true, pattern: 'seq', blockSize: 4 * MiB, queueDepth: 8, direct: true, file: 'write', batch: 1 }, inQuick: true },
  ];
  return list.filter((x) => !quick || x.inQuick).map((x) => x.w);
}

export interface Planned {
  w: Workload;
  tool: Tool;
  uvThreads?: number;
  repeat: number;
  /** The seed of this run's random offsets: no two runs of a plan share one. */
  seed: number;
}

/**
 * Every run in order: per workload and repetition, ours and fio (where installed), the one that
 * went second going first in the next repetition, then node:fs. `seed` is the plan's base seed.
 */
export function planRuns(selected: Workload[], tools: Tool[], repeats: number, fio: boolean, quick: boolean, seed: number): Planned[] {
  const plan: Planned[] = [];
  const pair = TOOL_NAMES.filter((t) => t !== 'node:fs' && tools.includes(t) && (t !== 'fio' || fio));
  const add = (p: Omit<Planned, 'seed'>) => plan.push({ ...p, seed: (seed + plan.length * 0x9e3779b9) >>> 0 });
  for (const w of selected) {
    for (let repeat = 1; repeat <= repeats; repeat++) {
      for (const tool of repeat % 2 === 1 ? pair : [...pair].reverse()) add({ w, tool, repeat });
      if (tools.includes('node:fs')) {
        add({ w, tool: 'node:fs', uvThreads: Math.max(4, w.queueDepth), repeat });
        // The same reads with libuv's default pool of 4 threads: what an unconfigured app gets.
        if (!quick && w.name === 'rand-read' && w.queueDepth === 64) add({ w, tool: 'node:fs', uvThreads: 4, repeat });
      }
    }
  }
  return plan;
}

/** Where a planned run reads or writes, and how the bench runs its tools. */
export interface RunContext {
  path: string;
  fileSize: number;
  opts: RunOptions;
  clientOptions: ClientOptions;
  /** Whether the page cache could be dropped (the node:fs rows say "cold" only then). */
  canDrop: boolean;
}

/** One planned run, as a row of the table (its `repeat` set). */
export async function runPlanned(p: Planned, c: RunContext): Promise<RunResult> {
  const { w, tool } = p;
  const opts = { ...c.opts, seed: p.seed };
  let result: RunResult;
  if (tool === '3fs-client') {
    const m = await runOurs(w, c.path, c.fileSize, opts, c.clientOptions);
    result = toResult(w, tool, m, m.mode, w.direct);
  } else if (tool === 'fio') {
    const m = await runFio(w, c.path, c.fileSize, opts);
    result = toResult(w, tool, m, m.mode, w.direct);
  } else {
    result = await nodeFsRun(p, { ...c, opts });
  }
  result.repeat = p.repeat;
  return result;
}

/** node:fs: buffered, with the page cache dropped around a cold run, the same for every tool. */
async function nodeFsRun(p: Planned, c: RunContext): Promise<RunResult> {
  const { w } = p;
  const cold = w.file !== 'cached';
  if (cold) dropPageCache(c.path);
  const onePass = cold && w.pattern === 'seq';
  const capped = cold && w.pattern === 'rand' && !w.write;
  const m: Measured = await runNodeFs({
    workload: w,
    path: c.path,
    fileSize: c.fileSize,
    // Both end early and must not spend their bytes in a ramp.
    rampMs: onePass || capped ? 0 : c.opts.rampMs,
    durationMs: c.opts.durationMs,
    seed: c.opts.seed,
    onePass,
    maxBytes: capped ? c.fileSize / 4 : undefined,
    fsync: w.write,
    uvThreads: p.uvThreads ?? w.queueDepth,
  });
  if (cold) dropPageCache(c.path);
  const mode = [
    'buffered',
    cold ? (c.canDrop ? (onePass ? 'cold cache' : 'cold cache at start') : 'cache state unknown') : 'warm cache',
    `FileHandle.${w.write ? 'write' : 'read'} x ${w.queueDepth}`,
    onePass ? 'at most 1 pass' : '',
    capped ? 'at most 1/4 of the file' : '',
    w.write ? 'fdatasync in window' : '',
    `UV_THREADPOOL_SIZE=${p.uvThreads}`,
  ]
    .filter(Boolean)
    .join(', ');
  return toResult(w, 'node:fs', m, mode, false, p.uvThreads ?? null);
}
