/**
 * The live progress line on stderr: bytes, rate, and percent and ETA when the
 * size is known. Only on a terminal; with `force` from the first update (and a
 * one-line summary left at the end), otherwise once a transfer has run for a
 * second (and erased at the end).
 *
 * @module
 */

const encoder = new TextEncoder();

/** Formats a byte count with a binary unit, e.g. `1.50 GiB`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(2)} ${units[i]}`;
}

/** A progress line; `update()` is cheap to call often, `done()` leaves a summary or clears it. */
export class Progress {
  readonly #total?: number;
  readonly #start = performance.now();
  readonly #enabled: boolean;
  readonly #force: boolean;
  #last = 0;
  #shown = false;

  constructor(options: { force: boolean; total?: number }) {
    this.#enabled = Deno.stderr.isTerminal();
    this.#force = options.force;
    this.#total = options.total;
  }

  /**
   * Whether a line can ever show (stderr is a terminal). Only then is it worth
   * asking `fanout()` for progress (a callback after every batch).
   */
  get visible(): boolean {
    return this.#enabled;
  }

  update(bytes: number): void {
    const now = performance.now();
    const elapsed = (now - this.#start) / 1000;
    if (!this.#enabled || (!this.#force && elapsed < 1) || now - this.#last < 200) return;
    this.#last = now;
    const rate = bytes / Math.max(elapsed, 1e-3);
    let line = `${formatBytes(bytes)}  ${formatBytes(rate)}/s`;
    if (this.#total) {
      const eta = rate > 0 ? (this.#total - bytes) / rate : 0;
      line += `  ${((100 * bytes) / this.#total).toFixed(1)}%  ETA ${eta.toFixed(0)}s`;
    }
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${line}`));
    this.#shown = true;
  }

  /** Ends the line: with `force` and the final byte count, a summary stays; otherwise it goes. */
  done(bytes?: number): void {
    if (this.#enabled && this.#force && bytes !== undefined) {
      const seconds = (performance.now() - this.#start) / 1000;
      const rate = bytes / Math.max(seconds, 1e-3);
      const line = `${formatBytes(bytes)} in ${seconds.toFixed(1)}s  ${formatBytes(rate)}/s`;
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${line}\n`));
    } else if (this.#shown) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  }
}
