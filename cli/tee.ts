/**
 * `onecopy tee`: a drop-in for GNU tee (coreutils 9.2+): stdin to stdout and
 * every FILE, with tee(2) when stdin is a pipe (no user-space copy at all).
 *
 * What GNU does, and so this does: every operand is a file (`-` too); files
 * are opened in order before any byte moves; an output that fails is reported
 * and dropped while the others go on; a reader going away ends tee as SIGPIPE
 * would (status 141) unless `-p`/`--output-error` says otherwise; with
 * `-p`/`*-nopipe` a lost reader is dropped quietly, and tee ends with status 0
 * once no output is left, even while stdin is idle.
 *
 * @module
 */

import { fanout, type FanoutReport, Fd, OnecopyError } from "../mod.ts";
import {
  createWriter,
  errnoText,
  F_GETFL,
  fcntl,
  hasCode,
  hungUpTerminal,
  O_RDWR,
  printable,
  statx,
} from "../lib/internal.ts";
import { argmatch, ArgsError } from "./args.ts";
import {
  checksum,
  checksumLine,
  interruptSignal,
  isAbort,
  jsonReport,
  method,
  osErrorText,
  parse,
  reportOf,
} from "./common.ts";
import { Progress } from "./progress.ts";
import { oneLine } from "./quote.ts";
import { Exit, help, UsageError, version } from "./usage.ts";

const modes = ["warn", "warn-nopipe", "exit", "exit-nopipe"] as const;
/** `sigpipe` is GNU's default: a broken pipe ends tee as SIGPIPE would. */
type Mode = "sigpipe" | typeof modes[number];

/** An opened output and its name as given (GNU's "standard output" for fd 1). */
interface Output {
  fd: Fd;
  name: string;
}

/** The status a shell reports for a process ended by SIGPIPE (128 + 13). */
export const sigpipeStatus = 141;

const options = {
  append: { type: "boolean", short: "a" },
  "ignore-interrupts": { type: "boolean", short: "i" },
  "output-error": { type: "string", short: "p", optional: "warn-nopipe" },
  // onecopy's additions: by full name only (GNU tee rejects `--p`, `--j`…).
  checksum: { type: "string", exact: true },
  method: { type: "string", exact: true },
  progress: { type: "boolean", exact: true },
  json: { type: "boolean", exact: true },
  // No `-h`: GNU tee rejects it (invalid option, status 1).
  help: { type: "boolean" },
  version: { type: "boolean" },
} as const;

/** The C library's wording of an errno ("No space left on device"), as GNU tee prints it. */
function strerror(errno: number): string {
  const text = errnoText(errno);
  return text[0].toUpperCase() + text.slice(1);
}

function errnoOf(e: unknown): number | undefined {
  return e instanceof OnecopyError ? e.errno : undefined;
}

/**
 * `NAME: Strerror`, or `NAME: ` and the error's own message, without the
 * library's `label: ` it may start with (`stdout: ` for "standard output").
 */
function describe(path: string | undefined, e: unknown, label?: string): string {
  const name = path === undefined ? undefined : printable(path); // one line, even for "a\nb"
  const errno = errnoOf(e);
  if (name !== undefined && errno !== undefined) return `${name}: ${strerror(errno)}`;
  let message: string = e instanceof Error ? e.message : String(e);
  const prefix = [label, path].find((p) =>
    p !== undefined && message.startsWith(`${printable(p)}: `)
  );
  if (prefix !== undefined) message = message.slice(printable(prefix).length + 2);
  return name === undefined ? message : `${name}: ${message}`;
}

/**
 * What GNU tee says of a closed stdin or stdout (strerror(EBADF)). onecopy
 * never calls read() or write() on such an fd (Deno has put /dev/null there),
 * so this is the text alone, with no syscall named.
 */
const closedFdText = "Bad file descriptor";

/**
 * Whether stdio fd 0 or 1 was closed when the process started. Deno puts
 * /dev/null on a closed stdio fd before any user code runs, opened read-write;
 * a shell's `</dev/null` or `>/dev/null` opens it read-only or write-only. So
 * /dev/null opened O_RDWR on fd 0 or 1 is taken as "closed". It misfires on a
 * /dev/null that a parent opened read-write on purpose: `<>/dev/null`,
 * Python's `subprocess.DEVNULL`, Node's `stdio: "ignore"`. Nothing tells the
 * two apart (same flags in /proc/self/fdinfo; kcmp cannot either), and
 * without the check `tee </dev/zero >&-` would run forever (README).
 */
