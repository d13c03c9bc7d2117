// Staging memory: registered buffers for directories, header reads and copied payloads, a few
// kept for reuse so that a call does not register new memory each time.
import type { IoBuffer } from '../core/io-buffer';
import { ALIGN, roundUp } from './slot-header';

const KEEP = 4; // buffers kept idle

export class Staging {
  readonly #alloc: (bytes: number) => IoBuffer;
  readonly #idle: IoBuffer[] = [];
  /** Set when the cache starts closing: buffers given back are freed, not kept. */
  closing = false;

  constructor(alloc: (bytes: number) => IoBuffer) {
    this.#alloc = alloc;
  }

  take(bytes: number): IoBuffer {
    const i = this.#idle.findIndex((b) => b.byteLength >= bytes && !b.freed);
    if (i >= 0) return this.#idle.splice(i, 1)[0];
    return this.#alloc(roundUp(Math.max(bytes, ALIGN), 1 << 20));
  }

  give(b: IoBuffer): void {
    if (this.closing || this.#idle.length >= KEEP) b.free();
    else this.#idle.push(b);
  }

  freeAll(): void {
    for (const b of this.#idle.splice(0)) b.free();
  }
}
