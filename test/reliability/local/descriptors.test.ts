// Issue 20 item 4: descriptors. Out of descriptors (EMFILE), the top-level open() failed with a
// plain Error about /proc/self/mountinfo, which every open() read first. The mount table is now
// read once and again only when a path's device says it changed; an open that runs out of
// descriptors is a ThreeFSError about the file being opened. The child runs under `ulimit -n`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findMount } from '../../../lib/index';
import { DIST_LIB, makeTmpDir } from '../../helpers';

const tmp = makeTmpDir('descriptors');
afterAll(() => tmp.cleanup());

const CHILD = `
const fs = require('node:fs');
const { open, ThreeFSError } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
const dir = process.argv[2];
// Opens /dev/null until the table is full: the next open of anything fails with EMFILE.
function fill() {
  const held = [];
  try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
  return held;
}
const outcome = (p) => p.then((f) => f.close().then(() => 'opened'), (e) => ({ ours: e instanceof ThreeFSError, code: e.code, path: e.path, message: e.message }));
(async () => {
  let held = fill();
  const first = await outcome(open(dir + '/first', 'w'));
  held.forEach((fd) => fs.closeSync(fd));
  const kept = await open(dir + '/kept', 'w');
  held = fill();
  const later = await outcome(open(dir + '/later', 'w'));
  held.forEach((fd) => fs.closeSync(fd));
  await kept.close();
  console.log(JSON.stringify({ first, later }));
  process.exit(0);
})();
`;

describe('descriptors', () => {
  it('out of descriptors, the top-level open() rejects with a ThreeFSError EMFILE naming the file being opened, first call or later', () => {
    const script = join(tmp.dir, 'child.cjs');
    writeFileSync(script, CHILD);
    const r = spawnSync('sh', ['-c', 'ulimit -n 64 && exec "$0" "$@"', process.execPath, script, tmp.dir], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const { first, later } = JSON.parse(r.stdout) as Record<'first' | 'later', { ours: boolean; code: string; path: string; message: string }>;
    // First call: the mount table cannot be read; the error is about the file, and says why.
    expect(first).toMatchObject({ ours: true, code: 'EMFILE', path: join(tmp.dir, 'first') });
    expect(first.message).toContain('/proc/self/mountinfo');
    // Later calls do not read the table again: the open itself is what fails.
    expect(later).toMatchObject({ ours: true, code: 'EMFILE', path: join(tmp.dir, 'later') });
  });

  it('the mount table is read again when a path is on a file system it does not list (a mount made since)', (ctx) => {
    const dir = join(tmp.dir, 'mnt');
    mkdirSync(dir);
    const before = findMount(join(dir, 'x'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', dir], { encoding: 'utf8' });
    if (mounted.status !== 0) ctx.skip(`cannot mount a tmpfs here: ${mounted.stderr.trim() || mounted.error?.message}`);
    try {
      expect(findMount(join(dir, 'x'))).toMatchObject({ mountPoint: dir, fsType: 'tmpfs' });
    } finally {
      spawnSync('umount', [dir]);
    }
    expect(findMount(join(dir, 'x'))?.mountPoint, 'after the umount: the mount it was on before').toBe(before?.mountPoint);
  });
});
