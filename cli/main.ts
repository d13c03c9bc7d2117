// The `3fs-client` command line. bin/3fs-client.js calls main() with process.argv.slice(2).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `Usage: 3fs-client <command> [options]

Commands:
  bench            Measure 3fs-client against fio and node:fs on this machine (with the device
                   and memory ceilings), then per-call overheads, KVCache and datasets
  doctor [path]    Check this machine and path for 3fs-client and 3FS, and say what to change
                   (path: default the config's mount, else the current directory)
  help             Show this help

Options of bench:
  --dir D          make the bench files in a new directory under D, which must exist
                   (default: the system temp dir); the files are deleted at the end
  --engine E       our side: local (default: io_uring, or the threads fallback) or hf3fs
                   (USRBIO; --dir must be on a 3FS mount; --lib names the library)
  --size S         data file size, e.g. 1GiB, 512M (default 256MiB; with --quick 128MiB)
  --duration T     measured time per tool per workload, e.g. 3, 3s, 1500ms (default 1s)
  --ramp T         warm-up before each measured window (default 0.2s)
  --json F         also write the results as JSON to F (bench/JSON.md describes it)
  --html F         also write a page with charts (GB/s against block size and queue depth) to F
  --quick          a short smoke run: a smaller file and fewer workloads (one depth per block size)
  --workloads L    only these, comma-separated: seq-read,rand-read,cached-read,seq-write
  --tools L        only these, comma-separated: 3fs-client,fio,node:fs
  --repeat N       run each workload N times; the table shows the median (default 1)
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
class UsageError extends Error {}

const globalOptions = {
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

const benchOptions = {
  ...globalOptions,
  dir: { type: 'string' },
  size: { type: 'string' },
  duration: { type: 'string' },
  ramp: { type: 'string' },
  json: { type: 'string' },
  html: { type: 'string' },
  engine: { type: 'string' },
  quick: { type: 'boolean' },
  workloads: { type: 'string' },
  tools: { type: 'string' },
  repeat: { type: 'string' },
  engines: { type: 'boolean' },
  lib: { type: 'string' },
  fallback: { type: 'boolean' },
  threads: { type: 'string' },
  kvcache: { type: 'boolean' },
  'no-kvcache': { type: 'boolean' },
  'no-datasets': { type: 'boolean' },
  'no-micro': { type: 'boolean' },
} as const;

// doctor's --json is a switch, bench's takes a file: each command parses its own options.
const doctorOptions = {
  ...globalOptions,
  json: { type: 'boolean' },
  lib: { type: 'string' },
  config: { type: 'string' },
} as const;

const COMMANDS = ['bench', 'doctor', 'help'];

/**
 * The command word: the first argument naming a command, else the first that is not an option.
 * Looking for a known name first keeps `--json out.json bench` working.
 */
function commandOf(argv: string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  return words.find((w) => COMMANDS.includes(w)) ?? words[0];
}

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const defaultIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    const word = commandOf(argv);
    const options = word === 'doctor' ? doctorOptions : benchOptions;
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    } catch (e) {
      // Node's wording goes on about positionals after '--'; the first sentence says it.
      throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
    }
    const { values, positionals } = parsed;
    const at = word === undefined ? 0 : positionals.indexOf(word);
    const command = positionals[at];
    const rest = [...positionals.slice(0, at), ...positionals.slice(at + 1)];
    if (values.version) {
      io.stdout(`${version()}\n`);
      return 0;
    }
    if (values.help || command === 'help') {
      io.stdout(USAGE);
      return 0;
    }
    if (command === undefined) {
      io.stderr(USAGE);
      return 2;
    }
    if (command === 'doctor') {
      if (rest.length > 1) throw new UsageError(`doctor takes one path, got '${rest.join(' ')}'`);
      return await doctor(rest[0], values as DoctorValues, io);
    }
    if (command !== 'bench') {
      io.stderr(`3fs-client: unknown command '${command}'\n\n${USAGE}`);
      return 2;
    }
    if (rest.length > 0) throw new UsageError(`bench takes no arguments, got '${rest.join(' ')}'`);
    return await bench(values as BenchValues, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`3fs-client: ${e.message}\nRun '3fs-client help' for usage.\n`);
      return 2;
    }
    const err = e as Error;
    io.stderr(`3fs-client: ${err?.message ?? String(e)}\n`);
    if (debug && err?.stack) io.stderr(`${err.stack}\n`);
    return 1;
  }
}

interface DoctorValues {
  json?: boolean;
  lib?: string;
  config?: string;
}

async function doctor(path: string | undefined, values: DoctorValues, io: CliIo): Promise<number> {
  // Loaded only here, as bench is; the doctor itself copes with an addon that does not load.
  const { runDoctor, formatDoctor } = await import('../lib/doctor/doctor');
  const report = await runDoctor({ path, library: values.lib, config: values.config });
  io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
  return report.exitCode;
}

