// Issue 20 item 2: a user whose locked-memory limit is low (ulimit -l 64, the default of many
// systems). io_uring's rings and registered buffers count against RLIMIT_MEMLOCK: past it,
// connect() falls back to the threads engine and info() says why, a forced io_uring fails with an
// error that names the limit and how to raise it, the counters count only registered bytes, and
// the bench runs to its end with one line per tool that could not run, and info() says why a
// buffer is not registered (unregisteredReason). The child runs as nobody
// (root's CAP_IPC_LOCK lifts the limit) under `prlimit --memlock=65536`.
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DIST_LIB, makeTmpDir, ROOT } from '../../helpers';

const LIMIT = 65536;
const tmp = makeTmpDir('memlock');
chmodSync(tmp.dir, 0o777);
afterAll(() => tmp.cleanup());

/** The command prefix that runs a program with the low limit, as a user without CAP_IPC_LOCK; or why there is none. */
function lowLimitPrefix(): string[] | string {
  const has = (tool: string) => spawnSync(tool, ['--version']).status === 0;
  if (!has('prlimit')) return 'prlimit (util-linux) is not installed';
  const prefix = ['prlimit', `--memlock=${LIMIT}:${LIMIT}`];
  if (process.getuid?.() === 0) {
    if (!has('setpriv')) return 'running as root and setpriv (util-linux) is not installed to drop to nobody';
    prefix.push('setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups');
  }
  const probe = spawnSync(prefix[0], [...prefix.slice(1), process.execPath, '-e', `require(${JSON.stringify(join(DIST_LIB, 'index.js'))})`], { encoding: 'utf8' });
  if (probe.status !== 0) return `the low-limit user cannot load the library from ${ROOT} (${probe.stderr.trim().split('\n')[0]})`;
  return prefix;
}

const prefix = lowLimitPrefix();
const why = typeof prefix === 'string' ? prefix : '';

