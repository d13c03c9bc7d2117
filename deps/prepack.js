// Runs on `npm pack` and `npm publish` (the prepack script): builds this platform's prebuild of the
// addon with prebuildify, so the tarball installs without a compiler, and refuses to pack one that
// needs liburing's shared library at run time (liburing.a was not found: deps/uring-link.js).
'use strict';
const { execFileSync } = require('node:child_process');
const { readdirSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');

// The build's output goes to stderr: `npm pack --json` prints its JSON on stdout.
function run(file, args) {
  execFileSync(file, args, { cwd: root, stdio: ['ignore', 2, 2] });
}

// The shared libraries an ELF file needs (its DT_NEEDED entries).
function needed(file) {
  const dynamic = execFileSync('readelf', ['--dynamic', '--wide', file], { encoding: 'utf8' });
  return [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

// Nothing left over from an earlier build may ship: a prebuild of older sources, or compiled files
// of modules since renamed (`prepare` runs tsc after this script).
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
rmSync(join(root, 'dist'), { recursive: true, force: true });

const npm = process.env.npm_execpath;
if (npm) run(process.execPath, [npm, 'run', 'prebuildify']);
else run('npm', ['run', 'prebuildify']);

for (const tuple of readdirSync(join(root, 'prebuilds'))) {
  for (const name of readdirSync(join(root, 'prebuilds', tuple))) {
    const file = join(root, 'prebuilds', tuple, name);
    const uring = needed(file).filter((lib) => lib.startsWith('liburing'));
    if (uring.length > 0) {
      process.stderr.write(`3fs-client: ${file} needs ${uring.join(', ')} at run time; install liburing-dev (it has liburing.a) and pack again\n`);
      process.exit(1);
    }
  }
}
