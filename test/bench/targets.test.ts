// The bench's targets and verdicts: judged from fixed runs against what they must give, every
// target of issue 18 present whatever ran, and the targets table the same as the JSON's entries.
// No timings are checked: the figures are made up here.
import { describe, expect, it } from 'vitest';
import { formatTargets, targetCells, TARGETS_HEADER } from '../../bench/output/targets';
import { formatDatasetTable, judgeDatasets, type DatasetRun } from '../../bench/sections/datasets';
import { formatMicro } from '../../bench/sections/micro';
import { CPU_TARGET, judgeMain, judgeMicro, MICRO_TARGETS, THROUGHPUT_TARGETS, type Absent } from '../../bench/sections/targets';
import { toResult, workloadLabel, type RunResult, type Tool } from '../../bench/support/records';
import { atLeast, atMost, judge, targetText, verdictText } from '../../bench/support/targets';
import { KiB, MiB } from '../../bench/support/units';
import { workloads } from '../../bench/sections/matrix';

const where = { section: 's', row: 'r', measure: 'm' };

describe('judge', () => {
  it('at least / at most: met on the bound, not met past it, not measured without a figure', () => {
    expect(judge(where, atLeast(0.95, 'x fio'), 0.95, 3).verdict).toBe('met');
    expect(judge(where, atLeast(0.95, 'x fio'), 0.9499, 3).verdict).toBe('not met');
    expect(judge(where, atMost(12, 'us mean', 1), 12, 1).verdict).toBe('met');
    expect(judge(where, atMost(12, 'us mean', 1), 12.01, 1).verdict).toBe('not met');
    const none = judge(where, atLeast(1, 'x node:fs'), undefined, 0, 'not in --quick');
    expect(none).toMatchObject({ verdict: 'not measured', value: null, runs: 0, note: 'not in --quick' });
    expect(judge(where, atLeast(1, 'x fio'), Number.NaN, 1).verdict).toBe('not measured');
  });

  it('says when the median has fewer runs than the target asks', () => {
    const j = judge(where, atLeast(0.8, 'x fio'), 0.9, 1);
    expect(j).toMatchObject({ verdict: 'met', runs: 1, runsWanted: 3 });
    expect(verdictText(j)).toBe('met (1 of 3 runs)');
    expect(verdictText(judge(where, atLeast(0.8, 'x fio'), 0.9, 3))).toBe('met');
  });

  it('writes the target as the issue does', () => {
    expect(targetText(atLeast(0.95, 'x fio'))).toBe('>= 0.95x fio');
    expect(targetText(atMost(5, 'us mean'))).toBe('<= 5 us mean');
    expect(targetText(CPU_TARGET)).toBe("<= 1.5x fio's");
    expect(targetText(atLeast(1, 'x node:fs'))).toBe('>= 1.0x node:fs');
  });
});

/** A run of `gbps` GB/s with `cpu` CPU s/GB, 1 s long. */
function run(workload: string, blockSize: number, queueDepth: number, tool: Tool, gbps: number, cpu: number, repeat: number): RunResult {
  const w = workloads(false).find((x) => x.name === workload && x.blockSize === blockSize && x.queueDepth === queueDepth)!;
  const bytes = Math.round((gbps * 1e9) / blockSize) * blockSize;
  const r = toResult(w, tool, { seconds: 1, bytes, ops: bytes / blockSize, p50us: 1, p99us: 2, cpuSeconds: (cpu * bytes) / 1e9 }, '', w.direct);
  return { ...r, repeat };
}

const absent = (planned: string[], over: Partial<Absent> = {}): Absent => ({ planned: new Set(planned), noFio: undefined, quick: false, failed: new Map(), ...over });

describe('judgeMain', () => {
  it('judges the median of the per-repetition ratios, throughput and CPU', () => {
    // Ours over fio per repetition: 0.90, 1.00, 0.94 -> median 0.94 (below 0.95).
    const runs = [1.8, 2.0, 1.88].flatMap((ours, i) => [run('rand-read', 64 * KiB, 8, '3fs-client', ours, 0.3, i + 1), run('rand-read', 64 * KiB, 8, 'fio', 2.0, 0.2, i + 1)]);
    const judged = judgeMain(runs, absent(['rand-read 64KiB qd8']));
    const gbps = judged.find((j) => j.row === 'rand-read 64KiB qd8' && j.measure === 'GB/s vs fio')!;
    expect(gbps).toMatchObject({ verdict: 'not met', runs: 3, target: '>= 0.95x fio' });
    expect(gbps.value).toBeCloseTo(0.94, 3);
    const cpu = judged.find((j) => j.row === 'rand-read 64KiB qd8' && j.measure === 'CPU s/GB vs fio')!;
    expect(cpu).toMatchObject({ verdict: 'met', runs: 3 });
    expect(cpu.value).toBeCloseTo(1.5, 2);
  });

  it('lists every target whatever ran, with why it was not measured', () => {
    const runs = [run('seq-read', 4 * MiB, 8, '3fs-client', 3, 0.1, 1)];
    const judged = judgeMain(runs, absent(['seq-read 4MiB qd8'], { noFio: 'fio is not installed', quick: true }));
    const direct = workloads(false).filter((w) => w.direct);
    expect(judged).toHaveLength(THROUGHPUT_TARGETS.length + direct.length);
    for (const w of direct) expect(judged.some((j) => j.row === workloadLabel(w) && j.measure.startsWith('CPU'))).toBe(true);
    expect(judged.every((j) => j.verdict === 'not measured')).toBe(true);
    expect(judged.find((j) => j.row === 'seq-read 4MiB qd8')!.note).toBe('fio is not installed');
    expect(judged.find((j) => j.row === 'rand-read 1MiB qd64')!.note).toBe('not in --quick');
    const failed = judgeMain(runs, absent(['seq-read 4MiB qd8'], { failed: new Map([['seq-read 4MiB qd8', 'fio failed: boom']]) }));
    expect(failed.find((j) => j.row === 'seq-read 4MiB qd8')!.note).toBe('fio failed: boom');
  });

  it('the cached-read target is against fio (psync, 4 jobs) and has no CPU target', () => {
    const judged = judgeMain([], absent([]));
    expect(judged.filter((j) => j.row === 'cached-read 1MiB qd4').map((j) => j.target)).toEqual(['>= 0.9x fio']);
  });
});

