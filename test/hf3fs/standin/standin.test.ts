// Tests of the USRBIO stand-in itself (test/hf3fs/standin/usrbio_standin.cc): every rule of its contract
// must be able to fail. Node cannot call the C ABI, so each test scripts harness.c (one command per
// line, one JSON line back per command) and checks the answers; node:fs is the oracle for data.
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, makeTmpDir, seedFor } from '../../helpers';
import { buildHarness, buildStandin } from './build';

const E = constants.errno;
const tmp = makeTmpDir('standin');
let LIB = '';
let HARNESS = '';
let MNT = '';     // a mount: listed in HF3FS_STANDIN_MOUNTS and holding 3fs-virt/iovs
let OUTSIDE = ''; // holds 3fs-virt/iovs too, but is not listed

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Out = { cmd: string; ret?: number; [key: string]: any };
interface Run {
  outs: Out[];
  by: Record<string, Out>; // answers of lines written "label: command"
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function run(lines: string[], env: Record<string, string> = {}): Run {
  const labels: (string | undefined)[] = [];
  const cmds = lines.map((line) => {
    const m = /^(\w+):\s+(.*)$/.exec(line);
    labels.push(m?.[1]);
    return m ? m[2] : line;
  });
  const r = spawnSync(HARNESS, [LIB], {
    input: cmds.join('\n') + '\n',
    encoding: 'utf8',
    env: { ...process.env, HF3FS_STANDIN_MOUNTS: MNT, ...env },
    timeout: 30_000,
  });
  // Only newline-terminated lines are answers: a command cut short by an abort can leave a partial
  // line behind (sanitizer runtimes flush stdio on abort).
  const outs: Out[] = r.stdout.split('\n').slice(0, -1).map((l) => JSON.parse(l) as Out);
  const by: Record<string, Out> = {};
  outs.forEach((o, i) => {
    const label = labels[i];
    if (label) by[label] = o;
  });
  return { outs, by, status: r.status, signal: r.signal, stderr: r.stderr };
}

/** Runs a script that must finish cleanly; returns the labelled answers. */
function ok(lines: string[], env: Record<string, string> = {}): Record<string, Out> {
  const r = run(lines, env);
  expect(r.stderr).toBe('');
  expect(r.signal).toBeNull();
  expect(r.status).toBe(0);
  expect(r.outs.length).toBe(lines.length);
  return r.by;
}

/** Runs a script the stand-in must abort; returns its stderr. */
function aborts(lines: string[], env: Record<string, string> = {}): string {
  const r = run(lines, env);
  expect(r.signal).toBe('SIGABRT');
  return r.stderr;
}

function file(name: string, data: Buffer): string {
  const p = join(MNT, name);
  writeFileSync(p, data);
  return p;
}

const uuidText = (hex: string) =>
  `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;

const LIVE_ZERO = { regFds: 0, iovs: 0, rings: 0 };

beforeAll(() => {
  LIB = buildStandin();
  HARNESS = buildHarness();
  MNT = realpathSync(tmp.dir) + '/mnt';
  OUTSIDE = realpathSync(tmp.dir) + '/outside';
  mkdirSync(join(MNT, '3fs-virt', 'iovs'), { recursive: true });
  mkdirSync(join(OUTSIDE, '3fs-virt', 'iovs'), { recursive: true });
});

// Scripts that abort (and the first iov test) leave iovs behind like a crashed process: follow their
// symlinks in every 3fs-virt/iovs under the temp dir to remove the /dev/shm files too.
function reapLeftoverIovs(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isSymbolicLink()) {
      const target = readlinkSync(p);
      if (target.startsWith('/dev/shm/hf3fs-iov-')) rmSync(target, { force: true });
      rmSync(p, { force: true });
    } else if (entry.isDirectory()) {
      reapLeftoverIovs(p);
    }
  }
}

afterAll(() => {
  reapLeftoverIovs(tmp.dir);
  tmp.cleanup();
});

describe('mount detection', () => {
  it('hf3fs_extract_mount_point canonicalises and picks the longest listed mount', () => {
    const nested = join(MNT, 'sub');
    mkdirSync(join(nested, '3fs-virt', 'iovs'), { recursive: true });
    mkdirSync(join(MNT, 'plain'), { recursive: true });
    const env = { HF3FS_STANDIN_MOUNTS: `${MNT}:${nested}:${join(MNT, 'plain')}:relative/ignored` };
    const by = ok(
      [
        `deep: extract ${MNT}/a/../does/not/exist 4096`,
        `small: extract ${MNT}/x ${MNT.length}`,
        `exact: extract ${MNT}/x ${MNT.length + 1}`,
        `nested: extract ${nested}/y/z 4096`,
        `plain: extract ${MNT}/plain/q 4096`,
        `out: extract ${OUTSIDE}/x 4096`,
      ],
      env,
    );
    expect(by.deep).toMatchObject({ ret: MNT.length + 1, mp: MNT });
    expect(by.small).toMatchObject({ ret: MNT.length + 1, mp: '' }); // too small: not written
    expect(by.exact).toMatchObject({ ret: MNT.length + 1, mp: MNT });
    expect(by.nested).toMatchObject({ ret: nested.length + 1, mp: nested });
    expect(by.plain).toMatchObject({ ret: MNT.length + 1, mp: MNT }); // listed, but no 3fs-virt/iovs
    expect(by.out.ret).toBe(-1);
  });

  it('hf3fs_is_hf3fs and hf3fs_reg_fd accept only files on a mount', () => {
    const inside = file('reg', Buffer.alloc(10));
    const outside = join(OUTSIDE, 'reg');
    writeFileSync(outside, Buffer.alloc(10));
    const by = ok([
      `open in ${inside} r`,
      `open out ${outside} r`,
      `isIn: ishf3fs in`,
      `isOut: ishf3fs out`,
      `reg: regfd in`,
      `again: regfd in`,
      `regOut: regfd out`,
      `neg: regfdnum -1`,
      `huge: regfdnum 1073741824`,
      `closed: regfdnum 1000`,
      `s1: stats`,
      `deregfd in`,
      `reg2: regfd in`,
      `deregfd in`,
      `s2: stats`,
    ]);
    expect(by.isIn.ret).toBe(1);
    expect(by.isOut.ret).toBe(0);
    expect(by.reg.ret).toBeLessThanOrEqual(0);
    expect(by.again.ret).toBe(E.EINVAL);
    expect(by.regOut.ret).toBe(E.EBADF);
    expect(by.neg.ret).toBe(E.EBADF);
    expect(by.huge.ret).toBe(E.EBADF);
    expect(by.closed.ret).toBe(E.EBADF);
    expect(by.s1.stats.regFds).toBe(1);
    expect(by.reg2.ret).toBeLessThanOrEqual(0);
    expect(by.s2.stats.regFds).toBe(0);
  });
});

describe('iovs', () => {
  it('hf3fs_iovcreate links /dev/shm/hf3fs-iov-<uuid> as 3fs-virt/iovs/<id>[.b<bs>]', () => {
    const iovs = join(MNT, '3fs-virt', 'iovs');
    // The process exits without destroying, like a crashed one: the files stay for us to inspect.
    const by = ok([`v: iovcreate v ${MNT} 65536 4096`, `w: iovcreate w ${MNT} 8192 0`, `s: stats`]);
    expect(by.v).toMatchObject({ ret: 0, size: 65536, blockSize: 4096, mp: MNT });
    expect(by.w).toMatchObject({ ret: 0, size: 8192, blockSize: 0, mp: MNT });
    expect(by.s.stats.iovs).toBe(2);
    const links = [join(iovs, `${uuidText(by.v.id)}.b4096`), join(iovs, uuidText(by.w.id))]; // no .b0
    const sizes = links.map((l) => {
      const target = readlinkSync(l);
      expect(target).toMatch(/^\/dev\/shm\/hf3fs-iov-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      return statSync(target).size;
    });
    expect(sizes).toEqual([65536, 8192]);
    reapLeftoverIovs(iovs);
  });

  it('iovunlink removes the /dev/shm file (the mapping survives); iovdestroy removes the symlink', () => {
    const iovs = join(MNT, '3fs-virt', 'iovs');
    const before = new Set<string>(ok([`ls: ls ${iovs}`]).ls.entries);
    const by = ok([
      `v: iovcreate v ${MNT} 16384 4096`,
      `ls: ls ${iovs}`,
      `shm1: ls /dev/shm`,
      `sethex v 16380 deadbeef`,
      `iovunlink v`,
      `shm2: ls /dev/shm`,
      `ls2: ls ${iovs}`,
      `data: gethex v 16380 4`,
      `iovunlink v`,
      `iovdestroy v`,
      `ls3: ls ${iovs}`,
      `s: stats`,
    ]);
    const added = (by.ls.entries as string[]).filter((e) => !before.has(e));
    expect(added).toEqual([`${uuidText(by.v.id)}.b4096`]);
    const gone = (by.shm1.entries as string[]).filter((e) => !(by.shm2.entries as string[]).includes(e));
    expect(gone).toHaveLength(1); // exactly our /dev/shm file
    expect(gone[0]).toMatch(/^hf3fs-iov-/);
    expect(by.ls2.entries).toContain(added[0]); // the registration (symlink) stays
    expect(by.data.hex).toBe('deadbeef'); // the mapping stays valid
    expect(by.ls3.entries).not.toContain(added[0]); // iovdestroy removed the symlink
    expect(by.s.stats.iovs).toBe(0);
  });

  it('hf3fs_iovcreate rejects non-mounts, block_size > size and long mount paths', () => {
    const by = ok([
      `out: iovcreate a ${OUTSIDE} 4096 0`,
      `missing: iovcreate b ${MNT}/nope 4096 0`,
      `sub: iovcreate c ${MNT}/3fs-virt 4096 0`,
      `bs: iovcreate d ${MNT} 4096 8192`,
      `long: iovcreate e /${'x'.repeat(300)} 4096 0`,
      `s: stats`,
    ]);
    expect(by.out.ret).toBe(-E.ENOENT);
    expect(by.missing.ret).toBe(-E.ENOENT);
    expect(by.sub.ret).toBe(-E.ENOENT);
    expect(by.bs.ret).toBe(-E.EIO);
    expect(by.long.ret).toBe(-E.EINVAL);
    expect(by.s.stats.iovs).toBe(0);
  });

  it('iovwrap only fills the struct; iovdestroy on it does nothing; iovopen is not modelled', () => {
    const p = file('wrap', new Rng(seedFor('wrap')).bytes(4096));
    const by = ok([
      `w: iovwrap w ${MNT} 4096 0`,
      `s1: stats`,
      `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `prep r w r 0 f 0 4096 1`,
      `wait: wait r 1 1 5000`,
      `data: gethex w 0 4096`,
      `iovdestroy w`,
      `iovdestroy w`,
      `iordestroy r`,
      `deregfd f`,
      `open: iovopen o ${MNT} 4096 0`,
    ]);
    expect(by.w.ret).toBe(0);
    expect(by.s1.stats.iovs).toBe(0);
    expect(by.wait.cqes[0].result).toBe(4096);
    expect(by.data.hex).toBe(readFileSync(p).toString('hex'));
    expect(by.open.ret).toBe(-E.ENOSYS);
  });
});