export function wasClosed(fd: 0 | 1 | 2): boolean {
  try {
    if ((fcntl(fd, F_GETFL) & 3) !== O_RDWR) return false;
    return Deno.readLinkSync(`/proc/self/fd/${fd}`) === "/dev/null";
  } catch {
    return false; // no /proc or no read permission: nothing to tell by
  }
}

/** The mode `--output-error`/`-p` asks for, or GNU's default. */
function outputMode(value: string | undefined): Mode {
  if (value === undefined) return "sigpipe";
  try {
    return argmatch("--output-error", value, modes);
  } catch (e) {
    throw new UsageError(e instanceof ArgsError ? e.message : String(e));
  }
}

/** What one failed output means under `mode`. */
function policy(mode: Mode, error: unknown) {
  const epipe = hasCode(error, "EPIPE");
  return {
    /** Say so on stderr (and exit 1 at the end). */
    report: !epipe || mode === "warn" || mode === "exit",
    /** End the whole tee now. */
    stop: (epipe && mode === "sigpipe") ||
      (mode.startsWith("exit") && !(epipe && mode === "exit-nopipe")),
    /** End it with the status of a death by SIGPIPE. */
    sigpipe: epipe && mode === "sigpipe",
  };
}

/**
 * Opens one operand. Every operand is a file, as POSIX and GNU say: `-`,
 * `unix:log` and `tcp://h:1` too (sockets are `onecopy send`'s). A FIFO with
 * no reader yet is waited for without blocking: SIGINT still ends it.
 */
async function openOutput(name: string, append: boolean, signal?: AbortSignal): Promise<Fd> {
  if (namesClosedStdio(name)) throw new Error("No such file or directory"); // GNU's open: ENOENT
  return await createWriter(name === "-" ? "./-" : name, { append, signal });
}

/** /dev/fd/N, /proc/self/fd/N or /proc/PID/fd/N for our own pid, N a stdio fd. */
const stdioFdPath = /^\/(?:dev\/fd|proc\/(?:self|thread-self|(\d+))\/fd)\/([012])$/;

/**
 * Whether `path` leads (through symlinks: /dev/stdout → /proc/self/fd/1) to a
 * stdio fd that was closed at start. GNU's open() of it fails with ENOENT;
 * ours would open the /dev/null Deno put there.
 */
function namesClosedStdio(path: string): boolean {
  try {
    for (let hop = 0, p = path; hop < 8; hop++) {
      const m = stdioFdPath.exec(p);
      if (m && (m[1] === undefined || Number(m[1]) === Deno.pid)) {
        return wasClosed(Number(m[2]) as 0 | 1 | 2);
      }
      const next = Deno.readLinkSync(p);
      p = next.startsWith("/") ? next : `${p.slice(0, p.lastIndexOf("/") + 1)}${next}`;
    }
  } catch { /* not a symlink (or none left to follow): an ordinary path */ }
  return false;
}

