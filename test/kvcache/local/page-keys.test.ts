// Page keys (lib/kvcache/page-keys.ts) against SGLang's get_hash_str: an independent oracle written byte
// by byte, and, when python3 is here, SGLang's own code run by Python on the same tokens.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ThreeFSError } from '../../../lib/core/errors';
import { pageKey, pageKeys } from '../../../lib/kvcache/page-keys';
import { Rng, seedFor } from '../../helpers';

const rng = new Rng(seedFor('page-keys'));

/** get_hash_str, transcribed naively: the prior key's bytes, then each token as 4 LE bytes. */
function oracleKey(tokens: number[], prior?: string): string {
  const h = createHash('sha256');
  if (prior) h.update(Buffer.from(prior, 'hex'));
  for (const t of tokens) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(t);
    h.update(b);
  }
  return h.digest('hex');
}

function oracleKeys(tokens: number[], pageSize: number, prior?: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i + pageSize <= tokens.length; i += pageSize) {
    prior = oracleKey(tokens.slice(i, i + pageSize), prior);
    keys.push(prior);
  }
  return keys;
}

const randomTokens = (n: number) => Array.from({ length: n }, () => rng.int(0, 0xffffffff));

describe('pageKey', () => {
  it('hashes u32 little-endian token ids', () => {
    expect(pageKey([])).toBe(createHash('sha256').digest('hex'));
    expect(pageKey([1])).toBe(createHash('sha256').update(Buffer.from([1, 0, 0, 0])).digest('hex'));
    const tokens = randomTokens(64);
    expect(pageKey(tokens)).toBe(oracleKey(tokens));
    expect(pageKey(Uint32Array.from(tokens))).toBe(oracleKey(tokens));
  });

  it('chains on the prior key; an empty prior is no prior (as `if prior_hash:`)', () => {
    const tokens = randomTokens(16);
    const prior = oracleKey(randomTokens(16));
    expect(pageKey(tokens, prior)).toBe(oracleKey(tokens, prior));
    expect(pageKey(tokens, prior)).not.toBe(pageKey(tokens));
    expect(pageKey(tokens, '')).toBe(pageKey(tokens));
    expect(pageKey(tokens, prior.toUpperCase())).toBe(pageKey(tokens, prior));
  });

  it('reads a Uint32Array subarray from its own offset', () => {
    const all = Uint32Array.from(randomTokens(100));
    const sub = all.subarray(13, 77);
    expect(pageKey(sub)).toBe(oracleKey(Array.from(sub)));
  });
});

describe('pageKeys', () => {
  it('one chained key per full page; a last partial page has none', () => {
    for (const [n, pageSize] of [[0, 4], [3, 4], [4, 4], [5, 4], [64, 16], [1000, 64], [1024, 64], [7, 1]]) {
      const tokens = randomTokens(n);
      const keys = pageKeys(tokens, pageSize);
      expect(keys).toHaveLength(Math.floor(n / pageSize));
      expect(keys).toEqual(oracleKeys(tokens, pageSize));
      expect(pageKeys(Uint32Array.from(tokens), pageSize)).toEqual(keys);
    }
  });

  it('keys of a prefix are a prefix of the keys, and continue from priorHash', () => {
    const tokens = randomTokens(256);
    const keys = pageKeys(tokens, 32);
    expect(pageKeys(tokens.slice(0, 96), 32)).toEqual(keys.slice(0, 3));
    expect(pageKeys(tokens.slice(96), 32, keys[2])).toEqual(keys.slice(3));
    expect(keys[1]).toBe(pageKey(tokens.slice(32, 64), keys[0]));
  });

  it('a change in one token changes its page key and every key after it', () => {
    const tokens = randomTokens(128);
    const before = pageKeys(tokens, 16);
    tokens[40] = (tokens[40] ^ 1) >>> 0;
    const after = pageKeys(tokens, 16);
    expect(after.slice(0, 2)).toEqual(before.slice(0, 2));
    after.slice(2).forEach((k, i) => expect(k).not.toBe(before[i + 2]));
  });

  it('token ids at the edges of u32', () => {
    const tokens = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
    expect(pageKeys(tokens, 2)).toEqual(oracleKeys(tokens, 2));
  });
});

describe('bad input', () => {
  function code(run: () => unknown): string {
    try {
      run();
    } catch (e) {
      expect(e).toBeInstanceOf(ThreeFSError);
      return (e as ThreeFSError).code;
    }
    throw new Error('expected a failure');
  }

  it('refuses token ids outside [0, 2^32) or not integers', () => {
    for (const bad of [-1, 2 ** 32, 1.5, NaN, Infinity, '7' as never, null as never]) {
      expect(code(() => pageKeys([1, 2, bad, 4], 2))).toBe('ERR_OUT_OF_RANGE');
      expect(code(() => pageKey([bad]))).toBe('ERR_OUT_OF_RANGE');
    }
  });

  it('refuses bad page sizes, prior keys and token lists', () => {
    for (const bad of [0, -4, 2.5, NaN, '4' as never]) expect(code(() => pageKeys([1, 2], bad))).toBe('ERR_OUT_OF_RANGE');
    for (const bad of ['abc', 'zz', 'a', 42 as never]) expect(code(() => pageKey([1], bad))).toBe('ERR_INVALID_ARG_VALUE');
    for (const bad of [null, undefined, 5, 'abc']) expect(code(() => pageKeys(bad as never, 2))).toBe('ERR_INVALID_ARG_TYPE');
  });
});

