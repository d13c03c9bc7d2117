// `3fs-client doctor`: what this machine and this path offer 3fs-client, and what to change.
// Every finding says what was seen and, when something is wrong or could be better, what to do.
// Nothing here does I/O on the path beyond stat: it is safe to run against a production mount.
import { accessSync, constants, existsSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { resolve } from 'node:path';
import { embeddedChoice, IO_URING_FALLBACKS, IO_URING_FIX, ioUringRefusal, type EmbeddedEngine } from '../core/embedded-engine';
import { MEMLOCK_FIX, parseMemlock } from '../core/memlock';
import { CONFIG_KEYS, DEFAULT_LAUNCHER_CONFIG, isConfigError, loadConfig, readLauncherConfig, type LauncherConfig, type LoadedConfig } from '../config/config';
import { findHf3fsMount, findMount, listMounts, HF3FS_FS_TYPE, type Hf3fsMount, type Mount } from '../hf3fs/mounts';
import { native, type IoUringProbeResult, type RdmaDeviceInfo, type RdmaProbeResult, type UsrbioProbeResult } from '../core/native';

export type FindingStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface Finding {
  /** Stable identifier, e.g. 'io_uring', 'rdma.mlx5_0.limits'. */
  id: string;
  status: FindingStatus;
  title: string;
  detail: string;
  /** What to do about it. */
  fix?: string;
}

export type { UsrbioProbeResult, IoUringProbeResult, RdmaPortInfo, RdmaDeviceInfo, RdmaProbeResult } from '../core/native';

export interface DoctorOptions {
  /** The path to check (default: the config's `mount`, else the working directory). */
  path?: string;
  /** libhf3fs_api_shared.so to try (default: the config's `library`, else $HF3FS_LIB, else the linker's search). */
  library?: string;
  /** A 3fs-client.toml to check instead of the usual lookup. */
  config?: string;
  /** For HF3FS_STANDIN_MOUNTS, THREEFS_CLIENT_CONFIG and friends; process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export interface DoctorReport {
  /** The path checked, absolute. */
  path: string;
  /** 1 if any finding failed, else 0. */
  exitCode: 0 | 1;
  summary: Record<FindingStatus, number>;
  findings: Finding[];
  /** The raw observations behind the findings, for scripts and bug reports. */
  facts: {
    node: string;
    kernel: string;
    config?: { file: string | undefined; client: LoadedConfig['client']; launcher?: LoadedConfig['launcher'] };
    mount?: Mount;
    hf3fs?: Hf3fsMount;
    usrbio?: UsrbioProbeResult;
    ioUring?: IoUringProbeResult;
    /** The embedded engine connect() will run here (local files, and 3FS through FUSE), and why that one (null: the default). */
    engine?: { engine: EmbeddedEngine; reason: string | null };
    devShm?: { size: number; free: number };
    memlock?: { soft: number | 'unlimited'; hard: number | 'unlimited'; capIpcLock: boolean };
    aio?: { maxNr: number; nr: number };
    rdma?: RdmaProbeResult;
  };
}

/** 3FS's defaults for the QP limits it checks against the device (IBSocket config, ibsocket tables). */
export const HF3FS_DEFAULT_MAX_SGE = 16;
export const HF3FS_DEFAULT_MAX_RD_ATOMIC = 16;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const MEMLOCK_WANTED = 64 * MiB;
const AIO_WANTED = 1048576;

interface Probes {
  usrbioProbe?: (library?: string) => UsrbioProbeResult;
  ioUringProbe?: () => IoUringProbeResult;
  rdmaDevices?: () => RdmaProbeResult;
}

function bytes(n: number): string {
  for (const [unit, size] of [['TiB', 1024 * GiB], ['GiB', GiB], ['MiB', MiB], ['KiB', 1024]] as const) {
    if (n >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} B`;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Runs every check. Never throws for what it finds; a finding says it instead. */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  const findings: Finding[] = [];
  const add = (f: Finding) => findings.push(f);
  const facts: DoctorReport['facts'] = { node: process.version, kernel: release() };

  // --- config first: it may name the mount and the library
  const config = checkConfig(options.config, env, add);
  if (config) facts.config = { file: config.file, client: config.client, ...(config.launcher ? { launcher: config.launcher } : {}) };

  const path = options.path ?? config?.client.mount ?? process.cwd();
  const hf3fs = checkPath(path, config, env, facts, add);

  // --- the addon's probes
  const probes = loadProbes(add);
  const probe = prober(add);
  const library = options.library ?? config?.client.library;
  facts.usrbio = probe('usrbio', probes?.usrbioProbe && (() => probes.usrbioProbe!(library)));
  if (facts.usrbio) checkUsrbio(facts.usrbio, hf3fs !== undefined, add);
  facts.ioUring = probe('io_uring', probes?.ioUringProbe && (() => probes.ioUringProbe!()));
  if (facts.ioUring) {
    checkIoUring(facts.ioUring, add);
    facts.engine = checkEngine(facts.ioUring, config, env, add);
  }

  facts.devShm = checkDevShm(hf3fs !== undefined, add);
  facts.memlock = checkMemlock(add);
  facts.aio = checkAio(hf3fs !== undefined, add);
  facts.rdma = probe('rdma', probes?.rdmaDevices && (() => probes.rdmaDevices!()));
  if (facts.rdma) checkRdma(facts.rdma, config, add);
  return report(path, findings, facts);
}

/** The mount `path` is on, and whether it is 3FS's (in `facts`); the 3FS mount, if it is one. */
function checkPath(path: string, config: LoadedConfig | undefined, env: NodeJS.ProcessEnv, facts: DoctorReport['facts'], add: (f: Finding) => void): Hf3fsMount | undefined {
  // Without /proc (an unusual sandbox) there are no mounts to see; the mount finding says so.
  const mountinfo = readText('/proc/self/mountinfo') ?? '';
  const mounts = listMounts(mountinfo);
  const hf3fs = findHf3fsMount(path, { env, mountinfo });
  facts.mount = findMount(path, mounts);
  if (hf3fs) facts.hf3fs = hf3fs;
  checkMount(path, hf3fs, facts.mount, mounts, config?.client.engine === 'hf3fs', add);
  return hf3fs;
}

/** The addon's probes; undefined (and a failed finding) when the addon does not load. */
function loadProbes(add: (f: Finding) => void): Probes | undefined {
  try {
    return native() as unknown as Probes;
  } catch (e) {
    add({
      id: 'addon',
      status: 'fail',
      title: 'the native addon does not load',
      detail: (e as Error).message,
      fix: 'rebuild it: `npm rebuild 3fs-client` (needs liburing-dev and a C++ toolchain: bash deps/install.sh)',
    });
    return undefined;
  }
}

/** Runs a probe. One that throws is a bug of ours or of a library it loaded: report it and go on. */
function prober(add: (f: Finding) => void) {
  return <T>(id: string, run: (() => T) | undefined): T | undefined => {
    if (!run) return undefined;
    try {
      return run();
    } catch (e) {
      add({ id, status: 'warn', title: `the ${id} probe failed`, detail: (e as Error)?.message ?? String(e), fix: 'report this to 3fs-client with the output of `3fs-client doctor --json`' });
      return undefined;
    }
  };
}

function report(path: string, findings: Finding[], facts: DoctorReport['facts']): DoctorReport {
  const summary: Record<FindingStatus, number> = { ok: 0, warn: 0, fail: 0, info: 0 };
  for (const f of findings) summary[f.status]++;
  return { path: resolve(path), exitCode: summary.fail > 0 ? 1 : 0, summary, findings, facts };
}

// ---------------------------------------------------------------------------------------------

function checkConfig(file: string | undefined, env: NodeJS.ProcessEnv, add: (f: Finding) => void): LoadedConfig | undefined {
  try {
    const config = loadConfig(file, env);
    if (config.file === undefined) {
      add({
        id: 'config',
        status: 'info',
        title: 'no 3fs-client.toml',
        detail: 'looked for $THREEFS_CLIENT_CONFIG, ./3fs-client.toml and /etc/3fs-client.toml; connect() uses its defaults and the options it is given',
      });
      suggestLauncher(add);
      return config;
    }
    const set = Object.entries(config.client).map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`);
    add({
      id: 'config',
      status: 'ok',
      title: `config ${config.file}`,
      detail: set.length > 0 ? set.join(', ') : 'no options set',
    });
    if (config.launcher) add({ id: 'config.launcher', status: 'info', title: `3FS launcher config ${config.launcher.file}`, detail: describeLauncher(config.launcher) });
    else suggestLauncher(add);
    return config;
  } catch (e) {
    const err = e as Error & { path?: string; line?: number; key?: string };
    add({
      id: 'config',
      status: 'fail',
      title: 'the config file is not valid',
      detail: err.message,
      fix: isConfigError(e)
        ? `correct ${err.key ? `'${err.key}' ` : ''}${err.line ? `on line ${err.line} ` : ''}of ${err.path}` +
          ` (keys: ${CONFIG_KEYS.join(', ')}), or point THREEFS_CLIENT_CONFIG at another file`
        : undefined,
    });
    return undefined;
  }
}