interface BenchValues {
  dir?: string;
  size?: string;
  duration?: string;
  ramp?: string;
  json?: string;
  quick?: boolean;
  workloads?: string;
  tools?: string;
  repeat?: string;
  engines?: boolean;
  lib?: string;
  fallback?: boolean;
  threads?: string;
  kvcache?: boolean;
  'no-kvcache'?: boolean;
  'no-datasets'?: boolean;
  'no-micro'?: boolean;
  html?: string;
  engine?: string;
}

async function bench(values: BenchValues, io: CliIo): Promise<number> {
  // Loaded only here: `help` must work even when the native addon does not load.
  const { runBench } = await import('../bench/run');
  const { parseDuration, parseSize } = await import('../bench/shared');
  const usage = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  // Each option parsed once; each bench takes the ones it has (and refuses the others, below).
  const parsed = (text: string | undefined, parse: (t: string) => number) => (text === undefined ? undefined : usage(() => parse(text)));
  const size = parsed(values.size, parseSize);
  const durationMs = parsed(values.duration, parseDuration);
  const rampMs = parsed(values.ramp, parseDuration);
  const repeat = parsed(values.repeat, (t) => wholeNumber(t, '--repeat'));
  const quick = values.quick ?? false;
  const report = { err: (text: string) => io.stderr(text), out: (text: string) => io.stdout(text) };
  if (values.kvcache && values['no-kvcache']) throw new UsageError('--kvcache and --no-kvcache contradict each other');
  if ([values.kvcache, values.engines, values.fallback].filter(Boolean).length > 1) throw new UsageError('--kvcache, --engines and --fallback are separate benches: pick one');
  if (values.threads !== undefined && !values.fallback) throw new UsageError('--threads goes with --fallback');
  if (values.engine !== undefined && values.engine !== 'local' && values.engine !== 'hf3fs') throw new UsageError(`--engine must be local or hf3fs, got '${values.engine}'`);
  if (values.kvcache || values.engines || values.fallback) {
    for (const name of ['html', 'engine', 'no-micro'] as const) {
      if (values[name] !== undefined) throw new UsageError(`--${name} goes with the main bench, not --${values.kvcache ? 'kvcache' : values.engines ? 'engines' : 'fallback'}`);
    }
  }
  if (values.lib !== undefined && !values.engines && values.engine !== 'hf3fs') throw new UsageError('--lib goes with --engines or --engine hf3fs');
  if (values.fallback) {
    for (const name of ['json', 'workloads', 'tools', 'lib'] as const) {
      if (values[name] !== undefined) throw new UsageError(`bench --fallback does not take --${name}`);
    }
    const { runFallbackBench } = await import('../bench/fallback');
    const threads = parsed(values.threads, (t) => wholeNumber(t, '--threads'));
    await runFallbackBench({ dir: values.dir, quick, size, durationMs, rampMs, repeat, threads, ...report });
    return 0;
  }
  if (values.kvcache) {
    for (const name of ['duration', 'ramp', 'workloads', 'tools', 'lib'] as const) {
      if (values[name] !== undefined) throw new UsageError(`bench --kvcache does not take --${name}`);
    }
    const { runKvBench } = await import('../bench/kvcache');
    await runKvBench({ dir: values.dir, quick, size, repeat, json: values.json, ...report });
    return 0;
  }
  if (values.engines) {
    if (values.dir === undefined) throw new UsageError('bench --engines needs --dir: a directory on a 3FS mount');
    const { runEngineBench } = await import('../bench/engines');
    await runEngineBench({ dir: values.dir, library: values.lib, durationMs, rampMs, repeat, ...report });
    return 0;
  }
  const list = (text: string | undefined) => (text === undefined ? undefined : text.split(',').map((s) => s.trim()).filter(Boolean));
  const tools = list(values.tools);
  await runBench({
    dir: values.dir,
    size,
    durationMs,
    rampMs,
    json: values.json,
    html: values.html,
    engine: values.engine as 'local' | 'hf3fs' | undefined,
    library: values.lib,
    quick,
    repeat,
    workloads: list(values.workloads),
    tools: tools as ('3fs-client' | 'fio' | 'node:fs')[] | undefined,
    kvcache: !values['no-kvcache'],
    datasets: !values['no-datasets'],
    micro: !values['no-micro'],
    terminal: io === defaultIo && process.stderr.isTTY === true,
    ...report,
  });
  return 0;
}

function wholeNumber(text: string, name: string): number {
  if (!/^\d+$/.test(text.trim())) throw new Error(`${name} must be a whole number, got '${text}'`);
  return Number(text);
}

function version(): string {
  let dir = __dirname;
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '3fs-client') return pkg.version ?? 'unknown';
    }
    const up = dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}
