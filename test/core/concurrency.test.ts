// Many batches in flight at once, several clients and several worker threads using the addon at
// the same time, and closing files and clients while their I/O is still running. Runs on both
// engines (test/helpers/engine.ts ENGINE); child processes and worker threads connect to the same engine.
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { IoBuffer, ThreeFSError, type ClientOptions, type OpResult } from '../../lib/index';
import { DIST_LIB, ENGINE, ENGINE_NAME, eventually, FIXTURES, fdCount, HF3FS, KiB, makeTmpDir, MiB, Rng, seedFor, settledWithin, testConnect, TIME_SCALE } from '../helpers';

const tmp = makeTmpDir('concurrency');
afterAll(() => tmp.cleanup());

/** What a child process or worker thread adds to its connect() options to reach the engine under test. */
const ENGINE_OPTIONS: ClientOptions = ENGINE === 'hf3fs' ? { mount: HF3FS!.mount } : {};

/** The compiled CommonJS build: worker threads load it, not the TypeScript sources. */
const DIST = join(DIST_LIB, 'index.js');

describe('batches posted while a ring thread is busy copying', () => {
  // A ring thread that copies cached pages inline yields to posted commands between copies; a
  // command posted just as it took the queue once left ops stranded in its backlog, never to run
  // (seen under CPU load with a script much like this; this test is its stress run, though the
  // window is narrow enough that it did not catch the old code here every time).
  it('4 lanes x 3000 cached 16-op batches all settle, with every CPU busy alongside', async () => {
    const client = testConnect({ queueDepth: 64 });
    const p = tmp.path('busy-lanes');
    const content = new Rng(seedFor('busy-lanes')).bytes(4 * MiB);
    writeFileSync(p, content);
    const f = await client.open(p, 'r', 0o666, ENGINE === 'local' ? { direct: 'never' } : {});
    const bufs = Array.from({ length: 64 }, () => client.alloc(4 * KiB));
    // Busy processes on every core, so ring threads get preempted inside the window.
    const hogs = cpus().map(() => spawn(process.execPath, ['-e', 'const end = Date.now() + 8000; while (Date.now() < end) {}'], { stdio: 'ignore' }));
    const lane = async (l: number) => {
      const rng = new Rng(seedFor(`busy-lane-${l}`));
      for (let b = 0; b < 3000; b++) {
        const offsets = Array.from({ length: 16 }, () => rng.int(0, 1023) * 4 * KiB);
        const rs = await f.batchRead(bufs.slice(l * 16, l * 16 + 16).map((buffer, i) => ({ buffer, fileOffset: offsets[i] })));
        for (let i = 0; i < 16; i++) {
          expect(rs[i].bytes).toBe(4 * KiB);
          if (i === b % 16) expect(bufs[l * 16 + i].bytes.equals(content.subarray(offsets[i], offsets[i] + 4 * KiB))).toBe(true);
        }
      }
    };
    try {
      await settledWithin(Promise.all([0, 1, 2, 3].map(lane)), 90_000, '12000 batches');
    } finally {
      for (const h of hogs) h.kill();
      await f.close();
      await client.close();
    }
  }, 120_000 * TIME_SCALE);
});

