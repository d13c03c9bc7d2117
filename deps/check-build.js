// Runs before the addon is built on `npm install`: when a prebuild in prebuilds/ loads here, nothing
// is compiled (node-gyp-build then uses it); when something the build needs is missing, say which
// package to install in one line instead of a page of compiler errors.
'use strict';
const { accessSync, constants, existsSync } = require('node:fs');
const { execFileSync } = require('node:child_process');
const { delimiter, join } = require('node:path');

const root = join(__dirname, '..');

// The prebuild node-gyp-build would pick (platform, arch, libc, N-API), and that it loads: one
// built against a newer glibc than this machine's matches by name but fails to load.
function prebuildLoads() {
  process.env.PREBUILDS_ONLY = '1'; // a stale build/ must not count
  try {
    require(require('node-gyp-build').resolve(root));
    return true;
  } catch {
    return false;
  }
}

function hasLiburing() {
  try {
    execFileSync('pkg-config', ['--exists', 'liburing'], { stdio: 'ignore' });
    return true;
  } catch {
    return ['/usr/include/liburing.h', '/usr/local/include/liburing.h'].some(existsSync);
  }
}

function has(command) {
  return (process.env.PATH || '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function fail(message) {
  process.stderr.write(`3fs-client: ${message}\n`);
  process.exit(1);
}

if (process.platform !== 'linux') fail(`needs Linux (io_uring); this is ${process.platform}`);
if (!prebuildLoads()) {
  if (!hasLiburing()) fail("liburing is missing: install it with 'sudo apt-get install liburing-dev' (Debian/Ubuntu) or 'sudo dnf install liburing-devel' (Fedora/RHEL), then run npm install again");
  if (!has('g++') || !has('make')) fail("a C++ toolchain is missing: install it with 'sudo apt-get install build-essential' (Debian/Ubuntu), then run npm install again");
}
