// Byte-for-byte agreement with node:fs (and with an in-memory model of each file) on randomized,
// seeded workloads: random file sizes, holes, reads at and past the end of the file, interleaved
// reads and writes, many files per batch, every kind of memory the API takes, and all three
// direct modes. Runs on both engines (test/helpers/engine.ts ENGINE); on hf3fs the memory that is not an
// iov of the client is bounced through the engine's own iov, which the metrics must show.
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IoBuffer, type Client, type File, type OpResult } from '../../lib/index';
import { ENGINE, FileModel, KiB, MiB, Rng, firstDiff, makeTmpDir, seedFor, testConnect } from '../helpers';

const tmp = makeTmpDir('oracle');
afterAll(() => tmp.cleanup());

const SENTINEL = 0xa5;
const PAGE = 4096;

type DirectMode = 'auto' | 'always' | 'never';

/** Whether the addon accepts views over a SharedArrayBuffer (see the dedicated test below). */
let sabSupported = false;

beforeAll(async () => {
  const client = testConnect({ queueDepth: 4 });
  const p = tmp.path('sab-probe');
  writeFileSync(p, 'hello');
  const f = await client.open(p, 'r');
  try {
    const [r] = await f.batchRead([{ buffer: new Uint8Array(new SharedArrayBuffer(8)), fileOffset: 0 }]);
    sabSupported = r.error === null;
  } catch {
    sabSupported = false;
  }
  await f.close();
  await client.close();
});

// ---------------------------------------------------------------------------------------------
// Memory of every kind the API accepts. A Slot is one op's buffer inside an `outer` array whose
// other bytes hold SENTINEL, so a test sees any byte written outside the op's range.

type Kind = 'io-sub' | 'io-own' | 'io-own-unreg' | 'io-view' | 'buffer' | 'u8' | 'sab' | 'dataview' | 'f64';
const REGION_KINDS: Kind[] = ['io-sub', 'io-own', 'io-own-unreg', 'io-view'];
const ALL_KINDS: Kind[] = [...REGION_KINDS, 'buffer', 'u8', 'sab', 'dataview', 'f64'];

interface Slot {
  kind: Kind;
  buffer: IoBuffer | ArrayBufferView;
  /** Passed as op.length; undefined means "the buffer's length", which then equals `len`. */
  length: number | undefined;
  len: number;
  /** The whole memory around the op: its bytes outside [start, start + len) must stay SENTINEL. */
  outer: Uint8Array;
  start: number;
  /** Memory that the engine registered (an IoBuffer of this client with `registered` true). */
  registered: boolean;
  /** Memory of this client's regions (IoBuffer or a view of its memory). */
  region: boolean;
  release: () => void;
}

class Arena {
  readonly io: IoBuffer;
  private used = 0;
  constructor(client: Client, readonly size: number) {
    this.io = client.alloc(size);
  }
  reset(fill: number): void {
    this.used = 0;
    this.io.bytes.fill(fill);
  }
  /** A range of `len` bytes, page-aligned or deliberately not, with a gap after it. */
  take(len: number, aligned: boolean, rng: Rng): number | undefined {
    let start = Math.ceil(this.used / PAGE) * PAGE + (aligned ? 0 : rng.int(1, PAGE - 1));
    if (start + len + 64 > this.size) return undefined;
    this.used = start + len + rng.int(1, 64);
    return start;
  }
}