/** Runs `onecopy tee`; returns the exit code. */
export async function tee(
  args: string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { values, positionals } = parse({
    args,
    allowPositionals: true,
    stopAtPositional: posixlyCorrect(),
    options,
  });
  if ((values.help || values.version) && wasClosed(1)) {
    err(`onecopy: write error: ${closedFdText}`); // GNU's close_stdout: EBADF, exit 1
    return Exit.failed;
  }
  if (values.help) {
    out(help.tee);
    return Exit.ok;
  }
  if (values.version) {
    out(versionText);
    return Exit.ok;
  }
  const mode = outputMode(values["output-error"]);
  const algorithm = checksum(values.checksum);
  const how = method(values.method);
  const append = values.append ?? false;
  let code: number = Exit.ok;
  const fail = (name: string | undefined, e: unknown, label?: string) => {
    err(`onecopy: ${oneLine(describe(name, e, label))}`);
    code = Exit.failed;
  };
  const failClosed = (name: string) => fail(undefined, `${name}: ${closedFdText}`);

  // Like GNU: every file is opened (and truncated) in order before any byte moves.
  const outputs: Output[] = [];
  const stdoutClosed = wasClosed(1);
  if (!stdoutClosed) outputs.push({ fd: Fd.stdout(), name: "standard output" });
  // Listening to SIGINT takes Deno an fd (it panics when none is left): before the outputs.
  const interrupt = values["ignore-interrupts"] ? ignoreInterrupts() : interruptSignal();
  try {
    for (const name of positionals) {
      try {
        outputs.push({ fd: await openOutput(name, append, interrupt.signal), name });
      } catch (e) {
        if (isAbort(e)) throw e;
        fail(name, e);
        if (mode.startsWith("exit")) return Exit.failed;
      }
    }
    if (wasClosed(0)) {
      failClosed("standard input");
      return Exit.failed;
    }
    const selves = selfOutputs(outputs);
    if (mode.startsWith("exit") && selves.full.length) {
      // Refused below (by the library): with exit, that failure ends tee before any byte.
      fail(selves.full[0].name, sameFileText);
      return Exit.failed;
    }
    const live = outputs.filter((x) => !selves.empty.includes(x));
    if (stdoutClosed && (live.length === 0 || mode.startsWith("exit"))) {
      // GNU reads once, then fails writing the closed stdout (its first
      // output), which under --output-error=exit ends it; an empty stdin is
      // exit 0. fanout() with no output would not read stdin at all.
      const first = await firstRead(interrupt.signal);
      if (first instanceof Error) fail("read error", first);
      else if (first) failClosed("standard output");
      return code;
    }
    // With files to write, GNU says it at its first write: as soon as bytes move.
    let closedSaid = !stdoutClosed;
    const sayClosed = () => {
      if (!closedSaid) failClosed("standard output");
      closedSaid = true;
    };
    const run = await copy(live, mode, {
      algorithm,
      how,
      fail,
      interrupt,
      progress: values.progress,
      onFirstBytes: closedSaid ? undefined : sayClosed,
    });
    if (run.sigpipe) return sigpipeStatus;
    if (run.report === undefined) return Exit.failed;
    if (run.report.bytes > 0) { // a writer appended to the file meanwhile: tee did not copy those
      for (const { name } of selves.empty) fail(name, sameFileText);
    }
    // GNU fails at its first write to the closed stdout: only when there was a byte to write.
    if (run.report.bytes > 0) sayClosed();
    if (run.report.checksum && !run.report.error) err(checksumLine(run.report.checksum.hex, "-"));
    if (values.json) err(jsonReport(run.report));
    return code;
  } finally {
    interrupt.release();
    for (const { fd } of outputs) fd.close();
  }
}

/** The library's words for an output that is the input file (it refuses such an output). */
const sameFileText = "is the source file; refusing to write it (input file is output file)";

/**
 * The outputs that are stdin's own regular file. `empty` ones (`tee f < f`,
 * `tee < f > f`: f has just been truncated) already hold every byte stdin will
 * give, none, so GNU's exit 0 holds: they are left out of the run, where the
 * library would refuse them as the source. `full` ones (`tee -a f < f`,
 * `>> f`, where GNU's would grow forever) are refused by the library and
 * reported.
 */
function selfOutputs(outputs: Output[]): { empty: Output[]; full: Output[] } {
  const found = { empty: [] as Output[], full: [] as Output[] };
  try {
    const input = statx(0);
    if (input.type !== "file") return found;
    for (const output of outputs) {
      const st = statx(output.fd.fd);
      if (st.type !== "file" || st.dev !== input.dev || st.ino !== input.ino) continue;
      (st.size === 0 ? found.empty : found.full).push(output);
    }
  } catch { /* cannot tell: the library's own check still refuses the source file */ }
  return found;
}

