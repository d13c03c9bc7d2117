// safetensors (Hugging Face's weights format), read for loading checkpoints:
//
//   u64 N | N bytes of JSON: { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {..} } | data
//
// Offsets are relative to the data that follows the header; tensors are little-endian, row-major,
// packed without gaps or overlaps. Loading a set of tensors (or one tensor-parallel part of each)
// is one batch of ranges, adjacent ones coalesced, into one registered buffer.
import { clientFor } from '../clients';
import { allocPacked, type Client } from '../core/client';
import { argError, ThreeFSError, type ErrorDetails } from '../core/errors';
import type { File } from '../core/file';
import type { IoBuffer } from '../core/io-buffer';
import { ReadPlan, readAlignment } from './read-plan';

/** The header limit of the reference implementation: larger headers are refused before reading. */
export const MAX_HEADER_BYTES = 100_000_000;

type TypedArrayOf = Int8ArrayConstructor | Uint8ArrayConstructor | Int16ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor | BigInt64ArrayConstructor | BigUint64ArrayConstructor;

// Bits per element, and the JS typed array of the same element type where there is one.
const DTYPES: Record<string, { bits: number; array?: TypedArrayOf }> = {
  BOOL: { bits: 8, array: Uint8Array },
  U8: { bits: 8, array: Uint8Array },
  I8: { bits: 8, array: Int8Array },
  F8_E4M3: { bits: 8 },
  F8_E5M2: { bits: 8 },
  F8_E8M0: { bits: 8 },
  F4: { bits: 4 },
  F6_E2M3: { bits: 6 },
  F6_E3M2: { bits: 6 },
  I16: { bits: 16, array: Int16Array },
  U16: { bits: 16, array: Uint16Array },
  F16: { bits: 16, array: (globalThis as { Float16Array?: Float32ArrayConstructor }).Float16Array },
  BF16: { bits: 16 },
  I32: { bits: 32, array: Int32Array },
  U32: { bits: 32, array: Uint32Array },
  F32: { bits: 32, array: Float32Array },
  C64: { bits: 64 },
  I64: { bits: 64, array: BigInt64Array },
  U64: { bits: 64, array: BigUint64Array },
  F64: { bits: 64, array: Float64Array },
};

export interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute offset of its first byte in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

/** One part of a tensor along a dimension: part `index` of `parts` (sizes as ceil(size / parts)). */
export interface TensorSlice {
  dim: number;
  parts: number;
  index: number;
}

export interface LoadOptions {
  /**
   * Tensor parallelism: load part of each tensor. A function chooses per tensor (undefined: the
   * whole tensor); a TensorSlice applies to every tensor with more than `dim` dimensions.
   */
  slice?: TensorSlice | ((tensor: TensorInfo) => TensorSlice | undefined);
  /** Read across gaps up to this many bytes between tensors to coalesce their ranges. Default 64 KiB. */
  maxGap?: number;
  /**
   * Load into this registered buffer (from client.alloc(); large enough for the load, see
   * SafetensorsFile.bytesFor()) instead of a new one: reloads reuse memory. It stays the caller's:
   * free() of the result does not free it.
   */
  into?: IoBuffer;
  signal?: AbortSignal;
}

export interface LoadedTensor {
  readonly name: string;
  readonly dtype: string;
  /** The shape loaded (the slice's, for a part). */
  readonly shape: readonly number[];
  /** The bytes, a view into the registered buffer. */
  readonly bytes: Buffer;
  /**
   * A typed array of the dtype over the same memory, where JS has that type (not for F16 before
   * Float16Array, BF16, F8, F4/F6, C64) and the bytes sit at a multiple of the element size.
   */
  readonly array?: ArrayBufferView;
}

/** Tensors loaded together: views into one registered buffer, freed by free(). */
export class LoadedTensors implements Disposable {
  readonly tensors: ReadonlyMap<string, LoadedTensor>;
  readonly buffer: IoBuffer;
  readonly #owned: boolean;

  /** @internal */
  constructor(tensors: Map<string, LoadedTensor>, buffer: IoBuffer, owned: boolean) {
    this.tensors = tensors;
    this.buffer = buffer;
    this.#owned = owned;
  }

  get(name: string): LoadedTensor | undefined {
    return this.tensors.get(name);
  }

