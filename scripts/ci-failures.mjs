// A vitest reporter for CI (.ci/run). THREEFS_TEST_FAILURES names the run's failures file
// (NAME.failures.json): the failed tests with the project of each, for scripts/ci-summary.mjs to
// list at the end of the log (vitest's own JSON reporter leaves out the project, and every engine
// suite runs in three). Beside it, while the run goes on:
// - NAME.running.json: the files in progress, each with its test in progress and since when, so
//   that a phase stopped for running too long names what it was waiting for (.ci/run);
// - NAME.durations.tsv: seconds, project and file of each file that ended, to see where time goes.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';

/** The error's first line of text and the first frame in the repository's own files. */
function describeError(error) {
  const cause = error.cause?.message ? `\ncaused by: ${error.cause.message}` : '';
  const text = `${error.name ?? 'Error'}: ${error.message ?? String(error)}${cause}`.split('\n').slice(0, 4).join('\n');
  const frames = (error.stack ?? '').split('\n').map((l) => /(?:file:\/\/)?(\/[^\s():]+):(\d+):(\d+)/.exec(l)).filter(Boolean);
  const own = frames.find((m) => m[1].startsWith(process.cwd()) && !m[1].includes('/node_modules/'));
  const at = own ? `${relative(process.cwd(), own[1])}:${own[2]}:${own[3]}` : undefined;
  return at ? { error: text, at } : { error: text };
}

/** What went wrong in one file: its own errors, its failed tests, or that it never finished. */
function failuresOf(module) {
  const where = { project: module.project.name, file: relative(process.cwd(), module.moduleId) };
  const failures = [];
  // Errors of the file itself: a hook, an import, a test process that died (a sanitizer's abort).
  for (const e of module.errors()) failures.push({ ...where, test: '(the file)', ...describeError(e) });
  for (const test of module.children.allTests('failed')) {
    for (const e of test.result().errors ?? []) failures.push({ ...where, test: test.fullName, ...describeError(e) });
  }
  // A file that never finished: its test process died (vitest reports that as an unhandled error, without the file).
  if (module.state() === 'pending' || module.state() === 'queued') {
    const running = [...module.children.allTests('pending')].map((t) => t.fullName);
    failures.push({ ...where, test: running.length ? running.join(' | ') : '(the file)', error: 'did not finish: its test process exited or was killed (see the unhandled error below)' });
  }
  return failures;
}

export default class CiFailures {
  file = process.env.THREEFS_TEST_FAILURES;
  base = this.file.replace(/\.failures\.json$/, '');
  /** The files in progress: key project + file, value { project, file, since, test, testSince }. */
  running = new Map();

  constructor() {
    mkdirSync(dirname(this.file), { recursive: true });
  }

  key(module) {
    return `${module.project.name} ${relative(process.cwd(), module.moduleId)}`;
  }

  writeRunning() {
    writeFileSync(`${this.base}.running.json`, JSON.stringify([...this.running.values()], null, 1));
  }

  onTestModuleStart(module) {
    this.running.set(this.key(module), { project: module.project.name, file: relative(process.cwd(), module.moduleId), since: new Date().toISOString() });
    this.writeRunning();
  }

  onTestCaseReady(test) {
    const entry = this.running.get(this.key(test.module));
    if (!entry) return;
    Object.assign(entry, { test: test.fullName, testSince: new Date().toISOString() });
    this.writeRunning();
  }

  onTestModuleEnd(module) {
    const entry = this.running.get(this.key(module));
    this.running.delete(this.key(module));
    this.writeRunning();
    const seconds = entry ? (Date.now() - Date.parse(entry.since)) / 1000 : NaN;
    appendFileSync(`${this.base}.durations.tsv`, `${seconds.toFixed(1)}\t${module.project.name}\t${relative(process.cwd(), module.moduleId)}\n`);
  }

  onTestRunEnd(testModules, unhandledErrors, reason) {
    const failures = testModules.flatMap(failuresOf);
    for (const e of unhandledErrors) failures.push({ project: '', file: '', test: '(unhandled error)', ...describeError(e) });
    writeFileSync(this.file, JSON.stringify({ reason, modules: testModules.length, failures }, null, 1));
  }
}
