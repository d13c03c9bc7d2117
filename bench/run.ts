// Orchestration: make the bench files in a fresh temporary directory, run every workload with
// each tool back to back (never two at once), report, and delete the files whatever happens.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, statfsSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { FIO_MISSING, fioVersion, runFio } from './fio';
import { runNodeFs } from './node-fs';
import type { DatasetBenchDocument } from './datasets';
import type { KvBenchDocument } from './kvcache';
import { formatTable, machineInfo, writeJson, type BenchDocument } from './report';
import { benchBase, children, formatSize, GiB, KiB, MiB, STAMP_BLOCK, toResult, verify, workloadLabel, type Measured, type RunResult, type Tool, type Workload } from './shared';
import { runOurs, writeBenchFile } from './workloads';
import { deviceCeiling, memoryCeiling, type Ceiling } from './ceilings';
import { writeHtml } from './html';
import { formatMicro, microUnavailable, runMicro } from './micro';
import { makeProgress } from './progress';
import { findHf3fsMount, type ClientOptions } from '../lib/index';

export interface BenchOptions {
  /** Where to make the temporary bench directory (default: os.tmpdir()). Must exist. */
  dir?: string;
  /** Data file size in bytes (default 256 MiB; 128 MiB with quick). */
  size?: number;
  /** Measured time per tool per workload, in ms (default 1000). */
  durationMs?: number;
  /** Warm-up before each measured window, in ms (default 200). */
  rampMs?: number;
  /** Write the results as JSON here (bench/JSON.md describes the document). */
  json?: string;
  /** Write a page with charts here. */
  html?: string;
  /** Our engine: 'local' (default: io_uring, or the threads fallback) or 'hf3fs' (USRBIO; dir must be on a 3FS mount). */
  engine?: 'local' | 'hf3fs';
  /** hf3fs: the USRBIO library (default $HF3FS_LIB, then the linker's search). */
  library?: string;
  /** A short smoke run: small files, 1 s runs, fewer workloads. */
  quick?: boolean;
  /** Run each workload's tools this many times (the table shows the median run). Default 1. */
  repeat?: number;
  /** Only these workloads (by name: seq-read, rand-read, cached-read, seq-write). */
  workloads?: string[];
  /** Only these tools (3fs-client, fio, node:fs). */
  tools?: Tool[];
  /** The KVCache section after the main table (bench/kvcache.ts). Default true. */
  kvcache?: boolean;
  /** The datasets section at the end (bench/datasets.ts). Default true. */
  datasets?: boolean;
  /** The micro-benchmarks of per-call overheads (bench/micro.ts). Default true. */
  micro?: boolean;
  /** Progress bars redrawn in place (a terminal) rather than a line per run. Default: whether stderr is a TTY. */
  terminal?: boolean;
  /** Progress (stderr). */
  err?: (text: string) => void;
  /** The table (stdout). */
  out?: (text: string) => void;
}

export const WORKLOAD_NAMES = ['seq-read', 'rand-read', 'cached-read', 'seq-write'];
export const TOOL_NAMES: Tool[] = ['3fs-client', 'fio', 'node:fs'];
const SEED = 0x3f5;