describe('rings', () => {
  it('hf3fs_iorcreate* funnel into one checked implementation', () => {
    const by = ok([
      `size: iorsize 10`,
      `c1: iorcreate a 1 ${MNT} 8 r 0 0 0 0`,
      `c2: iorcreate b 2 ${MNT} 8 w 4 -1 0 0`,
      `c3: iorcreate c 3 ${MNT} 8 r -2 1 7 0`,
      `c4: iorcreate d 4 ${MNT} 8 r 8 0 5 2`,
      `n: entries d`,
      `s1: stats`,
      `zero: iorcreate e 4 ${MNT} 0 r 0 0 0 0`,
      `depth: iorcreate e 4 ${MNT} 8 r 9 0 0 0`,
      `timeout: iorcreate e 4 ${MNT} 8 r 0 0 -1 0`,
      `out: iorcreate e 4 ${OUTSIDE} 8 r 0 0 0 0`,
      `long: iorcreate e 4 /${'y'.repeat(300)} 8 r 0 0 0 0`,
      `iordestroy a`,
      `iordestroy b`,
      `iordestroy c`,
      `iordestroy d`,
      `s2: stats`,
    ]);
    expect(by.size.ret).toBe(16 + 32 + 96 * 11 + 4096);
    expect(by.c1).toMatchObject({ ret: 0, forRead: true, ioDepth: 0, priority: 0, timeout: 0, flags: 0, mp: MNT });
    expect(by.c2).toMatchObject({ ret: 0, forRead: false, ioDepth: 4, priority: -1 });
    expect(by.c3).toMatchObject({ ret: 0, ioDepth: -2, priority: 1, timeout: 7 });
    expect(by.c4).toMatchObject({ ret: 0, ioDepth: 8, priority: 0, timeout: 5, flags: 2 });
    expect(by.n.ret).toBe(8);
    expect(by.s1.stats.rings).toBe(4);
    expect(by.zero.ret).toBe(-E.EINVAL);
    expect(by.depth.ret).toBe(-E.EINVAL);
    expect(by.timeout.ret).toBe(-E.EINVAL);
    expect(by.out.ret).toBe(-E.ENOENT);
    expect(by.long.ret).toBe(-E.EINVAL);
    expect(by.s2.stats.rings).toBe(0);
  });
});

