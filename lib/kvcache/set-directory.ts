// A KVCache set directory: the 4 KiB block in front of a set's slots that lists what each way
// holds. It is a hint (the slot header is the truth: every get checks id, length and CRC there),
// so it needs no checksum of its own, and each way's entry is written on its own: processes that
// put into different ways of one set never undo each other's listings (no read-modify-write of
// the block), and a torn or damaged entry costs a miss, never wrong data.
//
// Layout: `ways` entries of 40 bytes from offset 0, little-endian: id 16 B | length u32 | mark
// u32 ('KVE2' when the entry is in use) | epoch f64 | expiry f64 (ms since the epoch, 0 = never).
// All zeros (a hole, a cleared entry) is a free way. Decoded without an object per way: the entries
// stay in their on-disk bytes.
export const DIR_BYTES = 4096;
export const DIR_ENTRY = 40;
export const MAX_WAYS = Math.floor(DIR_BYTES / DIR_ENTRY); // 102
const IN_USE = 0x3245564b; // 'KVE2'

export class SetDirectory {
  readonly ways: number;
  readonly #e: Buffer; // ways x DIR_ENTRY bytes, as on disk

  private constructor(ways: number, entries: Buffer) {
    this.ways = ways;
    this.#e = entries;
  }

  static empty(ways: number): SetDirectory {
    return new SetDirectory(ways, Buffer.alloc(ways * DIR_ENTRY));
  }

  /** The directory in `block` (copied: the block's memory may be reused at once). */
  static parse(block: Buffer, ways: number): SetDirectory {
    return new SetDirectory(ways, Buffer.from(block.subarray(0, ways * DIR_ENTRY)));
  }

  /** Where a way's entry lies in the directory block. */
  static offsetOf(way: number): number {
    return way * DIR_ENTRY;
  }

  /** Copies a way's entry, as it should go to disk, into `into` at `at`. */
  copyEntry(way: number, into: Uint8Array, at: number): void {
    this.#e.copy(into, at, way * DIR_ENTRY, (way + 1) * DIR_ENTRY);
  }

  valid(way: number): boolean {
    return this.#e.readUInt32LE(way * DIR_ENTRY + 20) === IN_USE;
  }
  length(way: number): number {
    return this.#e.readUInt32LE(way * DIR_ENTRY + 16);
  }
  epoch(way: number): number {
    return this.#e.readDoubleLE(way * DIR_ENTRY + 24);
  }
  expiry(way: number): number {
    return this.#e.readDoubleLE(way * DIR_ENTRY + 32);
  }
  /** In use and not expired at `now`. */
  alive(way: number, now: number): boolean {
    if (!this.valid(way)) return false;
    const expiry = this.expiry(way);
    return expiry === 0 || expiry > now;
  }
  /** The id of a way's entry, as a view of the directory's bytes. */
  id(way: number): Buffer {
    return this.#e.subarray(way * DIR_ENTRY, way * DIR_ENTRY + 16);
  }
  holds(way: number, id: Uint8Array): boolean {
    return this.#e.compare(id, 0, 16, way * DIR_ENTRY, way * DIR_ENTRY + 16) === 0;
  }

  /** The first way from `start` listing `id` (alive at `now`, if given), or -1. */
  find(id: Uint8Array, now?: number, start = 0): number {
    for (let w = start; w < this.ways; w++) {
      if (this.valid(w) && this.holds(w, id) && (now === undefined || this.alive(w, now))) return w;
    }
    return -1;
  }

  /** Where this way's entry sends a get. */
  loc(set: number, way: number): { set: number; way: number; length: number; epoch: number; expiry: number } {
    return { set, way, length: this.length(way), epoch: this.epoch(way), expiry: this.expiry(way) };
  }

  list(way: number, id: Uint8Array, length: number, epoch: number, expiry: number): void {
    const at = way * DIR_ENTRY;
    this.#e.set(id.subarray(0, 16), at);
    this.#e.writeUInt32LE(length, at + 16);
    this.#e.writeUInt32LE(IN_USE, at + 20);
    this.#e.writeDoubleLE(epoch, at + 24);
    this.#e.writeDoubleLE(expiry, at + 32);
  }

  clear(way: number): void {
    this.#e.fill(0, way * DIR_ENTRY, (way + 1) * DIR_ENTRY);
  }
}
