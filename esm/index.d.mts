// The ESM entry's types (index.mjs): the CommonJS build's names, and its module.exports as the default export.
import cjs from '../dist/lib/index.js';
export * from '../dist/lib/index.js';
export default cjs;