function describeLauncher(l: LauncherConfig): string {
  const parts = [`mountpoint ${l.mountpoint ?? '(not set)'}`, `cluster_id ${l.clusterId ?? '(not set)'}`];
  if (l.tokenFile) parts.push(`token_file ${l.tokenFile}${existsSync(l.tokenFile) ? '' : ' (missing)'}`);
  return parts.join(', ');
}

/** A 3FS client machine has the launcher config in 3FS's default place; say how to use it. */
function suggestLauncher(add: (f: Finding) => void): void {
  if (!existsSync(DEFAULT_LAUNCHER_CONFIG)) return;
  try {
    const l = readLauncherConfig(DEFAULT_LAUNCHER_CONFIG);
    add({
      id: 'config.launcher',
      status: 'info',
      title: `3FS launcher config found at ${DEFAULT_LAUNCHER_CONFIG}`,
      detail: describeLauncher(l),
      fix: `to take the mount from it, put launcher = "${DEFAULT_LAUNCHER_CONFIG}" in 3fs-client.toml`,
    });
  } catch (e) {
    // 3FS's file, not ours: worth a word, not a failure.
    add({ id: 'config.launcher', status: 'warn', title: '3FS launcher config unreadable', detail: (e as Error).message, fix: 'check the 3FS client setup (this file configures the FUSE daemon)' });
  }
}

