/**
 * The ends of a fan-out, from what the caller gave to fds the loop can use:
 * opening and taking the source and destinations (files, FIFOs, sockets,
 * stdio, web streams), checking them before anything is opened or
 * truncated, and owning every fd opened on the way (`Owned` closes them on
 * every path). Nothing here moves a byte.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { printable } from "../ffi/errors.ts";
import { Fd, isBlocking, openReader, openWriter, truncateToEmpty } from "./fd.ts";
import { parseTarget } from "./addr.ts";
import {
  type DestinationSpec,
  isStreamSource,
  isWritableStream,
  type SourceSpec,
} from "./specs.ts";
import { StreamDestination, type Streams, StreamSource } from "./streams.ts";
import type { DestinationReport, FanoutOptions } from "./fanout.ts";
import { MiB } from "./units.ts";

/** The stage's, the branches' and the stream pipes' size unless `pipeSize` says otherwise. */
export const defaultPipeSize = MiB;

/** A destination that opened and may be written, its entry in the report, and what was given for it. */
export interface Live {
  fd: Fd;
  report: DestinationReport;
  spec: DestinationSpec;
}

/** Closes, in reverse order, every fd a fan-out opened, on every path. */
export class Owned {
  readonly #closers: (() => void)[] = [];
  /** Takes `thing` (an Fd, a pipe end…) to close at the end; returns it. */
  add<T extends { close(): void }>(thing: T): T {
    this.#closers.push(() => thing.close());
    return thing;
  }
  /** Takes a raw fd; returns it. */
  fd(fd: number, label: string): number {
    this.add(new Fd(fd, { owned: true, label }));
    return fd;
  }
  /** Closes everything taken, newest first; a failing close does not stop the others. */
  closeAll(): void {
    for (const close of this.#closers.reverse()) {
      try {
        close();
      } catch { /* keep closing the rest */ }
    }
  }
}

/** Opens (or takes) the source: a stream's pipe, an Fd, stdin, or a file (waiting for a FIFO's writer). */
export async function openSource(
  spec: SourceSpec,
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
): Promise<Fd> {
  const signal = options.signal;
  if (isStreamSource(spec)) {
    streams.source = new StreamSource(spec, options.pipeSize ?? defaultPipeSize);
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

/**
 * Opens (or takes) a destination; a file is NOT truncated yet (see
 * `truncateOpened`): that waits until every destination has opened and none
 * is refused, so a failing open or an abort destroys nothing.
 */
export async function openDestination(
  spec: DestinationSpec,
  label: string,
  options: FanoutOptions,
  owned: Owned,
  streams: Streams,
) {
  if (isWritableStream(spec)) {
    const dest = new StreamDestination(spec, label, options.pipeSize ?? defaultPipeSize);
    streams.dests.set(dest.fd, dest);
    return dest.fd;
  }
  if (spec instanceof Fd) return nonBlockingTerminal(spec, owned);
  const target = parseTarget(spec, "destination");
  if (target.kind === "stdio") return nonBlockingTerminal(Fd.stdout(), owned);
  const { signal, append } = options;
  if (target.kind === "file") {
    return nonBlockingTerminal(owned.add(await openWriter(target.path, { append, signal })), owned);
  }
  return owned.add(await Fd.connect(spec, { signal, timeoutMs: options.connectTimeout }));
}

/** Device majors of terminals on Linux: virtual consoles and serial (4), /dev/tty and the console (5), pseudo-terminals (136–143). */
function isTerminal(major: number): boolean {
  return major === 4 || major === 5 || (major >= 136 && major <= 143);
}

/**
 * Whether `fd` is a terminal that has hung up (its other side closed: poll
 * says POLLHUP). A read() then returns 0, as at a ^D, which does not hang up.
 */
export function hungUpTerminal(fd: number): boolean {
  try {
    const st = raw.statx(fd);
    if (st.type !== "char" || !isTerminal(st.rdevMajor)) return false;
    return (raw.poll([{ fd, events: raw.POLLIN }], 0)[0] & raw.POLLHUP) !== 0;
  } catch {
    return false;
  }
}

/**
 * A terminal the loop can write without blocking: a write() into a blocking
 * one nobody reads (scroll-lock, ^S) would hold the loop where no abort or
 * SIGINT reaches it. Ours is made non-blocking; a borrowed one (stdout, an
 * adopted fd) is opened again through /proc/self/fd, a description of our
 * own: O_NONBLOCK on the shared one would change it for every process using
 * it. Where that cannot be done, the fd is used as it is.
 */
function nonBlockingTerminal(fd: Fd, owned: Owned): Fd {
  try {
    if (fd.kind !== "char" || !isBlocking(fd.fd) || !isTerminal(raw.statx(fd.fd).rdevMajor)) {
      return fd;
    }
    if (fd.owned) {
      raw.setNonBlocking(fd.fd, true);
      return fd;
    }
    const flags = raw.O_WRONLY | raw.O_NONBLOCK | raw.O_CLOEXEC | raw.O_NOCTTY;
    const again = raw.open(`/proc/self/fd/${fd.fd}`, flags);
    return owned.add(new Fd(again, { owned: true, label: fd.label, kind: "char" }));
  } catch {
    return fd; // no /proc, or the terminal refuses: as before
  }
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
export function loopIdentity(fd: Fd): string | undefined {
  const st = raw.statx(fd.fd);
  return st.type === "file" || st.type === "fifo" ? `${st.dev}:${st.ino}` : undefined;
}

/** Why a destination may not be written: it is the source itself (by st_dev + st_ino). */
export function sourceRefusal(fd: Fd, source: string | undefined): Error | undefined {
  if (source === undefined || loopIdentity(fd) !== source) return undefined;
  return new Error(
    `${printable(fd.label)}: is the source ${
      fd.kind === "pipe" ? "pipe" : "file"
    }; refusing to write it (input file is output file)`,
  );
}

/** Truncates a regular file onecopy opened by path (unless appending), once it may be written. */
export function truncateOpened(fd: Fd, spec: DestinationSpec, append: boolean): void {
  if (typeof spec === "string" && !append) truncateToEmpty(fd);
}

let fileSizeHolders = 0;
let fileSizeAction: Uint8Array | undefined;

/**
 * A write past `ulimit -f` raises SIGXFSZ, whose default kills the process (and
 * every other destination with it). While any fan-out with a file destination
 * runs, it is ignored: that write fails with EFBIG on its one destination. The
 * previous action is put back when the last such fan-out ends.
 */
export function ignoreFileSizeSignal(): () => void {
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
export function resetCutShort(live: Live[], all: boolean): void {
  for (const { fd, report } of live) {
    if (!fd.owned || fd.closed || (fd.kind !== "tcp" && fd.kind !== "unix")) continue;
    if (!all && !report.error) continue;
    try {
      raw.setResetOnClose(fd.fd);
    } catch { /* already broken: it closes either way */ }
  }
}

/** mmap-write cannot see the bytes of a file whose size reads 0 (procfs) or that cannot be mapped (sysfs): those are copied. */
export function mappable(src: Fd): boolean {
  if (src.kind !== "file") return false;
  if (raw.statx(src.fd).size === 0) return false;
  try {
    raw.munmap(raw.mmap(4096, raw.PROT_READ, raw.MAP_SHARED, src.fd, 0), 4096);
    return true;
  } catch {
    return false;
  }
}