  /** Frees the buffer the load made (a buffer passed as `into` stays the caller's). */
  free(): void {
    if (this.#owned) this.buffer.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

function headerError(path: string, message: string, details: ErrorDetails = {}): ThreeFSError {
  return argError('ERR_SAFETENSORS_BAD_HEADER', `${message}: '${path}'`, { path, ...details });
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses and checks a header (the JSON text) for a file of `fileSize` bytes. @internal */
export function parseHeader(path: string, json: string, headerBytes: number, fileSize: number): { tensors: Map<string, TensorInfo>; metadata?: Record<string, string> } {
  const parsed = parseJsonObject(path, json);
  const dataStart = 8 + headerBytes;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(parsed)) {
    if (name !== '__metadata__') tensors.set(name, tensorInfo(path, name, value, dataStart));
    else if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
      throw headerError(path, '__metadata__ must map strings to strings');
    } else metadata = value as Record<string, string>;
  }
  checkTiling(path, tensors, dataStart, fileSize);
  return { tensors, metadata };
}

function parseJsonObject(path: string, json: string): Record<string, unknown> {
  if (!json.startsWith('{')) throw headerError(path, 'the header is not a JSON object');
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw headerError(path, `the header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw headerError(path, 'the header is not a JSON object');
  return parsed as Record<string, unknown>;
}

/** One tensor's entry, checked: a known dtype, a shape, and data_offsets that fit them. */
function tensorInfo(path: string, name: string, value: unknown, dataStart: number): TensorInfo {
  const t = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (t === null || typeof t !== 'object') throw headerError(path, `tensor '${name}' is not an object`);
  const dtype = typeof t.dtype === 'string' && Object.hasOwn(DTYPES, t.dtype) ? DTYPES[t.dtype] : undefined; // not 'toString' or '__proto__'
  if (!dtype) throw headerError(path, `tensor '${name}': unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) throw headerError(path, `tensor '${name}': shape must be a list of whole numbers`);
  const offsets = t.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isCount(offsets[0]) || !isCount(offsets[1]) || offsets[1] < offsets[0]) {
    throw headerError(path, `tensor '${name}': data_offsets must be [begin, end] with begin <= end`);
  }
  const elements = (t.shape as number[]).reduce((a, b) => a * b, 1);
  const bits = elements * dtype.bits;
  if (!Number.isSafeInteger(bits) || bits % 8 !== 0 || bits / 8 !== offsets[1] - offsets[0]) {
    throw headerError(path, `tensor '${name}': ${offsets[1] - offsets[0]} bytes, but a ${t.dtype} tensor of shape [${t.shape}] takes ${bits / 8}`);
  }
  return Object.freeze({ name, dtype: t.dtype as string, shape: Object.freeze([...(t.shape as number[])]), offset: dataStart + offsets[0], byteLength: offsets[1] - offsets[0] });
}

/** As the reference checks: the tensors tile the data exactly, no overlap, no gap, nothing after. */
function checkTiling(path: string, tensors: Map<string, TensorInfo>, dataStart: number, fileSize: number): void {
  const dataLength = fileSize - dataStart;
  const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let end = dataStart;
  for (const t of sorted) {
    if (t.offset !== end) {
      throw headerError(path, t.offset < end ? `tensor '${t.name}' overlaps the tensor before it` : `a gap of ${t.offset - end} bytes before tensor '${t.name}'`, { offset: t.offset });
    }
    end = t.offset + t.byteLength;
  }
  if (end - dataStart !== dataLength) {
    const code = end - dataStart > dataLength ? 'ERR_SAFETENSORS_TRUNCATED' : 'ERR_SAFETENSORS_BAD_HEADER';
    throw argError(code, `the tensors take ${end - dataStart} bytes of data, the file has ${dataLength}: '${path}'`, { path, offset: fileSize });
  }
}

/** Ranges of a part of a tensor: `count` runs of `run` bytes, `stride` apart, from `first`. */
function sliceRanges(t: TensorInfo, s: TensorSlice): { shape: number[]; first: number; run: number; stride: number; count: number } {
  const { dim, parts, index } = s;
  if (!Number.isInteger(dim) || dim < 0 || dim >= t.shape.length) throw argError('ERR_OUT_OF_RANGE', `tensor '${t.name}' has ${t.shape.length} dimensions; slice dim ${dim} is out of range`);
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(index) || index < 0 || index >= parts) {
    throw argError('ERR_OUT_OF_RANGE', `slice parts must be >= 1 and index from 0 to parts - 1, got part ${index} of ${parts}`);
  }
  const bits = DTYPES[t.dtype].bits;
  const size = t.shape[dim];
  const per = Math.ceil(size / parts);
  const from = Math.min(size, index * per);
  const to = Math.min(size, from + per);
  const inner = t.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const outer = t.shape.slice(0, dim).reduce((a, b) => a * b, 1);
  if ((inner * bits) % 8 !== 0) throw argError('ERR_INVALID_ARG_VALUE', `tensor '${t.name}' (${t.dtype}): a part along dim ${dim} does not start on a byte`);
  const rowBytes = (inner * bits) / 8;
  const shape = [...t.shape];
  shape[dim] = to - from;
  // An empty part (no rows, or rows of no bytes) has nothing to read, however many runs its shape has.
  const run = (to - from) * rowBytes;
  return { shape, first: t.offset + from * rowBytes, run, stride: size * rowBytes, count: run > 0 ? outer : 0 };
}