function checkMount(
  path: string,
  hf3fs: Hf3fsMount | undefined,
  mount: Mount | undefined,
  mounts: Mount[],
  wantsHf3fs: boolean,
  add: (f: Finding) => void,
): void {
  if (!hf3fs && wantsHf3fs) {
    add({
      id: 'mount',
      status: 'warn',
      title: 'not on a 3FS mount, but the config asks for the hf3fs engine',
      detail: `${path} is on ${mount ? `${mount.fsType} mounted at ${mount.mountPoint}` : 'no known mount'}; the hf3fs engine needs a path on a 3FS mount`,
      fix: 'set mount (or launcher) in 3fs-client.toml to a path on the 3FS mount, or pass that path to doctor',
    });
    return;
  }
  if (!hf3fs) checkNotHf3fs(path, mount, mounts, add);
  else checkHf3fsMount(hf3fs, add);
}

/** Local files: where the path is, and where 3FS is mounted, if anywhere. */
function checkNotHf3fs(path: string, mount: Mount | undefined, mounts: Mount[], add: (f: Finding) => void): void {
  const missing = existsSync(path) ? '' : ' (it does not exist yet)';
  const on = mount
    ? `${path}${missing} is on ${mount.fsType} (${mount.source}) mounted at ${mount.mountPoint}`
    : `${path}${missing}: no mount found for it`;
  const elsewhere = mounts.filter((m) => m.fsType === HF3FS_FS_TYPE).map((m) => m.mountPoint);
  add({
    id: 'mount',
    status: 'info',
    title: "not on a 3FS mount: the local engine will be used (see 'engine')",
    detail: on + (elsewhere.length > 0 ? `; 3FS is mounted at ${elsewhere.join(', ')}` : ''),
  });
}

