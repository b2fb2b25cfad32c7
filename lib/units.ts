/**
 * Sizes and times the fan-out and the mirror share, defined once.
 *
 * @module
 */

/** 2^20 bytes. */
export const MiB = 1 << 20;

/**
 * How long one batch of a shim loop (one FFI call on a worker thread) runs
 * at most: long enough that the ~40 µs call costs nothing, short enough that
 * progress callbacks come often and nothing waits on a whole transfer.
 */
export const batchBudgetNs = 50_000_000;
