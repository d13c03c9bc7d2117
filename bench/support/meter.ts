// The measured window of a time-based run, shared by our engine's runs and the node:fs child.
import type { Measured } from './records';
import { percentile } from './stats';

/**
 * The measured window of a time-based run: `rampMs` of warm-up that is not counted, then
 * `durationMs` counted. An op counts when it settles inside the window; its latency is from its
 * submission to its settlement. CPU time is process.cpuUsage() over the window.
 */
export class Meter {
  readonly start: number;
  readonly deadline: number;
  bytes = 0;
  ops = 0;
  #lat = new Float64Array(1 << 16);
  #n = 0;
  #cpu0: NodeJS.CpuUsage | undefined;
  #cpuSeconds = 0;
  #endedAt: number | undefined;
  #timers: NodeJS.Timeout[] = [];

  /** With `endAtDeadline` false the window stays open until end() is called. */
  constructor(rampMs: number, durationMs: number, endAtDeadline = true) {
    const now = performance.now();
    this.start = now + rampMs;
    this.deadline = this.start + durationMs;
    if (rampMs <= 0) this.#cpu0 = process.cpuUsage();
    else this.#timers.push(setTimeout(() => (this.#cpu0 = process.cpuUsage()), rampMs));
    if (endAtDeadline) this.#timers.push(setTimeout(() => this.end(), rampMs + durationMs));
  }

  /** Whether more work should be submitted. */
  get running(): boolean {
    return this.#endedAt === undefined && performance.now() < this.deadline;
  }

  /** `ops` ops moving `bytes` in all, submitted at `t0`, settled at `t1` (performance.now() ms). */
  record(t0: number, t1: number, bytes: number, ops: number): void {
    if (t1 < this.start || t1 > this.deadline || this.#endedAt !== undefined) return;
    this.bytes += bytes;
    this.ops += ops;
    const us = (t1 - t0) * 1000;
    if (this.#n + ops > this.#lat.length) {
      const bigger = new Float64Array(Math.max(this.#lat.length * 2, this.#n + ops));
      bigger.set(this.#lat.subarray(0, this.#n));
      this.#lat = bigger;
    }
    this.#lat.fill(us, this.#n, this.#n + ops);
    this.#n += ops;
  }

  /**
   * Closes the window now, or at the deadline if that came first. Later calls do nothing.
   * `clamp = false` keeps the window open past the deadline: for work that must be paid for
   * (an fdatasync of what was written) though no more ops are counted.
   */
  end(at = performance.now(), clamp = true): void {
    if (this.#endedAt !== undefined) return;
    for (const t of this.#timers) clearTimeout(t);
    this.#endedAt = clamp ? Math.min(at, this.deadline) : at;
    const usage = process.cpuUsage(this.#cpu0);
    this.#cpuSeconds = this.#cpu0 ? (usage.user + usage.system) / 1e6 : 0;
  }

  get ended(): boolean {
    return this.#endedAt !== undefined;
  }

  result(): Measured {
    this.end();
    const lat = this.#lat.subarray(0, this.#n).sort();
    return {
      seconds: Math.max(0, (this.#endedAt as number) - this.start) / 1000,
      bytes: this.bytes,
      ops: this.ops,
      p50us: percentile(lat, 0.5),
      p99us: percentile(lat, 0.99),
      cpuSeconds: this.#cpuSeconds,
    };
  }
}
