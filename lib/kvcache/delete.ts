// delete(): clears directory entries and zeroes slot headers, but only where the header still
// holds the key (read first, in one batch: another process may have reused the way since the
// directory was written).
import type { FileIoOp } from '../core/client';
import type { ThreeFSError } from '../core/errors';
import type { IoBuffer } from '../core/io-buffer';
import { setOf, type CacheParts } from './context';
import type { SetDirectory } from './set-directory';
import { DIR_BYTES } from './set-directory';
import type { DirWay } from './shards';
import { headerNames, HEADER_BYTES } from './slot-header';
import type { KVKey } from './types';

/** One delete call's state. `failure`: the first read or write that failed. */
interface DeleteCall {
  readonly parts: CacheParts;
  readonly ids: Buffer[];
  readonly found: boolean[];
  readonly listed: { i: number; set: number; way: number }[]; // slots whose headers are checked
  readonly cleared: DirWay[];
  failure: ThreeFSError | undefined;
}

export async function del(parts: CacheParts, keys: readonly KVKey[]): Promise<boolean[]> {
  const ids = parts.keys.ids(keys);
  const sets = [...new Set(ids.map((id) => setOf(parts, id)))];
  // The directories, then a header block of zeros; before the lock (see put).
  const dirBuf = parts.staging.take(sets.length * DIR_BYTES + HEADER_BYTES);
  const lock = await parts.locks.lock(sets);
  let shared = false;
  const call: DeleteCall = { parts, ids, found: ids.map(() => false), listed: [], cleared: [], failure: undefined };
  let heads: IoBuffer | undefined;
  try {
    await parts.dirLocks.acquire(sets); // until the entries are written, as put
    shared = true;
    const dirErrors: (ThreeFSError | undefined)[] = [];
    const dirs = await parts.shards.readDirs(sets, dirBuf, dirErrors);
    sets.forEach((set, k) => {
      if (dirs[k]) clearListings(call, set, dirs[k]);
      else call.failure ??= dirErrors[k];
    });
    const ops: FileIoOp[] = [];
    if (call.listed.length > 0) {
      heads = parts.staging.take(call.listed.length * parts.shards.headRead);
      const zeros = dirBuf.subarray(sets.length * DIR_BYTES, sets.length * DIR_BYTES + HEADER_BYTES);
      await zeroHeaders(call, heads, zeros, ops);
    }
    for (const r of await parts.shards.write([...ops, ...parts.shards.entryWrites(call.cleared, dirBuf)])) call.failure ??= r.error ?? undefined;
    parts.stats.deleted += call.found.filter(Boolean).length;
    if (call.failure) throw call.failure;
    // A key named twice: its first place did the work, and both say what the slot held.
    const held = new Set(ids.filter((_, i) => call.found[i]).map((id) => id.toString('hex')));
    return ids.map((id) => held.has(id.toString('hex')));
  } finally {
    if (heads) parts.staging.give(heads);
    parts.staging.give(dirBuf);
    if (shared) parts.dirLocks.release(sets);
    lock.release();
  }
}

/** Clears every listing of the call's keys in this set's directory; their slots' headers are checked next. */
function clearListings(call: DeleteCall, set: number, dir: SetDirectory): void {
  const { parts } = call;
  call.ids.forEach((id, i) => {
    if (setOf(parts, id) !== set) return;
    parts.index.delete(id.toString('hex'));
    for (let way = dir.find(id); way >= 0; way = dir.find(id)) {
      dir.clear(way);
      if (parts.writing.way(set, way)) {
        // A put of this process is replacing it there: the key goes with that put, and its
        // new slot and entry must not be zeroed or cleared behind it.
        call.found[i] = true;
        continue;
      }
      call.listed.push({ i, set, way });
      call.cleared.push({ set, way, dir });
    }
  });
}

/** Reads the listed slots' headers; each that still names its key is zeroed (an op in `ops`). */
async function zeroHeaders(call: DeleteCall, heads: IoBuffer, zeros: IoBuffer, ops: FileIoOp[]): Promise<void> {
  const { parts } = call;
  const rs = await parts.shards.headReads(call.listed, heads);
  zeros.bytes.fill(0);
  call.listed.forEach((x, k) => {
    if (rs[k].error) {
      call.failure ??= rs[k].error!;
      return;
    }
    parts.stats.bytesRead += rs[k].bytes;
    if (!headerNames(heads.bytes, parts.shards.headAt(k), call.ids[x.i])) return; // reused (or never written): not ours to clear
    call.found[x.i] = true;
    ops.push({ file: parts.shards.fileOf(x.set), buffer: zeros, fileOffset: parts.shards.slotOffset(x.set, x.way) });
  });
}
