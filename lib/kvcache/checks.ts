// The KVCache's error codes and the argument checks its calls share.
import { argError, ThreeFSError } from '../core/errors';

export const ERR = {
  mismatch: 'ERR_KVCACHE_MISMATCH',
  closed: 'ERR_KVCACHE_CLOSED',
  notFound: 'ERR_KVCACHE_NOT_FOUND',
  full: 'ERR_KVCACHE_SET_PINNED',
  setFull: 'ERR_KVCACHE_SET_FULL',
  small: 'ERR_KVCACHE_BUFFER_TOO_SMALL',
  corrupt: 'ERR_KVCACHE_CORRUPT',
  raced: 'ERR_KVCACHE_RACED',
} as const;

const LONE_SURROGATE = /\p{Cs}/u; // UTF-8 makes U+FFFD of it: two such keys would share an id

export function wholeNumber(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw argError('ERR_OUT_OF_RANGE', `${name} must be a whole number from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A string key must be well-formed UTF-16: its UTF-8 bytes (what is hashed) then name it alone. */
export function checkStringKey(key: string, index: number): void {
  if (LONE_SURROGATE.test(key)) throw argError('ERR_INVALID_ARG_VALUE', `key ${index} has a lone surrogate (not valid Unicode)`, { index });
}

export function checkKeyArray(keys: unknown): void {
  if (!Array.isArray(keys)) throw argError('ERR_INVALID_ARG_TYPE', 'keys must be an array of strings or Uint8Arrays');
}

/**
 * The error of one of the cache's own ops (a directory or slot read or write), as key `index`'s:
 * its code, errno, call, file and offset, and the key's place in the caller's array.
 */
export function forKey(e: ThreeFSError, index: number): ThreeFSError {
  return new ThreeFSError(e.code, e.message, { errno: e.errno, syscall: e.syscall, path: e.path, offset: e.offset, index, cause: e });
}
