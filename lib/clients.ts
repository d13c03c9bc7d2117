// The process-wide clients behind the top-level open(), alloc() and clientFor(): one for local
// files and one per 3FS mount, made on first use with 3fs-client.toml's settings.
import { loadConfig } from './config/config';
import { Client, type AllocOptions, type ClientOptions, type OpenOptions } from './core/client';
import { argError, ThreeFSError } from './core/errors';
import type { File } from './core/file';
import type { OpenFlags } from './core/flags';
import type { IoBuffer } from './core/io-buffer';
import { pathArg, type PathLike } from './core/path-arg';
import { findHf3fsMount } from './hf3fs/mounts';

let sharedLocal: Client | undefined;
const sharedByMount = new Map<string, Client>();
const fellBack = new Set<string>(); // mounts whose 3FS client could not be made: FUSE it is, without retrying
let warnedFuse = false;

// Options of 3fs-client.toml for the embedded engine (an engine of 'hf3fs' there is for 3FS mounts only).
function localOptions(config: ClientOptions): ClientOptions {
  const { queueDepth, rings, registeredBuffers, asyncBuffered, threads, aio } = config;
  const engine = config.engine === 'io_uring' || config.engine === 'threads' ? config.engine : undefined;
  return Object.fromEntries(Object.entries({ engine, queueDepth, rings, registeredBuffers, asyncBuffered, threads, aio }).filter(([, v]) => v !== undefined));
}

/**
 * The client behind the top-level `open()` and `alloc()` for local files: the local engine, with
 * 3fs-client.toml's settings when there is such a file. Made on first use.
 */
export function defaultClient(): Client {
  if (!sharedLocal || sharedLocal.info().closed) sharedLocal = new Client(localOptions(loadConfig().client));
  return sharedLocal;
}

/**
 * The client the top-level `open()` uses for `path`: one 3FS client per 3FS mount (made on first
 * use, with 3fs-client.toml's settings), the default client elsewhere. If 3FS's library cannot be
 * loaded, files on the mount go through FUSE with the local engine, after one process warning
 * (`3fs-client doctor` says why).
 */
export function clientFor(pathLike: PathLike): Client {
  const path = pathArg(pathLike);
  const mount = findHf3fsMount(path);
  if (!mount || fellBack.has(mount.mountPoint)) return defaultClient();
  const known = sharedByMount.get(mount.mountPoint);
  if (known && !known.info().closed) return known;
  let client: Client;
  try {
    const { threads: _threads, aio: _aio, ...config } = loadConfig().client;
    client = new Client({ ...config, engine: 'hf3fs', mount: mount.mountPoint });
  } catch (e) {
    if (!(e instanceof ThreeFSError) || (e.code !== 'ERR_USRBIO_UNAVAILABLE' && e.code !== 'ERR_NOT_3FS')) throw e;
    fellBack.add(mount.mountPoint);
    if (!warnedFuse) {
      warnedFuse = true;
      process.emitWarning(`${e.message}. Files on ${mount.mountPoint} go through FUSE with the local engine; run '3fs-client doctor ${mount.mountPoint}'.`, { code: 'THREEFS_CLIENT_NO_USRBIO' });
    }
    return defaultClient();
  }
  sharedByMount.set(mount.mountPoint, client);
  return client;
}

/** Opens a file with the client for its path (see clientFor): USRBIO on a 3FS mount, the embedded engine elsewhere. */
export async function open(pathLike: PathLike, flags?: OpenFlags, mode?: number, options?: OpenOptions): Promise<File> {
  const path = pathArg(pathLike);
  return clientFor(path).open(path, flags, mode, options);
}

/**
 * Allocates memory on the default client, or, given `options.for` (a path), on the client for that
 * path: an iov there when it is on 3FS, so I/O on its files needs no bounce copy.
 */
export function alloc(bytes: number, options?: AllocOptions & { for?: PathLike }): IoBuffer {
  const { for: path, ...rest } = options ?? {};
  return (path === undefined ? defaultClient() : clientFor(path)).alloc(bytes, rest);
}