/** A 3FS mount: its 3fs-virt directory and the iovs directory USRBIO registers memory in. */
function checkHf3fsMount(hf3fs: Hf3fsMount, add: (f: Finding) => void): void {
  add({
    id: 'mount',
    status: 'ok',
    title: `on a 3FS mount: ${hf3fs.mountPoint}`,
    detail: hf3fs.standin
      ? `a stand-in mount from HF3FS_STANDIN_MOUNTS (tests), not a fuse.hf3fs mount`
      : `fuse.hf3fs${hf3fs.mount ? ` (${hf3fs.mount.source}, root ${hf3fs.mount.root})` : ''}`,
  });
  if (!hf3fs.virtDir) {
    add({
      id: 'mount.3fs-virt',
      status: 'fail',
      title: `${hf3fs.mountPoint}/3fs-virt is missing`,
      detail: 'USRBIO registers its shared memory and rings through <mount>/3fs-virt/iovs; without it the hf3fs engine cannot start',
      fix:
        'mount the whole 3FS file system, or, for a sub-directory mount, also mount its 3fs-virt directory there; ' +
        'in a container, bind the 3FS mount with propagation (-v /mnt/3fs:/3fs:rshared)',
    });
    return;
  }
  add({ id: 'mount.3fs-virt', status: 'ok', title: '3fs-virt present', detail: hf3fs.virtDir });
  checkIovs(`${hf3fs.virtDir}/iovs`, add);
}

function checkIovs(iovs: string, add: (f: Finding) => void): void {
  let problem: string | undefined;
  if (!isDirectory(iovs)) problem = 'is missing';
  else {
    try {
      accessSync(iovs, constants.W_OK);
    } catch (e) {
      problem = `is not writable (${(e as NodeJS.ErrnoException).code})`;
    }
  }
  add(
    problem
      ? {
          id: 'mount.iovs',
          status: 'fail',
          title: `${iovs} ${problem}`,
          detail: 'every iov and ring is registered by a symlink in this directory (the FUSE daemon makes it mode 0777)',
          fix: 'check that the 3FS FUSE daemon (hf3fs_fuse_main) serving this mount is running and is a release with USRBIO',
        }
      : { id: 'mount.iovs', status: 'ok', title: '3fs-virt/iovs present', detail: iovs },
  );
}

function checkUsrbio(probe: UsrbioProbeResult, onHf3fs: boolean, add: (f: Finding) => void): void {
  if (!probe.loaded) {
    add({
      id: 'usrbio',
      status: onHf3fs ? 'warn' : 'info',
      title: 'USRBIO library (libhf3fs_api_shared.so) not loaded',
      detail: `${probe.error ?? `cannot load ${probe.requested}`}${onHf3fs ? '' : '; only the hf3fs engine needs it'}`,
      fix:
        'set HF3FS_LIB=/path/to/libhf3fs_api_shared.so, or `library = "..."` in 3fs-client.toml, or pass --lib ' +
        "(3FS's build makes it: target hf3fs_api_shared); if the file exists but does not load, `ldd` it for a missing dependency",
    });
    return;
  }
  add({ id: 'usrbio', status: 'ok', title: 'USRBIO library loaded', detail: probe.path ?? probe.requested });
  if (probe.iorSize1 !== undefined && probe.iorSizeExpected !== undefined) {
    const same = probe.iorSize1 === probe.iorSizeExpected;
    add(
      same
        ? { id: 'usrbio.abi', status: 'ok', title: 'ring layout matches', detail: `hf3fs_ior_size(1) = ${probe.iorSize1}` }
        : {
            id: 'usrbio.abi',
            status: 'warn',
            title: 'ring layout differs from the ABI this client was built for',
            detail: `hf3fs_ior_size(1) = ${probe.iorSize1}, expected ${probe.iorSizeExpected}: the library was built with a different ring layout`,
            fix: 'use a libhf3fs_api_shared.so built from the same 3FS release as the FUSE daemon, and report the difference to 3fs-client',
          },
    );
  }
}

