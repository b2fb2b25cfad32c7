/**
 * fanout(): one source to many destinations with one copy. What the caller
 * sees: the options, the report and its error, and the order of a run
 * (check, open, refuse or truncate, run, report). The ends are opened in
 * lib/endpoints.ts; the shim's loop is driven in lib/engine.ts (one FFI call
 * per ~50 ms batch, on Deno's blocking threads, so the event loop keeps
 * running); a small file takes lib/small.ts.
 *
 * @module
 */

import { asError, printable } from "../ffi/errors.ts";
import { Fd, truncateToEmpty } from "./fd.ts";
import { choosePlan, type Method, type UsedMethod } from "./plan.ts";
import type { ChecksumAlgorithm } from "./checksum.ts";
import { checkOptions, checkSpecs, type DestinationSpec, type SourceSpec } from "./specs.ts";
import { Streams } from "./streams.ts";
import { fitsSmallPath, runSmall, smallSource } from "./small.ts";
import {
  checkDistinctFds,
  ignoreFileSizeSignal,
  type Live,
  loopIdentity,
  mappable,
  openDestination,
  openSource,
  Owned,
  resetCutShort,
  sourceRefusal,
  truncateOpened,
} from "./endpoints.ts";
import { named, openOwnFds, runEngine, type RunReport } from "./engine.ts";

export type { DestinationSpec, SourceSpec };

/** Options of `fanout()`. */
export interface FanoutOptions {
  /** How to make the one copy; default `"auto"`. */
  method?: Method;
  /** Compute this checksum of the bytes sent, on a tap, after the fact. */
  checksum?: ChecksumAlgorithm;
  /**
   * Aborts the transfer: the promise rejects within a few ms, even with a
   * stalled destination (see README, Failure behaviour, for a file being
   * overwritten on ext4).
   */
  signal?: AbortSignal;
  /** Called after each batch (~50 ms) with the bytes every live destination has received. */
  onProgress?: (bytesDone: number) => void;
  /** Pipe size in bytes for the stage and branch pipes; default 1 MiB. */
  pipeSize?: number;
  /**
   * Gives up on a TCP or Unix destination whose name lookup and connect take
   * longer than this many ms (the others go on); default 30 000; `Infinity`
   * waits as long as the kernel does. NaN or a negative number is a
   * TypeError, thrown before anything is opened.
   */
  connectTimeout?: number;
  /** Open file destinations for appending instead of truncating them. */
  append?: boolean;
  /**
   * Called when a destination fails; return `"stop"` to end the whole transfer
   * (the promise then rejects with the report, and the destinations cut short
   * carry the error `stopped`). By default the others go on. It is called
   * for a destination that fails before any byte moves too (it cannot be
   * opened or connected, or it is the source itself), once every destination
   * has been tried and before the transfer starts: `"stop"` then means
   * nothing is transferred and no file is truncated.
   */
  onDestinationError?: (target: string, error: Error) => "continue" | "stop";
  /**
   * Report a pipe destination whose reader has gone (EPIPE, from `poll`) as
   * soon as it goes, even while the source is idle, instead of at the next
   * write into it (what coreutils 9.2 `tee -p` does). Default false.
   */
  watchReaders?: boolean;
}

/** What happened to one destination. */
export interface DestinationReport {
  /** The destination as given (a path, a URL, or the Fd's label). */
  target: string;
  /** Bytes it received. */
  bytes: number;
  /** Why it stopped early, if it did. */
  error?: Error;
}

/** What a fan-out did. */
export interface FanoutReport {
  /** Bytes read from the source. */
  bytes: number;
  /** The method that ran (`auto` resolved). */
  method: UsedMethod;
  /** Whether every destination was guaranteed the same bytes even if the source changed. */
  stable: boolean;
  /** The checksum of the bytes, if asked for. */
  checksum?: { algorithm: ChecksumAlgorithm; hex: string };
  /** One entry per destination, in the order given. */
  destinations: DestinationReport[];
  /** Wall-clock seconds. */
  seconds: number;
  /**
   * Why the source failed, if it did part way: the destinations then hold the
   * first `bytes` only (their own counts say so), and the promise rejects.
   */
  error?: Error;
}

/**
 * Some destinations failed (the others got every byte). `report` says which.
 *
 * @example
 * ```ts
 * import { fanout, FanoutError } from "@onecopy/onecopy";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await fanout("/etc/hostname", [`${dir}/ok.txt`, "/nonexistent/dir/x"]);
 * } catch (err) {
 *   if (!(err instanceof FanoutError)) throw err;
 *   for (const d of err.report.destinations) console.log(d.target, d.bytes, d.error?.message);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export class FanoutError extends Error {
  /** The full report, failed destinations included. */
  readonly report: FanoutReport;
  /** Wraps a report that has at least one failed destination. */
  constructor(report: FanoutReport) {
    const failed = report.destinations.filter((d) => d.error);
    const lines = failed.map((d) => describeFailure(d.target, d.error));
    super([...(report.error ? [report.error.message] : []), ...lines].join("; "), {
      cause: report.error,
    });
    this.name = "FanoutError";
    this.report = report;
  }
}

