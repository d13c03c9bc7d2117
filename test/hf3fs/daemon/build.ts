// Builds the test FUSE daemon (test/hf3fs/daemon/*.cc, on Debian's libfuse3) into
// build-test/hf3fs/hf3fs-test-daemon, only when it is missing or older than its sources. Parallel
// callers each compile to a private file and rename it into place.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');
const SRC_DIR = join(ROOT, 'test', 'hf3fs', 'daemon');
const OUT_DIR = join(ROOT, 'build-test', 'hf3fs');

/** pkg-config's flags for fuse3, or an error that says which package to install. */
function fuseFlags(): string[] {
  try {
    return execFileSync('pkg-config', ['--cflags', '--libs', 'fuse3'], { encoding: 'utf8' }).trim().split(/\s+/);
  } catch {
    throw new Error('the test daemon needs libfuse3 (Debian: libfuse3-dev, see deps/test-packages.txt)');
  }
}

/** Builds (if needed) build-test/hf3fs/hf3fs-test-daemon; returns its absolute path. */
export function buildDaemon(): string {
  const srcs = readdirSync(SRC_DIR).filter((f) => f.endsWith('.cc') || f.endsWith('.h')).map((f) => join(SRC_DIR, f));
  const out = join(OUT_DIR, 'hf3fs-test-daemon');
  const built = existsSync(out) ? statSync(out).mtimeMs : 0;
  if (srcs.every((s) => statSync(s).mtimeMs <= built)) return out;
  mkdirSync(OUT_DIR, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    const ccs = srcs.filter((s) => s.endsWith('.cc'));
    execFileSync('g++', ['-O2', '-g', '-std=c++17', '-Wall', '-Wextra', '-pthread', ...ccs, '-o', tmp, ...fuseFlags()], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as { stderr?: Buffer; message?: string };
    throw new Error(`building the test daemon failed:\n${e.stderr?.toString() || e.message}`);
  }
  return out;
}
