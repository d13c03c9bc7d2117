// put(): the sets' lock covers reading their directories and choosing ways; the ways chosen stay
// the call's (Writing) while their slots and entries are written, without the lock, so that other
// calls' puts to the same sets go on meanwhile. Across processes the sets' directories stay locked
// (DirLocks) from their read until the entries are written: no other process chooses from a
// listing that lacks them.
//
// Crash safety: each slot (header + payload, one op) is written before the directory entry that
// lists it (the entry waits for its slot inside the engine, IoOp.after, in the same batch), so a
// crash leaves either the old listing (a miss) or the new one over a whole slot.
import type { FileIoOp } from '../core/client';
import { argError, type OpResult, type ThreeFSError } from '../core/errors';
import { IoBuffer, isDetached } from '../core/io-buffer';
import { ERR, forKey, wholeNumber } from './checks';
import { setOf, type CacheParts } from './context';
import type { IdRecord } from './key-index';
import { DIR_BYTES, SetDirectory } from './set-directory';
import type { Lock } from './set-locks';
import type { DirWay } from './shards';
import { checkHeader, HEAD_AT, HEADER_BYTES, PAYLOAD_CRC_AT, slotSpan, writeHeader } from './slot-header';
import { countPuts } from './stats';
import type { KVKey, KVPayload, PutOptions, PutResult } from './types';
import type { Claim } from './writing';

/** A key of a put: where it goes and, once chosen, its way; its slot's memory (header room, then payload). */
type PutKey = { i: number; id: Buffer; hex: string; set: number; length: number; epoch: number; way: number; slot: IoBuffer | undefined };

/** One put call's state, handed from phase to phase. */
interface PutCall {
  readonly parts: CacheParts;
  readonly todo: PutKey[];
  readonly payloads: readonly KVPayload[];
  readonly results: PutResult[];
  readonly now: number;
  readonly expiry: number;
  readonly dirBuf: IoBuffer; // the directories, then the entries written
  staging: IoBuffer | undefined; // copies of payloads not from alloc()
  readonly claims: Claim[];
}

/** The directories of the call's sets, and why each unread one could not be read. */
type SetDirs = { bySet: Map<number, SetDirectory | null>; errorOf: Map<number, ThreeFSError | undefined> };
/** The keys with a way to store them in, and other entries to write (stale listings cleared). */
type Plan = { keys: PutKey[]; changed: Map<number, SetDirectory> };

export async function put(parts: CacheParts, keys: readonly KVKey[], buffers: readonly KVPayload[], options: PutOptions): Promise<PutResult[]> {
  const { records, payloads, ttl } = checkPutArgs(parts, keys, buffers, options);
  const results: PutResult[] = records.map(() => ({ status: 'failed' }));
  const now = Date.now();
  const todo = dedup(parts, records, payloads, results);
  if (todo.length === 0) return countPuts(parts.stats, results);
  const sets = [...new Set(todo.map((t) => t.set))];
  // Staging before the lock: a failed allocation must not leave the sets locked.
  const dirBuf = parts.staging.take(sets.length * DIR_BYTES);
  const call: PutCall = { parts, todo, payloads, results, now, expiry: ttl > 0 ? now + ttl : 0, dirBuf, staging: undefined, claims: [] };
  let lock: Lock | undefined = await parts.locks.lock(sets);
  let shared = false; // the sets' lock across processes, held until the entries are written
  try {
    await parts.dirLocks.acquire(sets);
    shared = true;
    const dirs = await readDirsAndStage(call, sets);
    const plan = chooseWays(call, dirs, await listedAndWhole(call, dirs.bySet));
    lock.release();
    lock = undefined;
    if (plan.keys.length > 0) await writeSlots(call, plan, dirs.bySet);
    parts.dirLocks.release(sets);
    shared = false;
    if (options?.verify === true && plan.keys.length > 0) await verifyStored(call, plan);
    return countPuts(parts.stats, results);
  } finally {
    lock?.release();
    if (shared) parts.dirLocks.release(sets);
    if (call.staging) parts.staging.give(call.staging);
    parts.staging.give(dirBuf);
    if (call.claims.length > 0) await parts.writing.done(call.claims, parts.locks);
  }
}

function checkPutArgs(parts: CacheParts, keys: readonly KVKey[], buffers: readonly KVPayload[], options: PutOptions) {
  const records = parts.keys.records(keys); // id and hex of each key
  if (!Array.isArray(buffers) || buffers.length !== records.length) throw argError('ERR_INVALID_ARG_VALUE', 'buffers must be an array with one payload per key');
  options ??= {};
  const ttl = options.ttlMs === undefined ? 0 : wholeNumber(options.ttlMs, 'ttlMs', 0, 2 ** 46);
  const payloads = buffers.map((b, i) => checkPayload(b, i, parts.geometry.pageBytes));
  return { records, payloads, ttl };
}

