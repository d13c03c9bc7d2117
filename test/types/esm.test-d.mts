// `import` resolves to esm/index.d.mts, `require` to dist/lib/index.d.ts (package.json's exports):
// both entry points must give the same names with the same types, and esm/index.mjs's default
// export (the CommonJS module) its type.
import { expectTypeOf, test } from 'vitest';
import lib, * as esm from '3fs-client';
import type * as cjs from '3fs-client' with { 'resolution-mode': 'require' };

test('import and require see the same API', () => {
  expectTypeOf<Omit<typeof esm, 'default'>>().toEqualTypeOf<Omit<typeof cjs, 'default'>>();
  expectTypeOf(esm.ThreeFSError).toEqualTypeOf<typeof cjs.ThreeFSError>();
  expectTypeOf<esm.OpResult>().toEqualTypeOf<cjs.OpResult>();
});

test('the default export is the CommonJS module', () => {
  expectTypeOf(lib).toEqualTypeOf<typeof cjs.default>();
  expectTypeOf(lib.connect).toEqualTypeOf<typeof esm.connect>();
});