function makeSlot(client: Client, arena: Arena, kind: Kind, len: number, aligned: boolean, rng: Rng): Slot {
  const g = aligned ? 0 : rng.int(1, 64); // guard before the op's bytes (unaligned start when > 0)
  const tail = rng.int(1, 64);
  const omitLength = rng.bool(0.3);
  const noop = () => {};
  switch (kind) {
    case 'io-sub':
    case 'io-view': {
      const start = arena.take(len, aligned, rng);
      if (start === undefined) return makeSlot(client, arena, aligned ? 'io-own' : 'buffer', len, aligned, rng);
      const outer = arena.io.bytes;
      const buffer = kind === 'io-sub' ? arena.io.subarray(start, start + len) : Buffer.from(arena.io.bytes.buffer, start, len);
      return { kind, buffer, length: omitLength ? undefined : len, len, outer, start, registered: arena.io.registered, region: true, release: noop };
    }
    case 'io-own':
    case 'io-own-unreg': {
      const pre = aligned ? (rng.bool() ? 0 : PAGE) : g;
      const io = client.alloc(pre + len + tail, { register: kind === 'io-own' });
      io.bytes.fill(SENTINEL);
      return {
        kind,
        buffer: io.subarray(pre, pre + len),
        length: omitLength ? undefined : len,
        len,
        outer: io.bytes,
        start: pre,
        registered: io.registered,
        region: true,
        release: () => io.free(),
      };
    }
    case 'buffer': {
      const outer = Buffer.alloc(g + len + tail, SENTINEL);
      return { kind, buffer: outer.subarray(g, g + len), length: omitLength ? undefined : len, len, outer, start: g, registered: false, region: false, release: noop };
    }
    case 'u8':
    case 'sab':
    case 'dataview': {
      const memory = kind === 'sab' ? new SharedArrayBuffer(g + len + tail) : new ArrayBuffer(g + len + tail);
      const outer = new Uint8Array(memory).fill(SENTINEL);
      const buffer = kind === 'dataview' ? new DataView(memory, g, len) : new Uint8Array(memory, g, len);
      return { kind, buffer, length: omitLength ? undefined : len, len, outer, start: g, registered: false, region: false, release: noop };
    }
    case 'f64': {
      const words = Math.ceil(len / 8);
      const memory = new ArrayBuffer(8 + words * 8 + 8);
      const outer = new Uint8Array(memory).fill(SENTINEL);
      // The view may be longer than the op: the op's explicit length (bytes) rules.
      return { kind, buffer: new Float64Array(memory, 8, words), length: len, len, outer, start: 8, registered: false, region: false, release: noop };
    }
  }
}

function pickKind(rng: Rng, aligned: boolean): Kind {
  const kinds = aligned ? REGION_KINDS : ALL_KINDS.filter((k) => k !== 'sab' || sabSupported);
  return rng.pick(kinds);
}

/** Random op length: mostly small, some medium, a few over 1 MiB. */
function randomLength(rng: Rng): number {
  const r = rng.next();
  if (r < 0.5) return rng.int(1, 8 * KiB);
  if (r < 0.85) return rng.int(8 * KiB, 256 * KiB);
  return rng.int(256 * KiB, 1536 * KiB);
}

// ---------------------------------------------------------------------------------------------
// Random files, some sparse.

interface TestFile {
  path: string;
  size: number;
  fd: number; // node:fs descriptor, for the oracle
}

function makeRandomFile(rng: Rng, name: string, size: number): TestFile {
  const path = tmp.path(name);
  const fd = openSync(path, 'w+');
  const shape = rng.int(0, 3);
  if (shape === 0 || size === 0) {
    writeSync(fd, rng.bytes(size), 0, size, 0);
  } else {
    // Holes: a sparse file of `size` with random chunks written here and there (or nothing at the
    // start, or a hole at the end).
    ftruncateSync(fd, size);
    const chunks = shape === 1 ? rng.int(1, 8) : shape === 2 ? 1 : 0;
    for (let i = 0; i < chunks; i++) {
      const len = rng.int(1, Math.min(size, 200 * KiB));
      const off = rng.int(0, size - len);
      writeSync(fd, rng.bytes(len), 0, len, off);
    }
    if (shape === 3) {
      const len = Math.min(size, rng.int(1, 64 * KiB)); // data only at the very end
      writeSync(fd, rng.bytes(len), 0, len, size - len);
    }
  }
  expect(fstatSync(fd).size).toBe(size);
  return { path, size, fd };
}

const SIZES_FIXED = [0, 1, 511, 4096, 4097, 65536 + 13, 3 * MiB];

// ---------------------------------------------------------------------------------------------
// Random reads checked against fs.readSync.

type OffsetKind = 'inside' | 'cross' | 'at-eof' | 'past' | 'zero' | 'aligned';

function randomRead(rng: Rng, size: number, mode: DirectMode): { fileOffset: number; len: number; aligned: boolean } {
  const kinds: OffsetKind[] = mode === 'always' ? ['aligned', 'aligned', 'aligned', 'zero'] : ['inside', 'inside', 'inside', 'cross', 'at-eof', 'past', 'zero', 'aligned', 'aligned'];
  let kind = rng.pick(kinds);
  if (size === 0 && (kind === 'inside' || kind === 'cross')) kind = 'at-eof';
  switch (kind) {
    case 'inside': {
      const fileOffset = rng.int(0, size - 1);
      return { fileOffset, len: Math.min(randomLength(rng), size - fileOffset), aligned: false };
    }
    case 'cross': {
      const len = randomLength(rng) + 1;
      const fileOffset = rng.int(Math.max(0, size - len + 1), size - 1);
      return { fileOffset, len, aligned: false };
    }
    case 'at-eof':
      return { fileOffset: size, len: rng.int(1, 64 * KiB), aligned: false };
    case 'past':
      return { fileOffset: size + rng.int(1, 4 * MiB), len: rng.int(1, 64 * KiB), aligned: false };
    case 'zero':
      return { fileOffset: rng.int(0, size + 10), len: 0, aligned: false };
    case 'aligned': {
      const pages = Math.ceil(size / PAGE);
      const fileOffset = rng.int(0, pages) * PAGE;
      const len = rng.int(1, rng.bool(0.8) ? 16 : 384) * PAGE;
      return { fileOffset, len, aligned: true };
    }
  }
}

