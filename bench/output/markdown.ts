// The bench's tables as Markdown (GitHub's pipe tables), padded so they line up in a terminal too.

/** A Markdown table padded to line up in a terminal too; `numeric` columns are right-aligned. */
export function markdownTable(header: string[], rows: string[][], numeric: number[] = []): string {
  const right = new Set(numeric);
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => r[i].length)));
  const cell = (c: string, i: number) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]));
  const line = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right.has(i) ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n') + '\n';
}
