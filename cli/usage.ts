// What every command shares: the help text, the global options, how a command writes, and the
// error that means "called wrongly" (exit code 2, with a hint) rather than "failed" (exit code 1).

export const USAGE = `Usage: 3fs-client <command> [options]

Commands:
  bench            Measure 3fs-client against fio and node:fs on this machine (with the device
                   and memory ceilings), then per-call overheads, KVCache and datasets; each
                   target (issue 18's) is printed with its verdict, and a table of them at the end
  doctor [path]    Check this machine and path for 3fs-client and 3FS, and say what to change
                   (path: default the config's mount, else the current directory)
  help             Show this help

Options of bench:
  --dir D          make the bench files in a new directory under D, which must exist
                   (default: the system temp dir); the files are deleted at the end
  --engine E       our side: local (default: io_uring, or the threads fallback) or hf3fs
                   (USRBIO; --dir must be on a 3FS mount; --lib names the library)
  --size S         data file size, e.g. 1GiB, 512M (default 2GiB; with --quick 128MiB)
  --duration T     measured time per tool per workload, e.g. 3, 3s, 1500ms (default 1s)
  --ramp T         warm-up before each measured window (default 0.2s)
  --json F         also write the results as JSON to F (bench/JSON.md describes it)
  --html F         also write a page with charts (GB/s against block size and queue depth) to F
  --quick          a short smoke run: a smaller file and fewer workloads (one depth per block size)
  --workloads L    only these, comma-separated: seq-read,rand-read,cached-read,seq-write
  --tools L        only these, comma-separated: 3fs-client,fio,node:fs
  --repeat N       run each workload N times; the table shows the median, the verdicts judge the
                   median ratio (default 3; with --quick 1)
  --engines        instead: the local engine (io_uring) and the 3FS engine (USRBIO) side by side,
                   4 KiB and 1 MiB batches on one warm file; --dir must be on a 3FS mount (or a
                   test stand-in mount, HF3FS_STANDIN_MOUNTS); takes --duration, --ramp, --repeat
  --lib PATH       with --engines or --engine hf3fs: the USRBIO library (default $HF3FS_LIB, then
                   the linker's search)
  --fallback       instead: the portable fallback engine (threads: pread/pwrite and AIO on threads)
                   beside io_uring and fio's psync and libaio engines, on one O_DIRECT file:
                   4 MiB sequential and 4 KiB random reads; takes --dir, --size (default 1GiB;
                   with --quick 256MiB), --duration, --ramp, --repeat (default 3), --quick
  --threads N      with --fallback: worker threads of the threads engine (default 4 per core, at most 16)
  --kvcache        instead: only the KVCache bench (a longer run of the section that follows the
                   main table): put and get GB/s of 64 KiB, 1 MiB and 16 MiB pages (--quick: 64 KiB
                   and 1 MiB) next to raw batch writes/reads of the same bytes and a file-per-key
                   cache written with node:fs, and lookup keys/s (warm, and a cold lookup's I/O
                   rounds); takes --dir, --quick, --repeat, --json, and --size: bytes of pages per
                   page size (default 2GiB; with --quick 256MiB)
  --http           instead: GB/s of a file served over loopback by node:http from
                   file.createReadStream() beside the same server on fs.createReadStream (whole-
                   file GETs, 4 at a time, the servers alternating); takes --dir, --size (default
                   256MiB; with --quick 64MiB), --repeat (default 3), --quick
  --no-streams     leave out the streams section (createReadStream and readFile, ours and
                   node:fs's, on one file from a dropped page cache, against the device ceiling)
  --no-micro       leave out the micro-benchmarks (tinybench: a batch of N ops, a lookup of N keys,
                   an alloc/free)
  --no-kvcache     leave out the KVCache section
  --no-datasets    leave out the datasets section (random ffrecord batches of 4 KiB, 64 KiB and
                   1 MiB samples, and a safetensors load, next to node:fs readers of the same files)

Options of doctor:
  --json           print the report as JSON
  --lib PATH       the USRBIO library to try (default: library in 3fs-client.toml, then $HF3FS_LIB)
  --config F       check this 3fs-client.toml instead of the usual lookup
                   ($THREEFS_CLIENT_CONFIG, ./3fs-client.toml, /etc/3fs-client.toml)
  doctor exits with 1 when a check fails, else 0.

Global options:
  --debug          print stack traces with errors
  -h, --help       show this help
  -v, --version    print the version
`;

/** A mistake in how the command was called: reported with a hint, exit code 2. */
export class UsageError extends Error {}

export const globalOptions = {
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const defaultIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

/** Runs `fn`, turning what it throws into a UsageError (for option values that do not parse). */
export function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function wholeNumber(text: string, name: string): number {
  if (!/^\d+$/.test(text.trim())) throw new Error(`${name} must be a whole number, got '${text}'`);
  return Number(text);
}
