// What the streams need of a file: File implements it. The streams depend on this, not on File,
// so file.ts can attach them as methods and imports still go one way.
import type { BatchOptions, IoOp } from '../batch';
import type { OpResult } from '../errors';
import type { IoBuffer } from '../io-buffer';

/** @internal */
export interface StreamFile {
  readonly path: string;
  readonly closed: boolean;
  read(buffer: IoBuffer | ArrayBufferView, fileOffset: number, length?: number, options?: BatchOptions): Promise<number>;
  batchWrite(ops: readonly IoOp[], options?: BatchOptions): Promise<OpResult[]>;
  datasync(): Promise<void>;
  close(): Promise<void>;
  /** Registered memory of the file's client, packed (one iov block on 3FS). */
  allocBuffer(bytes: number): IoBuffer;
  /** The alignment O_DIRECT needs of offsets and lengths (at least a page). */
  readonly ioAlign: number;
  /** Counts bytes copied out of registered memory in the client's metrics (copiedBytes). */
  countCopy(bytes: number): void;
}
