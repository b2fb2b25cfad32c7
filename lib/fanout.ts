/**
 * fanout(): one source to many destinations with one copy, driven by the
 * shim's loop (one FFI call per ~50 ms batch, on Deno's blocking threads, so
 * the event loop keeps running).
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { hasCode, OnecopyError, printable } from "../ffi/errors.ts";
import { hashJobBegin, hashJobEnd, initJob, releaseRun, runBatch } from "../ffi/engine.ts";
import {
  CALLS,
  DEST,
  DEST_BLOCKING_PIPE,
  DEST_MOVER,
  DEST_WATCH_READER,
  type DestView,
  Feed,
  JOB,
  type JobView,
  pollSlots,
  Source,
  SRC_MAY_BLOCK,
  Status,
  StructView,
} from "../ffi/layout.ts";
import { Fd, growPipe, openReader, openWriter } from "./fd.ts";
import { parseTarget } from "./addr.ts";
import {
  choosePlan,
  type FeedCode,
  feedsFromBranch,
  feedsThroughScratch,
  type Method,
  type Plan,
  shouldFallBack,
  type UsedMethod,
  usesStage,
} from "./plan.ts";
import { type ChecksumAlgorithm, checksumCode, hex } from "./checksum.ts";
import {
  checkOptions,
  checkSpecs,
  type DestinationSpec,
  isStreamSource,
  type SourceSpec,
} from "./specs.ts";
import { StreamDestination, StreamSource } from "./streams.ts";
import { borrowBuffer, returnBuffers } from "./buffers.ts";
import { fitsSmallPath, runSmall, smallFileLimit } from "./small.ts";

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
  /** Called after each batch with the bytes every live destination has received. */
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

const MiB = 1 << 20;
const budgetNs = 50_000_000;
const windowBytes = 16 * MiB;

/** Closes, in reverse order, every fd a fan-out opened, on every path. */
class Owned {
  readonly #closers: (() => void)[] = [];
  add<T extends { close(): void }>(thing: T): T {
    this.#closers.push(() => thing.close());
    return thing;
  }
  fd(fd: number, label: string): number {
    this.add(new Fd(fd, { owned: true, label }));
    return fd;
  }
  closeAll(): void {
    for (const close of this.#closers.reverse()) {
      try {
        close();
      } catch { /* keep closing the rest */ }
    }
  }
}

/** The web streams at the edges of one fan-out (lib/streams.ts). */
class Streams {
  source?: StreamSource;
  readonly dests = new Map<Fd, StreamDestination>();

  /** Starts pumping and draining; `wake` ends the loop's batch when one of them fails. */
  start(wake: () => void): void {
    for (const side of [this.source, ...this.dests.values()]) {
      if (!side) continue;
      side.onFail = wake;
      side.start();
    }
  }

  #ended = false;

