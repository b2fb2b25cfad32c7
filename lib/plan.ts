/**
 * How a fan-out runs: where the one stable copy comes from (the engine's
 * `Source`) and how each destination is fed (`Feed`). The measured choices
 * live in one table, `FEEDS`; the fallback rule in one function.
 *
 * @module
 */

import { Feed, Source } from "../ffi/layout.ts";
import { Errno } from "../ffi/errors.ts";
import type { FdKind } from "./fd.ts";

/** The transfer methods, for argument checking and help texts. See `fanout()` for each. */
export const methods = ["auto", "pipe-tee", "vmsplice", "mmap-write", "copy"] as const;

/** A transfer method. See `fanout()` for what each guarantees. */
export type Method = (typeof methods)[number];

/** The concrete method a fan-out ran with (`auto` resolved). */
export type UsedMethod = Exclude<Method, "auto">;

/** An engine `Feed` value. */
export type FeedCode = (typeof Feed)[keyof typeof Feed];
/** An engine `Source` value. */
export type SourceCode = (typeof Source)[keyof typeof Source];

/**
 * Per destination kind: how to feed it from the stage pipe, and whether
 * `auto` writes it from a stable buffer instead when one exists.
 * - pipe: tee() straight into it (no copy; ~2x faster than write() here).
 * - file: write() from the buffer: measured a little faster than splice()
 *   from a branch (64 MiB to 1 and 4 files: 44 vs 50 ms, 135 vs 144 ms).
 *   From a pipe source, splice() from a branch.
 * - tcp: write() from the buffer: splice() into loopback TCP measured ~3x
 *   slower than write() on this kernel. From a pipe source there is no
 *   buffer, so it is spliced from a branch.
 * - unix: like tcp (AF_UNIX has no zero-copy splice path either).
 * - char (terminals, /dev/null): splice often fails with EINVAL; copy out.
 */
export const FEEDS: Record<FdKind, { stage: FeedCode; preferWrite: boolean }> = {
  pipe: { stage: Feed.tee, preferWrite: false },
  file: { stage: Feed.branch_splice, preferWrite: true },
  tcp: { stage: Feed.branch_splice, preferWrite: true },
  unix: { stage: Feed.branch_splice, preferWrite: true },
  char: { stage: Feed.branch_copy, preferWrite: true },
  dir: { stage: Feed.branch_copy, preferWrite: true },
  other: { stage: Feed.branch_copy, preferWrite: true },
};

/** A resolved plan for one fan-out. */
export interface Plan {
  method: UsedMethod;
  source: SourceCode;
  feeds: FeedCode[];
  /** How the checksum tap is fed, if there is one. */
  hashFeed: FeedCode;
  /** Whether the destinations all receive exactly the same bytes even if the source changes. */
  stable: boolean;
}

const stageSources = new Set<number>([
  Source.pipe,
  Source.read_pipe,
  Source.vmsplice,
  Source.splice_in,
]);

/** Whether a feed tee()s into a private branch pipe first. */
export function feedsFromBranch(feed: number): boolean {
  return feed === Feed.branch_splice || feed === Feed.branch_copy || feed === Feed.branch_hash;
}

/** Whether a feed reads into a scratch buffer of its own (to write or hash it). */
export function feedsThroughScratch(feed: number): boolean {
  return feed === Feed.branch_copy || feed === Feed.branch_hash || feed === Feed.hash;
}

/** Whether an engine source mode uses the stage pipe. */
export function usesStage(source: number): boolean {
  return stageSources.has(source);
}

/** Chooses the engine modes for a method, a source kind and the destination kinds. */
export function choosePlan(method: Method, src: FdKind, dests: FdKind[]): Plan {
  const stageFeeds = dests.map((k) => FEEDS[k].stage);
  const writeFeeds = dests.map(() => Feed.write as FeedCode);
  const mappable = src === "file";
  switch (method) {
    case "copy":
      return plan("copy", Source.read_buf, writeFeeds, true);
    case "mmap-write":
      if (!mappable) return plan("copy", Source.read_buf, writeFeeds, true);
      return plan("mmap-write", Source.mmap_buf, writeFeeds, false);
    case "pipe-tee":
      return plan("pipe-tee", pipeSource(src), stageFeeds, true);
    case "vmsplice": {
      // Sockets are written from the fresh pages, not spliced: spliced pages
      // would stay pinned in the socket queue (and write() is faster here).
      const feeds = dests.map((k) => (k === "pipe" || k === "file" ? FEEDS[k].stage : Feed.write));
      return plan("vmsplice", Source.vmsplice, feeds, true);
    }
    case "auto": {
      // A pipe or socket source needs no copy at all: tee() from it, or splice() it in.
      if (pipeSource(src) !== Source.read_pipe) {
        return plan("pipe-tee", pipeSource(src), stageFeeds, true);
      }
      const writers = dests.map((k) => FEEDS[k].preferWrite);
      if (writers.every(Boolean)) return plan("copy", Source.read_buf, writeFeeds, true);
      // read() once into a buffer, write() that into the stage; writers take it from the buffer.
      const feeds = dests.map((k, i) => (writers[i] ? Feed.write : FEEDS[k].stage));
      return plan("pipe-tee", Source.read_pipe, feeds, true);
    }
  }
}

/**
 * How pipe-tee takes its copy: a pipe is the stage itself; a socket is
 * spliced into the stage (its queued bytes cannot change); anything else,
 * files included (spliced page-cache pages could change under us), is read.
 */
function pipeSource(src: FdKind): SourceCode {
  if (src === "pipe") return Source.pipe;
  if (src === "tcp" || src === "unix") return Source.splice_in;
  return Source.read_pipe;
}

function plan(method: UsedMethod, source: SourceCode, feeds: FeedCode[], stable: boolean): Plan {
  // A checksum is taken from the stable buffer where there is one, else from a tee'd branch.
  const hashFeed = source === Source.pipe || source === Source.splice_in
    ? Feed.branch_hash
    : Feed.hash;
  return { method, source, feeds, hashFeed, stable };
}

const fallbackErrnos = new Set<number>([
  Errno.EINVAL,
  Errno.ENOSYS,
  Errno.EXDEV,
  Errno.EPERM,
  Errno.EBADF,
  Errno.EOPNOTSUPP,
]);

/**
 * Whether a failed splice()/tee() into a destination should fall back to
 * read()+write() (as GNU cat and Go do): these errnos mean "this pair of fds
 * cannot splice" (O_APPEND files, terminals, some filesystems), not "broken".
 */
export function shouldFallBack(feed: number, call: string, errno: number): boolean {
  return (feed === Feed.tee || feed === Feed.branch_splice) &&
    (call === "splice" || call === "tee") && fallbackErrnos.has(errno);
}
