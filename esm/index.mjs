// ESM entry: re-exports the CommonJS build, so `import` and `require` share one addon instance
// and one ThreeFSError class.
import cjs from '../dist/lib/index.js';

export const { Client, connect, open, alloc, defaultClient, File, IoBuffer, ThreeFSError } = cjs;
export default cjs;
