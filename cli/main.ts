// The `3fs-client` command line. bin/3fs-client.js calls main() with process.argv.slice(2).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { bench, benchOptions, type BenchValues } from './bench';
import { doctor, doctorOptions, type DoctorValues } from './doctor';
import { defaultIo, USAGE, UsageError, type CliIo } from './usage';

export type { CliIo } from './usage';

const COMMANDS = ['bench', 'doctor', 'help'];

/**
 * The command word: the first argument naming a command, else the first that is not an option.
 * Looking for a known name first keeps `--json out.json bench` working.
 */
function commandOf(argv: string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  return words.find((w) => COMMANDS.includes(w)) ?? words[0];
}

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