describe('hundreds of batches in flight', () => {
  it('300 read batches and 300 write batches of 16 ops at once, queueDepth 32: every byte right', async () => {
    const seed = seedFor('hundreds');
    const rng = new Rng(seed);
    const client = testConnect({ queueDepth: 32 });
    expect(client.info().engine).toBe(ENGINE_NAME);
    const srcPath = tmp.path('hundreds-src');
    const dstPath = tmp.path('hundreds-dst');
    const content = rng.bytes(8 * MiB);
    writeFileSync(srcPath, content);
    const src = await client.open(srcPath, 'r');
    const dst = await client.open(dstPath, 'w+');
    const BATCHES = 300;
    const OPS = 16;
    const CHUNK = 16 * KiB;
    const pool: IoBuffer = client.alloc(BATCHES * OPS * CHUNK);
    const before = client.metrics();

    // Reads: random ranges of the source into disjoint pieces of one IoBuffer, or plain Buffers.
    const reads: { buffer: IoBuffer | Buffer; fileOffset: number; length: number }[][] = [];
    for (let b = 0; b < BATCHES; b++) {
      const ops = [];
      for (let j = 0; j < OPS; j++) {
        const length = rng.int(1, CHUNK);
        const fileOffset = rng.int(0, content.length - 1);
        const slot = (b * OPS + j) * CHUNK;
        ops.push({ buffer: rng.bool() ? pool.subarray(slot, slot + CHUNK) : Buffer.alloc(CHUNK), fileOffset, length });
      }
      reads.push(ops);
    }
    // Writes: disjoint ranges of the destination, from fresh random data.
    const model = Buffer.alloc(BATCHES * OPS * CHUNK);
    const writes: { buffer: Buffer; fileOffset: number }[][] = [];
    for (let b = 0; b < BATCHES; b++) {
      const ops = [];
      for (let j = 0; j < OPS; j++) {
        const data = rng.bytes(rng.int(1, CHUNK));
        const fileOffset = (b * OPS + j) * CHUNK;
        data.copy(model, fileOffset);
        ops.push({ buffer: data, fileOffset });
      }
      writes.push(ops);
    }

    const pending: Promise<OpResult[]>[] = [];
    for (let b = 0; b < BATCHES; b++) {
      pending.push(src.batchRead(reads[b]));
      pending.push(dst.batchWrite(writes[b]));
    }
    const all = await settledWithin(Promise.all(pending), 90_000, 'batches');
    for (let b = 0; b < BATCHES; b++) {
      const rr = all[2 * b];
      rr.forEach((r, j) => {
        const op = reads[b][j];
        const want = content.subarray(op.fileOffset, op.fileOffset + op.length);
        expect(r.error).toBeNull();
        expect(r.bytes).toBe(want.length);
        expect(r.eof).toBe(want.length < op.length);
        const got = op.buffer instanceof IoBuffer ? op.buffer.bytes : op.buffer;
        expect(got.subarray(0, r.bytes).equals(want), `seed ${seed} batch ${b} op ${j}`).toBe(true);
      });
      all[2 * b + 1].forEach((r, j) => expect(r).toEqual({ bytes: writes[b][j].buffer.length, eof: false, error: null }));
    }
    const disk = readFileSync(dstPath);
    const lastOp = writes[BATCHES - 1][OPS - 1];
    expect(disk.length).toBe(lastOp.fileOffset + lastOp.buffer.length);
    expect(disk.equals(model.subarray(0, disk.length)), `seed ${seed}`).toBe(true);
    const after = client.metrics();
    expect(after.batches - before.batches).toBe(2 * BATCHES);
    expect(after.readOps - before.readOps + after.writeOps - before.writeOps).toBe(2 * BATCHES * OPS);
    pool.free();
    await src.close();
    await dst.close();
    await client.close();
  }, 120_000 * TIME_SCALE);

  it('several clients at once, each on its own files and on a shared one', async () => {
    const seed = seedFor('clients');
    const rng = new Rng(seed);
    const shared = rng.bytes(2 * MiB);
    const sharedPath = tmp.path('clients-shared');
    writeFileSync(sharedPath, shared);
    const run = async (c: number) => {
      const client = testConnect({ queueDepth: 4 + c * 8, asyncBuffered: c % 2 === 0 });
      const path = tmp.path(`clients-${c}`);
      const mine = await client.open(path, 'w+', 0o644, { direct: c % 3 === 0 ? 'never' : 'auto' });
      const other = await client.open(sharedPath, 'r');
      const data = rng.bytes(1 * MiB);
      const io = client.alloc(data.length);
      io.bytes.set(data);
      const pieces = 64;
      const step = data.length / pieces;
      const w = await mine.batchWrite(Array.from({ length: pieces }, (_, i) => ({ buffer: io.subarray(i * step, (i + 1) * step), fileOffset: i * step })));
      expect(w.every((r) => r.error === null && r.bytes === step)).toBe(true);
      for (let round = 0; round < 20; round++) {
        const back = client.alloc(data.length);
        const fromShared = Buffer.alloc(64 * KiB);
        const at = rng.int(0, shared.length - fromShared.length);
        const rs = await client.batchRead([
          ...Array.from({ length: pieces }, (_, i) => ({ file: mine, buffer: back.subarray(i * step, (i + 1) * step), fileOffset: i * step })),
          { file: other, buffer: fromShared, fileOffset: at },
        ]);
        expect(rs.every((r) => r.error === null)).toBe(true);
        expect(back.bytes.equals(data), `seed ${seed} client ${c} round ${round}`).toBe(true);
        expect(fromShared.equals(shared.subarray(at, at + fromShared.length))).toBe(true);
        back.free();
      }
      io.free();
      await mine.close();
      await other.close();
      await client.close();
      expect(readFileSync(path).equals(data)).toBe(true);
    };
    await settledWithin(Promise.all([0, 1, 2, 3, 4].map(run)), 30_000, 'clients');
  });
});

