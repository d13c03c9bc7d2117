// Configuration files: our own 3fs-client.toml, and 3FS's hf3fs_fuse_main_launcher.toml, which
// already says where the file system is mounted. Every mistake is reported with the file, the key
// and the line, because a config file is usually edited far from where the error shows up.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { parse as parseToml } from '@iarna/toml';
import { argError, type ThreeFSError } from '../core/errors';

/** The client options a config file can set (ClientOptions's names). */
export interface ConfigClientOptions {
  /** 'usrbio' in the file is read as 'hf3fs' (its alias). */
  engine?: 'local' | 'io_uring' | 'threads' | 'hf3fs';
  /** The 3FS mount point. */
  mount?: string;
  /** Path of libhf3fs_api_shared.so. */
  library?: string;
  queueDepth?: number;
  rings?: number;
  registeredBuffers?: number;
  asyncBuffered?: boolean;
  /** Worker threads of the 'threads' engine, and whether its O_DIRECT ops go through AIO. */
  threads?: number;
  aio?: boolean;
  /** NUMA node for shared memory; -1 lets first touch decide. */
  numa?: number;
  /** Block size of USRBIO iovs, in bytes. */
  blockSize?: number;
  /** Size of the bounce buffer, in bytes. */
  bounceBuffer?: number;
  forbidHoles?: boolean;
  readUncommitted?: boolean;
}

/** What 3FS's FUSE launcher config says about the mount. Empty strings read as absent. */
export interface LauncherConfig {
  file: string;
  mountpoint?: string;
  clusterId?: string;
  tokenFile?: string;
}

export interface LoadedConfig {
  /** The file read, absolute; undefined when there is none (defaults apply). */
  file: string | undefined;
  client: ConfigClientOptions;
  /** The launcher config named by `launcher`, when set. */
  launcher?: LauncherConfig;
}

/** A ThreeFSError with code ERR_CONFIG; `path` is the file. */
export type ConfigError = ThreeFSError & {
  readonly code: 'ERR_CONFIG';
  /** The dotted key at fault, when one is. */
  readonly key?: string;
  /** 1-based line, when known. */
  readonly line?: number;
  /** 1-based column, for syntax errors. */
  readonly column?: number;
};

export const DEFAULT_LAUNCHER_CONFIG = '/opt/3fs/etc/hf3fs_fuse_main_launcher.toml';
export const CONFIG_FILE_NAME = '3fs-client.toml';
export const SYSTEM_CONFIG = '/etc/3fs-client.toml';

// ---------------------------------------------------------------------------------------------
// Errors

/** How a file is named in messages: relative to the working directory when under it. */
function displayName(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

function configError(
  file: string,
  message: string,
  where: { key?: string; line?: number; column?: number; cause?: unknown } = {},
): ConfigError {
  const at = where.line === undefined ? '' : `:${where.line}`;
  const err = argError('ERR_CONFIG', `${displayName(file)}${at}: ${message}`, { path: file, cause: where.cause });
  const extra = err as unknown as Record<string, unknown>;
  if (where.key !== undefined) extra.key = where.key;
  if (where.line !== undefined) extra.line = where.line;
  if (where.column !== undefined) extra.column = where.column;
  return err as ConfigError;
}

export function isConfigError(e: unknown): e is ConfigError {
  return (e as { code?: unknown })?.code === 'ERR_CONFIG';
}

// ---------------------------------------------------------------------------------------------
// Reading TOML

type Table = Record<string, unknown>;

interface TomlFile {
  file: string;
  text: string;
  data: Table;
}

function readToml(file: string, what: string): TomlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw configError(file, `cannot read ${what}: ${err.code ?? ''}${err.code ? ': ' : ''}${plainMessage(err)}`, { cause: e });
  }
  try {
    return { file, text, data: parseToml(text) as Table };
  } catch (e) {
    // @iarna/toml's errors carry 0-based line and col, and a message followed by an excerpt.
    const t = e as { line?: number; col?: number; message?: string };
    const line = typeof t.line === 'number' ? t.line + 1 : undefined;
    const column = typeof t.col === 'number' ? t.col + 1 : undefined;
    const first = String(t.message ?? e).split('\n')[0].replace(/ at row \d+, col \d+, pos \d+:?$/, '');
    const key = line === undefined ? undefined : keyOnLine(text, line);
    throw configError(file, `TOML syntax error${column === undefined ? '' : ` at column ${column}`}: ${first}`, {
      line,
      column,
      key,
      cause: e,
    });
  }
}

