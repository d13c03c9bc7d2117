// The package as `npm pack` makes it (its prepack script builds the prebuild), installed from the
// tarball into a new project by an npm whose PATH holds node, npm and sh only: no g++, make or cc,
// no pkg-config, include paths pointing nowhere. With the prebuild, `require` and `import` load it
// and a batchRead matches node:fs; without one, the install stops with check-build's one line.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { accessSync, constants, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..', '..');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {}
  }
  return undefined;
}

// npm's own script when the tests run under npm, else the npm on PATH.
// A synchronous npm cannot be stopped by the test's timeout: past this, spawnSync kills it.
const NPM_LIMIT_MS = 600_000;
const NPM_CLI = process.env.npm_execpath?.endsWith('npm-cli.js') ? process.env.npm_execpath : onPath('npm') && realpathSync(onPath('npm')!);
const LIBURING = ['/usr/include/liburing.h', '/usr/local/include/liburing.h'].some((h) => existsSync(h));
const missing = [...['g++', 'make', 'readelf', 'tar'].filter((c) => !onPath(c)), ...(LIBURING ? [] : ['liburing.h']), ...(NPM_CLI ? [] : ['npm'])];
const SKIP = missing.length > 0 ? `packing needs a build of the addon: ${missing.join(', ')} not found (bash deps/install.sh)` : '';

let work = '';
/** The tarball `npm pack` made, and the files it lists. */
let tarball = '';
let packed: string[] = [];
/** The npm settings the stripped environment keeps: where the registry, cache and certificates are. */
const NPM_SETTINGS = ['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_cafile', 'npm_config_registry', 'npm_config_proxy', 'npm_config_https_proxy', 'npm_config_noproxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];

/** This environment without what an outer `npm test` adds for its own scripts (its package and prefix). */
function ownEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if ((/^npm_/i.test(key) && !/^npm_config_/i.test(key)) || /^(npm_config_local_prefix|INIT_CWD)$/i.test(key)) delete env[key];
  return env;
}

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = ownEnv()): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [NPM_CLI!, ...args], { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: NPM_LIMIT_MS });
}

/** The sources as a fresh clone has them (no build, dist, prebuilds or tests), with our node_modules. */
function copySources(to: string): void {
  const skip = (name: string) => ['.git', 'node_modules', 'dist', 'prebuilds', 'test'].includes(name) || /^build|^\.bench-|\.tgz$/.test(name);
  for (const name of readdirSync(ROOT)) if (!skip(name)) cpSync(join(ROOT, name), join(to, name), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(to, 'node_modules'));
}

/** `npm pack` in `dir` into `dest`: the tarball's path and its files (npm pack --json). */
function pack(dir: string, dest: string, extra: string[] = []): { file: string; files: string[] } {
  const out = npm(['pack', '--json', '--pack-destination', dest, ...extra], dir);
  if (out.status !== 0) throw new Error(`npm pack failed (${out.status}):\n${out.stderr.slice(-4000)}`);
  const [info] = JSON.parse(out.stdout.slice(out.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  return { file: join(dest, info.filename), files: info.files.map((f) => f.path) };
}

/** An environment with no compiler in reach: PATH holds only links to node, npm and sh. */
function strippedEnv(): NodeJS.ProcessEnv {
  const bin = join(work, 'bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(NPM_CLI!, join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh')); // npm runs scripts with `sh` from PATH
  const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, PATH: bin };
  for (const key of NPM_SETTINGS) if (process.env[key] !== undefined) env[key] = process.env[key];
  const nowhere = join(work, 'nowhere');
  return { ...env, CPATH: nowhere, C_INCLUDE_PATH: nowhere, CPLUS_INCLUDE_PATH: nowhere, LIBRARY_PATH: nowhere, PKG_CONFIG_PATH: nowhere };
}

/** A new project with `tarball` installed by npm in `env` (offline when the npm cache has the dependencies). */
function installInto(project: string, file: string, env: NodeJS.ProcessEnv, extra: string[] = []): SpawnSyncReturns<string> {
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  return npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', ...extra, file], project, env);
}

