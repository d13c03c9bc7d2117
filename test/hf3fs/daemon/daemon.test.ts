// The test daemon on its own (README.md here): the mount, 3FS's key grammar and errors at
// registration, the crash cleanup of 3fs-virt/iovs, and that no mount outlives the daemon, however
// it ends. The protocol end to end (rings, semaphores, ioctls) runs in every test of the hf3fs
// project, which is on this daemon's mount. Needs root and /dev/fuse: skipped, saying why, without.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daemonUnavailable, startDaemon, type DaemonMount } from './daemon';

const why = daemonUnavailable();
const root = mkdtempSync(join(tmpdir(), '3fs-daemon-test-'));
const CHUNK = 64 * 1024;
// A command on the mount blocks its caller, and a test's timeout cannot stop a synchronous call:
// a daemon that stops answering fails the test here instead of hanging the run.
const FS_LIMIT_MS = 60_000;
let d: DaemonMount;
const shm: string[] = [];

/** A /dev/shm file of `size` bytes to register, removed after the tests. */
function shmFile(size: number): string {
  const p = `/dev/shm/hf3fs-daemon-test-${process.pid}-${shm.length}`;
  writeFileSync(p, Buffer.alloc(size));
  shm.push(p);
  return p;
}

/** The mounts of type fuse.hf3fs at `mp` in this mount namespace. */
function mounted(mp: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mp && l.includes(' - fuse.hf3fs '));
}

/** symlink(target, iovs/key)'s errno code, '' when it registered. */
function register(target: string, key: string): string {
  try {
    symlinkSync(target, join(d.mount, '3fs-virt', 'iovs', key));
    return '';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code!;
  }
}

/** The iovs directory listed by another process (a listing by this one is a cleanup: see below). */
function listIovs(): string[] {
  return execFileSync('ls', ['-1', join(d.mount, '3fs-virt', 'iovs')], { encoding: 'utf8', timeout: FS_LIMIT_MS }).split('\n').filter((k) => k);
}

const UUID = '0123456789abcdef0123456789abcdef';
const uuid = (i: number) => UUID.slice(0, 31) + i.toString(16);

