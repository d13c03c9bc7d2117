// The records every tool's run turns into: the workload it ran, what it measured, and the row of
// the report and of the JSON file.
import { formatSize, GiB } from './units';

export type Tool = '3fs-client' | 'fio' | 'node:fs';

/** One cell of the workload matrix. Every tool runs it on the same file, block size and depth. */
export interface Workload {
  /** 'seq-read' | 'rand-read' | 'cached-read' | 'seq-write' */
  name: string;
  write: boolean;
  pattern: 'seq' | 'rand';
  blockSize: number;
  queueDepth: number;
  /** O_DIRECT for our engine and fio (node:fs is always buffered). */
  direct: boolean;
  /** Which of the bench's files it runs on. */
  file: 'data' | 'write' | 'cached';
  /** Our engine: ops per batch; queueDepth / batch batches are kept in flight. */
  batch: number;
}

export function workloadLabel(w: Workload): string {
  return `${w.name} ${formatSize(w.blockSize)} qd${w.queueDepth}`;
}

/** What a tool's run measured, before derived figures are added. */
export interface Measured {
  seconds: number;
  bytes: number;
  ops: number;
  p50us: number;
  p99us: number;
  /** user + system CPU seconds spent by the tool's process over the measured window. */
  cpuSeconds: number;
}

/** One row of the report and of the JSON file. Field names are stable (JSON version 1). */
export interface RunResult {
  workload: string;
  tool: Tool;
  blockSize: number;
  queueDepth: number;
  direct: boolean;
  seconds: number;
  bytes: number;
  ops: number;
  gibps: number;
  gbps: number;
  iops: number;
  p50us: number;
  p99us: number;
  cpuSecPerGiB: number;
  /** CPU seconds per 10^9 bytes moved (cpuSecPerGiB in decimal units). */
  cpuSecPerGB: number;
  /** How the tool ran (engine, batching, cache state, thread pool), as shown in the table. */
  mode: string;
  /** libuv thread pool size of a node:fs run, null for the other tools. */
  uvThreads: number | null;
  /** Which repetition (1-based) with --repeat. */
  repeat: number;
}

export function toResult(w: Workload, tool: Tool, m: Measured, mode: string, direct: boolean, uvThreads: number | null = null): RunResult {
  const gib = m.bytes / GiB;
  return {
    workload: w.name,
    tool,
    blockSize: w.blockSize,
    queueDepth: w.queueDepth,
    direct,
    seconds: round(m.seconds, 6),
    bytes: m.bytes,
    ops: m.ops,
    gibps: round(m.seconds > 0 ? gib / m.seconds : 0, 4),
    gbps: round(m.seconds > 0 ? m.bytes / 1e9 / m.seconds : 0, 4),
    iops: Math.round(m.seconds > 0 ? m.ops / m.seconds : 0),
    p50us: round(m.p50us, 1),
    p99us: round(m.p99us, 1),
    cpuSecPerGiB: round(gib > 0 ? m.cpuSeconds / gib : 0, 4),
    cpuSecPerGB: round(m.bytes > 0 ? m.cpuSeconds / (m.bytes / 1e9) : 0, 4),
    mode,
    uvThreads,
    repeat: 1,
  };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** A limit of the machine measured in the same run, shown above the table. */
export interface Ceiling {
  /** 'device read', 'device write', 'memory copy' */
  what: string;
  gbps: number;
  /** How it was measured (the fio line, or the copy). */
  how: string;
}

/** One micro-benchmark: what one call costs, apart from the device. */
export interface MicroResult {
  /** e.g. 'batchRead 16 x 4KiB (page cache)' */
  task: string;
  /** Items per call (ops, keys, allocations), to give the per-item cost. */
  n: number;
  samples: number;
  /** Latency of one call, µs: mean, p50, p99 (tinybench's statistics). */
  meanUs: number;
  p50Us: number;
  p99Us: number;
  /** meanUs / n. */
  perItemUs: number;
}
