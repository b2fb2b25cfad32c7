/**
 * Drives the shim's fan-out loop (shim/engine.zig) for one fan-out: the fds
 * the loop needs of its own (/dev/null, an eventfd, the stage and branch
 * pipes), the shared `Job` and `Dest` structs and the buffers they point
 * into, then batch after batch until the transfer ends, deciding what each
 * error means. It knows fds, never paths or URLs: lib/endpoints.ts opened
 * those, and lib/fanout.ts builds the caller's report.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { asError, hasCode, OnecopyError, printable } from "../ffi/errors.ts";
import {
  attachPollSet,
  hashJobBegin,
  hashJobEnd,
  initJob,
  releaseRun,
  runBatch,
} from "../ffi/engine.ts";
import {
  CALLS,
  DEST,
  DEST_BLOCKING_PIPE,
  DEST_MOVER,
  DEST_SOCKET,
  DEST_WATCH_READER,
  type DestView,
  Feed,
  JOB,
  type JobView,
  Source,
  SRC_MAY_BLOCK,
  Status,
  StructView,
} from "../ffi/layout.ts";
import { type Fd, growPipe, isBlocking, ownPipe } from "./fd.ts";
import {
  choosePlan,
  type FeedCode,
  feedsFromBranch,
  feedsThroughScratch,
  type Plan,
  shouldFallBack,
  usesStage,
} from "./plan.ts";
import { type ChecksumAlgorithm, checksumCode, hex } from "./checksum.ts";
import type { Streams } from "./streams.ts";
import { borrowBuffer, returnBuffers } from "./buffers.ts";
import { defaultPipeSize, type Live, type Owned } from "./endpoints.ts";
import type { DestinationReport, FanoutOptions, FanoutReport } from "./fanout.ts";
import { batchBudgetNs, MiB } from "./units.ts";

/** The mmap-write window: how much of the source file is mapped at a time. */
const windowBytes = 16 * MiB;

/** What a run reports; lib/fanout.ts adds the destinations and the time. */
export type RunReport = Omit<FanoutReport, "destinations" | "seconds">;

/**
 * The fds the loop itself needs, opened before any destination, so that
 * running out of fds fails destinations (each by its own name), never the
 * transfer on a file the user never named. Any of them may be missing (-1, or
 * no stage) when there were none left: the plan then falls back to `copy`,
 * which needs none (without the eventfd, an abort is seen at the end of a
 * batch, within 50 ms).
 */
export interface OwnFds {
  nullFd: number;
  wakeFd: number;
  stage?: [Fd, Fd];
}

