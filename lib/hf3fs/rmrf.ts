// Recursive delete. On 3FS a symlink made in <mount>/3fs-virt/rm-rf/ asks the meta service to
// remove the whole tree it points at in one operation (what smallpond does for its temporary
// directories), instead of one unlink per file through FUSE; elsewhere, or if 3FS refuses, it is
// node:fs's recursive rm.
import { randomBytes } from 'node:crypto';
import { lstat, realpath, rm, symlink, unlink } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { argError } from '../core/errors';
import { findHf3fsMount } from './mounts';

/** How rmrf() removed the path: 3FS's rm-rf, node:fs, or nothing was there. */
export type RmrfResult = '3fs' | 'fs' | 'absent';

/**
 * Removes `path` and everything under it, as `rm -rf` does (a symlink is removed, not what it
 * points to). Refuses '/' and the root of a 3FS mount.
 */
export async function rmrf(path: string): Promise<RmrfResult> {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', 'path must be a non-empty string without NUL bytes');
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
  if (!st) return 'absent';
  if (st.isSymbolicLink()) {
    await unlink(path);
    return 'fs';
  }
  const target = await realpath(path);
  if (target === resolve('/')) throw argError('ERR_INVALID_ARG_VALUE', `rmrf refuses to remove '/'`, { path });
  const mount = findHf3fsMount(target);
  if (mount && target === mount.mountPoint) throw argError('ERR_INVALID_ARG_VALUE', `rmrf refuses to remove the root of a 3FS mount: '${path}'`, { path });
  if (mount && st.isDirectory()) {
    // A name unique to this call: links of concurrent removals of same-named trees must not clash.
    const link = join(mount.mountPoint, '3fs-virt', 'rm-rf', `${basename(target)}-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await symlink(target, link);
      return '3fs';
    } catch {
      // Not supported here (an old client, permissions): the ordinary way, as smallpond falls back.
    }
  }
  await rm(target, { recursive: true, force: true });
  return 'fs';
}
