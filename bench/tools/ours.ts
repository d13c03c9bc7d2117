// Our engine's side of each workload: one client, one file, QD registered buffers allocated up
// front, and a pipelined loop that keeps queueDepth ops in flight as queueDepth / batch batches,
// refilling each batch as soon as it settles. Setup (connect, open, alloc) is outside the window.
import { open as fsOpen } from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';
import { connect, type Client, type ClientOptions, type File, type IoBuffer, type IoOp } from '../../lib/index';
import { Meter } from '../support/meter';
import type { Measured, Workload } from '../support/records';
import { offsetSource } from '../support/rng';
import { clearStamps, stampEnds, verify, writeTag } from '../support/stamps';

export interface RunOptions {
  rampMs: number;
  durationMs: number;
  seed: number;
  /** Called as the lanes start and again as they end, while the client still lives (its threads too). */
  probe?: (client: Client) => void;
}

export interface OursOutcome extends Measured {
  /** e.g. "O_DIRECT, 8 x 1-op batches, fixed bufs" */
  mode: string;
}

export async function runOurs(w: Workload, path: string, fileSize: number, opts: RunOptions, clientOptions: ClientOptions = {}): Promise<OursOutcome> {
  const client = connect({ ...clientOptions, queueDepth: w.queueDepth });
  let file: File | undefined;
  const buffers: IoBuffer[] = [];
  let meter: Meter | undefined;
  try {
    file = await client.open(path, w.write ? 'r+' : 'r', 0o666, { direct: w.direct ? 'always' : 'never' });
    const st = await file.stat();
    // USRBIO never goes through a page cache: there is no O_DIRECT descriptor to ask about.
    if (w.direct && client.info().engine !== 'usrbio' && !st.direct.active) throw new Error(`O_DIRECT is not active on ${path}: ${st.direct.reason ?? 'unknown reason'}`);
    for (let i = 0; i < w.queueDepth; i++) buffers.push(client.alloc(w.blockSize));
    if (w.write) for (const b of buffers) randomFillSync(b.bytes);
    const registered = buffers.every((b) => b.registered);

    const next = offsetSource(w, fileSize, opts.seed);
    if (w.batch < 1 || w.queueDepth % w.batch !== 0) throw new Error(`queue depth ${w.queueDepth} is not a multiple of the batch size ${w.batch}`);
    const lanes = w.queueDepth / w.batch;
    const lastWritten: number[] = []; // a few offsets our writes reached, read back afterwards
    let written = 0;
    const tag = writeTag();
    meter = new Meter(opts.rampMs, opts.durationMs);
    const m = meter;
    const f = file;
    const bs = w.blockSize;

    const lane = async (l: number) => {
      const ops: IoOp[] = [];
      for (let i = 0; i < w.batch; i++) ops.push({ buffer: buffers[l * w.batch + i], fileOffset: 0 });
      const views = ops.map((op) => (op.buffer as IoBuffer).bytes);
      while (m.running) {
        for (let i = 0; i < ops.length; i++) {
          ops[i].fileOffset = next();
          if (w.write) stampEnds(views[i], ops[i].fileOffset, bs, tag);
          else clearStamps(views[i], bs);
        }
        const t0 = performance.now();
        const results = await (w.write ? f.batchWrite(ops) : f.batchRead(ops));
        const t1 = performance.now();
        for (let i = 0; i < results.length; i++) {
          const r = results[i];
          if (r.error) throw r.error;
          if (r.bytes !== bs) throw new Error(`3fs-client: short ${w.write ? 'write' : 'read'} at offset ${ops[i].fileOffset}: ${r.bytes} of ${bs} bytes`);
          if (!w.write) verify(views[i], ops[i].fileOffset, bs, '3fs-client');
        }
        m.record(t0, t1, bs * ops.length, ops.length);
        if (w.write) lastWritten[written++ % 4] = ops[ops.length - 1].fileOffset;
      }
    };
    const laneIds = Array.from({ length: lanes }, (_, l) => l);
    opts.probe?.(client);
    await Promise.all(
      laneIds.map((l) =>
        lane(l).catch((e) => {
          m.end();
          throw e;
        }),
      ),
    );
    opts.probe?.(client);
    const measured = meter.result();
    if (w.write) await checkWritten(path, lastWritten, bs, tag);

    const inFlight = w.batch === 1 ? `${lanes} x 1-op batches` : `${lanes} x ${w.batch}-op batches`;
    const info = client.info();
    const copies = info.engine === 'threads' ? `${info.threads} threads` : info.asyncBuffered ? 'IOSQE_ASYNC workers' : 'inline copies';
    const how = info.engine === 'usrbio' ? `USRBIO on ${info.mount}` : w.direct ? 'O_DIRECT' : `buffered (${copies}), warm cache`;
    const pool = info.engine === 'threads' && w.direct ? `, ${info.threads} threads${info.aio ? ', AIO' : ', pread'}` : '';
    const mode = `${how}, ${info.engine}${pool}, ${inFlight}${info.engine === 'usrbio' ? ', iovs' : registered ? ', fixed bufs' : ''}`;
    return { ...measured, mode };
  } finally {
    meter?.end();
    await file?.close().catch(() => undefined);
    for (const b of buffers) b.free();
    await client.close().catch(() => undefined);
  }
}

/** Reads back (through node:fs, not our engine) blocks our write run wrote, and checks their stamps. */
async function checkWritten(path: string, offsets: number[], blockSize: number, tag: number): Promise<void> {
  const fh = await fsOpen(path, 'r');
  try {
    const buf = Buffer.alloc(blockSize);
    for (const off of offsets) {
      const { bytesRead } = await fh.read(buf, 0, blockSize, off);
      if (bytesRead !== blockSize) throw new Error(`3fs-client: read-back of offset ${off} came up short`);
      verify(buf, off, blockSize, '3fs-client (write read-back)', tag);
    }
  } finally {
    await fh.close();
  }
}
