// KVCache ids hashed in one call per batch (native/util/key_ids.cc): SHA-256 of the namespace hash and
// the key's bytes (UTF-8 for strings), cut to 16 bytes. The oracle is node:crypto.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { native } from '../../../lib/core/native';
import { Rng, seedFor } from '../../helpers';

const oracle = (prefix: Uint8Array, key: string | Uint8Array) =>
  createHash('sha256').update(prefix).update(typeof key === 'string' ? Buffer.from(key, 'utf8') : key).digest().subarray(0, 16);

const keyIds = native().keyIds!;

describe('keyIds', () => {
  it('is there (the Node binary exports OpenSSL\'s SHA256)', () => {
    expect(typeof keyIds).toBe('function');
  });

  it('equals node:crypto for strings of every kind (empty, NUL, multi-byte, lone surrogates, long) and bytes', () => {
    const rng = new Rng(seedFor('key-ids'));
    const prefix = createHash('sha256').update('namespace').digest();
    const keys: (string | Uint8Array)[] = ['', 'a', 'key-1', '\u0000x\u0000', 'é漢字🙂', '\ud800lone', 'end\udfff', 'x'.repeat(100_000), new Uint8Array(0), Buffer.from([0, 1, 255])];
    for (let i = 0; i < 200; i++) {
      keys.push(rng.bool() ? String.fromCharCode(...Array.from({ length: rng.int(0, 40) }, () => rng.int(0, 0xffff))) : rng.bytes(rng.int(0, 300)));
    }
    const out = Buffer.alloc(keys.length * 16);
    keyIds(prefix, keys, out);
    keys.forEach((k, i) => expect(out.subarray(i * 16, i * 16 + 16).equals(oracle(prefix, k)), `key ${i}`).toBe(true));
    // Another prefix, another id.
    const other = Buffer.alloc(keys.length * 16);
    keyIds(Buffer.from('another namespace'), keys, other);
    expect(other.equals(out)).toBe(false);
  });

  it('bad input throws a typed error and leaves `out` as it was', () => {
    const prefix = Buffer.alloc(32, 1);
    const out = Buffer.alloc(32, 0xee);
    for (const [keys, o, code] of [
      [['a', 5], out, 'ERR_INVALID_ARG_TYPE'],
      [['a', new Uint16Array(2)], out, 'ERR_INVALID_ARG_TYPE'],
      [['a', 'b'], Buffer.alloc(31), 'ERR_INVALID_ARG_VALUE'],
      ['ab', out, 'ERR_INVALID_ARG_TYPE'],
      [['a', 'b'], new Uint32Array(8), 'ERR_INVALID_ARG_TYPE'],
    ] as const) {
      expect(() => keyIds(prefix, keys as never, o as never)).toThrow(expect.objectContaining({ code }));
    }
    expect(out.every((b) => b === 0xee)).toBe(true);
    expect(() => (keyIds as (...a: unknown[]) => unknown)()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