/** This issue's matrix. */
export function workloads(quick: boolean): Workload[] {
  const rand = (blockSize: number, queueDepth: number, batch: number, inQuick: boolean) => ({
    w: { name: 'rand-read', write: false, pattern: 'rand', blockSize, queueDepth, direct: true, file: 'data', batch } as Workload,
    inQuick,
  });
  const list: { w: Workload; inQuick: boolean }[] = [
    // 3FS's `fio -numjobs=128 -iodepth=2 -ioengine=libaio -direct=1 -rw=read -bs=4M`, scaled to one
    // process (the line itself, scaled to the cores, measures the device ceiling: bench/ceilings.ts).
    { w: { name: 'seq-read', write: false, pattern: 'seq', blockSize: 4 * MiB, queueDepth: 8, direct: true, file: 'data', batch: 1 }, inQuick: true },
    // Random reads at three block sizes and shallow to deep queues: the charts' grid.
    rand(4 * KiB, 8, 1, false),
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

interface Planned {
  w: Workload;
  tool: Tool;
  uvThreads?: number;
  repeat: number;
}

export async function runBench(options: BenchOptions = {}): Promise<BenchDocument & { kvcache?: KvBenchDocument; datasets?: DatasetBenchDocument }> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const progress = makeProgress(err, options.terminal ?? process.stderr.isTTY === true);
  const log = (line: string) => progress.log(line);
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const began = performance.now();
  const quick = options.quick ?? false;
  const durationMs = options.durationMs ?? 1000;
  const rampMs = options.rampMs ?? 200;
  if (!(durationMs >= 100)) throw new Error('--duration must be at least 100ms');
  if (!(rampMs >= 0)) throw new Error('--ramp must be >= 0');
  const askedSize = options.size ?? (quick ? 128 * MiB : 256 * MiB);
  const size = Math.floor(askedSize / (4 * MiB)) * 4 * MiB;
  if (size < 32 * MiB) throw new Error(`--size must be at least 32MiB (got ${formatSize(askedSize)})`);
  if (size !== askedSize) log(`note: --size rounded down to ${formatSize(size)} (a multiple of 4MiB)`);
  const cachedSize = Math.min(64 * MiB, size);

  const names = options.workloads ?? WORKLOAD_NAMES;
  for (const n of names) if (!WORKLOAD_NAMES.includes(n)) throw new Error(`unknown workload '${n}' (known: ${WORKLOAD_NAMES.join(', ')})`);
  const tools = options.tools ?? TOOL_NAMES;
  for (const t of tools) if (!TOOL_NAMES.includes(t)) throw new Error(`unknown tool '${t}' (known: ${TOOL_NAMES.join(', ')})`);
  const selected = workloads(quick).filter((w) => names.includes(w.name));

  // Other work on the machine skews every number; say so rather than report it silently.
  const busyCpus = await otherCpuUse(300);
  if (busyCpus > 0.25) log(`warning: other processes are using ${busyCpus.toFixed(1)} of ${cpus().length} CPUs: expect noisy numbers`);

  const fio = fioVersion();
  const fioMissing = tools.includes('fio') && fio === null;
  if (fioMissing) log(FIO_MISSING);

  const repeats = options.repeat ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) throw new Error('--repeat must be a whole number from 1 to 100');
  const plan: Planned[] = [];
  for (const w of selected) {
    for (let repeat = 1; repeat <= repeats; repeat++) {
      if (tools.includes('3fs-client')) plan.push({ w, tool: '3fs-client', repeat });
      if (fio && tools.includes('fio')) plan.push({ w, tool: 'fio', repeat });
      if (tools.includes('node:fs')) {
        plan.push({ w, tool: 'node:fs', uvThreads: Math.max(4, w.queueDepth), repeat });
        // The same reads with libuv's default pool of 4 threads: what an unconfigured app gets.
        if (!quick && w.name === 'rand-read' && w.queueDepth === 64) plan.push({ w, tool: 'node:fs', uvThreads: 4, repeat });
      }
    }
  }
  if (plan.length === 0) throw new Error('nothing to run: no workload and tool selected');

  // The bench directory: a fresh one under --dir (which must exist) or the system's temp dir.
  const base = benchBase(options.dir);
  const engine = options.engine ?? 'local';
  const clientOptions = engineOptions(engine, base, options.library);
  const needsWrite = selected.some((w) => w.file === 'write');
  const needsData = selected.some((w) => w.file === 'data');
  const needsCached = selected.some((w) => w.file === 'cached');
  const need = (needsData ? size : 0) + (needsWrite ? size : 0) + (needsCached ? cachedSize : 0);
  const fsInfo = statfsSync(base);
  const free = fsInfo.bavail * fsInfo.bsize;
  if (free < need + 256 * MiB) {
    throw new Error(`${base} has ${formatSize(free)} free; the bench needs ${formatSize(need)} plus room to spare (try a smaller --size)`);
  }

  const dir = mkdtempSync(join(base, options.dir !== undefined ? '.bench-' : '3fs-client-bench-'));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals) => {
    for (const c of children) c.kill('SIGTERM');
    removeDir();
    process.stderr.write(`\n3fs-client: interrupted (${signal}); removed ${dir}\n`);
    process.exit(signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 129);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);

  try {
    const paths = { data: join(dir, 'data.bin'), write: join(dir, 'write.bin'), cached: join(dir, 'cached.bin') };
    const sizes = { data: size, write: size, cached: cachedSize };
    const fsType = fileSystemType(dir);
    log(`bench directory ${dir} (${fsType})`);

    // Files first, written once with our engine: random data, every 4 KiB block stamped, not sparse.
    const setup: [keyof typeof paths, boolean][] = [];
    if (needsData) setup.push(['data', false]);
    if (needsWrite) setup.push(['write', false]);
    if (needsCached) setup.push(['cached', true]);
    for (const [which, buffered] of setup) {
      const t = performance.now();
      await writeBenchFile(paths[which], sizes[which], buffered);
      await checkBenchFile(paths[which], sizes[which]);
      if (!buffered) dropCache(paths[which]);
      log(`wrote ${which} file: ${formatSize(sizes[which])} in ${((performance.now() - t) / 1000).toFixed(1)} s${buffered ? ' (buffered, left in the page cache)' : ' (O_DIRECT)'}`);
    }

    const canDrop = dropCache(paths[needsData ? 'data' : needsWrite ? 'write' : 'cached']);
    const ceilings: Ceiling[] = [memoryCeiling()];
    if (fio) {
      for (const [which, write] of [['data', false], ['write', true]] as const) {
        if (!(which === 'data' ? needsData : needsWrite)) continue;
        try {
          ceilings.push(await deviceCeiling(paths[which], sizes[which], write, { rampMs, durationMs, seed: SEED }));
        } catch (e) {
          log(`warning: fio's device ${write ? 'write' : 'read'} run failed: ${(e as Error).message}`);
        }
      }
    }
    log(`ceilings: ${ceilings.map((c) => `${c.what} ${c.gbps.toFixed(2)} GB/s`).join(', ')}`);
    const runs: RunResult[] = [];
    const runOpts = { rampMs, durationMs, seed: SEED };
    for (const [i, p] of plan.entries()) {
      const { w, tool } = p;
      const path = paths[w.file];
      const fileSize = sizes[w.file];
      const head = `${workloadLabel(w)}${repeats > 1 ? ` (run ${p.repeat}/${repeats})` : ''}: ${tool}${p.uvThreads !== undefined ? ` (UV_THREADPOOL_SIZE=${p.uvThreads})` : ''}`;
      progress.start(i, plan.length, head, rampMs + durationMs);
      // The same cache state for every tool: warm for cached reads, dropped before buffered runs.
      if (w.file === 'cached') await warm(path);
      let result: RunResult;
      try {
        if (tool === '3fs-client') {
          const m = await runOurs(w, path, fileSize, runOpts, clientOptions);
          result = toResult(w, tool, m, m.mode, w.direct);
        } else if (tool === 'fio') {
          const m = await runFio(w, path, fileSize, runOpts);
          result = toResult(w, tool, m, m.mode, w.direct);
        } else {
          const cold = w.file !== 'cached';
          if (cold) dropCache(path);
          const onePass = cold && w.pattern === 'seq';
          const capped = cold && w.pattern === 'rand' && !w.write;
          const m: Measured = await runNodeFs({
            workload: w,
            path,
            fileSize,
            // Both end early and must not spend their bytes in a ramp.
            rampMs: onePass || capped ? 0 : rampMs,
            durationMs,
            seed: SEED,
            onePass,
            maxBytes: capped ? fileSize / 4 : undefined,
            fsync: w.write,
            uvThreads: p.uvThreads ?? w.queueDepth,
          });
          if (cold) dropCache(path);
          const mode = [
            'buffered',
            cold ? (canDrop ? (onePass ? 'cold cache' : 'cold cache at start') : 'cache state unknown') : 'warm cache',
            `FileHandle.${w.write ? 'write' : 'read'} x ${w.queueDepth}`,
            onePass ? 'at most 1 pass' : '',
            capped ? 'at most 1/4 of the file' : '',
            w.write ? 'fdatasync in window' : '',
            `UV_THREADPOOL_SIZE=${p.uvThreads}`,
          ]
            .filter(Boolean)
            .join(', ');
          result = toResult(w, tool, m, mode, false, p.uvThreads ?? null);
        }
      } catch (e) {
        progress.done(' failed');
        if (tool === '3fs-client') throw e;
        log(`warning: the ${tool} run failed and is left out: ${(e as Error).message}`);
        continue;
      }
      result.repeat = p.repeat;
      runs.push(result);
      let tail = ` ${result.gbps.toFixed(3)} GB/s, ${result.iops} IOPS, p99 ${Math.round(result.p99us)} us`;
      if (tool !== '3fs-client') {
        const ours = runs.findLast((r) => r.tool === '3fs-client' && r.workload === w.name && r.queueDepth === w.queueDepth && r.blockSize === w.blockSize);
        if (ours) {
          if (result.gibps > 0) tail += ` (3fs-client is ${(ours.gibps / result.gibps).toFixed(2)}x)`;
        }
      }
      progress.done(tail);
    }

    const doc: BenchDocument & { kvcache?: KvBenchDocument; datasets?: DatasetBenchDocument } = {
      version: 1,
      machine: machineInfo(fio),
      settings: { dir: base, fsType, size, cachedSize, durationMs, rampMs, quick, repeat: repeats, busyCpusAtStart: Math.round(busyCpus * 100) / 100, engine },
      runs,
      ceilings,
    };
    out(formatTable(doc, fioMissing));
    if (options.micro !== false) {
      const why = await microUnavailable();
      if (why) log(`note: ${why}; skipped`);
      else {
        log('micro-benchmarks (tinybench) ...');
        doc.micro = await runMicro({ dir });
        out('\n' + formatMicro(doc.micro));
      }
    }
    if (options.kvcache !== false) {
      // The main files go first: the section makes its own in a directory under this one.
      for (const p of Object.values(paths)) rmSync(p, { force: true });
      const { runKvBench } = await import('./kvcache');
      out('\n');
      // A shorter run than `bench --kvcache`: 256 MiB of pages per size, 20,000 keys for the lookups.
      // 64 KiB and 1 MiB pages only: `bench --kvcache` has the 16 MiB ones; the default run stays under two minutes.
      doc.kvcache = await runKvBench({ dir, quick, repeat: repeats, section: true, size: 256 * MiB, pageSizes: [64 * KiB, 1 * MiB], lookupKeys: 20_000, err, out });
    }
    if (options.datasets !== false) {
      for (const p of Object.values(paths)) rmSync(p, { force: true });
      const { runDatasetBench } = await import('./datasets');
      out('\n');
      // Its short form (64 MiB of samples per size, 0.6 s per reader) keeps the default run under two minutes.
      doc.datasets = await runDatasetBench({ dir, quick, size: 64 * MiB, durationMs: 600, err, out });
    }
    if (options.json) {
      await writeJson(options.json, doc);
      log(`wrote ${options.json}`);
    }
    if (options.html) {
      await writeHtml(options.html, doc);
      log(`wrote ${options.html}`);
    }
    log(`done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    return doc;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    for (const c of children) c.kill('SIGTERM');
    removeDir();
  }
}

/** The client options of our side: the embedded engine, or USRBIO on the 3FS mount holding `dir`. */
function engineOptions(engine: 'local' | 'hf3fs', dir: string, library: string | undefined): ClientOptions {
  if (engine === 'local') return {};
  if (engine !== 'hf3fs') throw new Error(`--engine must be local or hf3fs, got '${engine}'`);
  const mount = findHf3fsMount(dir);
  if (!mount) throw new Error(`--engine hf3fs needs --dir on a 3FS mount; ${dir} is not on one (nor on a stand-in mount listed in HF3FS_STANDIN_MOUNTS)`);
  return { mount: mount.mountPoint, ...(library ? { library } : {}) };
}

/** Size, allocation (not sparse) and a few stamps of a freshly written bench file, read through node:fs. */
export async function checkBenchFile(path: string, size: number): Promise<void> {
  const st = await stat(path);
  if (st.size !== size) throw new Error(`${path}: expected ${size} bytes, found ${st.size}`);
  if (st.blocks * 512 < size) throw new Error(`${path}: the file is sparse (${st.blocks * 512} of ${size} bytes allocated)`);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(STAMP_BLOCK);
    const blocks = size / STAMP_BLOCK;
    for (const b of [0, 1, Math.floor(blocks / 3), Math.floor(blocks / 2), blocks - 1]) {
      await fh.read(buf, 0, STAMP_BLOCK, b * STAMP_BLOCK);
      verify(buf, b * STAMP_BLOCK, STAMP_BLOCK, `bench file ${path}`);
    }
  } finally {
    await fh.close();
  }
}

/** Drops the file's pages from the page cache (posix_fadvise DONTNEED, through dd). False when that failed. */
export function dropCache(path: string): boolean {
  const r = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** Reads the whole file through the page cache so the cached runs start warm. */
export async function warm(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** CPUs' worth of time the machine spent busy over `ms` while this process waited (so: others' use). */
export async function otherCpuUse(ms: number): Promise<number> {
  const sample = () => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      const idle = f[3] + (f[4] ?? 0);
      return { busy: f.reduce((a, b) => a + b, 0) - idle, total: f.reduce((a, b) => a + b, 0) };
    } catch {
      return undefined;
    }
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  if (!a || !b || b.total === a.total) return 0;
  return ((b.busy - a.busy) / (b.total - a.total)) * cpus().length;
}

/** The type of the file system holding `path`, from /proc/mounts (longest matching mount point). */
export function fileSystemType(path: string): string {
  try {
    const real = realpathSync(path);
    let best = '';
    let type = 'unknown';
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mount, fsType] = line.split(' ');
      if (!mount) continue;
      const m = mount.replace(/\\040/g, ' ');
      if ((real === m || real.startsWith(m.endsWith('/') ? m : m + '/')) && m.length >= best.length) {
        best = m;
        type = fsType;
      }
    }
    return type;
  } catch {
    return 'unknown';
  }
}
