// Clears directory entries that still name a slot which failed its checks (same id, way and
// epoch as when it was located): a crash between a slot write and its directory write, a torn
// slot or a lost race leaves such entries, and they would make put() say 'present' forever.
import type { CacheParts } from './context';
import type { Loc } from './key-index';
import { DIR_BYTES } from './set-directory';
import type { DirWay } from './shards';

/** A listing that sent a get to a slot failing its checks. */
export type Stale = { id: Buffer; loc: Loc };

export async function repair(parts: CacheParts, stale: readonly Stale[]): Promise<void> {
  const sets = [...new Set(stale.map((x) => x.loc.set))];
  const buf = parts.staging.take(sets.length * DIR_BYTES); // before the lock (see put)
  const lock = await parts.locks.lock(sets);
  let shared = false;
  try {
    await parts.dirLocks.acquire(sets); // until the entries are written, as put
    shared = true;
    const dirs = await parts.shards.readDirs(sets, buf);
    const cleared: DirWay[] = [];
    sets.forEach((set, k) => {
      const dir = dirs[k];
      if (!dir) return;
      for (const { id, loc } of stale) {
        if (loc.set !== set) continue;
        if (parts.writing.way(set, loc.way)) continue; // a put of this process lists its own key there
        if (!dir.valid(loc.way) || !dir.holds(loc.way, id) || dir.epoch(loc.way) !== loc.epoch) continue;
        dir.clear(loc.way);
        cleared.push({ set, way: loc.way, dir });
      }
    });
    const rs = await parts.shards.write(parts.shards.entryWrites(cleared, buf));
    parts.stats.repaired += rs.filter((r) => !r.error).length;
  } finally {
    parts.staging.give(buf);
    if (shared) parts.dirLocks.release(sets);
    lock.release();
  }
}
