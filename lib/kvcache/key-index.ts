// KVCache's memory of where ids are: a hint (every get checks the slot header), kept so that keys
// this process has seen are answered without I/O, and without hashing or hex encoding them again.
//
// One record per id, shared by the index (by id hex) and the key memo (by string key): a lookup of
// a seen key is one map probe and a read of the record's place. A record holds a place only while
// it is the index's entry for its id; when the entry goes, its record is emptied, and whoever still
// holds the record asks the index again (IdIndex.locOf). So a record's place, when it has one, is
// always the index's, and holding a record never keeps a stale place alive.

/** Where a get goes for an id: a slot of a set, and what its directory entry said. */
export interface Loc {
  set: number;
  way: number;
  length: number;
  epoch: number;
  expiry: number;
}

/** An id this process has met: its bytes, its hex (the index's key), and its place in the index. */
export class IdRecord {
  readonly hex: string;
  #id: Buffer | undefined;
  #loc: Loc | undefined;
  // Whether the place has an expiry. Most have none, and then a lookup knows the place is alive
  // without reading it: one memory access fewer per key, in a loop that is all memory accesses.
  #mortal = false;

  constructor(hex: string, id?: Buffer) {
    this.hex = hex;
    this.#id = id;
  }

  /** The place, while this record is the index's entry for `hex`; undefined otherwise. */
  get loc(): Loc | undefined {
    return this.#loc;
  }

  /** The place, if it is alive (not expired) at `now`. */
  locAt(now: number): Loc | undefined {
    const loc = this.#loc;
    return loc !== undefined && (!this.#mortal || loc.expiry > now) ? loc : undefined;
  }

  /** @internal For IdIndex: the index's entry for `hex` is now `loc` (undefined: gone). */
  place(loc: Loc | undefined): void {
    this.#loc = loc;
    this.#mortal = loc !== undefined && loc.expiry !== 0;
  }

  /** The id's 16 bytes (decoded from the hex for records the index made from a hex alone). */
  get id(): Buffer {
    return (this.#id ??= Buffer.from(this.hex, 'hex'));
  }
}

/**
 * id hex -> where this process last saw the id. Keeps Map's get/set/delete/has/size over places,
 * and hands out its records for holders that look the same id up again and again.
 */
export class IdIndex {
  readonly #records = new Map<string, IdRecord>();

  get size(): number {
    return this.#records.size;
  }

  get(hex: string): Loc | undefined {
    return this.#records.get(hex)?.loc;
  }

  has(hex: string): boolean {
    return this.#records.has(hex);
  }

  set(hex: string, loc: Loc): this {
    let r = this.#records.get(hex);
    if (!r) this.#records.set(hex, (r = new IdRecord(hex)));
    r.place(loc);
    return this;
  }

  delete(hex: string): boolean {
    const r = this.#records.get(hex);
    if (!r) return false;
    r.place(undefined); // holders of the record see it go
    return this.#records.delete(hex);
  }

  /** The index's record for this hex, if it has an entry. */
  record(hex: string): IdRecord | undefined {
    return this.#records.get(hex);
  }

  /** Where the index puts `r`'s id: `r`'s own place while it is the entry, else a lookup by hex. */
  locOf(r: IdRecord): Loc | undefined {
    return r.loc ?? this.#records.get(r.hex)?.loc;
  }
}
