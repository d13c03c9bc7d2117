// Issue 20 item 6: the smaller rough edges a new user met. Paths as node:fs takes them (URL,
// Buffer); alloc() past one ArrayBuffer's limit, or of a string, refused with our error in plain
// words; free() of a subarray() view refused (it would free the whole allocation); memory of another
// client refused with what to do instead.
import { existsSync, readFileSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, type Client } from '../../lib/index';
import { failure, HF3FS, makeTmpDir, testConnect } from '../helpers';

const tmp = makeTmpDir('rough-edges');
let client: Client;
beforeAll(() => {
  client = testConnect();
});
afterAll(async () => {
  await client.close();
  tmp.cleanup();
});

describe('rough edges', () => {
  it('open() takes a file: URL and a Buffer as node:fs does, on a client and at the top level', async () => {
    const byUrl = tmp.path('by url');
    const byBuffer = tmp.path('by-buffer');
    for (const [path, like] of [
      [byUrl, pathToFileURL(byUrl)],
      [byBuffer, Buffer.from(byBuffer)],
    ] as const) {
      const f = await client.open(like, 'w');
      expect(f.path).toBe(path);
      await f.write(Buffer.from('hello'), 0);
      await f.close();
      expect(readFileSync(path, 'utf8')).toBe('hello');
      if (!HF3FS) {
        const g = await open(like, 'r');
        expect(g.path).toBe(path);
        await g.close();
      }
    }
    expect((await failure(() => client.open(new URL('http://example.com/x'), 'w'))).code).toBe('ERR_INVALID_URL_SCHEME');
    expect((await failure(() => client.open(Buffer.from('a\0b'), 'w'))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect(existsSync(tmp.path('a'))).toBe(false);
  });

  it('alloc() past buffer.constants.MAX_LENGTH: our ERR_OUT_OF_RANGE, saying the limit', async () => {
    const e = await failure(() => client.alloc(bufferConstants.MAX_LENGTH + 1));
    expect(e.code).toBe('ERR_OUT_OF_RANGE');
    expect(e.message).toContain(`at most ${bufferConstants.MAX_LENGTH}`);
    expect(e.message).toContain('buffer.constants.MAX_LENGTH');
  });

  it('alloc("4096"): says it got a string', async () => {
    const e = await failure(() => client.alloc('4096' as never));
    expect(e.code).toBe('ERR_OUT_OF_RANGE');
    expect(e.message).toContain('got the string "4096"');
  });

  it('free() of a subarray() view is refused and frees nothing; the allocation frees itself and its views', async () => {
    const io = client.alloc(8192);
    const view = io.subarray(4096);
    const e = await failure(() => view.free());
    expect(e.code).toBe('ERR_BUFFER_VIEW');
    expect(io.freed).toBe(false);
    io.bytes[0] = 7; // still ours
    view[Symbol.dispose](); // a view's dispose leaves the memory to its allocation
    expect(io.freed).toBe(false);
    io.free();
    expect(view.freed).toBe(true);
  });

  it("a buffer of another client: the error says to allocate with the file's client or alloc(n, { for })", async () => {
    const other = testConnect();
    try {
      const f = await client.open(tmp.path('cross'), 'w');
      const io = other.alloc(4096);
      for (const buffer of [io, io.bytes]) {
        const e = await failure(() => f.write(buffer, 0));
        expect(e.code).toBe('ERR_INVALID_ARG_VALUE');
        expect(e.message).toMatch(/another client/);
        expect(e.message).toContain("allocate it with the file's client");
        expect(e.message).toContain('alloc(n, { for: path })');
      }
      await f.close();
    } finally {
      await other.close();
    }
  });
});
