// The page cache around a run: dropped before a cold one, filled before a warm one. Dropping is
// posix_fadvise(DONTNEED) (Node cannot call it): through dd for a file, and through one python3
// process for a directory (a directory of a file per key holds up to tens of thousands).
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { MiB } from './units';

const DROP_DIR = [
  'import os, sys',
  'os.sync()',
  'd = sys.argv[1]',
  'for n in os.listdir(d):',
  '    fd = os.open(os.path.join(d, n), os.O_RDONLY)',
  '    try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)',
  '    finally: os.close(fd)',
].join('\n');

/**
 * Drops the cached pages of `path`: a file's clean pages, or every file of a directory after
 * writing its dirty pages back (fadvise leaves dirty pages). False when that failed.
 */
export function dropPageCache(path: string): boolean {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    return false;
  }
  const r = isDir
    ? spawnSync('python3', ['-c', DROP_DIR, path], { stdio: 'ignore', timeout: 120_000 })
    : spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' });
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