/** Compares every slot's memory with what node:fs read; returns a description of the first mismatch. */
function checkSlots(slots: Slot[], expected: (Buffer | null)[], others: Slot[] = []): string | null {
  const byOuter = new Map<Uint8Array, number[]>();
  slots.forEach((s, i) => {
    const list = byOuter.get(s.outer) ?? [];
    list.push(i);
    byOuter.set(s.outer, list);
  });
  for (const [outer, indices] of byOuter) {
    const want = Buffer.alloc(outer.byteLength, SENTINEL);
    const have = Buffer.from(outer.buffer as ArrayBuffer, outer.byteOffset, outer.byteLength);
    // Memory of other ops in flight at the same time (a concurrent write batch's sources).
    for (const o of others) if (o.outer === outer) have.copy(want, o.start, o.start, o.start + o.len);
    for (const i of indices) {
      const s = slots[i];
      const data = expected[i];
      if (data === null) continue;
      data.copy(want, s.start);
      // Past the end of the file the op's own range is the device's to touch (O_DIRECT reads whole
      // blocks); only the bytes outside the op's range must be left alone.
      have.copy(want, s.start + data.length, s.start + data.length, s.start + s.len);
    }
    const at = firstDiff(have, want);
    if (at >= 0) {
      const owner = indices.find((i) => at >= slots[i].start && at < slots[i].start + slots[i].len);
      return `memory differs at byte ${at} of a ${slots[indices[0]].kind} buffer (${owner === undefined ? 'outside every op: a guard byte' : `inside op ${owner}`}): got ${have[at]}, want ${want[at]}`;
    }
  }
  return null;
}

interface Config {
  direct: DirectMode;
  asyncBuffered: boolean;
}

// Which configs run on hf3fs: direct 'never' / 'always' and asyncBuffered pick between io_uring's
// page-cache and O_DIRECT paths. USRBIO has neither (3FS moves the data by RDMA into or out of an
// iov; every op is "direct"), so there those configs would repeat the 'auto' run: skipped.
const onThisEngine = (c: Config) => ENGINE === 'local' || (c.direct === 'auto' && !c.asyncBuffered);

const readConfigs: Config[] = [
  { direct: 'auto', asyncBuffered: false },
  { direct: 'auto', asyncBuffered: true },
  { direct: 'never', asyncBuffered: false },
  { direct: 'always', asyncBuffered: false },
];