describe('judgeMicro and judgeDatasets', () => {
  it('micro: the tasks by name, tinybench mean, one run', () => {
    const micro = MICRO_TARGETS.map(({ task }, i) => ({ task, n: 1, samples: 100, meanUs: i === 0 ? 11 : 6, p50Us: 1, p99Us: 2, perItemUs: 1 }));
    expect(judgeMicro(micro, '').map((j) => [j.row, j.verdict])).toEqual([
      ['batchRead 1 x 4KiB (page cache)', 'met'],
      ['alloc + free 4KiB', 'not met'],
    ]);
    expect(judgeMicro(undefined, 'skipped (--no-micro)').map((j) => j.note)).toEqual(['skipped (--no-micro)', 'skipped (--no-micro)']);
  });

  it('safetensors: the median of per-repetition ratios against node:fs', () => {
    const st = (reader: DatasetRun['reader'], gbps: number, repeat: number): DatasetRun => ({
      what: 'safetensors', reader, direct: false, sampleBytes: 4 * MiB, batch: 16, verify: false, seconds: 1, samples: 1, bytes: 1, samplesPerSec: 1, gbps, p50ms: 1, p99ms: 1, cpuSecPerGB: 1, repeat,
    });
    const runs = [st('3fs-client', 9, 1), st('node:fs', 10, 1), st('3fs-client', 12, 2), st('node:fs', 10, 2), st('3fs-client', 11, 3), st('node:fs', 10, 3)];
    expect(judgeDatasets(runs)[0]).toMatchObject({ row: 'safetensors load, warm', value: 1.1, runs: 3, verdict: 'met' });
    expect(judgeDatasets([], 'skipped (--no-datasets)')[0]).toMatchObject({ verdict: 'not measured', note: 'skipped (--no-datasets)' });
  });
});

describe('the sections show their verdicts on their rows', () => {
  it('micro: the rows with a target show it and the JSON verdict, the others nothing', () => {
    const micro = ['batchRead 1 x 4KiB (page cache)', 'batchRead 16 x 4KiB (page cache)', 'alloc + free 4KiB'].map((task) => ({ task, n: 1, samples: 10, meanUs: 8, p50Us: 1, p99Us: 2, perItemUs: 8 }));
    const judged = judgeMicro(micro, '');
    const rows = formatMicro(micro, judged).split('\n').slice(2, -1).map((l) => l.slice(2, -2).split(' | ').map((c) => c.trim()));
    expect(rows.map((r) => [r[0], r[6], r[7]])).toEqual([
      ['batchRead 1 x 4KiB (page cache)', '<= 12 us mean', 'met'],
      ['batchRead 16 x 4KiB (page cache)', '', ''],
      ['alloc + free 4KiB', '<= 5 us mean', 'not met'],
    ]);
  });

  it('datasets: the safetensors row is the median of its runs and shows the verdict', () => {
    const st = (reader: DatasetRun['reader'], gbps: number, repeat: number): DatasetRun => ({
      what: 'safetensors', reader, direct: false, sampleBytes: 4 * MiB, batch: 16, verify: false, seconds: 1, samples: 1, bytes: 1, samplesPerSec: 1, gbps, p50ms: 1, p99ms: 1, cpuSecPerGB: 1, repeat,
    });
    const runs = [st('3fs-client', 8, 1), st('node:fs', 10, 1), st('3fs-client', 9, 2), st('node:fs', 10, 2), st('3fs-client', 7, 3), st('node:fs', 10, 3)];
    const doc = { settings: { size: 1, durationMs: 1, quick: false, cacheState: 'warm', inFlight: 2 }, runs, targets: judgeDatasets(runs) };
    const lines = formatDatasetTable(doc).split('\n').filter((l) => l.startsWith('safetensors'));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/3fs-client .* 8\.000 +0\.80x .*>= 1\.0x node:fs +not met +buffered, warm cache; median of 3$/);
    expect(lines[1]).toMatch(/node:fs .* 10\.000 .*median of 3$/);
  });
});

describe('the targets table', () => {
  it('has one line per entry, its cells the entry fields', () => {
    const judged = [...judgeMain([], absent([])), ...judgeMicro(undefined, 'skipped')];
    const text = formatTargets(judged);
    expect(text.split('\n')[0]).toBe(`Targets: 0 met, 0 not met, ${judged.length} not measured`);
    const lines = text.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| section'));
    expect(lines).toHaveLength(judged.length);
    lines.forEach((line, i) => {
      const cells = line.slice(2, -2).split(' | ').map((c) => c.trim());
      expect(cells).toHaveLength(TARGETS_HEADER.length);
      expect(cells).toEqual(targetCells(judged[i]));
    });
  });
});