function checkIoUring(probe: IoUringProbeResult, add: (f: Finding) => void): void {
  if (probe.available) {
    add({ id: 'io_uring', status: 'ok', title: 'io_uring available', detail: `kernel ${release()}` });
    return;
  }
  // A warning, not a failure: the local engine falls back to the 'threads' engine (the 'engine' finding).
  add({ id: 'io_uring', status: 'warn', title: 'io_uring is not available', detail: ioUringRefusal(probe.errno), fix: IO_URING_FIX });
}

/** Which embedded engine connect() will run, decided as it decides (lib/core/embedded-engine.ts). */
function checkEngine(probe: IoUringProbeResult, config: LoadedConfig | undefined, env: NodeJS.ProcessEnv, add: (f: Finding) => void): DoctorReport['facts']['engine'] {
  const inConfig = config?.client.engine === 'io_uring' || config?.client.engine === 'threads' ? config.client.engine : undefined;
  let mode: 'auto' | EmbeddedEngine;
  let forcedBy: string | undefined;
  try {
    ({ mode, forcedBy } = embeddedChoice(inConfig ?? 'local', env));
  } catch (e) {
    add({ id: 'engine', status: 'fail', title: 'THREEFS_CLIENT_ENGINE is not valid', detail: (e as Error).message, fix: "set THREEFS_CLIENT_ENGINE to 'io_uring' or 'threads', or unset it" });
    return undefined;
  }
  if (inConfig !== undefined) forcedBy = `engine = "${inConfig}" in ${config?.file}`;
  const threadsEngine = "the 'threads' engine: pread/pwrite and AIO on native threads; the same API and results";
  if (mode === 'threads') {
    add({ id: 'engine', status: 'info', title: 'local engine: threads (forced)', detail: `${forcedBy}; ${threadsEngine}` });
    return { engine: 'threads', reason: forcedBy ?? null };
  }
  if (probe.available) {
    add({ id: 'engine', status: 'ok', title: 'local engine: io_uring', detail: forcedBy ?? 'io_uring_setup works here' });
    return { engine: 'io_uring', reason: forcedBy ?? null };
  }
  const refusal = ioUringRefusal(probe.errno);
  if (mode === 'io_uring') {
    add({ id: 'engine', status: 'fail', title: 'local engine: io_uring is forced but cannot be set up', detail: `${forcedBy}; ${refusal}: connect() will fail`, fix: `${IO_URING_FIX}; or let the library fall back (remove ${forcedBy})` });
    return undefined;
  }
  if (!IO_URING_FALLBACKS.includes(probe.code ?? '')) {
    // Not a refusal nor the memlock limit (EMFILE, ...): connect() reports it rather than hide it.
    add({ id: 'engine', status: 'fail', title: 'local engine: io_uring cannot be set up', detail: `${refusal}: connect() will fail with it`, fix: "see the io_uring finding; THREEFS_CLIENT_ENGINE=threads uses the 'threads' engine instead" });
    return undefined;
  }
  add({ id: 'engine', status: 'warn', title: `local engine: threads (io_uring is ${probe.code === 'ENOMEM' ? 'over the memlock limit' : 'refused'} here)`, detail: `${refusal}; ${threadsEngine}`, fix: "for io_uring's speed, allow io_uring: see the io_uring finding" });
  return { engine: 'threads', reason: refusal };
}