describe.each(readConfigs)('random reads agree with node:fs (direct: $direct, asyncBuffered: $asyncBuffered)', (config) => {
  it.skipIf(!onThisEngine(config))('every byte, length and eof flag matches fs.readSync', async () => {
    const seed = seedFor(`reads-${config.direct}-${config.asyncBuffered}`);
    const rng = new Rng(seed);
    const why = (m: string) => `seed ${seed} (THREEFS_TEST_SEED=${process.env.THREEFS_TEST_SEED ?? 'default'}): ${m}`;
    const client = testConnect({ queueDepth: 32, asyncBuffered: config.asyncBuffered });
    const arena = new Arena(client, 24 * MiB);
    const sizes = [...SIZES_FIXED, ...Array.from({ length: 6 }, () => rng.int(0, 3 * MiB))];
    const files: TestFile[] = sizes.map((size, i) => makeRandomFile(rng, `r-${config.direct}-${config.asyncBuffered}-${i}`, size));
    const opened: File[] = [];
    for (const f of files) opened.push(await client.open(f.path, 'r', 0o666, { direct: config.direct }));
    // hf3fs: never through a page cache, whatever was asked.
    for (const f of opened) expect((await f.stat()).direct.active).toBe(ENGINE === 'hf3fs' || config.direct !== 'never');

    const before = client.metrics();
    let ops = 0;
    let bytes = 0;
    let alignedRegionBytes = 0;
    let registeredBytes = 0;
    let plainBytes = 0;
    let regionBytes = 0;
    const BATCHES = 40;
    for (let b = 0; b < BATCHES; b++) {
      arena.reset(SENTINEL);
      const style = rng.pick(['client', 'client', 'client', 'file', 'single'] as const);
      const count = style === 'single' ? 1 : rng.int(1, 32);
      const fileIndex = rng.int(0, files.length - 1);
      const slots: Slot[] = [];
      const meta: { file: number; fileOffset: number; len: number; aligned: boolean }[] = [];
      for (let i = 0; i < count; i++) {
        const fi = style === 'client' ? rng.int(0, files.length - 1) : fileIndex;
        const r = randomRead(rng, files[fi].size, config.direct);
        slots.push(makeSlot(client, arena, pickKind(rng, r.aligned || config.direct === 'always'), r.len, r.aligned || config.direct === 'always', rng));
        meta.push({ file: fi, ...r });
      }
      let results: OpResult[];
      if (style === 'client') {
        results = await client.batchRead(slots.map((s, i) => ({ file: opened[meta[i].file], buffer: s.buffer, fileOffset: meta[i].fileOffset, length: s.length })));
      } else if (style === 'file') {
        results = await opened[fileIndex].batchRead(slots.map((s, i) => ({ buffer: s.buffer, fileOffset: meta[i].fileOffset, length: s.length })));
      } else {
        const n = await opened[fileIndex].read(slots[0].buffer, meta[0].fileOffset, slots[0].length);
        results = [{ bytes: n, eof: n < slots[0].len, error: null }];
      }
      expect(results).toHaveLength(count);
      const expected: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const m = meta[i];
        const want = Buffer.alloc(m.len);
        const n = m.len === 0 ? 0 : readSync(files[m.file].fd, want, 0, m.len, m.fileOffset);
        const r = results[i];
        const where = `batch ${b} op ${i} (${slots[i].kind}, file size ${files[m.file].size}, offset ${m.fileOffset}, length ${m.len})`;
        expect(r.error, why(where)).toBeNull();
        expect(r.bytes, why(`${where}: bytes`)).toBe(n);
        expect(r.eof, why(`${where}: eof`)).toBe(n < m.len);
        expected.push(want.subarray(0, n));
        ops++;
        bytes += n;
        if (m.aligned && slots[i].region) alignedRegionBytes += n;
        if (slots[i].registered) registeredBytes += n;
        if (!slots[i].region) plainBytes += n;
        else regionBytes += n;
      }
      const bad = checkSlots(slots, expected);
      expect(bad, why(`batch ${b}: ${bad}`)).toBeNull();
      for (const s of slots) s.release();
    }

    const after = client.metrics();
    type Counter = { [K in keyof typeof after]: (typeof after)[K] extends number ? K : never }[keyof typeof after];
    const d = (k: Counter) => after[k] - before[k];
    expect(d('readOps')).toBe(ops);
    expect(d('readBytes')).toBe(bytes);
    expect(d('errors')).toBe(0);
    expect(d('directBytes') + d('bufferedBytes')).toBe(bytes);
    expect(d('registeredBytes') + d('unregisteredBytes')).toBe(bytes);
    expect(d('registeredBytes')).toBeGreaterThanOrEqual(registeredBytes);
    expect(d('unregisteredBytes')).toBeGreaterThanOrEqual(plainBytes);
    if (ENGINE === 'hf3fs') {
      // Every byte is "direct" (RDMA into an iov); memory of this client's iovs moves in place,
      // every other byte is bounced through the engine's iov, and counted as such.
      expect(d('directBytes')).toBe(bytes);
      expect(d('bufferedBytes')).toBe(0);
      expect(d('registeredBytes')).toBe(regionBytes);
      expect(d('unregisteredBytes')).toBe(plainBytes);
      expect(d('bouncedBytes')).toBe(plainBytes);
    } else {
      expect(d('bouncedBytes')).toBe(0);
    }
    if (ENGINE === 'local' && config.direct === 'never') expect(d('directBytes')).toBe(0);
    if (config.direct === 'always') expect(d('directBytes')).toBe(bytes);
    if (config.direct === 'auto') {
      expect(alignedRegionBytes).toBeGreaterThan(0);
      expect(d('directBytes')).toBeGreaterThanOrEqual(alignedRegionBytes);
    }

    for (const f of opened) await f.close();
    for (const f of files) closeSync(f.fd);
    arena.io.free();
    await client.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Interleaved writes and reads, against a model of each file and, at the end, fs.readFileSync.

interface Range {
  file: number;
  fileOffset: number;
  len: number;
}

function overlaps(a: Range, list: Range[]): boolean {
  return list.some((b) => b.file === a.file && a.fileOffset < b.fileOffset + Math.max(b.len, 1) && b.fileOffset < a.fileOffset + Math.max(a.len, 1));
}

const writeConfigs: Config[] = [
  { direct: 'auto', asyncBuffered: false },
  { direct: 'never', asyncBuffered: true },
  { direct: 'always', asyncBuffered: false },
];

describe.each(writeConfigs)('interleaved writes and reads (direct: $direct, asyncBuffered: $asyncBuffered)', (config) => {
  it.skipIf(!onThisEngine(config))('match a model of the file bytes, and node:fs at the end', async () => {
    const seed = seedFor(`rw-${config.direct}-${config.asyncBuffered}`);
    const rng = new Rng(seed);
    const why = (m: string) => `seed ${seed}: ${m}`;
    const always = config.direct === 'always';
    const client = testConnect({ queueDepth: 16, asyncBuffered: config.asyncBuffered });
    const arena = new Arena(client, 24 * MiB);
    const FILES = 6;
    const MAX_SIZE = 6 * MiB;
    const models: FileModel[] = [];
    const files: File[] = [];
    const paths: string[] = [];
    for (let i = 0; i < FILES; i++) {
      const p = tmp.path(`rw-${config.direct}-${config.asyncBuffered}-${i}`);
      paths.push(p);
      if (i % 2 === 0) {
        const tf = makeRandomFile(rng, `rw-${config.direct}-${config.asyncBuffered}-${i}`, rng.int(0, 2 * MiB));
        models.push(new FileModel(readFileSync(p)));
        closeSync(tf.fd);
        files.push(await client.open(p, 'r+', 0o666, { direct: config.direct }));
      } else {
        models.push(new FileModel());
        files.push(await client.open(p, 'w+', 0o644, { direct: config.direct }));
      }
    }

    const randomWriteRange = (taken: Range[]): Range | undefined => {
      for (let attempt = 0; attempt < 10; attempt++) {
        const file = rng.int(0, FILES - 1);
        const size = models[file].size;
        let fileOffset: number;
        let len = rng.bool(0.08) ? rng.int(1 * MiB + 1, 3 * MiB) : randomLength(rng);
        const where = rng.int(0, 3);
        if (where === 0) fileOffset = size; // append
        else if (where === 1) fileOffset = size + rng.int(1, 1 * MiB); // leaves a hole
        else fileOffset = rng.int(0, Math.max(0, size - 1)); // overwrite
        if (always) {
          fileOffset = Math.floor(fileOffset / PAGE) * PAGE;
          len = Math.max(PAGE, Math.floor(len / PAGE) * PAGE);
        }
        if (fileOffset + len > MAX_SIZE) continue;
        const r = { file, fileOffset, len };
        if (!overlaps(r, taken)) return r;
      }
      return undefined;
    };

    const randomReadRange = (taken: Range[], inside: boolean): Range | undefined => {
      for (let attempt = 0; attempt < 10; attempt++) {
        const file = rng.int(0, FILES - 1);
        const size = models[file].size;
        let r: { fileOffset: number; len: number };
        if (inside) {
          if (size === 0) continue;
          const fileOffset = always ? Math.floor(rng.int(0, size - 1) / PAGE) * PAGE : rng.int(0, size - 1);
          let len = Math.min(randomLength(rng), size - fileOffset);
          if (always) len = Math.floor(len / PAGE) * PAGE;
          if (len === 0) continue;
          r = { fileOffset, len };
        } else {
          r = randomRead(rng, size, config.direct);
        }
        const range = { file, ...r };
        if (!overlaps(range, taken)) return range;
      }
      return undefined;
    };

    const writeBatch = async (ranges: Range[]) => {
      const slots = ranges.map((r) => {
        const s = makeSlot(client, arena, pickKind(rng, always || rng.bool(0.3)), r.len, always || rng.bool(0.3), rng);
        const data = rng.bytes(r.len);
        const view = s.buffer instanceof IoBuffer ? s.buffer.bytes : new Uint8Array(s.buffer.buffer, s.buffer.byteOffset, r.len);
        view.set(data);
        return { slot: s, data };
      });
      const results = await client.batchWrite(ranges.map((r, i) => ({ file: files[r.file], buffer: slots[i].slot.buffer, fileOffset: r.fileOffset, length: slots[i].slot.length })));
      return { slots, results };
    };

    const applyWrites = (ranges: Range[], w: Awaited<ReturnType<typeof writeBatch>>, round: number) => {
      ranges.forEach((r, i) => {
        const res = w.results[i];
        expect(res.error, why(`round ${round} write ${i}`)).toBeNull();
        expect(res.bytes, why(`round ${round} write ${i}`)).toBe(r.len);
        expect(res.eof).toBe(false);
        models[r.file].write(r.fileOffset, w.slots[i].data);
        w.slots[i].slot.release();
      });
    };

    const readBatch = async (ranges: Range[]) => {
      const slots = ranges.map((r) => makeSlot(client, arena, pickKind(rng, always || r.len % PAGE === 0), r.len, always || r.len % PAGE === 0, rng));
      const results = await client.batchRead(ranges.map((r, i) => ({ file: files[r.file], buffer: slots[i].buffer, fileOffset: r.fileOffset, length: slots[i].length })));
      return { slots, results };
    };

    const checkReads = (ranges: Range[], rd: Awaited<ReturnType<typeof readBatch>>, round: number, others: Slot[] = []) => {
      const expected = ranges.map((r, i) => {
        const want = models[r.file].read(r.fileOffset, r.len);
        const res = rd.results[i];
        const where = `round ${round} read ${i} (file ${r.file} size ${models[r.file].size}, offset ${r.fileOffset}, length ${r.len})`;
        expect(res.error, why(where)).toBeNull();
        expect(res.bytes, why(where)).toBe(want.length);
        expect(res.eof, why(where)).toBe(want.length < r.len);
        return want;
      });
      const bad = checkSlots(rd.slots, expected, others);
      expect(bad, why(`round ${round}: ${bad}`)).toBeNull();
      rd.slots.forEach((s) => s.release());
    };

    const ROUNDS = 60;
    let writes = 0;
    let truncates = 0;
    let concurrent = 0;
    for (let round = 0; round < ROUNDS; round++) {
      arena.reset(SENTINEL);
      const action = rng.next();
      if (action < 0.4) {
        const ranges: Range[] = [];
        for (let i = rng.int(1, 16); i > 0; i--) {
          const r = randomWriteRange(ranges);
          if (r) ranges.push(r);
        }
        applyWrites(ranges, await writeBatch(ranges), round);
        writes += ranges.length;
      } else if (action < 0.75) {
        const ranges: Range[] = [];
        for (let i = rng.int(1, 24); i > 0; i--) {
          const r = randomReadRange([], false);
          if (r) ranges.push(r);
        }
        checkReads(ranges, await readBatch(ranges), round);
      } else if (action < 0.9) {
        // A write batch and a read batch in flight together, on disjoint ranges; the reads stay
        // below the current end of the file so the writes cannot change what they return.
        const wr: Range[] = [];
        for (let i = rng.int(1, 8); i > 0; i--) {
          const r = randomWriteRange(wr);
          if (r) wr.push(r);
        }
        const rr: Range[] = [];
        for (let i = rng.int(1, 16); i > 0; i--) {
          const r = randomReadRange([...wr, ...rr], true);
          if (r) rr.push(r);
        }
        const expected = rr.map((r) => models[r.file].read(r.fileOffset, r.len));
        const [w, rd] = await Promise.all([writeBatch(wr), readBatch(rr)]);
        rr.forEach((r, i) => expect(models[r.file].read(r.fileOffset, r.len).equals(expected[i])).toBe(true));
        checkReads(rr, rd, round, w.slots.map((s) => s.slot));
        applyWrites(wr, w, round);
        writes += wr.length;
        concurrent++;
      } else {
        const file = rng.int(0, FILES - 1);
        const size = models[file].size;
        const length = rng.bool() ? rng.int(0, size) : size + rng.int(1, 512 * KiB);
        await files[file].truncate(length);
        models[file].truncate(length);
        truncates++;
      }
    }
    expect(writes).toBeGreaterThan(50);
    expect(concurrent + truncates).toBeGreaterThan(5);

    for (let i = 0; i < FILES; i++) {
      // Through the library: the whole file in one read, into a buffer longer than the file.
      const size = models[i].size;
      const io = client.alloc(always ? Math.ceil((size + 1) / PAGE) * PAGE : size + 100);
      const n = await files[i].read(io, 0);
      expect(n).toBe(size);
      expect(firstDiff(io.bytes.subarray(0, size), models[i].contents()), why(`file ${i} via library`)).toBe(-1);
      io.free();
      expect((await files[i].stat()).size).toBe(size);
      await files[i].close();
      // And through node:fs, after close.
      const onDisk = readFileSync(paths[i]);
      expect(onDisk.length, why(`file ${i} size`)).toBe(size);
      expect(firstDiff(onDisk, models[i].contents()), why(`file ${i} via node:fs`)).toBe(-1);
      expect(statSync(paths[i]).size).toBe(size);
    }
    arena.io.free();
    await client.close();
  });
});

// ---------------------------------------------------------------------------------------------

describe('many files in one batch', () => {
  it('client.batchWrite then client.batchRead across 64 files agree with node:fs', async () => {
    const seed = seedFor('many-files');
    const rng = new Rng(seed);
    const client = testConnect({ queueDepth: 32 });
    const N = 64;
    const paths = Array.from({ length: N }, (_, i) => tmp.path(`many-${i}`));
    const files = await Promise.all(paths.map((p, i) => client.open(p, 'w+', 0o644, { direct: (['auto', 'never'] as const)[i % 2] })));
    const models = paths.map(() => new FileModel());
    // Two writes per file: one at the start, one past a hole.
    const ops: { file: File; buffer: Uint8Array | IoBuffer; fileOffset: number }[] = [];
    for (let i = 0; i < N; i++) {
      const a = rng.bytes(rng.int(0, 64 * KiB));
      const b = rng.bytes(rng.int(1, 8 * KiB));
      const holeAt = a.length + rng.int(0, 128 * KiB);
      const io = client.alloc(b.length);
      io.bytes.set(b);
      ops.push({ file: files[i], buffer: a, fileOffset: 0 }, { file: files[i], buffer: io, fileOffset: holeAt });
      models[i].write(0, a);
      models[i].write(holeAt, b);
    }
    rng.next();
    const shuffled = [...ops].sort(() => rng.next() - 0.5);
    const wr = await client.batchWrite(shuffled);
    wr.forEach((r, i) => {
      expect(r.error).toBeNull();
      expect(r.bytes).toBe(shuffled[i].buffer.byteLength);
    });
    for (let i = 0; i < N; i++) expect(firstDiff(readFileSync(paths[i]), models[i].contents()), `seed ${seed} file ${i}`).toBe(-1);

    // Read every file whole plus a read past its end, all in one batch.
    const reads = files.flatMap((file, i) => [
      { file, buffer: Buffer.alloc(models[i].size + 10), fileOffset: 0 },
      { file, buffer: Buffer.alloc(100), fileOffset: models[i].size + 1 },
    ]);
    const rd = await client.batchRead(reads);
    for (let i = 0; i < N; i++) {
      const whole = rd[2 * i];
      expect(whole.error).toBeNull();
      expect(whole.bytes).toBe(models[i].size);
      expect(whole.eof).toBe(true);
      expect(firstDiff(reads[2 * i].buffer.subarray(0, whole.bytes), readFileSync(paths[i]))).toBe(-1);
      expect(rd[2 * i + 1]).toEqual({ bytes: 0, eof: true, error: null });
    }
    for (const op of ops) if (op.buffer instanceof IoBuffer) op.buffer.free();
    await Promise.all(files.map((f) => f.close()));
    await client.close();
  });
});

describe('large writes and 64-bit offsets', () => {
  it('writes of several MiB from IoBuffer and Buffer land intact', async () => {
    const rng = new Rng(seedFor('large'));
    const client = testConnect({ queueDepth: 8 });
    const p = tmp.path('large');
    const f = await client.open(p, 'w+');
    const a = client.alloc(5 * MiB + 4096); // aligned: O_DIRECT
    rng.fill(a.bytes);
    const b = rng.bytes(3 * MiB + 17); // unaligned length: buffered
    expect(await f.write(a, 0)).toBe(a.byteLength);
    expect(await f.write(b, a.byteLength)).toBe(b.length);
    const disk = readFileSync(p);
    expect(disk.length).toBe(a.byteLength + b.length);
    expect(firstDiff(disk.subarray(0, a.byteLength), a.bytes)).toBe(-1);
    expect(firstDiff(disk.subarray(a.byteLength), b)).toBe(-1);
    // And back through the library in one 8 MiB read.
    const back = client.alloc(disk.length + 4096);
    const [r] = await f.batchRead([{ buffer: back, fileOffset: 0 }]);
    expect(r).toEqual({ bytes: disk.length, eof: true, error: null });
    expect(back.bytes.subarray(0, disk.length).equals(disk)).toBe(true);
    a.free();
    back.free();
    await f.close();
    await client.close();
  });

  it('offsets beyond 4 GiB and 1 TiB (sparse) agree with node:fs', async () => {
    const rng = new Rng(seedFor('offsets'));
    const client = testConnect({ queueDepth: 8 });
    const p = tmp.path('far');
    const f = await client.open(p, 'w+');
    const places = [2 ** 32 - 10, 2 ** 40 + 123];
    for (const at of places) {
      const data = rng.bytes(100 * KiB);
      expect(await f.write(data, at)).toBe(data.length);
    }
    const fd = openSync(p, 'r');
    const size = fstatSync(fd).size;
    expect(size).toBe(2 ** 40 + 123 + 100 * KiB);
    expect((await f.stat()).size).toBe(size);
    for (const at of [...places, 2 ** 32 - 4096 * 3, size - 5000, size, size + 1]) {
      const mine = Buffer.alloc(64 * KiB);
      const theirs = Buffer.alloc(64 * KiB);
      const [r] = await f.batchRead([{ buffer: mine, fileOffset: at }]);
      const n = readSync(fd, theirs, 0, theirs.length, at);
      expect(r.error).toBeNull();
      expect(r.bytes).toBe(n);
      expect(r.eof).toBe(n < theirs.length);
      expect(mine.equals(theirs)).toBe(true);
    }
    closeSync(fd);
    await f.close();
    await client.close();
  });
});

describe('many views of one ArrayBuffer', () => {
  it("small Buffers from Node's shared pool (one ArrayBuffer, many offsets) each get their own bytes", async () => {
    const rng = new Rng(seedFor('pool'));
    const client = testConnect({ queueDepth: 8 });
    const p = tmp.path('pool');
    const content = rng.bytes(64 * KiB);
    writeFileSync(p, content);
    const f = await client.open(p, 'r+');
    const views = Array.from({ length: 40 }, () => Buffer.allocUnsafe(rng.int(1, 150)));
    const groups = new Map<ArrayBufferLike, number>();
    for (const v of views) groups.set(v.buffer, (groups.get(v.buffer) ?? 0) + 1);
    expect(Math.max(...groups.values())).toBeGreaterThan(10); // many really share one ArrayBuffer
    const offsets = views.map(() => rng.int(0, content.length - 200));
    const results = await f.batchRead(views.map((buffer, i) => ({ buffer, fileOffset: offsets[i] })));
    views.forEach((v, i) => {
      expect(results[i]).toEqual({ bytes: v.length, eof: false, error: null });
      expect(v.equals(content.subarray(offsets[i], offsets[i] + v.length)), `view ${i}`).toBe(true);
    });
    // And writes from them, to disjoint places.
    const model = new FileModel(content);
    const writes = views.map((v, i) => {
      v.set(rng.bytes(v.length));
      model.write(i * 200, v);
      return { buffer: v, fileOffset: i * 200 };
    });
    const wr = await f.batchWrite(writes);
    expect(wr.every((r, i) => r.error === null && r.bytes === views[i].length)).toBe(true);
    expect(readFileSync(p).equals(model.contents())).toBe(true);
    await f.close();
    await client.close();
  });
});

describe('SharedArrayBuffer memory', () => {
  // A Uint8Array over a SharedArrayBuffer is an ArrayBufferView like any other; the API takes
  // `IoBuffer | ArrayBufferView`.
  it('reads into and writes from a Uint8Array over a SharedArrayBuffer', async () => {
    const client = testConnect({ queueDepth: 4 });
    const p = tmp.path('sab');
    writeFileSync(p, Buffer.from('0123456789abcdef'));
    const f = await client.open(p, 'r+');
    const sab = new SharedArrayBuffer(32);
    const view = new Uint8Array(sab, 4, 8);
    try {
      const [r] = await f.batchRead([{ buffer: view, fileOffset: 2 }]);
      expect(r).toEqual({ bytes: 8, eof: false, error: null });
      expect(Buffer.from(view).toString()).toBe('23456789');
      view.set(Buffer.from('ABCDEFGH'));
      expect(await f.write(view, 8)).toBe(8);
      expect(readFileSync(p).toString()).toBe('01234567ABCDEFGH');
    } finally {
      await f.close();
      await client.close();
    }
  });
});
