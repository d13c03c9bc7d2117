// The node:fs twin: FileHandle.read/write at the same concurrency, always buffered (Node's Buffers
// are not aligned for O_DIRECT). A child process, so UV_THREADPOOL_SIZE can match the depth and its
// CPU time is its own; this file is both the launcher (runNodeFs) and the child's entry point.
import { open } from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';
import { runChild } from '../support/children';
import { Meter } from '../support/meter';
import type { Measured, Workload } from '../support/records';
import { offsetSource } from '../support/rng';
import { clearStamps, stampEnds, verify, writeTag } from '../support/stamps';

export interface NodeFsSpec {
  workload: Workload;
  path: string;
  fileSize: number;
  rampMs: number;
  durationMs: number;
  seed: number;
  /** Stop after one pass over the file (seq only): with a cold cache, every byte then comes from the disk. */
  onePass: boolean;
  /**
   * Stop once this many bytes were read in all (ramp included). Cold random reads through the page
   * cache would otherwise come more and more from the pages they brought in: with a quarter of
   * the file, fewer than one in four reads can hit.
   */
  maxBytes?: number;
  /** fdatasync at the end of a write run, inside the measured window. */
  fsync: boolean;
  uvThreads: number;
}

export async function runNodeFs(spec: NodeFsSpec): Promise<Measured> {
  const out = await runChild('the node:fs run', process.execPath, [__filename, JSON.stringify(spec)], {
    ...process.env,
    UV_THREADPOOL_SIZE: String(spec.uvThreads),
  });
  const line = out.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as Measured;
}

async function childMain(spec: NodeFsSpec): Promise<Measured> {
  const w = spec.workload;
  const bs = w.blockSize;
  const fh = await open(spec.path, w.write ? 'r+' : 'r');
  try {
    const buffers = Array.from({ length: w.queueDepth }, () => Buffer.allocUnsafeSlow(bs));
    if (w.write) for (const b of buffers) randomFillSync(b);
    const next = offsetSource(w, spec.fileSize, spec.seed, spec.onePass && w.pattern === 'seq');
    const lastWritten: number[] = [];
    let written = 0;
    const tag = writeTag();
    const syncInWindow = w.write && spec.fsync;
    const m = new Meter(spec.rampMs, spec.durationMs, !syncInWindow);
    let issued = 0;
    const worker = async (buf: Buffer) => {
      while (m.running) {
        if (spec.maxBytes !== undefined && issued >= spec.maxBytes) break;
        const off = next();
        if (off < 0) break;
        issued += bs;
        if (w.write) stampEnds(buf, off, bs, tag);
        else clearStamps(buf, bs);
        const t0 = performance.now();
        const n = w.write ? (await fh.write(buf, 0, bs, off)).bytesWritten : (await fh.read(buf, 0, bs, off)).bytesRead;
        const t1 = performance.now();
        if (n !== bs) throw new Error(`node:fs: short ${w.write ? 'write' : 'read'} at offset ${off}: ${n} of ${bs} bytes`);
        if (!w.write) verify(buf, off, bs, 'node:fs');
        else lastWritten[written++ % 4] = off;
        m.record(t0, t1, bs, 1);
      }
    };
    await Promise.all(
      buffers.map((b) =>
        worker(b).catch((e) => {
          m.end(); // the other workers stop at their next op
          throw e;
        }),
      ),
    );
    if (syncInWindow) {
      await fh.datasync();
      m.end(performance.now(), false);
    }
    const result = m.result();
    if (w.write) {
      const buf = Buffer.alloc(bs);
      for (const off of lastWritten) {
        await fh.read(buf, 0, bs, off);
        verify(buf, off, bs, 'node:fs (write read-back)', tag);
      }
    }
    return result;
  } finally {
    await fh.close();
  }
}

if (require.main === module) {
  childMain(JSON.parse(process.argv[2]) as NodeFsSpec).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
