// Reads a range of a file ahead of its consumer: reads of a few MiB (whatever the chunk size), each
// one batch into its own registered buffer, aligned to the file's O_DIRECT alignment (the range's
// ends are trimmed off). As the kernel's readahead, the window of reads in flight starts at one and
// doubles, up to `readAhead`, each time the consumer has to wait for a read after the first: a fast
// consumer keeps the device busy, a slow one holds two buffers.
import type { IoBuffer } from '../io-buffer';
import { abortError, type ReadPlan } from './options';
import type { StreamFile } from './source';

/** Bytes of the range, in order, in memory the read-ahead owns: valid until release(). @internal */
export interface Chunk {
  bytes: Buffer;
  release(): void;
}

interface Read {
  from: number;
  want: number;
  slot: IoBuffer;
  done: Promise<number>;
  landed: boolean;
}

/** Bytes per read: what the device needs per request to move at its speed (the bench's seq-read row). */
export const READ_BYTES = 4 * 1024 * 1024;

/** A read that landed: its bytes within the range, handed out in pieces of at most chunkSize. */
interface Landed {
  slot: IoBuffer;
  bytes: Buffer;
  at: number;
  lent: number; // pieces handed out and not yet released
}

const ignore = () => {};

/** @internal */
export class ReadAhead {
  readonly #file: StreamFile;
  readonly #plan: ReadPlan;
  readonly #stop: number; // rounded up to the alignment: reads never go past it
  readonly #slots: IoBuffer[] = [];
  readonly #free: IoBuffer[] = [];
  readonly #queue: Read[] = []; // in file order
  readonly #inFlight = new Set<Promise<number>>();
  readonly #cancel = new AbortController();
  readonly #readBytes: number; // bytes per read and per buffer
  #window = 1; // reads in flight wanted: grows up to plan.readAhead
  readonly #first: number; // file offset of the first read
  #next: number; // file offset of the next read
  #ended = false; // no more reads: the range is covered, or a read came back short (the file ends)
  #landed: Landed | undefined;
  #closing: Promise<void> | undefined;

  constructor(file: StreamFile, plan: ReadPlan) {
    this.#file = file;
    this.#plan = plan;
    const align = file.ioAlign;
    this.#next = this.#first = plan.start - (plan.start % align);
    this.#stop = plan.stop === Infinity ? Infinity : Math.ceil(plan.stop / align) * align;
    // No buffer bigger than the range needs (a small range, a small buffer).
    this.#readBytes = Math.ceil(Math.min(Math.max(plan.chunkSize, READ_BYTES), this.#stop - this.#next) / align) * align;
    plan.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The next chunk of the range; null at its end, or at the end of the file if that comes first. */
  async next(): Promise<Chunk | null> {
    for (;;) {
      const { signal } = this.#plan;
      if (signal?.aborted) throw abortError(signal);
      if (this.#closing) return null;
      const piece = this.#piece();
      if (piece) return piece;
      this.#fill();
      const read = this.#queue[0]; // stays queued, and counted in flight, until it lands
      if (!read) return null;
      // The first read is always waited for; a later one is when the consumer outruns the device.
      if (!read.landed && read.from !== this.#first) this.#widen();
      const bytes = await read.done.catch((e) => {
        this.#queue.shift();
        this.#free.push(read.slot);
        throw signal?.aborted ? abortError(signal) : e;
      });
      this.#queue.shift();
      if (bytes < read.want) this.#endAt();
      const lo = Math.max(this.#plan.start - read.from, 0);
      const hi = Math.min(bytes, this.#plan.stop - read.from);
      if (hi > lo) this.#landed = { slot: read.slot, bytes: read.slot.bytes.subarray(lo, hi), at: 0, lent: 0 };
      else this.#free.push(read.slot);
      // Another read takes its place in flight while the consumer works through this one.
      this.#fill();
    }
  }

  /** Cancels the reads in flight, waits until the device let go of their memory, then frees it. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#plan.signal?.removeEventListener('abort', this.#onAbort);
      this.#cancel.abort();
      await Promise.allSettled([...this.#inFlight]);
      this.#queue.length = 0;
      this.#landed = undefined;
      for (const slot of this.#slots) slot.free();
      this.#slots.length = this.#free.length = 0;
    })();
    return this.#closing;
  }

  // The next piece of the read that landed last, if any is left.
  #piece(): Chunk | null {
    const landed = this.#landed;
    if (!landed || landed.at >= landed.bytes.length) return null;
    const bytes = landed.bytes.subarray(landed.at, landed.at + this.#plan.chunkSize);
    landed.at += bytes.length;
    landed.lent++;
    if (landed.at >= landed.bytes.length) this.#landed = undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--landed.lent === 0 && landed.at >= landed.bytes.length && !this.#closing) this.#free.push(landed.slot);
    };
    return { bytes, release };
  }

  // The consumer waits for the device: more reads in flight, so that it waits less.
  #widen(): void {
    this.#window = Math.min(this.#window * 2, this.#plan.readAhead);
    this.#fill();
  }

  #fill(): void {
    while (!this.#ended && !this.#closing && this.#queue.length < this.#window) {
      const slot = this.#slot();
      if (!slot) return;
      const from = this.#next;
      const want = Math.min(slot.byteLength, this.#stop - from);
      this.#next += want;
      if (this.#next >= this.#stop) this.#ended = true;
      const done = this.#file.read(slot, from, want, { signal: this.#cancel.signal });
      const read: Read = { from, want, slot, done, landed: false };
      this.#inFlight.add(done);
      done.catch(ignore).finally(() => {
        read.landed = true;
        this.#inFlight.delete(done);
      });
      this.#queue.push(read);
    }
  }

  // A free buffer, or a new one while there are at most as many as the window (one more may be
  // lent out).
  #slot(): IoBuffer | undefined {
    const reused = this.#free.pop();
    if (reused) return reused;
    if (this.#slots.length > this.#window) return undefined;
    const slot = this.#file.allocBuffer(this.#readBytes);
    this.#slots.push(slot);
    return slot;
  }

  // The file ends before the range does: reads already issued past that point are dropped.
  #endAt(): void {
    this.#ended = true;
    for (const read of this.#queue.splice(0)) {
      read.done.catch(ignore).finally(() => {
        if (!this.#closing) this.#free.push(read.slot);
      });
    }
  }

  readonly #onAbort = (): void => {
    this.#cancel.abort(this.#plan.signal?.reason);
  };
}
