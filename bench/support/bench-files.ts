// The bench's files: written once with our engine (random data, every 4 KiB block stamped, not
// sparse), then checked through node:fs, so every tool reads the same bytes.
import { randomFillSync } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { connect, type Client, type File, type IoBuffer } from '../../lib/index';
import { stampAll, STAMP_BLOCK, verify } from './stamps';

/**
 * Writes a bench file of `size` bytes with our engine: random data, every 4 KiB block stamped,
 * O_DIRECT unless `buffered` (then it stays in the page cache), fsync'd at the end.
 */
export async function writeBenchFile(path: string, size: number, buffered: boolean): Promise<void> {
  const chunk = Math.min(4 * 1024 * 1024, size);
  const depth = 8;
  const client: Client = connect({ queueDepth: depth });
  const buffers: IoBuffer[] = [];
  let file: File | undefined;
  try {
    file = await client.open(path, 'w', 0o644, { direct: buffered ? 'never' : 'always' });
    for (let i = 0; i < depth; i++) buffers.push(client.alloc(chunk));
    let next = 0;
    const f = file;
    const lane = async (buf: IoBuffer) => {
      while (next < size) {
        const off = next;
        next += chunk;
        const len = Math.min(chunk, size - off);
        randomFillSync(buf.bytes, 0, len);
        stampAll(buf.bytes, off, len);
        const n = await f.write(buf, off, len);
        if (n !== len) throw new Error(`short write while creating ${path}`);
      }
    };
    await Promise.all(buffers.map(lane));
    await file.fsync();
  } finally {
    await file?.close().catch(() => undefined);
    for (const b of buffers) b.free();
    await client.close().catch(() => undefined);
  }
}

/** Size, allocation (not sparse) and a few stamps of a freshly written bench file, read through node:fs. */
export async function checkBenchFile(path: string, size: number): Promise<void> {
  const st = await stat(path);
  if (st.size !== size) throw new Error(`${path}: expected ${size} bytes, found ${st.size}`);
  if (st.blocks * 512 < size) throw new Error(`${path}: the file is sparse (${st.blocks * 512} of ${size} bytes allocated)`);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(STAMP_BLOCK);
    const blocks = size / STAMP_BLOCK;
    for (const b of [0, 1, Math.floor(blocks / 3), Math.floor(blocks / 2), blocks - 1]) {
      await fh.read(buf, 0, STAMP_BLOCK, b * STAMP_BLOCK);
      verify(buf, b * STAMP_BLOCK, STAMP_BLOCK, `bench file ${path}`);
    }
  } finally {
    await fh.close();
  }
}
