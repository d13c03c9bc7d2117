// Keys of KV-cache pages, byte-compatible with SGLang's HiCache (its get_hash_str): key =
// hex(hash(bytes of the previous page's key, if any || each token id as a u32 little-endian)),
// where the hash is SHA-256 (SGLang's default) or XXH3-64 with seed 1337 (SGLang's
// SGLANG_USE_XXH3_HASH=1, NVIDIA Dynamo's choice). Each key commits to the whole prefix, so an
// SGLang server and this client find each other's pages.
import { createHash } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { endianness } from 'node:os';
import { argError } from '../core/errors';

const LITTLE_ENDIAN = endianness() === 'LE';
const XXH3_SEED = 1337n;

/** How a key is hashed: SHA-256 (64 hex digits) or XXH3-64 seeded 1337 (16 hex digits). */
export type PageKeyHash = 'sha256' | 'xxh3';

export interface PageKeyOptions {
  /** The key of the page before these tokens, if any. */
  priorHash?: string;
  /** 'sha256' (the default, as SGLang's) or 'xxh3' (SGLang with SGLANG_USE_XXH3_HASH=1, Dynamo). */
  hash?: PageKeyHash;
}

/** The third argument of pageKeys (second of pageKey): the prior key alone, or options. */
function optionsOf(arg: string | PageKeyOptions | undefined): Required<Pick<PageKeyOptions, 'hash'>> & PageKeyOptions {
  // Anything but an object is taken as the prior key, which checkPrior then judges.
  if (arg === null || typeof arg !== 'object') return { priorHash: arg as string | undefined, hash: 'sha256' };
  const hash = arg.hash ?? 'sha256';
  if (hash !== 'sha256' && hash !== 'xxh3') throw argError('ERR_INVALID_ARG_VALUE', `hash must be 'sha256' or 'xxh3', got ${String(hash)}`);
  return { priorHash: arg.priorHash, hash };
}
const HEX_KEY = /^(?:[0-9a-fA-F]{2})*$/;

function checkPrior(priorHash: string | undefined): void {
  // SGLang tests `if prior_hash:`, so '' and undefined both mean "first page"; bytes.fromhex then
  // takes any even-length hex string.
  if (priorHash === undefined || priorHash === '') return;
  if (typeof priorHash !== 'string' || !HEX_KEY.test(priorHash))
    throw argError('ERR_INVALID_ARG_VALUE', 'priorHash must be a hex string of whole bytes');
}

function tokenArray(tokens: ArrayLike<number>): Uint32Array {
  if (tokens instanceof Uint32Array) return tokens; // every element is a valid u32 already
  if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number')
    throw argError('ERR_INVALID_ARG_TYPE', 'tokenIds must be an array or array-like of numbers');
  const out = new Uint32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff)
      throw argError('ERR_OUT_OF_RANGE', `token id ${i} is ${String(t)}; it must be an integer in [0, 2^32)`, { index: i });
    out[i] = t;
  }
  return out;
}

/** The u32 little-endian bytes of tokens[start, end). */
function leBytes(tokens: Uint32Array, start: number, end: number): Uint8Array {
  // On little-endian hosts (all Node.js targets in practice) the array's memory is already the
  // byte string to hash: a view, no copy.
  if (LITTLE_ENDIAN) return new Uint8Array(tokens.buffer, tokens.byteOffset + start * 4, (end - start) * 4);
  const bytes = new Uint8Array((end - start) * 4);
  const dv = new DataView(bytes.buffer);
  for (let i = start; i < end; i++) dv.setUint32((i - start) * 4, tokens[i], true);
  return bytes;
}

function hashPage(tokens: Uint32Array, start: number, end: number, priorHash: string | undefined, hash: PageKeyHash): string {
  const page = leBytes(tokens, start, end);
  if (hash === 'xxh3') {
    const input = priorHash ? Buffer.concat([Buffer.from(priorHash, 'hex'), page]) : Buffer.from(page.buffer, page.byteOffset, page.byteLength);
    return xxh3.xxh64(input, XXH3_SEED).toString(16).padStart(16, '0');
  }
  const h = createHash('sha256');
  if (priorHash) h.update(Buffer.from(priorHash, 'hex'));
  h.update(page);
  return h.digest('hex');
}

/**
 * The key of one page of token ids, chained on the previous page's key (omit it for the first
 * page). The second argument is that key, or `{ priorHash, hash }`.
 */
export function pageKey(tokenIds: ArrayLike<number>, prior?: string | PageKeyOptions): string {
  const { priorHash, hash } = optionsOf(prior);
  checkPrior(priorHash);
  const tokens = tokenArray(tokenIds);
  return hashPage(tokens, 0, tokens.length, priorHash, hash);
}

/**
 * The keys of the full pages of `tokenIds`, `pageSize` tokens each, each chained on the one
 * before (the first on `priorHash`, the key of the page before these tokens, if any). A last
 * partial page has no key: SGLang only stores whole pages. The third argument is the prior key,
 * or `{ priorHash, hash: 'sha256' | 'xxh3' }`.
 */
export function pageKeys(tokenIds: ArrayLike<number>, pageSize: number, options?: string | PageKeyOptions): string[] {
  if (!Number.isSafeInteger(pageSize) || pageSize < 1)
    throw argError('ERR_OUT_OF_RANGE', `pageSize must be a positive integer, got ${String(pageSize)}`);
  const { priorHash, hash } = optionsOf(options);
  checkPrior(priorHash);
  const tokens = tokenArray(tokenIds);
  const keys: string[] = [];
  let prior = priorHash;
  for (let start = 0; start + pageSize <= tokens.length; start += pageSize) {
    prior = hashPage(tokens, start, start + pageSize, prior, hash);
    keys.push(prior);
  }
  return keys;
}
