// The engines side by side: the same workload, file and batch size through the local engine
// (io_uring) and the 3FS engine (USRBIO), alternating, in one run. On a real 3FS mount this shows
// what USRBIO buys over io_uring through FUSE; on the test stand-in of 3FS's library (local files
// under a directory it treats as a mount) it isolates the hf3fs engine's own cost per op.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeBenchDir } from '../support/bench-dir';
import { connect, findHf3fsMount } from '../../lib/index';
import { writeBenchFile } from '../support/bench-files';
import { warm } from '../support/page-cache';
import type { Workload } from '../support/records';
import { median } from '../support/stats';
import { formatSize, KiB, MiB } from '../support/units';
import { runOurs } from '../tools/ours';

export interface EngineBenchOptions {
  /** A directory on a 3FS mount (or on a stand-in mount, see HF3FS_STANDIN_MOUNTS). */
  dir: string;
  /** hf3fs: path of libhf3fs_api_shared.so (else $HF3FS_LIB, then the linker's search). */
  library?: string;
  durationMs?: number;
  rampMs?: number;
  repeat?: number;
  err?: (text: string) => void;
  out?: (text: string) => void;
}

export interface EngineRun {
  workload: string;
  engine: 'local' | 'hf3fs';
  blockSize: number;
  queueDepth: number;
  batch: number;
  iops: number;
  gibps: number;
  p50us: number;
  p99us: number;
  cpuSecPerGiB: number;
  /**
   * CPU per op of the client itself (JS thread and engine threads), without the threads of the
   * test stand-in that play 3FS's FUSE daemon (named "hf3fs-daemon"; on a real mount the daemon is
   * another process, so nothing is subtracted). What the engine costs, apart from the storage's work.
   */
  clientUsPerOp: number;
  repeat: number;
}

// CPU seconds of this process's live threads named `name`.
function threadCpu(name: string): { named: number } {
  const tick = 100; // USER_HZ on Linux
  let named = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (comm === name) named += (Number(fields[11]) + Number(fields[12])) / tick; // utime, stime
    } catch {
      // the thread ended meanwhile
    }
  }
  return { named };
}

// Reads of a warm file: the device stays out of the way, so what differs is each engine's own work.
const WORKLOADS: Workload[] = [
  { name: 'ops-4k', write: false, pattern: 'rand', blockSize: 4 * KiB, queueDepth: 64, direct: false, file: 'cached', batch: 16 },
  { name: 'ops-1m', write: false, pattern: 'seq', blockSize: 1 * MiB, queueDepth: 16, direct: false, file: 'cached', batch: 4 },
  // What a 3FS client runs to fill a NIC: batches of 128 in flight.
  { name: 'ops-1m', write: false, pattern: 'seq', blockSize: 1 * MiB, queueDepth: 256, direct: false, file: 'cached', batch: 128 },
];
const FILE_SIZE = 256 * MiB;