/** `target: why`, without repeating the target when the error already names it. */
export function describeFailure(target: string, error: Error | undefined): string {
  const message = error?.message ?? "failed";
  const name = printable(target);
  return message.startsWith(`${name}: `) ? message : `${name}: ${message}`;
}

/**
 * Sends one source to many destinations, reading it once.
 *
 * Methods:
 * - `pipe-tee`: the one copy goes into a pipe (read() then write(); or, from a
 *   source that is a pipe, tee() straight from it: no copy at all); tee()
 *   duplicates it for each destination and splice() moves it out.
 * - `vmsplice`: read() into fresh pages, vmsplice() them into the pipe, then as
 *   pipe-tee. Pages are never reused, so nothing downstream can see them change.
 * - `mmap-write`: write() each destination from a mapping of the file. No
 *   stability guarantee: if the file changes mid-transfer, destinations may differ.
 * - `copy`: read() into a buffer, write() it to each destination (the baseline).
 *   Each byte is read once, so destinations agree with each other.
 * - `auto` (default): pipe-tee, with sockets written from a read() buffer where
 *   that measured faster; always stable.
 *
 * With `pipe-tee`, `vmsplice`, `copy` and `auto`, every destination receives
 * exactly the same bytes even if the source file is rewritten during the
 * transfer. A destination that fails is reported and the others still get every
 * byte; the promise then rejects with a `FanoutError` carrying the report.
 *
 * A destination that is the source itself (the same regular file or FIFO, by
 * st_dev + st_ino, whatever path leads to it) fails alone, before anything is
 * truncated. The same `Fd` twice, or two fds that share one open file
 * description (`dup()`, `4>&3`: one offset for both, so every byte would land
 * twice), is a `TypeError` before anything is opened; where the kernel cannot
 * tell (kcmp missing), two `Fd` destinations naming the same regular file are
 * refused instead. The same path twice is fine (two opens, two offsets).
 *
 * Web streams fit in at both ends: a `ReadableStream<Uint8Array>` (a `fetch()`
 * body, `Deno.stdin.readable`) or any `AsyncIterable<Uint8Array>` as the source
 * is written into the stage pipe chunk by chunk (that write is the one copy)
 * and read only as fast as the slowest destination drains; a
 * `WritableStream<Uint8Array>` destination is fed from a pipe tee()'d for it,
 * its backpressure respected, and an error it throws fails it alone. Anything
 * else (a `Deno.FsFile`, a `Deno.Conn`, a `URL`, bytes) is a `TypeError`
 * saying what to pass instead, thrown before any destination is opened.
 *
 * @example
 * ```ts
 * import { fanout } from "@onecopy/onecopy";
 * const dir = await Deno.makeTempDir();
 * const report = await fanout("/etc/hostname", [`${dir}/a.txt`, `${dir}/b.txt`], {
 *   checksum: "xxh64",
 * });
 * console.log(report.bytes, report.method, report.checksum?.hex);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function fanout(
  source: SourceSpec,
  destinations: DestinationSpec[],
  options: FanoutOptions = {},
): Promise<FanoutReport> {
  const started = performance.now();
  checkSpecs(source, destinations);
  checkOptions(options);
  checkDistinctFds(source, destinations);
  const owned = new Owned();
  const streams = new Streams();
  const live: Live[] = [];
  let reports: DestinationReport[] = [];
  let whole = false;
  let failure: unknown;
  try {
    options.signal?.throwIfAborted();
    const src = await openSource(source, options, owned, streams);
    if (options.method === "mmap-write" && !mappable(src)) options = { ...options, method: "copy" };
    // The loop's own fds come before the destinations' (a small file that takes
    // the synchronous path needs none: for it they wait until known to be needed).
    const openedByPath = typeof source === "string" && src.owned;
    let own = smallSource(src, openedByPath, options) ? undefined : openOwnFds(src, options, owned);
    const opened = await Promise.allSettled(
      destinations.map((d, i) => openDestination(d, targetOf(d, i), options, owned, streams)),
    );
    options.signal?.throwIfAborted(); // nothing was truncated yet
    reports = sortOut(destinations, opened, loopIdentity(src), live);
    const smallPath = fitsSmallPath(src, openedByPath, live, options);
    // Every destination that failed to open is announced before anything is
    // truncated: a "stop" then leaves every file as it was.
    let stop = announceFailures(reports, options);
    const truncateLater = new Set<Fd>();
    if (!stop) stop = truncateAll(live, smallPath, options, truncateLater);
    if (stop) stopAll(live, stop);
    const running = live.filter((d) => !d.report.error);
    const release = running.some((d) => d.fd.kind === "file") ? ignoreFileSizeSignal() : undefined;
    let run;
    try {
      // Nothing to deliver to (none given, none opened): the source is not read.
      if (stop || running.length === 0) run = notRun(src, live, options, smallPath);
      else {
        const small = smallPath ? runSmall(src, running, options, truncateLater) : undefined;
        if (smallPath && !small) truncateLater.forEach(truncateToEmpty); // it grew: not small now
        own ??= openOwnFds(src, options, owned);
        run = small ?? await runEngine(src, running, options, owned, streams, own);
      }
    } finally {
      release?.();
    }
    // Writers get a close only if their destination got every byte; the others an abort.
    await streams.end(run.error, (fd) => live.find((d) => d.fd === fd)?.report.error);
    for (const { fd, report } of live) {
      const dest = streams.dests.get(fd);
      if (!dest) continue;
      report.bytes = dest.bytes;
      if (dest.error) report.error ??= dest.error;
    }
    whole = run.error === undefined; // a source that failed part way cut every destination short
    const report: FanoutReport = { ...run, destinations: reports, seconds: 0 };
    report.seconds = (performance.now() - started) / 1000;
    if (report.error || reports.some((d) => d.error)) throw new FanoutError(report);
    return report;
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    if (!whole) await streams.end(failure ?? new Error("stopped"));
    resetCutShort(live, !whole);
    owned.closeAll();
  }
}

/**
 * Each destination's report entry: its open failure, or its refusal as the
 * source itself (`sourceId`), or nothing yet; those that may be written go
 * into `live`, with what was given for them.
 */