function checkPayload(b: KVPayload, i: number, pageBytes: number): KVPayload {
  if (b instanceof IoBuffer) {
    if (b.freed) throw argError('ERR_BUFFER_FREED', `buffer ${i} was freed`, { index: i });
  } else if (!ArrayBuffer.isView(b)) throw argError('ERR_INVALID_ARG_TYPE', `buffer ${i} must be an IoBuffer or an ArrayBufferView`, { index: i });
  else if (b.byteLength === 0 && isDetached(b.buffer)) throw argError('ERR_BUFFER_FREED', `buffer ${i}: its ArrayBuffer is detached (transferred)`, { index: i });
  if (b.byteLength > pageBytes) {
    throw argError('ERR_OUT_OF_RANGE', `buffer ${i}: ${b.byteLength} bytes is more than pageBytes (${pageBytes})`, { index: i });
  }
  return b;
}

/** Dedup within this call (a key named again is 'present'); against the cache, later (directories, then slot headers). */
function dedup(parts: CacheParts, records: readonly IdRecord[], payloads: readonly KVPayload[], results: PutResult[]): PutKey[] {
  const todo: PutKey[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < records.length; i++) {
    const { id, hex } = records[i];
    if (seen.has(hex)) results[i] = { status: 'present' };
    else {
      seen.add(hex);
      todo.push({ i, id, hex, set: setOf(parts, id), length: payloads[i].byteLength, epoch: 0, way: -1, slot: undefined });
    }
  }
  return todo;
}

/**
 * The directories, in one batch: dedup and the choice of ways. Meanwhile each slot's memory is
 * made ready (its header does not name the way), so that work costs no time.
 */
async function readDirsAndStage(call: PutCall, sets: number[]): Promise<SetDirs> {
  const dirErrors: (ThreeFSError | undefined)[] = [];
  const reading = call.parts.shards.readDirs(sets, call.dirBuf, dirErrors);
  try {
    call.staging = slotMemory(call);
  } catch (e) {
    await reading.catch(() => undefined); // dirBuf is the device's until then
    throw e;
  }
  const dirs = await reading;
  return { bySet: new Map(sets.map((s, k) => [s, dirs[k]])), errorOf: new Map(sets.map((s, k) => [s, dirErrors[k]])) };
}

/**
 * The memory each key's slot goes out from, header room then payload: in place for a payload
 * from cache.alloc() (once per call: a second key with the same memory is copied), else a copy
 * in staging memory (returned; stats().bytesCopied). Writes each header, and each key's epoch.
 */
function slotMemory(call: PutCall): IoBuffer | undefined {
  const used = new Set<IoBuffer>();
  const copies: PutKey[] = [];
  for (const t of call.todo) {
    t.epoch = call.parts.clock.next();
    const whole = call.parts.payloadOf.get(call.payloads[t.i] as IoBuffer);
    if (whole && !used.has(whole)) {
      used.add(whole);
      const span = slotSpan(t.length);
      t.slot = span === whole.byteLength ? whole : whole.subarray(0, span);
      writeHeader(whole.bytes, 0, t.id, t.length, t.epoch, call.expiry);
    } else copies.push(t);
  }
  return copies.length === 0 ? undefined : stageCopies(call, copies);
}

/** Copies these keys' payloads, each behind its header, into one staging buffer. */
function stageCopies(call: PutCall, copies: PutKey[]): IoBuffer {
  let total = 0;
  for (const t of copies) total += slotSpan(t.length);
  const staging = call.parts.staging.take(total);
  const bytes = staging.bytes;
  let at = 0;
  for (const t of copies) {
    const span = slotSpan(t.length);
    const payload = call.payloads[t.i];
    const src = payload instanceof IoBuffer ? payload.bytes : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    bytes.set(src, at + HEADER_BYTES);
    bytes.fill(0, at + HEADER_BYTES + src.byteLength, at + span);
    call.parts.stats.bytesCopied += src.byteLength;
    writeHeader(bytes, at, t.id, t.length, t.epoch, call.expiry);
    t.slot = staging.subarray(at, at + span);
    at += span;
  }
  return staging;
}

/**
 * Keys the directories list whose slot headers (one batch of reads of their fields, only when
 * there are any) still hold them: position -> way. 'present' is decided on disk, never from this
 * process's index (another process may have evicted the page); a listing the header
 * contradicts is stale (a crash or a lost race), and the key is stored again.
 */
