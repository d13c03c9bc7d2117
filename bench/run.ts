// The default bench: make the bench files in a fresh temporary directory, run every workload with
// each tool back to back (never two at once), report, run the sections (micro, KVCache, datasets)
// and delete the files whatever happens. Each phase below is one step.
import { rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { makeBenchDir } from './support/bench-dir';
import { findHf3fsMount, type ClientOptions } from '../lib/index';
import { writeHtml } from './output/html';
import { makeProgress, type Progress } from './output/progress';
import { formatTable, notRunLines, writeJson, type BenchDocument, type BenchSettings, type NotRun } from './output/report';
import { judgeDatasets, runDatasetBench, type DatasetBenchDocument } from './sections/datasets';
import { runKvBench, type KvBenchDocument } from './sections/kvcache/kvcache';
import { planRuns, runPlanned, TOOL_NAMES, WORKLOAD_NAMES, workloads, type Planned } from './sections/matrix';
import { formatMicro, microUnavailable, runMicro } from './sections/micro';
import { formatStreamsTable, judgeStreams, runStreamsBench, type StreamsDocument } from './sections/streams';
import { judgeMain, judgeMicro, type Absent } from './sections/targets';
import { formatTargets } from './output/targets';
import type { Judged } from './support/targets';
import { checkBenchFile, writeBenchFile } from './support/bench-files';
import { removeOnInterrupt, stopChildren } from './support/children';
import { blockDeviceOf } from './support/device';
import { benchBase, checkFreeSpace, fileSystemType, machineInfo, otherCpuUse } from './support/machine';
import { dropPageCache, warm } from './support/page-cache';
import { workloadLabel, type Ceiling, type RunResult, type Tool, type Workload } from './support/records';
import { formatSize, GiB, KiB, MiB } from './support/units';
import { FIO_MISSING, fioVersion } from './tools/fio';
import { deviceCeiling, memoryCeiling } from './tools/ceilings';

export interface BenchOptions {
  /** Where to make the temporary bench directory (default: os.tmpdir()). Must exist. */
  dir?: string;
  /** Data file size in bytes (default 2 GiB; 128 MiB with quick). */
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
  /** Run each workload's tools this many times (the table shows the median run). Default 3; 1 with quick. */
  repeat?: number;
  /** Only these workloads (by name: seq-read, rand-read, cached-read, seq-write). */
  workloads?: string[];
  /** Only these tools (3fs-client, fio, node:fs). */
  tools?: Tool[];
  /** The KVCache section after the main table (sections/kvcache/). Default true. */
  kvcache?: boolean;
  /** The streams section: createReadStream and readFile, ours and node:fs's (sections/streams.ts). Default true. */
  streams?: boolean;
  /** The datasets section at the end (sections/datasets.ts). Default true. */
  datasets?: boolean;
  /** The micro-benchmarks of per-call overheads (sections/micro.ts). Default true. */
  micro?: boolean;
  /** Progress bars redrawn in place (a terminal) rather than a line per run. Default: whether stderr is a TTY. */
  terminal?: boolean;
  /** Progress (stderr). */
  err?: (text: string) => void;
  /** The table (stdout). */
  out?: (text: string) => void;
}

const SEED = 0x3f5;
/** The data file: large enough that a cache below a VM's disk (on the host) holds less of it; --size sets another. */
const DEFAULT_SIZE = 2 * GiB;

export type FullBenchDocument = BenchDocument & { streams?: StreamsDocument; kvcache?: KvBenchDocument; datasets?: DatasetBenchDocument };

type Log = (line: string) => void;
type FileKind = Workload['file'];

/** The options with their defaults, checked, and what follows from them. */
interface Settings {
  quick: boolean;
  durationMs: number;
  rampMs: number;
  size: number;
  cachedSize: number;
  repeats: number;
  selected: Workload[];
  tools: Tool[];
  engine: 'local' | 'hf3fs';
}

/** The bench files: where each kind is and how big. */
interface Files {
  paths: Record<FileKind, string>;
  sizes: Record<FileKind, number>;
  needed: Set<FileKind>;
}

export async function runBench(options: BenchOptions = {}): Promise<FullBenchDocument> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const progress = makeProgress(err, options.terminal ?? process.stderr.isTTY === true);
  const log = (line: string) => progress.log(line);
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const began = performance.now();
  const s = settingsOf(options, log);
  // Other work on the machine skews every number; say so rather than report it silently.
  const busyCpus = await otherCpuUse(300);
  if (busyCpus > 0.25) log(`warning: other processes are using ${busyCpus.toFixed(1)} of ${cpus().length} CPUs: expect noisy numbers`);
  const fio = fioVersion();
  const fioMissing = s.tools.includes('fio') && fio === null;
  if (fioMissing) log(FIO_MISSING);
  const plan = planRuns(s.selected, s.tools, s.repeats, fio !== null, s.quick, SEED);
  if (plan.length === 0) throw new Error('nothing to run: no workload and tool selected');

  // The bench directory: a fresh one under --dir (which must exist) or the system's temp dir.
  const base = benchBase(options.dir);
  const clientOptions = engineOptions(s.engine, base, options.library);
  const files = filesOf(s);
  checkFreeSpace(base, [...files.needed].reduce((a, k) => a + files.sizes[k], 0), 'the bench');
  const dir = makeBenchDir(base, options.dir !== undefined ? '.bench-' : '3fs-client-bench-', log);
  const release = removeOnInterrupt(dir);
  try {
    const fsType = fileSystemType(dir);
    log(`bench directory ${dir} (${fsType})`);
    for (const k of Object.keys(files.paths) as FileKind[]) files.paths[k] = join(dir, `${k}.bin`);
    await makeFiles(files, log);
    const canDrop = dropPageCache(files.paths[files.needed.has('data') ? 'data' : files.needed.has('write') ? 'write' : 'cached']);
    const ceilings = await measureCeilings(files, s, fio !== null, log);
    const { runs, notRun } = await runPlan(plan, files, s, { clientOptions, canDrop, progress });
    const settings = recordedSettings(s, { base, dir, fsType, busyCpus });
    const doc: FullBenchDocument = { version: 1, machine: machineInfo(fio), settings, runs, ceilings, ...(notRun.length > 0 ? { notRun } : {}) };
    doc.targets = judgeMain(runs, absentOf(plan, notRun, s, fio !== null));
    out(formatTable(doc, fioMissing));
    for (const line of notRunLines(notRun)) out(line);
    await runSections(doc, options, dir, files, s, { err, out, log });
    out('\n' + formatTargets(allTargets(doc)));
    doc.targets = allTargets(doc);
    await writeOutputs(doc, options, log);
    log(`done in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    return doc;
  } finally {
    release();
    stopChildren();
    rmSync(dir, { recursive: true, force: true });
  }
}

function settingsOf(options: BenchOptions, log: Log): Settings {
  const quick = options.quick ?? false;
  const durationMs = options.durationMs ?? 1000;
  const rampMs = options.rampMs ?? 200;
  if (!(durationMs >= 100)) throw new Error('--duration must be at least 100ms');
  if (!(rampMs >= 0)) throw new Error('--ramp must be >= 0');
  const askedSize = options.size ?? (quick ? 128 * MiB : DEFAULT_SIZE);
  const size = Math.floor(askedSize / (4 * MiB)) * 4 * MiB;
  if (size < 32 * MiB) throw new Error(`--size must be at least 32MiB (got ${formatSize(askedSize)})`);
  if (size !== askedSize) log(`note: --size rounded down to ${formatSize(size)} (a multiple of 4MiB)`);
  const names = options.workloads ?? WORKLOAD_NAMES;
  for (const n of names) if (!WORKLOAD_NAMES.includes(n)) throw new Error(`unknown workload '${n}' (known: ${WORKLOAD_NAMES.join(', ')})`);
  const tools = options.tools ?? TOOL_NAMES;
  for (const t of tools) if (!TOOL_NAMES.includes(t)) throw new Error(`unknown tool '${t}' (known: ${TOOL_NAMES.join(', ')})`);
  // The targets are medians of 3 runs (issue 18); --quick is a smoke run of one.
  const repeats = options.repeat ?? (quick ? 1 : 3);
  if (!Number.isInteger(repeats) || repeats < 1 || repeats > 100) throw new Error('--repeat must be a whole number from 1 to 100');
  const selected = workloads(quick).filter((w) => names.includes(w.name));
  return { quick, durationMs, rampMs, size, cachedSize: Math.min(64 * MiB, size), repeats, selected, tools, engine: options.engine ?? 'local' };
}

/** The settings as the JSON records them and the setup lines say them. */
function recordedSettings(s: Settings, where: { base: string; dir: string; fsType: string; busyCpus: number }): BenchSettings {
  const { quick, size, cachedSize, durationMs, rampMs, repeats: repeat, engine } = s;
  const device = blockDeviceOf(where.dir) ?? null;
  return { dir: where.base, fsType: where.fsType, size, cachedSize, durationMs, rampMs, quick, repeat, busyCpusAtStart: Math.round(where.busyCpus * 100) / 100, engine, device };
}

/** The client options of our side: the embedded engine, or USRBIO on the 3FS mount holding `dir`. */
function engineOptions(engine: 'local' | 'hf3fs', dir: string, library: string | undefined): ClientOptions {
  if (engine === 'local') return {};
  if (engine !== 'hf3fs') throw new Error(`--engine must be local or hf3fs, got '${engine}'`);
  const mount = findHf3fsMount(dir);
  if (!mount) throw new Error(`--engine hf3fs needs --dir on a 3FS mount; ${dir} is not on one (nor on a stand-in mount listed in HF3FS_STANDIN_MOUNTS)`);
  return { mount: mount.mountPoint, ...(library ? { library } : {}) };
}

/** The files the selected workloads need (paths set once the directory exists). */
function filesOf(s: Settings): Files {
  const needed = new Set(s.selected.map((w) => w.file));
  return { paths: { data: '', write: '', cached: '' }, sizes: { data: s.size, write: s.size, cached: s.cachedSize }, needed };
}

/** Files first, written once with our engine: random data, every 4 KiB block stamped, not sparse. */
async function makeFiles(files: Files, log: Log): Promise<void> {
  for (const which of ['data', 'write', 'cached'] as const) {
    if (!files.needed.has(which)) continue;
    const buffered = which === 'cached';
    const t = performance.now();
    await writeBenchFile(files.paths[which], files.sizes[which], buffered);
    await checkBenchFile(files.paths[which], files.sizes[which]);
    if (!buffered) dropPageCache(files.paths[which]);
    log(`wrote ${which} file: ${formatSize(files.sizes[which])} in ${((performance.now() - t) / 1000).toFixed(1)} s${buffered ? ' (buffered, left in the page cache)' : ' (O_DIRECT)'}`);
  }
}

/** The machine's limits in the same run: memory copy, and fio's device line where fio is here. */
async function measureCeilings(files: Files, s: Settings, fio: boolean, log: Log): Promise<Ceiling[]> {
  const ceilings: Ceiling[] = [memoryCeiling()];
  for (const [which, write] of [['data', false], ['write', true]] as const) {
    if (!fio || !files.needed.has(which)) continue;
    try {
      ceilings.push(await deviceCeiling(files.paths[which], files.sizes[which], write, { rampMs: s.rampMs, durationMs: s.durationMs, seed: SEED }));
    } catch (e) {
      log(`warning: fio's device ${write ? 'write' : 'read'} run failed: ${(e as Error).message}`);
    }
  }
  log(`ceilings: ${ceilings.map((c) => `${c.what} ${c.gbps.toFixed(2)} GB/s`).join(', ')}`);
  return ceilings;
}