export async function runEngineBench(options: EngineBenchOptions): Promise<EngineRun[]> {
  const err = options.err ?? ((text: string) => process.stderr.write(text));
  const out = options.out ?? ((text: string) => process.stdout.write(text));
  const mount = findHf3fsMount(options.dir);
  if (!mount) throw new Error(`${options.dir} is not on a 3FS mount (nor on a stand-in mount listed in HF3FS_STANDIN_MOUNTS)`);
  const repeat = options.repeat ?? 3;
  const runOpts = { rampMs: options.rampMs ?? 300, durationMs: options.durationMs ?? 2000, seed: 0x3f5 };
  const hf3fs = { mount: mount.mountPoint, ...(options.library ? { library: options.library } : {}) };
  await connect(hf3fs).close(); // fail early, with the library's own words, if it does not load

  const dir = makeBenchDir(options.dir, '.bench-engines-');
  try {
    const path = join(dir, 'cached.bin');
    await writeBenchFile(path, FILE_SIZE, true);
    await warm(path);
    const kind = mount.standin ? 'a stand-in of 3FS in this process' : `${mount.mount?.fsType ?? 'fuse.hf3fs'}: its FUSE daemon in another process`;
    err(`engines on ${mount.mountPoint} (${kind}), library ${options.library ?? process.env.HF3FS_LIB ?? "the linker's"}: ${formatSize(FILE_SIZE)} warm file, ${repeat} runs each, alternating\n`);
    const runs: EngineRun[] = [];
    for (const w of WORKLOADS) {
      for (let r = 1; r <= repeat; r++) {
        for (const engine of ['local', 'hf3fs'] as const) {
          // The daemon's share of the process's CPU while the lanes run, read while its threads live.
          const probes: { named: number; process: number }[] = [];
          const probe = () => {
            const u = process.cpuUsage();
            probes.push({ named: threadCpu('hf3fs-daemon').named, process: (u.user + u.system) / 1e6 });
          };
          const m = await runOurs(w, path, FILE_SIZE, { ...runOpts, probe }, engine === 'hf3fs' ? hf3fs : {});
          const spent = probes.length === 2 ? probes[1].process - probes[0].process : 0;
          const daemonShare = spent > 0 ? Math.min(1, (probes[1].named - probes[0].named) / spent) : 0;
          const run: EngineRun = {
            workload: w.name,
            engine,
            blockSize: w.blockSize,
            queueDepth: w.queueDepth,
            batch: w.batch,
            iops: Math.round(m.ops / m.seconds),
            gibps: m.bytes / m.seconds / 2 ** 30,
            p50us: m.p50us,
            p99us: m.p99us,
            cpuSecPerGiB: m.cpuSeconds / (m.bytes / 2 ** 30),
            clientUsPerOp: ((m.cpuSeconds * (1 - daemonShare)) / m.ops) * 1e6,
            repeat: r,
          };
          runs.push(run);
          err(`  ${w.name} ${engine} run ${r}: ${run.iops} IOPS, ${run.gibps.toFixed(2)} GiB/s, p99 ${Math.round(run.p99us)} us\n`);
        }
      }
    }
    out(formatEngineTable(runs));
    return runs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Runs of the same workload at the same depth and batch size are compared with each other.
const runKey = (r: EngineRun) => `${r.workload} ${r.blockSize} ${r.queueDepth} ${r.batch}`;

/**
 * Medians per workload and engine, and hf3fs / local. "GiB/s/core" is the bandwidth one core of
 * client CPU would carry at the measured client us/op: where the client layer itself would become
 * the bottleneck (on 3FS the data moves by RDMA, so this is the ceiling our layer puts on a NIC).
 */
export function formatEngineTable(runs: EngineRun[]): string {
  const lines = ['workload                engine      IOPS      GiB/s  p50 us  p99 us  CPU s/GiB  client us/op  GiB/s/core  hf3fs/local IOPS  us/op'];
  for (const key of [...new Set(runs.map(runKey))]) {
    const row = (engine: 'local' | 'hf3fs') => {
      const rs = runs.filter((r) => runKey(r) === key && r.engine === engine);
      return { rs, iops: median(rs.map((r) => r.iops)), us: median(rs.map((r) => r.clientUsPerOp)) };
    };
    const local = row('local');
    const hf = row('hf3fs');
    for (const [engine, { rs, iops, us }] of [['local', local], ['hf3fs', hf]] as const) {
      const w = rs[0];
      const label = engine === 'local' ? `${w.workload} ${formatSize(w.blockSize)} qd${w.queueDepth} b${w.batch}` : '';
      const ratio = engine === 'hf3fs' && local.iops > 0 ? `${(iops / local.iops).toFixed(2)}x` : '';
      const overhead = engine === 'hf3fs' && local.us > 0 ? `${(us / local.us).toFixed(2)}x` : '';
      lines.push(
        [
          label.padEnd(24),
          engine.padEnd(8),
          String(iops).padStart(8),
          median(rs.map((r) => r.gibps)).toFixed(2).padStart(10),
          median(rs.map((r) => r.p50us)).toFixed(0).padStart(8),
          median(rs.map((r) => r.p99us)).toFixed(0).padStart(8),
          median(rs.map((r) => r.cpuSecPerGiB)).toFixed(3).padStart(11),
          us.toFixed(2).padStart(14),
          (us > 0 ? w.blockSize / (us * 1e-6) / 2 ** 30 : 0).toFixed(1).padStart(12),
          ratio.padStart(18),
          overhead.padStart(7),
        ].join(''),
      );
    }
  }
  return (
    lines.join('\n') +
    '\n(medians at the same block size, depth and batch size. client us/op: CPU of the JS and engine threads per op,\n' +
    ' without the threads that play 3FS\'s FUSE daemon in the test stand-in; on a real mount the daemon is another process)\n'
  );
}
