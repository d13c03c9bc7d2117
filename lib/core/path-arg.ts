// Paths as node:fs takes them: a string, a Buffer (its bytes as UTF-8) or a file: URL.
import { fileURLToPath } from 'node:url';
import { argError } from './errors';

/** A path as node:fs takes it. */
export type PathLike = string | Buffer | URL;

/** `path` as a string, or a ThreeFSError naming `name` when it is not a path node:fs would take. */
export function pathArg(path: unknown, name = 'path'): string {
  let text: string;
  if (typeof path === 'string') text = path;
  else if (Buffer.isBuffer(path)) text = path.toString('utf8');
  else if (path instanceof URL) {
    if (path.protocol !== 'file:') throw argError('ERR_INVALID_URL_SCHEME', `${name} must be a file: URL, got ${path.protocol}`);
    try {
      text = fileURLToPath(path);
    } catch (e) {
      throw argError('ERR_INVALID_ARG_VALUE', `${name}: ${(e as Error).message}`, { cause: e });
    }
  } else {
    throw argError('ERR_INVALID_ARG_VALUE', `${name} must be a string, a Buffer or a file: URL, got ${path === null ? 'null' : typeof path}`);
  }
  if (text.length === 0 || text.includes('\0')) throw argError('ERR_INVALID_ARG_VALUE', `${name} must be a non-empty path without NUL bytes`);
  return text;
}
