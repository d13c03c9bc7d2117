// The datasets section: random ffrecord batches and a safetensors load through this library, next
// to node:fs readers of the same files, both from the warm page cache (what each adds on top of the
// kernel's copies), then ours once more with O_DIRECT, which node:fs cannot do.
import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { makeBenchDir } from '../support/bench-dir';
import { connect, createDatasetWriter, openDataset, openSafetensors, type Client } from '../../lib/index';
import { benchBase } from '../support/machine';
import { dropPageCache, warm } from '../support/page-cache';
import { makeRng } from '../support/rng';
import { median, percentile } from '../support/stats';
import { atLeast, judge, type Judged } from '../support/targets';
import { rowTargetCells } from '../output/targets';
import { formatSize, KiB, MiB } from '../support/units';

export interface DatasetBenchOptions {
  dir?: string;
  quick?: boolean;
  /** Bytes of samples per sample size (default 256 MiB; 64 MiB with quick). */
  size?: number;
  /** Measured time per reader per size, ms (default 2000; 600 with quick). */
  durationMs?: number;
  /** Runs of each reader of the safetensors load, alternating (default 3; 1 with quick). */
  repeat?: number;
  err?: (text: string) => void;
  out?: (text: string) => void;
}

export interface DatasetRun {
  what: 'ffrecord' | 'safetensors';
  reader: '3fs-client' | 'node:fs';
  /** O_DIRECT from storage (ours only; node:fs cannot), else both buffered from the warm page cache. */
  direct: boolean;
  sampleBytes: number;
  batch: number;
  verify: boolean;
  seconds: number;
  samples: number;
  bytes: number;
  samplesPerSec: number;
  gbps: number;
  /** Per batch call, from its start to its samples in hand. */
  p50ms: number;
  p99ms: number;
  /** user+sys CPU of the process over the window, per GB read. */
  cpuSecPerGB: number;
  /** Which repetition (1-based), on the rows run more than once (safetensors). */
  repeat?: number;
}

export interface DatasetBenchDocument {
  settings: { size: number; durationMs: number; quick: boolean; cacheState: string; inFlight: number };
  runs: DatasetRun[];
  /** The section's targets with their verdicts (the safetensors load against node:fs). */
  targets?: Judged[];
}

/** Batches in flight: what a loader with prefetch 1 keeps. */
const IN_FLIGHT = 2;
const SAMPLE_SIZES = [4 * KiB, 64 * KiB, 1 * MiB];
/** Samples a batch: a training batch's worth, and at least 8 MiB a batch for the large ones. */
const batchFor = (bytes: number) => (bytes >= MiB ? 16 : bytes >= 64 * KiB ? 64 : 256);

interface Window {
  seconds: number;
  calls: number;
  /** Each call's latency, ms, sorted. */
  lat: Float64Array;
  cpuSeconds: number;
}

