// The streams section (bench/sections/streams.ts) on a small file: every reader reads every byte,
// the readers alternate, the targets are judged against the device ceiling it is given, and the
// table shows the same medians, targets and verdicts as the document. No timings are checked.
import { readdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { deviceRead, formatStreamsTable, judgeStreams, runStreamsBench, STREAM_READERS, type StreamRun } from '../../bench/sections/streams';
import type { RunResult } from '../../bench/support/records';
import { median } from '../../bench/support/stats';
import { verdictText } from '../../bench/support/targets';
import { makeTmpDir, MiB } from '../helpers';

const tmp = makeTmpDir('bench-streams');
afterAll(() => tmp.cleanup());

describe('streams section', () => {
  it('reads the whole file with each reader, alternating, and judges ours against the device ceiling', async () => {
    const ceilings = [{ what: 'device read', gbps: 2, how: 'test' }];
    const doc = await runStreamsBench({ dir: tmp.dir, size: 8 * MiB, repeat: 2, ceilings, err: () => undefined });
    expect(doc.runs.map((r) => [r.reader, r.repeat])).toEqual([1, 2].flatMap((rep) => STREAM_READERS.map((reader) => [reader, rep])));
    for (const r of doc.runs) expect(r.bytes).toBe(8 * MiB);
    expect(doc.targets.map((j) => j.row)).toEqual(['3fs-client createReadStream', '3fs-client readFile']);
    for (const j of doc.targets) {
      const mine = doc.runs.filter((r) => r.reader === j.row).map((r) => r.gbps);
      expect(j.value).toBeCloseTo(median(mine) / 2, 3);
      expect(j).toMatchObject({ section: 'streams', runs: 2, runsWanted: 3, target: '>= 0.9x device read' });
    }
    const rows = formatStreamsTable(doc, ceilings).split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| reader'));
    expect(rows).toHaveLength(STREAM_READERS.length);
    for (const [i, line] of rows.entries()) {
      const cells = line.slice(2, -2).split(' | ').map((c) => c.trim());
      expect(cells[0]).toBe(STREAM_READERS[i]);
      expect(Number(cells[1])).toBeCloseTo(median(doc.runs.filter((r) => r.reader === STREAM_READERS[i]).map((r) => r.gbps)), 2);
      const judged = doc.targets.find((j) => j.row === cells[0]);
      expect(cells[6]).toBe(judged ? verdictText(judged) : '');
    }
    expect(readdirSync(tmp.dir)).toEqual([]);
  });

  it("judges against the best sequential O_DIRECT read of the run: the device line or a tool's seq-read median", async () => {
    const row = (tool: string, gbps: number, repeat: number, more: Partial<RunResult> = {}) =>
      ({ workload: 'seq-read', tool, direct: true, gbps, repeat, ...more }) as RunResult;
    const line = [{ what: 'device read', gbps: 2, how: 'fio device line' }];
    const mainRuns = [row('fio', 3, 1), row('fio', 3.2, 2), row('fio', 9, 3), row('3fs-client', 2.5, 1), row('node:fs', 20, 1, { direct: false }), row('fio', 30, 1, { workload: 'rand-read' })];
    const device = deviceRead(line, mainRuns)!;
    expect(device.gbps).toBe(3.2); // fio's median; buffered and random rows do not count
    expect(device.how).toMatch(/^fio seq-read .*fio device line 2\.00 GB\/s/);
    expect(deviceRead(line, [row('fio', 1, 1)])!.gbps).toBe(2);
    expect(deviceRead(undefined, [])).toBeUndefined();
    const doc = await runStreamsBench({ dir: tmp.dir, size: MiB, repeat: 1, ceilings: line, mainRuns, err: () => undefined });
    expect(doc.device).toEqual(device);
    for (const j of doc.targets) expect(j.value).toBeCloseTo(median(doc.runs.filter((r) => r.reader === j.row).map((r) => r.gbps)) / 3.2, 3);
    expect(formatStreamsTable(doc)).toContain(`device read: 3.20 GB/s, ${device.how}`);
  });

  it('says why a target is not measured', () => {
    const run: StreamRun = { reader: '3fs-client readFile', bytes: 1, seconds: 1, gbps: 1, cpuSecPerGB: 0, repeat: 1 };
    expect(judgeStreams([run], undefined).map((j) => [j.verdict, j.note])).toEqual([
      ['not measured', 'no run'],
      ['not measured', 'no device ceiling (fio is not installed)'],
    ]);
    expect(judgeStreams([], [], 'skipped (--no-streams)').every((j) => j.note === 'skipped (--no-streams)')).toBe(true);
  });
});