describe('closing while I/O is in flight', () => {
  it('file.close() waits for the batches in flight; new batches are refused at once', async () => {
    const rng = new Rng(seedFor('close-file'));
    const client = testConnect({ queueDepth: 4 });
    const content = rng.bytes(4 * MiB);
    const p = tmp.path('close-file');
    writeFileSync(p, content);
    const f = await client.open(p, 'r', 0o666, { direct: 'never' });
    const g = await client.open(p, 'r');
    const order: string[] = [];
    const batches = Array.from({ length: 50 }, (_, b) => {
      const ops = Array.from({ length: 16 }, () => ({ buffer: Buffer.alloc(64 * KiB), fileOffset: rng.int(0, content.length - 64 * KiB) }));
      // Some batches span two files, so close() must wait for those too.
      const p =
        b % 5 === 0
          ? client.batchRead([...ops.map((o) => ({ file: f, ...o })), { file: g, buffer: Buffer.alloc(10), fileOffset: 0 }])
          : f.batchRead(ops);
      return p.then((rs) => {
        order.push('batch');
        rs.slice(0, 16).forEach((r, i) => {
          expect(r.error).toBeNull();
          expect(ops[i].buffer.equals(content.subarray(ops[i].fileOffset, ops[i].fileOffset + 64 * KiB))).toBe(true);
        });
        return rs;
      });
    });
    const closing = f.close().then(() => order.push('close'));
    expect(f.closed).toBe(true);
    const late = await f.read(Buffer.alloc(1), 0).catch((e) => e);
    expect(late).toBeInstanceOf(ThreeFSError);
    expect(late.code).toBe('ERR_FILE_CLOSED');
    await settledWithin(Promise.all([...batches, closing]), 20_000, 'close while reading');
    expect(order).toHaveLength(51);
    expect(order.at(-1)).toBe('close');
    // g is untouched by f's close.
    const [r] = await g.batchRead([{ buffer: Buffer.alloc(100), fileOffset: 0 }]);
    expect(r.bytes).toBe(100);
    await g.close();
    await client.close();
  });

  it('client.close() with ops queued: every op settles (done or ECANCELED), nothing hangs', async () => {
    const rng = new Rng(seedFor('close-client'));
    const client = testConnect({ queueDepth: 2 });
    const p = tmp.path('close-client');
    const f = await client.open(p, 'w+', 0o644, { direct: 'never' });
    const L = 128 * KiB;
    const data = rng.bytes(L);
    const BATCHES = 100;
    const OPS = 8;
    const batches = Array.from({ length: BATCHES }, (_, b) =>
      f.batchWrite(Array.from({ length: OPS }, (_, j) => ({ buffer: data, fileOffset: (b * OPS + j) * L }))),
    );
    // At once: 2 ops in the kernel, the rest queued (waiting even 1 ms lets a quiet machine's
    // page cache take all 100 MiB before the close).
    const closed = client.close();
    const late = await f.write(data, 0).catch((e) => e);
    expect(late.code).toBe('ERR_CLIENT_CLOSED');
    const settled = await settledWithin(Promise.allSettled([...batches, closed]), 20_000, 'client.close with ops queued');
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    let done = 0;
    let canceled = 0;
    const disk = readFileSync(p);
    settled.slice(0, BATCHES).forEach((s, b) => {
      (s as PromiseFulfilledResult<OpResult[]>).value.forEach((r, j) => {
        const at = (b * OPS + j) * L;
        if (r.error === null) {
          expect(r.bytes).toBe(L);
          done++;
        } else {
          expect(r.error.code).toBe('ECANCELED');
          canceled++;
        }
        expect(disk.subarray(at, at + r.bytes).equals(data.subarray(0, r.bytes))).toBe(true);
      });
    });
    expect(done + canceled).toBe(BATCHES * OPS);
    expect(canceled).toBeGreaterThan(0);
    expect(client.info().closed).toBe(true);
    await f.close();
  });
});