/** Runs `batch()` with IN_FLIGHT in flight until `ms` have passed: wall time, calls, their latencies, CPU. */
async function window(ms: number, batch: (slot: number) => Promise<void>, inFlight = IN_FLIGHT): Promise<Window> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const stop = t0 + ms;
  const lat: number[] = [];
  await Promise.all(
    Array.from({ length: inFlight }, async (_, slot) => {
      while (performance.now() < stop) {
        const c0 = performance.now();
        await batch(slot);
        lat.push(performance.now() - c0);
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { seconds: (performance.now() - t0) / 1000, calls: lat.length, lat: Float64Array.from(lat).sort(), cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** Sample i of a bench file: random bytes with its index in the first 4 (so a wrong sample is caught). */
function sampleBytes(i: number, bytes: number, random: () => number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let k = 0; k + 4 <= bytes; k += 4) b.writeUInt32LE((random() * 2 ** 32) >>> 0, k);
  b.writeUInt32LE(i, 0);
  return b;
}

function run(what: DatasetRun['what'], reader: DatasetRun['reader'], sampleBytes: number, batch: number, verify: boolean, w: Window, samplesPerCall: number, bytesPerCall: number, direct = false): DatasetRun {
  const samples = w.calls * samplesPerCall;
  const bytes = w.calls * bytesPerCall;
  const r3 = (v: number) => Math.round(v * 1000) / 1000;
  return {
    what,
    reader,
    direct,
    sampleBytes,
    batch,
    verify,
    seconds: r3(w.seconds),
    samples,
    bytes,
    samplesPerSec: Math.round(samples / w.seconds),
    gbps: r3(bytes / w.seconds / 1e9),
    p50ms: r3(percentile(w.lat, 0.5)),
    p99ms: r3(percentile(w.lat, 0.99)),
    cpuSecPerGB: r3(bytes > 0 ? w.cpuSeconds / (bytes / 1e9) : 0),
  };
}

export async function runDatasetBench(options: DatasetBenchOptions = {}): Promise<DatasetBenchDocument> {
  const err = options.err ?? ((t: string) => process.stderr.write(t));
  const out = options.out ?? ((t: string) => process.stdout.write(t));
  const log = (line: string) => err(line + '\n');
  const quick = options.quick ?? false;
  const size = options.size ?? (quick ? 64 * MiB : 256 * MiB);
  const durationMs = options.durationMs ?? (quick ? 600 : 2000);
  const dir = makeBenchDir(benchBase(options.dir), '.bench-datasets-');
  const runs: DatasetRun[] = [];
  const client = connect();
  const ctx: Ctx = { client, dir, size, durationMs, repeat: options.repeat ?? (quick ? 1 : 3), log };
  try {
    for (const sample of SAMPLE_SIZES) runs.push(...(await ffrecordRuns(ctx, sample)));
    runs.push(...(await safetensorsRuns(ctx)));
  } finally {
    await client.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const doc: DatasetBenchDocument = { settings: { size, durationMs, quick, cacheState: 'warm page cache, buffered reads for both', inFlight: IN_FLIGHT }, runs, targets: judgeDatasets(runs) };
  out(formatDatasetTable(doc));
  return doc;
}

interface Ctx {
  client: Client;
  dir: string;
  /** Bytes of samples per sample size. */
  size: number;
  durationMs: number;
  repeat: number;
  log: (line: string) => void;
}

/** One sample size: a file of stamped samples, read in random batches by each reader. */
interface Samples {
  path: string;
  sample: number;
  /** Samples in the file. */
  n: number;
  batch: number;
  /** A batch of random sample indices. */
  indices: () => number[];
  /** Throws unless `bytes` is sample `i`. */
  check: (bytes: Uint8Array, i: number) => void;
}

/** Ours buffered (with and without the CRC check), node:fs the same two ways, then ours with O_DIRECT. */
async function ffrecordRuns(ctx: Ctx, sample: number): Promise<DatasetRun[]> {
  const s = await writeSamples(ctx, sample);
  const runs = [...(await oursBuffered(ctx, s)), ...(await nodeFsSamples(ctx, s))];
  // Ours once more from storage: O_DIRECT, the unaligned samples read as aligned ranges around them.
  if (dropPageCache(s.path)) {
    await using cold = await openDataset(s.path, { client: ctx.client, direct: 'auto' });
    const w = await window(ctx.durationMs, async () => {
      const want = s.indices();
      using got = await cold.read(want);
      s.check(got.samples[0], want[0]);
    });
    runs.push(run('ffrecord', '3fs-client', sample, s.batch, true, w, s.batch, s.batch * sample, true));
  }
  ctx.log(`  ffrecord ${formatSize(sample)} x ${s.batch}: ${runs.map((r) => `${r.reader}${r.direct ? ' O_DIRECT' : ''}${r.verify ? '+crc' : ''} ${r.gbps} GB/s`).join(', ')}`);
  rmSync(s.path, { force: true });
  return runs;
}

/** The file of `sample`-byte samples, written with our writer and read once into the page cache. */
async function writeSamples(ctx: Ctx, sample: number): Promise<Samples> {
  const n = Math.max(64, Math.floor(ctx.size / sample));
  const path = join(ctx.dir, `samples-${sample}.ffr`);
  const random = makeRng(sample);
  const writer = await createDatasetWriter(path, { client: ctx.client, count: n, durable: false });
  for (let i = 0; i < n; i += 256) await writer.writeMany(Array.from({ length: Math.min(256, n - i) }, (_, k) => sampleBytes(i + k, sample, random)));
  await writer.close();
  await warm(path);
  const batch = batchFor(sample);
  const pick = makeRng(0x5eed + sample);
  const check = (bytes: Uint8Array, i: number) => {
    if (bytes.length !== sample || Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32LE(0) !== i) throw new Error(`bench: sample ${i} came back wrong`);
  };
  return { path, sample, n, batch, indices: () => Array.from({ length: batch }, () => Math.floor(pick() * n)), check };
}

/** 3fs-client: one submission a batch into a registered buffer; buffered, to read the same cached pages as node:fs. */
async function oursBuffered(ctx: Ctx, s: Samples): Promise<DatasetRun[]> {
  const runs: DatasetRun[] = [];
  await using ds = await openDataset(s.path, { client: ctx.client, direct: 'never' });
  for (const verify of [true, false]) {
    const w = await window(ctx.durationMs, async () => {
      const want = s.indices();
      using got = await ds.read(want, { verify });
      s.check(got.samples[0], want[0]);
    });
    runs.push(run('ffrecord', '3fs-client', s.sample, s.batch, verify, w, s.batch, s.batch * s.sample));
  }
  return runs;
}

/** node:fs: the header's tables, then one FileHandle.read per sample; zlib.crc32 on the JS thread. */
async function nodeFsSamples(ctx: Ctx, s: Samples): Promise<DatasetRun[]> {
  const { n, sample, batch } = s;
  const runs: DatasetRun[] = [];
  const fh = await open(s.path, 'r');
  try {
    const head = Buffer.alloc(12 + 12 * n);
    await fh.read(head, 0, head.length, 0);
    const crcs = new Uint32Array(n);
    const offsets = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      crcs[i] = head.readUInt32LE(12 + 4 * i);
      offsets[i] = Number(head.readBigUInt64LE(12 + 4 * n + 8 * i));
    }
    const buffers = Array.from({ length: IN_FLIGHT }, () => Buffer.allocUnsafe(batch * sample));
    for (const verify of [true, false]) {
      const w = await window(ctx.durationMs, async (slot) => {
        const want = s.indices();
        const into = buffers[slot];
        await Promise.all(want.map((i, k) => fh.read(into, k * sample, sample, offsets[i])));
        if (verify) want.forEach((i, k) => {
          if (zlib.crc32(into.subarray(k * sample, (k + 1) * sample)) !== crcs[i]) throw new Error(`bench: sample ${i} fails its CRC`);
        });
        s.check(into.subarray(0, sample), want[0]);
      });
      runs.push(run('ffrecord', 'node:fs', sample, batch, verify, w, batch, batch * sample));
    }
  } finally {
    await fh.close();
  }
  return runs;
}

/**
 * safetensors: a checkpoint of 4 MiB F32 tensors, loaded whole again and again into memory kept
 * for it (a registered buffer for ours, one Buffer for node:fs).
 */
async function safetensorsRuns(ctx: Ctx): Promise<DatasetRun[]> {
  const tensorBytes = 4 * MiB;
  const count = Math.max(4, Math.floor(ctx.size / tensorBytes));
  const path = join(ctx.dir, 'model.safetensors');
  await writeSafetensors(path, count, tensorBytes);
  await warm(path);
  const runs: DatasetRun[] = [];
  await using st = await openSafetensors(path, { client: ctx.client, direct: 'never' });
  const total = count * tensorBytes;
  using into = ctx.client.alloc(total + MiB);
  const fh = await open(path, 'r');
  try {
    const infos = [...st.tensors.values()];
    const memory = Buffer.allocUnsafe(total);
    // The two readers alternate, so a machine whose speed drifts moves both alike.
    for (let repeat = 1; repeat <= ctx.repeat; repeat++) {
      const w = await window(ctx.durationMs, async () => {
        const loaded = await st.load(undefined, { into });
        if ((loaded.get('t0')!.array as Float32Array)[1] !== 1) throw new Error('bench: tensor t0 came back wrong');
      }, 1);
      runs.push({ ...run('safetensors', '3fs-client', tensorBytes, count, false, w, count, total), repeat });
      const w2 = await window(ctx.durationMs, async () => {
        await Promise.all(infos.map((t, k) => fh.read(memory, k * tensorBytes, t.byteLength, t.offset)));
        if (memory.readFloatLE(4) !== 1) throw new Error('bench: tensor t0 came back wrong (node:fs)');
      }, 1);
      runs.push({ ...run('safetensors', 'node:fs', tensorBytes, count, false, w2, count, total), repeat });
    }
  } finally {
    await fh.close();
  }
  ctx.log(`  safetensors ${count} x ${formatSize(tensorBytes)}: ${runs.map((r) => `${r.reader} ${r.gbps} GB/s`).join(', ')}`);
  return runs;
}

/** A safetensors file of `count` F32 tensors t0, t1, ... whose element k is k. */
async function writeSafetensors(path: string, count: number, tensorBytes: number): Promise<void> {
  const header: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) header[`t${i}`] = { dtype: 'F32', shape: [tensorBytes / 4], data_offsets: [i * tensorBytes, (i + 1) * tensorBytes] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const fh = await open(path, 'w');
  try {
    const head = Buffer.alloc(8 + json.length);
    head.writeBigUInt64LE(BigInt(json.length));
    head.write(json, 8);
    await fh.write(head, 0, head.length, 0);
    const data = new Float32Array(tensorBytes / 4).map((_, k) => k);
    for (let i = 0; i < count; i++) await fh.write(new Uint8Array(data.buffer), 0, tensorBytes, head.length + i * tensorBytes);
  } finally {
    await fh.close();
  }
}

/** The safetensors target: a warm load at least node:fs's speed (issue 18, item 4), median of the per-run ratios. */
export const SAFETENSORS_TARGET = atLeast(1.0, 'x node:fs');

export function judgeDatasets(runs: readonly DatasetRun[], why = 'no run'): Judged[] {
  const st = runs.filter((r) => r.what === 'safetensors' && !r.direct);
  const ratios: number[] = [];
  for (const o of st.filter((r) => r.reader === '3fs-client')) {
    const peer = st.find((r) => r.reader === 'node:fs' && r.repeat === o.repeat);
    if (peer && peer.gbps > 0) ratios.push(o.gbps / peer.gbps);
  }
  return [judge({ section: 'datasets', row: 'safetensors load, warm', measure: 'GB/s vs node:fs' }, SAFETENSORS_TARGET, ratios.length ? median(ratios) : undefined, ratios.length, why)];
}

/** One row per reader and setting: the run, or the median run by GB/s of those repeated. */
function medianRows(runs: readonly DatasetRun[]): { r: DatasetRun; n: number }[] {
  const groups = new Map<string, DatasetRun[]>();
  for (const r of runs) {
    const key = `${r.what}/${r.reader}/${r.sampleBytes}/${r.verify}/${r.direct}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => ({ r: median(g, (x) => x.gbps), n: g.length }));
}

export function formatDatasetTable(doc: DatasetBenchDocument): string {
  const s = doc.settings;
  const lines = [`Datasets: random batches of ffrecord samples and a safetensors load, ${s.cacheState} (and ours once with O_DIRECT), ${s.inFlight} batches in flight${s.quick ? ' (--quick)' : ''}`, ''];
  const header = ['format', 'sample', 'batch', 'reader', 'CRC-32', 'samples/s', 'GB/s', 'vs node:fs', 'p50 ms', 'p99 ms', 'CPU s/GB', 'target', 'verdict', 'how'];
  const shown = medianRows(doc.runs);
  const rows: string[][] = [];
  for (const { r, n } of shown) {
    const peer = shown.find(({ r: p }) => p.what === r.what && p.sampleBytes === r.sampleBytes && p.verify === r.verify && p.reader === 'node:fs')?.r;
    const ratio = r.reader === '3fs-client' && !r.direct && peer && peer.gbps > 0 ? `${(r.gbps / peer.gbps).toFixed(2)}x` : '';
    const judged = r.what === 'safetensors' && r.reader === '3fs-client' && !r.direct ? (doc.targets ?? []) : [];
    const { target, verdict } = rowTargetCells(judged);
    const how = (r.direct ? 'O_DIRECT from storage (cold)' : 'buffered, warm cache') + (n > 1 ? `; median of ${n}` : '');
    rows.push([r.what, formatSize(r.sampleBytes), String(r.batch), r.reader, r.what === 'safetensors' ? '-' : r.verify ? 'yes' : 'no', String(r.samplesPerSec), r.gbps.toFixed(3), ratio, r.p50ms.toFixed(2), r.p99ms.toFixed(2), r.cpuSecPerGB.toFixed(3), target, verdict, how]);
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i >= 5 && i <= 10 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  lines.push(fmt(header), ...rows.map(fmt), '');
  return lines.join('\n');
}
