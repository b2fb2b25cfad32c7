/**
 * The shim's fan-out loop (shim/engine.zig) and checksums (shim/hash.zig):
 * the only place that calls them, and every result is checked here.
 *
 * @module
 */

import { shim } from "./load.ts";
import { check } from "./errors.ts";
import { DEST, DIGEST_MAX, JOB, type JobView, POLLFD_SIZE, pollSlots, Status } from "./layout.ts";

/** What one batch of the fan-out loop ended with. */
export type StatusCode = (typeof Status)[keyof typeof Status];

const statuses = new Set<number>(Object.values(Status));

/** Sets a job and its `ndest` destinations to their defaults: fds -1, feeds dead. */
export function initJob(job: Uint8Array, dests: Uint8Array, ndest: number): void {
  if (job.length < JOB.size || dests.length < ndest * DEST.size) {
    throw new RangeError("initJob: the buffers are smaller than the structs");
  }
  shim().oc_job_init(job, dests, ndest);
}

/**
 * Gives the job its poll set, sized for `ndest` destinations (the tap
 * included): the loop waits on it and never allocates, so the number of
 * destinations has no fixed limit. Returns the memory, which the caller keeps
 * referenced until the run ends (the job points into it).
 */
export function attachPollSet(job: JobView, ndest: number): Uint8Array {
  const polls = new Uint8Array(POLLFD_SIZE * pollSlots(ndest));
  job.point("poll_fds", polls);
  job.set("poll_cap", pollSlots(ndest));
  return polls;
}

/**
 * Runs one batch of the fan-out loop on a worker thread: until the transfer is
 * done, an error needs a decision, the wake fd is signalled, or the job's time
 * budget has passed. `job` and `dests` are the shared structs (ffi/layout.ts).
 */
export async function runBatch(job: Uint8Array, dests: Uint8Array): Promise<StatusCode> {
  const status = await shim().oc_run(job, dests);
  if (!statuses.has(status)) throw new Error(`oc_run returned an unknown status ${status}`);
  return status as StatusCode;
}

/** Frees what the loop mapped (vmsplice pages, the source window); safe to call twice. */
export function releaseRun(job: Uint8Array): void {
  check(shim().oc_run_release(job), "oc_run_release");
}

/** Starts the job's checksum (its algorithm is already set in the job). */
export function hashJobBegin(job: Uint8Array): void {
  check(shim().oc_hash_job_begin(job), "hash");
}

/** Finishes the job's checksum: the digest, big-endian. */
export function hashJobEnd(job: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIGEST_MAX);
  return out.subarray(0, check(shim().oc_hash_job_end(job, out), "hash"));
}

/** Starts a checksum of algorithm `alg` in `state` (`HASH_STATE_SIZE` bytes). */
export function hashBegin(alg: number, state: Uint8Array): void {
  check(shim().oc_hash_begin(alg, state), "hash");
}

/** Adds bytes to a checksum. */
export function hashUpdate(alg: number, state: Uint8Array, bytes: Uint8Array): void {
  check(shim().oc_hash_update(alg, state, bytes, BigInt(bytes.length)), "hash");
}

/** Finishes a checksum: the digest, big-endian. */
export function hashEnd(alg: number, state: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIGEST_MAX);
  return out.subarray(0, check(shim().oc_hash_end(alg, state, out), "hash"));
}

/** The shim's own description of the shared structs, `Name=size;Name.field=offset;…`. */
export function shimLayout(): string {
  const buf = new Uint8Array(8192);
  const n = check(shim().oc_layout(buf, BigInt(buf.length)), "oc_layout");
  return new TextDecoder().decode(buf.subarray(0, n));
}