/** Opens the loop's own fds (see `OwnFds`); `owned` closes them at the end. */
export function openOwnFds(src: Fd, options: FanoutOptions, owned: Owned): OwnFds {
  const nullFd = ifFdsLeft(() => owned.fd(raw.open("/dev/null", raw.O_WRONLY), "/dev/null"));
  const wakeFd = ifFdsLeft(() => owned.fd(raw.eventfd(), "eventfd"));
  const noStage = src.kind === "pipe" || options.method === "copy" ||
    options.method === "mmap-write";
  const stage = noStage
    ? undefined
    : ifFdsLeft(() => privatePipe(options.pipeSize ?? defaultPipeSize, owned, "stage pipe"));
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

/** `ownPipe`, both ends closed with the fan-out. */
function privatePipe(size: number, owned: Owned, label: string): [Fd, Fd] {
  const [r, w] = ownPipe(size, label);
  return [owned.add(r), owned.add(w)];
}

/** Whether the fds a plan needs of its own are there (see `OwnFds`). */
function hasOwnFds(plan: Plan, own: OwnFds): boolean {
  if (plan.source === Source.pipe) return own.nullFd >= 0;
  if (usesStage(plan.source)) return own.nullFd >= 0 && own.stage !== undefined;
  return true;
}

/** The branch pipes taken ahead for a plan: each destination's (if its feed needs one), and the tap's. */
interface Branches {
  dests: ([Fd, Fd] | undefined)[];
  tap?: [Fd, Fd];
}

/**
 * A branch pipe (left at its default size: `setFeed` grows it) for every feed
 * that needs one, the checksum tap's included; undefined, with none kept,
 * when the fds run out.
 */
function takeBranches(plan: Plan, withTap: boolean, owned: Owned): Branches | undefined {
  const feeds = withTap ? [...plan.feeds, plan.hashFeed] : plan.feeds;
  const taken: ([Fd, Fd] | undefined)[] = [];
  for (const feed of feeds) {
    const pipe = feedsFromBranch(feed)
      ? ifFdsLeft(() => privatePipe(0, owned, "branch pipe"))
      : undefined;
    if (feedsFromBranch(feed) && !pipe) {
      taken.forEach((b) => b?.forEach((end) => end.close()));
      return undefined;
    }
    taken.push(pipe);
  }
  const count = plan.feeds.length;
  return { dests: taken.slice(0, count), tap: withTap ? taken[count] : undefined };
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
  /** Buffers the shim holds pointers into (stable buffer, scratch): referenced until the run ends. */
  keep: Uint8Array[];
  /** The loop's poll set: the shim holds a pointer into it too. */
  polls: Uint8Array;
  owned: Owned;
}

/** Plans the run, sets up its pipes and buffers, drives the shim, and reports. */
export async function runEngine(
  src: Fd,
  live: Live[],
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
  own: OwnFds,
): Promise<RunReport> {
  const kinds = live.map((d) => d.fd.kind);
  const withTap = options.checksum !== undefined;
  let plan = choosePlan(options.method ?? "auto", src.kind, kinds);
  let branches = hasOwnFds(plan, own) ? takeBranches(plan, withTap, owned) : undefined;
  if (!branches) { // too few fds for pipes: copy needs none
    plan = choosePlan("copy", src.kind, kinds);
    branches = { dests: [] };
  }
  const engine = allocate(plan, live.length, withTap, owned);
  try {
    const pipeSize = options.pipeSize ?? defaultPipeSize;
    setUpSource(engine, src, pipeSize, own);
    // 50 ms: an idle batch holds one of Deno's blocking threads (~32, shared by
    // every async op of the process) while it waits; longer batches measured
    // within the noise (1 GiB tee: 0.486 vs 0.498 s of transfer).
    engine.job.set("budget_ns", batchBudgetNs);
    live.forEach(({ fd }, k) =>
      setUpDestination(engine, engine.dests[k], fd, plan.feeds[k], {
        pipeSize,
        watchReader: options.watchReaders,
        branch: branches.dests[k],
      })
    );
    if (plan.source === Source.pipe) chooseMover(engine);
    if (options.checksum) setUpTap(engine, options.checksum, branches.tap);
    const reports = live.map((d) => d.report);
    const wake = engine.job.get("wake_fd");
    streams.start(() => wake >= 0 && raw.wake(wake));
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
export function named(err: unknown, target: string): Error {
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
  return {
    plan,
    jobBytes,
    destBytes,
    job,
    all,
    dests: all.slice(0, count),
    tap: withTap ? all[count] : undefined,
    stageSize: 0,
    chunk: 0,
    keep: [],
    polls: attachPollSet(job, total),
    owned,
  };
}

/** A chunk-sized buffer the shim reads and writes; kept referenced until the end. */
function scratch(e: Engine): Uint8Array {
  const buf = borrowBuffer(e.chunk);
  e.keep.push(buf);
  return buf;
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
  job.set("map_len", windowBytes);
  if (src.kind === "file") job.set("src_size", raw.statx(src.fd).size);
  if (src.kind !== "file" && isBlocking(src.fd)) job.set("src_flags", SRC_MAY_BLOCK);
  if (plan.source === Source.read_pipe || plan.source === Source.read_buf) {
    job.point("buf", scratch(e));
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
  o: { pipeSize: number; watchReader?: boolean; branch?: [Fd, Fd] },
): void {
  d.set("fd", fd.fd);
  if (fd.kind === "pipe") {
    growPipe(fd.fd, o.pipeSize);
    const flags = (isBlocking(fd.fd) ? DEST_BLOCKING_PIPE : 0) |
      (o.watchReader ? DEST_WATCH_READER : 0);
    d.set("flags", flags);
    d.set("pipe_size", raw.getPipeSize(fd.fd));
  }
  if (fd.kind === "tcp" || fd.kind === "unix") {
    d.set("flags", DEST_SOCKET);
    // splice() into a socket blocks by the socket's own O_NONBLOCK, whatever
    // its flags say: a borrowed blocking one is written from its branch instead.
    if (feed === Feed.branch_splice && isBlocking(fd.fd)) feed = Feed.branch_copy;
  }
  setFeed(e, d, feed, o.branch);
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
    d.point("scratch", scratch(e));
    d.set("scratch_cap", e.chunk);
  }
}

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
 * what each status means: the source failing ends it (returned, so the report
 * still says how far each destination got); a destination failing is
 * `destinationFailed`'s to decide.
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
  const onAbort = () => wake >= 0 && raw.wake(wake);
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
        case Status.dest_error:
        case Status.dest_wrote_nothing:
          if (destinationFailed(e, status, reports, fellBack, options) === "end") return undefined;
          continue;
        default:
          throw new Error(
            `the shim's loop returned status ${status satisfies never}, unknown here`,
          );
      }
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    releaseRun(e.jobBytes);
  }
}

