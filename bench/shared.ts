// What every part of the bench shares: the workload and result records, the measuring window,
// the seeded PRNG, the block stamps that let a run prove it read the right bytes, and unit parsing.
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';

export type Tool = '3fs-client' | 'fio' | 'node:fs';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

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

/**
 * The measured window of a time-based run: `rampMs` of warm-up that is not counted, then
 * `durationMs` counted. An op counts when it settles inside the window; its latency is from its
 * submission to its settlement. CPU time is process.cpuUsage() over the window.
 */
export class Meter {
  readonly start: number;
  readonly deadline: number;
  bytes = 0;
  ops = 0;
  #lat = new Float64Array(1 << 16);
  #n = 0;
  #cpu0: NodeJS.CpuUsage | undefined;
  #cpuSeconds = 0;
  #endedAt: number | undefined;
  #timers: NodeJS.Timeout[] = [];

  /** With `endAtDeadline` false the window stays open until end() is called. */
  constructor(rampMs: number, durationMs: number, endAtDeadline = true) {
    const now = performance.now();
    this.start = now + rampMs;
    this.deadline = this.start + durationMs;
    if (rampMs <= 0) this.#cpu0 = process.cpuUsage();
    else this.#timers.push(setTimeout(() => (this.#cpu0 = process.cpuUsage()), rampMs));
    if (endAtDeadline) this.#timers.push(setTimeout(() => this.end(), rampMs + durationMs));
  }

  /** Whether more work should be submitted. */
  get running(): boolean {
    return this.#endedAt === undefined && performance.now() < this.deadline;
  }

