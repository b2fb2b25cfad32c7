/**
 * The `onecopy` command: `tee`, `send`, `recv` and `mirror`.
 *
 * ```sh
 * deno run -A jsr:@onecopy/onecopy/cli tee out.bin < in.bin > copy.bin
 * ```
 *
 * @module
 */

import { Exit, help, UsageError, version } from "./usage.ts";
import { sigpipeStatus, tee } from "./tee.ts";
import { send } from "./send.ts";
import { recv } from "./recv.ts";
import { mirrorCommand } from "./mirror.ts";
import {
  dieOfSignal,
  ignoreSignal,
  loadShim,
  PermissionError,
  SIGINT,
  SIGPIPE,
  SIGXFSZ,
} from "../lib/internal.ts";
import { checkEncoding, isAbort, osErrorText } from "./common.ts";
import { oneLine, quote } from "./quote.ts";

const encoder = new TextEncoder();
/** The first error writing stdout: said once at the end, as GNU's "write error". */
let stdoutError: unknown;
/** Writes `text` and a newline, all of it; returns the error instead of throwing it. */
function writeLine(stream: { writeSync(p: Uint8Array): number }, text: string): unknown {
  try {
    for (let bytes = encoder.encode(`${text}\n`); bytes.length;) {
      bytes = bytes.subarray(stream.writeSync(bytes));
    }
  } catch (e) {
    return e;
  }
}
const out = (text: string) => {
  if (stdoutError === undefined) stdoutError = writeLine(Deno.stdout, text);
};
// A failing stderr leaves nothing to say it with.
const err = (text: string) => void writeLine(Deno.stderr, text);

/**
 * `code`, unless writing stdout failed (help, version, a report into
 * /dev/full): then "write error: <why>" and 1, as GNU's close_stdout. A reader
 * gone (EPIPE) is quiet: tee then ends as SIGPIPE would, the others with 1.
 */
function checkStdout(code: number, command: string | undefined): number {
  if (stdoutError === undefined) return code;
  if (stdoutError instanceof Deno.errors.BrokenPipe) {
    return command === "tee" ? sigpipeStatus : Math.max(code, Exit.failed);
  }
  err(`onecopy: write error: ${oneLine(osErrorText(stdoutError))}`);
  return code === sigpipeStatus || code === Exit.interrupted ? code : Math.max(code, Exit.failed);
}

const commands = { tee, send, recv, mirror: mirrorCommand } as const;
type Command = keyof typeof commands;
/** Whether `name` is a command (an own key: `onecopy constructor` is not one). */
const isCommand = (name: string | undefined): name is Command =>
  name !== undefined && Object.hasOwn(commands, name);

/** `onecopy help [CMD]`. */
function helpOf([name, ...extra]: string[]): number {
  if (name === undefined) {
    out(help.main);
    return Exit.ok;
  }
  if (extra.length || !Object.hasOwn(help, name) || name === "main") {
    throw new UsageError(
      `no help for ${quote([name, ...extra].join(" "))} (try tee, send, recv, mirror)`,
    );
  }
  out(help[name as keyof typeof help]);
  return Exit.ok;
}

/** Runs the command line `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const code = await run(args);
  return checkStdout(code, args[0]);
}

/** Set when a command ended because SIGINT aborted it (not mirror's drain, not -i). */
let interruptedBySigint = false;

async function run(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    if (command === undefined || command === "--help" || command === "-h") {
      (command ? out : err)(help.main);
      return command ? Exit.ok : Exit.usage;
    }
    if (command === "--version" || command === "-V") {
      out(`onecopy ${version}`);
      return Exit.ok;
    }
    if (command === "help") return helpOf(rest);
    if (!isCommand(command)) throw new UsageError(`unknown command ${quote(command)}`);
    const name = command;
    // tee, send and recv parse --help themselves (`tee -- --help` writes a file,
    // `send f --to -h` sends to one); mirror's is seen anywhere.
    if (name === "mirror" && (rest.includes("--help") || rest.includes("-h"))) {
      out(help[name]);
      return Exit.ok;
    }
    checkEncoding(rest);
    // Load the shim first: a missing permission is then one message, before any file is opened.
    if (!rest.some((a) => a === "--help" || a === "-h" || a === "--version")) {
      loadShim();
      // A write past `ulimit -f` then fails with EFBIG on its one destination
      // instead of killing onecopy (and every other destination with it).
      ignoreSignal(SIGXFSZ);
    }
    return await commands[name](rest, out, err);
  } catch (e) {
    if (e instanceof UsageError) {
      const cmd = isCommand(command) ? `${command} ` : "";
      err(`onecopy: ${oneLine(e.message)}\nTry 'onecopy ${cmd}--help' for more information.`);
      // GNU tee's usage errors exit 1; a drop-in must too. The other commands keep 2.
      return command === "tee" ? Exit.failed : Exit.usage;
    }
    if (isAbort(e)) {
      interruptedBySigint = true;
      return Exit.interrupted;
    }
    if (e instanceof PermissionError) err(oneLine(e.message)); // it starts with "onecopy needs"
    else err(`onecopy: ${oneLine(e instanceof Error ? e.message : String(e))}`);
    return Exit.failed;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // As GNU tee: a broken pipe is a death by SIGPIPE (the exit status is the fallback).
  if (code === sigpipeStatus) dieOfSignal(SIGPIPE);
  // As a C tool after Ctrl-C: a death by SIGINT, so that the shell script running it stops too.
  if (code === Exit.interrupted && interruptedBySigint) dieOfSignal(SIGINT);
  Deno.exit(code);
}
