// Issue 20 item 3: processes putting different keys into one KVCache at once. Each read a set's
// directory and picked a way; two that picked the same way from the same listing overwrote one
// another, and one acknowledged put was lost without a word (0-3 of 240 with 2 writers, 4-18 of
// 480 with 4). A put now holds its sets' directories locked across processes (an OFD lock) from
// their read until its entries are written.
// Oracles: (1) after the writers exit, every key a writer was told 'stored' is a hit with its
// bytes, except exactly as many as the writers counted as evicted (a put that took a live way it
// saw); (2) bench/tools/kvcache-writers.ts, whose writers keep too few keys to evict any: every
// acknowledged put is checked, from a second handle, before its writer deletes it.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KVCache } from '../../../lib/index';
import { DIST_LIB, makeTmpDir, ROOT, testConnect } from '../../helpers';

const tmp = makeTmpDir('kvcache-writers');
afterAll(() => tmp.cleanup());

const NS = { model: 'writers', dtype: 'bf16' };
const PAGE = 4096;
// Set-heavy: few sets of many ways, so the writers meet in the same sets all the time.
const GEOMETRY = { pageBytes: PAGE, ways: 32, shards: 1 };
const SETS = 16;
const KEYS_PER_WRITER = 120;
const BATCH = 4;

const WRITER = `
const { KVCache } = require(${JSON.stringify(join(DIST_LIB, 'index.js'))});
const [root, writer, capacityBytes] = [process.argv[2], process.argv[3], Number(process.argv[4])];
(async () => {
  const cache = await KVCache.open({ root, namespace: ${JSON.stringify(NS)}, capacityBytes, ...${JSON.stringify(GEOMETRY)} });
  const stored = [];
  const lost = [];
  for (let i = 0; i < ${KEYS_PER_WRITER}; i += ${BATCH}) {
    const keys = [];
    const pages = [];
    for (let k = i; k < i + ${BATCH}; k++) {
      keys.push('w' + writer + '-' + k);
      pages.push(Buffer.alloc(${PAGE}, (Number(writer) * 31 + k) & 255));
    }
    const rs = await cache.put(keys, pages, { verify: true });
    rs.forEach((r, j) => { if (r.status === 'stored') stored.push(keys[j]); else if (r.status === 'lost') lost.push(keys[j]); });
  }
  const { evicted } = cache.stats();
  await cache.close();
  console.log(JSON.stringify({ stored, lost, evicted }));
})();
`;

function runWriter(root: string, writer: number, capacityBytes: number): Promise<{ stored: string[]; lost: string[]; evicted: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(tmp.dir, 'writer.cjs'), root, String(writer), String(capacityBytes)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer ${writer} exited with ${code}: ${err}`))));
  });
}

async function lostAcknowledged(writers: number): Promise<{ acknowledged: number; missing: number; evicted: number; lost: number }> {
  const root = tmp.path(`cache-${writers}`);
  const setBytes = 4096 + GEOMETRY.ways * (4096 + PAGE);
  const capacityBytes = SETS * setBytes;
  // Made first, so the writers race on puts, not on creating the cache.
  const client = testConnect();
  try {
    await (await KVCache.open({ client, root, namespace: NS, capacityBytes, ...GEOMETRY })).close();
    const runs = await Promise.all(Array.from({ length: writers }, (_, w) => runWriter(root, w, capacityBytes)));
    const cache = await KVCache.open({ client, root, namespace: NS, capacityBytes, ...GEOMETRY });
    let missing = 0;
    for (const [w, run] of runs.entries()) {
      const rs = await cache.get(run.stored);
      rs.forEach((r, j) => {
        const k = Number(run.stored[j].split('-')[1]);
        if (r.status !== 'hit') missing++;
        else expect(r.buffer!.every((b) => b === ((w * 31 + k) & 255)), `${run.stored[j]}: its own bytes`).toBe(true);
      });
    }
    // What verify reported lost is gone: another key holds its way.
    for (const run of runs) {
      const rs = await cache.get(run.lost);
      expect(rs.filter((r) => r.status === 'hit').length, 'keys put() reported lost that are hits').toBe(0);
    }
    await cache.close();
    const sum = (f: (r: (typeof runs)[number]) => number) => runs.reduce((a, r) => a + f(r), 0);
    return { acknowledged: sum((r) => r.stored.length), missing, evicted: sum((r) => r.evicted), lost: sum((r) => r.lost.length) };
  } finally {
    await client.close();
  }
}

describe('concurrent writers of one KVCache', () => {
  writeFileSync(join(tmp.dir, 'writer.cjs'), WRITER);
  for (const writers of [2, 4]) {
    it(`${writers} writer processes, set-heavy and evicting: every hit has its own bytes, every miss is an eviction a writer counted`, async () => {
      const r = await lostAcknowledged(writers);
      console.log(`kvcache writers=${writers}: ${JSON.stringify(r)}`);
      expect(r.acknowledged).toBeGreaterThan(0);
      expect(r.lost, 'puts verify found overwritten').toBe(0);
      expect(r.missing, `acknowledged puts missing beyond the evictions (${JSON.stringify(r)})`).toBe(r.evicted);
    });
  }

  // Without the lock these lost 5 of 2,000 (2 writers) and 27 of 2,000 (4). The target, at most 1
  // in 100,000, is measured by the tool on its own (docs/kvcache.md); here none may be lost.
  for (const [writers, putsPerWriter] of [[2, 1000], [4, 500]] as const) {
    it(`${writers} writer processes keeping a window of keys (no evictions): no acknowledged put of ${writers * putsPerWriter} lost`, async () => {
      const tool = require(join(ROOT, 'dist', 'bench', 'tools', 'kvcache-writers.js')) as typeof import('../../../bench/tools/kvcache-writers');
      const r = await tool.measureWriters({ root: tmp.path(`window-${writers}`), writers, putsPerWriter });
      console.log(`kvcache window writers=${writers}: ${JSON.stringify(r)}`);
      expect(r.acknowledged, 'puts stored').toBe(writers * putsPerWriter);
      expect({ evicted: r.evicted, failed: r.failed, wrong: r.wrong }).toEqual({ evicted: 0, failed: 0, wrong: 0 });
      expect(r.lost, `acknowledged puts lost (${JSON.stringify(r)})`).toBe(0);
    });
  }
});
