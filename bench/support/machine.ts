// The machine the bench runs on: what it is, how busy, which file system, how much room.
import { readFileSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { formatSize, MiB } from './units';

export interface Machine {
  cpus: number;
  memory: number;
  kernel: string;
  node: string;
  cpuModel: string;
  fio: string | null;
}

export function machineInfo(fio: string | null): Machine {
  const list = cpus();
  return { cpus: list.length, memory: totalmem(), kernel: release(), node: process.version, cpuModel: list[0]?.model ?? 'unknown', fio };
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

/** Throws unless `base` has room for `need` bytes and 256 MiB to spare; `who` names the bench. */
export function checkFreeSpace(base: string, need: number, who: string): void {
  const fs = statfsSync(base);
  const free = fs.bavail * fs.bsize;
  if (free < need + 256 * MiB) throw new Error(`${base} has ${formatSize(free)} free; ${who} needs ${formatSize(need)} plus room to spare (try a smaller --size)`);
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
