/**
 * `onecopy tee`: like coreutils tee(1), stdin to stdout and every DEST, but
 * with tee(2) when stdin is a pipe (no user-space copy at all).
 *
 * @module
 */

import { fanout, type FanoutReport, Fd } from "../mod.ts";
import { describeFailure, hasCode } from "../lib/internal.ts";
import {
  checksum,
  destinations,
  interruptSignal,
  jsonReport,
  method,
  parse,
  reportOf,
} from "./common.ts";
import { Progress } from "./progress.ts";
import { Exit, UsageError } from "./usage.ts";

type Mode = "default" | "warn" | "warn-nopipe" | "exit" | "exit-nopipe";
const modes: Mode[] = ["warn", "warn-nopipe", "exit", "exit-nopipe"];

function isEpipe(err: Error | undefined): boolean {
  return hasCode(err, "EPIPE");
}

/** Runs `onecopy tee`; returns the exit code. */
export async function tee(args: string[], err: (line: string) => void): Promise<number> {
  // parseArgs has no optional values: a bare --output-error means its default MODE.
  const argv = args.map((
    a,
  ) => (a === "--output-error" || a === "-p" ? "--output-error=warn-nopipe" : a));
  const { values, positionals } = parse({
    args: argv,
    allowPositionals: true,
    options: {
      append: { type: "boolean", short: "a" },
      "output-error": { type: "string" },
      checksum: { type: "string" },
      method: { type: "string" },
      progress: { type: "boolean" },
      json: { type: "boolean" },
    },
  });
  const mode = (values["output-error"] ?? "default") as Mode;
  if (mode !== "default" && !modes.includes(mode)) {
    throw new UsageError(`unknown --output-error mode '${mode}' (use ${modes.join(", ")})`);
  }
  const quietPipes = mode === "default" || mode.endsWith("-nopipe");
  const interrupt = interruptSignal();
  const progress = new Progress({ force: values.progress === true });
  let report: FanoutReport;
  try {
    report = await reportOf(fanout(Fd.stdin(), [Fd.stdout(), ...destinations(positionals)], {
      append: values.append,
      checksum: checksum(values.checksum),
      method: method(values.method),
      signal: interrupt.signal,
      onProgress: (n) => progress.update(n),
      // EPIPE ends coreutils tee by SIGPIPE unless -p; "exit" modes stop at any reported error.
      onDestinationError: (_, e) =>
        (mode === "default" && isEpipe(e)) ||
          (mode.startsWith("exit") && !(quietPipes && isEpipe(e)))
          ? "stop"
          : "continue",
    }));
  } finally {
    progress.done();
    interrupt.release();
  }
  let code: number = Exit.ok;
  for (const d of report.destinations) {
    if (!d.error || (quietPipes && isEpipe(d.error))) continue;
    err(`onecopy: ${describeFailure(d.target, d.error)}`);
    code = Exit.failed;
  }
  if (report.checksum) err(`${report.checksum.algorithm} ${report.checksum.hex}`);
  if (values.json) err(jsonReport(report));
  return code;
}
