// The client's distributions (native/engines/op_histogram.h, lib/core/metrics.ts): the bucket layout against
// exact arithmetic, the summaries against sorted samples, and on each engine the counts, bytes,
// latencies and errors against what the test itself did and timed.
import { afterAll, describe, expect, it } from 'vitest';
import { bucketBounds, bucketOf, HISTOGRAM_BUCKETS, prometheusText, summarizeBuckets } from '../../lib/core/metrics';
import type { OpResult } from '../../lib/index';
import { KiB, makeTmpDir, Rng, seedFor, testConnect } from '../helpers';

const tmp = makeTmpDir('metrics');
afterAll(() => tmp.cleanup());

describe('histogram layout', () => {
  it('buckets tile [0, 2^64) in order, each at most 1/8 of its lower bound wide', () => {
    let next = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      const [lo, hi] = bucketBounds(i);
      expect(lo).toBe(next);
      expect(hi).toBeGreaterThan(lo);
      if (lo >= 8) expect(hi - lo).toBeLessThanOrEqual(lo / 8);
      next = hi;
    }
    expect(next).toBe(2 ** 64);
  });

  it('bucketOf puts a value in the bucket whose bounds hold it, at the edges too', () => {
    const rng = new Rng(seedFor('buckets'));
    const values = [0, 1, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025, 2 ** 40 - 1, 2 ** 40, 2 ** 52 + 2 ** 49];
    for (let i = 0; i < 2000; i++) values.push(Math.floor(2 ** (rng.next() * 50)));
    for (const v of values) {
      const [lo, hi] = bucketBounds(bucketOf(v));
      expect(lo <= v && v < hi, `value ${v} in [${lo}, ${hi})`).toBe(true);
    }
  });

  it('summaries agree with the sorted samples: exact count and mean, the rest within a bucket', () => {
    const rng = new Rng(seedFor('summary'));
    const samples = Array.from({ length: 5000 }, () => Math.floor(1000 + rng.next() ** 3 * 1e7));
    const counts = new Float64Array(HISTOGRAM_BUCKETS);
    for (const v of samples) counts[bucketOf(v)]++;
    const sum = samples.reduce((a, b) => a + b, 0);
    const s = summarizeBuckets(counts, sum);
    const sorted = [...samples].sort((a, b) => a - b);
    const rank = (p: number) => sorted[Math.ceil(p * sorted.length) - 1];
    expect(s.count).toBe(samples.length);
    expect(s.mean).toBeCloseTo(sum / samples.length, 6);
    const near = (got: number, want: number) => expect(Math.abs(got - want) / want).toBeLessThanOrEqual(1 / 8);
    near(s.min, sorted[0]);
    near(s.max, sorted[sorted.length - 1]);
    for (const [p, got] of [[0.5, s.p50], [0.9, s.p90], [0.95, s.p95], [0.99, s.p99]] as const) near(got, rank(p));
    // Small values have buckets of their own: exact.
    const small = new Float64Array(HISTOGRAM_BUCKETS);
    small[3] = 2;
    small[5] = 1;
    expect(summarizeBuckets(small, 11)).toMatchObject({ count: 3, min: 3, max: 5, p50: 3, p99: 5 });
  });
});

