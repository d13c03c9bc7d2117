// The targets table: every target of the run with its figure and verdict, in the order the
// sections judged them; the same entries as the JSON's `targets`, one line each.
import type { Judged } from '../support/targets';
import { targetText, valueText, verdictText } from '../support/targets';
import { markdownTable } from './markdown';

export const TARGETS_HEADER = ['section', 'row', 'measure', 'value', 'target', 'verdict', 'note'];

/** The cells of one target's line: the same fields the JSON records. */
export function targetCells(j: Judged): string[] {
  return [j.section, j.row, j.measure, valueText(j), targetText(j), verdictText(j), j.verdict === 'not measured' ? (j.note ?? '') : ''];
}

export function formatTargets(judged: readonly Judged[]): string {
  const met = judged.filter((j) => j.verdict === 'met').length;
  const notMet = judged.filter((j) => j.verdict === 'not met').length;
  const head = `Targets: ${met} met, ${notMet} not met, ${judged.length - met - notMet} not measured`;
  return `${head}\n\n${markdownTable(TARGETS_HEADER, judged.map(targetCells), [3])}`;
}

/** The target and verdict cells of a table row judged by several targets: 'a; b' each. */
export function rowTargetCells(judged: readonly Judged[]): { target: string; verdict: string } {
  const short = (j: Judged) => (j.measure.startsWith('CPU') ? `CPU ${targetText(j)}` : targetText(j));
  return { target: judged.map(short).join('; '), verdict: judged.map(verdictText).join('; ') };
}
