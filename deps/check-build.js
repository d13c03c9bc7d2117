// Runs before the addon is built on `npm install`: when something the build needs is missing, say
// which package to install in one line instead of a page of compiler errors.
'use strict';
const { existsSync, readdirSync } = require('node:fs');
const { execFileSync } = require('node:child_process');
const { join } = require('node:path');

const root = join(__dirname, '..');

function hasPrebuild() {
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  return existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.node'));
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
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function fail(message) {
  process.stderr.write(`3fs-client: ${message}\n`);
  process.exit(1);
}

if (process.platform !== 'linux') fail(`needs Linux (io_uring); this is ${process.platform}`);
if (!hasPrebuild()) {
  if (!hasLiburing()) fail("liburing is missing: install it with 'sudo apt-get install liburing-dev' (Debian/Ubuntu) or 'sudo dnf install liburing-devel' (Fedora/RHEL), then run npm install again");
  if (!has('g++') || !has('make')) fail("a C++ toolchain is missing: install it with 'sudo apt-get install build-essential' (Debian/Ubuntu), then run npm install again");
}
