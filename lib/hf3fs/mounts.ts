// Which mount a path is on, from /proc/self/mountinfo, and whether that mount is 3FS's FUSE.
// The hf3fs rule follows hf3fs_extract_mount_point in 3FS's USRBIO library, so the doctor and the
// client agree with the library about what is a 3FS mount.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { ThreeFSError } from '../core/errors';

/** One line of /proc/self/mountinfo. */
export interface Mount {
  /** Where it is mounted, as this process sees it (escapes decoded). */
  mountPoint: string;
  /** The directory of the mounted file system that appears there ('/' unless a bind or sub-directory mount). */
  root: string;
  /** e.g. 'ext4', 'tmpfs', 'fuse.hf3fs'. */
  fsType: string;
  source: string;
  /** Per-mount options (rw, noatime, ...). */
  options: string[];
  /** Options of the file system itself (the last field). */
  superOptions: string[];
  /** The file system's device, 'major:minor', as stat(2)'s st_dev of files on it. */
  device: string;
}

/** A 3FS FUSE mount (or a test stand-in for one). */
export interface Hf3fsMount {
  mountPoint: string;
  /** `<mountPoint>/3fs-virt` when it exists: USRBIO registers its shared memory through it. */
  virtDir: string | undefined;
  /** True when the mount point came from HF3FS_STANDIN_MOUNTS rather than a fuse.hf3fs mount. */
  standin: boolean;
  /** The mountinfo entry, when there is one. */
  mount?: Mount;
}

export interface MountLookupOptions {
  /** The text of a mountinfo file; /proc/self/mountinfo when absent. */
  mountinfo?: string;
  /** The environment to read HF3FS_STANDIN_MOUNTS and HF3FS_USRBIO_DONT_CHECKFS_FOR_MP from; process.env when absent. */
  env?: NodeJS.ProcessEnv;
}

export const HF3FS_FS_TYPE = 'fuse.hf3fs';
const VIRT = '3fs-virt';

/** The kernel writes space, tab, newline and backslash in mountinfo paths as \ooo octal escapes. */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Parses mountinfo text (proc(5)): `id parent major:minor root mountpoint options [optional...] -
 * fstype source superoptions`. Lines that do not have that shape are skipped.
 */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-', 6);
    if (fields.length < 10 || dash < 0 || fields.length < dash + 3) continue;
    mounts.push({
      mountPoint: unescapeMountField(fields[4]),
      root: unescapeMountField(fields[3]),
      fsType: unescapeMountField(fields[dash + 1]),
      source: unescapeMountField(fields[dash + 2]),
      options: fields[5].split(','),
      superOptions: (fields[dash + 3] ?? '').split(',').filter(Boolean),
      device: fields[2],
    });
  }
  return mounts;
}

/** The mounts this process sees, in mount order. */
export function listMounts(mountinfo?: string): Mount[] {
  return parseMountinfo(mountinfo ?? readFileSync(MOUNTINFO, 'utf8'));
}

const MOUNTINFO = '/proc/self/mountinfo';
let cachedMounts: Mount[] | undefined;
/** Devices whose files stat(2) shows under another number than mountinfo's (btrfs subvolumes): no reason to read it again. */
const devicesThatDiffer = new Set<string>();

/**
 * The mount table for a lookup of `path` (canonical): read once, and again only when `path`'s
 * device is not that of the mount the table puts it on (something was mounted or unmounted since).
 * A failure to read it (EMFILE) is a ThreeFSError about `path`; a table read before serves instead.
 */
function mountsFor(path: string, existing: string): Mount[] {
  if (cachedMounts) {
    const device = deviceOf(existing);
    if (device === undefined || devicesThatDiffer.has(device) || findIn(cachedMounts, path)?.device === device) return cachedMounts;
  }
  try {
    cachedMounts = listMounts();
  } catch (e) {
    if (cachedMounts) return cachedMounts;
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ThreeFSError(code, `${code}: cannot read ${MOUNTINFO} to find the mount of '${path}' (${(e as Error).message})`, { path, syscall: 'open', errno: (e as NodeJS.ErrnoException).errno, cause: e });
  }
  const device = deviceOf(existing);
  if (device !== undefined && findIn(cachedMounts, path)?.device !== device) devicesThatDiffer.add(device);
  return cachedMounts;
}