function plainMessage(err: NodeJS.ErrnoException): string {
  // node:fs messages repeat the code and the path ("ENOENT: no such file or directory, open '...'").
  return err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
}

// ---------------------------------------------------------------------------------------------
// Finding a key's line: a small scanner of TOML's line structure, aware of [table] and
// [[array]] headers and of dotted and quoted keys, and skipping multi-line strings and arrays so
// their contents are not taken for keys.

interface KeyLine {
  key: string;
  line: number;
}

function unquoteKeyPart(part: string): string {
  const p = part.trim();
  if ((p.startsWith('"') && p.endsWith('"')) || (p.startsWith("'") && p.endsWith("'"))) return p.slice(1, -1);
  return p;
}

function splitDottedKey(text: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quote = '';
  for (const ch of text) {
    if (quote) {
      current += ch;
      if (ch === quote) quote = '';
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current += ch;
    } else if (ch === '.') {
      parts.push(unquoteKeyPart(current));
      current = '';
    } else current += ch;
  }
  parts.push(unquoteKeyPart(current));
  return parts;
}

/** Index of the first `=` outside quotes, or -1. */
function assignmentAt(line: string): number {
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === quote) quote = '';
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '#') return -1;
    else if (ch === '=') return i;
  }
  return -1;
}

/** Net count of [ and { minus ] and } outside strings and comments, and whether a """/''' string stays open. */
function valueState(value: string): { depth: number; openString: string } {
  let depth = 0;
  let i = 0;
  while (i < value.length) {
    const rest = value.slice(i);
    if (rest.startsWith('"""') || rest.startsWith("'''")) {
      const fence = rest.slice(0, 3);
      const end = value.indexOf(fence, i + 3);
      if (end < 0) return { depth, openString: fence };
      i = end + 3;
      continue;
    }
    const ch = value[i];
    if (ch === '#') break;
    if (ch === '"' || ch === "'") {
      let j = i + 1;
      while (j < value.length && value[j] !== ch) j += ch === '"' && value[j] === '\\' ? 2 : 1;
      i = j + 1;
      continue;
    }
    if (ch === '[' || ch === '{') depth++;
    else if (ch === ']' || ch === '}') depth--;
    i++;
  }
  return { depth, openString: '' };
}

/** Every key assignment and table header of a TOML text, with its full dotted key. */
export function scanKeys(text: string): KeyLine[] {
  const found: KeyLine[] = [];
  const lines = text.split(/\r?\n/);
  let table: string[] = [];
  let depth = 0;
  let openString = '';
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n];
    if (openString) {
      const end = raw.indexOf(openString);
      if (end < 0) continue;
      const after = valueState(raw.slice(end + 3));
      openString = after.openString;
      depth += after.depth;
      continue;
    }
    if (depth > 0) {
      const s = valueState(raw);
      depth += s.depth;
      openString = s.openString;
      continue;
    }
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[\[?\s*(.+?)\s*\]\]?\s*(#.*)?$/.exec(line);
    if (header && assignmentAt(line) < 0) {
      table = splitDottedKey(header[1]);
      found.push({ key: table.join('.'), line: n + 1 });
      continue;
    }
    const eq = assignmentAt(line);
    if (eq < 0) continue;
    const key = [...table, ...splitDottedKey(line.slice(0, eq))].join('.');
    found.push({ key, line: n + 1 });
    const s = valueState(line.slice(eq + 1));
    depth = Math.max(0, s.depth);
    openString = s.openString;
  }
  return found;
}

