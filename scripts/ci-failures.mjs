// A vitest reporter for CI (.ci/run): writes the run's failures, with the project of each, to the
// JSON file named by THREEFS_TEST_FAILURES, for scripts/ci-summary.mjs to list at the end of the
// log. vitest's own JSON reporter leaves out the project, and every engine suite runs in three.
import { mkdirSync, writeFileSync } from 'node:fs';
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

export default class CiFailures {
  onTestRunEnd(testModules, unhandledErrors, reason) {
    const failures = [];
    for (const module of testModules) {
      const where = { project: module.project.name, file: relative(process.cwd(), module.moduleId) };
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
    }
    for (const e of unhandledErrors) failures.push({ project: '', file: '', test: '(unhandled error)', ...describeError(e) });
    const file = process.env.THREEFS_TEST_FAILURES;
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify({ reason, modules: testModules.length, failures }, null, 1));
  }
}