function checkDevShm(onHf3fs: boolean, add: (f: Finding) => void): DoctorReport['facts']['devShm'] {
  let size: number;
  let free: number;
  try {
    const s = statfsSync('/dev/shm');
    size = s.blocks * s.bsize;
    free = s.bavail * s.bsize;
  } catch (e) {
    add({
      id: 'dev-shm',
      status: onHf3fs ? 'fail' : 'warn',
      title: '/dev/shm is missing',
      detail: `${(e as NodeJS.ErrnoException).code}: USRBIO's iovs and rings are files in /dev/shm`,
      fix: 'mount a tmpfs there (mount -t tmpfs -o size=16G tmpfs /dev/shm); in a container, -v /dev/shm:/dev/shm',
    });
    return undefined;
  }
  const low = size < GiB || free < GiB;
  add({
    id: 'dev-shm',
    status: low ? 'warn' : 'ok',
    title: low ? `/dev/shm is small: ${bytes(size)}, ${bytes(free)} free` : `/dev/shm: ${bytes(size)}, ${bytes(free)} free`,
    detail: low
      ? "USRBIO's iovs are sparse files in /dev/shm; when it fills, touching an iov kills the process with SIGBUS (Docker's default is 64 MiB)"
      : "room for USRBIO's iovs (shared with the 3FS FUSE daemon)",
    fix: low
      ? 'docker run --shm-size=16g, or -v /dev/shm:/dev/shm (which also shares it with the FUSE daemon, as USRBIO needs); ' +
        'Kubernetes: an emptyDir with medium: Memory mounted at /dev/shm; on a host: mount -o remount,size=16G /dev/shm'
      : undefined,
  });
  return { size, free };
}

export { parseMemlock };

/** Whether CapEff in /proc/self/status has CAP_IPC_LOCK (bit 14), which lifts RLIMIT_MEMLOCK. */
export function hasCapIpcLock(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)/im.exec(status);
  return m ? (BigInt(`0x${m[1]}`) & (1n << 14n)) !== 0n : false;
}

function checkMemlock(add: (f: Finding) => void): DoctorReport['facts']['memlock'] {
  const limits = parseMemlock(readText('/proc/self/limits') ?? '');
  if (!limits) return undefined;
  const capIpcLock = hasCapIpcLock(readText('/proc/self/status') ?? '');
  const soft = limits.soft;
  const shown = soft === 'unlimited' ? 'unlimited' : bytes(soft);
  const why =
    'io_uring registered buffers (alloc()) count against it, and RDMA registration pins memory the same way ' +
    '(for USRBIO iovs that happens in the 3FS FUSE daemon, whose own limit counts)';
  if (soft === 'unlimited' || soft >= MEMLOCK_WANTED || capIpcLock) {
    add({
      id: 'memlock',
      status: 'ok',
      title: `RLIMIT_MEMLOCK ${shown}`,
      detail: capIpcLock && soft !== 'unlimited' ? 'this process has CAP_IPC_LOCK, so the limit does not apply to it' : why,
    });
  } else {
    add({
      id: 'memlock',
      status: 'warn',
      title: `RLIMIT_MEMLOCK is ${shown}`,
      detail: `${why}; below ${bytes(MEMLOCK_WANTED)} large registered buffers fail (ENOMEM)`,
      fix: `${MEMLOCK_FIX}. Give the 3FS FUSE daemon the same.`,
    });
  }
  return { ...limits, capIpcLock };
}

