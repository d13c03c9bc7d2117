// The KVCache bench's records (its JSON document) and the cache shape every phase uses.
import type { KVNamespace } from '../../../lib/index';
import type { Judged } from '../../support/targets';
import type { Machine } from '../../support/machine';
import { GiB, KiB } from '../../support/units';
import type { PhaseResult } from './phases';

export type KvPath = 'kvcache' | 'raw' | 'node:fs';
/** Where a run's files were: the bench's directory (--dir), or tmpfs (/dev/shm, memory speed). */
export type KvWhere = 'dir' | 'tmpfs';

/** One measured phase: every page of one page size written (put) or read (get) once. */
export interface KvRun {
  path: KvPath;
  where: KvWhere;
  op: 'put' | 'get';
  pageBytes: number;
  pages: number;
  batch: number;
  /** Batches in flight at once (node:fs: always 1). */
  inflight: number;
  repeat: number;
  /**
   * kvcache and raw: wall time of the phase, from the first call to the last settling (gets
   * include checking each batch's pages). node:fs: the sum of its batch calls' durations.
   */
  seconds: number;
  /** Payload bytes moved (gets: of hits only). */
  bytes: number;
  gibps: number;
  gbps: number;
  pagesPerSec: number;
  /** Per batch call, submission to settlement. */
  p50ms: number;
  p99ms: number;
  /** user+sys CPU of the process over the batch calls (node:fs: the child's). */
  cpuSecPerGiB: number;
  /** Pages checked byte for byte (all gets' pages have their stamps checked). */
  verified: number;
  /** Gets that missed, puts that did not store. */
  misses: number;
  mode: string;
}

export interface KvLookupRun {
  kind: 'warm' | 'cold';
  repeat: number;
  /** Distinct keys in the cache. */
  distinctKeys: number;
  /** Keys looked up, and how many were found. */
  keys: number;
  found: number;
  calls: number;
  seconds: number;
  keysPerSec: number;
  /** I/O rounds: batches the client's engine accepted during the lookups, and its submit calls. */
  ioBatches: number;
  submitCalls: number;
}

export interface KvBenchDocument {
  version: 1;
  machine: Machine;
  settings: {
    dir: string;
    engine: string;
    direct: boolean;
    size: number;
    pageSizes: number[];
    repeat: number;
    quick: boolean;
    lookupKeys: number;
    lookups: number;
    cacheState: string;
    /** The tmpfs runs' directory and bytes of pages per page size; null when they did not run (and why). */
    tmpfs: { dir: string; size: number } | { dir: null; why: string };
  };
  runs: KvRun[];
  lookups: KvLookupRun[];
  /** kv/raw of pages of 1 MiB and more against >= 0.90x (issue 19), per place, page size, op and batches in flight. */
  targets: Judged[];
}

export const NAMESPACE: KVNamespace = { model: '3fs-client-bench', dtype: 'bytes' };
export const WAYS = 16;
export const LOOKUP_BATCH = 128;
/** Batches in flight: one (a request's pages, as a serving process loads or saves them) and several (a serving process's concurrent requests). */
export const IN_FLIGHT = [1, 4];

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Bytes of a cache of `ways`-way sets with room for `factor` times `pages` pages. */
export function capacityFor(pages: number, pageBytes: number, ways: number, factor: number): number {
  const setBytes = 4 * KiB + ways * (4 * KiB + roundUp(pageBytes, 4 * KiB));
  return Math.max(1, Math.ceil((pages * factor) / ways)) * setBytes;
}

export function toRun(path: KvPath, where: KvWhere, op: 'put' | 'get', pageBytes: number, pages: number, batch: number, inflight: number, repeat: number, m: PhaseResult, mode: string): KvRun {
  const r = (v: number, d: number) => Math.round(v * 10 ** d) / 10 ** d;
  const s = m.seconds;
  return {
    path,
    where,
    op,
    pageBytes,
    pages,
    batch,
    inflight,
    repeat,
    seconds: r(s, 4),
    bytes: m.bytes,
    gibps: r(s > 0 ? m.bytes / GiB / s : 0, 4),
    gbps: r(s > 0 ? m.bytes / 1e9 / s : 0, 4),
    pagesPerSec: Math.round(s > 0 ? m.bytes / pageBytes / s : 0),
    p50ms: r(m.p50ms, 3),
    p99ms: r(m.p99ms, 3),
    cpuSecPerGiB: r(m.bytes > 0 ? m.cpuSeconds / (m.bytes / GiB) : 0, 4),
    verified: m.verified,
    misses: m.misses,
    mode,
  };
}
