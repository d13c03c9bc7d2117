// What this process's puts are writing, from their plan until their directory entries are
// written: other calls choose none of these ways, and take these keys as present.
import type { SetLocks } from './set-locks';

export type Claim = { set: number; way: number; hex: string };

export class Writing {
  readonly #ways: number;
  readonly #byWay = new Map<number, number>(); // set * ways + way -> calls writing it
  readonly #ids = new Set<string>(); // id hex

  constructor(ways: number) {
    this.#ways = ways;
  }

  /** Whether a put of this process chose this way and is still writing its slot and entry. */
  way(set: number, way: number): boolean {
    return this.#byWay.has(set * this.#ways + way);
  }

  /** Whether a put of this process is storing this id. */
  id(hex: string): boolean {
    return this.#ids.has(hex);
  }

  /** Takes ways and ids for a put (under their sets' lock). */
  claim(claims: readonly Claim[]): void {
    for (const c of claims) {
      const key = c.set * this.#ways + c.way;
      this.#byWay.set(key, (this.#byWay.get(key) ?? 0) + 1);
      this.#ids.add(c.hex);
    }
  }

  /**
   * Gives ways and ids back once their entries are written. Under the sets' lock: a call that
   * read a directory before those entries landed must have chosen its ways before these are free.
   */
  async done(claims: readonly Claim[], locks: SetLocks): Promise<void> {
    const lock = await locks.lock(claims.map((c) => c.set));
    for (const c of claims) {
      const key = c.set * this.#ways + c.way;
      const left = (this.#byWay.get(key) ?? 1) - 1;
      if (left > 0) this.#byWay.set(key, left);
      else this.#byWay.delete(key);
      this.#ids.delete(c.hex);
    }
    lock.release();
  }
}
