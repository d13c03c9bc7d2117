// The bench's directories: each records the process that made it, so a later run can remove the
// ones whose process is gone (a bench killed with SIGKILL cannot clean up, and leaves its files).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OWNER = '.owner';
const PREFIXES = ['.bench-', '3fs-client-bench-'];

/** This process, as `pid starttime` (starttime tells a reused pid from the process that made the directory). */
function processId(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name, which may hold spaces and parentheses.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return `${pid} ${start}`;
  } catch {
    return undefined;
  }
}

/** Whether a bench directory's owner has exited; false when it is not known (no owner file). */
function ownerGone(dir: string): boolean {
  let owner: string;
  try {
    owner = readFileSync(join(dir, OWNER), 'utf8').trim();
  } catch {
    return false;
  }
  const pid = Number(owner.split(' ')[0]);
  return !Number.isSafeInteger(pid) || processId(pid) !== owner;
}

/** Removes the bench directories under `base` whose process is gone. Returns their paths. */
export function removeStaleBenchDirs(base: string): string[] {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  const stale = names.filter((n) => PREFIXES.some((p) => n.startsWith(p))).map((n) => join(base, n)).filter(ownerGone);
  for (const dir of stale) rmSync(dir, { recursive: true, force: true });
  return stale;
}

/** A new bench directory under `base` named `prefix` + random, after removing stale ones there. */
export function makeBenchDir(base: string, prefix: string, log?: (line: string) => void): string {
  for (const dir of removeStaleBenchDirs(base)) log?.(`removed ${dir}, left by a bench that is gone`);
  const dir = mkdtempSync(join(base, prefix));
  writeFileSync(join(dir, OWNER), `${processId(process.pid) ?? process.pid}\n`);
  return dir;
}
