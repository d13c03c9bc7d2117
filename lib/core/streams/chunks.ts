// file.chunks(): the range as an async iterable, over the read-ahead. Breaking out of the loop (or
// an error) cancels the reads in flight and frees their memory before the loop's exit completes.
import { borrowFlag, readPlan, type ChunksOptions, type ReadPlan } from './options';
import { ReadAhead } from './read-ahead';
import { ownedCopy } from './read-stream';
import type { StreamFile } from './source';

/** Options are checked at the call, as node:fs checks a stream's, not at the loop's first step. */
export function chunks(file: StreamFile, options?: ChunksOptions): AsyncGenerator<Buffer, void, undefined> {
  return iterate(file, readPlan(options), borrowFlag(options));
}

async function* iterate(file: StreamFile, plan: ReadPlan, borrow: boolean): AsyncGenerator<Buffer, void, undefined> {
  const ahead = new ReadAhead(file, plan);
  try {
    for (;;) {
      const chunk = await ahead.next();
      if (!chunk) return;
      if (!borrow) {
        yield ownedCopy(file, chunk);
        continue;
      }
      try {
        yield chunk.bytes;
      } finally {
        chunk.release();
      }
    }
  } finally {
    await ahead.close();
  }
}
