// Keys to ids: id = the first 16 bytes of sha256(namespaceHash || key). String keys seen lately are
// remembered (the memo), with their id's record, so that a lookup of a seen key is one map probe:
// keys come back again and again (every lookup walks a prefix of the same chain).
import { createHash } from 'node:crypto';
import { argError } from '../core/errors';
import { native } from '../core/native';
import { checkKeyArray, checkStringKey } from './checks';
import { IdRecord, type IdIndex } from './key-index';
import type { KVKey } from './types';

const MEMO_MAX = 1 << 20; // string keys whose ids are remembered (about 100 MiB at most)

export class KeyIds {
  readonly #namespaceHash: Buffer;
  readonly #index: IdIndex;
  readonly #memo = new Map<string, IdRecord>(); // the index's own record where it has one

  constructor(namespaceHash: Buffer, index: IdIndex) {
    this.#namespaceHash = namespaceHash;
    this.#index = index;
  }

  idOf(key: KVKey, index: number): Buffer {
    return typeof key === 'string' ? this.recordOf(key, index).id : this.#idOfBytes(key, index);
  }

  /** The record of a key's id: from memory for a string key seen lately, else hashed. */
  recordOf(key: KVKey, index: number): IdRecord {
    if (typeof key === 'string') {
      const seen = this.seen(key);
      if (seen !== undefined) return seen;
      checkStringKey(key, index);
      return this.#remember(key, this.#hashOf(key));
    }
    return this.#recordOfId(this.#idOfBytes(key, index));
  }

  /**
   * The memo's record of a string key, or undefined if the key was not seen lately. It is the
   * index's own record whenever the index has the id, so that its place is one read away (the
   * index makes a new record when a put or a directory read lists an id the memo met first, or
   * lists it again after dropping it: the memo follows it here, once).
   */
  seen(key: string): IdRecord | undefined {
    const r = this.#memo.get(key);
    if (r === undefined || r.loc !== undefined) return r;
    const live = this.#index.record(r.hex);
    if (live === undefined) return r;
    this.#memo.set(key, live);
    return live;
  }

  ids(keys: readonly KVKey[]): Buffer[] {
    checkKeyArray(keys);
    const ids: Buffer[] = new Array(keys.length);
    const fresh = this.#fromMemo(keys, (i, r) => (ids[i] = r.id));
    this.#hashKeys(keys, fresh, (i, id) => (ids[i] = typeof keys[i] === 'string' ? this.#remember(keys[i] as string, id).id : id));
    return ids;
  }

  /** The keys' id records: id and hex at hand, and (for keys seen lately) their place. */
  records(keys: readonly KVKey[]): IdRecord[] {
    checkKeyArray(keys);
    const records: IdRecord[] = new Array(keys.length);
    const fresh = this.#fromMemo(keys, (i, r) => (records[i] = r));
    this.#hashKeys(keys, fresh, (i, id) => (records[i] = typeof keys[i] === 'string' ? this.#remember(keys[i] as string, id) : this.#recordOfId(id)));
    return records;
  }

  #idOfBytes(key: Uint8Array, index: number): Buffer {
    if (!(key instanceof Uint8Array)) throw argError('ERR_INVALID_ARG_TYPE', `key ${index} must be a string or a Uint8Array`, { index });
    return createHash('sha256').update(this.#namespaceHash).update(key).digest().subarray(0, 16);
  }

  #hashOf(key: string): Buffer {
    return createHash('sha256').update(this.#namespaceHash).update(key, 'utf8').digest().subarray(0, 16);
  }

  /** The index's record of an id if it has one, else a record of its own (not in the index). */
  #recordOfId(id: Buffer): IdRecord {
    const hex = id.toString('hex');
    return this.#index.record(hex) ?? new IdRecord(hex, id);
  }

  /** The record of a string key just hashed, remembered in the memo. */
  #remember(key: string, id: Buffer): IdRecord {
    const r = this.#recordOfId(id);
    if (this.#memo.size >= MEMO_MAX) this.#memo.clear();
    this.#memo.set(key, r);
    return r;
  }

  /** Hands over the memo's record of each string key seen lately; returns the positions of the rest. */
  #fromMemo(keys: readonly KVKey[], found: (i: number, r: IdRecord) => void): number[] {
    const fresh: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const r = typeof k === 'string' ? this.seen(k) : undefined;
      if (r !== undefined) found(i, r);
      else if (typeof k === 'string') {
        checkStringKey(k, i);
        fresh.push(i);
      } else if (k instanceof Uint8Array) fresh.push(i);
      else throw argError('ERR_INVALID_ARG_TYPE', `key ${i} must be a string or a Uint8Array`, { index: i });
    }
    return fresh;
  }

  /** Ids of keys[i] for i in `which`: in one call into the addon where it can hash, else one by one. */
  #hashKeys(keys: readonly KVKey[], which: readonly number[], each: (i: number, id: Buffer) => void): void {
    if (which.length === 0) return;
    const keyIds = native().keyIds;
    if (keyIds === undefined) {
      for (const i of which) each(i, typeof keys[i] === 'string' ? this.#hashOf(keys[i]) : this.#idOfBytes(keys[i] as Uint8Array, i));
      return;
    }
    const ids = Buffer.allocUnsafe(which.length * 16);
    keyIds(this.#namespaceHash, which.length === keys.length ? keys : which.map((i) => keys[i]), ids);
    which.forEach((i, k) => each(i, ids.subarray(k * 16, k * 16 + 16)));
  }
}
