/**
 * fanout(): one source to many destinations with one copy, driven by the
 * shim's loop (one FFI call per ~50 ms batch, on Deno's blocking threads, so
 * the event loop keeps running).
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { Errno, OnecopyError } from "../ffi/errors.ts";
import { shim } from "../ffi/load.ts";
import {
  CALLS,
  DEST,
  DEST_BLOCKING_PIPE,
  Feed,
  JOB,
  Source,
  SRC_MAY_BLOCK,
  Status,
  StructView,
} from "../ffi/layout.ts";
import { Fd, growPipe } from "./fd.ts";
import { parseTarget } from "./addr.ts";
import { choosePlan, type Method, shouldFallBack, type UsedMethod, usesStage } from "./plan.ts";
import { type ChecksumAlgorithm, checksumCode, hex } from "./checksum.ts";

/** A source: a file path, `"-"` (stdin) or an `Fd`. */
export type SourceSpec = string | Fd;
/** A destination: a file path, `"tcp://host:port"`, `"unix:/path"`, `"-"` (stdout) or an `Fd`. */
export type DestinationSpec = string | Fd;

/** Options of `fanout()`. */
export interface FanoutOptions {
  /** How to make the one copy; default `"auto"`. */
  method?: Method;
  /** Compute this checksum of the bytes sent, on a tap, after the fact. */
  checksum?: ChecksumAlgorithm;
  /** Aborts the transfer (within ~50 ms, even with a stalled destination). */
  signal?: AbortSignal;
  /** Called after each batch with the bytes every live destination has received. */
  onProgress?: (bytesDone: number) => void;
  /** Pipe size in bytes for the stage and branch pipes; default 1 MiB. */
  pipeSize?: number;
  /** Open file destinations for appending instead of truncating them. */
  append?: boolean;
  /**
   * Called when a destination fails; return `"stop"` to end the whole transfer
   * (the promise then rejects with the report). By default the others go on.
   */
  onDestinationError?: (target: string, error: Error) => "continue" | "stop";
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
}

/**
 * Some destinations failed (the others got every byte). `report` says which.
 *
 * @example
 * ```ts
 * import { fanout, FanoutError } from "@onecopy/onecopy";
 * try {
 *   await fanout("/etc/hostname", ["/tmp/ok.txt", "/nonexistent/dir/x"]);
 * } catch (err) {
 *   if (err instanceof FanoutError) console.log(err.report.destinations);
 * }
 * ```
 */
export class FanoutError extends Error {
  /** The full report, failed destinations included. */
  readonly report: FanoutReport;
  /** Wraps a report that has at least one failed destination. */
  constructor(report: FanoutReport) {
    const failed = report.destinations.filter((d) => d.error);
    super(failed.map((d) => describeFailure(d.target, d.error)).join("; "));
    this.name = "FanoutError";
    this.report = report;
  }
}

