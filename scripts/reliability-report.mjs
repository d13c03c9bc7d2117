#!/usr/bin/env node
// Writes RELIABILITY.md's results table from build-test/reliability/*.json (written by the
// reliability tests, test/reliability/record.ts, and by scripts/test-sanitized.sh):
//   npm test && npm run test:asan && npm run reliability:report
// Only the part between the RESULTS markers changes; the rest of RELIABILITY.md is prose.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'build-test', 'reliability');
const doc = join(root, 'RELIABILITY.md');
const BEGIN = '<!-- RESULTS BEGIN (scripts/reliability-report.mjs) -->';
const END = '<!-- RESULTS END -->';

const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : [];
const results = files.map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
const tests = results.filter((r) => r.id).sort((a, b) => a.id.localeCompare(b.id) || a.engine.localeCompare(b.engine) || a.sanitizer.localeCompare(b.sanitizer));
const suites = results.filter((r) => r.kind);

const lines = [BEGIN, ''];
lines.push('| test | engine | build | ops | faults | crashes | leaks | when (UTC) | notes |', '|---|---|---|---:|---:|---:|---:|---|---|');
for (const r of tests) {
  lines.push(`| ${r.id} | ${r.engine} | ${r.sanitizer === 'none' ? 'release' : r.sanitizer} | ${r.operations.toLocaleString('en')} | ${r.faults.toLocaleString('en')} | ${r.crashes} | ${r.leaks} | ${r.at.slice(0, 16).replace('T', ' ')} | ${String(r.note ?? '').replace(/\|/g, '\\|')} |`);
}
const total = (k) => tests.reduce((n, r) => n + r[k], 0);
lines.push('', `Totals: ${total('operations').toLocaleString('en')} operations, ${total('faults').toLocaleString('en')} faults injected, ${total('crashes')} crashes, ${total('leaks')} leaks over ${tests.length} results.`);
if (suites.length) {
  lines.push('', '| sanitizer run | exit | duration | arguments | when (UTC) |', '|---|---:|---:|---|---|');
  for (const s of suites) lines.push(`| ${s.kind} | ${s.exitCode} | ${Math.floor(s.seconds / 60)} min ${s.seconds % 60} s | ${s.args || '(whole suite)'} | ${s.at.slice(0, 16).replace('T', ' ')} |`);
}
lines.push('', END);

const text = readFileSync(doc, 'utf8');
const from = text.indexOf(BEGIN);
const to = text.indexOf(END);
if (from < 0 || to < 0) throw new Error(`${doc}: the RESULTS markers are missing`);
writeFileSync(doc, text.slice(0, from) + lines.join('\n') + text.slice(to + END.length));
console.log(`RELIABILITY.md: ${tests.length} results, ${suites.length} sanitizer runs`);
