// readFile and writeFile: a whole file in one call, with the client for its path (USRBIO on a 3FS
// mount, the embedded engine elsewhere), as ops of a few MiB spread over one batch per ring, all
// in flight at once.
import { constants } from 'node:os';
import { clientFor } from './clients';
import { allocPacked, type Client } from './core/client';
import { argError, errnoError, ThreeFSError, type OpResult } from './core/errors';
import type { File } from './core/file';
import type { OpenFlags } from './core/flags';
import { IoBuffer, regionOf } from './core/io-buffer';
import type { IoOp } from './core/batch';
import { abortError, checkSignal, optionsObject } from './core/streams/options';

export interface ReadFileOptions {
  /** Aborting cancels the reads in flight; readFile then rejects with an AbortError (code ABORT_ERR). */
  signal?: AbortSignal;
}

export interface WriteFileOptions {
  signal?: AbortSignal;
  /** For string data. Default 'utf8'. */
  encoding?: BufferEncoding;
  /** Default 0o666, as node:fs. */
  mode?: number;
  /** Default 'w' (create or truncate), as node:fs. */
  flag?: OpenFlags;
  /** fdatasync(2) before the file is closed, as node:fs's `flush`. Default false. */
  flush?: boolean;
}

/** The bytes of one op: 4 MiB, a multiple of every O_DIRECT alignment and of 3FS's common chunk sizes. */
const OP_BYTES = 4 * 1024 * 1024;

/**
 * The whole file in one buffer of the client for `path`, so it can be written elsewhere without a
 * copy: not registered locally (see docs/streams.md), an iov on 3FS. Free it when done (or leave it to the collector).
 * As node:fs, a file that shrinks meanwhile gives what is left; one that grows, its size at open.
 */
export async function readFile(path: string, options?: ReadFileOptions): Promise<IoBuffer> {
  const signal = checkSignal(optionsObject(options).signal);
  if (signal?.aborted) throw abortError(signal);
  const client = clientFor(path);
  const file = await client.open(path, 'r');
  try {
    const st = await file.stat();
    if ((st.mode & 0o170000) === 0o040000) throw errnoError(constants.errno.EISDIR, 'read', { path });
    return st.size > 0 ? await readSized(client, file, st.size, signal) : await readUnsized(client, file, signal);
  } finally {
    await file.close();
  }
}

async function readSized(client: Client, file: File, size: number, signal: AbortSignal | undefined): Promise<IoBuffer> {
  // Exactly the file's size (an IoBuffer is freed whole, never through a view): every op but the
  // last is a multiple of the page size, so only the last may miss O_DIRECT. Not registered:
  // registering faults in every page at once on the JS thread, where each read's pages fault in on
  // the ring thread that submits it while earlier reads are at the device (an iov on 3FS is anyway).
  const io = allocPacked(client, size, { register: false });
  try {
    const ops: IoOp[] = [];
    for (let at = 0; at < size; at += OP_BYTES) ops.push({ buffer: io.subarray(at, at + OP_BYTES), fileOffset: at });
    const results = await inParallel(file, false, ops, client.info().rings, signal);
    let bytes = 0;
    for (const r of results) {
      bytes += r.bytes;
      if (r.eof) break;
    }
    return bytes === size ? io : shrunk(client, file, io, bytes);
  } catch (e) {
    io.free();
    throw e;
  }
}

// The file shrank between stat and read: what is left, in a buffer of its own size (copied, counted).
function shrunk(client: Client, file: File, io: IoBuffer, bytes: number): IoBuffer {
  const out = allocPacked(client, bytes);
  io.bytes.copy(out.bytes, 0, 0, bytes);
  file.countCopy(bytes);
  io.free();
  return out;
}

// Files whose size stat does not know (procfs, some FUSE files): read until a read comes back empty.
async function readUnsized(client: Client, file: File, signal: AbortSignal | undefined): Promise<IoBuffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    const part = Buffer.allocUnsafe(64 * 1024);
    const n = await file.read(part, total, part.length, { signal });
    if (n === 0) break;
    parts.push(part.subarray(0, n));
    total += n;
  }
  const io = allocPacked(client, total);
  Buffer.concat(parts, total).copy(io.bytes);
  file.countCopy(total);
  return io;
}

