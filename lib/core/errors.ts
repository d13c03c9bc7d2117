import { getSystemErrorMap, getSystemErrorName } from 'node:util';
import { constants as osConstants } from 'node:os';

/** Where an error happened: the call, the file and the byte offset, and the op's place in its batch. */
export interface ErrorDetails {
  errno?: number;
  syscall?: string;
  path?: string;
  offset?: number;
  index?: number;
  /** Datasets: the sample the error is about: its index in the dataset (in a header error at open, in its file). */
  sample?: number;
  cause?: unknown;
}

/**
 * The one error class of 3fs-client. `code` is an errno name (`EIO`, `ENOENT`, ...) for failures
 * from the system, or `ERR_...` / `ABORT_ERR` for the library's own checks. `errno` is negative,
 * as in node:fs.
 */
export class ThreeFSError extends Error {
  readonly code: string;
  // Declared, not initialised: an error has only the fields that apply to it, as node:fs errors do.
  declare readonly errno?: number;
  declare readonly syscall?: string;
  declare readonly path?: string;
  declare readonly offset?: number;
  /** The op's index within its batch, when the error belongs to one op. */
  declare readonly index?: number;
  /** Datasets: the sample the error is about: its index in the dataset (in a header error at open, in its file). */
  declare readonly sample?: number;
  /** Per-op results of the batch, on errors that end a whole batch (abort, failFast). */
  declare results?: OpResult[];

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ThreeFSError';
    this.code = code;
    const self = this as { -readonly [K in keyof ErrorDetails]: ErrorDetails[K] };
    for (const key of ['errno', 'syscall', 'path', 'offset', 'index', 'sample'] as const) {
      if (details[key] !== undefined) (self as Record<string, unknown>)[key] = details[key];
    }
  }
}

/** One op's outcome: bytes moved, whether a read stopped at the end of the file, or its error. */
export interface OpResult {
  bytes: number;
  eof: boolean;
  error: ThreeFSError | null;
  /** Reads that asked for it (IoOp.crc32c): the CRC32C of that range of the buffer, as read. */
  crc32c?: number;
}

const systemErrors = getSystemErrorMap();
// Errnos libuv has no name for (EDQUOT, ESTALE, ETIME, EBADMSG, ...: a quota, a stale handle on a
// network file system) get their name from os.constants.errno instead of 'Unknown system error -122'.
const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) if (!errnoNames.has(value)) errnoNames.set(value, name);

/** A system error from a positive errno, worded like node:fs's. */
export function errnoError(errno: number, syscall: string, details: ErrorDetails = {}): ThreeFSError {
  const negative = -Math.abs(errno);
  const [name, description] = systemErrors.get(negative) ?? (errnoNames.has(-negative) ? [errnoNames.get(-negative)!, `errno ${-negative}`] : [getSystemErrorName(negative), 'unknown error']);
  let message = `${name}: ${description}, ${syscall}`;
  if (details.path !== undefined) message += ` '${details.path}'`;
  if (details.offset !== undefined) message += ` at offset ${details.offset}`;
  return new ThreeFSError(name, message, { ...details, errno: negative, syscall });
}

export function argError(code: string, message: string, details: ErrorDetails = {}): ThreeFSError {
  return new ThreeFSError(code, message, details);
}

/** Native errors carry code/errno/syscall/path as plain properties; give them our class. */
export function fromNative(e: unknown, details: ErrorDetails = {}): ThreeFSError {
  if (e instanceof ThreeFSError) return e;
  const n = e as { code?: string; errno?: number; syscall?: string; path?: string; index?: number; message?: string };
  if (typeof n?.errno === 'number' && typeof n.syscall === 'string') {
    return errnoError(n.errno, n.syscall, { ...details, path: n.path ?? details.path });
  }
  const own: ErrorDetails = { errno: n?.errno, index: n?.index, path: n?.path ?? details.path };
  return new ThreeFSError(n?.code ?? 'ERR_NATIVE', n?.message ?? shown(e), { ...details, ...own, cause: e });
}

/**
 * A value for an error message. String(v) can throw (a detached typed array, a Proxy, an object
 * whose toString throws): the error about a bad argument must not become a TypeError itself.
 */
export function shown(value: unknown): string {
  try {
    return String(value);
  } catch {
    return `(${typeof value})`;
  }
}
