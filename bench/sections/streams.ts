// The streams section: a whole file read by file.createReadStream() and readFile() (ours: batch
// reads run ahead into registered memory, O_DIRECT) next to node:fs's createReadStream and
// readFile, on the same file in the same run, each from a dropped page cache: what each moves
// from the device. The readers alternate; the table shows each one's median run.
import { createReadStream as fsCreateReadStream, rmSync } from 'node:fs';
import { readFile as fsReadFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultClient, open, readFile } from '../../lib/index';
import { markdownTable } from '../output/markdown';
import { rowTargetCells } from '../output/targets';
import { checkBenchFile, writeBenchFile } from '../support/bench-files';
import { dropPageCache } from '../support/page-cache';
import type { Ceiling, RunResult } from '../support/records';
import { median } from '../support/stats';
import { verify, STAMP_BLOCK } from '../support/stamps';
import { atLeast, judge, type Judged } from '../support/targets';
import { formatSize } from '../support/units';

export const STREAM_READERS = ['3fs-client createReadStream', 'fs.createReadStream', '3fs-client readFile', 'fs.readFile'] as const;
export type StreamReader = (typeof STREAM_READERS)[number];

export interface StreamRun {
  reader: StreamReader;
  bytes: number;
  seconds: number;
  gbps: number;
  /** user+sys CPU of this process over the read, per GB. */
  cpuSecPerGB: number;
  repeat: number;
}

export interface StreamsDocument {
  settings: { size: number; repeat: number; cacheDropped: boolean };
  runs: StreamRun[];
  /** What ours are judged against: the best sequential O_DIRECT read of the same bench run. */
  device?: Ceiling;
  targets: Judged[];
}

export interface StreamsOptions {
  /** The bench directory (exists); the section's file is made in it and removed at the end. */
  dir: string;
  size: number;
  repeat: number;
  /** The device's read ceiling measured in the same run (fio), for the device-speed targets. */
  ceilings?: Ceiling[];
  /** The main table's rows of the same run: its sequential O_DIRECT reads count as the device's speed too. */
  mainRuns?: readonly RunResult[];
  err?: (text: string) => void;
}

/** Issue 22: streams and readFile "at device speed", read here as within 10% of the best sequential O_DIRECT read of the run. */
export const DEVICE_SPEED = atLeast(0.9, 'x device read', 3, 'issue 22');

/** Reads the whole file once with `reader`; resolves with the bytes it gave (a few checked). */
async function readWhole(reader: StreamReader, path: string): Promise<number> {
  if (reader === '3fs-client readFile') {
    const io = await readFile(path);
    try {
      verify(io.bytes.subarray(0, STAMP_BLOCK), 0, STAMP_BLOCK, reader);
      return io.byteLength;
    } finally {
      io.free();
    }
  }
  if (reader === 'fs.readFile') {
    const b = await fsReadFile(path);
    verify(b.subarray(0, STAMP_BLOCK), 0, STAMP_BLOCK, reader);
    return b.length;
  }
  const stream = reader === 'fs.createReadStream' ? fsCreateReadStream(path) : (await open(path)).createReadStream();
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (bytes === 0) verify(chunk.subarray(0, STAMP_BLOCK), 0, STAMP_BLOCK, reader);
    bytes += chunk.length;
  }
  return bytes;
}

async function measure(reader: StreamReader, path: string, size: number, repeat: number): Promise<StreamRun> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const bytes = await readWhole(reader, path);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  if (bytes !== size) throw new Error(`${reader}: read ${bytes} bytes of ${size}`);
  const r4 = (v: number) => Math.round(v * 1e4) / 1e4;
  return { reader, bytes, seconds: r4(seconds), gbps: r4(bytes / seconds / 1e9), cpuSecPerGB: r4((cpu.user + cpu.system) / 1e6 / (bytes / 1e9)), repeat };
}

export async function runStreamsBench(options: StreamsOptions): Promise<StreamsDocument> {
  const err = options.err ?? ((t: string) => process.stderr.write(t));
  const path = join(options.dir, 'stream.bin');
  await writeBenchFile(path, options.size, false);
  await checkBenchFile(path, options.size);
  let cacheDropped = true;
  const runs: StreamRun[] = [];
  defaultClient(); // made now, not inside the first run's time

  try {
    for (let r = 1; r <= options.repeat; r++) {
      for (const reader of STREAM_READERS) {
        // Every reader starts cold: node:fs's reads would otherwise leave the file in the cache.
        cacheDropped = dropPageCache(path) && cacheDropped;
        const run = await measure(reader, path, options.size, r);
        runs.push(run);
        err(`  ${reader} run ${r}: ${run.gbps.toFixed(3)} GB/s\n`);
      }
    }
  } finally {
    rmSync(path, { force: true });
  }
  const settings = { size: options.size, repeat: options.repeat, cacheDropped };
  const device = deviceRead(options.ceilings, options.mainRuns);
  return { settings, runs, ...(device ? { device } : {}), targets: judgeStreams(runs, device ? [device] : undefined) };
}

