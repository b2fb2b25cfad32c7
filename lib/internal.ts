/**
 * What the onecopy CLI needs beyond the public API (mod.ts): one deliberate
 * door into the library's internals, so that cli/ imports nothing else from
 * lib/ or ffi/. Not part of the published API; may change at any time.
 *
 * @module
 */

export { describeFailure } from "./fanout.ts";
export { parseTarget, type Target } from "./addr.ts";
export { errnoText, hasCode, printable } from "../ffi/errors.ts";
export {
  dieOfSignal,
  F_GETFL,
  fcntl,
  ignoreSignal,
  loadShim,
  O_RDWR,
  SIGINT,
  SIGPIPE,
  SIGXFSZ,
  statx,
} from "../ffi/raw.ts";
export { MIRROR_LIMITS, MIRROR_METHODS, ON_LAG, parseBytes } from "./mirror.ts";
export { raiseFileLimit } from "../ffi/mirror.ts";
export { PermissionError } from "../ffi/permissions.ts";
export { createWriter } from "./fd.ts";
export { hungUpTerminal } from "./endpoints.ts";