/** `target: why`, without repeating the target when the error already names it. */
export function describeFailure(target: string, error: Error | undefined): string {
  const message = error?.message ?? "failed";
  return message.startsWith(`${target}: `) ? message : `${target}: ${message}`;
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

function openSource(spec: SourceSpec, owned: Owned): Fd {
  if (spec instanceof Fd) return spec;
  const target = parseTarget(spec, "source");
  if (target.kind === "stdio") return Fd.stdin();
  if (target.kind !== "file") throw new TypeError(`${spec}: a source must be a file or -`);
  const fd = owned.add(Fd.open(target.path));
  if (fd.kind === "dir") throw new OnecopyError("read", 21, target.path);
  return fd;
}

async function openDestination(spec: DestinationSpec, append: boolean, owned: Owned) {
  if (spec instanceof Fd) return spec;
  const target = parseTarget(spec, "destination");
  if (target.kind === "stdio") return Fd.stdout();
  if (target.kind === "file") return owned.add(Fd.create(target.path, { append }));
  return owned.add(await Fd.connect(spec));
}

function address(buf: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

function isBlocking(fd: number): boolean {
  return (raw.fcntl(fd, raw.F_GETFL) & raw.O_NONBLOCK) === 0;
}

/** A non-blocking pipe of our own, grown to `size`: [read end, write end]. */
function privatePipe(size: number, owned: Owned, label: string): [number, number] {
  const [r, w] = raw.pipe2(raw.O_CLOEXEC | raw.O_NONBLOCK);
  owned.fd(r, label);
  owned.fd(w, label);
  growPipe(w, size);
  return [r, w];
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
 * @example
 * ```ts
 * import { fanout } from "@onecopy/onecopy";
 * const report = await fanout("/etc/hostname", ["/tmp/a.txt", "/tmp/b.txt"], {
 *   checksum: "xxh64",
 * });
 * console.log(report.bytes, report.method, report.checksum?.hex);
 * ```
 */
export async function fanout(
  source: SourceSpec,
  destinations: DestinationSpec[],
  options: FanoutOptions = {},
): Promise<FanoutReport> {
  const started = performance.now();
  const owned = new Owned();
  try {
    options.signal?.throwIfAborted();
    const src = openSource(source, owned);
    const opened = await Promise.allSettled(
      destinations.map((d) => openDestination(d, options.append ?? false, owned)),
    );
    const reports: DestinationReport[] = destinations.map((d, i) => {
      const result = opened[i];
      const target = typeof d === "string" ? d : d.label;
      return result.status === "rejected"
        ? { target, bytes: 0, error: asError(result.reason) }
        : { target, bytes: 0 };
    });
    const live = opened.flatMap((r, i) => (r.status === "fulfilled" ? [{ fd: r.value, i }] : []));
    const run = await runEngine(src, live, reports, options, owned);
    const report: FanoutReport = { ...run, destinations: reports, seconds: 0 };
    report.seconds = (performance.now() - started) / 1000;
    if (reports.some((d) => d.error)) throw new FanoutError(report);
    return report;
  } finally {
    owned.closeAll();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

interface Live {
  fd: Fd;
  i: number;
}

async function runEngine(
  src: Fd,
  live: Live[],
  reports: DestinationReport[],
  options: FanoutOptions,
  owned: Owned,
): Promise<Omit<FanoutReport, "destinations" | "seconds">> {
  const pipeSize = options.pipeSize ?? MiB;
  const plan = choosePlan(options.method ?? "auto", src.kind, live.map((d) => d.fd.kind));
  const algorithm = options.checksum;
  const total = live.length + (algorithm ? 1 : 0);
  const keep: Uint8Array[] = []; // native code holds pointers into these
  const jobBytes = new Uint8Array(JOB.size);
  const destBytes = new Uint8Array(DEST.size * Math.max(total, 1));
  const job = new StructView(jobBytes, 0, JOB);
  const dests = Array.from(
    { length: total },
    (_, k) => new StructView(destBytes, k * DEST.size, DEST),
  );

  let stageSize = pipeSize;
  job.set("src_fd", src.fd);
  job.set("source", plan.source);
  job.set("stage_r", -1);
  job.set("stage_w", -1);
  if (plan.source === Source.pipe) {
    job.set("stage_r", src.fd);
    stageSize = raw.getPipeSize(src.fd);
  } else if (usesStage(plan.source)) {
    const [r, w] = privatePipe(pipeSize, owned, "stage pipe");
    job.set("stage_r", r);
    job.set("stage_w", w);
    stageSize = raw.getPipeSize(w);
  }
  const chunk = Math.min(MiB, stageSize);
  job.set("stage_size", stageSize);
  job.set("chunk", chunk);
  job.set("null_fd", owned.fd(raw.open("/dev/null", raw.O_WRONLY), "/dev/null"));
  const wake = owned.fd(raw.eventfd(), "eventfd");
  job.set("wake_fd", wake);
  job.set("ndest", total);
  job.set("budget_ns", budgetNs);
  job.set("map_len", windowBytes);
  if (src.kind === "file") job.set("src_size", raw.statx(src.fd).size);
  if (src.kind !== "file" && isBlocking(src.fd)) job.set("src_flags", SRC_MAY_BLOCK);
  // A chunk-sized buffer the shim reads and writes; kept referenced until the end.
  const scratch = () => address(keep[keep.push(new Uint8Array(chunk)) - 1]);
  if (plan.source === Source.read_pipe || plan.source === Source.read_buf) {
    job.set("buf", scratch());
  }

  const branch = (k: number) => {
    const [r, w] = privatePipe(stageSize, owned, "branch pipe");
    dests[k].set("branch_r", r);
    dests[k].set("branch_w", w);
  };
  const setFeed = (k: number, feed: number) => {
    const d = dests[k];
    d.set("feed", feed);
    if (feed >= Feed.branch_splice && feed <= Feed.branch_hash && d.get("branch_w") < 0) branch(k);
    if (
      (feed === Feed.branch_copy || feed === Feed.branch_hash || feed === Feed.hash) &&
      !d.get("scratch")
    ) {
      d.set("scratch", scratch());
      d.set("scratch_cap", chunk);
    }
  };
  for (const d of dests) {
    d.set("branch_r", -1);
    d.set("branch_w", -1);
  }
  live.forEach(({ fd }, k) => {
    const d = dests[k];
    d.set("fd", fd.fd);
    if (fd.kind === "pipe") {
      growPipe(fd.fd, pipeSize);
      if (isBlocking(fd.fd)) d.set("flags", DEST_BLOCKING_PIPE);
      d.set("pipe_size", raw.getPipeSize(fd.fd));
    }
    setFeed(k, plan.feeds[k]);
  });
  if (algorithm) {
    job.set("hash_alg", checksumCode(algorithm));
    shim().oc_hash_job_begin(jobBytes);
    dests[total - 1].set("fd", -1);
    setFeed(total - 1, plan.hashFeed);
  }

  const fellBack = new Set<number>();
  const onAbort = () => raw.write(wake, new Uint8Array(new BigUint64Array([1n]).buffer));
  options.signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const status = await shim().oc_run(jobBytes, destBytes);
      options.signal?.throwIfAborted();
      options.onProgress?.(bytesDone(job, dests.slice(0, live.length)));
      if (status === Status.done) break;
      if (status === Status.source_error) throw sourceError(job, src, plan.source);
      if (status !== Status.dest_error) continue;
      const k = job.get("err_dest");
      const d = dests[k];
      const errno = d.get("err");
      const call = CALLS[d.get("err_call")];
      if (k === live.length) throw new OnecopyError(call, errno, "checksum tap");
      if (!fellBack.has(k) && shouldFallBack(d.get("feed"), call, errno)) {
        fellBack.add(k); // this fd cannot splice: copy out of a branch instead
        setFeed(k, Feed.branch_copy);
        continue;
      }
      d.set("feed", Feed.dead);
      const report = reports[live[k].i];
      report.error = new OnecopyError(call, errno, report.target);
      if (options.onDestinationError?.(report.target, report.error) === "stop") break;
      if (live.every((_, j) => dests[j].get("feed") === Feed.dead)) break;
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    shim().oc_run_release(jobBytes);
  }

  live.forEach((_, k) => (reports[live[k].i].bytes = dests[k].get("done")));
  const report: Omit<FanoutReport, "destinations" | "seconds"> = {
    bytes: job.get("taken"),
    method: plan.method,
    stable: plan.stable,
  };
  if (algorithm) {
    const digest = new Uint8Array(32);
    const len = Number(shim().oc_hash_job_end(jobBytes, digest));
    report.checksum = { algorithm, hex: hex(digest.subarray(0, len)) };
  }
  keep.length = 0;
  return report;
}

/** Bytes that every live destination has received. */
function bytesDone(
  job: StructView<typeof JOB.fields>,
  dests: StructView<typeof DEST.fields>[],
): number {
  const alive = dests.filter((d) => d.get("feed") !== Feed.dead);
  return Math.min(job.get("taken"), ...alive.map((d) => d.get("done")));
}

function sourceError(
  job: StructView<typeof JOB.fields>,
  src: Fd,
  source: number,
): OnecopyError {
  const errno = job.get("err");
  const call = CALLS[job.get("err_call")];
  if (source === Source.mmap_buf && (errno === Errno.EFAULT || errno === Errno.ENODATA)) {
    return new OnecopyError(call, errno, `${src.label}: the source shrank during the transfer`);
  }
  return new OnecopyError(call, errno, src.label);
}
