/**
 * The shim's mirror loop (shim/mirror.zig): the only place that calls it, and
 * every result is checked here. The shared structs are in ffi/mirror_layout.ts,
 * checked against the shim's own description by tests/raw_test.ts.
 *
 * @module
 */

import { shim } from "./load.ts";
import { check } from "./errors.ts";
import { LOOP, MirrorStatus, REPORT } from "./mirror_layout.ts";

/** What one batch of the mirror loop ended with. */
export type MirrorStatusCode = (typeof MirrorStatus)[keyof typeof MirrorStatus];

const statuses = new Set<number>(Object.values(MirrorStatus));

function checkSize(loop: Uint8Array, what: string): void {
  if (loop.length < LOOP.size) throw new RangeError(`${what}: the buffer is smaller than Loop`);
}

/** Sets a `Loop` to its defaults (every fd -1, the default knobs); then write its config. */
export function mirrorDefaults(loop: Uint8Array): void {
  checkSize(loop, "mirrorDefaults");
  shim().oc_mirror_defaults(loop);
}

/**
 * Checks the config in `loop` (EINVAL: a value outside its range, e.g. an
 * unknown enum value, or no group) and allocates the loop's state and epoll set.
 */
export function mirrorInit(loop: Uint8Array): void {
  checkSize(loop, "mirrorInit");
  check(shim().oc_mirror_init(loop), "mirror_init");
}

/**
 * Runs one batch of the mirror loop on a worker thread: until its time budget
 * passes, reports wait in `reports`, the wake fd is written, or (after abort)
 * every connection is closed.
 */
export async function mirrorRun(loop: Uint8Array, reports: Uint8Array): Promise<MirrorStatusCode> {
  if (reports.length < REPORT.size) throw new RangeError("mirrorRun: no room for a report");
  const status = await shim().oc_mirror_run(loop, reports);
  if (!statuses.has(status)) throw new Error(`oc_mirror_run returned an unknown status ${status}`);
  return status as MirrorStatusCode;
}

/** Closes every connection the loop still holds, its epoll set, and frees its state. Safe twice. */
export function mirrorRelease(loop: Uint8Array): void {
  check(shim().oc_mirror_release(loop), "mirror_release");
}

/** Raises this process's soft open-file limit to its hard limit; returns the new limit. */
export function raiseFileLimit(): number {
  return check(shim().oc_raise_nofile(), "prlimit64");
}

/** The address of a buffer, for a pointer field the loop follows (keep the buffer referenced). */
export function addressOf(buf: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}
