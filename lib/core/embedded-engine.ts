// Which embedded engine (the one for local files, and for 3FS through FUSE) a client runs, and the
// words for why: io_uring first; the 'threads' engine (pread/pwrite) when io_uring_setup is refused or
// when the `engine` option or THREEFS_CLIENT_ENGINE asks for it. Shared by connect() and doctor,
// so both say the same thing.
import { readFileSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { argError } from './errors';
import { MEMLOCK_FIX, memlockAdvice, memlockLimit, shownMemlock } from './memlock';

export type EmbeddedEngine = 'io_uring' | 'threads';
export const EMBEDDED_ENGINES: readonly EmbeddedEngine[] = ['io_uring', 'threads'];
/** Forces the embedded engine of clients that do not name one (engine 'local', the default). */
export const ENGINE_ENV = 'THREEFS_CLIENT_ENGINE';

/** What a client asks the addon for: io_uring, else 'threads' ('auto'), or one engine and who forced it. */
export interface EmbeddedChoice {
  mode: 'auto' | EmbeddedEngine;
  /** e.g. "engine: 'threads'" or 'THREEFS_CLIENT_ENGINE=threads'; absent for 'auto'. */
  forcedBy?: string;
}

/**
 * The choice for a client whose `engine` option is `engine` ('local' means: not named). An engine
 * named in the options wins over the environment. A bad THREEFS_CLIENT_ENGINE is an error, not a
 * silent default: a CI job that means to force 'threads' must not test io_uring by mistake.
 */
export function embeddedChoice(engine: 'local' | EmbeddedEngine, env: NodeJS.ProcessEnv = process.env): EmbeddedChoice {
  if (engine !== 'local') return { mode: engine, forcedBy: `engine: '${engine}'` };
  const forced = env[ENGINE_ENV];
  if (forced === undefined || forced === '') return { mode: 'auto' };
  if (!(EMBEDDED_ENGINES as readonly string[]).includes(forced)) {
    throw argError('ERR_INVALID_ARG_VALUE', `${ENGINE_ENV} must be ${EMBEDDED_ENGINES.map((e) => `'${e}'`).join(' or ')} (or unset), got ${JSON.stringify(forced)}`);
  }
  return { mode: forced as EmbeddedEngine, forcedBy: `${ENGINE_ENV}=${forced}` };
}

/** io_uring_setup's errors that mean "not allowed here" (seccomp, sysctl, LSMs, no io_uring): the 'threads' engine takes over (the addon's client agrees). */
export const IO_URING_REFUSALS: readonly string[] = ['EPERM', 'ENOSYS', 'EACCES'];
/** io_uring_setup's errors after which the thread pool takes over: the refusals, and ENOMEM (RLIMIT_MEMLOCK). */
export const IO_URING_FALLBACKS: readonly string[] = [...IO_URING_REFUSALS, 'ENOMEM'];

/** kernel.io_uring_disabled (0 allowed, 1 only for kernel.io_uring_group, 2 off), or undefined when the kernel has no such knob. */
export function ioUringSysctl(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Why io_uring_setup failed with `errno` (positive), in a few words: 'io_uring_setup: EPERM (kernel.io_uring_disabled=2)'. */
export function ioUringRefusal(errno: number, sysctl: string | undefined = ioUringSysctl()): string {
  const code = getSystemErrorName(-Math.abs(errno));
  let likely: string;
  if (code === 'ENOMEM') likely = memlockAdvice();
  else if (sysctl !== undefined && sysctl !== '0') likely = `kernel.io_uring_disabled=${sysctl}`;
  else if (code === 'EPERM') likely = "seccomp? Docker's default profile and some sandboxes block io_uring";
  else if (code === 'ENOSYS') likely = 'no io_uring in this kernel, or a seccomp filter or sandbox such as gVisor';
  else if (code === 'EACCES') likely = 'a security module (SELinux, AppArmor) refuses it?';
  else likely = 'unexpected';
  return `io_uring_setup: ${code} (${likely})`;
}

/** native/engines/engine.h's RegisterRefusal: why alloc()'s memory got no fixed buffer (else an errno). */
const REFUSED = { noTable: -1, tooLarge: -2, tableFull: -3, empty: -4 } as const;

/**
 * Why the last alloc() that asked for registered memory got none, from the addon's code: 'RLIMIT_MEMLOCK
 * is 65536 bytes (ulimit -l 64) reached: io_uring_register ENOMEM ...', the table full, and so on.
 */
export function registerRefusal(code: number, engine: string, asked: number, slots: number): string {
  if (code === REFUSED.noTable) {
    if (engine !== 'io_uring') return `the ${engine} engine has no fixed-buffer table`;
    return asked === 0 ? 'registeredBuffers is 0' : "io_uring's fixed-buffer table could not be made";
  }
  if (code === REFUSED.tooLarge) return 'larger than 1 GiB, the most io_uring takes as one fixed buffer';
  if (code === REFUSED.tableFull) return `every one of the ${slots} entries of io_uring's fixed-buffer table is taken (registeredBuffers)`;
  if (code === REFUSED.empty) return 'an empty buffer is not registered';
  const name = getSystemErrorName(-Math.abs(code));
  if (name === 'ENOMEM') {
    const limit = memlockLimit();
    const now = limit === undefined ? 'RLIMIT_MEMLOCK' : `RLIMIT_MEMLOCK ${shownMemlock(limit.soft)}`;
    return `${now} reached: io_uring_register ENOMEM (a registered buffer is locked memory); raise it: ${MEMLOCK_FIX}`;
  }
  return `io_uring_register: ${name}`;
}

/** What to do to get io_uring back, for doctor. */
export const IO_URING_FIX =
  'sysctl -w kernel.io_uring_disabled=0 (or, when it is 1, run as a member of kernel.io_uring_group); in a container, allow ' +
  'io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile (docker run --security-opt seccomp=PROFILE.json ' +
  'with them allowed, or seccomp=unconfined where that is acceptable)';
