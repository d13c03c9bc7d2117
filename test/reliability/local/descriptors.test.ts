// Issue 20 item 4: descriptors. Out of descriptors (EMFILE), the top-level open() failed with a
// plain Error about /proc/self/mountinfo, which every open() read first. The mount table is now
// read once and again only when a path's device says it changed; an open that runs out of
// descriptors is a ThreeFSError about the file being opened. The child runs under `ulimit -n`.
// A File with direct 'auto' held 2 descriptors from its open; its O_DIRECT one is now opened by
// the first op that may go direct (or stat()). Oracle: /proc/self/fd.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findMount, KVCache } from '../../../lib/index';
import { DIST_LIB, makeTmpDir, testConnect } from '../../helpers';

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

  it("direct 'auto' holds one descriptor until an op may go O_DIRECT (or stat() asks); 'never' one; 'always' two", async () => {
    const client = testConnect();
    const p = join(tmp.dir, 'lazy');
    writeFileSync(p, Buffer.alloc(16384, 1));
    try {
      const auto = await client.open(p, 'r+');
      expect(descriptorsOf(p), "'auto' after open").toBe(1);
      await auto.write(Buffer.from('abc'), 3); // cannot go O_DIRECT: no second descriptor
      expect(descriptorsOf(p), "'auto' after an unaligned write").toBe(1);
      const io = client.alloc(4096);
      const before = client.metrics().directBytes;
      await auto.read(io, 4096);
      const active = (await auto.stat()).direct.active;
      expect(descriptorsOf(p), "'auto' after an aligned read").toBe(active ? 2 : 1);
      // The op that opened it went O_DIRECT itself.
      expect(client.metrics().directBytes - before).toBe(active ? 4096 : 0);
      await auto.close();
      expect(descriptorsOf(p)).toBe(0);

      const asked = await client.open(p, 'r');
      await asked.stat();
      expect(descriptorsOf(p), "'auto' after stat()").toBe(active ? 2 : 1);
      await asked.close();

      const never = await client.open(p, 'r+', undefined, { direct: 'never' });
      await never.read(io, 0);
      expect(descriptorsOf(p), "'never'").toBe(1);
      await never.close();
      if (active) {
        const always = await client.open(p, 'r+', undefined, { direct: 'always' });
        expect(descriptorsOf(p), "'always' after open").toBe(2);
        await always.close();
      }
      io.free();
    } finally {
      await client.close();
    }
  });

  it('a KVCache holds 2 descriptors per shard, 3 once its slots were read or written', async () => {
    const client = testConnect();
    const root = join(tmp.dir, 'kv');
    const shards = 4;
    try {
      const cache = await KVCache.open({ client, root, namespace: { model: 'fds', dtype: 'bf16' }, pageBytes: 4096, capacityBytes: 4 << 20, ways: 4, shards });
      const under = () => descriptorsUnder(root);
      // Opening reads shard 0's O_DIRECT alignment (stat): its descriptor is open already.
      expect(under(), 'after open').toBeLessThanOrEqual(2 * shards + 1);
      const keys = Array.from({ length: 64 }, (_, i) => `k${i}`);
      await cache.put(keys, keys.map(() => Buffer.alloc(4096, 2)));
      const probe = await client.open(join(root, 'shard-0000.kv'), 'r');
      const active = await probe.stat().then((st) => st.direct.active, () => false);
      await probe.close();
      expect(under(), 'after puts into every shard').toBe((active ? 3 : 2) * shards);
      await cache.close();
      expect(under()).toBe(0);
    } finally {
      await client.close();
    }
  });
});

/** This process's descriptors open on `path`. */
function descriptorsOf(path: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => linkOf(fd) === path).length;
}

function descriptorsUnder(dir: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => linkOf(fd)?.startsWith(`${dir}/`)).length;
}

function linkOf(fd: string): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined; // closed meanwhile (the one readdirSync used)
  }
}
