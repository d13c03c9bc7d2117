// The HTTP section of the bench (bench/sections/http.ts) on a small file: both servers serve every
// byte of every request (the section checks the count), and the table has one row per server;
// `bench --http` runs it from the CLI. No timings are checked here; they belong to the bench.
import { afterAll, expect, it } from 'vitest';
import { formatHttpTable, runHttpBench } from '../../bench/index';
import { main } from '../../cli/main';
import { makeTmpDir, MiB } from '../helpers';

const tmp = makeTmpDir('bench-http');
afterAll(() => tmp.cleanup());

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

it('bench --http: the table on stdout, what it ran on stderr; options of other benches refused', async () => {
  const run = async (args: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await main(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  };
  const ok = await run(['bench', '--http', '--quick', '--size', '4MiB', '--dir', tmp.dir]);
  expect(ok.code).toBe(0);
  expect(ok.stdout.split('\n').filter((l) => /^\| (3fs-client|fs\.)/.test(l))).toHaveLength(2);
  expect(ok.stderr).toContain('4MiB file, 4 GETs 4 at a time over loopback, 1 run of each server');
  expect(await run(['bench', '--http', '--json', 'x.json'])).toMatchObject({ code: 2, stderr: expect.stringContaining('bench --http does not take --json') });
  expect(await run(['bench', '--http', '--kvcache'])).toMatchObject({ code: 2, stderr: expect.stringContaining('separate benches') });
  expect(await run(['bench', '--http', '--no-streams'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--no-streams goes with the main bench, not --http') });
});
