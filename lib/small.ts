/**
 * The synchronous path for a small regular file to regular files: read it
 * once into a buffer, write that to each destination, all in this call. No
 * pipes, no eventfd, no worker-thread hop: a fan-out's fixed cost (~2 ms)
 * dwarfed a 4 KiB copy. The guarantees are the engine's `copy` method's: each
 * byte is read once, so every destination gets the same bytes. Files opened
 * by path are cut to the length written after writing, not truncated to 0
 * before (see fanout()); a failed write still leaves only what it wrote.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { asError, OnecopyError } from "../ffi/errors.ts";
import { Checksum } from "./checksum.ts";
import { borrowBuffer, returnBuffers } from "./buffers.ts";
import type { Fd } from "./fd.ts";
import type { DestinationReport, FanoutOptions, FanoutReport } from "./fanout.ts";

/** Files up to this size take the synchronous path. */
export const smallFileLimit = 256 * 1024;

/**
 * Whether a source may take the small path, before the destinations are
 * known: a small regular file opened here by its path, by `auto` or `copy`.
 */
export function smallSource(src: Fd, openedByPath: boolean, options: FanoutOptions): boolean {
  const method = options.method ?? "auto";
  return openedByPath && (method === "auto" || method === "copy") && src.kind === "file" &&
    raw.statx(src.fd).size <= smallFileLimit;
}

/** Whether a fan-out takes the small path: a `smallSource`, to regular files only. */
export function fitsSmallPath(
  src: Fd,
  openedByPath: boolean,
  dests: { fd: Fd }[],
  options: FanoutOptions,
): boolean {
  return dests.length > 0 && dests.every((d) => d.fd.kind === "file") &&
    smallSource(src, openedByPath, options);
}

/**
 * Reads the whole file from offset 0 (pread: the fd's offset stays put, so a
 * file that grew past the limit meanwhile can still go to the engine: then
 * undefined is returned and nothing was written).
 */
function readWhole(src: Fd, buf: Uint8Array): number | undefined {
  let n = 0;
  for (let r; n < buf.length && (r = raw.pread(src.fd, buf.subarray(n), n)) > 0;) n += r;
  return n < buf.length ? n : undefined;
}

/** `readWhole`, with a failure that names the source. */
function readSource(src: Fd, buf: Uint8Array): number | undefined {
  try {
    return readWhole(src, buf);
  } catch (err) {
    throw err instanceof OnecopyError ? new OnecopyError(err.syscall, err.errno, src.label) : err;
  }
}

/** Writes all of `bytes` to a destination, counting into its report; throws naming it. */
function writeAll(fd: Fd, bytes: Uint8Array, report: DestinationReport): void {
  while (report.bytes < bytes.length) {
    let n: number;
    try {
      n = raw.write(fd.fd, bytes.subarray(report.bytes));
    } catch (err) {
      throw err instanceof OnecopyError ? new OnecopyError("write", err.errno, report.target) : err;
    }
    if (n === 0) throw new Error(`${report.target}: write() accepted no bytes`);
    report.bytes += n;
  }
}

/** Writes a destination, then cuts it to what it got if asked; failures go in its report. */
function deliver(fd: Fd, bytes: Uint8Array, report: DestinationReport, cut: boolean): void {
  try {
    writeAll(fd, bytes, report);
  } catch (err) {
    report.error = asError(err);
  }
  if (!cut) return;
  try {
    raw.ftruncate(fd.fd, report.bytes);
  } catch (err) {
    report.error ??= err instanceof OnecopyError
      ? new OnecopyError("ftruncate", err.errno, report.target)
      : asError(err);
  }
}

/**
 * Runs the small path; undefined if the file outgrew it (nothing written then).
 * Each fd in `cutAfter` is truncated to the bytes written into it.
 */
export function runSmall(
  src: Fd,
  dests: { fd: Fd; report: DestinationReport }[],
  options: FanoutOptions,
  cutAfter: Set<Fd>,
): Omit<FanoutReport, "destinations" | "seconds"> | undefined {
  const buf = borrowBuffer(smallFileLimit + 1);
  try {
    const size = readSource(src, buf);
    if (size === undefined) return undefined;
    const bytes = buf.subarray(0, size);
    let stopped: Error | undefined;
    for (const { fd, report } of dests) {
      // After a "stop", the rest get nothing (and are still cut, to 0, as the engine's would be).
      deliver(fd, stopped ? bytes.subarray(0, 0) : bytes, report, cutAfter.has(fd));
      if (stopped) report.error ??= new Error("stopped", { cause: stopped });
      if (report.error && options.onDestinationError?.(report.target, report.error) === "stop") {
        stopped ??= report.error;
      }
    }
    options.onProgress?.(size);
    const report: Omit<FanoutReport, "destinations" | "seconds"> = {
      bytes: size,
      method: "copy",
      stable: true,
    };
    if (options.checksum) {
      report.checksum = {
        algorithm: options.checksum,
        hex: new Checksum(options.checksum).update(bytes).digest(),
      };
    }
    return report;
  } finally {
    returnBuffers([buf]);
  }
}
