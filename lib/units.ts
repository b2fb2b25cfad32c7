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
 * progress callbacks come often, nothing waits on a whole transfer, and an
 * idle batch does not hold one of Deno's blocking threads (shared by every
 * async op of the process) for long. 500 ms batches were tried: within the
 * noise (1 GiB tee: 0.486 vs 0.498 s), and with 40 fan-outs waiting at once,
 * a file read in the same process waited ~0.4 s for a thread.
 */
export const batchBudgetNs = 50_000_000;
