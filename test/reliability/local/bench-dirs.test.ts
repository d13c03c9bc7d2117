// Issue 20 item 6: a bench killed with SIGKILL cannot remove its .bench-XXXX directory (hundreds of
// MiB). Each bench directory records its process; the next run removes those whose process is
// gone, and leaves alone the ones it cannot tell about.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTmpDir, ROOT } from '../../helpers';

const tmp = makeTmpDir('bench-dirs');
afterAll(() => tmp.cleanup());

const CLI = join(ROOT, 'bin', '3fs-client.js');
const ARGS = ['bench', '--quick', '--size', '32MiB', '--duration', '100ms', '--ramp', '0', '--no-micro', '--no-kvcache', '--no-datasets', '--workloads', 'cached-read', '--tools', '3fs-client', '--dir', tmp.dir];
const benchDirs = () => readdirSync(tmp.dir).filter((n) => n.startsWith('.bench-'));

/** Starts a bench and kills it with SIGKILL once it has made its directory. */
function killedBench(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...ARGS], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    const onData = (d: Buffer) => {
      said += d.toString();
      if (/bench directory /.test(said)) child.kill('SIGKILL');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the bench ended by itself (${code}): ${said}`))));
  });
}

describe('bench directories', () => {
  it('the next bench removes the directory of one killed with SIGKILL, and keeps one it cannot tell about', async () => {
    mkdirSync(join(tmp.dir, '.bench-unknown'));
    await killedBench();
    const left = benchDirs().filter((n) => n !== '.bench-unknown');
    expect(left, 'the killed bench left its directory').toHaveLength(1);
    const r = spawnSync(process.execPath, [CLI, ...ARGS], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain(`removed ${join(tmp.dir, left[0])}`);
    expect(existsSync(join(tmp.dir, left[0]))).toBe(false);
    expect(benchDirs()).toEqual(['.bench-unknown']);
  });
});
