// The KVCache bench's tables: one row per page size, op and batches in flight (medians over the
// repetitions), kvcache next to raw and node:fs with kv/raw's target and verdict, in the bench's
// directory and then on tmpfs; then the lookups and the notes.
import { median } from '../../support/stats';
import { targetText, verdictText } from '../../support/targets';
import { formatSize, GiB } from '../../support/units';
import { IN_FLIGHT, LOOKUP_BATCH, type KvBenchDocument, type KvPath, type KvRun, type KvWhere } from './records';
import { hasTarget, KV_TARGET, kvRatio, kvRowLabel } from './verdicts';

const HEADER = ['page', 'op', 'batch', 'in flight', 'kvcache GB/s', 'pages/s', 'raw GB/s', 'kv/raw', 'target', 'verdict', 'node:fs GB/s', 'kv/node:fs', 'kv p50 ms', 'kv p99 ms', 'kv CPU s/GB', 'raw CPU s/GB', 'checked'];
const NUMERIC = new Set([2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]);

export function formatKvTable(doc: KvBenchDocument, machineLine = true): string {
  const s = doc.settings;
  const m = doc.machine;
  const lines: string[] = [];
  if (machineLine) lines.push(`3fs-client bench: ${m.cpus} CPUs (${m.cpuModel}), ${formatSize(m.memory)} RAM, Linux ${m.kernel}, node ${m.node}`);
  lines.push(
    `KVCache: ${s.engine}${s.engine === 'usrbio' ? '' : s.direct ? ', O_DIRECT' : ', buffered'}, ${formatSize(s.size)} of pages per page size (at least 32 pages), ` +
      `${IN_FLIGHT.join(' and ')} batches in flight${s.repeat > 1 ? `, ${s.repeat} runs each (medians)` : ''}${s.quick ? ' (--quick)' : ''}`,
    '',
  );
  lines.push(...table(tableRows(doc, 'dir')));
  const t = s.tmpfs;
  if (t && t.dir !== null) {
    lines.push('', `KVCache on tmpfs (${t.dir}, memory speed: fixed costs show; raw on the same tmpfs), ${formatSize(t.size)} of pages per page size (at least 32 pages)`, '');
    lines.push(...table(tableRows(doc, 'tmpfs')));
  } else if (t && t.why !== 'not asked for') {
    lines.push('', `KVCache on tmpfs: not run (${t.why})`);
  }
  lines.push('', ...lookupLines(doc), ...notes(doc));
  return lines.join('\n') + '\n';
}

/** The table's lines: the header, then the rows, a blank line between page sizes. */
function table(rows: string[][]): string[] {
  const widths = HEADER.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (NUMERIC.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const lines = [line(HEADER)];
  let prev = '';
  for (const r of rows) {
    if (prev && r[0] !== prev) lines.push('');
    prev = r[0];
    lines.push(line(r));
  }
  return lines;
}

/** One row per page size, op and batches in flight: the median runs of each path side by side. */
function tableRows(doc: KvBenchDocument, where: KvWhere): string[][] {
  const rows: string[][] = [];
  const runs = doc.runs.filter((r) => (r.where ?? 'dir') === where);
  for (const pageBytes of doc.settings.pageSizes) {
    for (const op of ['put', 'get'] as const) {
      for (const inflight of [...new Set(runs.map((r) => r.inflight))].sort((a, b) => a - b)) {
        const these = (path: KvPath) => runs.filter((r) => r.pageBytes === pageBytes && r.op === op && r.path === path && (path === 'node:fs' || r.inflight === inflight));
        const pick = (path: KvPath) => {
          const rs = these(path);
          return rs.length ? median(rs, (r) => r.gbps) : undefined;
        };
        const kv = pick('kvcache');
        if (!kv) continue;
        const fs = inflight === 1 ? pick('node:fs') : undefined;
        rows.push(rowCells(doc, kv, pick('raw'), fs, these('kvcache'), where));
      }
    }
  }
  return rows;
}

function rowCells(doc: KvBenchDocument, kv: KvRun, raw: KvRun | undefined, fs: KvRun | undefined, kvs: KvRun[], where: KvWhere): string[] {
  const { pageBytes, op, inflight } = kv;
  const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : '');
  const cpu = (r: KvRun | undefined) => (r ? (r.cpuSecPerGiB / (GiB / 1e9)).toFixed(3) : '');
  const verified = kvs.reduce((a, r) => a + r.verified, 0);
  const misses = kvs.reduce((a, r) => a + r.misses, 0);
  const { ratio: kvRaw } = kvRatio(doc.runs, where, pageBytes, op, inflight);
  const judged = (doc.targets ?? []).find((j) => j.row === kvRowLabel(where, pageBytes, op, inflight));
  return [
    formatSize(pageBytes),
    op,
    String(kv.batch),
    String(inflight),
    kv.gbps.toFixed(2),
    kv.pagesPerSec.toLocaleString('en-US'),
    raw ? raw.gbps.toFixed(2) : '',
    kvRaw === undefined ? '' : `${kvRaw.toFixed(2)}x`,
    hasTarget(pageBytes) ? targetText(KV_TARGET) : 'none',
    judged ? verdictText(judged) : hasTarget(pageBytes) ? 'not measured' : '-',
    fs ? fs.gbps.toFixed(2) : '',
    fs ? ratio(kv.gbps, fs.gbps) : '',
    kv.p50ms.toFixed(2),
    kv.p99ms.toFixed(2),
    cpu(kv),
    cpu(raw),
    op === 'get' ? `${verified} exact${misses ? `, ${misses} missed` : ''}` : misses ? `${misses} not stored` : '',
  ];
}

