// `3fs-client bench`: parses and checks the bench's options, then runs the bench they pick (the
// default one, or --kvcache, --engines, --fallback, --http alone).
import type { BenchOptions } from '../bench/index';
import { asUsage, defaultIo, globalOptions, UsageError, wholeNumber, type CliIo } from './usage';

export const benchOptions = {
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
  'no-streams': { type: 'boolean' },
  http: { type: 'boolean' },
} as const;

export interface BenchValues {
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
  'no-streams'?: boolean;
  http?: boolean;
  html?: string;
  engine?: string;
}

type Bench = typeof import('../bench/index');

/** The options every bench shares, each parsed once; each bench takes the ones it has. */
interface Common {
  quick: boolean;
  size?: number;
  durationMs?: number;
  rampMs?: number;
  repeat?: number;
  err: (text: string) => void;
  out: (text: string) => void;
}

export async function bench(values: BenchValues, io: CliIo): Promise<number> {
  // Loaded only here: `help` must work even when the native addon does not load.
  const b: Bench = await import('../bench/index');
  const common = commonOptions(values, b, io);
  checkCombination(values);
  if (values.fallback) {
    refuse(values, 'fallback', ['json', 'workloads', 'tools', 'lib']);
    const threads = parsed(values.threads, (t) => wholeNumber(t, '--threads'));
    await b.runFallbackBench({ dir: values.dir, threads, ...common });
  } else if (values.kvcache) {
    refuse(values, 'kvcache', ['duration', 'ramp', 'workloads', 'tools', 'lib']);
    const { quick, size, repeat, err, out } = common;
    await b.runKvBench({ dir: values.dir, quick, size, repeat, json: values.json, err, out });
  } else if (values.http) {
    refuse(values, 'http', ['json', 'duration', 'ramp', 'workloads', 'tools', 'lib']);
    const { quick, size, repeat, err, out } = common;
    out(b.formatHttpTable(await b.runHttpBench({ dir: values.dir, quick, size, repeat, err })));
  } else if (values.engines) {
    if (values.dir === undefined) throw new UsageError('bench --engines needs --dir: a directory on a 3FS mount');
    const { durationMs, rampMs, repeat, err, out } = common;
    await b.runEngineBench({ dir: values.dir, library: values.lib, durationMs, rampMs, repeat, err, out });
  } else {
    await b.runBench(mainOptions(values, common, io));
  }
  return 0;
}

function parsed(text: string | undefined, parse: (t: string) => number): number | undefined {
  return text === undefined ? undefined : asUsage(() => parse(text));
}

function commonOptions(values: BenchValues, b: Bench, io: CliIo): Common {
  return {
    quick: values.quick ?? false,
    size: parsed(values.size, b.parseSize),
    durationMs: parsed(values.duration, b.parseDuration),
    rampMs: parsed(values.ramp, b.parseDuration),
    repeat: parsed(values.repeat, (t) => wholeNumber(t, '--repeat')),
    err: (text: string) => io.stderr(text),
    out: (text: string) => io.stdout(text),
  };
}

/** Options that contradict each other, or that go with another bench than the one picked. */
function checkCombination(values: BenchValues): void {
  if (values.kvcache && values['no-kvcache']) throw new UsageError('--kvcache and --no-kvcache contradict each other');
  const separate = { kvcache: values.kvcache, engines: values.engines, fallback: values.fallback, http: values.http };
  const picked = Object.entries(separate).filter(([, v]) => v).map(([k]) => k);
  if (picked.length > 1) throw new UsageError('--kvcache, --engines, --fallback and --http are separate benches: pick one');
  if (values.threads !== undefined && !values.fallback) throw new UsageError('--threads goes with --fallback');
  if (values.engine !== undefined && values.engine !== 'local' && values.engine !== 'hf3fs') throw new UsageError(`--engine must be local or hf3fs, got '${values.engine}'`);
  if (picked.length === 1) {
    for (const name of ['html', 'engine', 'no-micro', 'no-streams'] as const) {
      if (values[name] !== undefined) throw new UsageError(`--${name} goes with the main bench, not --${picked[0]}`);
    }
  }
  if (values.lib !== undefined && !values.engines && values.engine !== 'hf3fs') throw new UsageError('--lib goes with --engines or --engine hf3fs');
}

function refuse(values: BenchValues, which: string, names: readonly (keyof BenchValues)[]): void {
  for (const name of names) {
    if (values[name] !== undefined) throw new UsageError(`bench --${which} does not take --${name}`);
  }
}

function mainOptions(values: BenchValues, common: Common, io: CliIo): BenchOptions {
  const list = (text: string | undefined) => (text === undefined ? undefined : text.split(',').map((s) => s.trim()).filter(Boolean));
  return {
    dir: values.dir,
    json: values.json,
    html: values.html,
    engine: values.engine as 'local' | 'hf3fs' | undefined,
    library: values.lib,
    workloads: list(values.workloads),
    tools: list(values.tools) as BenchOptions['tools'],
    kvcache: !values['no-kvcache'],
    datasets: !values['no-datasets'],
    micro: !values['no-micro'],
    streams: !values['no-streams'],
    terminal: io === defaultIo && process.stderr.isTTY === true,
    ...common,
  };
}
