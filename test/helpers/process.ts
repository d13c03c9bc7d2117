// What the process holds: open descriptors, threads, USRBIO mappings, memory the sanitizer keeps;
// for tests that check cleanup and leaks.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { eventually, sleep } from './waits';

/**
 * Under npm run test:asan: the MiB of freed memory AddressSanitizer holds back on purpose (its
 * quarantine, to catch use after free), which RSS checks must allow for; 0 otherwise.
 */
export const ASAN_QUARANTINE_MIB = /libasan/.test(process.env.LD_PRELOAD ?? '') ? Number(/quarantine_size_mb=(\d+)/.exec(process.env.ASAN_OPTIONS ?? '')?.[1] ?? 256) : 0;

/** USRBIO iovs (/dev/shm/hf3fs-iov-* shared memory) mapped in this process, each counted once. */
export function iovMappings(): number {
  const names = new Set<string>();
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const at = line.indexOf('/hf3fs-iov-');
    if (at >= 0) names.add(line.slice(at));
  }
  return names.size;
}

/**
 * Kills `child` with SIGKILL, as a crash would, then removes the USRBIO shared memory it had made
 * and not yet unlinked: a process killed between hf3fs_iovcreate and hf3fs_iovunlink leaves its
 * /dev/shm file behind (as with 3FS's own library), where nothing else would ever remove it. The
 * child is stopped first, so that its files are read while it can make no more.
 */
export async function crash(child: ChildProcess): Promise<void> {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(pid, 'SIGSTOP');
  } catch {
    return; // gone already
  }
  // A stop lands once the child is back from the kernel: a FUSE call on the mount may hold it
  // for a while on a loaded machine. One that never lands (a hung call) is killed all the same.
  for (let waited = 0; !stoppedOrGone(pid) && waited < 30_000; waited += 5) await sleep(5);
  const left = linkedIovFiles(pid);
  child.kill('SIGKILL');
  for (const path of left) rmSync(path, { force: true });
}

/** True once /proc/<pid>/stat says stopped (T), or dead (Z, X), or the process is gone. */
function stoppedOrGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return 'TtZX'.includes(stat.charAt(stat.lastIndexOf(')') + 2));
  } catch {
    return true;
  }
}

/** The /dev/shm/hf3fs-iov-* files process `pid` maps or holds open and that still have their name. */
function linkedIovFiles(pid: number): string[] {
  const paths = new Set<string>();
  const add = (name: string) => {
    if (name.startsWith('/dev/shm/hf3fs-iov-') && !name.endsWith(' (deleted)')) paths.add(name);
  };
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const at = line.indexOf('/dev/shm/');
      if (at >= 0) add(line.slice(at));
    }
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        add(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // the process is gone: it ran to its end, and what it made it unlinked
  }
  return [...paths];
}

/** Open descriptors of this process. */
export function fdCount(): number {
  // 3FS's library opens <mount>/3fs-virt/iovs once per mount and holds it for the life of the
  // process (its release is the daemon's crash cleanup): not a leak, so not counted.
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return !readlinkSync(`/proc/self/fd/${fd}`).endsWith('/3fs-virt/iovs');
    } catch {
      return false; // closed between the listing and the look (the listing's own descriptor)
    }
  }).length;
}

/** The names (comm) of this process's threads, one per thread. */
export function threadNames(): string[] {
  const names: string[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      names.push(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trimEnd());
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return names;
}

/**
 * Threads of this process, leaving out the kernel's io_uring workers (iou-wrk-*, iou-sqp-*): the
 * kernel starts them for punted requests of any ring of the process and reaps them after some
 * seconds idle, on its own schedule, so they would make every count racy.
 */
export function threadCount(): number {
  return threadNames().filter((n) => !n.startsWith('iou-')).length;
}

/** Threads of this library's engines (3fs-*) and of the stand-in's rings (hf3fs-daemon). */
export function engineThreadCount(): number {
  return threadNames().filter((n) => n.startsWith('3fs-') || n === 'hf3fs-daemon').length;
}

/**
 * threadCount() for a baseline taken while no client is open: first the threads of clients closed
 * just before (by the previous test) have left /proc, else the baseline is one high and a later
 * count that is exact looks like a thread lost.
 */
export async function baselineThreadCount(): Promise<number> {
  await eventually(engineThreadCount, 0);
  return threadCount();
}

/** Lets finalizers and pending callbacks run, then collects, a few times over. */
export async function collectGarbage(rounds = 4): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