async function listedAndWhole(call: PutCall, bySet: Map<number, SetDirectory | null>): Promise<Map<number, number>> {
  const { parts, now } = call;
  const presentAt = new Map<number, number>();
  const listed: { t: PutKey; set: number; way: number }[] = [];
  for (const t of call.todo) {
    const at = bySet.get(t.set)?.find(t.id, now) ?? -1;
    if (at >= 0) listed.push({ t, set: t.set, way: at });
  }
  if (listed.length === 0) return presentAt;
  const heads = parts.staging.take(listed.length * parts.shards.headRead);
  try {
    const rs = await parts.shards.headReads(listed, heads);
    listed.forEach((x, k) => {
      if (rs[k].error) return; // unreadable: store it again
      parts.stats.bytesRead += rs[k].bytes;
      const length = bySet.get(x.set)!.length(x.way);
      if (checkHeader(heads.bytes, parts.shards.headAt(k), x.t.id, length, parts.geometry.pageBytes, now) === 'ok') presentAt.set(x.t.i, x.way);
    });
  } finally {
    parts.staging.give(heads);
  }
  return presentAt;
}

/** A way for each key still to store; the ways chosen are claimed (Writing) until written. */
function chooseWays(call: PutCall, dirs: SetDirs, presentAt: Map<number, number>): Plan {
  const { parts, results } = call;
  const W = parts.geometry.ways;
  const taken = new Set<number>(); // set * ways + way chosen in this call
  const plan: Plan = { keys: [], changed: new Map() }; // changed: set * ways + way -> its directory
  for (const t of call.todo) {
    const dir = dirs.bySet.get(t.set);
    if (!dir) {
      parts.index.delete(t.hex);
      results[t.i] = { status: 'failed', error: forKey(dirs.errorOf.get(t.set)!, t.i) };
      continue;
    }
    if (isPresent(call, t, dir, presentAt.get(t.i))) continue;
    parts.index.delete(t.hex);
    // A listing the slot header contradicts is stale: that way is free for this put.
    const stale = dir.find(t.id);
    if (stale >= 0) {
      dir.clear(stale);
      plan.changed.set(t.set * W + stale, dir);
    }
    const way = chooseWay(parts, t, dir, taken, call.now);
    if (way < 0) {
      results[t.i] = { status: 'failed', error: noWayError(t, taken, W) };
      continue;
    }
    taken.add(t.set * W + way);
    t.way = way;
    plan.keys.push(t);
  }
  for (const t of plan.keys) call.claims.push({ set: t.set, way: t.way, hex: t.hex });
  parts.writing.claim(call.claims);
  return plan;
}

/** Whether the key is there already: its slot holds it, or another call of this process is storing it. */
function isPresent(call: PutCall, t: PutKey, dir: SetDirectory, at: number | undefined): boolean {
  if (at !== undefined) call.parts.index.set(t.hex, dir.loc(t.set, at));
  else if (!call.parts.writing.id(t.hex)) return false;
  call.results[t.i] = { status: 'present' };
  return true;
}

function noWayError(t: PutKey, taken: Set<number>, W: number): ThreeFSError {
  let byThisCall = false;
  for (let w = 0; w < W; w++) byThisCall ||= taken.has(t.set * W + w);
  return byThisCall
    ? argError(ERR.setFull, `set ${t.set}: this call has more keys for it than it has ways (${W}, less any pinned)`, { index: t.i })
    : argError(ERR.full, `set ${t.set}: every way is pinned by this process`, { index: t.i });
}

/**
 * Free way, else an expired one, else the oldest epoch; never one pinned here or taken in this
 * call. A way another call of this process is writing comes last: taking it costs that call's
 * page (a miss later, never wrong data), which only a set full of concurrent puts should do.
 * The free ways are tried from one the key's id picks: two processes that read a set's directory
 * at once and store different keys rarely pick the same free way (first-free, they always did).
 */
function chooseWay(parts: CacheParts, t: PutKey, dir: SetDirectory, taken: Set<number>, now: number): number {
  const W = parts.geometry.ways;
  const start = t.id.readUInt16LE(6) % W; // bytes 0-5 pick the set
  let best = -1;
  let bestRank = Infinity;
  for (let k = 0; k < W; k++) {
    const w = (start + k) % W;
    if (taken.has(t.set * W + w) || parts.pins.isPinned(t.set, w)) continue;
    const rank = parts.writing.way(t.set, w) ? Number.MAX_VALUE : !dir.valid(w) ? -2 : !dir.alive(w, now) ? -1 : dir.epoch(w);
    if (rank === -2) return w; // a free way: nothing ranks before it
    if (rank < bestRank) {
      bestRank = rank;
      best = w;
    }
  }
  return best;
}

