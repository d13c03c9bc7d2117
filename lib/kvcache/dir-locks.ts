// Locks over sets' directories across processes: an OFD write lock (fcntl F_OFD_SETLK) on each
// set's 4 KiB directory block, held from the read of the directory until the entries a put, delete
// or repair chose are written. Two processes then never choose ways from one listing, so neither
// overwrites a slot the other was told 'stored'. An attempt never waits: on contention the call
// tries again after a timer, so the JS thread never blocks, and gets take no lock at all. The lock
// belongs to the shard's descriptor, so a process that dies drops it with its descriptors.
//
// Within this process every call inside its window shares the set's lock (counted); SetLocks and
// Writing keep those calls apart.
import type { ThreeFSError } from '../core/errors';
import { DIR_BYTES } from './set-directory';
import type { Shards } from './shards';
import type { Counters } from './stats';

/** Longest pause between attempts at a contended set, in ms. */
const MAX_PAUSE = 4;
/** What fcntl answers where the file system keeps no byte-range locks. */
const NO_LOCKS = new Set(['ENOLCK', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'EINVAL']);

export class DirLocks {
  readonly #shards: Shards;
  readonly #stats: Counters;
  readonly #held = new Map<number, number>(); // set -> calls of this process inside their window
  #unsupported: ThreeFSError | undefined;

  constructor(shards: Shards, stats: Counters) {
    this.#shards = shards;
    this.#stats = stats;
  }

  /** Why no cross-process locks are taken (the file system keeps none), or undefined. */
  get unsupported(): ThreeFSError | undefined {
    return this.#unsupported;
  }

  /** Takes these sets (all or none at a time), waiting on timers while another process holds one. */
  async acquire(sets: readonly number[]): Promise<void> {
    if (this.#tryAll(sets)) return;
    this.#stats.lockWaits++;
    for (let pause = 0; ; pause = Math.min(MAX_PAUSE, pause * 2 || 1)) {
      await new Promise((resolve) => (pause === 0 ? setImmediate(resolve) : setTimeout(resolve, pause)));
      if (this.#tryAll(sets)) return;
    }
  }

  /** Gives back what acquire(sets) took. */
  release(sets: readonly number[]): void {
    for (const set of sets) {
      const left = (this.#held.get(set) ?? 1) - 1;
      if (left > 0) this.#held.set(set, left);
      else {
        this.#held.delete(set);
        this.#lock(set, false);
      }
    }
  }

  #tryAll(sets: readonly number[]): boolean {
    const taken: number[] = [];
    try {
      for (const set of sets) {
        if (this.#held.has(set) || taken.includes(set)) continue;
        if (!this.#lock(set, true)) {
          for (const s of taken) this.#lock(s, false);
          return false;
        }
        taken.push(set);
      }
    } catch (e) {
      for (const s of taken) this.#lock(s, false);
      throw e;
    }
    for (const set of sets) this.#held.set(set, (this.#held.get(set) ?? 0) + 1);
    return true;
  }

  /** One attempt (or release); true where the file system keeps no locks. */
  #lock(set: number, lock: boolean): boolean {
    if (this.#unsupported) return true;
    try {
      return this.#shards.dirFileOf(set).lockRange(this.#shards.dirOffset(set), DIR_BYTES, lock);
    } catch (e) {
      if (!lock) return true; // the descriptor is gone, and its locks with it
      if (!NO_LOCKS.has((e as ThreeFSError).code)) throw e;
      this.#unsupported = e as ThreeFSError;
      return true;
    }
  }
}
