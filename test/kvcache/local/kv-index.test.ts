// IdIndex (lib/kvcache/key-index.ts): KVCache's id hex -> place map, whose records holders keep.
import { describe, expect, it } from 'vitest';
import { IdIndex, IdRecord, type Loc } from '../../../lib/kvcache/key-index';

const loc = (way: number, expiry = 0): Loc => ({ set: 3, way, length: 10, epoch: way, expiry });
const HEX = '00112233445566778899aabbccddeeff';

describe('IdIndex', () => {
  it('is a map of places: get, set, has, delete, size', () => {
    const ix = new IdIndex();
    expect(ix.get(HEX)).toBeUndefined();
    ix.set(HEX, loc(1));
    expect(ix.get(HEX)).toEqual(loc(1));
    expect(ix.has(HEX)).toBe(true);
    expect(ix.size).toBe(1);
    ix.set(HEX, loc(2));
    expect(ix.get(HEX)).toEqual(loc(2));
    expect(ix.size).toBe(1);
    expect(ix.delete(HEX)).toBe(true);
    expect(ix.delete(HEX)).toBe(false);
    expect(ix.get(HEX)).toBeUndefined();
    expect(ix.size).toBe(0);
  });

  it('a record holds the place only while it is the entry: after a delete, holders ask the index again', () => {
    const ix = new IdIndex();
    ix.set(HEX, loc(1));
    const held = ix.record(HEX)!;
    expect(held.loc).toEqual(loc(1));
    ix.set(HEX, loc(2));
    expect(held.loc).toEqual(loc(2)); // the same record, a new place
    ix.delete(HEX);
    expect(held.loc).toBeUndefined();
    ix.set(HEX, loc(3)); // a new record: the old one stays empty
    expect(held.loc).toBeUndefined();
    expect(ix.record(HEX)).not.toBe(held);
    expect(ix.locOf(held)).toEqual(loc(3));
    const own = new IdRecord(HEX, Buffer.from(HEX, 'hex'));
    expect(own.loc).toBeUndefined();
    expect(ix.locOf(own)).toEqual(loc(3));
  });

  it('locAt: a place without an expiry is always alive; one with an expiry until then', () => {
    const ix = new IdIndex();
    ix.set(HEX, loc(1));
    expect(ix.record(HEX)!.locAt(Number.MAX_VALUE)).toEqual(loc(1));
    ix.set(HEX, loc(2, 1000));
    expect(ix.record(HEX)!.locAt(999)).toEqual(loc(2, 1000));
    expect(ix.record(HEX)!.locAt(1000)).toBeUndefined();
    ix.set(HEX, loc(3));
    expect(ix.record(HEX)!.locAt(2000)).toEqual(loc(3));
  });

  it('a record made from a hex alone decodes its id', () => {
    const ix = new IdIndex();
    ix.set(HEX, loc(1));
    expect(ix.record(HEX)!.id.toString('hex')).toBe(HEX);
    const id = Buffer.from(HEX, 'hex');
    expect(new IdRecord(HEX, id).id).toBe(id);
  });
});