/** 'major:minor' of the file system holding `path` (which exists), as mountinfo writes it. */
function deviceOf(path: string): string | undefined {
  try {
    const dev = statSync(path, { bigint: true }).dev;
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  } catch {
    return undefined;
  }
}

/**
 * The canonical form of a path that may not exist yet: the realpath of its longest existing
 * ancestor, with the missing rest appended. A file about to be created is on the same mount as its
 * directory.
 */
export function canonicalPath(path: string): string {
  return canonicalParts(path).path;
}

/** The canonical path, and the canonical form of its longest existing ancestor. */
function canonicalParts(path: string): { path: string; existing: string } {
  let existing = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(existing);
      return { path: join(real, ...rest), existing: real };
    } catch {
      const up = dirname(existing);
      if (up === existing) return { path: resolve(path), existing: sep };
      rest.unshift(basename(existing));
      existing = up;
    }
  }
}

/** Whether `path` is `dir` or inside it, component-wise ('/mnt/3fs' does not contain '/mnt/3fsx'). */
export function isWithin(path: string, dir: string): boolean {
  if (dir === sep) return path.startsWith(sep);
  return path === dir || path.startsWith(dir + sep);
}

/** The mount a path is on: the longest mount point containing it; of stacked mounts, the last. */
export function findMount(path: string, mounts?: Mount[]): Mount | undefined {
  const { path: target, existing } = canonicalParts(path);
  return findIn(mounts ?? mountsFor(target, existing), target);
}

function findIn(mounts: Mount[], target: string): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    if (isWithin(target, m.mountPoint) && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The 3FS mount a path is on, or undefined. Candidates are the `fuse.hf3fs` mounts (any mount with a
 * `3fs-virt` directory when HF3FS_USRBIO_DONT_CHECKFS_FOR_MP=yes, as the USRBIO library does) and
 * the directories in HF3FS_STANDIN_MOUNTS (colon-separated; tests use them with the stand-in of
 * 3FS's library). A mount that *is* `.../3fs-virt` stands for its parent: 3FS mounted by
 * sub-directory exposes the virtual directory as a mount of its own. The longest candidate
 * containing the path wins.
 */
export function findHf3fsMount(path: string, options: MountLookupOptions = {}): Hf3fsMount | undefined {
  const env = options.env ?? process.env;
  const anyFs = env.HF3FS_USRBIO_DONT_CHECKFS_FOR_MP === 'yes';
  const candidates = new Map<string, Hf3fsMount>();
  const add = (mountPoint: string, standin: boolean, mount?: Mount, needVirt = false): void => {
    let mp = mountPoint.length > 1 && mountPoint.endsWith(sep) ? mountPoint.slice(0, -1) : mountPoint;
    const isVirtMount = basename(mp) === VIRT;
    if (isVirtMount) mp = dirname(mp);
    else if (needVirt && !isDirectory(join(mp, VIRT))) return;
    const previous = candidates.get(mp);
    // A real mount beats a stand-in at the same place.
    if (standin && previous) return;
    // Of the entries for one mount point, the one mounted there describes it, not its 3fs-virt.
    const entry = isVirtMount && previous?.mount?.mountPoint === mp ? previous.mount : mount;
    const virt = join(mp, VIRT);
    candidates.set(mp, { mountPoint: mp, virtDir: isDirectory(virt) ? virt : undefined, standin, ...(entry ? { mount: entry } : {}) });
  };

  const { path: target, existing } = canonicalParts(path);
  const mounts = options.mountinfo !== undefined ? listMounts(options.mountinfo) : mountsFor(target, existing);
  for (const m of mounts) {
    if (m.fsType === HF3FS_FS_TYPE) add(m.mountPoint, false, m);
    else if (anyFs) add(m.mountPoint, false, m, true);
  }
  for (const dir of (env.HF3FS_STANDIN_MOUNTS ?? '').split(':')) {
    if (dir.trim() === '') continue;
    add(existsSync(dir) ? realpathSync(dir) : resolve(dir), true);
  }

  let best: Hf3fsMount | undefined;
  for (const c of candidates.values()) {
    if (isWithin(target, c.mountPoint) && (best === undefined || c.mountPoint.length > best.mountPoint.length)) best = c;
  }
  return best;
}