describe('process exit', () => {
  const run = (mode: string) => {
    const script = `
      const lib = require(${JSON.stringify(DIST)});
      (async () => {
        const c = lib.connect({ ...JSON.parse(process.env.ENGINE_OPTIONS), queueDepth: 2 });
        const f = await c.open(process.env.P, 'w+', 0o644, { direct: 'never' });
        const b = Buffer.alloc(256 * 1024, 1);
        const n = process.argv[1] === 'idle' ? 200 : 4000;
        const p = f.batchWrite(Array.from({ length: n }, (_, i) => ({ buffer: b, fileOffset: i * b.length })));
        const stop = () => {
          if (process.argv[1] === 'exit') process.exit(3);
          throw new Error('boom');
        };
        // Once the engine has written a few ops: the batch is in flight, far from done.
        const wrote = () => (c.metrics().writeOps >= 4 ? stop() : setImmediate(wrote));
        if (process.argv[1] === 'idle') { await p; console.log('done ' + c.info().engine); } // leaves the client and file open
        else wrote();
      })();
    `;
    const path = tmp.path(`exit-${mode}`);
    const env = { ...process.env, P: path, ENGINE_OPTIONS: JSON.stringify(ENGINE_OPTIONS) };
    const r = spawnSync(process.execPath, ['-e', script, mode], { env, encoding: 'utf8', timeout: 45_000 * TIME_SCALE });
    return { ...r, size: statSync(path).size };
  };
  const BATCH_BYTES = 4000 * 256 * KiB;

  it('process.exit() with a huge batch in flight exits at once with its code', () => {
    const r = run('exit');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(3);
    expect(r.size, 'the exit waited for the batch').toBeLessThan(BATCH_BYTES);
  });

  it('an uncaught exception with a batch in flight exits with code 1, not a crash', () => {
    const r = run('throw');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('boom');
    expect(r.size, 'the exit waited for the batch').toBeLessThan(BATCH_BYTES);
  });

  it('a process whose client and files are left open exits by itself once its I/O is done', () => {
    const r = run('idle');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(`done ${ENGINE_NAME}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Worker threads. Each loads the compiled build and uses its own client.

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const lib = require(workerData.dist);
function mulberry32(a) { return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
const rnd = mulberry32(workerData.seed);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const bytes = (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = (rnd() * 256) | 0; return b; };
(async () => {
  const client = lib.connect({ ...workerData.engineOptions, queueDepth: 16 });
  const files = [];
  const models = [];
  for (let i = 0; i < 3; i++) {
    files.push(await client.open(workerData.dir + '/w' + workerData.id + '-' + i, 'w+', 0o644, { direct: i === 2 ? 'never' : 'auto' }));
    models.push(Buffer.alloc(0));
  }
  let ops = 0;
  for (let round = 0; workerData.forever || round < workerData.rounds; round++) {
    // A write batch on disjoint ranges, then a read batch that checks everything written so far.
    const writes = [];
    const taken = new Set();
    for (let k = int(1, 8); k > 0; k--) {
      const file = int(0, 2);
      const slot = int(0, 31);
      if (taken.has(file * 100 + slot)) continue;
      taken.add(file * 100 + slot);
      const data = bytes(int(1, 64 * 1024));
      const io = rnd() < 0.5 ? client.alloc(data.length) : null;
      if (io) io.bytes.set(data);
      writes.push({ file, fileOffset: slot * 65536, data, io });
    }
    const wr = await client.batchWrite(writes.map((w) => ({ file: files[w.file], buffer: w.io || w.data, fileOffset: w.fileOffset })));
    wr.forEach((r, i) => {
      if (r.error || r.bytes !== writes[i].data.length) throw new Error('write ' + i + ' failed: ' + (r.error && r.error.message));
      const w = writes[i];
      const end = w.fileOffset + w.data.length;
      if (end > models[w.file].length) { const m = Buffer.alloc(end); models[w.file].copy(m); models[w.file] = m; }
      w.data.copy(models[w.file], w.fileOffset);
      if (w.io) w.io.free();
      ops++;
    });
    const reads = models.map((m, file) => ({ file: files[file], buffer: client.alloc(m.length + 100), fileOffset: 0 }));
    const rr = await client.batchRead(reads);
    rr.forEach((r, file) => {
      if (r.error || r.bytes !== models[file].length || !r.eof) throw new Error('read of file ' + file + ': ' + JSON.stringify({ bytes: r.bytes, eof: r.eof, want: models[file].length }));
      if (!reads[file].buffer.bytes.subarray(0, r.bytes).equals(models[file])) throw new Error('round ' + round + ': file ' + file + ' differs from the model');
      reads[file].buffer.free();
      ops++;
    });
    if (round === 0) parentPort.postMessage({ running: true });
  }
  for (let i = 0; i < 3; i++) {
    await files[i].close();
    const disk = fs.readFileSync(workerData.dir + '/w' + workerData.id + '-' + i);
    if (!disk.equals(models[i])) throw new Error('file ' + i + ' on disk differs from the model');
  }
  if (!workerData.leaveOpen) await client.close();
  parentPort.postMessage({ done: true, ops, engine: client.info().engine });
})().catch((e) => { parentPort.postMessage({ error: String(e && e.stack || e) }); });
`;

interface WorkerOutcome {
  exitCode: number;
  messages: { running?: boolean; done?: boolean; ops?: number; engine?: string; error?: string }[];
}

function startWorker(data: Record<string, unknown>): { worker: Worker; outcome: Promise<WorkerOutcome>; running: Promise<void> } {
  const worker = new Worker(workerSource, { eval: true, workerData: { dist: DIST, dir: tmp.dir, engineOptions: ENGINE_OPTIONS, ...data } });
  const messages: WorkerOutcome['messages'] = [];
  let markRunning: () => void;
  const running = new Promise<void>((r) => (markRunning = r));
  worker.on('message', (m) => {
    messages.push(m);
    if (m.running) markRunning();
  });
  const outcome = new Promise<WorkerOutcome>((resolvePromise, reject) => {
    worker.on('error', reject);
    worker.on('exit', (exitCode) => resolvePromise({ exitCode, messages }));
  });
  return { worker, outcome, running };
}

describe('worker threads', () => {
  it('the compiled build exists (npm test runs tsc first)', () => {
    expect(existsSync(DIST), `${DIST} is missing: run \`npx tsc -p tsconfig.json\``).toBe(true);
  });

  it('four workers with their own clients do verified I/O at once, with the main thread too', async () => {
    const fds = fdCount();
    // Worker 3 leaves its client open when it finishes: the thread must still exit and let go.
    const workers = [0, 1, 2, 3].map((id) => startWorker({ id, seed: seedFor(`worker-${id}`), rounds: 40, leaveOpen: id === 3 }));
    const client = testConnect({ queueDepth: 8 });
    const p = tmp.path('main-during-workers');
    const content = new Rng(seedFor('main')).bytes(1 * MiB);
    writeFileSync(p, content);
    const f = await client.open(p, 'r');
    await settledWithin(Promise.all(workers.map((w) => w.running)), 60_000, 'workers start');
    for (let i = 0; i < 20; i++) {
      const b = Buffer.alloc(64 * KiB);
      const at = (i * 37 * KiB) % (content.length - b.length);
      expect(await f.read(b, at)).toBe(b.length);
      expect(b.equals(content.subarray(at, at + b.length))).toBe(true);
    }
    const outcomes = await settledWithin(Promise.all(workers.map((w) => w.outcome)), 90_000, 'workers');
    outcomes.forEach((o, id) => {
      const errors = o.messages.filter((m) => m.error).map((m) => m.error);
      expect(errors, `worker ${id}`).toEqual([]);
      expect(o.messages.find((m) => m.done)?.ops, `worker ${id}`).toBeGreaterThan(40);
      expect(o.messages.find((m) => m.done)?.engine, `worker ${id}`).toBe(ENGINE_NAME);
      expect(o.exitCode).toBe(0);
    });
    await f.close();
    await client.close();
    // Everything the workers opened (rings, eventfds, files) is gone once they have exited.
    expect(await eventually(fdCount, fds)).toBe(fds);
  }, 180_000 * TIME_SCALE);

  // Terminating a worker can take the whole process down, so these run in a child process.
  // The fixture's workers connect with local options; on hf3fs they run from a copy whose
  // connect() calls also name the mount.
  const FIXTURE = join(FIXTURES, 'terminate-workers.cjs');
  const fixture = (): string => {
    if (ENGINE === 'local') return FIXTURE;
    const source = readFileSync(FIXTURE, 'utf8');
    const calls = source.match(/lib\.connect\(\{ /g)?.length ?? 0;
    expect(calls, 'the fixture changed: its connect() calls are not where this test expects them').toBe(2);
    const copy = tmp.path('terminate-workers-hf3fs.cjs');
    writeFileSync(copy, source.replace(/lib\.connect\(\{ /g, `lib.connect({ ...${JSON.stringify(ENGINE_OPTIONS)}, `));
    return copy;
  };
  const terminate = (mode: 'busy' | 'huge', rounds: number) => {
    const r = spawnSync(process.execPath, [fixture(), DIST, tmp.dir, mode, String(rounds)], { encoding: 'utf8', timeout: 170_000 * TIME_SCALE });
    return { status: r.status, signal: r.signal, stderr: r.stderr, out: r.stdout.trim() ? JSON.parse(r.stdout.trim().split('\n').at(-1)!) : null };
  };

  it('workers terminated mid-I/O (allocating, freeing, reading, writing), 20 rounds of 3: the process survives and lets go of everything', () => {
    const r = terminate('busy', 20);
    expect(r.stderr, 'stderr of the child').toBe('');
    expect(r.signal, 'the child was killed by a signal').toBeNull();
    expect(r.status).toBe(0);
    expect(r.out).toMatchObject({ ok: true, rounds: 20 });
    expect(r.out.fdsAfter).toBe(r.out.fdsBefore);
  }, 180_000 * TIME_SCALE);

  it('workers terminated while one huge batch is in flight: the process survives, the writes stop', () => {
    const r = terminate('huge', 3);
    expect(r.stderr, 'stderr of the child').toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.out).toMatchObject({ ok: true, rounds: 3, finished: 0 });
    for (const [before, after] of r.out.sizes) {
      expect(after).toBe(before);
      expect(before).toBeLessThan(4000 * 256 * 1024);
    }
    expect(r.out.fdsAfter).toBe(r.out.fdsBefore);
  }, 180_000 * TIME_SCALE);
});
