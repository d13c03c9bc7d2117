// examples/range-server.mjs, run as a user would (node, in its own process, importing the package
// by name) and fetched as a browser or a CDN would: whole files, single ranges, several ranges
// (multipart/byteranges) and many ranges at once, every byte compared with node:fs; 416 for
// ranges past the end, 404 for a missing file, and no file left open in the server.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, firstDiff, KiB, makeTmpDir, MiB, pool, ROOT, Rng, seedFor } from '../../helpers';

const tmp = makeTmpDir('range-server');
const rng = new Rng(seedFor('range-server'));
const FILES: Record<string, number> = { empty: 0, one: 1, page: 4096, odd: 300 * KiB + 7, big: 5 * MiB + 12345 };
for (const [name, size] of Object.entries(FILES)) writeFileSync(tmp.path(name), rng.bytes(size));
const bytesOf = (name: string) => readFileSync(tmp.path(name));

let server: ChildProcess;
let base: string;

/** What the server's descriptors point at. */
function serverFiles(): string[] {
  return readdirSync(`/proc/${server.pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${server.pid}/fd/${fd}`);
    } catch {
      return ''; // closed meanwhile
    }
  });
}

beforeAll(async () => {
  server = spawn(process.execPath, [join(ROOT, 'examples', 'range-server.mjs'), tmp.dir, '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let said = '';
  server.stdout!.on('data', (d: Buffer) => (said += d));
  while (!/http:\/\/\S+/.test(said)) await Promise.race([once(server.stdout!, 'data'), once(server, 'exit').then(() => Promise.reject(new Error('the server exited')))]);
  base = /http:\/\/\S+/.exec(said)![0];
});
afterAll(async () => {
  server.kill();
  if (server.exitCode === null && server.signalCode === null) await once(server, 'exit');
  tmp.cleanup();
});

// A connection per request: a kept-alive one can be closed by the server's idle timeout as a
// stalled client (a loaded machine) reuses it, and fetch fails with ECONNRESET or "other side
// closed" with nothing wrong in the server.
async function get(name: string, range?: string): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${base}/${name}`, { headers: range === undefined ? { connection: 'close' } : { connection: 'close', range } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

function expectBytes(got: Buffer, want: Buffer): void {
  expect(got.length).toBe(want.length);
  expect(firstDiff(got, want)).toBe(-1);
}

/** The parts of a multipart/byteranges body: each part's Content-Range and bytes. */
function parts(body: Buffer, contentType: string): { range: string; bytes: Buffer }[] {
  const boundary = /boundary=(\S+)/.exec(contentType)![1];
  const out: { range: string; bytes: Buffer }[] = [];
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  let at = body.indexOf(delimiter);
  while (at >= 0 && body.subarray(at + delimiter.length, at + delimiter.length + 2).toString() !== '--') {
    const headersEnd = body.indexOf('\r\n\r\n', at + delimiter.length);
    const headers = body.subarray(at + delimiter.length, headersEnd).toString();
    const next = body.indexOf(delimiter, headersEnd + 4);
    out.push({ range: /Content-Range: (.+)/i.exec(headers)![1].trim(), bytes: body.subarray(headersEnd + 4, next) });
    at = next;
  }
  return out;
}

describe('examples/range-server.mjs', () => {
  it('whole files: 200, their bytes, Accept-Ranges', async () => {
    for (const name of Object.keys(FILES)) {
      const { status, headers, body } = await get(name);
      expect(status).toBe(200);
      expect(headers.get('accept-ranges')).toBe('bytes');
      expectBytes(body, bytesOf(name));
    }
  });

  it('single ranges: 206 with Content-Range; suffix and open ranges; an end past the file is clamped', async () => {
    const big = bytesOf('big');
    const size = big.length;
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=10-20', 10, 20],
      ['bytes=4095-4096', 4095, 4096],
      ['bytes=1000000-', 1000000, size - 1],
      ['bytes=-500', size - 500, size - 1],
      ['bytes=5000-99999999', 5000, size - 1],
      [`bytes=${size - 1}-`, size - 1, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const { status, headers, body } = await get('big', range);
      expect(status, range).toBe(206);
      expect(headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
      expectBytes(body, big.subarray(start, end + 1));
    }
  });

  it('several ranges: multipart/byteranges, each part its bytes', async () => {
    const big = bytesOf('big');
    const { status, headers, body } = await get('big', 'bytes=0-99, 4096-8191, 3000000-3100000, -10');
    expect(status).toBe(206);
    expect(headers.get('content-type')).toMatch(/^multipart\/byteranges; boundary=/);
    const got = parts(body, headers.get('content-type')!);
    const want = [[0, 99], [4096, 8191], [3000000, 3100000], [big.length - 10, big.length - 1]];
    expect(got.map((p) => p.range)).toEqual(want.map(([s, e]) => `bytes ${s}-${e}/${big.length}`));
    got.forEach((p, i) => expectBytes(p.bytes, big.subarray(want[i][0], want[i][1] + 1)));
  });

  it('416 with bytes */size when no range fits; a malformed header is ignored (200); 404 for a missing file', async () => {
    for (const range of ['bytes=99999999-', `bytes=${FILES.odd}-`, 'bytes=-0']) {
      const { status, headers } = await get('odd', range);
      expect(status, range).toBe(416);
      expect(headers.get('content-range')).toBe(`bytes */${FILES.odd}`);
    }
    expect((await get('empty', 'bytes=0-')).status).toBe(416);
    for (const range of ['items=0-1', 'bytes=5-3', 'bytes=x-']) expect((await get('odd', range)).status, range).toBe(200);
    expect((await get('missing')).status).toBe(404);
    expect((await get('../../etc/passwd')).status).toBe(404);
  });

  it('many ranges at once (200 requests, 32 in flight): every byte as node:fs has it, no file left open', async () => {
    const big = bytesOf('big');
    const r = new Rng(seedFor('range-server-many'));
    await pool(200, 32, async () => {
      const start = r.int(0, big.length - 1);
      const end = Math.min(big.length - 1, start + r.int(0, 2 * MiB));
      const { status, body } = await get('big', `bytes=${start}-${end}`);
      expect(status).toBe(206);
      expectBytes(body, big.subarray(start, end + 1));
    });
    // Every file closed, once the server's handlers finished (what remains open are sockets).
    const served = () => serverFiles().filter((target) => target.startsWith(tmp.dir)).length;
    expect(await eventually(served, 0)).toBe(0);
  });
});
