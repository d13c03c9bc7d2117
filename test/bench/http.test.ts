// The HTTP section of the bench (bench/sections/http.ts) on a small file: both servers serve every
// byte of every request (the section checks the count), and the table has one row per server.
// No timings are checked here; they belong to the bench.
import { expect, it } from 'vitest';
import { formatHttpTable, runHttpBench } from '../../bench/index';
import { MiB } from '../helpers';

it('runs both servers, alternating, and tabulates their medians', async () => {
  const runs = await runHttpBench({ size: 4 * MiB, requests: 3, concurrency: 2, repeat: 2, err: () => {} });
  expect(runs.map((r) => [r.server, r.repeat])).toEqual([
    ['3fs-client createReadStream', 1],
    ['fs.createReadStream', 1],
    ['3fs-client createReadStream', 2],
    ['fs.createReadStream', 2],
  ]);
  for (const r of runs) {
    expect(r.bytes).toBe(3 * 4 * MiB);
    expect(r.gbps).toBeGreaterThan(0);
  }
  const table = formatHttpTable(runs);
  expect(table.split('\n').filter((l) => l.startsWith('| 3fs-client') || l.startsWith('| fs.'))).toHaveLength(2);
  expect(table).toMatch(/\| fs\.createReadStream \| [\d.]+ \| 1\.00x \|/);
});
