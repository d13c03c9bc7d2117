// lib/hf3fs/mounts.ts against hand-written mountinfo: field parsing and escapes, the longest mount point
// containing a path, and the rules by which 3FS's USRBIO library decides what is a 3FS mount.
import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalPath, findHf3fsMount, findMount, isWithin, parseMountinfo, unescapeMountField } from '../../../lib/hf3fs/mounts';
import { makeTmpDir } from '../../helpers';

const tmp = makeTmpDir('mounts');
afterAll(() => tmp.cleanup());

// Lines in the kernel's format (proc(5)), including optional fields and an escaped space.
const line = (id: number, root: string, mp: string, type: string, source: string, optional = 'shared:1') =>
  `${id} 1 0:${id} ${root} ${mp} rw,relatime ${optional} - ${type} ${source} rw\n`;

describe('parseMountinfo', () => {
  it('reads every field, with and without optional fields', () => {
    const text =
      '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n' +
      '24 23 0:22 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k\n' +
      '50 24 0:45 / /a rw shared:2 master:3 propagate_from:4 - xfs /dev/sdb rw\n';
    expect(parseMountinfo(text)).toEqual([
      { mountPoint: '/mnt2', root: '/mnt1', fsType: 'ext3', source: '/dev/root', options: ['rw', 'noatime'], superOptions: ['rw', 'errors=continue'], device: '98:0' },
      { mountPoint: '/dev/shm', root: '/', fsType: 'tmpfs', source: 'tmpfs', options: ['rw', 'nosuid', 'nodev'], superOptions: ['rw', 'size=65536k'], device: '0:22' },
      { mountPoint: '/a', root: '/', fsType: 'xfs', source: '/dev/sdb', options: ['rw'], superOptions: ['rw'], device: '0:45' },
    ]);
  });

  it('decodes the octal escapes of space, tab, newline and backslash', () => {
    expect(unescapeMountField('/mnt/my\\040disk\\011x\\012y\\134z')).toBe('/mnt/my disk\tx\ny\\z');
    const [m] = parseMountinfo(line(40, '/sub\\040dir', '/mnt/3fs\\040data', 'fuse.hf3fs', 'hf3fs\\040stage'));
    expect(m.mountPoint).toBe('/mnt/3fs data');
    expect(m.root).toBe('/sub dir');
    expect(m.source).toBe('hf3fs stage');
  });

  it('skips lines without the separator or too short', () => {
    expect(parseMountinfo('garbage\n\n1 2 3 4 5 6 7 8 9 10\n')).toEqual([]);
  });

  it('parses this machine\'s /proc/self/mountinfo, which has a root mount', () => {
    expect(findMount('/')?.mountPoint).toBe('/');
  });
});

describe('findMount', () => {
  const mounts = parseMountinfo(
    line(1, '/', '/', 'ext4', '/dev/vda') +
      line(2, '/', '/data', 'xfs', '/dev/sdb') +
      line(3, '/', '/data/fast', 'tmpfs', 'tmpfs') +
      line(4, '/', '/datax', 'ext4', '/dev/sdc') +
      line(5, '/', '/data/fast', 'ext4', '/dev/sdd'), // stacked over the tmpfs
  );

  it('takes the longest mount point containing the path, component-wise', () => {
    expect(findMount('/data/file', mounts)?.source).toBe('/dev/sdb');
    expect(findMount('/datax/file', mounts)?.source).toBe('/dev/sdc');
    expect(findMount('/data', mounts)?.source).toBe('/dev/sdb');
    expect(findMount('/etc/hosts', mounts)?.source).toBe('/dev/vda');
  });

  it('of stacked mounts, takes the last', () => {
    expect(findMount('/data/fast/x', mounts)?.source).toBe('/dev/sdd');
  });

  it('resolves symlinks and uses the longest existing ancestor of a missing path', () => {
    const real = join(tmp.dir, 'real');
    mkdirSync(real);
    symlinkSync(real, join(tmp.dir, 'link'));
    const base = realpathSync(tmp.dir);
    expect(canonicalPath(join(tmp.dir, 'link', 'not', 'yet'))).toBe(join(base, 'real', 'not', 'yet'));
    const ms = parseMountinfo(line(1, '/', '/', 'ext4', 'root') + line(2, '/', join(base, 'real'), 'xfs', 'target'));
    expect(findMount(join(tmp.dir, 'link', 'new-file'), ms)?.source).toBe('target');
  });

  it('isWithin compares whole components', () => {
    expect(isWithin('/mnt/3fs/a', '/mnt/3fs')).toBe(true);
    expect(isWithin('/mnt/3fs', '/mnt/3fs')).toBe(true);
    expect(isWithin('/mnt/3fsx', '/mnt/3fs')).toBe(false);
    expect(isWithin('/anything', '/')).toBe(true);
  });
});

