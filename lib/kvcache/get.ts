// get(): round 1 trusts the index; what failed there is looked up again in the directories
// (round 2). Each hit's header (id, length, expiry, CRC) and payload CRC32C are checked; anything
// else is a miss, and a listing that sent a get to a slot failing its checks is cleared (repair).
import type { FileIoOp } from '../core/client';
import { argError, type OpResult, type ThreeFSError } from '../core/errors';
import { IoBuffer } from '../core/io-buffer';
import { ERR, forKey } from './checks';
import type { CacheParts } from './context';
import type { IdRecord, Loc } from './key-index';
import { aliveInIndex, locate } from './locate';
import { repair, type Stale } from './repair';
import { checkHeader, HEAD_AT, HEAD_READ, HEADER_BYTES, PAYLOAD_CRC_AT, slotSpan } from './slot-header';
import type { Slot } from './slot-pool';
import { countGets } from './stats';
import type { GetResult, KVKey, KVPayload } from './types';

/** One get call's state. */
interface GetCall {
  readonly parts: CacheParts;
  readonly refs: readonly IdRecord[];
  readonly into: readonly KVPayload[] | undefined;
  readonly results: GetResult[];
  readonly stale: Stale[];
}

/** The reads of one batch of located slots, and where each key's header lands. */
interface SlotReads {
  readonly ops: FileIoOp[];
  readonly heads: Buffer[]; // jobs[k]'s header is in heads[k] from headAt[k] (no view per key)
  readonly headAt: number[];
  readonly firstOp: number[]; // jobs[k]'s ops are ops[firstOp[k]] up to firstOp[k + 1]
}

type Job = { i: number; loc: Loc };

export async function get(parts: CacheParts, keys: readonly KVKey[], into?: readonly KVPayload[]): Promise<GetResult[]> {
  const refs = parts.keys.records(keys);
  if (into !== undefined) checkInto(parts, into, refs.length);
  const call: GetCall = { parts, refs, into, results: refs.map(() => ({ status: 'miss' })), stale: [] };
  const n = refs.length;
  let pending = refs.map((_, i) => i);
  const tried: (Loc | undefined)[] = new Array(n).fill(undefined); // round 1: where each key was sent
  const fromIndex = new Uint8Array(n); // round 1: 1 where the index sent it (worth a second round)
  for (let round = 0; round < 2 && pending.length > 0; round++) {
    const now = Date.now();
    if (round === 0) for (const i of pending) fromIndex[i] = aliveInIndex(parts, refs[i], now) ? 1 : 0;
    let locs = await locatePending(call, pending, round === 0, now);
    if (round === 0) pending.forEach((i, k) => (tried[i] = locs[k]));
    else {
      // The directory sends it to the very slot that just failed: that answer stands.
      const keep = pending.map((i, k) => !sameSlot(locs[k], tried[i]));
      pending = pending.filter((_, k) => keep[k]);
      locs = locs.filter((_, k) => keep[k]);
    }
    const retry = await readSlots(call, pending, locs, now);
    pending = round === 0 ? retry.filter((i) => fromIndex[i] === 1) : [];
  }
  if (call.stale.length > 0 && !parts.closing) await repair(parts, call.stale);
  return countGets(parts.stats, call.results);
}

function checkInto(parts: CacheParts, into: readonly KVPayload[], n: number): void {
  if (!Array.isArray(into) || into.length !== n) throw argError('ERR_INVALID_ARG_VALUE', 'into must be an array with one buffer per key');
  into.forEach((b, i) => {
    if (!(b instanceof IoBuffer) && !ArrayBuffer.isView(b)) throw argError('ERR_INVALID_ARG_TYPE', `into[${i}] must be an IoBuffer or an ArrayBufferView`, { index: i });
  });
  checkApart(parts, into);
}

/** Where the pending keys are; a key whose directory could not be read is a miss with that error. */
async function locatePending(call: GetCall, pending: number[], useIndex: boolean, now: number): Promise<(Loc | undefined)[]> {
  const unread: (ThreeFSError | undefined)[] = [];
  const locs = await locate(call.parts, pending.map((i) => call.refs[i]), useIndex, now, unread);
  unread.forEach((e, k) => {
    if (e) call.results[pending[k]] = { status: 'miss', error: forKey(e, pending[k]) };
  });
  return locs;
}

