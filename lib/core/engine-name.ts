// One name per engine: the name the `engine` option gives it. The addon (and so info().engine and
// stat().engine) calls the 3FS engine 'usrbio', its name in earlier versions, kept as it is for
// code that compares it; `engineOption` carries the one name.
import type { EmbeddedEngine } from './embedded-engine';

/** An engine as the `engine` option names it. */
export type EngineName = EmbeddedEngine | 'hf3fs';

/** The engine's name from the one the addon reports ('usrbio' is the 'hf3fs' engine). */
export function engineName(reported: string): EngineName {
  return reported === 'usrbio' ? 'hf3fs' : (reported as EngineName);
}