function checkAio(onHf3fs: boolean, add: (f: Finding) => void): DoctorReport['facts']['aio'] {
  const maxNr = Number(readText('/proc/sys/fs/aio-max-nr')?.trim());
  const nr = Number(readText('/proc/sys/fs/aio-nr')?.trim());
  if (!Number.isFinite(maxNr) || !Number.isFinite(nr)) return undefined;
  const fix = 'sysctl -w fs.aio-max-nr=1048576 (and put fs.aio-max-nr = 1048576 in /etc/sysctl.d/ to keep it)';
  const why = "3FS's storage service and FUSE daemon use libaio, and each io_setup takes from this system-wide pool";
  if (nr >= 0.9 * maxNr) {
    add({ id: 'aio', status: 'warn', title: `fs.aio-nr is ${nr} of fs.aio-max-nr ${maxNr}`, detail: `${why}; io_setup fails with EAGAIN when it runs out`, fix });
  } else if (maxNr < AIO_WANTED) {
    add({ id: 'aio', status: onHf3fs ? 'warn' : 'info', title: `fs.aio-max-nr is ${maxNr}`, detail: `${why}; 3FS deployments use ${AIO_WANTED}`, fix });
  } else {
    add({ id: 'aio', status: 'ok', title: `fs.aio-max-nr ${maxNr} (${nr} in use)`, detail: why });
  }
  return { maxNr, nr };
}

function checkRdma(rdma: RdmaProbeResult, config: LoadedConfig | undefined, add: (f: Finding) => void): void {
  if (!rdma.loaded || rdma.devices.length === 0) {
    add({
      id: 'rdma',
      status: 'info',
      title: 'no RDMA device: fine for local files; 3FS needs RDMA (IB, RoCE, eRDMA)',
      detail: rdma.loaded
        ? `${rdma.library}: no devices${rdma.error ? ` (${rdma.error}${rdma.error.endsWith('ENOSYS') ? ': the kernel has no RDMA support loaded' : ''})` : ''}`
        : rdma.error ?? 'libibverbs not found',
      fix: rdma.loaded
        ? undefined
        : 'only for 3FS: install rdma-core (apt-get install libibverbs1 ibverbs-providers) and the NIC driver',
    });
    return;
  }
  for (const d of rdma.devices) checkRdmaDevice(d, config, add);
}

function checkRdmaDevice(d: RdmaDeviceInfo, config: LoadedConfig | undefined, add: (f: Finding) => void): void {
  const id = `rdma.${d.name}`;
  const where = `NUMA node ${d.numaNode >= 0 ? d.numaNode : 'unknown'}`;
  if (d.error) {
    add({
      id,
      status: 'warn',
      title: `RDMA device ${d.name} cannot be used`,
      detail: `${d.error}; GUID ${d.guid}, ${where}`,
      fix: 'check permissions on /dev/infiniband/uverbs*; in a container pass --device /dev/infiniband (or use an RDMA device plugin) and --ulimit memlock=-1',
    });
    return;
  }
  const ports = d.ports.map((p) =>
    p.error
      ? `port ${p.port}: ${p.error}`
      : `port ${p.port}: ${p.state}, ${p.linkLayer === 'Ethernet' ? 'Ethernet (RoCE/eRDMA)' : p.linkLayer}, MTU ${p.activeMtu}` +
        `${p.gid0 ? `, GID ${p.gid0}` : ''}${p.linkLayer === 'InfiniBand' ? `, LID ${p.lid}` : ''}`,
  );
  const active = d.ports.some((p) => p.state === 'ACTIVE');
  add({
    id,
    status: active ? 'ok' : 'warn',
    title: `RDMA device ${d.name}${active ? '' : ': no ACTIVE port'}`,
    detail: [...ports, `firmware ${d.fwVer}${d.nodeType ? `, node type ${d.nodeType}` : ''}, GUID ${d.guid}, ${where}`].join('; '),
    fix: active
      ? undefined
      : 'bring a port up: check the cable and the switch (ibstat, ibv_devinfo; for RoCE, `ip link` on its netdev); ' +
        "3FS skips inactive ports (skip_inactive_ports in [ib_devices])",
  });
  checkLimits(d, add);
  if (d.numaNode >= 0) checkNuma(d, config, add);
}

