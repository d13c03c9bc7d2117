// Serves the files under a directory over HTTP with Range support, from batch reads:
// whole files (200), one range (206), several (206 multipart/byteranges), 416 when none fits.
//   node examples/range-server.mjs DIR [PORT]
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { join, normalize } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { open } from '3fs-client';

/** The ranges of a Range header within `size` bytes: undefined to ignore it, [] when none fits. */
export function parseRange(header, size) {
  const spec = /^bytes=(.+)$/.exec(header ?? '');
  if (!spec) return undefined;
  const ranges = [];
  for (const part of spec[1].split(',')) {
    const m = /^\s*(\d*)-(\d*)\s*$/.exec(part);
    if (!m || (m[1] === '' && m[2] === '') || (m[1] !== '' && m[2] !== '' && +m[2] < +m[1])) return undefined;
    const start = m[1] === '' ? Math.max(0, size - +m[2]) : +m[1];
    const end = m[1] === '' || m[2] === '' ? size - 1 : Math.min(+m[2], size - 1);
    if (start < size && (m[1] !== '' || +m[2] > 0)) ranges.push({ start, end });
  }
  return ranges;
}

async function serve(file, req, res) {
  const { size } = await file.stat();
  const ranges = parseRange(req.headers.range, size);
  if (ranges === undefined) {
    res.writeHead(200, { 'Content-Length': size, 'Accept-Ranges': 'bytes' });
    return pipeline(file.createReadStream({ autoClose: false }), res);
  }
  if (ranges.length === 0) return res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
  if (ranges.length === 1) {
    const [{ start, end }] = ranges;
    res.writeHead(206, { 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}` });
    return pipeline(file.createReadStream({ start, end, autoClose: false }), res);
  }
  const boundary = randomBytes(12).toString('hex');
  res.writeHead(206, { 'Content-Type': `multipart/byteranges; boundary=${boundary}` });
  return pipeline(multipart(file, ranges, size, boundary), res);
}

/** The body of a multipart/byteranges response: each range's part header, then its bytes. */
async function* multipart(file, ranges, size, boundary) {
  for (const { start, end } of ranges) {
    yield `\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${end}/${size}\r\n\r\n`;
    yield* file.createReadStream({ start, end, autoClose: false });
  }
  yield `\r\n--${boundary}--\r\n`;
}

export function rangeServer(root) {
  return createServer(async (req, res) => {
    // normalize() of a path from '/' cannot climb above root.
    const path = join(root, normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    const file = await open(path).catch((e) => void res.writeHead(e.code === 'ENOENT' ? 404 : 403).end());
    if (!file) return;
    await serve(file, req, res)
      .catch((e) => {
        if (e.code !== 'ERR_STREAM_PREMATURE_CLOSE') console.error(`${req.url} ${req.headers.range ?? ''}: ${e.stack}`);
        res.destroy();
      })
      .finally(() => file.close());
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir = '.', port = '8080'] = process.argv.slice(2);
  const server = rangeServer(dir).listen(Number(port), '127.0.0.1', () => console.log(`serving ${dir} on http://127.0.0.1:${server.address().port}`));
}
