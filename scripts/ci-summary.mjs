// The end of CI's log (.ci/run): each phase's outcome and, for every failed one, the name and
// assertion of each failed test (from scripts/ci-failures.mjs), or the end of its output when it
// failed without one (a build error, the bench). Exits 1 if any phase failed.
//   node scripts/ci-summary.mjs DIR    # DIR/phases: "name exit-code" lines, in the order they ran
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const TAIL_LINES = 20;

/** The failures a test phase wrote, or null when it wrote none (it failed before vitest ended). */
function failuresOf(name) {
  const file = join(dir, `${name}.failures.json`);
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).failures : null;
}

function tailOf(name) {
  const file = join(dir, `${name}.log`);
  if (!existsSync(file)) return ['(no output kept)'];
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-TAIL_LINES);
}

function report(name, code) {
  if (code === 0) return [`${name}: passed`];
  const failures = failuresOf(name);
  if (!failures || failures.length === 0) {
    return [`${name}: FAILED (exit ${code}), no failed test recorded; the end of its output:`, ...tailOf(name).map((l) => `    ${l}`)];
  }
  const lines = [`${name}: FAILED (exit ${code}), ${failures.length} failure${failures.length === 1 ? '' : 's'}:`];
  for (const f of failures) {
    const where = [f.project, f.file].filter(Boolean).join(' ');
    lines.push(`  FAIL ${where ? `${where} > ` : ''}${f.test}`);
    lines.push(...f.error.split('\n').map((l) => `       ${l}`));
    if (f.at) lines.push(`       at ${f.at}`);
  }
  return lines;
}

const phases = readFileSync(join(dir, 'phases'), 'utf8').trim().split('\n').map((l) => l.split(' '));
const failed = phases.filter(([, code]) => code !== '0').map(([name]) => name);
console.log('\n==================== CI summary ====================');
for (const [name, code] of phases) console.log(report(name, Number(code)).join('\n'));
console.log(failed.length ? `CI FAILED: ${failed.join(', ')}` : 'CI passed: every phase');
process.exit(failed.length ? 1 : 0);