function sameSlot(a: Loc | undefined, b: Loc | undefined): boolean {
  return !!a && !!b && a.set === b.set && a.way === b.way && a.epoch === b.epoch;
}

/**
 * Throws ERR_OVERLAPPING_BUFFERS, before any I/O, if two `into` buffers share bytes (the same
 * buffer named twice, overlapping views): each key's page must land in memory of its own. A
 * buffer from cache.alloc() counts with its header room, which its read fills too.
 */
function checkApart(parts: CacheParts, into: readonly KVPayload[]): void {
  const byMemory = new Map<ArrayBufferLike, { i: number; start: number; end: number }[]>();
  into.forEach((b, i) => {
    if (b.byteLength === 0) return;
    const roomy = b instanceof IoBuffer ? parts.payloadOf.get(b) : undefined;
    const memory = b instanceof IoBuffer ? b.region.memory : b.buffer;
    const start = roomy ? roomy.byteOffset : b.byteOffset;
    const span = { i, start, end: roomy ? roomy.byteOffset + roomy.byteLength : b.byteOffset + b.byteLength };
    const list = byMemory.get(memory);
    if (list) list.push(span);
    else byMemory.set(memory, [span]);
  });
  for (const spans of byMemory.values()) {
    if (spans.length < 2) continue;
    // By start: if any two share bytes, two neighbours do.
    spans.sort((x, y) => x.start - y.start);
    for (let k = 1; k < spans.length; k++) {
      if (spans[k - 1].end <= spans[k].start) continue;
      const [first, second] = [spans[k - 1].i, spans[k].i].sort((x, y) => x - y);
      throw argError('ERR_OVERLAPPING_BUFFERS', `into[${second}] overlaps into[${first}]: each key's page needs memory of its own`, { index: second });
    }
  }
}

/** Reads and checks the located slots; returns the positions that missed after being located. */
async function readSlots(call: GetCall, which: number[], locs: (Loc | undefined)[], now: number): Promise<number[]> {
  const jobs = readable(call, which, locs);
  if (jobs.length === 0) return [];
  const { parts, into } = call;
  // Without `into`: header and payload land together in a slot-sized piece of the pool, lent to
  // the caller on a hit. With `into`: headers go to staging, payloads straight to the caller's
  // memory. One batch either way; the engine takes each payload's CRC32C as its bytes land.
  const slots = into ? [] : parts.pool.take(jobs.length);
  const mem = into ? parts.staging.take(jobs.length * parts.shards.headRead) : undefined;
  const lent = new Uint8Array(slots.length); // 1: slots[k] went to the caller
  try {
    const plan = slotReads(call, jobs, slots, mem);
    const reads = await parts.client.batchRead(plan.ops);
    return judge(call, jobs, plan, reads, slots, lent, now);
  } finally {
    if (mem) parts.staging.give(mem);
    slots.forEach((slot, k) => lent[k] === 1 || parts.pool.give(slot));
  }
}

/** The located keys worth a read: a damaged entry or a short `into` buffer is a miss without one. */
function readable(call: GetCall, which: number[], locs: (Loc | undefined)[]): Job[] {
  const { parts, refs, into, results } = call;
  const jobs: Job[] = [];
  which.forEach((i, k) => {
    const loc = locs[k];
    if (!loc) return;
    if (loc.length > parts.geometry.pageBytes) {
      // A damaged directory entry (it has no checksum): no slot holds that much, so no read.
      parts.stats.corrupt++;
      results[i] = { status: 'miss', error: argError(ERR.corrupt, `key ${i}: its directory entry is damaged (length ${loc.length})`, { index: i }) };
      parts.index.delete(refs[i].hex);
      call.stale.push({ id: refs[i].id, loc });
      return;
    }
    if (into && into[i].byteLength < loc.length) {
      results[i] = { status: 'miss', error: argError(ERR.small, `into[${i}] has ${into[i].byteLength} bytes, the page has ${loc.length}`, { index: i }) };
      return;
    }
    jobs.push({ i, loc });
  });
  return jobs;
}