/** Runs the fan-out from stdin to `outputs` under `mode`. */
async function copy(
  outputs: Output[],
  mode: Mode,
  o: {
    algorithm: ReturnType<typeof checksum>;
    how: ReturnType<typeof method>;
    fail: (name: string | undefined, e: unknown, label?: string) => void;
    interrupt: { signal?: AbortSignal };
    progress?: boolean;
    /** Called once, when the first bytes have moved. */
    onFirstBytes?: () => void;
  },
): Promise<{ report?: FanoutReport; sigpipe: boolean }> {
  const stdin = Fd.stdin();
  let sigpipe = false;
  const interrupt = o.interrupt;
  // Only when asked: GNU tee never writes anything of its own to a terminal.
  const progress = o.progress ? new Progress({ force: true, total: sizeOf(stdin) }) : undefined;
  const names = new Map(outputs.map(({ fd, name }) => [fd.label, name]));
  const handled = new Set<Error>();
  let stopped = false;
  /** Applies `mode` to one failed output; true when the whole tee must stop. */
  const onFailure = (label: string, e: Error): boolean => {
    handled.add(e);
    const p = policy(mode, e);
    if (p.report) o.fail(names.get(label) ?? label, e, label);
    if (p.sigpipe) sigpipe = true;
    stopped ||= p.stop;
    return p.stop;
  };
  let firstBytes = o.onFirstBytes;
  const onProgress = (n: number) => {
    if (n > 0 && firstBytes) {
      firstBytes();
      firstBytes = undefined;
    }
    if (progress?.visible) progress.update(n);
  };
  try {
    const report = await reportOf(fanout(stdin, outputs.map((x) => x.fd), {
      checksum: o.algorithm,
      method: o.how,
      signal: interrupt.signal,
      onProgress: progress?.visible || o.onFirstBytes ? onProgress : undefined,
      // As GNU 9.2: in the -nopipe modes, a lost reader is noticed while stdin is idle.
      watchReaders: mode.endsWith("-nopipe"),
      onDestinationError: (target, e) => onFailure(target, e) ? "stop" : "continue",
    }));
    progress?.done(report.bytes);
    // An output can fail without the callback hearing of it (refused before
    // any byte moved: the source file itself, given with -a): each error in
    // the report is said once, under the same policy. Those a stop cut short
    // ("stopped") are not failures of their own (GNU prints one line).
    for (const d of report.destinations) {
      if (!d.error || handled.has(d.error) || (stopped && isStopMark(d.error))) continue;
      onFailure(d.target, d.error);
    }
    if (report.error) o.fail("read error", report.error); // stdin failed part way
    // GNU, blocked in read() when its terminal hangs up, gets EIO; our read after poll() sees 0.
    else if (hungUpTerminal(0)) o.fail("read error", "Input/output error");
    return { report, sigpipe };
  } catch (e) {
    if (isAbort(e)) throw e;
    progress?.done();
    // The source's syscall failing is GNU's "read error"; anything else says what it is.
    if (e instanceof OnecopyError) o.fail("read error", e);
    else o.fail(undefined, e);
    return { sigpipe: false };
  }
}

/** GNU tee's buffer (BUFSIZ): what its first read() takes from a shared stdin. */
const gnuBuffer = 8192;

/**
 * GNU tee's first read(): true if stdin gave bytes (up to `gnuBuffer` are
 * consumed, as there), false at its end, or the read's error. A SIGINT while
 * it waits is an AbortError.
 */
async function firstRead(signal?: AbortSignal): Promise<boolean | Error> {
  const read = Deno.stdin.read(new Uint8Array(gnuBuffer)).then(
    (n) => n !== null && n > 0,
    (e) => new Error(osErrorText(e)),
  );
  if (!signal) return await read;
  signal.throwIfAborted();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([read, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Whether `e` is the mark fanout() leaves on the outputs a "stop" cut short. */
function isStopMark(e: Error): boolean {
  return e.message === "stopped";
}

/** SIGINT does nothing (`-i`): the handler stays until the process ends, as SIG_IGN would. */
function ignoreInterrupts(): { signal?: AbortSignal; release(): void } {
  Deno.addSignalListener("SIGINT", () => {});
  return { release: () => {} };
}

function sizeOf(fd: Fd): number | undefined {
  try {
    return fd.kind === "file" ? statx(fd.fd).size : undefined;
  } catch {
    return undefined;
  }
}

function posixlyCorrect(): boolean {
  try {
    return Deno.env.get("POSIXLY_CORRECT") !== undefined;
  } catch {
    return false;
  }
}

const versionText = `tee (onecopy) ${version}
Copyright (C) 2026 onecopy contributors.
License MIT <https://opensource.org/license/mit>.
This is free software: you are free to change and redistribute it.
There is NO WARRANTY, to the extent permitted by law.`;
