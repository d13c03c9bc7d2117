// Finding keys: the index first (a hint this process keeps), then one batch of directory reads.
// Directory presence only: the slot header, checked by get, is the truth.
import type { ThreeFSError } from '../core/errors';
import { alive, setOf, type CacheParts } from './context';
import type { IdRecord, Loc } from './key-index';
import { DIR_BYTES } from './set-directory';
import type { KVKey } from './types';
import { checkKeyArray } from './checks';

/** Where each key is: the index, then the directories. `failed[i]`: key i's directory could not be read (its error). */
export async function locate(parts: CacheParts, refs: readonly IdRecord[], useIndex: boolean, now: number, failed?: (ThreeFSError | undefined)[]): Promise<(Loc | undefined)[]> {
  const out: (Loc | undefined)[] = new Array(refs.length).fill(undefined); // no holes: callers map over it
  const need = new Map<number, number[]>(); // set -> positions
  refs.forEach((r, i) => {
    const known = useIndex ? parts.index.locOf(r) : undefined;
    if (known && alive(known, now)) out[i] = known;
    else {
      const set = setOf(parts, r.id);
      const list = need.get(set);
      if (list) list.push(i);
      else need.set(set, [i]);
    }
  });
  if (need.size > 0) await fromDirectories(parts, refs, need, now, out, failed);
  return out;
}

/** Reads the directories of the sets in `need` and fills in (and indexes) what they list. */
async function fromDirectories(parts: CacheParts, refs: readonly IdRecord[], need: Map<number, number[]>, now: number, out: (Loc | undefined)[], failed?: (ThreeFSError | undefined)[]): Promise<void> {
  const sets = [...need.keys()];
  const buf = parts.staging.take(sets.length * DIR_BYTES);
  try {
    const errors: (ThreeFSError | undefined)[] = [];
    const dirs = await parts.shards.readDirs(sets, buf, errors);
    sets.forEach((set, s) => {
      const dir = dirs[s];
      for (const i of need.get(set)!) {
        if (failed && errors[s]) failed[i] = errors[s];
        const { id, hex } = refs[i];
        const way = dir ? dir.find(id, now) : -1;
        if (way < 0) {
          parts.index.delete(hex);
          continue;
        }
        const loc = dir!.loc(set, way);
        parts.index.set(hex, loc);
        out[i] = loc;
      }
    });
  } finally {
    parts.staging.give(buf);
  }
}

export function aliveInIndex(parts: CacheParts, r: IdRecord, now: number): boolean {
  const loc = parts.index.locOf(r);
  return loc !== undefined && alive(loc, now);
}

/** How many leading keys are present; `pin`: the found entries are pinned. */
export async function lookup(parts: CacheParts, keys: readonly KVKey[], pin: boolean): Promise<number> {
  checkKeyArray(keys);
  const now = Date.now();
  // The leading keys this process knows: one map lookup each (key to its id's record, which
  // holds the place), no hashing and no I/O.
  let locs: (Loc | undefined)[] = [];
  for (const key of keys) {
    const loc = typeof key === 'string' ? parts.keys.seen(key)?.locAt(now) : undefined;
    if (loc === undefined) break;
    locs.push(loc);
  }
  const known = locs.length;
  if (known < keys.length) {
    const rest = keys.slice(known).map((k, i) => parts.keys.recordOf(k, known + i));
    locs = locs.concat(await locate(parts, rest, true, now));
  }
  let n = 0;
  while (n < keys.length && locs[n]) n++;
  if (pin) for (let i = 0; i < n; i++) parts.pins.pin(parts.keys.idOf(keys[i], i).toString('hex'), locs[i]!);
  return n;
}

/** Whether each key is present (index or directory; not checked against the slot). */
export async function exists(parts: CacheParts, keys: readonly KVKey[]): Promise<boolean[]> {
  const locs = await locate(parts, parts.keys.records(keys), true, Date.now());
  return locs.map((l) => l !== undefined);
}