  /**
   * Ends every stream, once. With no `failure` (the source was read to its
   * end), a writer whose destination got every byte is closed, and one cut
   * short (`cutShort` gives its error: its own, or `stopped`) is aborted with
   * that error. With a `failure`, the source is cancelled and every writer
   * aborted with it.
   */
  async end(failure?: unknown, cutShort: (fd: Fd) => Error | undefined = () => undefined) {
    if (this.#ended) return;
    this.#ended = true;
    await this.source?.stop(failure);
    await Promise.all(
      [...this.dests].map(([fd, d]) => {
        const reason = failure ?? cutShort(fd);
        return reason === undefined ? d.finish() : d.stop(reason);
      }),
    );
  }
}

async function openSource(
  spec: SourceSpec,
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
): Promise<Fd> {
  const signal = options.signal;
  if (isStreamSource(spec)) {
    streams.source = new StreamSource(spec, options.pipeSize ?? MiB);
    return streams.source.fd;
  }
  if (spec instanceof Fd) return spec;
  const target = parseTarget(spec, "source");
  if (target.kind === "stdio") return Fd.stdin();
  if (target.kind !== "file") throw new TypeError(`${spec}: a source must be a file or -`);
  const fd = owned.add(await openReader(target.path, signal));
  if (fd.kind === "dir") throw new TypeError(`${target.path}: is a directory, not a source`);
  return fd;
}

/** Opens a destination; a file is NOT truncated yet (see `truncateOrRefuse`). */
async function openDestination(
  spec: DestinationSpec,
  label: string,
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
) {
  if (spec instanceof WritableStream) {
    const dest = new StreamDestination(spec, label, options.pipeSize ?? MiB);
    streams.dests.set(dest.fd, dest);
    return dest.fd;
  }
  if (spec instanceof Fd) return spec;
  const target = parseTarget(spec, "destination");
  if (target.kind === "stdio") return Fd.stdout();
  const { signal, append } = options;
  if (target.kind === "file") return owned.add(await openWriter(target.path, { append, signal }));
  return owned.add(await Fd.connect(spec, { signal, timeoutMs: options.connectTimeout }));
}

/** An fd given as a source or destination (an `Fd`, or `-`), and how to name it. */
interface GivenFd {
  fd: number;
  name: string;
  role: "source" | "destination";
}

function givenFds(source: SourceSpec, destinations: DestinationSpec[]): GivenFd[] {
  const given = (spec: SourceSpec | DestinationSpec, role: GivenFd["role"]): GivenFd[] => {
    if (spec instanceof Fd) return [{ fd: spec.fd, name: spec.label, role }];
    if (spec !== "-") return [];
    return [{
      fd: role === "source" ? 0 : 1,
      name: role === "source" ? "- (stdin)" : "- (stdout)",
      role,
    }];
  };
  return [
    ...given(source, "source"),
    ...destinations.flatMap((d) => given(d, "destination")),
  ];
}

/**
 * Each fd may appear once, and no two may share one open file description
 * (one `dup()`ed from the other, or `4>&3` in a shell): either would write
 * every byte twice through one file offset (or into one pipe), or read the
 * source back into itself. Sharing is asked of the kernel (kcmp), among fds
 * naming the same regular file or pipe; where it cannot say (no
 * CONFIG_KCMP, a ptrace policy), two destination fds naming the same regular
 * file are refused instead. The same path twice is fine: each gets its own
 * open file and offset. Terminals and sockets are left alone: `-` to `-` on
 * one terminal, or on an inetd socket, is a conversation, not a loop.
 */
export function checkDistinctFds(
  source: SourceSpec,
  destinations: DestinationSpec[],
  sameDescription: (a: number, b: number) => boolean | undefined = raw.sameDescription,
): void {
  const byFile = new Map<string, GivenFd[]>();
  const seen = new Map<number, GivenFd>();
  for (const g of givenFds(source, destinations)) {
    if (seen.has(g.fd)) {
      throw new TypeError(
        `${printable(g.name)}: the same fd (${g.fd}) is given twice; give each Fd once`,
      );
    }
    seen.set(g.fd, g);
    let st;
    try {
      st = raw.statx(g.fd);
    } catch {
      continue; // not open: reported when it is used
    }
    if (st.type !== "file" && st.type !== "fifo") continue;
    const key = `${st.dev}:${st.ino}`;
    const same = byFile.get(key) ?? [];
    for (const other of same) {
      const shared = sameDescription(other.fd, g.fd);
      const bothFileDests = shared === undefined && st.type === "file" &&
        other.role === "destination" && g.role === "destination";
      if (shared) {
        throw new TypeError(
          `${printable(g.name)}: shares one open file (and its offset) with ${
            printable(other.name)
          } (a dup() of it, or 4>&3); give it once`,
        );
      }
      if (bothFileDests) {
        throw new TypeError(
          `${printable(g.name)}: is the same file as ${
            printable(other.name)
          }, and this kernel cannot tell whether they share one offset (kcmp); give it once`,
        );
      }
    }
    same.push(g);
    byFile.set(key, same);
  }
}

/**
 * `dev:ino` of a regular file or a pipe (FIFO), which names it whatever path or
 * fd leads to it: the kinds where writing into the source feeds it back into
 * itself (a file grows or is cut, a FIFO loops forever). A terminal or a
 * socket read and written at once is a conversation, not a loop: undefined.
 */
function loopIdentity(fd: Fd): string | undefined {
  const st = raw.statx(fd.fd);
  return st.type === "file" || st.type === "fifo" ? `${st.dev}:${st.ino}` : undefined;
}

/** Why a destination may not be written: it is the source itself (by st_dev + st_ino). */
function sourceRefusal(fd: Fd, source: string | undefined): Error | undefined {
  if (source === undefined || loopIdentity(fd) !== source) return undefined;
  return new Error(
    `${printable(fd.label)}: is the source ${
      fd.kind === "pipe" ? "pipe" : "file"
    }; refusing to write it (input file is output file)`,
  );
}

/**
 * Truncates a regular file onecopy opened by path (unless appending), once it
 * may be written. An empty one is left alone, as O_TRUNC leaves a file it just
 * created: on ext4, truncating to 0 marks the file "replaced by truncate", and
 * its close() then pushes every dirty page to disk first (auto_da_alloc),
 * which made an abort wait ~1 s behind a file written at 1 GB/s (measured).
 */
function truncateOpened(fd: Fd, spec: DestinationSpec, append: boolean): void {
  if (typeof spec !== "string" || append || fd.kind !== "file") return;
  if (raw.statx(fd.fd).size > 0) raw.ftruncate(fd.fd, 0);
}

let fileSizeHolders = 0;
let fileSizeAction: Uint8Array | undefined;

/**
 * A write past `ulimit -f` raises SIGXFSZ, whose default kills the process (and
 * every other destination with it). While any fan-out with a file destination
 * runs, it is ignored: that write fails with EFBIG on its one destination. The
 * previous action is put back when the last such fan-out ends.
 */
function ignoreFileSizeSignal(): () => void {
  if (fileSizeHolders++ === 0) fileSizeAction = raw.ignoreSignal(raw.SIGXFSZ);
  return () => {
    if (--fileSizeHolders === 0 && fileSizeAction) raw.restoreSignal(raw.SIGXFSZ, fileSizeAction);
  };
}

/**
 * Closes with a reset (SO_LINGER 0) the sockets that did not get the whole
 * stream. TCP only, in effect: AF_UNIX has no reset, and its receiver sees a
 * clean end of stream (README, Failure behaviour).
 */
function resetCutShort(live: Live[], all: boolean): void {
  for (const { fd, report } of live) {
    if (!fd.owned || fd.closed || (fd.kind !== "tcp" && fd.kind !== "unix")) continue;
    if (!all && !report.error) continue;
    try {
      raw.setResetOnClose(fd.fd);
    } catch { /* already broken: it closes either way */ }
  }
}

/** mmap-write cannot see the bytes of a file whose size reads 0 (procfs) or that cannot be mapped (sysfs): those are copied. */
function mappable(src: Fd): boolean {
  if (src.kind !== "file") return false;
  if (raw.statx(src.fd).size === 0) return false;
  try {
    raw.munmap(raw.mmap(4096, raw.PROT_READ, raw.MAP_SHARED, src.fd, 0), 4096);
    return true;
  } catch {
    return false;
  }
}

function address(buf: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

function isBlocking(fd: number): boolean {
  return (raw.fcntl(fd, raw.F_GETFL) & raw.O_NONBLOCK) === 0;
}

/** A non-blocking pipe of our own, grown to `size` (0: left as it is): [read end, write end]. */
function privatePipe(size: number, owned: Owned, label: string): [Fd, Fd] {
  const [r, w] = raw.pipe2(raw.O_CLOEXEC | raw.O_NONBLOCK);
  const ends: [Fd, Fd] = [
    owned.add(new Fd(r, { owned: true, label, kind: "pipe" })),
    owned.add(new Fd(w, { owned: true, label, kind: "pipe" })),
  ];
  if (size > 0) growPipe(w, size);
  return ends;
}

/**
 * The fds the loop itself needs, opened before any destination, so that
 * running out of fds fails destinations (each by its own name), never the
 * transfer on a file the user never named. Any of them may be missing (-1, or
 * no stage) when there were none left: the plan then falls back to `copy`,
 * which needs none (without the eventfd, an abort is seen at the end of a
 * batch, within ~50 ms).
 */
interface OwnFds {
  nullFd: number;
  wakeFd: number;
  stage?: [Fd, Fd];
}

function openOwnFds(src: Fd, options: FanoutOptions, owned: Owned): OwnFds {
  const nullFd = ifFdsLeft(() => owned.fd(raw.open("/dev/null", raw.O_WRONLY), "/dev/null"));
  const wakeFd = ifFdsLeft(() => owned.fd(raw.eventfd(), "eventfd"));
  const noStage = src.kind === "pipe" || options.method === "copy" ||
    options.method === "mmap-write";
  const stage = noStage
    ? undefined
    : ifFdsLeft(() => privatePipe(options.pipeSize ?? MiB, owned, "stage pipe"));
  return { nullFd: nullFd ?? -1, wakeFd: wakeFd ?? -1, stage };
}

/** `open()`'s result, or undefined when the process (or system) has no fd left. */
function ifFdsLeft<T>(open: () => T): T | undefined {
  try {
    return open();
  } catch (err) {
    if (hasCode(err, "EMFILE") || hasCode(err, "ENFILE")) return undefined;
    throw err;
  }
}

/** Whether `src` may take the small path (`fitsSmallPath` decides once the destinations are known). */
function smallCandidate(src: Fd, spec: SourceSpec, options: FanoutOptions): boolean {
  const method = options.method ?? "auto";
  return typeof spec === "string" && src.owned && src.kind === "file" &&
    (method === "auto" || method === "copy") && raw.statx(src.fd).size <= smallFileLimit;
}

/** Whether the fds a plan needs of its own are there (see `OwnFds`). */
function hasOwnFds(plan: Plan, own: OwnFds): boolean {
  if (plan.source === Source.pipe) return own.nullFd >= 0;
  if (usesStage(plan.source)) return own.nullFd >= 0 && own.stage !== undefined;
  return true;
}

/**
 * A branch pipe (left at its default size: `setFeed` grows it) for every feed
 * that needs one, the checksum tap's last; undefined, with none kept, when
 * the fds run out.
 */
function takeBranches(plan: Plan, withTap: boolean, owned: Owned) {
  const feeds = withTap ? [...plan.feeds, plan.hashFeed] : plan.feeds;
  const taken: ([Fd, Fd] | undefined)[] = [];
  for (const feed of feeds) {
    if (!feedsFromBranch(feed)) {
      taken.push(undefined);
      continue;
    }
    const pipe = ifFdsLeft(() => privatePipe(0, owned, "branch pipe"));
    if (!pipe) {
      taken.forEach((b) => b?.forEach((end) => end.close()));
      return undefined;
    }
    taken.push(pipe);
  }
  return taken;
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
    let own = smallCandidate(src, source, options) ? undefined : openOwnFds(src, options, owned);
    const opened = await Promise.allSettled(
      destinations.map((d, i) => openDestination(d, targetOf(d, i), options, owned, streams)),
    );
    options.signal?.throwIfAborted(); // nothing was truncated yet
    const sourceId = loopIdentity(src);
    reports = destinations.map((d, i) => {
      const result = opened[i];
      const report: DestinationReport = { target: targetOf(d, i), bytes: 0 };
      if (result.status === "rejected") report.error = asError(result.reason);
      else {
        report.error = sourceRefusal(result.value, sourceId);
        // Closed at once: a FIFO's own writer left open would hold its end off forever.
        if (report.error && result.value.owned) result.value.close();
        if (!report.error) live.push({ fd: result.value, report });
      }
      return report;
    });
    const append = options.append ?? false;
    const smallPath = fitsSmallPath(src, typeof source === "string" && src.owned, live, options);
    // Every destination that failed to open is announced before anything is
    // truncated: a "stop" then leaves every file as it was.
    let stop = announceFailures(reports, options);
    // The small path cuts each file to what it wrote, after writing: truncating a
    // just-written file to 0 first waits for its writeback (~2 ms each on ext4, measured).
    const truncateLater = new Set<Fd>();
    for (const { fd, report } of stop ? [] : live) {
      if (smallPath && typeof destinations[reports.indexOf(report)] === "string" && !append) {
        truncateLater.add(fd);
        continue;
      }
      try {
        truncateOpened(fd, destinations[reports.indexOf(report)], append);
      } catch (err) {
        report.error = named(err, report.target);
        stop ??= announceFailures([report], options);
      }
    }
    if (stop) stopAll(live, stop);
    const running = live.filter((d) => !d.report.error);
    const release = running.some((d) => d.fd.kind === "file") ? ignoreFileSizeSignal() : undefined;
    let run;
    try {
      if (stop) run = notRun(src, live, options, smallPath);
      else {
        const small = smallPath ? runSmall(src, running, options, truncateLater) : undefined;
        if (smallPath && !small) truncateLater.forEach((fd) => raw.ftruncate(fd.fd, 0)); // it grew
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

/** The report of a run stopped before it started: nothing read, nothing written. */
function notRun(
  src: Fd,
  live: Live[],
  options: FanoutOptions,
  smallPath: boolean,
): Omit<FanoutReport, "destinations" | "seconds"> {
  const kinds = live.map((d) => d.fd.kind);
  const plan = choosePlan(smallPath ? "copy" : options.method ?? "auto", src.kind, kinds);
  return { bytes: 0, method: plan.method, stable: plan.stable };
}

/** How a destination is named in reports: its path or URL, its Fd's label, or its place. */
function targetOf(spec: DestinationSpec, i: number): string {
  if (typeof spec === "string") return spec;
  return spec instanceof Fd ? spec.label : `WritableStream (destination ${i + 1})`;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A destination that opened, and its entry in the report. */
interface Live {
  fd: Fd;
  report: DestinationReport;
}

/**
 * The memory one fan-out shares with the shim's loop, and the buffers it
 * points into. `all` is the `Dest` array in the shim's order: the live
 * destinations, then the checksum tap if there is one.
 */
interface Engine {
  plan: Plan;
  jobBytes: Uint8Array;
  destBytes: Uint8Array;
  job: JobView;
  all: DestView[];
  /** The live destinations, in the order of `live`. */
  dests: DestView[];
  /** The checksum tap: a `Dest` with no fd whose feed hashes the bytes. */
  tap?: DestView;
  stageSize: number;
  chunk: number;
  /** Buffers the shim holds pointers into: referenced here until the run ends. */
  keep: Uint8Array[];
  /** The loop's poll set (`pollSlots` entries): the shim holds a pointer into it too. */
  polls: Uint8Array;
  owned: Owned;
}

/** Plans the run, sets up its pipes and buffers, drives the shim, and reports. */
async function runEngine(
  src: Fd,
  live: Live[],
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
  own: OwnFds,
): Promise<Omit<FanoutReport, "destinations" | "seconds">> {
  const kinds = live.map((d) => d.fd.kind);
  const withTap = options.checksum !== undefined;
  let plan = choosePlan(options.method ?? "auto", src.kind, kinds);
  let branches = hasOwnFds(plan, own) ? takeBranches(plan, withTap, owned) : undefined;
  if (!branches) { // too few fds for pipes: copy needs none
    plan = choosePlan("copy", src.kind, kinds);
    branches = [];
  }
  const engine = allocate(plan, live.length, withTap, owned);
  const pipeSize = options.pipeSize ?? MiB;
  setUpSource(engine, src, pipeSize, own);
  live.forEach(({ fd }, k) =>
    setUpDestination(
      engine,
      engine.dests[k],
      fd,
      plan.feeds[k],
      pipeSize,
      options.watchReaders,
      branches[k],
    )
  );
  if (plan.source === Source.pipe) chooseMover(engine);
  if (options.checksum) setUpTap(engine, options.checksum, branches[live.length]);
  const reports = live.map((d) => d.report);
  const wake = engine.job.get("wake_fd");
  streams.start(() => wake >= 0 && raw.write(wake, eventfdOne));
  try {
    const between = () => afterBatch(engine, live, streams, options);
    const failure = await drive(engine, src, reports, options, between);
    return finish(engine, reports, options.checksum, failure);
  } finally {
    // drive() has awaited every batch: the shim holds no pointer into these any more.
    returnBuffers(engine.keep);
    engine.keep.length = 0;
  }
}

/** An error whose message names `target` (a syscall error carries no name of its own). */
function named(err: unknown, target: string): Error {
  if (err instanceof OnecopyError && !err.message.startsWith(`${printable(target)}: `)) {
    return new OnecopyError(err.syscall, err.errno, target, { cause: err });
  }
  return asError(err);
}

/** The shared structs for `count` destinations (and a tap), at the shim's defaults. */
function allocate(plan: Plan, count: number, withTap: boolean, owned: Owned): Engine {
  const total = count + (withTap ? 1 : 0);
  const jobBytes = new Uint8Array(JOB.size);
  const destBytes = new Uint8Array(DEST.size * Math.max(total, 1));
  initJob(jobBytes, destBytes, total);
  const job = new StructView(jobBytes, 0, JOB);
  const all = Array.from(
    { length: total },
    (_, k) => new StructView(destBytes, k * DEST.size, DEST),
  );
  const dests = all.slice(0, count);
  const tap = withTap ? all[count] : undefined;
  // The loop's poll set lives here, sized for this many destinations: no fixed limit.
  const polls = new Uint8Array(8 * pollSlots(total));
  job.set("poll_fds", address(polls));
  job.set("poll_cap", pollSlots(total));
  return {
    plan,
    jobBytes,
    destBytes,
    job,
    all,
    dests,
    tap,
    stageSize: 0,
    chunk: 0,
    keep: [],
    polls,
    owned,
  };
}

/** A chunk-sized buffer the shim reads and writes; kept referenced until the end. */
function scratch(e: Engine): number {
  return address(e.keep[e.keep.push(borrowBuffer(e.chunk)) - 1]);
}

/** Where the stable copy comes from: the source itself (a pipe), a stage pipe, a buffer. */
function setUpSource(e: Engine, src: Fd, pipeSize: number, own: OwnFds): void {
  const { job, plan } = e;
  job.set("src_fd", src.fd);
  job.set("source", plan.source);
  e.stageSize = pipeSize;
  if (plan.source === Source.pipe) {
    job.set("stage_r", src.fd);
    // Grown like every other pipe (F_SETPIPE_SZ works on the read end too): each
    // tee() then moves up to a MiB instead of the default 64 KiB.
    e.stageSize = raw.getPipeSize(src.fd);
    if (e.stageSize < pipeSize) e.stageSize = growPipe(src.fd, pipeSize);
  } else if (usesStage(plan.source)) {
    const [r, w] = own.stage!; // hasOwnFds() made sure
    job.set("stage_r", r.fd);
    job.set("stage_w", w.fd);
    e.stageSize = raw.getPipeSize(w.fd);
  }
  if (own.stage && job.get("stage_w") !== own.stage[1].fd) own.stage.forEach((end) => end.close());
  e.chunk = Math.min(MiB, e.stageSize);
  job.set("stage_size", e.stageSize);
  job.set("chunk", e.chunk);
  job.set("null_fd", own.nullFd);
  job.set("wake_fd", own.wakeFd);
  job.set("budget_ns", budgetNs);
  job.set("map_len", windowBytes);
  if (src.kind === "file") job.set("src_size", raw.statx(src.fd).size);
  if (src.kind !== "file" && isBlocking(src.fd)) job.set("src_flags", SRC_MAY_BLOCK);
  if (plan.source === Source.read_pipe || plan.source === Source.read_buf) {
    job.set("buf", scratch(e));
  }
}

/**
 * A destination's fd and feed (with its branch pipe if one was taken); a
 * borrowed pipe is grown, capped if it blocks, and watched for its reader
 * going away if asked.
 */
function setUpDestination(
  e: Engine,
  d: DestView,
  fd: Fd,
  feed: FeedCode,
  pipeSize: number,
  watchReader = false,
  branch?: [Fd, Fd],
) {
  d.set("fd", fd.fd);
  if (fd.kind === "pipe") {
    growPipe(fd.fd, pipeSize);
    const flags = (isBlocking(fd.fd) ? DEST_BLOCKING_PIPE : 0) |
      (watchReader ? DEST_WATCH_READER : 0);
    d.set("flags", flags);
    d.set("pipe_size", raw.getPipeSize(fd.fd));
  }
  setFeed(e, d, feed, branch);
}

/**
 * From a source pipe, the last destination fed by tee() takes the stage by
 * splice() instead (it is consumed into it, not into /dev/null): one tee()
 * fewer per round, as the C reference does.
 */
function chooseMover(e: Engine): void {
  const d = e.dests.findLast((x) => x.get("feed") === Feed.tee);
  if (d) d.set("flags", d.get("flags") | DEST_MOVER);
}

/** The checksum tap: no fd (-1), its feed hashes the stable copy (or a branch of it). */
function setUpTap(e: Engine, algorithm: ChecksumAlgorithm, branch?: [Fd, Fd]): void {
  e.job.set("hash_alg", checksumCode(algorithm));
  hashJobBegin(e.jobBytes);
  setFeed(e, e.tap!, e.plan.hashFeed, branch);
}

/** Sets how `d` is fed, giving it the branch pipe and scratch buffer that feed needs. */
function setFeed(e: Engine, d: DestView, feed: FeedCode, reserved?: [Fd, Fd]): void {
  d.set("feed", feed);
  if (feedsFromBranch(feed) && d.get("branch_w") < 0) {
    const [r, w] = reserved ?? privatePipe(e.stageSize, e.owned, "branch pipe");
    if (reserved) growPipe(w.fd, e.stageSize);
    d.set("branch_r", r.fd);
    d.set("branch_w", w.fd);
  } else reserved?.forEach((end) => end.close());
  if (feedsThroughScratch(feed) && !d.get("scratch")) {
    d.set("scratch", scratch(e));
    d.set("scratch_cap", e.chunk);
  }
}

const eventfdOne = new Uint8Array(new BigUint64Array([1n]).buffer);

/**
 * Between batches: a failed source stream ends the run; a failed
 * WritableStream is dropped like any failed destination (the others go on).
 */
function afterBatch(
  e: Engine,
  live: Live[],
  streams: Streams,
  options: FanoutOptions,
): Error | "stop" | undefined {
  if (streams.source?.error) return streams.source.error; // as a source that failed part way
  for (const [k, { fd, report }] of live.entries()) {
    const error = streams.dests.get(fd)?.error;
    if (!error || report.error) continue;
    e.dests[k].set("feed", Feed.dead);
    report.error = error;
    if (options.onDestinationError?.(report.target, error) === "stop") {
      stopOthers(e, live.map((d) => d.report), error);
      return "stop";
    }
  }
  return e.dests.every((d) => d.get("feed") === Feed.dead) ? "stop" : undefined;
}

/**
 * Runs the shim's loop batch by batch until the transfer is done, and decides
 * what each error means: the source failing ends it (returned, so the report
 * still says how far each destination got); a destination that cannot splice
 * falls back to copying once; any other destination error drops that
 * destination (or stops everything if `onDestinationError` says so: the ones
 * cut short then carry the error `stopped`).
 */
async function drive(
  e: Engine,
  src: Fd,
  reports: DestinationReport[],
  options: FanoutOptions,
  between: () => Error | "stop" | undefined = () => undefined,
): Promise<Error | undefined> {
  const fellBack = new Set<DestView>();
  const wake = e.job.get("wake_fd");
  const onAbort = () => wake >= 0 && raw.write(wake, eventfdOne);
  options.signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const status = await runBatch(e.jobBytes, e.destBytes);
      options.signal?.throwIfAborted();
      const streamSide = between(); // a stream that failed: the source's ends the run
      if (streamSide) return streamSide === "stop" ? undefined : streamSide;
      options.onProgress?.(bytesDone(e));
      switch (status) {
        case Status.done:
          return undefined;
        case Status.again:
        case Status.woken:
          continue;
        case Status.source_error:
          return new OnecopyError(CALLS[e.job.get("err_call")], e.job.get("err"), src.label);
        case Status.source_shrank:
          return new Error(`${printable(src.label)}: the source shrank during the transfer`);
        case Status.invalid_job:
          throw new Error("the native engine rejected the job (a bug in onecopy)");
      }
      // A destination failed (dest_error, dest_wrote_nothing).
      const d = e.all[e.job.get("err_dest")];
      const errno = d.get("err");
      const call = CALLS[d.get("err_call")];
      const error = status === Status.dest_wrote_nothing
        ? new Error(`${call}() accepted no bytes`)
        : undefined;
      if (d === e.tap) throw error ?? new OnecopyError(call, errno, "checksum tap");
      const report = reports[e.dests.indexOf(d)];
      report.error = error ?? new OnecopyError(call, errno, report.target);
      if (!error && !fellBack.has(d) && shouldFallBack(d.get("feed"), call, errno)) {
        fellBack.add(d); // this fd cannot splice: copy out of a branch instead
        try {
          setFeed(e, d, Feed.branch_copy);
          report.error = undefined;
          continue;
        } catch (err) { // no fd for the branch pipe: this destination fails
          report.error = named(err, report.target);
        }
      }
      d.set("feed", Feed.dead);
      if (options.onDestinationError?.(report.target, report.error) === "stop") {
        stopOthers(e, reports, report.error);
        return undefined;
      }
      if (e.dests.every((x) => x.get("feed") === Feed.dead)) return undefined;
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    releaseRun(e.jobBytes);
  }
}

/** After a "stop": every destination still running is cut short, and says so. */
function stopOthers(e: Engine, reports: DestinationReport[], cause: Error): void {
  e.dests.forEach((d, k) => {
    if (d.get("feed") === Feed.dead) return;
    d.set("feed", Feed.dead);
    reports[k].error = new Error("stopped", { cause });
  });
}

/** Bytes that every live destination has received. */
function bytesDone(e: Engine): number {
  const alive = e.dests.filter((d) => d.get("feed") !== Feed.dead);
  return Math.min(e.job.get("taken"), ...alive.map((d) => d.get("done")));
}

/**
 * Fills in each destination's count and builds the report. After a source
 * `failure`, `bytes` is what reached a destination (an mmap-write run counts
 * the whole file as taken from the start), and there is no checksum: it would
 * not be the source's.
 */
function finish(
  e: Engine,
  reports: DestinationReport[],
  algorithm: ChecksumAlgorithm | undefined,
  failure: Error | undefined,
): Omit<FanoutReport, "destinations" | "seconds"> {
  e.dests.forEach((d, k) => (reports[k].bytes = d.get("done")));
  const taken = e.job.get("taken");
  const delivered = e.dests.length ? Math.max(...e.dests.map((d) => d.get("done"))) : taken;
  const report: Omit<FanoutReport, "destinations" | "seconds"> = {
    bytes: failure ? Math.min(taken, delivered) : taken,
    method: e.plan.method,
    stable: e.plan.stable,
  };
  if (failure) report.error = failure;
  else if (algorithm) report.checksum = { algorithm, hex: hex(hashJobEnd(e.jobBytes)) };
  return report;
}