/** Runs a check script in `project` over a file node:fs wrote; the report, and the bytes it read. */
function runCheck(project: string, name: string, script: string, env: NodeJS.ProcessEnv) {
  writeFileSync(join(project, name), script);
  const data = randomFillSync(Buffer.alloc(3 * 4096 + 100));
  const path = join(project, `${name}.data`);
  writeFileSync(path, data);
  const run = spawnSync(process.execPath, [name, path], { cwd: project, env, encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  const report = JSON.parse(run.stdout) as { results: unknown[]; addons: string[]; sameError: boolean };
  expect(report.results).toEqual([
    { bytes: 4096, eof: false },
    { bytes: 4096, eof: false },
    { bytes: 4096, eof: false },
    { bytes: 100, eof: true },
  ]);
  expect(readFileSync(`${path}.out`).subarray(0, data.length).equals(data)).toBe(true);
  return report;
}

const prebuildIn = (project: string) => join(realpathSync(project), 'node_modules', PACKAGE.name, 'prebuilds', `${process.platform}-${process.arch}`, `${PACKAGE.name}.glibc.node`);
/** The addons of this package among those a check loaded (dependencies may load their own). */
const ours = (project: string, addons: string[]) => addons.filter((a) => a.startsWith(join(realpathSync(project), 'node_modules', PACKAGE.name) + '/'));

// One body for both entry points: a batchRead of a file node:fs wrote, the bytes written back out
// with node:fs for the test to compare, and the addon file that was loaded.
const CHECK_BODY = `
const path = process.argv[2];
const client = lib.connect();
const file = await client.open(path, 'r');
const memory = client.alloc(4 * 4096);
const ops = [0, 1, 2, 3].map((i) => ({ buffer: memory.subarray(i * 4096, (i + 1) * 4096), fileOffset: i * 4096 }));
const results = await file.batchRead(ops);
writeFileSync(path + '.out', memory.bytes);
await file.close();
await client.close();
const addons = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
console.log(JSON.stringify({ results: results.map((r) => ({ bytes: r.bytes, eof: r.eof, error: r.error?.code })), addons, sameError: require('3fs-client').ThreeFSError === lib.ThreeFSError }));
`;
const CHECK_CJS = `'use strict';
const { writeFileSync } = require('node:fs');
const lib = require('3fs-client');
(async () => {${CHECK_BODY}})().catch((e) => { console.error(e); process.exit(1); });
`;
const CHECK_MJS = `import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as lib from '3fs-client';
const require = createRequire(import.meta.url);
${CHECK_BODY}`;

describe.skipIf(SKIP !== '')(`npm pack, then npm install without a compiler${SKIP ? ` (skipped: ${SKIP})` : ''}`, () => {
  let env: NodeJS.ProcessEnv;
  let app = '';

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), '3fs-client-pack-'));
    const src = join(work, 'src');
    mkdirSync(src);
    copySources(src);
    ({ file: tarball, files: packed } = pack(src, work));
    env = strippedEnv();
  }, 900_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs a linux-x64 glibc prebuild with liburing linked in, and nothing of the tests or builds', () => {
    const tuple = `${process.platform}-${process.arch}`;
    expect(packed).toContain(`prebuilds/${tuple}/${PACKAGE.name}.glibc.node`);
    expect(packed).toEqual(expect.arrayContaining(['package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'esm/index.mjs', 'esm/index.d.mts', 'deps/check-build.js', 'deps/install.sh', 'binding.gyp']));
    const unwanted = packed.filter((p) => /^(test|build[^/]*|lib|bench|scripts|\.ci|node_modules)\//.test(p) || /\.map$|\.test\.|(?<!\.d)\.m?ts$|^deps\/(prepack\.js|test-packages\.txt)$/.test(p));
    expect(unwanted).toEqual([]);
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
    const dynamic = execFileSync('readelf', ['--dynamic', '--wide', join(unpacked, 'package', 'prebuilds', tuple, `${PACKAGE.name}.glibc.node`)], { encoding: 'utf8' });
    const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    expect(needed).toContain('libc.so.6');
    expect(needed.filter((lib) => lib.startsWith('liburing'))).toEqual([]);
  });

  it('strips the environment: g++, make, cc and pkg-config cannot be found', () => {
    for (const command of ['g++', 'gcc', 'cc', 'c++', 'make', 'pkg-config']) {
      const run = spawnSync('/bin/sh', ['-c', `command -v ${command} || exit 127`], { env, encoding: 'utf8' });
      expect({ command, status: run.status, found: run.stdout.trim() }).toEqual({ command, status: 127, found: '' });
      expect(spawnSync(command, ['--version'], { env }).error).toMatchObject({ code: 'ENOENT' });
    }
  });

  it('installs from the tarball with no compiler and nothing built', () => {
    app = join(work, 'app');
    const install = installInto(app, tarball, env);
    expect(install.status, install.stderr).toBe(0);
    const installed = join(app, 'node_modules', PACKAGE.name);
    expect(readdirSync(installed)).not.toContain('build');
    expect(`${install.stdout}${install.stderr}`).not.toMatch(/gyp info|CXX\(target\)/);
  }, 300_000);

  it.each([
    ['require', 'check.cjs', CHECK_CJS],
    ['import', 'check.mjs', CHECK_MJS],
  ])('%s loads the prebuild and a batchRead matches node:fs', (_, name, script) => {
    expect(app, 'the install test ran first').not.toBe('');
    const report = runCheck(app, name, script, env);
    expect(ours(app, report.addons)).toEqual([prebuildIn(app)]);
    expect(report.sameError).toBe(true);
  }, 120_000);

  // npm may be told to run no install scripts (--ignore-scripts, an allowScripts policy): the
  // prebuild needs none.
  it('installs with install scripts disabled, and the prebuild still loads', () => {
    const project = join(work, 'app-no-scripts');
    const install = installInto(project, tarball, env, ['--ignore-scripts']);
    expect(install.status, install.stderr).toBe(0);
    const report = runCheck(project, 'check.cjs', CHECK_CJS, env);
    expect(ours(project, report.addons)).toEqual([prebuildIn(project)]);
  }, 300_000);

  // A prebuild that does not load here stands for one built against a newer glibc, or for musl.
  it.each([
    ['no prebuild', (prebuilds: string) => rmSync(prebuilds, { recursive: true })],
    ['a prebuild that does not load here', (prebuilds: string) => writeFileSync(join(prebuilds, `${process.platform}-${process.arch}`, `${PACKAGE.name}.glibc.node`), 'not an ELF file')],
  ])('with %s, the install stops with one line naming what to install, compiling nothing', (what, change) => {
    const unpacked = join(work, what.replace(/ /g, '-'));
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
    change(join(unpacked, 'package', 'prebuilds'));
    const bare = pack(join(unpacked, 'package'), unpacked, ['--ignore-scripts']);
    const install = installInto(join(unpacked, 'app'), bare.file, env);
    expect(install.status).not.toBe(0);
    const ours = install.stderr.split('\n').filter((line) => line.startsWith('3fs-client: '));
    expect(ours).toHaveLength(1);
    expect(ours[0]).toMatch(/^3fs-client: (liburing is missing|a C\+\+ toolchain is missing): install it with 'sudo apt-get install (liburing-dev|build-essential)'/);
    expect(`${install.stdout}${install.stderr}`).not.toMatch(/gyp info|CXX\(target\)/);
  }, 300_000);
});
