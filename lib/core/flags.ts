import { constants } from 'node:fs';
import { argError } from './errors';

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_EXCL, O_SYNC, O_APPEND, O_DIRECT } = constants;

const byName = {
  r: O_RDONLY,
  'r+': O_RDWR,
  'rs+': O_RDWR | O_SYNC,
  w: O_WRONLY | O_CREAT | O_TRUNC,
  wx: O_WRONLY | O_CREAT | O_TRUNC | O_EXCL,
  'w+': O_RDWR | O_CREAT | O_TRUNC,
  'wx+': O_RDWR | O_CREAT | O_TRUNC | O_EXCL,
} satisfies Record<string, number>;

/** node:fs's flag names this library supports (no append modes), or open(2) flags as a number. */
export type OpenFlags = keyof typeof byName | number;

/** node:fs-style flags to open(2) flags. Append modes are refused: every op here names its offset. */
export function parseFlags(flags: OpenFlags): { flags: number; askedDirect: boolean } {
  let value: number | undefined;
  // Own names only: 'constructor' or '__proto__' must not find Object.prototype's members.
  if (typeof flags === 'string') value = Object.hasOwn(byName, flags) ? byName[flags] : undefined;
  else if (Number.isInteger(flags) && flags >= 0) value = flags;
  if (value === undefined) {
    throw argError('ERR_INVALID_ARG_VALUE', `unknown open flags ${JSON.stringify(flags)}: use r, r+, rs+, w, wx, w+, wx+ or a number`);
  }
  if (value & O_APPEND) {
    throw argError('ERR_INVALID_ARG_VALUE', 'append mode is not supported: every write names its file offset');
  }
  return { flags: value & ~O_DIRECT, askedDirect: (value & O_DIRECT) !== 0 };
}

export function accessMode(flags: number): 'r' | 'w' | 'rw' {
  const mode = flags & 3;
  return mode === O_RDONLY ? 'r' : mode === O_WRONLY ? 'w' : 'rw';
}
