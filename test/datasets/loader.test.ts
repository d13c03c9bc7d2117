// The batch loader (lib/datasets/loader.ts): order, shares and resumption checked against a plain model
// (every sample of an epoch exactly once over the ranks; the same seed, the same order), prefetch
// depth observed on an instrumented dataset, and a real ffrecord dataset read through it. Runs on
// both engines.
import { describe, expect, it } from 'vitest';
import type { Client } from '../../lib/index';
import { createDatasetWriter, openDataset } from '../../lib/datasets/ffrecord';
import { createLoader, epochOrder, type LoaderOptions, type LoaderStep } from '../../lib/datasets/loader';
import { failure, makeTmpDir, Rng, seedFor, settledWithin, sleep, withTestClient } from '../helpers';

/** An in-memory dataset that records its reads: sample i is the number i. */
class FakeDataset {
  inFlight = 0;
  maxInFlight = 0;
  reads: number[][] = [];
  released = 0;
  failAt: number | undefined;
  constructor(readonly length: number, readonly delayMs = 0) {}
  async read(indices: number[]) {
    this.reads.push(indices);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await sleep(this.delayMs);
      if (this.failAt !== undefined && indices.includes(this.failAt)) throw new Error(`sample ${this.failAt} failed`);
      return { samples: indices.slice(), release: () => void this.released++ };
    } finally {
      this.inFlight--;
    }
  }
}

async function collect<B extends { release(): void }>(it: AsyncIterable<LoaderStep<B>>): Promise<LoaderStep<B>[]> {
  const out: LoaderStep<B>[] = [];
  for await (const s of it) out.push(s);
  return out;
}

const run = (n: number, o: LoaderOptions) => collect(createLoader(new FakeDataset(n), o));

