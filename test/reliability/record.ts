// What each reliability test ran and found, for RELIABILITY.md (scripts/reliability-report.mjs).
// Each test writes one JSON file per vitest project into build-test/reliability/; the report
// script reads them. Counts only: operations run, faults injected, crashes, leaks, and a note.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EMBEDDED, ENGINE } from '../helpers';

export const RESULTS_DIR = join(resolve(__dirname, '..', '..'), 'build-test', 'reliability');

export interface Outcome {
  /** Operations (native calls, batch ops, cache calls) the test ran. */
  operations: number;
  /** Faults it injected (hostile arguments, errors from below, kills). */
  faults: number;
  /** Process crashes seen (children included). A crash of the test process itself fails it before it records. */
  crashes: number;
  /** Leaks found (descriptors, memory, mappings, buffers not returned). */
  leaks: number;
  /** What else a reader should know (durations, error codes seen). */
  note?: string;
}

/** The engine a result was measured on: io_uring, threads or hf3fs (stand-in or a real mount). */
export const ENGINE_LABEL = ENGINE === 'hf3fs' ? 'hf3fs' : EMBEDDED;

export function record(id: string, outcome: Outcome): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const addon = process.env.THREEFS_CLIENT_ADDON;
  const sanitizer = !addon ? 'none' : /build-tsan/.test(addon) ? 'tsan' : /build-asan/.test(addon) ? 'asan' : 'other-build';
  const file = join(RESULTS_DIR, `${id}.${ENGINE_LABEL}.${sanitizer}.json`);
  writeFileSync(file, JSON.stringify({ id, engine: ENGINE_LABEL, sanitizer, at: new Date().toISOString(), ...outcome }, null, 2) + '\n');
}
