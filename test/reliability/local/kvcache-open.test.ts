// Issue 20 item 5: KVCache.open's failures are ThreeFSErrors with the path: a meta.json of `null`
// (a TypeError before), a root that is a regular file (ENOTDIR), a cache the user may not read
// (EACCES), a file system too small for the capacity (refused at creation, nothing left behind:
// before, the cache opened and every put failed with ENOSPC), and a capacity other than the cache's
// (said in capacityBytes, not in sets).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVCache, ThreeFSError, type Client, type KVCacheOptions } from '../../../lib/index';
import { DIST_LIB, failure, makeTmpDir, testConnect } from '../../helpers';

const tmp = makeTmpDir('kvcache-open');
let client: Client;
beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client.close();
  tmp.cleanup();
});

const NS = { model: 'open-errors', dtype: 'bf16' };
const options = (root: string, capacityBytes = 8 << 20): KVCacheOptions => ({ client, root, namespace: NS, pageBytes: 64 << 10, capacityBytes });

describe('KVCache.open failures', () => {
  it('meta.json of null, an array or a number: ERR_KVCACHE_MISMATCH naming meta.json, not a TypeError', async () => {
    for (const text of ['null', '[]', '7']) {
      const root = tmp.path(`meta-${text}`);
      mkdirSync(root);
      writeFileSync(join(root, 'meta.json'), text);
      const e = await failure(() => KVCache.open(options(root)));
      expect(e).toMatchObject({ code: 'ERR_KVCACHE_MISMATCH', path: join(root, 'meta.json') });
    }
  });

  it('a root that is a regular file: ENOTDIR with the path', async () => {
    const root = tmp.path('a-file');
    writeFileSync(root, 'not a directory');
    const e = await failure(() => KVCache.open(options(root)));
    expect(e).toMatchObject({ code: 'ENOTDIR', path: join(root, 'meta.json') });
  });

  it("a cache of another user: EACCES with the path", (ctx) => {
    const root = tmp.path('private');
    const script = tmp.path('open-private.cjs');
    writeFileSync(script, `
      const { KVCache, ThreeFSError } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
      KVCache.open({ root: ${JSON.stringify(root)}, namespace: ${JSON.stringify(NS)}, pageBytes: 65536, capacityBytes: 8 << 20 })
        .then(() => console.log(JSON.stringify({ opened: true })), (e) => console.log(JSON.stringify({ ours: e instanceof ThreeFSError, code: e.code, path: e.path })));
    `);
    mkdirSync(root, { mode: 0o700 });
    chmodSync(tmp.dir, 0o755);
    const asOther = process.getuid?.() === 0 ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'] : [];
    if (asOther.length === 0) chmodSync(root, 0); // not root: the owner without permission stands for another user
    const r = spawnSync(asOther[0] ?? process.execPath, [...asOther.slice(1), ...(asOther.length ? [process.execPath] : []), script], { encoding: 'utf8' });
    chmodSync(root, 0o700);
    if (r.status !== 0 || r.stdout.trim() === '') ctx.skip(`the child could not run as another user: ${r.stderr.trim().split('\n')[0]}`);
    expect(JSON.parse(r.stdout)).toEqual({ ours: true, code: 'EACCES', path: join(root, 'meta.json') });
  });

  it('a capacity larger than the file system: ENOSPC at creation, nothing left behind (a 1 MiB tmpfs)', async (ctx) => {
    const mnt = tmp.path('small');
    mkdirSync(mnt);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', mnt], { encoding: 'utf8' });
    if (mounted.status !== 0) ctx.skip(`cannot mount a tmpfs here: ${mounted.stderr.trim() || mounted.error?.message}`);
    try {
      const root = join(mnt, 'cache');
      const e = await failure(() => KVCache.open(options(root, 64 << 20)));
      expect(e).toBeInstanceOf(ThreeFSError);
      expect(e).toMatchObject({ code: 'ENOSPC', path: root });
      expect(e.message).toContain('capacityBytes');
      expect(readdirSync(mnt), 'no cache directory, shard or meta.json.tmp-* left').toEqual([]);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('another capacity than the cache was made with: the error speaks of capacityBytes', async () => {
    const root = tmp.path('capacity');
    const made = await KVCache.open({ ...options(root, 8 << 20), shards: 1 });
    await made.close();
    const e = await failure(() => KVCache.open({ ...options(root, 2 << 20), shards: 1 }));
    expect(e.code).toBe('ERR_KVCACHE_MISMATCH');
    expect(e.message).toMatch(/was made with capacityBytes \d+ \(\d+ sets of \d+ bytes\), not 2097152/);
    expect(existsSync(join(root, 'meta.json'))).toBe(true);
  });
});