/** Every planned run in turn, with a line (or bar) each; a failed fio or node:fs run is left out, and listed in notRun. */
async function runPlan(plan: Planned[], files: Files, s: Settings, c: { clientOptions: ClientOptions; canDrop: boolean; progress: Progress }): Promise<{ runs: RunResult[]; notRun: NotRun[] }> {
  const runs: RunResult[] = [];
  const notRun: NotRun[] = [];
  const opts = { rampMs: s.rampMs, durationMs: s.durationMs, seed: SEED };
  for (const [i, p] of plan.entries()) {
    const { w, tool } = p;
    const path = files.paths[w.file];
    const head = `${workloadLabel(w)}${s.repeats > 1 ? ` (run ${p.repeat}/${s.repeats})` : ''}: ${tool}${p.uvThreads !== undefined ? ` (UV_THREADPOOL_SIZE=${p.uvThreads})` : ''}`;
    c.progress.start(i, plan.length, head, s.rampMs + s.durationMs);
    // The same cache state for every tool: warm for cached reads, dropped before buffered runs.
    if (w.file === 'cached') await warm(path);
    let result: RunResult;
    try {
      result = await runPlanned(p, { path, fileSize: files.sizes[w.file], opts, clientOptions: c.clientOptions, canDrop: c.canDrop });
    } catch (e) {
      c.progress.done(' failed');
      if (tool === '3fs-client') throw e;
      c.progress.log(`warning: the ${tool} run failed and is left out: ${(e as Error).message}`);
      notRun.push({ tool, workload: workloadLabel(w), reason: (e as Error).message });
      continue;
    }
    runs.push(result);
    c.progress.done(resultTail(runs, result));
  }
  return { runs, notRun };
}

