// The range reader (lib/datasets/range-reader.ts) under two format libraries used unchanged: hyparquet
// reads a Parquet file through slice(), apache-arrow an Arrow IPC file through the FileHandle
// shape. The oracle is the data the test wrote and node:fs's bytes of the same files. Runs on both
// engines.
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Float64, Int32, RecordBatchReader, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '../../lib/index';
import { openRangeReader, type RangeReader } from '../../lib/datasets/range-reader';
import { failure, makeTmpDir, Rng, seedFor, withTestClient } from '../helpers';

const tmp = makeTmpDir('range');
let client: Client;
withTestClient((c) => (client = c), tmp);

const ROWS = 5000;
function columns() {
  const rng = new Rng(seedFor('range-columns'));
  return {
    id: Int32Array.from({ length: ROWS }, (_, i) => i),
    score: Float64Array.from({ length: ROWS }, () => rng.next()),
    name: Array.from({ length: ROWS }, (_, i) => `row-${i}-${rng.int(0, 1e6)}`),
  };
}

describe('hyparquet reads Parquet through slice()', () => {
  it('every row of a multi-row-group file, and one column alone', async () => {
    const c = columns();
    const path = tmp.path('table.parquet');
    const bytes = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: c.id, type: 'INT32' },
        { name: 'score', data: c.score, type: 'DOUBLE' },
        { name: 'name', data: c.name, type: 'STRING' },
      ],
      rowGroupSize: 1000,
    });
    writeFileSync(path, Buffer.from(bytes));
    await using file = await openRangeReader(path, { client });
    expect(file.byteLength).toBe(bytes.byteLength);
    const meta = await parquetMetadataAsync(file);
    expect(Number(meta.num_rows)).toBe(ROWS);
    expect(meta.row_groups.length).toBe(5);
    const rows = await parquetReadObjects({ file });
    expect(rows.length).toBe(ROWS);
    for (const i of [0, 1, 999, 1000, 2500, ROWS - 1]) expect(rows[i]).toEqual({ id: c.id[i], score: c.score[i], name: c.name[i] });
    expect(rows.map((r) => r.name)).toEqual(c.name);
    const names = await parquetReadObjects({ file, columns: ['name'], rowStart: 1200, rowEnd: 1300 });
    expect(names).toEqual(c.name.slice(1200, 1300).map((name) => ({ name })));
    // The same answer as hyparquet over node:fs's bytes in memory.
    const fromMemory = await parquetReadObjects({ file: readFileSync(path).buffer.slice(0) });
    expect(rows).toEqual(fromMemory);
  });
});

// apache-arrow's types ask for a whole FileHandle; at run time it uses fd, stat, read and close.
const asFileHandle = (r: RangeReader) => r as unknown as FileHandle;

describe('apache-arrow reads Arrow IPC through the FileHandle shape', () => {
  it('every record batch of a file, read at random through the footer', async () => {
    const c = columns();
    const batches: Table[] = [];
    for (let at = 0; at < ROWS; at += 1250) {
      const part = { id: vectorFromArray(Array.from(c.id.slice(at, at + 1250)), new Int32()), score: vectorFromArray(Array.from(c.score.slice(at, at + 1250)), new Float64()), name: vectorFromArray(c.name.slice(at, at + 1250), new Utf8()) };
      batches.push(new Table(part));
    }
    const table = batches.slice(1).reduce((t, b) => t.concat(b), batches[0]);
    expect(table.batches.length).toBe(4);
    const path = tmp.path('table.arrow');
    writeFileSync(path, tableToIPC(table, 'file'));
    // Random access first: a batch from the middle, found through the footer.
    const random = await RecordBatchReader.from(asFileHandle(await openRangeReader(path, { client })));
    await random.open();
    expect(random.isFile()).toBe(true);
    if (!random.isFile()) return;
    expect(random.numRecordBatches).toBe(4);
    const third = await random.readRecordBatch(2);
    expect(Array.from(third!.getChild('score')!.toArray() as Float64Array)).toEqual(Array.from(c.score.slice(2500, 3750)));
    await random.cancel();
    // Then all of it, in order (the reader closes the file at its end).
    const reader = await RecordBatchReader.from(asFileHandle(await openRangeReader(path, { client })));
    const ids: number[] = [];
    const names: string[] = [];
    for await (const batch of reader) {
      ids.push(...batch.getChild('id')!.toArray());
      names.push(...(batch.getChild('name')!.toArray() as string[]));
    }
    expect(ids).toEqual(Array.from(c.id));
    expect(names).toEqual(c.name);
  });
});

describe('batching and edges', () => {
  let path: string;
  let bytes: Buffer;
  beforeAll(() => {
    bytes = new Rng(seedFor('range-bytes')).bytes(200_000);
    path = tmp.path('bytes.bin');
    writeFileSync(path, bytes);
  });

  it('slices asked for together go out in one submission, each with its own bytes', async () => {
    await using file = await openRangeReader(path, { client });
    const rng = new Rng(seedFor('range-slices'));
    const ranges = Array.from({ length: 200 }, () => {
      const s = rng.int(0, bytes.length);
      return [s, rng.int(s, Math.min(bytes.length, s + 5000))] as const;
    });
    const before = client.metrics().batches;
    const got = await Promise.all(ranges.map(([s, e]) => file.slice(s, e)));
    expect(client.metrics().batches - before).toBe(1);
    expect(file.stats).toEqual({ ranges: ranges.filter(([s, e]) => e > s).length, submissions: 1 });
    got.forEach((ab, k) => {
      expect(ab).toBeInstanceOf(ArrayBuffer);
      expect(Buffer.from(ab).equals(bytes.subarray(ranges[k][0], ranges[k][1]))).toBe(true);
    });
  });

  it('clamps as ArrayBuffer.slice does; read() fills the caller\'s buffer', async () => {
    await using file = await openRangeReader(path, { client });
    expect(Buffer.from(await file.slice(-10)).equals(bytes.subarray(-10))).toBe(true);
    expect((await file.slice(150_000, 1e9)).byteLength).toBe(50_000);
    expect((await file.slice(10, 5)).byteLength).toBe(0);
    const into = Buffer.alloc(100);
    const r = await file.read(into, 10, 50, 199_980);
    expect(r.bytesRead).toBe(20);
    expect(into.subarray(10, 30).equals(bytes.subarray(199_980))).toBe(true);
    expect((await failure(() => file.read(into, 90, 20, 0))).code).toBe('ERR_OUT_OF_RANGE');
    expect((await failure(() => file.slice(NaN))).code).toBe('ERR_INVALID_ARG_TYPE');
  });

  it('a file cut short after open gives what is there; a closed reader refuses', async () => {
    const p = tmp.path('shrinks.bin');
    writeFileSync(p, bytes);
    const file = await openRangeReader(p, { client });
    truncateSync(p, 1000);
    expect(Buffer.from(await file.slice(500, 5000)).equals(bytes.subarray(500, 1000))).toBe(true);
    await file.close();
    expect((await failure(() => file.slice(0, 10))).code).toBe('ERR_FILE_CLOSED');
    expect((await failure(() => openRangeReader(tmp.path('missing'), { client }))).code).toBe('ENOENT');
  });
});
