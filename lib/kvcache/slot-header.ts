// The slot header codec. A slot is [ header block 4 KiB ][ payload, padded to 4 KiB ]; the
// header's fields sit in the block's last 512 bytes, next to the payload, so that a get reads
// fields and payload in one 512-byte-aligned op while a put still writes whole 4 KiB sectors.
//
// Fields (little-endian, from HEAD_AT in the block): magic u32 @0 | version u16 @4 | flags u16 @6 |
// id 16 B @8 | length u32 @24 | reserved u32 @28 | epoch f64 @32 | expiry f64 @40 | reserved |
// header CRC32C u32 @60 over bytes 0..60 | payload CRC32C u32 @64, sealed by the engine as the slot
// is written. The rest of the block is zero. (A damaged payload CRC is a mismatch like a damaged
// payload.)
import { crc32cBytes } from '../core/crc32c';

export const KVCACHE_FORMAT = 3;
export const ALIGN = 4096;
export const HEADER_BYTES = 4096; // the header block in front of each payload
export const HEAD_READ = 512; // the header's fields: the last 512 bytes of the block
export const HEAD_AT = HEADER_BYTES - HEAD_READ; // where the fields start in the block
export const SLOT_MAGIC = 0x3143564b; // 'KVC1' little-endian
const HEADER_CRC_AT = 60;
export const PAYLOAD_CRC_AT = 64; // outside the header CRC's bytes: the engine seals it as the slot goes out

export const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Bytes of a slot holding `length` payload bytes: the header block and the padded payload. */
export function slotSpan(length: number): number {
  return HEADER_BYTES + roundUp(length, ALIGN);
}

/** Writes a slot's header block (HEADER_BYTES: zeros, then the fields at HEAD_AT) at `block` in `h`. */
export function writeHeader(h: Buffer, block: number, id: Buffer, length: number, epoch: number, expiry: number): void {
  h.fill(0, block, block + HEADER_BYTES);
  const at = block + HEAD_AT;
  h.writeUInt32LE(SLOT_MAGIC, at);
  h.writeUInt16LE(KVCACHE_FORMAT, at + 4);
  id.copy(h, at + 8);
  h.writeUInt32LE(length, at + 24);
  h.writeDoubleLE(epoch, at + 32);
  h.writeDoubleLE(expiry, at + 40);
  h.writeUInt32LE(crc32cBytes(h, at, at + HEADER_CRC_AT), at + HEADER_CRC_AT);
}

/** Whether the header fields at `at` in `h` name `id` (their bytes 8..24). */
export function holdsId(h: Buffer, at: number, id: Buffer): boolean {
  for (let b = 0; b < 16; b++) if (h[at + 8 + b] !== id[b]) return false;
  return true;
}

/** Whether the header fields at `at` in `h` are a written header naming `id`. */
export function headerNames(h: Buffer, at: number, id: Buffer): boolean {
  return h.readUInt32LE(at) === SLOT_MAGIC && holdsId(h, at, id);
}

/** The header fields at `at` in `h`, checked against the key and length its listing gave. */
export function checkHeader(h: Buffer, at: number, id: Buffer, length: number, pageBytes: number, now: number): 'ok' | 'corrupt' | 'raced' {
  const magic = h.readUInt32LE(at);
  if (magic === 0) return 'raced'; // deleted or never written
  if (magic !== SLOT_MAGIC || h.readUInt16LE(at + 4) !== KVCACHE_FORMAT) return 'corrupt';
  // In JS, and no views: this runs for every hit, on the JS thread.
  if (crc32cBytes(h, at, at + HEADER_CRC_AT) !== h.readUInt32LE(at + HEADER_CRC_AT)) return 'corrupt';
  const len = h.readUInt32LE(at + 24);
  if (len > pageBytes) return 'corrupt';
  if (!holdsId(h, at, id) || len !== length) return 'raced';
  const expiry = h.readDoubleLE(at + 40);
  if (expiry !== 0 && expiry <= now) return 'raced';
  return 'ok';
}

/** Header epochs: milliseconds since the epoch, strictly increasing within a cache (fractions break ties). */
export class EpochClock {
  #last = 0;

  next(): number {
    this.#last = Math.max(Date.now(), this.#last + 1 / 1024);
    return this.#last;
  }
}