/** What the progress line says of a finished run: its figures, and ours relative to fio's run of the same repetition once both ran. */
function resultTail(runs: RunResult[], r: RunResult): string {
  let tail = ` ${r.gbps.toFixed(3)} GB/s, ${r.iops} IOPS, p99 ${Math.round(r.p99us)} us`;
  const same = (o: RunResult) => o.workload === r.workload && o.queueDepth === r.queueDepth && o.blockSize === r.blockSize && o.repeat === r.repeat;
  const ours = r.tool === '3fs-client' ? r : runs.find((o) => o.tool === '3fs-client' && same(o));
  const peer = r.tool === '3fs-client' ? runs.find((o) => o.tool === 'fio' && same(o)) : r;
  if (ours && peer && peer !== ours && peer.gibps > 0) tail += ` (3fs-client is ${(ours.gibps / peer.gibps).toFixed(2)}x ${peer.tool})`;
  return tail;
}

/** Why a target's row has no figure: what the plan left out, and fio's runs that failed. */
function absentOf(plan: Planned[], notRun: NotRun[], s: Settings, fioInstalled: boolean): Absent {
  const noFio = !s.tools.includes('fio') ? 'fio not selected (--tools)' : !fioInstalled ? 'fio is not installed' : undefined;
  const failed = new Map(notRun.filter((n) => n.tool === 'fio').map((n) => [n.workload, `fio failed: ${n.reason}`]));
  return { planned: new Set(plan.map((p) => workloadLabel(p.w))), noFio, quick: s.quick, failed };
}

