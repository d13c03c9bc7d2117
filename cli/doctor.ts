// `3fs-client doctor [path]`: checks this machine and path for 3fs-client and 3FS.
import { globalOptions, type CliIo } from './usage';

// doctor's --json is a switch, bench's takes a file: each command parses its own options.
export const doctorOptions = {
  ...globalOptions,
  json: { type: 'boolean' },
  lib: { type: 'string' },
  config: { type: 'string' },
} as const;

export interface DoctorValues {
  json?: boolean;
  lib?: string;
  config?: string;
}

export async function doctor(path: string | undefined, values: DoctorValues, io: CliIo): Promise<number> {
  // Loaded only here, as bench is; the doctor itself copes with an addon that does not load.
  const { runDoctor, formatDoctor } = await import('../lib/index');
  const report = await runDoctor({ path, library: values.lib, config: values.config });
  io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
  return report.exitCode;
}
