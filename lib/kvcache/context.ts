// The parts of one open cache that its put, get, delete and lookup paths share.
import type { Client } from '../core/client';
import type { IoBuffer } from '../core/io-buffer';
import type { DirLocks } from './dir-locks';
import type { IdIndex } from './key-index';
import type { KeyIds } from './key-ids';
import type { Pins } from './pins';
import type { SetLocks } from './set-locks';
import type { Shards } from './shards';
import type { EpochClock } from './slot-header';
import type { SlotPool } from './slot-pool';
import type { Staging } from './staging';
import type { Counters } from './stats';
import type { KVGeometry } from './types';
import type { Writing } from './writing';

export interface CacheParts {
  readonly geometry: KVGeometry;
  readonly client: Client;
  readonly shards: Shards;
  readonly index: IdIndex; // id hex -> where this process last saw it
  readonly keys: KeyIds;
  readonly locks: SetLocks;
  readonly dirLocks: DirLocks; // the same sets, across processes
  readonly staging: Staging;
  readonly pool: SlotPool;
  readonly pins: Pins;
  readonly writing: Writing;
  readonly stats: Counters;
  readonly clock: EpochClock;
  /** A payload view from alloc() -> its whole allocation (header room, then payload). */
  readonly payloadOf: WeakMap<IoBuffer, IoBuffer>;
  closing: boolean;
}

export function setOf(parts: CacheParts, id: Buffer): number {
  return id.readUIntLE(0, 6) % parts.geometry.sets;
}

export function alive(loc: { expiry: number }, now: number): boolean {
  return loc.expiry === 0 || loc.expiry > now;
}
