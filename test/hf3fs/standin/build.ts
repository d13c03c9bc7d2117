// Builds the test-only USRBIO stand-in (usrbio_standin.cc → libhf3fs_api_shared.so), its C test
// driver (harness.c) and the seccomp wrapper of the fallback tests (no-io-uring) into
// build-test/standin/, only when an output is missing or older than its sources or native/hf3fs/usrbio.h. Used from vitest's globalSetup and from test files; parallel test
// processes may call it at once, so each compile writes a private temporary file and renames it
// into place (rename is atomic: nobody ever loads a half-written library).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..', '..');
const SRC_DIR = __dirname;
const OUT_DIR = join(ROOT, 'build-test', 'standin');
const HEADER = join(ROOT, 'native', 'hf3fs', 'usrbio.h');

function isStale(output: string, inputs: string[]): boolean {
  if (!existsSync(output)) return true;
  const built = statSync(output).mtimeMs;
  return inputs.some((input) => statSync(input).mtimeMs > built);
}

function compile(compiler: string, args: string[], output: string): void {
  mkdirSync(OUT_DIR, { recursive: true });
  const tmp = `${output}.tmp-${process.pid}`;
  try {
    execFileSync(compiler, [...args, '-o', tmp], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    renameSync(tmp, output);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as { stderr?: Buffer | string; message?: string };
    const stderr = e.stderr ? e.stderr.toString() : '';
    throw new Error(`${compiler} failed building ${output}:\n${stderr || e.message}`);
  }
}

/** Builds (if needed) build-test/standin/libhf3fs_api_shared.so; returns its absolute path. */
export function buildStandin(): string {
  const srcs = ['usrbio_standin.cc', 'usrbio_protocol.cc'].map((f) => join(SRC_DIR, f));
  const out = join(OUT_DIR, 'libhf3fs_api_shared.so');
  if (isStale(out, [...srcs, join(SRC_DIR, 'usrbio_standin.h'), HEADER])) {
    compile('g++', ['-O2', '-g', '-std=c++17', '-shared', '-fPIC', '-pthread', '-fvisibility=hidden', '-Wall', '-I', 'native/hf3fs', ...srcs], out);
  }
  return out;
}

/** Builds (if needed) build-test/standin/harness, the C driver standin.test.ts scripts. */
export function buildHarness(): string {
  const src = join(SRC_DIR, 'harness.c');
  const out = join(OUT_DIR, 'harness');
  if (isStale(out, [src, HEADER])) {
    compile('gcc', ['-O2', '-g', '-std=gnu11', '-pthread', '-I', 'native/hf3fs', src, '-ldl'], out);
  }
  return out;
}

/**
 * Builds (if needed) build-test/standin/no-io-uring (test/fixtures/no-io-uring.c): runs a command
 * with io_uring_setup refused by a seccomp filter, as in a Docker container with the default profile.
 */
export function buildNoIoUring(): string {
  const src = join(ROOT, 'test', 'fixtures', 'no-io-uring.c');
  const out = join(OUT_DIR, 'no-io-uring');
  if (isStale(out, [src])) compile('gcc', ['-O2', '-std=gnu11', '-Wall', src], out);
  return out;
}

// Runnable directly by any TypeScript runner (e.g. `npx tsx test/hf3fs/standin/build.ts`): prints the path.
if (process.argv[1] !== undefined && /[\\/]test[\\/]standin[\\/]build\.ts$/.test(process.argv[1])) {
  console.log(buildStandin());
}
