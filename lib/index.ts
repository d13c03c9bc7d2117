export { Client, connect, open, alloc, defaultClient } from './client';
export type { ClientOptions, OpenOptions, FileIoOp, ClientInfo, ClientMetrics } from './client';
export { File } from './file';
export type { FileStat, DirectMode } from './file';
export { IoBuffer } from './io-buffer';
export { ThreeFSError } from './errors';
export type { OpResult, ErrorDetails } from './errors';
export type { IoOp, BatchOptions } from './batch';
export type { OpenFlags } from './flags';
