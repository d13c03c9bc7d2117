// The cache's shard files and where things are in them: set s lives in shard s mod shards, at
// set region floor(s / shards); a set region is [ directory 4 KiB ][ slot 0 ] ... [ slot ways-1 ].
// Each shard is open twice: for slots (O_DIRECT where the file system has it, its descriptor opened
// by the first slot op), and through the page cache for the directories, which every put reads and
// rewrites in small pieces.
import { join } from 'node:path';
import type { Client, FileIoOp } from '../core/client';
import type { OpResult, ThreeFSError } from '../core/errors';
import type { File } from '../core/file';
import type { IoBuffer } from '../core/io-buffer';
import { setBytesOf, shardName } from './meta';
import { DIR_BYTES, DIR_ENTRY, SetDirectory } from './set-directory';
import { HEAD_READ, HEADER_BYTES } from './slot-header';
import type { Counters } from './stats';
import type { KVGeometry } from './types';

/** A way of a set whose directory entry changed (in `dir`) and must be written. */
export type DirWay = { set: number; way: number; dir: SetDirectory };

export class Shards {
  readonly #client: Client;
  readonly #geometry: KVGeometry;
  readonly #files: File[]; // slots: O_DIRECT where the file system has it
  readonly #dirFiles: File[]; // set directories: kept in the page cache
  readonly #setBytes: number;
  readonly #stats: Counters;
  /**
   * What a read takes of a header block (its last bytes, the fields at their end): HEAD_READ, or
   * the slot files' O_DIRECT alignment where that is more: a read from HEAD_AT there would not be
   * aligned, and 'auto' would send it, payload and all, through the page cache.
   */
  readonly headRead: number;

  private constructor(client: Client, geometry: KVGeometry, files: File[], dirFiles: File[], headRead: number, stats: Counters) {
    this.#client = client;
    this.#geometry = geometry;
    this.#files = files;
    this.#dirFiles = dirFiles;
    this.#setBytes = setBytesOf(geometry);
    this.headRead = headRead;
    this.#stats = stats;
  }

  static async open(client: Client, root: string, geometry: KVGeometry, stats: Counters): Promise<Shards> {
    const files: File[] = [];
    const dirFiles: File[] = [];
    try {
      for (let s = 0; s < geometry.shards; s++) {
        const path = join(root, shardName(s));
        files.push(await client.open(path, 'r+'));
        dirFiles.push(await client.open(path, 'r+', undefined, { direct: 'never' }));
      }
      return new Shards(client, geometry, files, dirFiles, await headReadOf(files[0]), stats);
    } catch (e) {
      await Promise.allSettled([...files, ...dirFiles].map((f) => f.close()));
      throw e;
    }
  }

  fileOf(set: number): File {
    return this.#files[set % this.#geometry.shards];
  }

  dirFileOf(set: number): File {
    return this.#dirFiles[set % this.#geometry.shards];
  }

  dirOffset(set: number): number {
    return Math.floor(set / this.#geometry.shards) * this.#setBytes;
  }

  slotOffset(set: number, way: number): number {
    return this.dirOffset(set) + DIR_BYTES + way * this.#geometry.slotBytes;
  }

  /** Each set's directory; null where its read failed (that read's error in `errors[i]`, if given). */
  async readDirs(sets: readonly number[], into: IoBuffer, errors?: (ThreeFSError | undefined)[]): Promise<(SetDirectory | null)[]> {
    const ops = sets.map((set, i) => ({ file: this.dirFileOf(set), buffer: into.subarray(i * DIR_BYTES, (i + 1) * DIR_BYTES), fileOffset: this.dirOffset(set) }));
    const results = ops.length ? await this.#client.batchRead(ops) : [];
    return results.map((r, i) => {
      if (r.error) {
        if (errors) errors[i] = r.error;
        return null;
      }
      this.#stats.bytesRead += r.bytes;
      return SetDirectory.parse(into.bytes.subarray(i * DIR_BYTES, (i + 1) * DIR_BYTES), this.#geometry.ways);
    });
  }

  /** Reads of the header fields of these slots, one `headRead`-byte piece of `into` each. */
  headReads(slots: readonly { set: number; way: number }[], into: IoBuffer): Promise<OpResult[]> {
    const R = this.headRead;
    return this.#client.batchRead(slots.map((x, k) => ({ file: this.fileOf(x.set), buffer: into.subarray(k * R, (k + 1) * R), fileOffset: this.slotOffset(x.set, x.way) + HEADER_BYTES - R })));
  }

  /** Where the fields of the k-th header read by headReads() start in its memory. */
  headAt(k: number): number {
    return (k + 1) * this.headRead - HEAD_READ;
  }

  /** Writes of these ways' directory entries, each on its own (DIR_ENTRY bytes at its place), from `mem`. */
  entryWrites(ways: readonly DirWay[], mem: IoBuffer): FileIoOp[] {
    const bytes = mem.bytes;
    return ways.map(({ set, way, dir }, k) => {
      dir.copyEntry(way, bytes, k * DIR_ENTRY);
      return { file: this.dirFileOf(set), buffer: mem.subarray(k * DIR_ENTRY, (k + 1) * DIR_ENTRY), fileOffset: this.dirOffset(set) + SetDirectory.offsetOf(way) };
    });
  }

  /** Runs writes in one batch and counts the bytes written. */
  async write(ops: FileIoOp[]): Promise<OpResult[]> {
    const rs = ops.length ? await this.#client.batchWrite(ops) : [];
    for (const r of rs) if (!r.error) this.#stats.bytesWritten += r.bytes;
    return rs;
  }

  close(): Promise<void[]> {
    return Promise.all([...this.#files, ...this.#dirFiles].map((f) => f.close()));
  }
}

/**
 * The shards share a directory, so one file system: the first says what O_DIRECT needs (USRBIO
 * needs no alignment). Past 4 KiB the payload reads are not aligned either.
 */
async function headReadOf(file: File): Promise<number> {
  const { engineOption, direct } = await file.stat();
  if (engineOption !== 'hf3fs' && direct.active) return Math.min(HEADER_BYTES, Math.max(HEAD_READ, direct.memoryAlign, direct.offsetAlign));
  return HEAD_READ;
}