/** Runs `script` (CommonJS) in a child with the low limit; resolves with its stdout and stderr. */
function runLimited(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const p = prefix as string[];
  const r = spawnSync(p[0], [...p.slice(1), ...args], { encoding: 'utf8', cwd: tmp.dir, timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const CHILD = `
const { connect, ThreeFSError } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
const dir = ${JSON.stringify(tmp.dir)};
(async () => {
  const held = [];
  const clients = [];
  for (let i = 0; i < 6; i++) {
    try {
      const c = connect();
      held.push(c);
      const io = c.alloc(65536);
      io.bytes.fill(i + 1);
      const f = await c.open(dir + '/f' + i, 'w+');
      await f.write(io, 0);
      const back = c.alloc(65536);
      const before = c.metrics();
      await f.read(back, 0);
      const after = c.metrics();
      await f.close();
      clients.push({ engine: c.info().engine, reason: c.info().engineReason, registered: back.registered, same: back.bytes.equals(io.bytes),
        registeredBytes: after.registeredBytes - before.registeredBytes, unregisteredBytes: after.unregisteredBytes - before.unregisteredBytes });
    } catch (e) {
      clients.push({ error: String(e.code), message: e.message });
    }
  }
  let forced;
  try {
    held.push(connect({ engine: 'io_uring' }));
    forced = { ok: true };
  } catch (e) {
    forced = { code: e.code, message: e.message, ours: e instanceof ThreeFSError };
  }
  console.log(JSON.stringify({ clients, forced }));
  for (const c of held) await c.close();
})();
`;

describe.skipIf(why !== '')(`RLIMIT_MEMLOCK of ${LIMIT} bytes${why ? ` (skipped: ${why})` : ''}`, () => {
  it('six clients held at once: each connects and moves the right bytes; past the limit on the threads engine, saying why; registeredBytes counts only registered memory', async (ctx) => {
    const script = join(tmp.dir, 'child.cjs');
    writeFileSync(script, CHILD, { mode: 0o644 });
    const r = runLimited([process.execPath, script]);
    expect(r.status, r.stderr).toBe(0);
    const { clients, forced } = JSON.parse(r.stdout) as {
      clients: { engine?: string; reason?: string | null; registered?: boolean; same?: boolean; registeredBytes?: number; unregisteredBytes?: number; error?: string; message?: string }[];
      forced: { ok?: true; code?: string; message?: string; ours?: boolean };
    };
    for (const [i, c] of clients.entries()) {
      expect(c.error, `client ${i}: ${c.message}`).toBeUndefined();
      expect(c.same, `client ${i}: the bytes read back`).toBe(true);
      // The counters: the bytes of an op on memory that is not registered are unregistered bytes.
      if (!c.registered) expect([c.registeredBytes, c.unregisteredBytes], `client ${i} (${c.engine})`).toEqual([0, 65536]);
    }
    const fellBack = clients.filter((c) => c.engine === 'threads');
    if (fellBack.length === 0 && forced.ok) ctx.skip('this kernel does not count io_uring rings against RLIMIT_MEMLOCK');
    expect(fellBack.length, 'six clients of two rings each do not fit in 64 KiB of locked memory').toBeGreaterThan(0);
    for (const c of fellBack) {
      expect(c.reason).toContain('io_uring_setup: ENOMEM');
      expect(c.reason).toContain(`RLIMIT_MEMLOCK is ${LIMIT} bytes (ulimit -l 64)`);
      expect(c.reason).toContain('ulimit -l unlimited');
    }
    // Forced, io_uring cannot fall back: the error says what the limit is and how to raise it.
    expect(forced.ours).toBe(true);
    expect(forced.code).toBe('ENOMEM');
    expect(forced.message).toContain(`RLIMIT_MEMLOCK is ${LIMIT} bytes`);
    expect(forced.message).toContain('LimitMEMLOCK=infinity');
  });

  it('a buffer past the limit: registered false, and info() says the limit was reached', (ctx) => {
    const script = join(tmp.dir, 'register.cjs');
    writeFileSync(script, `
      const { connect } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
      (async () => {
        const c = connect({ rings: 1 });
        const small = c.alloc(4096);
        const before = c.info().unregisteredReason;
        const big = c.alloc(1 << 20);
        console.log(JSON.stringify({ engine: c.info().engine, small: small.registered, before, big: big.registered, reason: c.info().unregisteredReason }));
        await c.close();
      })();`, { mode: 0o644 });
    const r = runLimited([process.execPath, script]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { engine: string; small: boolean; before: string | null; big: boolean; reason: string | null };
    if (out.engine !== 'io_uring') ctx.skip(`io_uring does not run here with ${LIMIT} bytes of locked memory`);
    if (out.big) ctx.skip('this kernel does not count registered buffers against RLIMIT_MEMLOCK');
    if (out.small) expect(out.before, 'a 4 KiB buffer fits: no reason').toBeNull();
    expect(out.reason).toContain(`RLIMIT_MEMLOCK ${LIMIT} bytes (ulimit -l 64) reached: io_uring_register ENOMEM`);
    expect(out.reason).toContain('ulimit -l unlimited');
  });

  it('rings that do not all fit: io_uring with fewer rings (or a shallower one) before the threads engine, and info() says so', (ctx) => {
    const script = join(tmp.dir, 'rings.cjs');
    // 2 rings of 256 entries each lock more than 64 KiB; one of them fits.
    writeFileSync(script, `
      const { connect } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
      const c = connect({ queueDepth: 512 });
      const { engine, rings, ringsReason } = c.info();
      console.log(JSON.stringify({ engine, rings, ringsReason }));
      c.close();`, { mode: 0o644 });
    const r = runLimited([process.execPath, script]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { engine: string; rings: number; ringsReason: string | null };
    if (out.engine === 'io_uring' && out.rings === 2) ctx.skip('this kernel does not count io_uring rings against RLIMIT_MEMLOCK');
    expect(out.engine, JSON.stringify(out)).toBe('io_uring');
    expect(out.rings).toBe(1);
    expect(out.ringsReason).toContain(`io_uring_setup: ENOMEM (RLIMIT_MEMLOCK is ${LIMIT} bytes`);
    expect(out.ringsReason).toContain('1 of the 2 rings asked, rather than the threads engine');
  });

  it('bench: runs to its end; a fio that cannot run is one line, not its JSON report', () => {
    if (spawnSync('fio', ['--version']).status !== 0) return; // no fio: nothing of fio's to print
    const r = runLimited([
      process.execPath, join(ROOT, 'bin', '3fs-client.js'), 'bench', '--quick', '--size', '32MiB', '--duration', '100ms', '--ramp', '0',
      '--no-micro', '--no-kvcache', '--no-datasets', '--workloads', 'seq-read', '--tools', '3fs-client,fio', '--dir', tmp.dir,
    ]);
    const all = `${r.stdout}\n${r.stderr}`;
    expect(r.status, all).toBe(0);
    expect(all, 'the table').toMatch(/seq-read 4MiB qd8 +\| 3fs-client/);
    expect(all, "fio's JSON report").not.toMatch(/"jobs"|"fio version"/);
    if (/: fio \.\.\. failed/.test(all)) {
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('not run: fio'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^not run: fio, 1 run \(seq-read 4MiB qd8\): fio exited with code 1: .+$/);
    }
  });
});
