/**
 * The fanout bench's input size and run counts, shared by the suite and the
 * summary that describes it.
 *
 * @module
 */

/** Bytes in the page-cached input file. */
export const inputBytes = 64 * (1 << 20);
/** Timed runs and warm-up runs per benchmark. */
export const runs = { n: 8, warmup: 2 };