// SGLang's function, as it stands in python/sglang/srt/mem_cache/hicache_storage.py, with the
// chunking of cache_controller.py (page_size tokens per key, chained on the last key).
const SGLANG = `
import hashlib, json, sys

def get_hash_str(token_ids, prior_hash=None):
    hasher = hashlib.sha256()
    if prior_hash:
        hasher.update(bytes.fromhex(prior_hash))
    for t in token_ids:
        hasher.update(t.to_bytes(4, byteorder="little", signed=False))
    return hasher.hexdigest()

out = []
for case in json.load(sys.stdin):
    tokens, page_size, last_hash = case["tokens"], case["pageSize"], case["prior"]
    keys = []
    remaining, done = len(tokens), 0
    while remaining >= page_size:
        last_hash = get_hash_str(tokens[done : done + page_size], last_hash)
        keys.append(last_hash)
        done += page_size
        remaining -= page_size
    out.append(keys)
json.dump(out, sys.stdout)
`;

const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = python.status === 0;

describe.skipIf(!hasPython)('byte-compatible with SGLang (python3)', () => {
  it('the same keys as get_hash_str', () => {
    const cases = [
      { tokens: [], pageSize: 1, prior: null },
      { tokens: [1, 2, 3], pageSize: 1, prior: null },
      { tokens: randomTokens(64), pageSize: 64, prior: null },
      { tokens: randomTokens(1000), pageSize: 64, prior: null },
      { tokens: randomTokens(333), pageSize: 16, prior: oracleKey([42]) },
      { tokens: [0, 0xffffffff, 0x80000000, 7], pageSize: 2, prior: '' },
      { tokens: randomTokens(4096), pageSize: 1, prior: null },
    ];
    const run = spawnSync('python3', ['-c', SGLANG], { input: JSON.stringify(cases), encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const want = JSON.parse(run.stdout) as string[][];
    cases.forEach((c, i) => expect(pageKeys(c.tokens, c.pageSize, c.prior ?? undefined), `case ${i}`).toEqual(want[i]));
  });
});

// XXH3-64 keys (SGLang's _get_hash_str_xxh3, SGLANG_USE_XXH3_HASH=1; NVIDIA Dynamo's): the prior
// key's bytes then each token as u32 LE, XXH3-64 with seed 1337, as 16 hex digits. The vectors were
// written down from SGLang's function run by Python with the xxhash package (python3-xxhash).
describe("pageKeys with hash: 'xxh3'", () => {
  const SHA_PRIOR = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
  const vectors: [string, number[], string | undefined, string][] = [
    ['no tokens', [], undefined, 'd1f3e77444430ab9'],
    ['1,2,3,4', [1, 2, 3, 4], undefined, 'cb38e4d7fb2dca5c'],
    ['5,6,7,8 after 1,2,3,4', [5, 6, 7, 8], 'cb38e4d7fb2dca5c', 'c7c4804afcd7aa2a'],
    ['the largest id, 0, a Qwen special token', [0xffffffff, 0, 151643], undefined, '74348b6c73803ed2'],
    ['64 tokens after a SHA-256 key', Array(64).fill(42), SHA_PRIOR, 'be418d7c64af7556'],
  ];
  for (const [name, tokens, priorHash, want] of vectors) {
    it(`one page: ${name}`, () => {
      expect(pageKey(tokens, { priorHash, hash: 'xxh3' })).toBe(want);
    });
  }

  it('chains pages, and leaves out the last partial page', () => {
    expect(pageKeys([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 4, { hash: 'xxh3' })).toEqual(['7ee2cbedc694ab46', '6e20dac714b4b365']);
    const long = Array.from({ length: 1000 }, (_, i) => Number((BigInt(i) * 2654435761n) & 0xffffffffn));
    const keys = pageKeys(new Uint32Array(long), 64, { hash: 'xxh3' });
    expect(keys).toHaveLength(15);
    expect([keys[0], keys[14]]).toEqual(['bfbab48eade207ca', '436fc8a152c9b868']);
    // Page by page with pageKey gives the same chain.
    let prior: string | undefined;
    for (let p = 0; p < 15; p++) prior = pageKey(long.slice(p * 64, p * 64 + 64), { priorHash: prior, hash: 'xxh3' });
    expect(prior).toBe(keys[14]);
  });

  it("keeps SHA-256 as the default, with the prior key as a string or in the options", () => {
    const tokens = [1, 2, 3];
    expect(pageKey(tokens, { hash: 'sha256' })).toBe(oracleKey(tokens));
    expect(pageKeys(tokens, 1, { priorHash: SHA_PRIOR })).toEqual(pageKeys(tokens, 1, SHA_PRIOR));
    expect(pageKeys(tokens, 1, SHA_PRIOR)).toEqual(oracleKeys(tokens, 1, SHA_PRIOR));
  });

  it('refuses an unknown hash or options that are not an object', () => {
    expect(() => pageKeys([1], 1, { hash: 'md5' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => pageKey([1], 42 as never)).toThrow(ThreeFSError);
    expect(() => pageKeys([1], 1, { priorHash: 'xyz', hash: 'xxh3' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});
