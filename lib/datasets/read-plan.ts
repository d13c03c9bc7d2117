// Where the ranges of one batch go in one registered buffer, and the ops that read them: shared
// by the dataset readers (ffrecord samples, safetensors tensors).
//
// A file read with O_DIRECT needs aligned offsets, lengths and memory; the ranges a format asks
// for are not. Such a range is read as the aligned range around it, placed so that the bytes
// wanted sit at the same distance from an aligned address as they do in the file; the caller's
// view starts there. Ranges of other files (or on 3FS, which needs no alignment) are read as
// they are.
import type { Client, FileIoOp } from '../core/client';
import type { ThreeFSError } from '../core/errors';
import type { File, FileStat } from '../core/file';
import type { IoBuffer } from '../core/io-buffer';

/** Ops larger than this are split: no engine has to move more than this in one request. */
export const MAX_PIECE = 256 * 1024 * 1024;
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
   * Reads every range into `buffer` in one submission. Resolves with the first failure (an op's
   * error, or a file that ended before a range's last byte), or undefined.
   */
  async run(client: Client, buffer: IoBuffer, signal?: AbortSignal): Promise<PlanFailure | undefined> {
    const ops: FileIoOp[] = [];
    const need: number[] = []; // bytes op p must deliver: the range may end before its aligned end
    const owner: number[] = [];
    for (const r of this.#ranges) {
      const from = roundDown(r.offset, r.align);
      const length = roundUp(r.offset + r.length, r.align) - from;
      const base = r.at - (r.offset - from);
      for (let done = 0; done < length; done += MAX_PIECE) {
        const n = Math.min(MAX_PIECE, length - done);
        ops.push({ file: r.file, buffer: buffer.subarray(base + done, base + done + n), fileOffset: from + done });
        need.push(Math.min(n, r.offset + r.length - (from + done)));
        owner.push(r.owner);
      }
    }
    if (ops.length === 0) return undefined;
    const results = await client.batchRead(ops, signal ? { signal } : undefined);
    for (let p = 0; p < results.length; p++) {
      const r = results[p];
      if (r.error) return { owner: owner[p], error: r.error, offset: r.error.offset ?? ops[p].fileOffset };
      if (r.bytes < need[p]) return { owner: owner[p], offset: ops[p].fileOffset + r.bytes };
    }
    return undefined;
  }
}