/**
 * Writes `data` as the whole file at `path` (created, or truncated, as node:fs's writeFile with
 * flag 'w'), with the client for the path. An IoBuffer of that client (or a view of one) is
 * written without a copy; memory of another client is copied first (metrics' copiedBytes).
 */
export async function writeFile(path: string, data: string | ArrayBufferView | IoBuffer, options?: WriteFileOptions): Promise<void> {
  const o = optionsObject(options);
  const signal = checkSignal(o.signal);
  if (o.flush !== undefined && typeof o.flush !== 'boolean') throw argError('ERR_INVALID_ARG_TYPE', 'options.flush must be a boolean');
  let source = typeof data === 'string' ? Buffer.from(data, o.encoding ?? 'utf8') : data;
  if (!(source instanceof IoBuffer) && !ArrayBuffer.isView(source)) {
    throw argError('ERR_INVALID_ARG_TYPE', 'data must be a string, an ArrayBufferView or an IoBuffer');
  }
  // Checked before the open truncates the file: bad input loses nothing.
  if (source instanceof IoBuffer ? source.freed : regionOf(source.buffer)?.freed) throw argError('ERR_BUFFER_FREED', 'data: the buffer was freed');
  if (signal?.aborted) throw abortError(signal);
  const client = clientFor(path);
  const file = await client.open(path, o.flag ?? 'w', o.mode ?? 0o666);
  try {
    if (isForeign(client, source)) {
      source = Buffer.from(source instanceof IoBuffer ? source.bytes : bytesOf(source));
      file.countCopy(source.byteLength);
    }
    const ops: IoOp[] = [];
    for (let at = 0; at < source.byteLength; at += OP_BYTES) ops.push({ buffer: slice(source, at, Math.min(at + OP_BYTES, source.byteLength)), fileOffset: at });
    await inParallel(file, true, ops, client.info().rings, signal);
    if (o.flush) await file.datasync();
  } finally {
    await file.close();
  }
}

/**
 * Runs `ops` as up to `batches` batches at once, each a run of consecutive ops (the client spreads
 * batches over its rings). The first failure cancels the others; it rejects once all settled.
 */
async function inParallel(file: File, write: boolean, ops: IoOp[], batches: number, signal: AbortSignal | undefined): Promise<OpResult[]> {
  const cancel = new AbortController();
  const onAbort = () => cancel.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const per = Math.ceil(ops.length / Math.max(1, batches)) || 1;
  const runs: Promise<OpResult[]>[] = [];
  for (let i = 0; i < ops.length; i += per) {
    const run = ops.slice(i, i + per);
    const options = { failFast: true, signal: cancel.signal };
    runs.push((write ? file.batchWrite(run, options) : file.batchRead(run, options)).catch((e) => Promise.reject((cancel.abort(), e))));
  }
  try {
    const settled = await Promise.allSettled(runs);
    if (signal?.aborted) throw abortError(signal);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected' && !isCancel(s.reason));
    if (failed) throw failed.reason;
    return settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

// A batch canceled because a sibling failed: the sibling's error is the one to report.
function isCancel(e: unknown): boolean {
  return e instanceof ThreeFSError && e.code === 'ABORT_ERR';
}

// Memory of another client: its ops would be refused (that client may free it meanwhile).
function isForeign(client: Client, source: IoBuffer | ArrayBufferView): boolean {
  return (source instanceof IoBuffer || regionOf(source.buffer) !== undefined) && !client.owns(source);
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function slice(source: IoBuffer | ArrayBufferView, from: number, to: number): IoBuffer | Uint8Array {
  return source instanceof IoBuffer ? source.subarray(from, to) : new Uint8Array(source.buffer, source.byteOffset + from, to - from);
}
