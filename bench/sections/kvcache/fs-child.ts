// The node:fs side of the KVCache bench, in a child process of its own (its own libuv pool and CPU
// time): a file per key, written with writeFile and read with readFile, what a user would write
// without this library. It never loads the addon.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runChild } from '../../support/children';
import { benchKey, Payloads, sampled } from './payloads';
import { Phase, type PhaseResult } from './phases';

export interface FsSpec {
  dir: string;
  pageBytes: number;
  pages: number;
  batch: number;
  scope: string;
  salt: number;
  op: 'put' | 'get';
}

export async function runFsChild(spec: FsSpec, uvThreads: number): Promise<PhaseResult> {
  const out = await runChild('the node:fs file-per-key run', process.execPath, [__filename, JSON.stringify(spec)], { ...process.env, UV_THREADPOOL_SIZE: String(uvThreads) });
  return JSON.parse(out.trim().split('\n').pop() ?? '') as PhaseResult;
}

async function fsChild(spec: FsSpec): Promise<PhaseResult> {
  const { pageBytes, pages, batch } = spec;
  const payloads = new Payloads(pageBytes, spec.salt);
  const scratch = Buffer.allocUnsafe(pageBytes);
  const paths = Array.from({ length: pages }, (_, i) => join(spec.dir, benchKey(spec.scope, i)));
  const phase = new Phase();
  if (spec.op === 'put') {
    const bufs = Array.from({ length: batch }, () => Buffer.allocUnsafeSlow(pageBytes));
    for (let i = 0; i < pages; i += batch) {
      const n = Math.min(batch, pages - i);
      for (let k = 0; k < n; k++) payloads.fill(bufs[k], i + k);
      phase.begin();
      await Promise.all(Array.from({ length: n }, (_, k) => writeFile(paths[i + k], bufs[k])));
      phase.end(n * pageBytes);
    }
  } else {
    for (let i = 0, b = 0; i < pages; i += batch, b++) {
      const n = Math.min(batch, pages - i);
      phase.begin();
      const got = await Promise.all(Array.from({ length: n }, (_, k) => readFile(paths[i + k])));
      phase.end(got.reduce((a, g) => a + g.length, 0));
      got.forEach((g, k) => {
        if (g.length !== pageBytes || !payloads.stampsOk(g, i + k)) throw new Error(`node:fs get: file of page ${i + k} is not what was written`);
        if (sampled(b, k, n)) {
          if (!payloads.exact(g, i + k, scratch)) throw new Error(`node:fs get: page ${i + k} differs from what was written`);
          phase.verified++;
        }
      });
    }
  }
  return phase.measured();
}

if (require.main === module) {
  fsChild(JSON.parse(process.argv[2]) as FsSpec).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