/** The batch of reads; each takes the last headRead bytes of its header block (the fields end it). */
function slotReads(call: GetCall, jobs: readonly Job[], slots: readonly Slot[], mem: IoBuffer | undefined): SlotReads {
  const { shards } = call.parts;
  const into = call.into;
  const R = shards.headRead;
  const from = HEADER_BYTES - R;
  const plan: SlotReads = { ops: [], heads: [], headAt: [], firstOp: [] };
  jobs.forEach((j, k) => {
    const file = shards.fileOf(j.loc.set);
    const off = shards.slotOffset(j.loc.set, j.loc.way);
    const span = slotSpan(j.loc.length);
    plan.firstOp.push(plan.ops.length);
    const roomy = into ? call.parts.payloadOf.get(into[j.i] as IoBuffer) : undefined;
    if (roomy) {
      // From cache.alloc(): the header room in front takes the header, so the slot is one op
      // (the bytes past the page's length, up to 4 KiB, get the slot's padding).
      plan.ops.push({ file, buffer: roomy.subarray(from, span), fileOffset: off + from, crc32c: { offset: R, length: j.loc.length } });
      plan.heads.push(roomy.bytes);
      plan.headAt.push(HEAD_AT);
    } else if (into) {
      plan.ops.push({ file, buffer: mem!.subarray(k * R, (k + 1) * R), fileOffset: off + from });
      plan.ops.push({ file, buffer: into[j.i], fileOffset: off + HEADER_BYTES, length: j.loc.length, crc32c: { offset: 0, length: j.loc.length } });
      plan.heads.push(mem!.bytes);
      plan.headAt.push(shards.headAt(k));
    } else {
      plan.ops.push({ file, buffer: slots[k].mem.subarray(from, span), fileOffset: off + from, crc32c: { offset: R, length: j.loc.length } });
      plan.heads.push(slots[k].mem.bytes);
      plan.headAt.push(HEAD_AT);
    }
  });
  plan.firstOp.push(plan.ops.length);
  return plan;
}

/** Each job's result from its reads and checks; returns the positions that missed. */
function judge(call: GetCall, jobs: readonly Job[], plan: SlotReads, reads: OpResult[], slots: readonly Slot[], lent: Uint8Array, now: number): number[] {
  const { parts, refs, results } = call;
  const missed: number[] = [];
  for (let k = 0; k < jobs.length; k++) {
    const { i, loc } = jobs[k];
    const failed = countReads(parts, reads, plan.firstOp[k], plan.firstOp[k + 1]);
    if (failed) {
      results[i] = { status: 'miss', error: forKey(failed.error!, i) };
      missed.push(i);
      continue;
    }
    const head = plan.heads[k];
    const at = plan.headAt[k];
    const verdict = checkHeader(head, at, refs[i].id, loc.length, parts.geometry.pageBytes, now);
    if (verdict !== 'ok' || reads[plan.firstOp[k + 1] - 1].crc32c !== head.readUInt32LE(at + PAYLOAD_CRC_AT)) {
      failedCheck(call, i, loc, verdict);
      missed.push(i);
    } else if (call.into) results[i] = { status: 'hit', bytes: loc.length };
    else {
      results[i] = { status: 'hit', bytes: loc.length, buffer: parts.pool.lend(slots[k], loc.length) };
      lent[k] = 1;
    }
  }
  return missed;
}

/** Counts the bytes of reads [from, to); returns the first that failed. */
function countReads(parts: CacheParts, reads: OpResult[], from: number, to: number): OpResult | undefined {
  let failed: OpResult | undefined;
  for (let o = from; o < to; o++) {
    if (!reads[o].error) parts.stats.bytesRead += reads[o].bytes;
    else failed ??= reads[o];
  }
  return failed;
}

/** A slot that fails a check is a miss, and its listing is stale (see repair). */
function failedCheck(call: GetCall, i: number, loc: Loc, verdict: 'ok' | 'corrupt' | 'raced'): void {
  const why = verdict === 'ok' ? 'corrupt' : verdict;
  const message = verdict === 'ok' ? 'payload CRC32C mismatch (torn or damaged slot)' : `the slot ${verdict === 'corrupt' ? 'header is damaged' : 'holds another entry now'}`;
  call.parts.stats[why]++;
  call.results[i] = { status: 'miss', error: argError(ERR[why], `key ${i}: ${message}`, { index: i }) };
  call.parts.index.delete(call.refs[i].hex);
  call.stale.push({ id: call.refs[i].id, loc });
}