/** Where the NIC sits, and whether iovs are placed there. */
function checkNuma(d: RdmaDeviceInfo, config: LoadedConfig | undefined, add: (f: Finding) => void): void {
  const configured = config?.client.numa;
  add({
    id: `rdma.${d.name}.numa`,
    status: 'info',
    title: `${d.name} is on NUMA node ${d.numaNode}`,
    detail:
      configured === d.numaNode
        ? `3fs-client.toml sets numa = ${configured}`
        : 'iovs placed on the NIC\'s node avoid a hop across the socket interconnect for every RDMA transfer',
    fix: configured === d.numaNode ? undefined : `pass numa: ${d.numaNode} to connect() (or numa = ${d.numaNode} in 3fs-client.toml)`,
  });
}

function checkLimits(d: RdmaDeviceInfo, add: (f: Finding) => void): void {
  const id = `rdma.${d.name}.limits`;
  const sge = d.maxSge ?? 0;
  const rdAtom = d.maxQpRdAtom ?? 0;
  const shown = `max_sge ${sge}, max_qp_rd_atom ${rdAtom}`;
  if (sge >= HF3FS_DEFAULT_MAX_SGE && rdAtom >= HF3FS_DEFAULT_MAX_RD_ATOMIC) {
    add({ id, status: 'ok', title: `${d.name} limits fit 3FS's defaults`, detail: `${shown} (3FS uses max_sge ${HF3FS_DEFAULT_MAX_SGE}, max_rd_atomic ${HF3FS_DEFAULT_MAX_RD_ATOMIC})` });
    return;
  }
  const settings: string[] = [];
  if (sge < HF3FS_DEFAULT_MAX_SGE) settings.push(`\`max_sge = ${sge}\``);
  if (rdAtom < HF3FS_DEFAULT_MAX_RD_ATOMIC) settings.push(`\`max_rd_atomic = ${rdAtom}\``);
  const notes: string[] = [
    `${shown}, below 3FS's defaults (max_sge ${HF3FS_DEFAULT_MAX_SGE}, max_rd_atomic ${HF3FS_DEFAULT_MAX_RD_ATOMIC}); ` +
      '3FS checks its settings against the device when it connects and stops if they exceed it',
  ];
  if (sge === 1 || d.name.startsWith('erdma')) notes.push('eRDMA in compatibility mode reports max_sge 1');
  if (d.name.startsWith('irdma') || (sge === 6 && rdAtom === 8)) notes.push('Intel E810 (irdma) reports max_sge 6 and max_qp_rd_atom 8 (3FS issue #192)');
  add({
    id,
    status: 'warn',
    title: `${d.name} limits are below 3FS's defaults`,
    detail: notes.join('; '),
    fix:
      `set ${settings.join(' and ')} in every ibsocket table ([client.io_worker.ibsocket], [server.base.groups.io_worker.ibsocket], ...) ` +
      'of the configs of the 3FS services on this machine: the FUSE daemon (hf3fs_fuse_main_launcher.toml, hf3fs_fuse_main.toml) ' +
      'and, on storage nodes, storage_main.toml',
  });
}

// ---------------------------------------------------------------------------------------------

const LABEL: Record<FindingStatus, string> = { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', info: '[info]' };

/** The report as text for a terminal: one block per finding, then a count. */
export function formatDoctor(report: DoctorReport): string {
  const lines: string[] = [`3fs-client doctor: ${report.path}`, ''];
  const indent = ' '.repeat(LABEL.ok.length + 3);
  for (const f of report.findings) {
    lines.push(`  ${LABEL[f.status]} ${f.title}`);
    if (f.detail) for (const l of f.detail.split('\n')) lines.push(`${indent}${l}`);
    if (f.fix) lines.push(`${indent}fix: ${f.fix}`);
  }
  const s = report.summary;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push('', `${s.ok} ok, ${plural(s.warn, 'warning')}, ${plural(s.fail, 'failure')}, ${plural(s.info, 'note')}`);
  return `${lines.join('\n')}\n`;
}
