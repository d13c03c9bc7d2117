// The machine's physical limits, shown above the table as the ceiling no client can pass: the
// device's sequential bandwidth as fio measures it with the 3FS deployment reports' line (scaled
// to this machine), and memory bandwidth (one thread copying a buffer far larger than the caches).
import { cpus } from 'node:os';
import type { Ceiling } from '../support/records';
import { MiB } from '../support/units';
import { deviceLineArgs, measureFio } from './fio';
import type { RunOptions } from './ours';

/** fio's jobs for the device line: 2 per core (the reports run 128 on 64-core clients). */
export function deviceJobs(): number {
  return Math.max(2, 2 * cpus().length);
}

export async function deviceCeiling(path: string, fileSize: number, write: boolean, opts: RunOptions): Promise<Ceiling> {
  const jobs = deviceJobs();
  const args = deviceLineArgs(path, fileSize, jobs, write, opts);
  const m = await measureFio(args, write);
  return {
    what: `device ${write ? 'write' : 'read'}`,
    gbps: m.seconds > 0 ? m.bytes / 1e9 / m.seconds : 0,
    how: `fio -numjobs=${jobs} -iodepth=2 -ioengine=libaio -direct=1 -rw=${write ? 'write' : 'read'} -bs=4M`,
  };
}

/** Bytes copied per second by one thread, Buffer to Buffer (memcpy), over about `ms`. */
export function memoryCeiling(ms = 300): Ceiling {
  const size = 64 * MiB;
  const from = Buffer.alloc(size, 1);
  const to = Buffer.alloc(size);
  from.copy(to); // both touched: page faults stay out of the window
  let bytes = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    from.copy(to);
    bytes += size;
    t = performance.now();
  }
  return { what: 'memory copy', gbps: bytes / 1e9 / ((t - t0) / 1000), how: `1 thread, ${size / MiB} MiB Buffer.copy (memcpy)` };
}
