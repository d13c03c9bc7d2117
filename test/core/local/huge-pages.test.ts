// Buffers of 2 MiB and more start on a 2 MiB boundary (native/objects/region/region.cc), so the
// kernel can back them with huge pages: a KVCache slot (4 KiB header + 4 MiB page) on 4 KiB pages
// reached the disk as about five requests (254 segments each) where raw's 4 MiB buffer went as one.
// Buffers from 64 KiB to 2 MiB are carved from 2 MiB slabs on huge pages: on 4 KiB pages a 1 MiB
// op took all 254 descriptors of the virtio queue (docs/benchmark.md). The oracle is the kernel's
// own list of this process's mappings, and its memory as /proc/self/mem shows it.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KiB, MiB, withClient } from '../../helpers';
import type { IoBuffer } from '../../../lib/index';

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

  it('buffers from 64 KiB to under 2 MiB lie inside one 2 MiB-aligned huge-page mapping; smaller ones do not', () =>
    withClient(async (client) => {
      const sizes = [1 * MiB, 64 * KiB, 2 * MiB - 4 * KiB, 1 * MiB + 4 * KiB, 256 * KiB, 1 * MiB];
      const bufs = sizes.map((n) => client.alloc(n));
      const small = client.alloc(60 * KiB);
      try {
        for (const [i, b] of bufs.entries()) {
          const at = locate(b);
          expect(at, `buffer ${i} (${sizes[i]} bytes) in a huge-page mapping`).toBeDefined();
          const inPage = Number(at! % BigInt(2 * MiB));
          expect(inPage + sizes[i], `buffer ${i} crosses a 2 MiB boundary`).toBeLessThanOrEqual(2 * MiB);
        }
        expect(locate(small), 'a 60 KiB buffer stays on its own pages').toBeUndefined();
      } finally {
        for (const b of [...bufs, small]) b.free();
      }
    }));

  it('carved buffers never overlap, and one carved again from freed room reads as zeros', () =>
    withClient(async (client) => {
      const bufs: IoBuffer[] = [];
      for (let i = 0; i < 40; i++) bufs.push(client.alloc((i % 5 === 0 ? 320 : 64) * KiB));
      bufs.forEach((b, i) => b.bytes.fill(i + 1));
      bufs.forEach((b, i) => expect(b.bytes.every((x) => x === i + 1), `buffer ${i} kept its bytes`).toBe(true));
      for (let i = 0; i < bufs.length; i += 2) bufs[i].free();
      const again = [client.alloc(64 * KiB), client.alloc(1 * MiB), client.alloc(128 * KiB)];
      try {
        for (const b of again) expect(b.bytes.equals(Buffer.alloc(b.byteLength)), 'a fresh buffer is zeroed').toBe(true);
        for (let i = 1; i < bufs.length; i += 2) expect(bufs[i].bytes.every((x) => x === i + 1), `buffer ${i} untouched`).toBe(true);
      } finally {
        for (const b of [...bufs, ...again]) b.free();
      }
    }));
});

/** The address of a buffer found (by a random token written into it) in this process's huge-page mappings. */
function locate(buffer: IoBuffer): bigint | undefined {
  const token = randomBytes(32);
  token.copy(buffer.bytes, 0);
  const fd = openSync('/proc/self/mem', 'r');
  try {
    const probe = Buffer.alloc(token.length);
    for (const m of hugeMappings()) {
      for (let off = 0n; off < m.bytes; off += BigInt(4 * KiB)) {
        if (readSync(fd, probe, 0, probe.length, m.start + off) === probe.length && probe.equals(token)) return m.start + off;
      }
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}