/**
 * put({ verify: true }): reads the directories of the sets written again. A key whose way now lists
 * another key was overwritten by another process's put that chose the same way from an older
 * listing: it is reported 'lost' (stats().lost), not 'stored'.
 */
async function verifyStored(call: PutCall, plan: Plan): Promise<void> {
  const stored = plan.keys.filter((t) => call.results[t.i].status === 'stored');
  const sets = [...new Set(stored.map((t) => t.set))];
  if (sets.length === 0) return;
  const dirs = await call.parts.shards.readDirs(sets, call.dirBuf);
  for (const t of stored) {
    const dir = dirs[sets.indexOf(t.set)];
    if (!dir || dir.holds(t.way, t.id)) continue; // unread: what the write said stands
    const e = argError(ERR.raced, `set ${t.set}, way ${t.way}: another process's put took this way after this one stored it`);
    call.results[t.i] = { status: 'lost', error: forKey(e, t.i) };
    call.parts.index.delete(t.hex);
  }
}

/**
 * One batch: every slot (header and payload in one op, its payload CRC32C sealed by the engine
 * as it goes out), and each slot's directory entry, which makes the page visible to other
 * processes, written by the engine once that slot is whole (IoOp.after). Listings found stale go
 * alongside.
 */
async function writeSlots(call: PutCall, plan: Plan, bySet: Map<number, SetDirectory | null>): Promise<void> {
  const { parts } = call;
  const W = parts.geometry.ways;
  const ops = slotWrites(call, plan.keys);
  const evicts = plan.keys.map((t) => {
    const dir = bySet.get(t.set)!;
    const old = dir.alive(t.way, call.now) && !dir.holds(t.way, t.id) ? dir.id(t.way).toString('hex') : undefined;
    dir.list(t.way, t.id, t.length, t.epoch, call.expiry);
    plan.changed.delete(t.set * W + t.way);
    return old;
  });
  const entries: DirWay[] = plan.keys.map((t) => ({ set: t.set, way: t.way, dir: bySet.get(t.set)! }));
  for (const [key, dir] of plan.changed) entries.push({ set: Math.floor(key / W), way: key % W, dir });
  parts.shards.entryWrites(entries, call.dirBuf).forEach((op, k) => {
    if (k < plan.keys.length) op.after = k;
    ops.push(op);
  });
  const rs = await parts.client.batchWrite(ops);
  settleSlots(call, plan.keys, rs, evicts);
  settleEntries(call, entries, plan.keys.length, rs);
}

function slotWrites(call: PutCall, keys: readonly PutKey[]): FileIoOp[] {
  const { shards } = call.parts;
  let range = { offset: HEADER_BYTES, length: -1, at: HEAD_AT + PAYLOAD_CRC_AT };
  return keys.map((t) => {
    if (range.length !== t.length) range = { offset: HEADER_BYTES, length: t.length, at: HEAD_AT + PAYLOAD_CRC_AT }; // shared while lengths repeat
    return { file: shards.fileOf(t.set), buffer: t.slot!, fileOffset: shards.slotOffset(t.set, t.way), crc32c: range };
  });
}

/** Each key's result from its slot write; the index learns where the stored ones are. */
function settleSlots(call: PutCall, keys: readonly PutKey[], rs: OpResult[], evicts: (string | undefined)[]): void {
  const { parts, results } = call;
  keys.forEach((t, k) => {
    const r = rs[k];
    if (r.error) {
      results[t.i] = { status: 'failed', error: forKey(r.error, t.i) };
      return;
    }
    parts.stats.bytesWritten += r.bytes;
    const old = evicts[k];
    if (old !== undefined) {
      parts.stats.evicted++;
      parts.index.delete(old);
    }
    parts.index.set(t.hex, { set: t.set, way: t.way, length: t.length, epoch: t.epoch, expiry: call.expiry });
    results[t.i] = { status: 'stored' };
  });
}

/**
 * A slot whose entry write failed is still found by this process (index), and is a miss for
 * others: a cache may lose entries, so it counts as stored (stats().unlisted).
 */
function settleEntries(call: PutCall, entries: readonly DirWay[], slots: number, rs: OpResult[]): void {
  const { stats } = call.parts;
  entries.forEach((e, k) => {
    const r = rs[slots + k];
    if (!r.error) stats.bytesWritten += r.bytes;
    else if ((k >= slots || !rs[k].error) && e.dir.valid(e.way)) stats.unlisted++;
  });
}
