// Starts and stops the test FUSE daemon (README.md here) from tests and from vitest's global setup.
// The daemon runs as a supervisor and a FUSE server; the mount goes away when stop() is called,
// when this process dies (the supervisor sees its stdin close), or when the server dies (the
// supervisor unmounts). Under `npm test` the whole run is in a private mount namespace as well
// (scripts/in-mount-namespace.mjs), so not even a killed supervisor leaves a mount behind.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDaemon } from './build';

export interface DaemonMount {
  /** The mount point (type fuse.hf3fs). */
  mount: string;
  /** The directory whose files it shows. */
  backing: string;
  /** The fault directory: faults for process P go in <control>/<P> (see withDaemonFaults). */
  control: string;
  /** The supervisor's pid. */
  pid: number;
  /** Unmounts and waits for both daemon processes to exit. */
  stop(): Promise<void>;
}

/** Why this machine cannot run the daemon ('' if it can): FUSE needs root and /dev/fuse here. */
export function daemonUnavailable(): string {
  if (process.getuid?.() !== 0) return 'the FUSE test daemon mounts as root, and this is not root';
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'no usable /dev/fuse (a container without --device /dev/fuse?)';
  }
  try {
    buildDaemon();
  } catch (e) {
    return (e as Error).message.split('\n')[0];
  }
  return '';
}

/** Mounts <root>/back at <root>/mnt (both made here); chunk = st_blksize, 512 KiB by default. */
export async function startDaemon(root: string, options: { chunk?: number } = {}): Promise<DaemonMount> {
  const [backing, mount, control] = ['back', 'mnt', 'faults'].map((d) => join(root, d));
  for (const d of [backing, mount, control]) mkdirSync(d, { recursive: true });
  const args = ['--control', control, ...(options.chunk ? ['--chunk', String(options.chunk)] : []), backing, mount];
  const child = spawn(buildDaemon(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve())); // exited, pipes closed
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`the test daemon exited (${code ?? signal}) before mounting ${mount}: ${stderr.trim()}`)));
    child.once('error', reject);
  });
  return {
    mount,
    backing,
    control,
    pid: child.pid!,
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

export interface DaemonFaults {
  /** Every read (write) the daemon runs for this process completes with CQE result -errno. */
  readErrno?: number;
  writeErrno?: number;
  /** Every IO of this process waits this long before it runs. */
  delayUs?: number;
}

/** Runs `body` with the daemon injecting `faults` into this process's ring IO, then stops them. */
export async function withDaemonFaults<T>(control: string, faults: DaemonFaults, body: () => Promise<T>): Promise<T> {
  const file = join(control, String(process.pid));
  const words = [`read_errno=${faults.readErrno ?? 0}`, `write_errno=${faults.writeErrno ?? 0}`, `delay_us=${faults.delayUs ?? 0}`];
  writeFileSync(`${file}.tmp`, words.join(' ') + '\n');
  renameSync(`${file}.tmp`, file); // the daemon reads it at any time: never half-written
  try {
    return await body();
  } finally {
    if (existsSync(file)) rmSync(file);
  }
}

/**
 * Unmounts test-daemon mounts under `parent` whose daemon is gone (their mount point answers
 * ENOTCONN): what a killed run outside a private mount namespace can leave. Live ones are left alone.
 */
export function sweepStaleMounts(parent: string): void {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const mp = (f[4] ?? '').replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (f[f.length - 3] !== 'fuse.hf3fs' || !mp.startsWith(parent + '/')) continue;
    try {
      statSync(mp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOTCONN') spawnSync('umount', ['-l', mp], { timeout: 60_000 });
    }
  }
}
