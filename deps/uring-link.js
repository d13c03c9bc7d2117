// Prints the linker flags for liburing: the static library when there is one, so the addon has no
// run-time dependency on liburing's shared library; the shared one otherwise.
'use strict';
const { existsSync } = require('node:fs');
const { execFileSync } = require('node:child_process');

let libdirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
try {
  const dir = execFileSync('pkg-config', ['--variable=libdir', 'liburing'], { encoding: 'utf8' }).trim();
  if (dir) libdirs = [dir, ...libdirs];
} catch {}
const archive = libdirs.map((d) => `${d}/liburing.a`).find(existsSync);
process.stdout.write(archive ? archive : '-luring');
