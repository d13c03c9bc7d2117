// get()'s pool (without `into`): slot-sized pieces of a few large registered allocations (slabs),
// lent to callers until recycle(). A lent Buffer collected without recycle() has its slot written
// off (a subarray of it may still be alive), and its slab is left to the collector.
import type { IoBuffer } from '../core/io-buffer';
import { HEADER_BYTES } from './slot-header';
import type { Counters } from './stats';

/** One allocation of the pool: `slots` slot-sized pieces of registered memory. */
interface Slab {
  mem: IoBuffer;
  slots: number;
  idle: number;
  /** Slots lent and then dropped by the caller without recycle(): never reused. */
  abandoned: number;
  retired: boolean;
}

export interface Slot {
  slab: Slab;
  mem: IoBuffer;
}

export class SlotPool {
  readonly #alloc: (bytes: number) => IoBuffer;
  readonly #slotBytes: number;
  readonly #maxIdle: number;
  readonly #stats: Counters;
  readonly #idle: Slot[] = [];
  readonly #slabs = new Set<Slab>();
  readonly #lent = new WeakMap<Uint8Array, Slot>();
  #lentCount = 0;
  readonly #abandon = new FinalizationRegistry<Slot>((slot) => {
    slot.slab.abandoned++;
    this.#lentCount--;
  });
  /** Set when the cache starts closing: wholly idle slabs go as soon as they are. */
  closing = false;

  constructor(alloc: (bytes: number) => IoBuffer, slotBytes: number, poolBytes: number, stats: Counters) {
    this.#alloc = alloc;
    this.#slotBytes = slotBytes;
    this.#maxIdle = Math.max(1, Math.floor(poolBytes / slotBytes));
    this.#stats = stats;
  }

  get lent(): number {
    return this.#lentCount;
  }

  get bytes(): number {
    let bytes = 0;
    for (const slab of this.#slabs) bytes += slab.mem.byteLength;
    return bytes;
  }

  /** `n` slots: idle ones first, the rest from one new slab. */
  take(n: number): Slot[] {
    const missing = n - this.#idle.length;
    // The new slab first: if its allocation fails, the idle slots are still the pool's.
    if (missing > 0) this.#addSlab(missing);
    const out = this.#idle.splice(this.#idle.length - n);
    for (const s of out) s.slab.idle--;
    return out;
  }

  #addSlab(missing: number): void {
    const S = this.#slotBytes;
    const count = Math.max(missing, Math.min(8, this.#maxIdle, Math.floor((32 << 20) / S)));
    const slab: Slab = { mem: this.#alloc(count * S), slots: count, idle: count, abandoned: 0, retired: false };
    this.#slabs.add(slab);
    this.#stats.poolAllocs++;
    for (let k = 0; k < count; k++) this.#idle.push({ slab, mem: slab.mem.subarray(k * S, (k + 1) * S) });
  }

  /** Back to the pool (a miss's slot, or a recycled one); whole idle slabs beyond poolBytes go. */
  give(slot: Slot): void {
    if (slot.slab.retired) return;
    slot.slab.idle++;
    this.#idle.push(slot);
    if (this.#idle.length <= this.#maxIdle && !this.closing) return;
    for (const slab of this.#slabs) {
      if (this.#idle.length <= this.#maxIdle && !this.closing) break;
      if (slab.idle + slab.abandoned !== slab.slots) continue;
      this.#retire(slab);
    }
  }

  #retire(slab: Slab): void {
    slab.retired = true;
    this.#slabs.delete(slab);
    for (let k = this.#idle.length - 1; k >= 0; k--) if (this.#idle[k].slab === slab) this.#idle.splice(k, 1);
    // A slab with an abandoned slot may still be viewed by a subarray the caller kept: the
    // collector frees it; otherwise it goes now.
    if (slab.abandoned === 0) slab.mem.free();
  }

  /** Lends a hit's payload (a view of its slot) to the caller. */
  lend(slot: Slot, length: number): Buffer {
    const view = slot.mem.bytes.subarray(HEADER_BYTES, HEADER_BYTES + length);
    this.#lent.set(view, slot);
    this.#abandon.register(view, slot, view);
    this.#lentCount++;
    return view;
  }

  /** Takes back a lent Buffer; anything else is ignored. After close(): frees its slab once no Buffer of it is lent. */
  recycle(view: Uint8Array): void {
    const slot = this.#lent.get(view);
    if (!slot) return;
    this.#lent.delete(view);
    this.#abandon.unregister(view);
    this.#lentCount--;
    this.give(slot);
  }

  /** At close: slabs wholly idle go now; one with Buffers still lent is left to the collector. */
  retireIdle(): void {
    for (const slab of [...this.#slabs]) if (slab.idle + slab.abandoned === slab.slots) this.#retire(slab);
  }
}
