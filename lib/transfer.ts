/**
 * Full-transfer helpers over splice(), tee() and vmsplice(), for people who
 * compose their own pipelines. Each waits (without blocking the event loop)
 * where the raw call would return EAGAIN, and handles partial counts.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { hasCode } from "../ffi/errors.ts";
import { type Fd, waitMs } from "./fd.ts";

const flags = raw.SPLICE_F_NONBLOCK | raw.SPLICE_F_MOVE;

async function waitFor(fds: raw.PollRequest[]): Promise<void> {
  await raw.pollAsync(fds, waitMs);
}

/**
 * Moves exactly `len` bytes from `from` to `to` with splice() (one of them a
 * pipe), or fewer if `from` reaches its end. Returns the bytes moved.
 *
 * @example
 * ```ts
 * import { Fd, splice } from "@onecopy/onecopy";
 * const [r, w] = Fd.pipe();
 * const file = Fd.open("/etc/hostname");
 * const moved = await splice(file, w, 4096); // file -> pipe
 * ```
 */
export async function splice(from: Fd, to: Fd, len: number): Promise<number> {
  let moved = 0;
  while (moved < len) {
    let n: number;
    try {
      n = raw.splice(from.fd, to.fd, len - moved, flags);
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) throw err;
      await waitFor([{ fd: from.fd, events: raw.POLLIN }, { fd: to.fd, events: raw.POLLOUT }]);
      continue;
    }
    if (n === 0) break; // end of input
    moved += n;
  }
  return moved;
}

/**
 * Duplicates up to `len` bytes from the head of pipe `from` into pipe `to`
 * without consuming them. It waits until `from` holds data (or has no writer
 * left) and `to` has room, then makes **one** tee() call: a second call would
 * duplicate the head again, so a short count is returned, never "continued".
 * Returns 0 when `from` is empty and its writers are gone.
 *
 * @example
 * ```ts
 * import { Fd, tee } from "@onecopy/onecopy";
 * const [r1, w1] = Fd.pipe();
 * const [r2, w2] = Fd.pipe();
 * const copied = await tee(r1, w2, 65536);
 * ```
 */
export async function tee(from: Fd, to: Fd, len: number): Promise<number> {
  for (;;) {
    try {
      return raw.tee(from.fd, to.fd, len, raw.SPLICE_F_NONBLOCK);
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) throw err;
      await waitFor([{ fd: from.fd, events: raw.POLLIN }, { fd: to.fd, events: raw.POLLOUT }]);
    }
  }
}

/**
 * vmsplice()s all of `buf` into pipe `to`. The kernel references `buf`'s pages
 * after this returns: do not modify `buf` until everything downstream has
 * consumed it (the pipe, and anything it was spliced into). When in doubt, use
 * a fresh buffer for each call.
 *
 * @example
 * ```ts
 * import { Fd, vmsplice } from "@onecopy/onecopy";
 * const [r, w] = Fd.pipe();
 * await vmsplice(w, new TextEncoder().encode("hello"));
 * ```
 */
export async function vmsplice(to: Fd, buf: Uint8Array): Promise<void> {
  for (let off = 0; off < buf.length;) {
    try {
      off += raw.vmsplice(to.fd, buf.subarray(off), raw.SPLICE_F_NONBLOCK);
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) throw err;
      await waitFor([{ fd: to.fd, events: raw.POLLOUT }]);
    }
  }
}
