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

/** Waits (off the event loop, at most `waitMs`) until `fd` is ready for `events`. */
async function waitFor(fd: number, events: number): Promise<void> {
  await raw.pollAsync([{ fd, events }], waitMs);
}

/**
 * After splice()/tee() returned EAGAIN: waits on the side that caused it
 * only, as Go's internal/poll/splice_linux.go waits on the socket's read or
 * write side. Waiting on both at once returned at once whenever the other side
 * was ready (an empty source, a destination with room): a busy loop.
 */
async function waitForBlockedSide(from: Fd, to: Fd): Promise<void> {
  const [inReady, outReady] = raw.poll([
    { fd: from.fd, events: raw.POLLIN },
    { fd: to.fd, events: raw.POLLOUT },
  ], 0);
  if (!inReady) return await waitFor(from.fd, raw.POLLIN);
  if (!outReady) return await waitFor(to.fd, raw.POLLOUT);
  // Both ready now: the state changed since the EAGAIN; retry after a tick.
  await new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * Moves exactly `len` bytes from `from` to `to` with splice() (one of them a
 * pipe), or fewer if `from` reaches its end. Returns the bytes moved. While
 * one side is not ready it waits on that side, off the event loop.
 *
 * @example
 * ```ts
 * import { Fd, splice } from "@onecopy/onecopy";
 * using file = Fd.open("/etc/hostname");
 * const [r, w] = Fd.pipe();
 * const moved = await splice(file, w, 4096); // file -> pipe; fewer at end of file
 * w.close();
 * const text = await new Response(r.readable()).text(); // readable() closes r at the end
 * console.log(moved === new TextEncoder().encode(text).length); // true
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
      await waitForBlockedSide(from, to);
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
 * import { Fd, splice, tee } from "@onecopy/onecopy";
 * using file = Fd.open("/etc/hostname");
 * const [r1, w1] = Fd.pipe();
 * const [r2, w2] = Fd.pipe();
 * const n = await splice(file, w1, 4096);
 * const copied = await tee(r1, w2, n); // r1 still holds its n bytes; r2 has a copy
 * console.log(copied === n); // true
 * for (const end of [r1, w1, r2, w2]) end.close();
 * ```
 */
export async function tee(from: Fd, to: Fd, len: number): Promise<number> {
  for (;;) {
    try {
      return raw.tee(from.fd, to.fd, len, raw.SPLICE_F_NONBLOCK);
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) throw err;
      await waitForBlockedSide(from, to);
    }
  }
}

/**
 * vmsplice()s all of `buf` into pipe `to`. The pipe maps `buf`'s pages: it
 * does not copy them. Until everything downstream has consumed the bytes (the
 * pipe, and anything they were spliced into), keep `buf` referenced and do
 * not modify it: once nothing references it, the garbage collector may give
 * its memory to something else, and the pipe then hands out those bytes. When
 * in doubt, use a fresh buffer for each call and hold on to it.
 *
 * @example
 * ```ts
 * import { Fd, vmsplice } from "@onecopy/onecopy";
 * const [r, w] = Fd.pipe();
 * const hello = new TextEncoder().encode("hello"); // kept until it has been read
 * await vmsplice(w, hello);
 * w.close();
 * const text = await new Response(r.readable()).text();
 * if (text !== "hello" || hello.length !== 5) throw new Error(`read ${JSON.stringify(text)}`);
 * console.log(text); // hello
 * ```
 */
export async function vmsplice(to: Fd, buf: Uint8Array): Promise<void> {
  for (let off = 0; off < buf.length;) {
    try {
      off += raw.vmsplice(to.fd, buf.subarray(off), raw.SPLICE_F_NONBLOCK);
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) throw err;
      await waitFor(to.fd, raw.POLLOUT);
    }
  }
}
