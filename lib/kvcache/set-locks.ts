// Per-set locks of this process. Each set has a queue of the calls that want it, its holder
// first. A call joins the queues of all its sets at once (synchronously, so two calls can never
// each hold a set the other waits for) and goes on once it heads every one of them: no promise
// unless it has to wait.

export type Lock = { release: () => void };
/** A call waiting for (or holding) sets: how many of them are still another's; `go` lets it on. */
type SetWaiter = { blocked: number; sets: number[]; go: (() => void) | undefined };

export class SetLocks {
  readonly #queues = new Map<number, SetWaiter[]>(); // set -> calls holding (first) or waiting for it

  lock(sets: readonly number[]): Lock | Promise<Lock> {
    const waiter: SetWaiter = { blocked: 0, sets: [], go: undefined };
    for (const set of sets) this.#join(set, waiter);
    let released = false;
    const lock: Lock = {
      release: () => {
        if (released) return;
        released = true;
        this.#unlock(waiter);
      },
    };
    if (waiter.blocked === 0) return lock;
    return new Promise((resolve) => (waiter.go = () => resolve(lock)));
  }

  #join(set: number, waiter: SetWaiter): void {
    const queue = this.#queues.get(set);
    if (queue === undefined) this.#queues.set(set, [waiter]);
    else if (queue[queue.length - 1] === waiter) return; // a set named twice
    else {
      queue.push(waiter);
      waiter.blocked++;
    }
    waiter.sets.push(set);
  }

  #unlock(holder: SetWaiter): void {
    for (const set of holder.sets) {
      const queue = this.#queues.get(set)!;
      queue.shift(); // the holder heads every queue it is in
      if (queue.length === 0) {
        this.#queues.delete(set);
        continue;
      }
      const next = queue[0];
      if (--next.blocked === 0) next.go!();
    }
  }
}
