/**
 * A small pool of the chunk-sized buffers the shim reads into and writes
 * from, reused across fan-outs: fresh 1 MiB buffers per call, collected
 * lazily, grew a long-running process to ~120 MiB (300 calls of 4 MiB).
 * Only for buffers the shim uses with read()/write(): never for pages handed
 * to vmsplice(), which the kernel may still reference after the call.
 *
 * @module
 */

/** At most this many idle buffers are kept (a fan-out uses 1 + one per copying destination). */
const maxIdle = 8;
/** Only buffers at least this big are worth keeping. */
const minPooled = 64 * 1024;
const idle: Uint8Array[] = [];

/** A buffer of exactly `size` bytes: an idle one if there is one, else a new one. */
export function borrowBuffer(size: number): Uint8Array {
  const i = idle.findIndex((b) => b.length === size);
  return i >= 0 ? idle.splice(i, 1)[0] : new Uint8Array(size);
}

/**
 * Returns buffers for reuse. The caller guarantees nothing (native code
 * included) still reads or writes them.
 */
export function returnBuffers(buffers: Uint8Array[]): void {
  for (const b of buffers) {
    // Small ones are cheap to allocate; kept, they would only crowd out the big ones.
    if (b.length < minPooled || idle.includes(b)) continue;
    if (idle.length >= maxIdle) idle.shift(); // the oldest goes: the sizes in use now stay
    idle.push(b);
  }
}
