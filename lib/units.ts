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

/**
 * A batch's budget when no progress is asked for: between batches there is
 * then nothing to do (an abort and a failing stream write the loop's wake fd,
 * which it polls), and each return to JavaScript is a worker-thread hop.
 * 1 GiB to 4 pipes: transfer 0.486 vs 0.498 s with 50 ms batches (medians of
 * 11 interleaved rounds): small, at the edge of the noise.
 */
export const quietBatchBudgetNs = 500_000_000;
