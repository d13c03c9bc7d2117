// What the bench says while it runs. On a terminal: one line redrawn in place, a bar of the whole
// plan and of the run under way (its measured window is known, so the bar moves with the clock).
// Elsewhere (CI logs, pipes): the plain lines the bench always printed, one per run.

export interface Progress {
  /** Run `index` (0-based) of `total` starts; it should take about `expectedMs`. */
  start(index: number, total: number, label: string, expectedMs: number): void;
  /** The run under way ended; `tail` is its result ("1.23 GB/s, ...") or " failed". */
  done(tail: string): void;
  /** A line of its own (a note, a warning), kept above the bar. */
  log(line: string): void;
}

const BAR = 24;

/** A bar of `width` cells, `fraction` (0..1) of them full. */
export function bar(fraction: number, width = BAR): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

export function makeProgress(write: (text: string) => void, terminal: boolean): Progress {
  return terminal ? new TerminalProgress(write) : new PlainProgress(write);
}

class PlainProgress implements Progress {
  constructor(private readonly write: (text: string) => void) {}
  start(index: number, total: number, label: string): void {
    this.write(`[${index + 1}/${total}] ${label} ...`);
  }
  done(tail: string): void {
    this.write(tail + '\n');
  }
  log(line: string): void {
    this.write(line + '\n');
  }
}

class TerminalProgress implements Progress {
  #timer: NodeJS.Timeout | undefined;
  #line = '';
  constructor(private readonly write: (text: string) => void) {}

  start(index: number, total: number, label: string, expectedMs: number): void {
    const began = performance.now();
    const draw = () => {
      const run = Math.min(1, (performance.now() - began) / Math.max(1, expectedMs));
      const all = (index + run) / total;
      this.#line = `${bar(all)} ${String(Math.round(all * 100)).padStart(3)}%  [${index + 1}/${total}] ${label} ${bar(run, 10)}`;
      // A line that wrapped could not be redrawn in place: keep it to the terminal's width.
      const columns = process.stderr.columns;
      this.write(`\r\x1b[2K${columns ? this.#line.slice(0, columns - 1) : this.#line}`);
    };
    draw();
    // A few redraws a second: nothing the measured runs would notice.
    this.#timer = setInterval(draw, 250);
    this.#timer.unref();
  }

  done(tail: string): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    // The finished run stays as a plain line; the next start() draws a fresh bar below it.
    this.write(`\r\x1b[2K${this.#line.replace(/^.*?\[/, '[').replace(/ [█░]+$/, '')}${tail}\n`);
    this.#line = '';
  }

  log(line: string): void {
    this.write(`\r\x1b[2K${line}\n${this.#line}`);
  }
}