/** The 1-based line where a dotted key is set (or its table begins), if it can be found. */
export function findKeyLine(text: string, key: string): number | undefined {
  const keys = scanKeys(text);
  const exact = keys.find((k) => k.key === key);
  if (exact) return exact.line;
  // A key inside an inline table or a dotted-key table: point at its first appearance.
  return keys.find((k) => k.key.startsWith(`${key}.`) || key.startsWith(`${k.key}.`))?.line;
}

function keyOnLine(text: string, line: number): string | undefined {
  return scanKeys(text).find((k) => k.line === line)?.key;
}

// ---------------------------------------------------------------------------------------------
// Values

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1e3,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1e6,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1e9,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1e12,
};

/**
 * A size in bytes from a number or a string such as '1MiB', '512K', '4 KiB', '1GB' (K, M, G and T
 * alone are binary, as in the bench's options; KB, MB, ... are decimal). Undefined if unreadable or
 * not a whole number of bytes.
 */
export function parseSizeValue(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? sizeUnits[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return 'an array';
  if (value !== null && typeof value === 'object') return 'a table';
  return String(value);
}

type Check = (value: unknown) => { ok: true; value: unknown } | { ok: false; expected: string };

const whole = (min: number, max: number): Check => (value) =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
    ? { ok: true, value }
    : { ok: false, expected: `a whole number from ${min} to ${max}` };

const bool: Check = (value) => (typeof value === 'boolean' ? { ok: true, value } : { ok: false, expected: 'true or false' });

const text: Check = (value) =>
  typeof value === 'string' && value !== '' && !value.includes('\0')
    ? { ok: true, value }
    : { ok: false, expected: 'a non-empty string' };

const size: Check = (value) => {
  const bytes = parseSizeValue(value);
  return bytes === undefined
    ? { ok: false, expected: 'a size in bytes: a whole number or a string such as "1MiB"' }
    : { ok: true, value: bytes };
};

const oneOf = (...choices: string[]): Check => (value) =>
  typeof value === 'string' && choices.includes(value)
    ? { ok: true, value }
    : { ok: false, expected: `one of ${choices.map((c) => `"${c}"`).join(', ')}` };

/** The `engine` key: an engine's name, or 'usrbio', the alias of 'hf3fs'. */
const engine: Check = (value) => oneOf('local', 'io_uring', 'threads', 'hf3fs')(value === 'usrbio' ? 'hf3fs' : value);

/** The keys of 3fs-client.toml: TOML name → [ClientOptions name, check]. */
const clientKeys: Record<string, [keyof ConfigClientOptions | 'launcher', Check]> = {
  engine: ['engine', engine],
  mount: ['mount', text],
  library: ['library', text],
  queue_depth: ['queueDepth', whole(1, 32768)],
  rings: ['rings', whole(1, 64)],
  registered_buffers: ['registeredBuffers', whole(0, 16384)],
  async_buffered: ['asyncBuffered', bool],
  threads: ['threads', whole(1, 4096)],
  aio: ['aio', bool],
  numa: ['numa', whole(-1, 1023)],
  block_size: ['blockSize', size],
  bounce_buffer: ['bounceBuffer', size],
  forbid_holes: ['forbidHoles', bool],
  read_uncommitted: ['readUncommitted', bool],
  launcher: ['launcher', text],
};

/** 'did you mean queue_depth?' for queueDepth or queue-depth; else the list of keys. */
function suggestion(key: string): string {
  const fold = (k: string) => k.toLowerCase().replace(/[-_]/g, '');
  const near = Object.keys(clientKeys).find((k) => fold(k) === fold(key));
  return near !== undefined ? `did you mean ${near}?` : `known keys: ${Object.keys(clientKeys).join(', ')}`;
}

/** The keys 3fs-client.toml accepts. */
export const CONFIG_KEYS: readonly string[] = Object.freeze(Object.keys(clientKeys));

function badValue(toml: TomlFile, key: string, value: unknown, expected: string, cause?: unknown): ConfigError {
  return configError(toml.file, `${key} must be ${expected}, got ${describe(value)}`, {
    key,
    line: findKeyLine(toml.text, key),
    cause,
  });
}

// ---------------------------------------------------------------------------------------------
// The launcher config

/**
 * Reads 3FS's FUSE launcher config (hf3fs_fuse_main_launcher.toml): its top-level `mountpoint`,
 * `cluster_id` and `token_file`. The rest of the file (client, ib_devices, mgmtd_client) is
 * 3FS's business and is not checked here.
 */
export function readLauncherConfig(file: string = DEFAULT_LAUNCHER_CONFIG): LauncherConfig {
  const path = resolve(file);
  const toml = readToml(path, '3FS launcher config');
  const out: LauncherConfig = { file: path };
  const fields = [
    ['mountpoint', 'mountpoint'],
    ['cluster_id', 'clusterId'],
    ['token_file', 'tokenFile'],
  ] as const;
  for (const [key, name] of fields) {
    const value = toml.data[key];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string') throw badValue(toml, key, value, 'a string');
    out[name] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 3fs-client.toml

/** Where loadConfig() looks when not given a file: the first that applies. */
export function configCandidates(env: NodeJS.ProcessEnv = process.env): { file: string; explicit: boolean }[] {
  const fromEnv = env.THREEFS_CLIENT_CONFIG;
  if (fromEnv) return [{ file: resolve(fromEnv), explicit: true }];
  return [
    { file: resolve(CONFIG_FILE_NAME), explicit: false },
    { file: SYSTEM_CONFIG, explicit: false },
  ];
}

/**
 * Loads 3fs-client.toml: `file` if given, else $THREEFS_CLIENT_CONFIG, else ./3fs-client.toml, else
 * /etc/3fs-client.toml. With none of them present, `{ file: undefined, client: {} }`. A file that
 * was named (argument or environment) must exist. Throws a ConfigError (code ERR_CONFIG) naming the
 * file, the key and the line.
 */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let path: string | undefined;
  if (file !== undefined) path = resolve(file);
  else {
    for (const c of configCandidates(env)) {
      if (c.explicit || existsSync(c.file)) {
        path = c.file;
        break;
      }
    }
  }
  if (path === undefined) return { file: undefined, client: {} };

  const toml = readToml(path, 'config');
  const client: ConfigClientOptions = {};
  let launcherPath: string | undefined;
  for (const [key, value] of Object.entries(toml.data)) {
    const spec = clientKeys[key];
    if (spec === undefined) {
      throw configError(path, `unknown key ${JSON.stringify(key)} (${suggestion(key)})`, {
        key,
        line: findKeyLine(toml.text, key),
      });
    }
    const [name, check] = spec;
    const result = check(value);
    if (!result.ok) throw badValue(toml, key, value, result.expected);
    if (name === 'launcher') launcherPath = resolve(dirname(path), result.value as string);
    else (client as Record<string, unknown>)[name] = result.value;
  }

  const loaded: LoadedConfig = { file: path, client };
  if (launcherPath !== undefined) {
    if (!existsSync(launcherPath)) {
      throw configError(path, `launcher names ${launcherPath}, which does not exist`, {
        key: 'launcher',
        line: findKeyLine(toml.text, 'launcher'),
      });
    }
    loaded.launcher = readLauncherConfig(launcherPath);
    // The launcher is where 3FS itself says the mount is; an explicit `mount` still wins.
    if (client.mount === undefined && loaded.launcher.mountpoint !== undefined) client.mount = loaded.launcher.mountpoint;
  }
  return loaded;
}
