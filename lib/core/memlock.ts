// RLIMIT_MEMLOCK, the limit io_uring's rings and registered buffers count against (unless the
// process has CAP_IPC_LOCK): read from /proc/self/limits, and the words for raising it, shared by
// connect()'s errors and fallbacks and by doctor.
import { readFileSync } from 'node:fs';

export interface MemlockLimit {
  soft: number | 'unlimited';
  hard: number | 'unlimited';
}

/** How to raise the limit, for errors and doctor. */
export const MEMLOCK_FIX =
  'ulimit -l unlimited before starting node; systemd: LimitMEMLOCK=infinity; Docker: --ulimit memlock=-1; ' +
  'or `* - memlock unlimited` in /etc/security/limits.conf';

/** `Max locked memory` of /proc/self/limits: soft and hard, in bytes. */
export function parseMemlock(limits: string): MemlockLimit | undefined {
  const m = /^Max locked memory\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  const value = (v: string) => (v === 'unlimited' ? 'unlimited' : Number(v));
  return { soft: value(m[1]), hard: value(m[2]) };
}

/** This process's limit, or undefined where /proc does not say. */
export function memlockLimit(): MemlockLimit | undefined {
  try {
    return parseMemlock(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/** A limit as `ulimit -l` shows it (KiB) and in bytes: "65536 bytes (ulimit -l 64)". */
export function shownMemlock(limit: number | 'unlimited'): string {
  return limit === 'unlimited' ? 'unlimited' : `${limit} bytes (ulimit -l ${Math.floor(limit / 1024)})`;
}

/** Why io_uring said ENOMEM, and what to do: "RLIMIT_MEMLOCK is 65536 bytes (ulimit -l 64), ...". */
export function memlockAdvice(limit: MemlockLimit | undefined = memlockLimit()): string {
  const now = limit === undefined ? 'RLIMIT_MEMLOCK' : `RLIMIT_MEMLOCK is ${shownMemlock(limit.soft)}`;
  return `${now}: io_uring's rings and registered buffers count against it (and the kernel frees a closed client's rings late); raise it: ${MEMLOCK_FIX}`;
}
