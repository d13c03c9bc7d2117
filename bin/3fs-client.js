#!/usr/bin/env node
'use strict';
// The `3fs-client` command. The logic lives in cli/main.ts, compiled to dist/cli/main.js.
let cli;
try {
  cli = require('../dist/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('main.js')) {
    process.stderr.write('3fs-client: dist/ is missing; build it with `npm run build` (or `npx tsc -p tsconfig.json`)\n');
    process.exit(1);
  }
  throw e;
}
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`3fs-client: ${e && e.message ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
