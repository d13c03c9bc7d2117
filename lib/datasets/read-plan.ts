// Where the ranges of one batch go in one registered buffer, and the ops that read them: shared
// by the dataset readers (ffrecord samples, safetensors tensors).
//
// A file read with O_DIRECT needs aligned offsets, lengths and memory; the ranges a format asks
// for are not. Such a range is read as the aligned range around it, placed so that the bytes
// wanted sit at the same distance from an aligned address as they do in the file; the caller's
// view starts there. Ranges of other files (or on 3FS, which needs no alignment) are read as
// they are.
import type { Client, FileIoOp } from '../core/client';
import type { OpResult, ThreeFSError } from '../core/errors';
import type { File, FileStat } from '../core/file';
import type { IoBuffer } from '../core/io-buffer';

/** Ops larger than this are split: no engine has to move more than this in one request. */
export const MAX_PIECE = 256 * 1024 * 1024;
/** Ranges read as ops of at most this (the largest request the block layer takes whole), so a big range can go to several rings. */
const SPREAD_PIECE = 4 * 1024 * 1024;
/** A plan of at least this many bytes goes out as one batch per ring: warm reads are copies, and one ring is one core. */
const SPREAD_BYTES = 8 * 1024 * 1024;
/** Ranges start a cache line apart at least, at their file offset's place within one. */
const UNIT = 64;

export const roundDown = (v: number, a: number) => v - (v % a);
export const roundUp = (v: number, a: number) => roundDown(v + a - 1, a);

/** The alignment reads of this file need: O_DIRECT's on a local file system, else 1. */
export function readAlignment(st: FileStat): number {
  return st.engine === 'io_uring' && st.direct.active ? Math.max(st.direct.memoryAlign, st.direct.offsetAlign, 1) : 1;
}

interface Range {
  file: File;
  offset: number;
  length: number;
  align: number;
  /** Where byte `offset` lands in the buffer. */
  at: number;
  owner: number;
}

/** What a failed or short range turns into: the caller names its sample or tensor. */
export interface PlanFailure {
  owner: number;
  /** The op's error, or undefined when the file ended early. */
  error?: ThreeFSError;
  /** The file offset where the bytes stopped (short) or the op failed. */
  offset: number;
}

export class ReadPlan {
  /** Buffer bytes the plan needs. */
  bytes = 0;
  readonly #ranges: Range[] = [];

  /**
   * Adds [offset, offset + length) of `file`, read as the `align`-aligned range around it, placed
   * after what is planned so far. Returns where its first byte lands.
   */
  add(file: File, offset: number, length: number, align: number, owner: number): number {
    const unit = Math.max(align, UNIT);
    const at = roundUp(this.bytes, unit) + (offset % unit);
    if (length > 0) {
      this.#ranges.push({ file, offset, length, align, at, owner });
      this.bytes = at + roundUp(offset + length, align) - offset;
    }
    return at;
  }

  /** Room for `length` bytes, a cache line aligned, filled by place() calls. Returns where it starts. */
  reserve(length: number, unit = UNIT): number {
    const at = roundUp(this.bytes, unit);
    this.bytes = at + length;
    return at;
  }

  /** Reads exactly [offset, offset + length) of `file` to buffer[at ...] (room from reserve()). */
  place(file: File, offset: number, length: number, at: number, owner: number): void {
    if (length > 0) this.#ranges.push({ file, offset, length, align: 1, at, owner });
  }

  /**
   * Reads every range into `buffer`: one batch, or for a big plan one batch per ring, all in
   * flight at once. Resolves with the first failure in plan order (an op's error, or a file that
   * ended before a range's last byte), or undefined; rejects only once every batch settled.
   */
  async run(client: Client, buffer: IoBuffer, signal?: AbortSignal): Promise<PlanFailure | undefined> {
    const { ops, need, owner } = this.#ops(buffer);
    if (ops.length === 0) return undefined;
    const results = await inBatches(client, ops, this.bytes >= SPREAD_BYTES ? client.info().rings : 1, signal);
    for (let p = 0; p < results.length; p++) {
      const r = results[p];
      if (r.error) return { owner: owner[p], error: r.error, offset: r.error.offset ?? ops[p].fileOffset };
      if (r.bytes < need[p]) return { owner: owner[p], offset: ops[p].fileOffset + r.bytes };
    }
    return undefined;
  }

  /** The ops of the plan, and for each the bytes it must deliver and the caller's owner. */
  #ops(buffer: IoBuffer) {
    const ops: FileIoOp[] = [];
    const need: number[] = []; // the range may end before its aligned end
    const owner: number[] = [];
    const piece = this.bytes >= SPREAD_BYTES ? SPREAD_PIECE : MAX_PIECE;
    for (const r of this.#ranges) {
      const from = roundDown(r.offset, r.align);
      const length = roundUp(r.offset + r.length, r.align) - from;
      const base = r.at - (r.offset - from);
      for (let done = 0; done < length; done += piece) {
        const n = Math.min(piece, length - done);
        ops.push({ file: r.file, buffer: buffer.subarray(base + done, base + done + n), fileOffset: from + done });
        need.push(Math.min(n, r.offset + r.length - (from + done)));
        owner.push(r.owner);
      }
    }
    return { ops, need, owner };
  }
}

/**
 * `ops` as up to `batches` batches of consecutive ops (the client hands each to its least loaded
 * ring), results in op order. A rejection is passed on only after every batch settled: until
 * then the buffer is the device's.
 */
async function inBatches(client: Client, ops: FileIoOp[], batches: number, signal?: AbortSignal): Promise<OpResult[]> {
  const options = signal ? { signal } : undefined;
  if (batches <= 1 || ops.length === 1) return client.batchRead(ops, options);
  const per = Math.ceil(ops.length / batches);
  const runs: Promise<OpResult[]>[] = [];
  for (let i = 0; i < ops.length; i += per) runs.push(client.batchRead(ops.slice(i, i + per), options));
  const settled = await Promise.allSettled(runs);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
}
