// The HTTP section: GB/s of a file served over loopback by node:http from file.createReadStream
// (the read-ahead of batches, docs/streams.md) beside the same server on fs.createReadStream.
// Whole-file GETs, `concurrency` at a time, fetched by node:http in this process; the two servers
// alternate, and the table shows the median of `repeat` runs of each.
import { createReadStream } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { open } from '../../lib/index';
import { checkBenchFile, writeBenchFile } from '../support/bench-files';
import { benchBase, checkFreeSpace } from '../support/machine';
import { median } from '../support/stats';
import { formatSize, MiB } from '../support/units';

export interface HttpBenchOptions {
  /** Where to make the temporary bench directory (default: os.tmpdir()). */
  dir?: string;
  /** The served file's size (default 256 MiB; 64 MiB with quick). */
  size?: number;
  /** Requests per run (default 16; 4 with quick) and in flight at once (default 4). */
  requests?: number;
  concurrency?: number;
  /** Runs of each server, alternating (default 3; 1 with quick). */
  repeat?: number;
  quick?: boolean;
  err?: (text: string) => void;
}

export const HTTP_SERVERS = ['3fs-client createReadStream', 'fs.createReadStream'] as const;
export type HttpServerName = (typeof HTTP_SERVERS)[number];

export interface HttpRun {
  server: HttpServerName;
  gbps: number;
  bytes: number;
  seconds: number;
  repeat: number;
}

function serve(server: HttpServerName, path: string, size: number): Server {
  return createServer((_req, res) => {
    res.writeHead(200, { 'Content-Length': size });
    const body = server === 'fs.createReadStream' ? Promise.resolve(createReadStream(path)) : open(path).then((f) => f.createReadStream());
    body.then((stream) => pipeline(stream, res)).catch(() => res.destroy());
  });
}

// GETs the file `requests` times, `concurrency` at a time; resolves with the bytes received.
async function fetchAll(url: string, requests: number, concurrency: number): Promise<number> {
  let next = 0;
  let bytes = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      get(url, (res) => {
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', resolve);
        res.on('error', reject);
      }).on('error', reject);
    });
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < requests) await one();
  }));
  return bytes;
}

async function measure(server: HttpServerName, path: string, size: number, requests: number, concurrency: number): Promise<Omit<HttpRun, 'repeat'>> {
  const http = serve(server, path, size).listen(0, '127.0.0.1');
  await new Promise((resolve) => http.once('listening', resolve));
  try {
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
    const t0 = performance.now();
    const bytes = await fetchAll(url, requests, concurrency);
    const seconds = (performance.now() - t0) / 1000;
    if (bytes !== size * requests) throw new Error(`${server}: received ${bytes} bytes, expected ${size * requests}`);
    return { server, gbps: bytes / seconds / 1e9, bytes, seconds };
  } finally {
    await new Promise((resolve) => http.close(resolve));
  }
}

export async function runHttpBench(options: HttpBenchOptions = {}): Promise<HttpRun[]> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const quick = options.quick ?? false;
  const size = options.size ?? (quick ? 64 * MiB : 256 * MiB);
  const requests = options.requests ?? (quick ? 4 : 16);
  const concurrency = options.concurrency ?? 4;
  const repeat = options.repeat ?? (quick ? 1 : 3);
  const base = benchBase(options.dir);
  checkFreeSpace(base, size, 'the HTTP bench');
  const dir = mkdtempSync(join(base, '3fs-client-bench-http-'));
  try {
    const path = join(dir, 'served.bin');
    await writeBenchFile(path, size, false);
    await checkBenchFile(path, size);
    err(`http bench in ${dir}: ${formatSize(size)} file, ${requests} GETs ${concurrency} at a time over loopback, ${repeat} run${repeat > 1 ? 's' : ''} of each server\n`);
    const runs: HttpRun[] = [];
    for (let r = 1; r <= repeat; r++) {
      for (const server of HTTP_SERVERS) runs.push({ ...(await measure(server, path, size, requests, concurrency)), repeat: r });
    }
    return runs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One row per server: the median GB/s of its runs, and the ratio to node:fs's. */
export function formatHttpTable(runs: readonly HttpRun[]): string {
  const medians = HTTP_SERVERS.map((server) => ({ server, gbps: median(runs.filter((r) => r.server === server).map((r) => r.gbps)) }));
  const fs = medians.find((m) => m.server === 'fs.createReadStream')!.gbps;
  const lines = ['| server | GB/s served | vs fs.createReadStream |', '|---|---:|---:|'];
  for (const m of medians) lines.push(`| ${m.server} | ${m.gbps.toFixed(2)} | ${(m.gbps / fs).toFixed(2)}x |`);
  return lines.join('\n') + '\n';
}
