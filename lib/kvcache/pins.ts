// Pins of this process (lookup(..., { pin: true })): a pinned entry's way is kept from this
// process's eviction until release(). Counted per key and per way (set * ways + way).
import type { Loc } from './key-index';

export class Pins {
  readonly #ways: number;
  readonly #byId = new Map<string, { set: number; way: number; count: number }>(); // id hex
  readonly #byWay = new Map<number, number>(); // set * ways + way -> pin count

  constructor(ways: number) {
    this.#ways = ways;
  }

  get size(): number {
    return this.#byId.size;
  }

  isPinned(set: number, way: number): boolean {
    return this.#byWay.has(set * this.#ways + way);
  }

  pin(hex: string, loc: Loc): void {
    const pin = this.#byId.get(hex);
    if (!pin) {
      this.#byId.set(hex, { set: loc.set, way: loc.way, count: 1 });
      this.#pinWay(loc.set, loc.way);
      return;
    }
    pin.count++;
    // The key was stored again elsewhere since (deleted, or lost to another process): the pin
    // protects where it is now, not the way it left.
    if (pin.set !== loc.set || pin.way !== loc.way) {
      this.#unpinWay(pin.set, pin.way);
      pin.set = loc.set;
      pin.way = loc.way;
      this.#pinWay(loc.set, loc.way);
    }
  }

  /** Drops one pin of the id; an id not pinned is ignored. */
  release(hex: string): void {
    const pin = this.#byId.get(hex);
    if (!pin) return;
    if (--pin.count > 0) return;
    this.#byId.delete(hex);
    this.#unpinWay(pin.set, pin.way);
  }

  #pinWay(set: number, way: number): void {
    const w = set * this.#ways + way;
    this.#byWay.set(w, (this.#byWay.get(w) ?? 0) + 1);
  }

  #unpinWay(set: number, way: number): void {
    const w = set * this.#ways + way;
    const c = (this.#byWay.get(w) ?? 1) - 1;
    if (c > 0) this.#byWay.set(w, c);
    else this.#byWay.delete(w);
  }
}