/**
 * The device's sequential read speed, as the best the run measured: fio's device line (the
 * ceiling) or the median of a tool's seq-read rows (O_DIRECT, 4 MiB, qd8), whichever is faster.
 * The device line alone (8 x 4 MiB over libaio jobs) can stay well below what the seq-read rows
 * move from the same device (docs/benchmark.md), and a target against it alone would be too easy.
 */
export function deviceRead(ceilings: readonly Ceiling[] | undefined, mainRuns: readonly RunResult[] = []): Ceiling | undefined {
  const line = ceilings?.find((c) => c.what === 'device read');
  const seq = mainRuns.filter((r) => r.workload === 'seq-read' && r.direct && r.gbps > 0);
  const candidates: { gbps: number; how: string }[] = line ? [{ gbps: line.gbps, how: line.how }] : [];
  for (const tool of new Set(seq.map((r) => r.tool))) {
    const gbps = median(seq.filter((r) => r.tool === tool).map((r) => r.gbps));
    candidates.push({ gbps, how: `${tool} seq-read (O_DIRECT, median of ${seq.filter((r) => r.tool === tool).length})` });
  }
  if (candidates.length === 0) return undefined;
  const best = candidates.reduce((a, b) => (b.gbps > a.gbps ? b : a));
  const others = candidates.filter((c) => c !== best).map((c) => `${c.how} ${c.gbps.toFixed(2)} GB/s`);
  return { what: 'device read', gbps: best.gbps, how: `${best.how}${others.length > 0 ? `; the best of it and ${others.join(', ')}` : ''}` };
}

/** Ours against the device's read speed, the median of the runs (one device figure per bench run). */
export function judgeStreams(runs: readonly StreamRun[], ceilings: readonly Ceiling[] | undefined, why = 'no run'): Judged[] {
  const device = ceilings?.find((c) => c.what === 'device read');
  return STREAM_READERS.filter((r) => r.startsWith('3fs-client')).map((reader) => {
    const mine = runs.filter((r) => r.reader === reader);
    const value = device && mine.length > 0 ? median(mine.map((r) => r.gbps)) / device.gbps : undefined;
    const note = !device && mine.length > 0 ? 'no device ceiling (fio is not installed)' : why;
    return judge({ section: 'streams', row: reader, measure: 'GB/s vs device read' }, DEVICE_SPEED, value, value === undefined ? 0 : mine.length, note);
  });
}

export function formatStreamsTable(doc: StreamsDocument, ceilings?: readonly Ceiling[]): string {
  const reference = doc.device ?? ceilings?.find((c) => c.what === 'device read');
  const device = reference?.gbps;
  const med = (reader: StreamReader) => median(doc.runs.filter((r) => r.reader === reader), (r) => r.gbps);
  const rows = STREAM_READERS.map((reader) => {
    const r = med(reader);
    const peer = reader.startsWith('3fs-client') ? med(reader.endsWith('readFile') ? 'fs.readFile' : 'fs.createReadStream') : undefined;
    const { target, verdict } = rowTargetCells(doc.targets.filter((j) => j.row === reader));
    const vsNode = peer && peer.gbps > 0 ? `${(r.gbps / peer.gbps).toFixed(2)}x` : '';
    const vsDevice = device ? `${(r.gbps / device).toFixed(2)}x` : '';
    return [reader, r.gbps.toFixed(2), r.cpuSecPerGB.toFixed(3), vsNode, vsDevice, target, verdict];
  });
  const s = doc.settings;
  const head = `Streams and whole files: one ${formatSize(s.size)} file read whole by each reader, ${s.cacheDropped ? 'its page cache dropped before each read' : 'page cache state unknown (could not drop it)'}, ${s.repeat} run${s.repeat > 1 ? 's' : ''} each, alternating (median shown)`;
  const against = reference ? `\n\ndevice read: ${reference.gbps.toFixed(2)} GB/s, ${reference.how}` : '';
  return `${head}${against}\n\n${markdownTable(['reader', 'GB/s', 'CPU s/GB', 'vs node:fs', 'vs device read', 'target', 'verdict'], rows, [1, 2, 3, 4])}`;
}