describe('order', () => {
  it('the same seed gives the same order; another seed or epoch another one; every epoch a permutation', async () => {
    const a = (await run(1000, { batchSize: 64, seed: 7, epochs: 3 })).map((s) => s.indices);
    const b = (await run(1000, { batchSize: 64, seed: 7, epochs: 3 })).map((s) => s.indices);
    const c = (await run(1000, { batchSize: 64, seed: 8, epochs: 3 })).map((s) => s.indices);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    const perEpoch = Math.ceil(1000 / 64);
    const epochs = [0, 1, 2].map((e) => a.slice(e * perEpoch, (e + 1) * perEpoch).flat());
    for (const e of epochs) expect([...e].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(epochs[0]).not.toEqual(epochs[1]);
    expect(epochs[0]).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('shuffle: false is dataset order; batch sizes and drop-last', async () => {
    const steps = await run(10, { batchSize: 4, shuffle: false });
    expect(steps.map((s) => s.indices)).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect((await run(10, { batchSize: 4, shuffle: false, dropLast: true })).map((s) => s.indices)).toEqual([[0, 1, 2, 3], [4, 5, 6, 7]]);
    expect(await run(3, { batchSize: 4, dropLast: true })).toEqual([]);
    expect(await run(0, { batchSize: 4 })).toEqual([]);
    expect(await run(10, { batchSize: 4, epochs: 0 })).toEqual([]);
  });

  it('the shuffle is uniform enough: each sample lands in the first half about half of the time', () => {
    const n = 64;
    const firstHalf = new Array(n).fill(0);
    const epochs = 2000;
    for (let e = 0; e < epochs; e++) {
      const order = epochOrder(n, e, 1);
      for (let p = 0; p < n / 2; p++) firstHalf[order[p]]++;
    }
    for (const count of firstHalf) expect(Math.abs(count / epochs - 0.5)).toBeLessThan(0.06);
  });
});

describe('ranks', () => {
  for (const [n, world, dropLast] of [[1003, 4, false], [1003, 4, true], [5, 8, false], [64, 3, false]] as const) {
    it(`${n} samples over ${world} ranks${dropLast ? ', drop-last' : ''}: disjoint, complete, the same order on every rank`, async () => {
      for (let epoch = 0; epoch < 2; epoch++) {
        const shares = await Promise.all(
          Array.from({ length: world }, (_, rank) => run(n, { batchSize: 16, seed: 3, epochs: 2, rank, worldSize: world, dropLast })),
        );
        const ofEpoch = shares.map((s) => s.filter((x) => x.epoch === epoch).flatMap((x) => x.indices));
        const all = ofEpoch.flat();
        expect(new Set(all).size, 'disjoint').toBe(all.length);
        if (dropLast) {
          for (const share of ofEpoch) expect(share.length).toBe(Math.floor(Math.floor(n / world) / 16) * 16);
          expect(new Set(shares.map((s) => s.length)).size, 'same step count on every rank').toBe(1);
        } else {
          expect([...all].sort((x, y) => x - y), 'complete').toEqual(Array.from({ length: n }, (_, i) => i));
        }
        // The ranks share one epoch order: rank r has its positions r, r + world, ...
        const order = epochOrder(n, epoch, 3);
        ofEpoch.forEach((share, rank) => share.forEach((idx, k) => expect(idx).toBe(order[k * world + rank])));
      }
    });
  }
});

describe('resume', () => {
  it('startStep yields exactly the rest of a full run, across epochs, without reading the steps skipped', async () => {
    const o: LoaderOptions = { batchSize: 10, seed: 11, epochs: 3, rank: 1, worldSize: 2 };
    const full = await run(95, o);
    for (const start of [0, 1, 4, 5, 7, full.length - 1, full.length]) {
      const ds = new FakeDataset(95);
      const rest = await collect(createLoader(ds, { ...o, startStep: start }));
      expect(rest.map((s) => [s.step, s.epoch, s.indices])).toEqual(full.slice(start).map((s) => [s.step, s.epoch, s.indices]));
      expect(ds.reads.length).toBe(full.length - start);
    }
    const loader = createLoader(new FakeDataset(95), o);
    expect(loader.indicesOf(6)).toEqual(full[6].indices);
    // Past the last step (or any step of a loader with none): a typed error, not indices of an epoch that never runs.
    expect(() => loader.indicesOf(full.length)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => createLoader(new FakeDataset(3), { batchSize: 10, dropLast: true }).indicesOf(0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('an endless loader keeps going; steps count over epochs', async () => {
    const seen: LoaderStep<{ release(): void }>[] = [];
    for await (const s of createLoader(new FakeDataset(10), { batchSize: 3, epochs: Infinity })) {
      seen.push(s);
      if (seen.length === 9) break;
    }
    expect(seen.map((s) => [s.epoch, s.stepInEpoch, s.step])).toEqual([0, 1, 2].flatMap((e) => [0, 1, 2, 3].map((k) => [e, k, e * 4 + k])).slice(0, 9));
  });
});

describe('prefetch and release', () => {
  it('the next batches are read while the current one is used, never more than the depth ahead', async () => {
    for (const prefetch of [0, 1, 3]) {
      const ds = new FakeDataset(200, 5);
      const steps = 20;
      for await (const s of createLoader(ds, { batchSize: 10, prefetch })) {
        // When step k is handed over, the reads of the `prefetch` steps after it have been issued.
        expect(ds.reads.length, `prefetch ${prefetch}, step ${s.step}`).toBe(Math.min(steps, s.step + 1 + prefetch));
        await sleep(1);
      }
      // While the loop waits for a batch, that one and the `prefetch` after it are in flight.
      expect(ds.maxInFlight, `prefetch ${prefetch}`).toBe(prefetch + 1);
      expect(ds.released, 'every batch released').toBe(ds.reads.length);
    }
  });

  it('a break releases the batch in use and every one read ahead', async () => {
    const ds = new FakeDataset(100, 2);
    for await (const s of createLoader(ds, { batchSize: 5, prefetch: 4 })) if (s.step === 2) break;
    await settledWithin(
      (async () => {
        while (ds.released < ds.reads.length) await sleep(2);
      })(),
      2000,
      'releases',
    );
    expect(ds.released).toBe(ds.reads.length);
  });

  it('a failed read surfaces at its step; the batches before it were yielded', async () => {
    const ds = new FakeDataset(50);
    ds.failAt = 33;
    const order = createLoader(ds, { batchSize: 5, shuffle: false, prefetch: 2 });
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const s of order) got.push(s.step);
      })(),
    ).rejects.toThrow('sample 33 failed');
    expect(got).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('bad options are refused with typed errors', async () => {
    const ds = new FakeDataset(10);
    for (const bad of [{ batchSize: 0 }, { batchSize: 1.5 }, { batchSize: 2, rank: 2, worldSize: 2 }, { batchSize: 2, prefetch: -1 }, { batchSize: 2, epochs: -1 }, { batchSize: 2, startStep: NaN }]) {
      expect((await failure(() => createLoader(ds, bad as LoaderOptions))).code, JSON.stringify(bad)).toBe('ERR_OUT_OF_RANGE');
    }
    expect((await failure(() => createLoader({} as never, { batchSize: 1 }))).code).toBe('ERR_INVALID_ARG_TYPE');
  });
});

describe('over an ffrecord dataset', () => {
  const tmp = makeTmpDir('loader');
  let client: Client;
  withTestClient((c) => (client = c), tmp);

  it('two ranks, two epochs: every sample once per epoch with its own bytes', async () => {
    const rng = new Rng(seedFor('loader-ffrecord'));
    const samples = Array.from({ length: 157 }, () => rng.bytes(rng.int(0, 6000)));
    const path = tmp.path('train.ffr');
    const w = await createDatasetWriter(path, { client, count: samples.length });
    await w.writeMany(samples);
    await w.close();
    await using ds = await openDataset(path, { client });
    const seen = [new Map<number, number>(), new Map<number, number>()];
    for (const rank of [0, 1]) {
      for await (const { batch, indices, epoch } of createLoader(ds, { batchSize: 16, epochs: 2, rank, worldSize: 2, seed: 5 })) {
        batch.samples.forEach((s, k) => {
          expect(s.equals(samples[indices[k]])).toBe(true);
          seen[epoch].set(indices[k], (seen[epoch].get(indices[k]) ?? 0) + 1);
        });
      }
    }
    for (const m of seen) expect([...m.entries()].sort((a, b) => a[0] - b[0])).toEqual(samples.map((_, i) => [i, 1]));
  });
});
