// Every 4 KiB block of a bench file starts with a stamp: a magic word, the block's index, and a
// tag naming the writer (0 for the files the bench makes up front; a fresh number for each write
// run). Reads check the stamps of their first and last block, so an engine that returned the
// wrong bytes (or none) cannot report a fast number; a write run's read-back checks its tag.
export const STAMP_BLOCK = 4096;
const MAGIC = 0x33465342; // '3FSB'

export function stamp(buf: Buffer, bufOffset: number, fileOffset: number, tag = 0): void {
  const block = fileOffset / STAMP_BLOCK;
  buf.writeUInt32LE(MAGIC, bufOffset);
  buf.writeUInt32LE(block % 2 ** 32, bufOffset + 4);
  buf.writeUInt32LE(Math.floor(block / 2 ** 32), bufOffset + 8);
  buf.writeUInt32LE(tag, bufOffset + 12);
}

/** Stamps every 4 KiB block of `buf`, written at `fileOffset`. */
export function stampAll(buf: Buffer, fileOffset: number, length = buf.length, tag = 0): void {
  for (let o = 0; o < length; o += STAMP_BLOCK) stamp(buf, o, fileOffset + o, tag);
}

/** Stamps the first and last 4 KiB blocks of one op's buffer (what verify() checks). */
export function stampEnds(buf: Buffer, fileOffset: number, length: number, tag = 0): void {
  stamp(buf, 0, fileOffset, tag);
  if (length > STAMP_BLOCK) stamp(buf, length - STAMP_BLOCK, fileOffset + length - STAMP_BLOCK, tag);
}

/** Wipes the stamps verify() will check, so a read that left the buffer alone cannot pass. */
export function clearStamps(buf: Buffer, length: number): void {
  buf.writeUInt32LE(0, 0);
  if (length > STAMP_BLOCK) buf.writeUInt32LE(0, length - STAMP_BLOCK);
}

function stampOk(buf: Buffer, bufOffset: number, fileOffset: number, tag: number): boolean {
  const block = fileOffset / STAMP_BLOCK;
  return (
    buf.readUInt32LE(bufOffset) === MAGIC &&
    buf.readUInt32LE(bufOffset + 4) === block % 2 ** 32 &&
    buf.readUInt32LE(bufOffset + 8) === Math.floor(block / 2 ** 32) &&
    buf.readUInt32LE(bufOffset + 12) === tag
  );
}

/** Throws unless `buf` holds what a read of `length` bytes at `fileOffset` should have returned. */
export function verify(buf: Buffer, fileOffset: number, length: number, who: string, tag = 0): void {
  const last = length - STAMP_BLOCK;
  if (!stampOk(buf, 0, fileOffset, tag) || (last > 0 && !stampOk(buf, last, fileOffset + last, tag))) {
    throw new Error(`${who}: the bytes read at offset ${fileOffset} are not the file's (data check failed)`);
  }
}

/** A nonzero tag for one write run's stamps. */
export function writeTag(): number {
  return 1 + Math.floor(Math.random() * (2 ** 32 - 2));
}
