// ESM entry: re-exports the CommonJS build, so `import` and `require` share one addon instance
// and one ThreeFSError class.
import cjs from '../dist/lib/index.js';

export const {
  Client,
  connect,
  open,
  alloc,
  defaultClient,
  clientFor,
  File,
  IoBuffer,
  ThreeFSError,
  runDoctor,
  formatDoctor,
  loadConfig,
  readLauncherConfig,
  findMount,
  findHf3fsMount,
  listMounts,
  KVCache,
  namespaceHash,
  crc32c,
  crc32cMany,
  crc32cSync,
  crc32Many,
  crc32Sync,
  pageKey,
  pageKeys,
} = cjs;
export default cjs;