/**
 * A destination failed (`err_dest`): one that cannot splice falls back to
 * copying, once; any other is dropped, and the run ends if
 * `onDestinationError` says "stop" (the ones cut short then carry the error
 * `stopped`) or none is left. The checksum tap failing is a bug: thrown.
 */
function destinationFailed(
  e: Engine,
  status: typeof Status.dest_error | typeof Status.dest_wrote_nothing,
  reports: DestinationReport[],
  fellBack: Set<DestView>,
  options: FanoutOptions,
): "end" | "go on" {
  const d = e.all[e.job.get("err_dest")];
  const errno = d.get("err");
  const call = CALLS[d.get("err_call")];
  const nothing = status === Status.dest_wrote_nothing
    ? new Error(`${call}() accepted no bytes`)
    : undefined;
  if (d === e.tap) throw nothing ?? new OnecopyError(call, errno, "checksum tap");
  const report = reports[e.dests.indexOf(d)];
  report.error = nothing ?? new OnecopyError(call, errno, report.target);
  if (!nothing && !fellBack.has(d) && shouldFallBack(d.get("feed"), call, errno)) {
    fellBack.add(d); // this fd cannot splice: copy out of a branch instead
    try {
      setFeed(e, d, Feed.branch_copy);
      report.error = undefined;
      return "go on";
    } catch (err) { // no fd for the branch pipe: this destination fails
      report.error = named(err, report.target);
    }
  }
  d.set("feed", Feed.dead);
  if (options.onDestinationError?.(report.target, report.error) === "stop") {
    stopOthers(e, reports, report.error);
    return "end";
  }
  return e.dests.every((x) => x.get("feed") === Feed.dead) ? "end" : "go on";
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
): RunReport {
  e.dests.forEach((d, k) => (reports[k].bytes = d.get("done")));
  const taken = e.job.get("taken");
  const delivered = e.dests.length ? Math.max(...e.dests.map((d) => d.get("done"))) : taken;
  const report: RunReport = {
    bytes: failure ? Math.min(taken, delivered) : taken,
    method: e.plan.method,
    stable: e.plan.stable,
  };
  if (failure) report.error = failure;
  else if (algorithm) report.checksum = { algorithm, hex: hex(hashJobEnd(e.jobBytes)) };
  return report;
}