describe('findHf3fsMount', () => {
  const noEnv = {};

  it('finds a fuse.hf3fs mount, with its 3fs-virt when the directory exists', () => {
    const mp = join(realpathSync(tmp.dir), 'whole');
    mkdirSync(join(mp, '3fs-virt', 'iovs'), { recursive: true });
    const mountinfo = line(1, '/', '/', 'ext4', 'root') + line(2, '/', mp, 'fuse.hf3fs', 'hf3fs.stage');
    const found = findHf3fsMount(join(mp, 'dir', 'file'), { mountinfo, env: noEnv });
    expect(found).toMatchObject({ mountPoint: mp, virtDir: join(mp, '3fs-virt'), standin: false });
    expect(found?.mount?.source).toBe('hf3fs.stage');
    expect(findHf3fsMount('/etc/hosts', { mountinfo, env: noEnv })).toBeUndefined();
  });

  it('reports a fuse.hf3fs mount without 3fs-virt with virtDir undefined', () => {
    const mp = join(realpathSync(tmp.dir), 'novirt');
    mkdirSync(mp);
    const mountinfo = line(2, '/sub', mp, 'fuse.hf3fs', 'hf3fs.stage');
    expect(findHf3fsMount(mp, { mountinfo, env: noEnv })).toMatchObject({ mountPoint: mp, virtDir: undefined });
  });

  it('treats a mount that is .../3fs-virt as its parent (the sub-directory mount case)', () => {
    // /mnt/sub is a sub-directory of 3FS mounted on its own, and 3fs-virt is mounted inside it.
    const mountinfo =
      line(1, '/', '/', 'ext4', 'root') +
      line(2, '/datasets', '/mnt/sub', 'fuse.hf3fs', 'hf3fs.stage') +
      line(3, '/3fs-virt', '/mnt/sub/3fs-virt', 'fuse.hf3fs', 'hf3fs.stage');
    const found = findHf3fsMount('/mnt/sub/a/b', { mountinfo, env: noEnv });
    expect(found?.mountPoint).toBe('/mnt/sub');
    // The entry mounted at /mnt/sub describes it, not the 3fs-virt one.
    expect(found?.mount?.root).toBe('/datasets');
    // A 3fs-virt mount alone also makes its parent a candidate.
    const only = findHf3fsMount('/srv/x/file', { mountinfo: line(3, '/3fs-virt', '/srv/x/3fs-virt', 'fuse.hf3fs', 's'), env: noEnv });
    expect(only?.mountPoint).toBe('/srv/x');
  });

  it('picks the longest of nested 3FS mounts', () => {
    const mountinfo = line(2, '/', '/mnt/a', 'fuse.hf3fs', 'one') + line(3, '/', '/mnt/a/b', 'fuse.hf3fs', 'two');
    expect(findHf3fsMount('/mnt/a/b/c', { mountinfo, env: noEnv })?.mount?.source).toBe('two');
    expect(findHf3fsMount('/mnt/a/bc', { mountinfo, env: noEnv })?.mount?.source).toBe('one');
  });

  it('ignores other file systems unless HF3FS_USRBIO_DONT_CHECKFS_FOR_MP=yes, and then needs 3fs-virt', () => {
    const withVirt = join(realpathSync(tmp.dir), 'anyfs');
    mkdirSync(join(withVirt, '3fs-virt'), { recursive: true });
    const without = join(realpathSync(tmp.dir), 'anyfs-plain');
    mkdirSync(without);
    const mountinfo = line(2, '/', withVirt, 'ext4', 'a') + line(3, '/', without, 'ext4', 'b');
    expect(findHf3fsMount(withVirt, { mountinfo, env: noEnv })).toBeUndefined();
    const env = { HF3FS_USRBIO_DONT_CHECKFS_FOR_MP: 'yes' };
    expect(findHf3fsMount(join(withVirt, 'f'), { mountinfo, env })?.mountPoint).toBe(withVirt);
    expect(findHf3fsMount(join(without, 'f'), { mountinfo, env })).toBeUndefined();
  });

  it('takes stand-in mount points from HF3FS_STANDIN_MOUNTS (colon-separated, symlinks resolved)', () => {
    const a = join(tmp.dir, 'standin-a');
    const b = join(tmp.dir, 'standin-b');
    mkdirSync(join(a, '3fs-virt', 'iovs'), { recursive: true });
    mkdirSync(b);
    symlinkSync(a, join(tmp.dir, 'standin-link'));
    const env = { HF3FS_STANDIN_MOUNTS: `${join(tmp.dir, 'standin-link')}:${b}` };
    const mountinfo = line(1, '/', '/', 'ext4', 'root');
    const fa = findHf3fsMount(join(a, 'x'), { mountinfo, env });
    expect(fa).toMatchObject({ mountPoint: realpathSync(a), virtDir: join(realpathSync(a), '3fs-virt'), standin: true });
    expect(fa?.mount).toBeUndefined();
    expect(findHf3fsMount(join(b, 'x', 'y'), { mountinfo, env })).toMatchObject({ mountPoint: realpathSync(b), virtDir: undefined, standin: true });
    expect(findHf3fsMount(tmp.dir, { mountinfo, env })).toBeUndefined();
  });

  it('prefers a real mount to a stand-in at the same place', () => {
    const mountinfo = line(2, '/', '/mnt/both', 'fuse.hf3fs', 'real');
    const found = findHf3fsMount('/mnt/both/f', { mountinfo, env: { HF3FS_STANDIN_MOUNTS: '/mnt/both' } });
    expect(found).toMatchObject({ standin: false });
    expect(found?.mount?.source).toBe('real');
  });
});
