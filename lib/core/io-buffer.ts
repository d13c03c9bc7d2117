import { argError } from './errors';
import type { NativeClient } from './native';

/** One native allocation. Every IoBuffer view of it shares this record. @internal */
export class Region {
  freed = false;
  constructor(
    readonly owner: NativeClient,
    readonly id: number,
    readonly memory: ArrayBuffer,
    readonly registered: boolean,
  ) {}
}

// Memory we lent to JS, by its ArrayBuffer: lets a plain Buffer or typed array that views an
// IoBuffer's memory still take the registered (zero-copy, fixed-buffer) path. Entered when `bytes`
// first hands the ArrayBuffer out, the only way it reaches code outside the library: a WeakMap
// entry per alloc() costs more than the rest of alloc() and free() (docs/engines.md).
const regions = new WeakMap<ArrayBuffer, Region>();

/** What the library copied out of a client's registered memory (the addon counts the buffers). @internal */
export interface MemoryAccount {
  copiedBytes: number;
}

const accounts = new WeakMap<NativeClient, MemoryAccount>();

/** The account of a client's memory (made on first use). @internal */
export function accountOf(owner: NativeClient): MemoryAccount {
  let account = accounts.get(owner);
  if (!account) accounts.set(owner, (account = { copiedBytes: 0 }));
  return account;
}

/** Wraps memory the native layer just allocated. @internal */
export function lend(owner: NativeClient, id: number, memory: ArrayBuffer, registered: boolean): IoBuffer {
  return new IoBuffer(new Region(owner, id, memory, registered), 0, memory.byteLength);
}

export function regionOf(memory: ArrayBufferLike): Region | undefined {
  return regions.get(memory as ArrayBuffer);
}

/** Whether an ArrayBuffer was detached (transferred): it then has no bytes, and no view can be made of it. */
export function isDetached(memory: ArrayBufferLike): boolean {
  if (memory.byteLength !== 0) return false;
  try {
    new Uint8Array(memory);
    return false;
  } catch {
    return true;
  }
}

/**
 * Page-aligned memory owned by the native layer: registered with the engine (an io_uring fixed
 * buffer here, a USRBIO iov on 3FS), seen from JS without a copy. Made by `client.alloc()`.
 * Freed by `free()` (every view then reads as empty) or by the garbage collector.
 */
export class IoBuffer {
  /** @internal */ readonly region: Region;
  readonly byteOffset: number;
  readonly byteLength: number;
  /** Made by subarray(): its memory is its allocation's, which only the allocation's own IoBuffer frees. */
  readonly isView: boolean;
  #bytes: Buffer | undefined;

  /** @internal */
  constructor(region: Region, byteOffset: number, byteLength: number, isView = false) {
    this.region = region;
    this.byteOffset = byteOffset;
    this.byteLength = byteLength;
    this.isView = isView;
  }

  /** A Buffer over this memory: no copy. Throws once the buffer is freed. */
  get bytes(): Buffer {
    if (this.region.freed) throw argError('ERR_BUFFER_FREED', 'the buffer was freed');
    if (this.#bytes === undefined) {
      regions.set(this.region.memory, this.region);
      this.#bytes = Buffer.from(this.region.memory, this.byteOffset, this.byteLength);
    }
    return this.#bytes;
  }

  /** Whether the engine registered this memory (true unless its table was full or locking failed). */
  get registered(): boolean {
    return this.region.registered;
  }

  get freed(): boolean {
    return this.region.freed;
  }

  /** A view of part of this buffer, sharing its memory and registration. A view cannot be freed: free the buffer alloc() returned. */
  subarray(start = 0, end = this.byteLength): IoBuffer {
    // As Uint8Array.prototype.subarray: integer part first (NaN is 0), negatives count from the end.
    const clamp = (v: number) => {
      const t = Math.trunc(Number(v)) || 0;
      return Math.min(Math.max(t < 0 ? this.byteLength + t : t, 0), this.byteLength);
    };
    const s = clamp(start);
    const e = Math.max(clamp(end), s);
    return new IoBuffer(this.region, this.byteOffset + s, e - s, true);
  }

  /**
   * Returns the memory now: the whole allocation, so every view of it reads as empty. Ops still in
   * flight keep it mapped until they settle. Refused on a view (ERR_BUFFER_VIEW).
   */
  free(): void {
    if (this.isView) {
      throw argError('ERR_BUFFER_VIEW', `free() of a view made by subarray() would free the whole allocation (${this.region.memory.byteLength} bytes) under every other view: free the IoBuffer that alloc() returned`);
    }
    if (this.region.freed) return;
    this.region.freed = true;
    this.#bytes = undefined;
    this.region.owner.free(this.region.id, this.region.memory);
  }

  /** Frees the allocation; a view's does nothing (its memory is its allocation's). */
  [Symbol.dispose](): void {
    if (!this.isView) this.free();
  }
}