describe.skipIf(why !== '')(`the test daemon${why ? ` (skipped: ${why})` : ''}`, () => {
  beforeAll(async () => {
    d = await startDaemon(root, { chunk: CHUNK });
  });
  afterAll(async () => {
    await d?.stop();
    for (const p of shm) rmSync(p, { force: true });
    rmSync(root, { recursive: true, force: true });
  });

  it('mounts as fuse.hf3fs with 3fs-virt; files pass through with 3FS\'s attributes', () => {
    expect(mounted(d.mount)).toBe(true);
    expect(readdirSync(join(d.mount, '3fs-virt')).sort()).toEqual(['get-conf', 'iovs', 'rm-rf', 'set-conf']);
    expect(readdirSync(d.mount)).not.toContain('3fs-virt'); // like 3FS: there, but not listed
    writeFileSync(join(d.mount, 'f'), Buffer.alloc(5000, 7));
    expect(readFileSync(join(d.backing, 'f')).equals(Buffer.alloc(5000, 7))).toBe(true);
    const st = statSync(join(d.mount, 'f'));
    expect(st.blksize).toBe(CHUNK); // 3FS: the chunk size
    expect(st.blocks).toBe(Math.ceil(5000 / 512)); // 3FS: from the length
    expect(st.ino).toBe(statSync(join(d.backing, 'f')).ino); // the file id IOs carry
    for (const [name, prio] of [['submit-ios.ph', 0], ['submit-ios', 1], ['submit-ios.pl', 2]] as const) {
      const target = readlinkSync(join(d.mount, '3fs-virt', 'iovs', name));
      expect(target, `priority ${prio}`).toMatch(/^\/dev\/shm\/sem\.hf3fs-submit-ios\.[0-9a-f]{32}$/);
      expect(existsSync(target)).toBe(true);
    }
  });

  it('registers by symlink with 3FS\'s key grammar, and refuses what 3FS refuses', () => {
    const data = shmFile(1 << 20);
    const ring = shmFile(16 + 32 + 96 * 9 + 4096); // hf3fs_ior_size(8)
    expect(register(data, `${uuid(1)}.b65536`)).toBe('');
    expect(register(data, `${UUID.slice(0, 8)}-${UUID.slice(8, 12)}-${UUID.slice(12, 16)}-${UUID.slice(16, 20)}-${UUID.slice(20, 31)}2`)).toBe(''); // hyphenated
    expect(register(ring, `${uuid(3)}.r0.t0.f10`)).toBe(''); // flags in binary
    expect(register(ring, `${uuid(4)}.w8.pl.t5`)).toBe('');
    for (const [key, code] of [
      [`${uuid(1)}.b65536`, 'EEXIST'], // the same key
      [`${uuid(1)}.b4096`, 'EEXIST'], // the same uuid
      ['not-a-uuid', 'EINVAL'],
      [`${uuid(5)}.t0`, 'EINVAL'], // ring attributes on a data iov
      [`${uuid(5)}.f1`, 'EINVAL'],
      [`${uuid(5)}.r-1.t0`, 'EINVAL'], // a negative depth
      [`${uuid(5)}.r9.t0`, 'EINVAL'], // deeper than the ring
      [`${uuid(5)}.r0.t0.f2`, 'EINVAL'], // flags not in binary
      [`${uuid(5)}.b2097152`, 'EINVAL'], // a block larger than the memory
      [`${uuid(5)}.x1`, 'EINVAL'],
    ] as const) {
      expect(register(key.includes('.r') ? ring : data, key), key).toBe(code);
    }
    expect(register('/nowhere', `${uuid(6)}`)).toBe('EINVAL'); // not a regular file
    expect(register(join(d.backing, 'f'), `${uuid(7)}`)).toBe('EACCES'); // not shared memory
    expect(listIovs()).toEqual(expect.arrayContaining([`${uuid(1)}.b65536`, `${uuid(3)}.r0.t0.f10`, `${uuid(4)}.w8.pl.t5`]));
    expect(readlinkSync(join(d.mount, '3fs-virt', 'iovs', `${uuid(1)}.b65536`))).toBe(data);
    // Unregistering takes the exact key: the decimal spelling of the flags is not it.
    expect(() => unlinkSync(join(d.mount, '3fs-virt', 'iovs', `${uuid(3)}.r0.t0.f2`))).toThrow(/ENOENT/);
    unlinkSync(join(d.mount, '3fs-virt', 'iovs', `${uuid(3)}.r0.t0.f10`));
    expect(() => unlinkSync(join(d.mount, '3fs-virt', 'iovs', 'submit-ios'))).toThrow(/EPERM/);
    expect(listIovs()).not.toContain(`${uuid(3)}.r0.t0.f10`);
  });

  it('a process that registers and dies leaves nothing: the iovs directory it held is its cleanup', async () => {
    const data = shmFile(65536);
    // The child holds the iovs directory open, as 3FS's library does, registers, and is killed.
    const script = `const fs = require('fs'); fs.opendirSync(${JSON.stringify(join(d.mount, '3fs-virt', 'iovs'))});
      fs.symlinkSync(${JSON.stringify(data)}, ${JSON.stringify(join(d.mount, '3fs-virt', 'iovs', uuid(8)))});
      process.stdout.write('registered\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (b: Buffer) => b.toString().includes('registered') && resolve()));
    expect(listIovs()).toContain(uuid(8));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(listIovs()).not.toContain(uuid(8));
  });

  it('a listing of 3fs-virt/iovs by the registering thread drops what it registered (3FS\'s cleanup keys on that thread)', () => {
    const data = shmFile(65536);
    expect(register(data, uuid(9))).toBe('');
    expect(listIovs()).toContain(uuid(9));
    readdirSync(join(d.mount, '3fs-virt', 'iovs')); // this thread opens and closes the directory
    expect(listIovs()).not.toContain(uuid(9));
  });

  it('rm-rf removes a tree on this mount by symlink; paths elsewhere are refused', () => {
    execFileSync('mkdir', ['-p', join(d.mount, 'tree', 'a', 'b')], { timeout: FS_LIMIT_MS });
    writeFileSync(join(d.mount, 'tree', 'a', 'b', 'f'), 'x');
    symlinkSync(join(d.mount, 'tree'), join(d.mount, '3fs-virt', 'rm-rf', 'tree'));
    expect(existsSync(join(d.backing, 'tree'))).toBe(false);
    expect(() => symlinkSync('/etc', join(d.mount, '3fs-virt', 'rm-rf', 'etc'))).toThrow(/EINVAL/);
  });
});

/** The daemon's three submission semaphores, as its submit-ios symlinks name them. */
function semaphores(mount: string): string[] {
  return ['submit-ios.ph', 'submit-ios', 'submit-ios.pl'].map((name) => readlinkSync(join(mount, '3fs-virt', 'iovs', name)));
}

describe.skipIf(why !== '')('no mount outlives the daemon', () => {
  it('stop() unmounts; a killed server is unmounted by its supervisor; neither leaves a semaphore', async () => {
    const parent = mkdtempSync(join(tmpdir(), '3fs-daemon-test-'));
    const a = await startDaemon(join(parent, 'a'));
    expect(mounted(a.mount)).toBe(true);
    const semsA = semaphores(a.mount);
    expect(semsA.every((s) => existsSync(s))).toBe(true);
    await a.stop();
    expect(mounted(a.mount)).toBe(false);
    expect(semsA.filter((s) => existsSync(s))).toEqual([]);
    const b = await startDaemon(join(parent, 'b'));
    const semsB = semaphores(b.mount);
    // The supervisor's one child, from its task's children list: pgrep reads every process's
    // cmdline, and stalled behind one whose memory map was busy (60 s, in a loaded CI run).
    const server = Number(readFileSync(`/proc/${b.pid}/task/${b.pid}/children`, 'utf8').trim());
    expect(server).toBeGreaterThan(0);
    process.kill(server, 'SIGKILL');
    await b.stop(); // returns once the supervisor is gone, which it is only after unmounting
    expect(mounted(b.mount)).toBe(false);
    expect(semsB.filter((s) => existsSync(s))).toEqual([]); // the killed server's, removed by its supervisor
    rmSync(parent, { recursive: true, force: true });
  });
});
