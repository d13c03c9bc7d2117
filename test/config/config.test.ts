// lib/config/config.ts: 3fs-client.toml and 3FS's launcher config. Every error must name the file, the
// key and the line, so each case checks those against where the test put the mistake.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_LAUNCHER_CONFIG,
  findKeyLine,
  loadConfig,
  parseSizeValue,
  readLauncherConfig,
  type ConfigError,
} from '../../lib/config/config';
import { ThreeFSError } from '../../lib/core/errors';
import { makeTmpDir } from '../helpers';

const tmp = makeTmpDir('config');
afterAll(() => tmp.cleanup());

let n = 0;
/** Writes a config file in its own directory; returns its path. */
function write(text: string, name = '3fs-client.toml'): string {
  const dir = join(tmp.dir, `case-${n++}`);
  mkdirSync(dir);
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    return e as ConfigError;
  }
  throw new Error('expected an error');
}

const noEnv = {};

describe('3fs-client.toml values', () => {
  it('maps every snake_case key to its client option', () => {
    const file = write(
      [
        '# all keys',
        'engine = "hf3fs"',
        'mount = "/mnt/3fs"',
        'library = "/opt/3fs/lib/libhf3fs_api_shared.so"',
        'queue_depth = 256',
        'rings = 4',
        'registered_buffers = 0',
        'async_buffered = true',
        'numa = -1',
        'block_size = "1MiB"',
        'bounce_buffer = 16777216',
        'forbid_holes = true',
        'read_uncommitted = false',
      ].join('\n'),
    );
    expect(loadConfig(file, noEnv)).toEqual({
      file,
      client: {
        engine: 'hf3fs',
        mount: '/mnt/3fs',
        library: '/opt/3fs/lib/libhf3fs_api_shared.so',
        queueDepth: 256,
        rings: 4,
        registeredBuffers: 0,
        asyncBuffered: true,
        numa: -1,
        blockSize: 1048576,
        bounceBuffer: 16777216,
        forbidHoles: true,
        readUncommitted: false,
      },
    });
  });

  it('reads sizes as numbers or strings with binary (K, KiB) and decimal (KB) units', () => {
    const cases: [unknown, number | undefined][] = [
      [4096, 4096],
      [0, 0],
      ['4k', 4096],
      ['4 KiB', 4096],
      ['1MiB', 1048576],
      ['1M', 1048576],
      ['1MB', 1_000_000],
      ['2GiB', 2 * 1024 ** 3],
      ['1.5KiB', 1536],
      ['1T', 1024 ** 4],
      ['1.5B', undefined], // not a whole number of bytes
      ['lots', undefined],
      ['-1', undefined],
      [-1, undefined],
      [1.5, undefined],
      [true, undefined],
    ];
    for (const [value, bytes] of cases) expect([value, parseSizeValue(value)]).toEqual([value, bytes]);
    const file = write('block_size = "512K"\nbounce_buffer = "32 MiB"\n');
    expect(loadConfig(file, noEnv).client).toEqual({ blockSize: 524288, bounceBuffer: 32 * 1024 ** 2 });
  });

  it("reads engine = \"usrbio\" as 'hf3fs' (its alias)", () => {
    expect(loadConfig(write('engine = "usrbio"\n'), noEnv).client).toEqual({ engine: 'hf3fs' });
  });

  it('reports a bad value with file, key and line', () => {
    const file = write(['engine = "local"', '', '# depth', 'rings = 2', '', 'async_buffered = false', 'queue_depth = 0'].join('\n'));
    const e = errorOf(() => loadConfig(file, noEnv));
    expect(e).toBeInstanceOf(ThreeFSError);
    expect(e.code).toBe('ERR_CONFIG');
    expect(e.path).toBe(file);
    expect(e.key).toBe('queue_depth');
    expect(e.line).toBe(7);
    expect(e.message).toBe(`${file}:7: queue_depth must be a whole number from 1 to 32768, got 0`);
  });

  it('reports values of the wrong type', () => {
    const cases: [string, string, string][] = [
      ['async_buffered = "yes"', 'async_buffered', 'async_buffered must be true or false, got "yes"'],
      ['rings = 2.5', 'rings', 'rings must be a whole number from 1 to 64, got 2.5'],
      ['rings = 65', 'rings', 'rings must be a whole number from 1 to 64, got 65'],
      ['registered_buffers = 16385', 'registered_buffers', 'registered_buffers must be a whole number from 0 to 16384, got 16385'],
      ['numa = -2', 'numa', 'numa must be a whole number from -1 to 1023, got -2'],
      ['mount = 5', 'mount', 'mount must be a non-empty string, got 5'],
      ['library = ""', 'library', 'library must be a non-empty string, got ""'],
      ['engine = "fuse"', 'engine', 'engine must be one of "local", "io_uring", "threads", "hf3fs", got "fuse"'],
      ['queue_depth = 9007199254740993', 'queue_depth', 'queue_depth must be a whole number from 1 to 32768, got 9007199254740993'],
      ['queue_depth = [1, 2]', 'queue_depth', 'queue_depth must be a whole number from 1 to 32768, got an array'],
      ['block_size = "big"', 'block_size', 'block_size must be a size in bytes: a whole number or a string such as "1MiB", got "big"'],
      ['forbid_holes = 1', 'forbid_holes', 'forbid_holes must be true or false, got 1'],
      ['read_uncommitted = 1979-05-27', 'read_uncommitted', 'read_uncommitted must be true or false, got 1979-05-27'],
    ];
    for (const [text, key, message] of cases) {
      const file = write(`# line 1\n${text}\n`);
      const e = errorOf(() => loadConfig(file, noEnv));
      expect({ code: e.code, key: e.key, line: e.line, message: e.message }).toEqual({ code: 'ERR_CONFIG', key, line: 2, message: `${file}:2: ${message}` });
    }
  });

  it('rejects unknown keys and tables, suggesting the right spelling', () => {
    const file = write('rings = 2\nqueueDepth = 64\n');
    const e = errorOf(() => loadConfig(file, noEnv));
    expect([e.key, e.line]).toEqual(['queueDepth', 2]);
    expect(e.message).toBe(`${file}:2: unknown key "queueDepth" (did you mean queue_depth?)`);

    const table = write('rings = 2\n\n[client]\nqueue_depth = 0\n');
    const t = errorOf(() => loadConfig(table, noEnv));
    expect([t.code, t.key, t.line]).toEqual(['ERR_CONFIG', 'client', 3]);
    expect(t.message).toMatch(/^.*:3: unknown key "client" \(known keys: engine, mount, .*launcher\)$/);
  });

  it('finds the line of a key past multi-line strings, arrays and same-named keys in tables', () => {
    const text = [
      'library = """', // 1
      'queue_depth = 1', // 2: inside the string
      '"""', // 3
      'mount = "/mnt/3fs" # queue_depth = 2', // 4
      'queue_depth = 0', // 5
    ].join('\n');
    const e = errorOf(() => loadConfig(write(text), noEnv));
    expect([e.key, e.line]).toEqual(['queue_depth', 5]);

    const tables = ['[a]', 'x = 1', 'list = [', '  "x = 3",', ']', '[b]', '"x" = 2', '[c.d]', 'e.f = 1', '[[g]]', 'h = 1'].join('\n');
    expect(findKeyLine(tables, 'a.x')).toBe(2);
    expect(findKeyLine(tables, 'b.x')).toBe(7);
    expect(findKeyLine(tables, 'c.d.e.f')).toBe(9);
    expect(findKeyLine(tables, 'g.h')).toBe(11);
    expect(findKeyLine(tables, 'c')).toBe(8);
    expect(findKeyLine(tables, 'x')).toBeUndefined();
  });

  it('reports TOML syntax errors with line and column from the parser', () => {
    const file = write(['rings = 2', 'queue_depth = 64', 'mount = "/mnt/3fs', 'numa = 0'].join('\n'));
    const e = errorOf(() => loadConfig(file, noEnv));
    expect(e.code).toBe('ERR_CONFIG');
    expect(e.path).toBe(file);
    expect(e.line).toBe(3);
    expect(e.column).toBeGreaterThan(1);
    expect(e.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: TOML syntax error at column \\d+: `));
    expect(e.message).not.toContain('\n');

    const dup = errorOf(() => loadConfig(write('rings = 2\nrings = 3\n'), noEnv));
    expect([dup.line, dup.key]).toEqual([2, 'rings']);
    expect(dup.message).toMatch(/:2: TOML syntax error at column \d+: Can't redefine existing key/);

    const unit = errorOf(() => loadConfig(write('\n\nblock_size = 1MiB\n'), noEnv));
    expect([unit.line, unit.key]).toEqual([3, 'block_size']);
  });
});

describe('finding 3fs-client.toml', () => {
  function inDir<T>(dir: string, fn: () => T): T {
    const before = process.cwd();
    process.chdir(dir);
    try {
      return fn();
    } finally {
      process.chdir(before);
    }
  }

  it('uses ./3fs-client.toml and names it relative to the working directory', () => {
    const file = write('rings = 3\n\nqueue_depth = 0\n');
    const dir = join(file, '..');
    const e = inDir(dir, () => errorOf(() => loadConfig(undefined, noEnv)));
    expect(e.message).toBe('3fs-client.toml:3: queue_depth must be a whole number from 1 to 32768, got 0');
    expect(e.path).toBe(file);
    const ok = write('rings = 3\n');
    expect(inDir(join(ok, '..'), () => loadConfig(undefined, noEnv))).toEqual({ file: ok, client: { rings: 3 } });
  });

  it('prefers $THREEFS_CLIENT_CONFIG, which must exist', () => {
    const local = write('rings = 3\n');
    const named = write('rings = 5\n', 'elsewhere.toml');
    expect(inDir(join(local, '..'), () => loadConfig(undefined, { THREEFS_CLIENT_CONFIG: named }))).toEqual({ file: named, client: { rings: 5 } });
    const missing = join(tmp.dir, 'missing.toml');
    const e = errorOf(() => loadConfig(undefined, { THREEFS_CLIENT_CONFIG: missing }));
    expect([e.code, e.path]).toEqual(['ERR_CONFIG', missing]);
    expect(e.message).toBe(`${missing}: cannot read config: ENOENT: no such file or directory`);
  });

  it('without any file, returns the defaults', () => {
    if (existsSync('/etc/3fs-client.toml')) return; // this machine has a system config
    const empty = join(tmp.dir, 'empty');
    mkdirSync(empty);
    expect(inDir(empty, () => loadConfig(undefined, noEnv))).toEqual({ file: undefined, client: {} });
  });
});

// Shaped like 3FS's configs/hf3fs_fuse_main_launcher.toml: top-level keys, then 3FS's own tables.
const launcherText = (mountpoint: string, extra = '') =>
  [
    'allow_other = true',
    "cluster_id = 'stage'",
    `mountpoint = '${mountpoint}'`,
    "token_file = '/opt/3fs/etc/token.txt'",
    extra,
    '',
    '[client.io_worker.ibsocket]',
    'max_sge = 16',
    "mountpoint = 'not this one'",
    '',
    '[ib_devices]',
    'device_filter = []',
    '',
    '[mgmtd_client]',
    "mgmtd_server_addresses = ['RDMA://192.168.1.1:8000']",
  ].join('\n');

describe('the 3FS launcher config', () => {
  it('reads mountpoint, cluster_id and token_file', () => {
    const file = write(launcherText('/3fs/stage'), 'hf3fs_fuse_main_launcher.toml');
    expect(readLauncherConfig(file)).toEqual({ file, mountpoint: '/3fs/stage', clusterId: 'stage', tokenFile: '/opt/3fs/etc/token.txt' });
    expect(DEFAULT_LAUNCHER_CONFIG).toBe('/opt/3fs/etc/hf3fs_fuse_main_launcher.toml');
  });

  it("reads 3FS's empty defaults as absent", () => {
    const file = write("allow_other = true\ncluster_id = ''\nmountpoint = ''\ntoken_file = ''\n", 'launcher.toml');
    expect(readLauncherConfig(file)).toEqual({ file });
  });

  it('gives the mount to 3fs-client.toml through `launcher`, relative to the config; an explicit mount wins', () => {
    const launcher = write(launcherText('/3fs/stage'), 'hf3fs_fuse_main_launcher.toml');
    const dir = join(launcher, '..');
    const config = join(dir, '3fs-client.toml');
    writeFileSync(config, 'engine = "hf3fs"\nlauncher = "hf3fs_fuse_main_launcher.toml"\n');
    expect(loadConfig(config, noEnv)).toEqual({
      file: config,
      client: { engine: 'hf3fs', mount: '/3fs/stage' },
      launcher: { file: launcher, mountpoint: '/3fs/stage', clusterId: 'stage', tokenFile: '/opt/3fs/etc/token.txt' },
    });
    writeFileSync(config, `mount = "/elsewhere"\nlauncher = "${launcher}"\n`);
    expect(loadConfig(config, noEnv).client.mount).toBe('/elsewhere');
  });

  it('reports a missing launcher at the `launcher` line of 3fs-client.toml', () => {
    const config = write('rings = 2\nlauncher = "nope.toml"\n');
    const e = errorOf(() => loadConfig(config, noEnv));
    expect([e.code, e.path, e.key, e.line]).toEqual(['ERR_CONFIG', config, 'launcher', 2]);
    expect(e.message).toBe(`${config}:2: launcher names ${join(config, '..', 'nope.toml')}, which does not exist`);
  });

  it('reports mistakes inside the launcher with the launcher file, key and line', () => {
    const bad = write(launcherText('/3fs/stage').replace("cluster_id = 'stage'", 'cluster_id = 7'), 'launcher.toml');
    const e = errorOf(() => readLauncherConfig(bad));
    expect([e.code, e.path, e.key, e.line]).toEqual(['ERR_CONFIG', bad, 'cluster_id', 2]);
    expect(e.message).toBe(`${bad}:2: cluster_id must be a string, got 7`);

    const broken = write(launcherText('/3fs/stage', 'token_file = ['), 'launcher.toml');
    const config = join(broken, '..', '3fs-client.toml');
    writeFileSync(config, `launcher = "${broken}"\n`);
    const s = errorOf(() => loadConfig(config, noEnv));
    expect([s.code, s.path]).toEqual(['ERR_CONFIG', broken]);
    expect(s.message).toMatch(/launcher\.toml:\d+: TOML syntax error/);
  });
});
