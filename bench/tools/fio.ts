// The fio twin of each workload: the same file, block size and depth, time-based, run with
// --output-format=json and read back into the same figures as ours.
import { spawnSync } from 'node:child_process';
import { runChild } from '../support/children';
import type { Measured, Workload } from '../support/records';
import type { RunOptions } from './ours';

/** fio's version ('fio-3.33'), or null when it is not installed. */
export function fioVersion(): string | null {
  const r = spawnSync('fio', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim();
}

export const FIO_MISSING = 'fio is not installed, so the fio column is skipped; install it with `sudo apt-get install fio` (Debian/Ubuntu) or `sudo dnf install fio` (Fedora)';

export interface FioOutcome extends Measured {
  mode: string;
  args: string[];
}

/**
 * fio's I/O engines the benches use: psync (QD synchronous jobs, what a thread pool does), libaio
 * (kernel AIO, async only with O_DIRECT) and io_uring.
 */
export type FioEngine = 'psync' | 'libaio' | 'io_uring';

/** The main bench's twin of a workload: psync jobs for cached reads (their ceiling), io_uring otherwise. */
function twinEngine(w: Workload): FioEngine {
  return w.file === 'cached' ? 'psync' : 'io_uring';
}

/** A time-based run of the bench's window (ramp, then the measured time), all jobs reported as one. */
function windowArgs(opts: RunOptions): string[] {
  return ['--time_based', `--runtime=${Math.round(opts.durationMs)}ms`, `--ramp_time=${Math.round(opts.rampMs)}ms`, '--group_reporting'];
}

/** The fio command line for a workload (without the fio binary itself). */
export function fioArgs(w: Workload, path: string, fileSize: number, opts: RunOptions, engine: FioEngine = twinEngine(w)): string[] {
  const cached = w.file === 'cached';
  // psync runs QD jobs; each gets its own slice of the file. Started together at offset 0, they
  // would read the same bytes in lockstep, from the CPU cache (or the disk's) rather than memory.
  const jobs = engine === 'psync' ? w.queueDepth : 1;
  const slice = Math.floor(fileSize / w.queueDepth / w.blockSize) * w.blockSize;
  const args = [
    `--name=${w.name}`,
    `--filename=${path}`,
    ...(jobs > 1 ? [`--size=${slice}`, `--offset_increment=${slice}`] : [`--size=${fileSize}`]),
    `--bs=${w.blockSize}`,
    `--rw=${w.write ? (w.pattern === 'rand' ? 'randwrite' : 'write') : w.pattern === 'rand' ? 'randread' : 'read'}`,
    `--direct=${w.direct ? 1 : 0}`,
    ...windowArgs(opts),
    '--lat_percentiles=1',
    '--percentile_list=50:99',
    '--output-format=json',
  ];
  if (engine === 'psync') {
    // QD synchronous readers; for cached reads the ceiling, cache left as it is.
    args.push('--ioengine=psync', `--numjobs=${jobs}`, `--invalidate=${cached ? 0 : 1}`);
  } else if (engine === 'libaio') {
    args.push('--ioengine=libaio', `--iodepth=${w.queueDepth}`, '--numjobs=1', `--invalidate=${cached ? 0 : 1}`, ...hugeBuffers(w));
  } else {
    // --fixedbufs: registered buffers, as our engine uses (see THP_ENV for the other half).
    args.push('--ioengine=io_uring', `--iodepth=${w.queueDepth}`, '--fixedbufs', '--numjobs=1', '--invalidate=1', ...hugeBuffers(w));
  }
  if (w.pattern === 'rand') args.push('--norandommap', `--randseed=${opts.seed}`);
  return args;
}

/**
 * glibc advises huge pages only for allocations of 2 MiB and more: aligning fio's buffers to 2 MiB
 * grows its allocation past that, so at 64 KiB qd8 (512 KiB of buffers) too they sit on huge pages,
 * as ours do from 64 KiB (one memory segment per op).
 */
function hugeBuffers(w: Workload): string[] {
  return w.direct ? ['--iomem_align=2m'] : [];
}

export function fioMode(w: Workload, engine: FioEngine = twinEngine(w)): string {
  const how = w.direct ? 'O_DIRECT' : 'buffered';
  if (engine === 'psync') return `psync x ${w.queueDepth} jobs (a slice each), ${how}${w.file === 'cached' ? ', warm cache' : ''}`;
  if (engine === 'libaio') return `libaio, ${how}, iodepth ${w.queueDepth}, THP bufs`;
  return `io_uring, ${how}, iodepth ${w.queueDepth}, fixedbufs, THP bufs`;
}

/**
 * Our engine puts buffers of 64 KiB and more on transparent huge pages, which lets an O_DIRECT read
 * go out as fewer, larger requests; this glibc (>= 2.35) tunable gives fio's malloc the same memory.
 */
function thpEnv(): NodeJS.ProcessEnv {
  const tunable = 'glibc.malloc.hugetlb=1';
  const prior = process.env.GLIBC_TUNABLES;
  return { ...process.env, GLIBC_TUNABLES: prior ? `${prior}:${tunable}` : tunable };
}

export async function runFio(w: Workload, path: string, fileSize: number, opts: RunOptions, engine: FioEngine = twinEngine(w)): Promise<FioOutcome> {
  const args = fioArgs(w, path, fileSize, opts, engine);
  return { ...(await measureFio(args, w.write)), mode: fioMode(w, engine), args };
}

/**
 * The 3FS deployment reports' line (`-numjobs=128 -iodepth=2 -ioengine=libaio -direct=1 -rw=read
 * -bs=4M`) scaled to this machine: `jobs` jobs of depth 2, each on its own slice of the file.
 */
export function deviceLineArgs(path: string, fileSize: number, jobs: number, write: boolean, opts: RunOptions): string[] {
  const slice = Math.floor(fileSize / jobs / (4 * 1024 * 1024)) * 4 * 1024 * 1024;
  return [
    `--name=device-${write ? 'write' : 'read'}`,
    `--filename=${path}`,
    `--size=${slice}`,
    `--offset_increment=${slice}`,
    `--numjobs=${jobs}`,
    '--iodepth=2',
    '--ioengine=libaio',
    '--direct=1',
    `--rw=${write ? 'write' : 'read'}`,
    '--bs=4M',
    ...windowArgs(opts),
    '--invalidate=1',
    '--output-format=json',
  ];
}

/** Runs fio with `args` (which must ask for JSON output) and reads its first job's figures. */
export async function measureFio(args: string[], write: boolean): Promise<Measured> {
  const out = await run('fio', args);
  let doc: FioJson;
  try {
    // fio may print notes before the JSON document.
    doc = JSON.parse(out.slice(out.indexOf('{'))) as FioJson;
  } catch {
    throw new Error(`fio printed something that is not JSON:\n${out.slice(0, 2000)}`);
  }
  return fioFigures(doc, write);
}

/** The figures of fio's JSON report: its (group-reported) first job's read or write side. */
export function fioFigures(doc: FioJson, write: boolean): Measured {
  const job = doc.jobs?.[0];
  if (!job) throw new Error('fio reported no job');
  if (job.error) throw new Error(`fio job failed with error ${job.error}`);
  const side = write ? job.write : job.read;
  const pct = side.lat_ns?.percentile ?? side.clat_ns?.percentile ?? {};
  const at = (p: string) => (pct[p] ?? 0) / 1000;
  // usr_cpu / sys_cpu are percent of the job's run time (summed over jobs with group_reporting).
  const cpuSeconds = ((job.usr_cpu + job.sys_cpu) / 100) * (job.job_runtime / 1000);
  return {
    seconds: side.runtime / 1000,
    bytes: side.io_bytes,
    ops: side.total_ios,
    p50us: at('50.000000'),
    p99us: at('99.000000'),
    cpuSeconds,
  };
}

export interface FioSide {
  io_bytes: number;
  total_ios: number;
  runtime: number;
  iops: number;
  bw_bytes: number;
  lat_ns?: { percentile?: Record<string, number> };
  clat_ns?: { percentile?: Record<string, number> };
}

export interface FioJson {
  jobs?: {
    error: number;
    job_runtime: number;
    usr_cpu: number;
    sys_cpu: number;
    read: FioSide;
    write: FioSide;
  }[];
}

function run(cmd: string, args: string[]): Promise<string> {
  return runChild(cmd, cmd, args, thpEnv());
}
