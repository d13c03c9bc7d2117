// Security (issue 5, point 6):
// - KVCache files (root directory, shard files, meta.json) are owner-only whatever the umask;
// - KV keys and namespaces never become paths: hostile keys ('../x', '/etc/passwd', NUL bytes,
//   4 KiB strings) and namespaces create nothing but the cache's own files, all inside its root;
// - the 3FS token file named by the launcher config is never read into a report, a message or an
//   error: its secret appears in no output of loadConfig, readLauncherConfig, doctor (text and JSON).
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KVCache, formatDoctor, loadConfig, readLauncherConfig, runDoctor } from '../../../lib/index';
import { makeTmpDir, testConnect } from '../../helpers';
import { record } from '../record';

const tmp = makeTmpDir('security');
afterAll(() => tmp.cleanup());

/** Every path under dir, relative to it. */
function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? [relative(base, p) + '/', ...walk(p, base)] : [relative(base, p)];
  });
}

describe('KVCache files', () => {
  it('root, shards and meta.json are owner-only with umask 0; hostile keys and namespaces create nothing else, anywhere', async () => {
    const client = testConnect();
    const outer = tmp.path('kv');
    mkdirSync(outer);
    const root = join(outer, 'cache');
    const old = process.umask(0);
    let cache: KVCache;
    try {
      cache = await KVCache.open({ root, client, namespace: { model: '../../escape', dtype: '/etc/passwd', layout: 'a\0b', rank: 0 }, pageBytes: 4096, capacityBytes: 4 << 20 });
    } finally {
      process.umask(old);
    }
    const hostileKeys = ['../../../etc/passwd', '/etc/shadow', 'a\0b', '..', '.', '', 'x'.repeat(4096), 'meta.json', 'shard-0', '%2e%2e%2f', '\\..\\..\\win', 'ü/../../'];
    const keys = hostileKeys.map((k) => Buffer.from(k));
    const payloads = keys.map((_, i) => Buffer.alloc(1000, i + 1));
    const put = await cache!.put(keys, payloads);
    expect(put.every((r) => r.status === 'stored' || r.status === 'present'), JSON.stringify(put)).toBe(true);
    const got = await cache!.get(keys);
    got.forEach((g, i) => {
      expect(g.status, `key ${JSON.stringify(hostileKeys[i].slice(0, 20))}`).toBe('hit');
      expect(Buffer.from(g.buffer!.subarray(0, 1000)).equals(payloads[i])).toBe(true);
    });
    cache!.recycle(got);
    await cache!.close();
    await client.close();
    // Only the cache's own files, all under root; each owner-only.
    const files = walk(outer);
    expect(files.every((f) => f === 'cache/' || f.startsWith('cache/')), files.join(', ')).toBe(true);
    for (const f of files) {
      const mode = statSync(join(outer, f)).mode & 0o777;
      expect(mode & 0o077, `${f} is ${mode.toString(8)}`).toBe(0);
    }
    expect(files.filter((f) => !/^cache\/($|meta\.json$|shard-\d+\.bin$|[^/]*$)/.test(f)), 'unexpected files').toEqual([]);
    record('security-kvcache', { operations: 2 * keys.length, faults: keys.length, crashes: 0, leaks: 0, note: `${files.length} paths created, all under the root, all owner-only (umask 0); ${keys.length} hostile keys stored and read back as themselves` });
  });
});

describe('the 3FS token file', () => {
  it('its secret is in no output of the config readers or of doctor, even when the config is broken', async () => {
    const secret = 'SECRET-TOKEN-7f3a9c2e51';
    const tokenFile = tmp.path('token');
    writeFileSync(tokenFile, secret + '\n', { mode: 0o600 });
    const launcher = tmp.path('launcher.toml');
    writeFileSync(launcher, `cluster_id = "stage"\nmountpoint = "${tmp.dir}"\ntoken_file = "${tokenFile}"\n`);
    const good = tmp.path('good.toml');
    writeFileSync(good, `launcher = "${launcher}"\n`);
    const bad = tmp.path('bad.toml');
    writeFileSync(bad, `launcher = "${launcher}"\nqueueDepth = "${secret}"\n`); // a wrong key whose value is the secret: the message may name the key, not echo a token file's content
    const outputs: string[] = [];
    outputs.push(JSON.stringify(readLauncherConfig(launcher)));
    outputs.push(JSON.stringify(loadConfig(good)));
    for (const config of [good]) {
      const report = await runDoctor({ config, path: tmp.dir });
      outputs.push(JSON.stringify(report), formatDoctor(report));
    }
    // A launcher config whose token_file is the secret file itself, read as TOML: a syntax error must not quote it.
    const broken = tmp.path('broken.toml');
    writeFileSync(broken, `launcher = "${tokenFile}"\n`);
    for (const run of [() => loadConfig(broken), () => readLauncherConfig(tokenFile)]) {
      try {
        outputs.push(JSON.stringify(run()));
      } catch (e) {
        outputs.push(String(e), JSON.stringify(e), (e as Error).stack ?? '');
      }
    }
    const report = await runDoctor({ config: broken, path: tmp.dir });
    outputs.push(JSON.stringify(report), formatDoctor(report));
    for (const [i, out] of outputs.entries()) expect(out.includes(secret), `output ${i} contains the token: ${out.slice(0, 300)}`).toBe(false);
    expect(outputs.some((o) => o.includes(tokenFile)), 'the token file is named (its path is no secret)').toBe(true);
    void bad;
    record('security-token', { operations: outputs.length, faults: 2, crashes: 0, leaks: 0, note: `${outputs.length} outputs (config readers, doctor text and JSON, errors of a token file read as TOML): the token never appears` });
  });
});
