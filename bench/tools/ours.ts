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
    if (w.batch < 1 || w.queueDepth % w.batch !== 0) throw new Error(`queue depth ${w.queueDepth} is not a multiple of the batch size ${w.batch}`);
    const lanes = w.queueDepth / w.batch;
    const run: Run = { w, file, next: offsetSource(w, fileSize, opts.seed), tag: writeTag(), lastWritten: [], written: 0, meter: new Meter(opts.rampMs, opts.durationMs) };
    meter = run.meter;
    opts.probe?.(client);
    await Promise.all(
      Array.from({ length: lanes }, (_, l) =>
        lane(run, buffers.slice(l * w.batch, (l + 1) * w.batch)).catch((e) => {
          run.meter.end(); // the other lanes stop at their next batch
          throw e;
        }),
      ),
    );
    opts.probe?.(client);
    const measured = run.meter.result();
    if (w.write) await checkWritten(path, run.lastWritten, w.blockSize, run.tag);
    return { ...measured, mode: modeOf(client, w, lanes, buffers.every((b) => b.registered)) };
  } finally {
    meter?.end();
    await file?.close().catch(() => undefined);
    for (const b of buffers) b.free();
    await client.close().catch(() => undefined);
  }
}

/** What the lanes of one run share. */
interface Run {
  w: Workload;
  file: File;
  next: () => number;
  /** The stamp tag of this run's writes. */
  tag: number;
  /** A few offsets the writes reached, read back afterwards. */
  lastWritten: number[];
  written: number;
  meter: Meter;
}

/** One lane: a batch of `buffers.length` ops, refilled and resubmitted as soon as it settles. */
async function lane(run: Run, buffers: IoBuffer[]): Promise<void> {
  const { w, file, meter } = run;
  const bs = w.blockSize;
  const ops: IoOp[] = buffers.map((buffer) => ({ buffer, fileOffset: 0 }));
  const views = buffers.map((b) => b.bytes);
  while (meter.running) {
    for (let i = 0; i < ops.length; i++) {
      ops[i].fileOffset = run.next();
      if (w.write) stampEnds(views[i], ops[i].fileOffset, bs, run.tag);
      else clearStamps(views[i], bs);
    }
    const t0 = performance.now();
    const results = await (w.write ? file.batchWrite(ops) : file.batchRead(ops));
    const t1 = performance.now();
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      if (r.error) throw r.error;
      if (r.bytes !== bs) throw new Error(`3fs-client: short ${w.write ? 'write' : 'read'} at offset ${ops[i].fileOffset}: ${r.bytes} of ${bs} bytes`);
      if (!w.write) verify(views[i], ops[i].fileOffset, bs, '3fs-client');
    }
    meter.record(t0, t1, bs * ops.length, ops.length);
    if (w.write) run.lastWritten[run.written++ % 4] = ops[ops.length - 1].fileOffset;
  }
}

/** How our side ran, as the table's "how" column says it. */
function modeOf(client: Client, w: Workload, lanes: number, registered: boolean): string {
  const inFlight = w.batch === 1 ? `${lanes} x 1-op batches` : `${lanes} x ${w.batch}-op batches`;
  const info = client.info();
  const copies = info.engine === 'threads' ? `${info.threads} threads` : info.asyncBuffered ? 'IOSQE_ASYNC workers' : 'inline copies';
  const how = info.engine === 'usrbio' ? `USRBIO on ${info.mount}` : w.direct ? 'O_DIRECT' : `buffered (${copies}), warm cache`;
  const pool = info.engine === 'threads' && w.direct ? `, ${info.threads} threads${info.aio ? ', AIO' : ', pread'}` : '';
  return `${how}, ${info.engine}${pool}, ${inFlight}${info.engine === 'usrbio' ? ', iovs' : registered ? ', fixed bufs' : ''}`;
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