describe('client metrics', () => {
  it('an interval counts exactly the ops and bytes done in it, with latencies no longer than JS saw', async () => {
    const client = testConnect();
    const f = await client.open(tmp.path('m'), 'w+', 0o644);
    const L = 64 * KiB;
    const buf = client.alloc(L);
    try {
      for (let i = 0; i < 8; i++) await f.write(buf, i * L);
      const sampler = client.metricsSampler();
      const N = 40;
      let jsNs = 0;
      let jsMaxNs = 0;
      for (let i = 0; i < N; i++) {
        const t0 = process.hrtime.bigint();
        await f.batchRead([{ buffer: buf, fileOffset: (i % 8) * L }]);
        const ns = Number(process.hrtime.bigint() - t0);
        jsNs += ns;
        jsMaxNs = Math.max(jsMaxNs, ns);
      }
      const s = sampler.sample();
      expect(s.counters.readOps).toBe(N);
      expect(s.counters.readBytes).toBe(N * L);
      expect(s.counters.writeOps).toBe(0);
      const latency = s.distributions.find((d) => d.name === 'storage_client.overall_latency' && d.op === 'read')!;
      const bw = s.distributions.find((d) => d.name === 'storage_client.request_bw' && d.op === 'read')!;
      expect(latency.count).toBe(N);
      expect(bw.count).toBe(N);
      expect(latency.min).toBeGreaterThan(0);
      // The engine's clock starts after the JS call began and stops before JS sees the result.
      expect(latency.sum).toBeLessThanOrEqual(jsNs);
      expect(latency.min).toBeLessThanOrEqual(latency.p50);
      expect(latency.p99).toBeLessThanOrEqual(latency.max);
      expect(latency.max).toBeLessThanOrEqual(jsMaxNs * (9 / 8));
      // Each op's bandwidth is its bytes over its latency: the mean of L/t is at least L / mean(t).
      expect(bw.mean).toBeGreaterThanOrEqual((L * 1e9) / latency.mean * (7 / 8));
      expect(s.distributions.find((d) => d.name === 'storage_client.overall_latency' && d.op === 'write')!.count).toBe(0);
      // The next interval starts empty.
      expect(sampler.sample().distributions.every((d) => d.count === 0)).toBe(true);
      // Over the client's life: the writes too.
      const life = client.metrics();
      expect(life.distributions.find((d) => d.name === 'storage_client.overall_latency' && d.op === 'write')!.count).toBe(8);
      expect(life.errorsByCode).toEqual({});
    } finally {
      buf.free();
      await f.close();
      await client.close();
    }
  });

  it('failed ops are counted by code, as many as the results said', async () => {
    // How many queued writes a close cancels is up to the machine: a JS thread stalled by load
    // (30 ms once, and once under ASan on a loaded machine, the whole time) lets the engine write
    // all 50 MiB first. Each attempt checks the counts exactly; attempts go on until one canceled some.
    const rng = new Rng(seedFor('metrics-errors'));
    const data = rng.bytes(128 * KiB);
    for (let attempt = 1; (await closeWithWritesQueued(data, attempt)) === 0; attempt++) {
      expect(attempt, 'attempts in which closing the client canceled no queued write').toBeLessThan(20);
    }
  });

  it('the Prometheus text is well formed and carries the same figures', async () => {
    const client = testConnect();
    const f = await client.open(tmp.path('p'), 'w+', 0o644);
    const buf = client.alloc(4 * KiB);
    try {
      await f.write(buf, 0);
      await f.read(buf, 0);
      const m = client.metrics();
      const text = prometheusText({ ...m, errorsByCode: { EIO: 2 } }, { instance: 'a"b' });
      const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$/;
      for (const line of text.trimEnd().split('\n')) {
        if (line.startsWith('#')) expect(line).toMatch(/^# (TYPE [a-z_]+ (counter|summary)|HELP [a-z_]+ .+)$/);
        else expect(line, line).toMatch(sample);
      }
      expect(text).toContain(`threefs_client_read_bytes_total{instance="a\\"b"} ${m.readBytes}\n`);
      const read = m.distributions.find((d) => d.name === 'storage_client.overall_latency' && d.op === 'read')!;
      expect(text).toContain(`storage_client_overall_latency_seconds_count{instance="a\\"b",op="read"} ${read.count}\n`);
      expect(text).toContain(`storage_client_overall_latency_seconds{instance="a\\"b",op="read",quantile="0.99"} ${read.p99 * 1e-9}\n`);
      expect(text).toContain(`threefs_client_op_errors_total{instance="a\\"b",code="EIO"} 2\n`);
    } finally {
      buf.free();
      await f.close();
      await client.close();
    }
  });
});

/** 50 batches of 8 writes at once, 2 ops in the kernel and the rest queued, then close(): the ECANCELED results, as metrics count them. */
async function closeWithWritesQueued(data: Buffer, attempt: number): Promise<number> {
  const client = testConnect({ queueDepth: 2 });
  const f = await client.open(tmp.path(`e${attempt}`), 'w+', 0o644, { direct: 'never' });
  const L = data.length;
  const batches = Array.from({ length: 50 }, (_, b) => f.batchWrite(Array.from({ length: 8 }, (_, j) => ({ buffer: data, fileOffset: (b * 8 + j) * L }))));
  await client.close();
  const results = (await Promise.all(batches)).flat() as OpResult[];
  const canceled = results.filter((r) => r.error?.code === 'ECANCELED').length;
  expect(results.filter((r) => r.error && r.error.code !== 'ECANCELED')).toEqual([]);
  const m = client.metrics();
  expect(m.errorsByCode).toEqual(canceled > 0 ? { ECANCELED: canceled } : {});
  expect(m.errors).toBe(canceled);
  await f.close().catch(() => undefined);
  return canceled;
}
