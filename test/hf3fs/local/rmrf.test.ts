// rmrf (lib/hf3fs/rmrf.ts): through 3FS's 3fs-virt/rm-rf on a 3FS mount (here a directory named in
// HF3FS_STANDIN_MOUNTS, whose rm-rf directory records the request as 3FS's FUSE would receive it:
// a symlink to the tree), node:fs otherwise or when 3FS refuses.
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { rmrf } from '../../../lib/hf3fs/rmrf';
import { failure, makeTmpDir } from '../../helpers';

const tmp = makeTmpDir('rmrf');
const savedMounts = process.env.HF3FS_STANDIN_MOUNTS;
afterEach(() => {
  if (savedMounts === undefined) delete process.env.HF3FS_STANDIN_MOUNTS;
  else process.env.HF3FS_STANDIN_MOUNTS = savedMounts;
});
afterAll(() => tmp.cleanup());

/** A directory taken for a 3FS mount (as the stand-in's are), with 3fs-virt and maybe rm-rf in it. */
function fakeMount(name: string, withRmrf: boolean): string {
  mkdirSync(join(tmp.path(name), '3fs-virt', ...(withRmrf ? ['rm-rf'] : [])), { recursive: true });
  const mount = realpathSync(tmp.path(name));
  process.env.HF3FS_STANDIN_MOUNTS = mount;
  return mount;
}

let trees = 0;
function tree(under: string): string {
  const root = join(under, `tree-${trees++}`);
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  writeFileSync(join(root, 'a', 'b', 'f'), 'x');
  writeFileSync(join(root, 'g'), 'y');
  return root;
}

describe('rmrf', () => {
  it('outside 3FS: the tree is removed with node:fs', async () => {
    const t = tree(tmp.dir);
    expect(await rmrf(t)).toBe('fs');
    expect(existsSync(t)).toBe(false);
    expect(await rmrf(t)).toBe('absent');
  });

  it('on a 3FS mount: one symlink in 3fs-virt/rm-rf to the canonical path, and nothing else touched', async () => {
    const mount = fakeMount('mnt', true);
    const t = tree(join(mount, 'jobs'));
    expect(await rmrf(join(mount, 'jobs', '.', t.split('/').pop()!))).toBe('3fs');
    const links = readdirSync(join(mount, '3fs-virt', 'rm-rf'));
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(new RegExp(`^${t.split('/').pop()}-${process.pid}-[0-9a-f]{12}$`));
    expect(readlinkSync(join(mount, '3fs-virt', 'rm-rf', links[0]))).toBe(t);
    // 3FS's meta service would remove it now; the stand-in leaves it for the test to see.
    expect(existsSync(join(t, 'a', 'b', 'f'))).toBe(true);
  });

  it('on a 3FS mount that refuses (no rm-rf directory): falls back to node:fs', async () => {
    const mount = fakeMount('mnt2', false);
    const t = tree(mount);
    expect(await rmrf(t)).toBe('fs');
    expect(existsSync(t)).toBe(false);
  });

  it('a symlink is removed, not its target; a plain file is removed', async () => {
    const t = tree(tmp.dir);
    const link = tmp.path('link');
    symlinkSync(t, link);
    expect(await rmrf(link)).toBe('fs');
    expect(() => lstatSync(link)).toThrow();
    expect(existsSync(join(t, 'g'))).toBe(true);
    expect(await rmrf(join(t, 'g'))).toBe('fs');
    expect(existsSync(join(t, 'g'))).toBe(false);
  });

  it('refuses /, the root of a 3FS mount, and bad paths', async () => {
    expect((await failure(() => rmrf('/'))).code).toBe('ERR_INVALID_ARG_VALUE');
    const mount = fakeMount('mnt3', true);
    expect((await failure(() => rmrf(mount))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(existsSync(join(mount, '3fs-virt'))).toBe(true);
    expect((await failure(() => rmrf(''))).code).toBe('ERR_INVALID_ARG_VALUE');
  });
});