/** Every section's targets in one list: the main table's and micro's, then each section's own. */
function allTargets(doc: FullBenchDocument): Judged[] {
  const own = (doc.targets ?? []).filter((j) => j.section === 'main' || j.section === 'micro');
  const streams = doc.streams?.targets ?? judgeStreams([], doc.ceilings, 'skipped (--no-streams)');
  const kvcache = doc.kvcache?.targets ?? [];
  const datasets = doc.datasets?.targets ?? judgeDatasets([], 'skipped (--no-datasets)');
  return [...own, ...streams, ...kvcache, ...datasets];
}

/** The sections after the main table, each in the bench directory once the main files are gone. */
async function runSections(doc: FullBenchDocument, options: BenchOptions, dir: string, files: Files, s: Settings, io: { err: (t: string) => void; out: (t: string) => void; log: Log }): Promise<void> {
  const { err, out, log } = io;
  const removeFiles = () => {
    for (const p of Object.values(files.paths)) if (p) rmSync(p, { force: true });
  };
  await microSection(doc, options.micro !== false, dir, out, log);
  if (options.streams !== false) {
    removeFiles();
    out('\n');
    log('streams and whole files ...');
    // At most 1 GiB: node:fs's readFile stops at 2 GiB.
    doc.streams = await runStreamsBench({ dir, size: Math.min(s.size, GiB), repeat: s.repeats, ceilings: doc.ceilings, mainRuns: doc.runs, err });
    out(formatStreamsTable(doc.streams, doc.ceilings));
  }
  if (options.kvcache !== false) {
    removeFiles();
    out('\n');
    // A shorter run than `bench --kvcache`: 256 MiB of pages per size, 20,000 keys for the lookups,
    // 64 KiB and 1 MiB pages only; the default run stays under two minutes.
    // Repeated only when asked (--repeat): three runs of it would triple the default bench's time.
    doc.kvcache = await runKvBench({ dir, quick: s.quick, repeat: options.repeat, section: true, size: 256 * MiB, pageSizes: [64 * KiB, 1 * MiB], lookupKeys: 20_000, err, out });
  }
  if (options.datasets !== false) {
    removeFiles();
    out('\n');
    // Its short form (64 MiB of samples per size, 0.6 s per reader) keeps the default run under two minutes.
    doc.datasets = await runDatasetBench({ dir, quick: s.quick, size: 64 * MiB, durationMs: 600, repeat: s.repeats, err, out });
  }
}

/** The micro-benchmarks (tinybench), judged against their targets, or why they did not run. */
async function microSection(doc: FullBenchDocument, wanted: boolean, dir: string, out: (t: string) => void, log: Log): Promise<void> {
  const why = wanted ? await microUnavailable() : 'skipped (--no-micro)';
  if (why && wanted) log(`note: ${why}; skipped`);
  if (!why) {
    log('micro-benchmarks (tinybench) ...');
    doc.micro = await runMicro({ dir });
  }
  doc.targets = [...(doc.targets ?? []), ...judgeMicro(doc.micro, why ?? 'no run')];
  if (doc.micro) out('\n' + formatMicro(doc.micro, doc.targets));
}

async function writeOutputs(doc: FullBenchDocument, options: BenchOptions, log: Log): Promise<void> {
  if (options.json) {
    await writeJson(options.json, doc);
    log(`wrote ${options.json}`);
  }
  if (options.html) {
    await writeHtml(options.html, doc);
    log(`wrote ${options.html}`);
  }
}