  /** `ops` ops moving `bytes` in all, submitted at `t0`, settled at `t1` (performance.now() ms). */
  record(t0: number, t1: number, bytes: number, ops: number): void {
    if (t1 < this.start || t1 > this.deadline || this.#endedAt !== undefined) return;
    this.bytes += bytes;
    this.ops += ops;
    const us = (t1 - t0) * 1000;
    if (this.#n + ops > this.#lat.length) {
      const bigger = new Float64Array(Math.max(this.#lat.length * 2, this.#n + ops));
      bigger.set(this.#lat.subarray(0, this.#n));
      this.#lat = bigger;
    }
    this.#lat.fill(us, this.#n, this.#n + ops);
    this.#n += ops;
  }

  /**
   * Closes the window now, or at the deadline if that came first. Later calls do nothing.
   * `clamp = false` keeps the window open past the deadline: for work that must be paid for
   * (an fdatasync of what was written) though no more ops are counted.
   */
  end(at = performance.now(), clamp = true): void {
    if (this.#endedAt !== undefined) return;
    for (const t of this.#timers) clearTimeout(t);
    this.#endedAt = clamp ? Math.min(at, this.deadline) : at;
    const usage = process.cpuUsage(this.#cpu0);
    this.#cpuSeconds = this.#cpu0 ? (usage.user + usage.system) / 1e6 : 0;
  }

  get ended(): boolean {
    return this.#endedAt !== undefined;
  }

  result(): Measured {
    this.end();
    const lat = this.#lat.subarray(0, this.#n).sort();
    return {
      seconds: Math.max(0, (this.#endedAt as number) - this.start) / 1000,
      bytes: this.bytes,
      ops: this.ops,
      p50us: percentile(lat, 0.5),
      p99us: percentile(lat, 0.99),
      cpuSeconds: this.#cpuSeconds,
    };
  }
}

/** Nearest-rank percentile of sorted values; 0 when empty. */
/** The median of a run's figures (the lower middle one for an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank];
}

/** sfc32 seeded by splitmix32: small, fast, and the same offsets for the same seed. */
export function makeRng(seed: number): () => number {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  const next32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t >>> 0;
  };
  // 53 random bits as a double in [0, 1).
  return () => (next32() * 2 ** 21 + (next32() >>> 11)) / 2 ** 53;
}

/**
 * The next file offset for a workload: a shared cursor wrapping around the file (seq), or
 * uniform block-aligned offsets from a seeded PRNG (rand). With `onePass`, seq returns -1 once
 * the whole file was handed out.
 */
export function offsetSource(w: Workload, fileSize: number, seed: number, onePass = false): () => number {
  const blocks = Math.floor(fileSize / w.blockSize);
  if (blocks < 1) throw new Error(`the file (${fileSize} bytes) is smaller than one ${w.blockSize}-byte block`);
  if (w.pattern === 'rand') {
    const rng = makeRng(seed);
    return () => Math.floor(rng() * blocks) * w.blockSize;
  }
  let next = 0;
  return () => {
    if (next >= blocks) {
      if (onePass) return -1;
      next = 0;
    }
    return w.blockSize * next++;
  };
}

// Every 4 KiB block of a bench file starts with a stamp: a magic word, the block's index, and a
// tag naming the writer (0 for the files the bench makes up front; a fresh number for each write
// run). Reads check the stamps of their first and last block, so an engine that returned the
// wrong bytes (or none) cannot report a fast number; a write run's read-back checks its tag.
export const STAMP_BLOCK = 4096;
const MAGIC = 0x33465342; // '3FSB'

export function stamp(buf: Buffer, bufOffset: number, fileOffset: number, tag = 0): void {
  const block = fileOffset / STAMP_BLOCK;
  buf.writeUInt32LE(MAGIC, bufOffset);
  buf.writeUInt32LE(block % 2 ** 32, bufOffset + 4);
  buf.writeUInt32LE(Math.floor(block / 2 ** 32), bufOffset + 8);
  buf.writeUInt32LE(tag, bufOffset + 12);
}

/** Stamps every 4 KiB block of `buf`, written at `fileOffset`. */
export function stampAll(buf: Buffer, fileOffset: number, length = buf.length, tag = 0): void {
  for (let o = 0; o < length; o += STAMP_BLOCK) stamp(buf, o, fileOffset + o, tag);
}

/** Stamps the first and last 4 KiB blocks of one op's buffer (what verify() checks). */
export function stampEnds(buf: Buffer, fileOffset: number, length: number, tag = 0): void {
  stamp(buf, 0, fileOffset, tag);
  if (length > STAMP_BLOCK) stamp(buf, length - STAMP_BLOCK, fileOffset + length - STAMP_BLOCK, tag);
}

/** Wipes the stamps verify() will check, so a read that left the buffer alone cannot pass. */
export function clearStamps(buf: Buffer, length: number): void {
  buf.writeUInt32LE(0, 0);
  if (length > STAMP_BLOCK) buf.writeUInt32LE(0, length - STAMP_BLOCK);
}

function stampOk(buf: Buffer, bufOffset: number, fileOffset: number, tag: number): boolean {
  const block = fileOffset / STAMP_BLOCK;
  return (
    buf.readUInt32LE(bufOffset) === MAGIC &&
    buf.readUInt32LE(bufOffset + 4) === block % 2 ** 32 &&
    buf.readUInt32LE(bufOffset + 8) === Math.floor(block / 2 ** 32) &&
    buf.readUInt32LE(bufOffset + 12) === tag
  );
}

/** Throws unless `buf` holds what a read of `length` bytes at `fileOffset` should have returned. */
export function verify(buf: Buffer, fileOffset: number, length: number, who: string, tag = 0): void {
  const last = length - STAMP_BLOCK;
  if (!stampOk(buf, 0, fileOffset, tag) || (last > 0 && !stampOk(buf, last, fileOffset + last, tag))) {
    throw new Error(`${who}: the bytes read at offset ${fileOffset} are not the file's (data check failed)`);
  }
}

/** A nonzero tag for one write run's stamps. */
export function writeTag(): number {
  return 1 + Math.floor(Math.random() * (2 ** 32 - 2));
}

/** Children the bench is running (fio, node:fs), so an interrupt can stop them. */
export const children = new Set<ChildProcess>();

/** Runs a child to its end and resolves with its stdout; rejects, naming `label`, if it fails. */
export function runChild(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => {
      children.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (code === 0) resolve(out);
      else reject(new Error(`${label} exited with ${signal ?? `code ${code}`}: ${(err || out).trim().slice(0, 2000)}`));
    });
  });
}

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

/** Where a bench makes its directory: `dir` (which must exist and be a directory) or the system's temp dir. */
export function benchBase(dir: string | undefined): string {
  if (dir === undefined) return tmpdir();
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new Error(`--dir ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new Error(`--dir ${dir} is not a directory`);
  return dir;
}
