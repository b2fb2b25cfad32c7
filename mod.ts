/**
 * onecopy: send one stream to many places with one copy, on Linux, using
 * splice(2), tee(2) and vmsplice(2) through a tiny native shim.
 *
 * @example
 * ```ts
 * import { fanout } from "@onecopy/onecopy";
 *
 * // One file to two files, with a checksum of what was sent.
 * const dir = await Deno.makeTempDir();
 * const report = await fanout("/etc/hostname", [`${dir}/a.bin`, `${dir}/b.bin`], {
 *   checksum: "xxh64",
 * });
 * console.log(`${report.bytes} bytes by ${report.method}, xxh64 ${report.checksum?.hex}`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * Needs `--allow-ffi` (the shim), `--allow-env=HOME,XDG_CACHE_HOME` and
 * `--allow-read`/`--allow-write` on its cache directory, and `--allow-net` only to
 * resolve host names. What is missing is reported in one message listing the flags.
 *
 * @module
 */

export {
  type DestinationReport,
  type DestinationSpec,
  fanout,
  FanoutError,
  type FanoutOptions,
  type FanoutReport,
  type SourceSpec,
} from "./lib/fanout.ts";
export { type ConnectOptions, Fd, type FdKind, Listener } from "./lib/fd.ts";
export {
  type ConnectionReport,
  type EndpointOutcome,
  mirror,
  type MirrorMethod,
  type MirrorOptions,
  MirrorServer,
  type MirrorStats,
  type OnLag,
  type ShadowReport,
} from "./lib/mirror.ts";
export { type Method, methods, type UsedMethod } from "./lib/plan.ts";
export { Checksum, type ChecksumAlgorithm, checksumAlgorithms } from "./lib/checksum.ts";
export { splice, tee, vmsplice } from "./lib/transfer.ts";
export { OnecopyError } from "./ffi/errors.ts";
