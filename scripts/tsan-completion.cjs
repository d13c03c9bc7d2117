// The completion path under ThreadSanitizer (npm run test:tsan): batches stopped by abort,
// timeout and failFast, and files and clients closed with I/O in flight, on io_uring and on the
// threads engine. Plain node (vitest's own process does not survive a preloaded TSan runtime);
// scripts/test-sanitized.sh tsan runs it with the TSan build through THREEFS_CLIENT_ADDON.
//   node scripts/tsan-completion.cjs [rounds]
'use strict';
const { mkdtempSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { connect } = require('../dist/lib/index.js');

const ROUNDS = Number(process.argv[2] ?? 40);

(async () => {
  const dir = mkdtempSync(join(tmpdir(), '3fs-tsan-'));
  const path = join(dir, 'data');
  writeFileSync(path, Buffer.alloc(4 << 20, 7));
  let ops = 0;
  for (const engine of ['io_uring', 'threads']) {
    for (let round = 0; round < ROUNDS; round++) {
      const client = connect({ engine, queueDepth: 4, rings: 2 });
      const file = await client.open(path, 'r+');
      const memory = client.alloc(1 << 20);
      // Each batch its own quarter of the memory: two batches reading into the same bytes would
      // race in the caller's data, not in the addon.
      const reads = (n, k) => Array.from({ length: n }, (_, i) => ({ buffer: memory.subarray((k * 64 + i) * 4096, (k * 64 + i + 1) * 4096), fileOffset: i * 4096 }));
      const ac = new AbortController();
      const batches = [
        file.batchRead(reads(64, 0), { signal: ac.signal }),
        file.batchRead(reads(64, 1), { timeout: round % 3 }),
        file.batchWrite(reads(64, 2), { failFast: true }),
        client.batchRead([...reads(8, 3).map((o) => ({ ...o, file })), { file: await client.open(dir, 'r'), buffer: Buffer.alloc(10), fileOffset: 0 }], { failFast: true }),
      ];
      ops += 64 * 3 + 9;
      setImmediate(() => ac.abort());
      if (round % 2) setImmediate(() => file.close().catch(() => {}));
      if (round % 4 === 3) setImmediate(() => client.close().catch(() => {}));
      if (round % 5 === 4) setImmediate(() => memory.free());
      await Promise.allSettled(batches);
      await file.close().catch(() => {});
      await client.close().catch(() => {});
    }
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`tsan-completion: ${ops} ops in ${2 * ROUNDS} rounds`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