/** A safetensors file open for loading. Made by openSafetensors(). */
export class SafetensorsFile implements AsyncDisposable {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>> | undefined;
  readonly #client: Client;
  readonly #file: File;
  readonly #align: number;

  /** @internal */
  constructor(client: Client, file: File, align: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string> | undefined) {
    this.#client = client;
    this.#file = file;
    this.#align = align;
    this.path = file.path;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Tensor names, in file order. */
  names(): string[] {
    return [...this.tensors.values()].sort((a, b) => a.offset - b.offset).map((t) => t.name);
  }

  /**
   * Loads tensors (default: all) into one registered buffer, in one submission. Whole tensors
   * next to each other in the file are read as one range; parts along a dimension other than the
   * first are read row by row straight into a contiguous tensor of the part's shape.
   */
  async load(names: readonly string[] = this.names(), options: LoadOptions = {}): Promise<LoadedTensors> {
    options ??= {};
    const { plan, chosen, placed } = this.#plan(names, options);
    const into = options.into;
    if (into !== undefined) {
      if (into === null || typeof into !== 'object' || typeof into.subarray !== 'function' || into.freed) throw argError('ERR_INVALID_ARG_TYPE', 'into must be a live IoBuffer from client.alloc()');
      if (into.byteLength < plan.bytes) throw argError('ERR_OUT_OF_RANGE', `into has ${into.byteLength} bytes; this load needs ${plan.bytes}`);
    }
    const buffer = into ?? allocPacked(this.#client, Math.max(plan.bytes, 1));
    try {
      const failed = await plan.run(this.#client, buffer, options.signal);
      if (failed) {
        const e = failed.error;
        if (e) throw new ThreeFSError(e.code, e.message, { errno: e.errno, syscall: e.syscall, path: this.path, offset: failed.offset, cause: e });
        throw argError('ERR_SAFETENSORS_TRUNCATED', `the file ends at ${failed.offset}, inside tensor data: '${this.path}'`, { path: this.path, offset: failed.offset });
      }
      const memory = buffer.bytes;
      const out = new Map<string, LoadedTensor>();
      for (const { t } of chosen) {
        const p = placed.get(t.name)!;
        const type = DTYPES[t.dtype];
        const size = type.bits / 8;
        // An empty tensor (or part) has no place in the buffer.
        const bytes = p.length === 0 ? Buffer.alloc(0) : memory.subarray(p.at, p.at + p.length);
        const aligned = type.array !== undefined && (bytes.byteOffset % size === 0 || p.length === 0);
        const array = aligned ? new type.array!(bytes.buffer as ArrayBuffer, bytes.byteOffset, p.length / size) : undefined;
        out.set(t.name, Object.freeze({ name: t.name, dtype: t.dtype, shape: Object.freeze([...p.shape]), bytes, ...(array ? { array } : {}) }));
      }
      return new LoadedTensors(out, buffer, into === undefined);
    } catch (e) {
      if (into === undefined) buffer.free();
      throw e;
    }
  }

  /** Bytes of buffer a load of these tensors (with these options) takes: the size `into` needs. */
  bytesFor(names: readonly string[] = this.names(), options: LoadOptions = {}): number {
    return this.#plan(names, options ?? {}).plan.bytes;
  }

  #plan(names: readonly string[], options: LoadOptions) {
    if (!Array.isArray(names)) throw argError('ERR_INVALID_ARG_TYPE', 'names must be an array of tensor names');
    const maxGap = options.maxGap ?? 64 * 1024;
    if (!isCount(maxGap)) throw argError('ERR_OUT_OF_RANGE', 'maxGap must be a whole number >= 0');
    const chosen = [...new Set(names)].map((name) => {
      const t = this.tensors.get(name);
      if (!t) throw argError('ERR_SAFETENSORS_NO_TENSOR', `no tensor '${String(name)}' in '${this.path}'`, { path: this.path });
      const s = typeof options.slice === 'function' ? options.slice(t) : options.slice && t.shape.length > options.slice.dim ? options.slice : undefined;
      return { t, part: s ? sliceRanges(t, s) : undefined };
    });
    const plan = new ReadPlan();
    const placed = new Map<string, { at: number; length: number; shape: readonly number[] }>();
    // Whole tensors (and parts that are one range) in file order, coalesced across small gaps.
    const runs: { start: number; end: number; members: { name: string; offset: number; length: number; shape: readonly number[] }[] }[] = [];
    const contiguous = chosen
      .map(({ t, part }) => (!part ? { name: t.name, offset: t.offset, length: t.byteLength, shape: t.shape } : part.count <= 1 ? { name: t.name, offset: part.first, length: part.count === 0 ? 0 : part.run, shape: part.shape } : undefined))
      .filter((m) => m !== undefined)
      .sort((a, b) => a.offset - b.offset);
    for (const m of contiguous) {
      const last = runs[runs.length - 1];
      if (last && m.offset - last.end <= maxGap) {
        last.end = Math.max(last.end, m.offset + m.length);
        last.members.push(m);
      } else runs.push({ start: m.offset, end: m.offset + m.length, members: [m] });
    }
    runs.forEach((r, k) => {
      const at = plan.add(this.#file, r.start, r.end - r.start, this.#align, k);
      for (const m of r.members) placed.set(m.name, { at: at + (m.offset - r.start), length: m.length, shape: m.shape });
    });
    // Parts of several runs (a column of a matrix): each run straight to its place in the part.
    for (const { t, part } of chosen) {
      if (!part || part.count <= 1) continue;
      const at = plan.reserve(part.run * part.count);
      for (let o = 0; o < part.count; o++) plan.place(this.#file, part.first + o * part.stride, part.run, at + o * part.run, runs.length);
      placed.set(t.name, { at, length: part.run * part.count, shape: part.shape });
    }
    return { plan, chosen, placed };
  }

  close(): Promise<void> {
    return this.#file.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export interface OpenSafetensorsOptions {
  /** Default: clientFor(path) (USRBIO on a 3FS mount). */
  client?: Client;
  /** 'auto' (default): O_DIRECT where the file system has it (aligned ranges around the tensors); 'never': through the page cache. */
  direct?: 'auto' | 'never';
}

/** Opens a safetensors file: reads and checks its header. */
export async function openSafetensors(path: string, options: OpenSafetensorsOptions = {}): Promise<SafetensorsFile> {
  options ??= {};
  const direct = options.direct ?? 'auto';
  if (direct !== 'auto' && direct !== 'never') throw argError('ERR_INVALID_ARG_VALUE', `direct must be 'auto' or 'never'`);
  const client = options.client ?? clientFor(path);
  const file = await client.open(path, 'r', 0o666, { direct });
  try {
    const st = await file.stat();
    const size = st.size;
    const trunc = (message: string, offset: number) => argError('ERR_SAFETENSORS_TRUNCATED', `${message}: '${path}'`, { path, offset });
    if (size < 8) throw trunc(`the file is ${size} bytes, shorter than the 8-byte header length`, size);
    const head = Buffer.alloc(8);
    if ((await file.read(head, 0)) < 8) throw trunc('the file ends inside the header length', 0);
    const n = head.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) throw argError('ERR_SAFETENSORS_HEADER_TOO_LARGE', `the header is ${n} bytes, more than the limit of ${MAX_HEADER_BYTES}: '${path}'`, { path, offset: 0 });
    const headerBytes = Number(n);
    if (8 + headerBytes > size) throw trunc(`the header is ${headerBytes} bytes, but the file has only ${size - 8} after its length`, size);
    const json = Buffer.alloc(headerBytes);
    if ((await file.read(json, 8)) < headerBytes) throw trunc('the file ends inside the header', 8);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    } catch (e) {
      throw headerError(path, 'the header is not valid UTF-8', { cause: e });
    }
    const { tensors, metadata } = parseHeader(path, text.trimEnd(), headerBytes, size);
    return new SafetensorsFile(client, file, readAlignment(st), tensors, metadata);
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}