describe('hf3fs_prep_io', () => {
  it('checks direction, length, iov range, block crossing, registration and access mode', () => {
    const p = file('prep', Buffer.alloc(65536, 1));
    const by = ok([
      `iovcreate v ${MNT} 16384 4096`,
      `iovcreate flat ${MNT} 16384 0`,
      `iorcreate r 4 ${MNT} 16 r 0 0 0 0`,
      `iorcreate w 4 ${MNT} 16 w 0 0 0 0`,
      `open ro ${p} r`,
      `open wo ${p} w`,
      `open rw ${p} rw`,
      `open unreg ${p} r`,
      `regfd ro`,
      `regfd wo`,
      `regfd rw`,
      `dir: prep r v w 0 ro 0 10 0`,
      `dir2: prep w v r 0 wo 0 10 0`,
      `zero: prep r v r 0 ro 0 0 0`,
      `past: prep r v r 16300 ro 0 100 0`,
      `before: prep r v r -1 ro 0 10 0`,
      `huge: prep r v r 0 ro 0 16385 0`,
      `cross: prep r v r 4000 ro 0 200 0`,
      `unreg: prep r v r 0 unreg 0 10 0`,
      `raw: prep r v r 0 9999 0 10 0`,
      `eaccR: prep r v r 0 wo 0 10 0`,
      `eaccW: prep w v w 0 ro 0 10 0`,
      `okBlock: prep r v r 4096 ro 0 4096 1`,
      `okFlat: prep r flat r 4000 ro 0 200 2`,
      `okDup: prep r v r 0 ~ro 0 10 3`,
      `okRw: prep r v r 8192 rw 0 10 4`,
      `okW: prep w v w 12288 rw 0 10 5`,
      `okWo: prep w v w 12288 ~wo 0 10 6`,
      `wr: wait r 16 4 5000`,
      `ww: wait w 16 2 5000`,
      `iordestroy r`,
      `iordestroy w`,
      `iovdestroy v`,
      `iovdestroy flat`,
      `deregfd ro`,
      `deregfd wo`,
      `deregfd rw`,
      `s: stats`,
    ]);
    for (const k of ['dir', 'dir2', 'zero', 'past', 'before', 'huge', 'cross']) expect(by[k].ret, k).toBe(-E.EINVAL);
    expect(by.unreg.ret).toBe(-E.EBADF);
    expect(by.raw.ret).toBe(-E.EBADF);
    expect(by.eaccR.ret).toBe(-E.EACCES);
    expect(by.eaccW.ret).toBe(-E.EACCES);
    for (const k of ['okBlock', 'okFlat', 'okDup', 'okRw', 'okW', 'okWo']) expect(by[k].ret, k).toBeGreaterThanOrEqual(0);
    expect(new Set([by.okBlock.ret, by.okFlat.ret, by.okDup.ret, by.okRw.ret]).size).toBe(4);
    expect(by.wr.ret).toBe(4);
    expect(by.ww.ret).toBe(2);
    expect(by.s.stats).toMatchObject(LIVE_ZERO);
  });

  it('returns -EAGAIN on a full ring until wait_for_ios reaps a slot', () => {
    const p = file('full', Buffer.alloc(8192, 7));
    const by = ok([
      `iovcreate v ${MNT} 8192 0`,
      `iorcreate r 4 ${MNT} 2 r 0 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `a: prep r v r 0 f 0 100 1`,
      `b: prep r v r 4096 f 0 100 2`,
      `full: prep r v r 200 f 0 100 3`,
      `submit r`,
      `sleep 20`,
      `stillFull: prep r v r 200 f 0 100 3`, // completed but not reaped: still full
      `w1: wait r 1 1 5000`,
      `c: prep r v r 200 f 0 100 3`,
      `w2: wait r 2 2 5000`,
      `iordestroy r`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect([by.a.ret, by.b.ret].sort()).toEqual([0, 1]);
    expect(by.full.ret).toBe(-E.EAGAIN);
    expect(by.stillFull.ret).toBe(-E.EAGAIN);
    expect(by.w1.ret).toBe(1);
    expect(by.c.ret).toBe(by.w1.cqes[0].index); // the reaped slot is the free one
    expect(by.w2.ret).toBe(2);
  });

  it('HF3FS_STANDIN_FAIL_PREP fails prep_io with -errno', () => {
    const p = file('failprep', Buffer.alloc(100));
    const by = ok([
      `iovcreate v ${MNT} 4096 0`,
      `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `setenv HF3FS_STANDIN_FAIL_PREP 5`,
      `bad: prep r v r 0 f 0 10 0`,
      `unsetenv HF3FS_STANDIN_FAIL_PREP`,
      `good: prep r v r 0 f 0 10 0`,
      `wait r 1 1 5000`,
      `iordestroy r`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect(by.bad.ret).toBe(-E.EIO);
    expect(by.good.ret).toBe(0);
  });
});

describe('execution and completion', () => {
  it('reads the right bytes (node:fs oracle), short at EOF, completing out of submission order', () => {
    const rng = new Rng(seedFor('standin-read'));
    const data = rng.bytes(40_000);
    const p = file('read', data);
    // 8 reads, one batch (io_depth 8), disjoint buffers; the last two at and past EOF.
    const ios = Array.from({ length: 6 }, (_, i) => ({ buf: i * 8192, off: rng.int(0, 30_000), len: rng.int(1, 8192) }));
    ios.push({ buf: 6 * 8192, off: 38_000, len: 4096 }, { buf: 7 * 8192, off: 50_000, len: 100 });
    const script = [
      `iovcreate v ${MNT} 65536 8192`,
      `iorcreate r 4 ${MNT} 16 r 8 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      ...ios.map((io, i) => `p${i}: prep r v r ${io.buf} f ${io.off} ${io.len} ${1000 + i}`),
      `submit r`,
      `w: wait r 16 8 5000`,
      ...ios.map((io, i) => `d${i}: gethex v ${io.buf} ${io.len}`),
      `iordestroy r`,
      `iovdestroy v`,
      `deregfd f`,
      `s: stats`,
    ];
    const by = ok(script);
    const cqes = by.w.cqes as { index: number; result: number; userdata: number; reserved: number }[];
    expect(by.w.ret).toBe(8);
    const slots = ios.map((_, i) => by[`p${i}`].ret as number);
    const order = cqes.map((c) => c.index);
    expect(order).not.toEqual(slots); // not submission order
    expect([...order].sort((a, b) => a - b)).toEqual([...slots].sort((a, b) => a - b));
    for (const c of cqes) {
      const i = c.userdata - 1000;
      expect(c.index).toBe(slots[i]);
      expect(c.reserved).toBe(0);
      const want = data.subarray(ios[i].off, ios[i].off + ios[i].len);
      expect(c.result, `io ${i}`).toBe(want.length);
      expect(by[`d${i}`].hex.slice(0, want.length * 2)).toBe(want.toString('hex'));
    }
    expect(cqes.find((c) => c.userdata === 1006)!.result).toBe(2000); // short read at EOF
    expect(cqes.find((c) => c.userdata === 1007)!.result).toBe(0); // past EOF
    expect(by.s.stats).toMatchObject({ ...LIVE_ZERO, prepped: 8, started: 8, completed: 8, reaped: 8, submitted: 1 });
  });

  it('writes land in the file', () => {
    const p = file('write', Buffer.alloc(0));
    const rng = new Rng(seedFor('standin-write'));
    const chunks = [0, 1, 2, 3].map((i) => ({ off: i * 3000 + 17, data: rng.bytes(3000) }));
    const by = ok([
      `iovcreate v ${MNT} 16384 4096`,
      `iorcreate w 4 ${MNT} 4 w 0 0 0 0`,
      `open f ${p} w`,
      `regfd f`,
      ...chunks.map((c, i) => `sethex v ${i * 4096} ${c.data.toString('hex')}`),
      ...chunks.map((c, i) => `prep w v w ${i * 4096} f ${c.off} ${c.data.length} ${i}`),
      `submit w`,
      `w: wait w 4 4 5000`,
      `iordestroy w`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect(by.w.ret).toBe(4);
    for (const c of by.w.cqes) expect(c.result).toBe(3000);
    const got = readFileSync(p);
    expect(got.length).toBe(4 * 3000 + 17);
    for (const c of chunks) expect(got.subarray(c.off, c.off + 3000).equals(c.data)).toBe(true);
  });

  it('picks up prepared IOs without submit (the daemon scans periodically)', () => {
    const p = file('nosubmit', Buffer.alloc(100, 3));
    const by = ok([
      `iovcreate v ${MNT} 4096 0`,
      `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `prep r v r 0 f 0 100 9`,
      `w: wait r 1 1 5000`,
      `iordestroy r`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect(by.w.ret).toBe(1);
    expect(by.w.cqes[0].result).toBe(100);
    expect(by.w.ms).toBeLessThan(1000);
  });

  it('io_depth > 0 holds IOs until io_depth are queued', () => {
    const p = file('depth', Buffer.alloc(100, 3));
    const by = ok([
      `iovcreate v ${MNT} 4096 0`,
      `iorcreate r 4 ${MNT} 4 r 2 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `prep r v r 0 f 0 10 1`,
      `submit r`,
      `w1: wait r 4 1 100`,
      `prep r v r 100 f 0 10 2`,
      `submit r`,
      `w2: wait r 4 2 5000`,
      `iordestroy r`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect(by.w1.ret).toBe(0);
    expect(by.w2.ret).toBe(2);
  });

  it('fails every IO of a read batch with overlapping buffers with -EIO (writes are not checked)', () => {
    const p = file('overlap', Buffer.alloc(16384, 5));
    const by = ok([
      `iovcreate v ${MNT} 16384 0`,
      `iorcreate r 4 ${MNT} 4 r 2 0 0 0`,
      `iorcreate w 4 ${MNT} 4 w 2 0 0 0`,
      `open f ${p} rw`,
      `regfd f`,
      `prep r v r 0 f 0 4096 1`,
      `prep r v r 2048 f 8192 4096 2`,
      `submit r`,
      `bad: wait r 4 2 5000`,
      `prep r v r 0 f 0 4096 3`,
      `prep r v r 4096 f 8192 4096 4`,
      `submit r`,
      `good: wait r 4 2 5000`,
      `prep w v w 0 f 0 4096 5`,
      `prep w v w 2048 f 8192 4096 6`,
      `submit w`,
      `writes: wait w 4 2 5000`,
      `iordestroy r`,
      `iordestroy w`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    expect(by.bad.cqes.map((c: Out) => c.result)).toEqual([-E.EIO, -E.EIO]);
    expect(by.good.cqes.map((c: Out) => c.result)).toEqual([4096, 4096]);
    expect(by.writes.cqes.map((c: Out) => c.result)).toEqual([4096, 4096]);
  });

  it('HF3FS_STANDIN_FAIL_IO and HF3FS_STANDIN_DELAY_US', () => {
    const p = file('faults', Buffer.alloc(100, 3));
    const by = ok(
      [
        `iovcreate v ${MNT} 4096 0`,
        `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
        `open f ${p} r`,
        `regfd f`,
        `prep r v r 0 f 0 10 1`,
        `submit r`,
        `early: wait r 4 1 50`,
        `late: wait r 4 1 5000`,
        `setenv HF3FS_STANDIN_FAIL_IO 28`,
        `prep r v r 0 f 0 10 2`,
        `submit r`,
        `failed: wait r 4 1 5000`,
        `iordestroy r`,
        `iovdestroy v`,
        `deregfd f`,
      ],
      { HF3FS_STANDIN_DELAY_US: '300000' },
    );
    expect(by.early.ret).toBe(0);
    expect(by.late.ret).toBe(1);
    expect(by.late.cqes[0].result).toBe(10);
    expect(by.failed.cqes[0].result).toBe(-E.ENOSPC);
  });

  it('iordestroy runs what was prepared before it stops', () => {
    const p = file('flush', Buffer.alloc(100, 3));
    const by = ok(
      [
        `iovcreate v ${MNT} 4096 0`,
        `iorcreate r 4 ${MNT} 4 r 4 0 0 0`, // io_depth 4: these two would never run by themselves
        `open f ${p} r`,
        `regfd f`,
        `prep r v r 0 f 0 10 1`,
        `prep r v r 10 f 0 10 2`,
        `iordestroy r`,
        `iovdestroy v`,
        `deregfd f`,
        `s: stats`,
      ],
      { HF3FS_STANDIN_DELAY_US: '20000' },
    );
    expect(by.s.stats).toMatchObject({ ...LIVE_ZERO, prepped: 2, completed: 2, reaped: 0 });
  });
});

describe('hf3fs_wait_for_ios', () => {
  it('times out with 0, polls with min_results 0 and validates its arguments', () => {
    const by = ok([
      `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
      `t: wait r 4 1 60`,
      `poll: wait r 4 0 -1`,
      `cqec0: wait r 0 0 10`,
      `minBig: wait r 2 3 10`,
      `minNeg: wait r 2 -1 10`,
      `sub: submit r`,
      `subNull: submit -`,
      `iordestroy r`,
    ]);
    expect(by.t.ret).toBe(0);
    expect(by.t.ms).toBeGreaterThanOrEqual(50);
    expect(by.poll.ret).toBe(0);
    expect(by.cqec0.ret).toBe(-E.EINVAL);
    expect(by.minBig.ret).toBe(-E.EINVAL);
    expect(by.minNeg.ret).toBe(-E.EINVAL);
    expect(by.sub.ret).toBe(0);
    expect(by.subNull.ret).toBe(-E.EINVAL);
  });
});

describe('holes, punchhole, hardlink', () => {
  it('FORBID_READ_HOLES turns a hole inside the file into -ENODATA', () => {
    const p = file('sparse', Buffer.alloc(4096, 9));
    truncateSync(p, 16384); // [4096, 16384) is a hole
    const by = ok([
      `iovcreate v ${MNT} 65536 0`,
      `iorcreate h 4 ${MNT} 8 r 0 0 0 2`,
      `iorcreate z 4 ${MNT} 8 r 0 0 0 0`,
      `open f ${p} r`,
      `regfd f`,
      `prep h v r 0 f 0 4096 1`,
      `prep h v r 4096 f 0 8192 2`,
      `prep h v r 16384 f 16384 4096 3`,
      `submit h`,
      `h: wait h 8 3 5000`,
      `sethex v 20480 ffffffff`,
      `prep z v r 20480 f 0 8192 4`,
      `submit z`,
      `z: wait z 8 1 5000`,
      `zeros: gethex v 24576 4`,
      `iordestroy h`,
      `iordestroy z`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    const res = Object.fromEntries(by.h.cqes.map((c: Out) => [c.userdata, c.result]));
    expect(res).toEqual({ 1: 4096, 2: -E.ENODATA, 3: 0 });
    expect(by.z.cqes[0].result).toBe(8192); // without the flag: zero-filled
    expect(by.zeros.hex).toBe('00000000');
  });

  it('hf3fs_punchhole checks everything first, then punches chunk-aligned holes', () => {
    const p = file('punch', Buffer.alloc(3 * 4096, 0xaa));
    const chunk = statSync(p).blksize;
    expect(chunk).toBe(4096);
    const by = ok([
      `open f ${p} rw`,
      `open u ${p} rw`,
      `regfd f`,
      `mis: punch f 1 100 4096`,
      `misEnd: punch f 1 0 100`,
      `order: punch f 1 8192 4096`,
      `second: punch f 2 0 4096 4096 5000`,
      `many: punch f 1001`,
      `neg: punch f -1`,
      `unreg: punch u 1 0 4096`,
      `none: punch f 0`,
      `ok: punch ~f 1 4096 8192`,
      `iovcreate v ${MNT} 8192 0`,
      `iorcreate h 4 ${MNT} 4 r 0 0 0 2`,
      `prep h v r 0 f 0 4096 1`,
      `prep h v r 4096 f 4096 4096 2`,
      `submit h`,
      `h: wait h 4 2 5000`,
      `iordestroy h`,
      `iovdestroy v`,
      `deregfd f`,
    ]);
    for (const k of ['mis', 'misEnd', 'order', 'second', 'many', 'neg']) expect(by[k].ret, k).toBe(E.EINVAL);
    expect(by.unreg.ret).toBe(E.EBADF);
    expect(by.none.ret).toBe(0);
    expect(by.ok.ret).toBe(0);
    const got = readFileSync(p);
    expect(got.length).toBe(3 * 4096); // FALLOC_FL_KEEP_SIZE
    expect(got.subarray(0, 4096).every((b) => b === 0xaa)).toBe(true); // the failed calls changed nothing
    expect(got.subarray(4096, 8192).every((b) => b === 0)).toBe(true);
    expect(got.subarray(8192).every((b) => b === 0xaa)).toBe(true);
    const res = Object.fromEntries(by.h.cqes.map((c: Out) => [c.userdata, c.result]));
    expect(res).toEqual({ 1: 4096, 2: -E.ENODATA }); // a real hole now
  });

  it('hf3fs_hardlink is link(2) with a positive errno', () => {
    const p = file('target', Buffer.from('hello'));
    const by = ok([`a: hardlink ${p} ${MNT}/linked`, `b: hardlink ${p} ${MNT}/linked`, `c: hardlink ${MNT}/none ${MNT}/x`]);
    expect(by.a.ret).toBe(0);
    expect(statSync(join(MNT, 'linked')).ino).toBe(statSync(p).ino);
    expect(by.b.ret).toBe(E.EEXIST);
    expect(by.c.ret).toBe(E.ENOENT);
  });
});

describe('misuse aborts loudly', () => {
  const setup = (p: string) => [
    `iovcreate v ${MNT} 4096 0`,
    `iorcreate r 4 ${MNT} 4 r 0 0 0 0`,
    `open f ${p} r`,
    `regfd f`,
  ];

  it('two threads in hf3fs_prep_io on one ring', () => {
    const p = file('race', Buffer.alloc(10));
    expect(aborts([...setup(p), `race_prep r v f`])).toMatch(/hf3fs_prep_io: two threads/);
  });

  it('two threads in hf3fs_wait_for_ios on one ring', () => {
    const p = file('race2', Buffer.alloc(10));
    expect(aborts([...setup(p), `race_wait r`])).toMatch(/hf3fs_wait_for_ios: two threads/);
  });

  it('destroying an iov twice, or while its IOs are in flight', () => {
    const p = file('dd', Buffer.alloc(10));
    expect(aborts([...setup(p), `iovdestroy v`, `iovdestroy v`])).toMatch(/iov .* was already destroyed/);
    expect(aborts([...setup(p), `prep r v r 0 f 0 10 1`, `submit r`, `iovdestroy v`], { HF3FS_STANDIN_DELAY_US: '500000' }))
      .toMatch(/still has 1 IO\(s\) in flight/);
  });
});