function sortOut(
  destinations: DestinationSpec[],
  opened: PromiseSettledResult<Fd>[],
  sourceId: string | undefined,
  live: Live[],
): DestinationReport[] {
  return destinations.map((spec, i) => {
    const result = opened[i];
    const report: DestinationReport = { target: targetOf(spec, i), bytes: 0 };
    if (result.status === "rejected") {
      report.error = asError(result.reason);
      return report;
    }
    try {
      report.error = sourceRefusal(result.value, sourceId);
    } catch (err) { // an fd that is not open (Fd.adopt of a closed number)
      report.error = named(err, report.target);
    }
    // Closed at once: a FIFO's own writer left open would hold its end off forever.
    if (report.error && result.value.owned) result.value.close();
    if (!report.error) live.push({ fd: result.value, report, spec });
    return report;
  });
}

/**
 * Truncates the files opened by path that are to be written (unless
 * appending); the small path's go into `later` instead: it cuts each to what
 * it wrote, after writing (truncating a just-written file to 0 first waits for
 * its writeback, ~2 ms each on ext4, measured). A file that cannot be
 * truncated fails, and is announced: returns the error "stop" was answered
 * for, if it was.
 */
function truncateAll(
  live: Live[],
  smallPath: boolean,
  options: FanoutOptions,
  later: Set<Fd>,
): Error | undefined {
  const append = options.append ?? false;
  let stop: Error | undefined;
  for (const { fd, report, spec } of live) {
    if (smallPath && typeof spec === "string" && !append) {
      later.add(fd);
      continue;
    }
    try {
      truncateOpened(fd, spec, append);
    } catch (err) {
      report.error = named(err, report.target);
      stop ??= announceFailures([report], options);
    }
  }
  return stop;
}

/**
 * Calls `onDestinationError` for each failed destination, in order; returns
 * the error for which it answered "stop" (the first such), if it did.
 */
function announceFailures(
  reports: DestinationReport[],
  options: FanoutOptions,
): Error | undefined {
  let stop: Error | undefined;
  for (const { target, error } of reports) {
    if (error && options.onDestinationError?.(target, error) === "stop") stop ??= error;
  }
  return stop;
}

/** After a "stop" before any byte moved: every destination still open is cut short (at 0). */
function stopAll(live: Live[], cause: Error): void {
  for (const { report } of live) report.error ??= new Error("stopped", { cause });
}

/** The report of a run stopped before it started, or with no destination: nothing read. */
function notRun(
  src: Fd,
  live: Live[],
  options: FanoutOptions,
  smallPath: boolean,
): RunReport {
  const kinds = live.map((d) => d.fd.kind);
  const plan = choosePlan(smallPath ? "copy" : options.method ?? "auto", src.kind, kinds);
  return { bytes: 0, method: plan.method, stable: plan.stable };
}

/** How a destination is named in reports: its path or URL, its Fd's label, or its place. */
function targetOf(spec: DestinationSpec, i: number): string {
  if (typeof spec === "string") return spec;
  return spec instanceof Fd ? spec.label : `WritableStream (destination ${i + 1})`;
}