/** The median warm and cold lookups, a line each. */
function lookupLines(doc: KvBenchDocument): string[] {
  const lines: string[] = [];
  for (const kind of ['warm', 'cold'] as const) {
    const rs = doc.lookups.filter((l) => l.kind === kind);
    if (!rs.length) continue;
    const l = median(rs, (x) => (kind === 'warm' ? x.keysPerSec : x.seconds));
    if (kind === 'warm') {
      lines.push(
        `lookup, warm: ${l.keys.toLocaleString('en-US')} keys in calls of ${LOOKUP_BATCH}, over ${l.distinctKeys.toLocaleString('en-US')} keys this process put: ` +
          `${(l.keysPerSec / 1e6).toFixed(2)}M keys/s (target >= 1M), ${l.ioBatches} I/O batches, ${l.found === l.keys ? 'all found' : `${l.found} found`}`,
      );
    } else {
      lines.push(
        `lookup, cold: ${l.keys} keys by a new KVCache on the same root: ${l.ioBatches} I/O batch${l.ioBatches === 1 ? '' : 'es'} ` +
          `(${l.submitCalls} submit call${l.submitCalls === 1 ? '' : 's'}) (target <= 2), ${(l.seconds * 1000).toFixed(2)} ms, ${l.found === l.keys ? 'all found' : `${l.found} found`}`,
      );
    }
  }
  return lines;
}

/** What the columns mean and how each path ran. */
function notes(doc: KvBenchDocument): string[] {
  const s = doc.settings;
  const lines: string[] = [];
  const fsRun = doc.runs.find((r) => r.path === 'node:fs');
  lines.push(
    '',
    'GB/s = 10^9 B/s of payload, over each phase (pages are filled before it; gets include checking what they read).',
    'kvcache: KVCache.put of fresh keys (cache.alloc() payloads, no copy; header, CRC32C, directories included) and',
    '  KVCache.get of hits into preallocated buffers; raw: file.batchWrite/batchRead of the same pages, same batches,',
    '  same client, one file at shuffled page offsets, alternating with the KVCache phase (batch by batch with 1 in',
    '  flight, blocks of 4 x in flight else; just before and just after when there are too few batches), so drift',
    '  in the device moves both alike. kv/raw: the median of each run\'s ratio; target >= 0.90x raw for pages of',
    '  1 MiB and more (issue 19), none for smaller ones. in flight: batches at once (1: one request\'s pages, call',
    '  after call; 4: concurrent requests); node:fs runs one batch at a time.',
    'CPU s/GB: user+sys CPU of the whole process (engine and checksum threads included) per GB moved; kv minus raw',
    '  is what the cache costs.',
    `node:fs: a file per key (<dir>/<hex key>), writeFile / readFile, in a child process; get ${s.cacheState || 'cache state unknown'}.`,
    `checked: kvcache pages compared byte for byte (all of the first batch, then the first and last of each); every page's`,
    `  stamps are checked, and raw and node:fs reads are checked the same way.`,
  );
  if (fsRun === undefined) lines.push('(no node:fs runs)');
  return lines;
}
