// Buffers of 2 MiB and more start on a 2 MiB boundary (native/objects/region/region.cc), so the
// kernel can back them with huge pages: a KVCache slot (4 KiB header + 4 MiB page) on 4 KiB pages
// reached the disk as about five requests (254 segments each) where raw's 4 MiB buffer went as one.
// The oracle is the kernel's own list of this process's mappings.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KiB, MiB, withClient } from '../../helpers';

/** This process's mappings marked for huge pages (madvise MADV_HUGEPAGE: VmFlags "hg"): start and size in bytes. */
function hugeMappings(): { start: bigint; bytes: bigint }[] {
  const out: { start: bigint; bytes: bigint }[] = [];
  let current: { start: bigint; bytes: bigint } | undefined;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) current = { start: BigInt(`0x${range[1]}`), bytes: BigInt(`0x${range[2]}`) - BigInt(`0x${range[1]}`) };
    else if (current && line.startsWith('VmFlags:') && line.split(/\s+/).includes('hg')) out.push(current);
  }
  return out;
}

describe('registered memory and huge pages', () => {
  it('buffers of 2 MiB and more (a KVCache slot: 4 KiB + 4 MiB) are mapped from a 2 MiB boundary', () =>
    withClient(async (client) => {
      const before = new Set(hugeMappings().map((m) => m.start));
      const sizes = [4 * MiB + 4 * KiB, 2 * MiB + 12 * KiB, 16 * MiB + 4 * KiB, 3 * MiB];
      const bufs = sizes.map((n) => client.alloc(n));
      try {
        const fresh = hugeMappings().filter((m) => !before.has(m.start));
        // Adjacent ones may be merged into one mapping by the kernel: their sizes add up all the same.
        expect(fresh.reduce((a, m) => a + m.bytes, 0n)).toBe(BigInt(sizes.reduce((a, n) => a + n, 0)));
        for (const m of fresh) expect(m.start % BigInt(2 * MiB), `mapping at 0x${m.start.toString(16)}`).toBe(0n);
      } finally {
        for (const b of bufs) b.free();
      }
    }));
});
