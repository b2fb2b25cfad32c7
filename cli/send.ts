/**
 * `onecopy send FILE|- --to DEST...`: one input to many destinations.
 *
 * @module
 */

import { fanout, type FanoutReport } from "../mod.ts";
import { describeFailure } from "../lib/internal.ts";
import {
  checksum,
  checksumLine,
  destinations,
  fileSize,
  interruptSignal,
  isAbort,
  jsonFailure,
  jsonReport,
  method,
  parse,
  reportOf,
  seconds,
  target,
} from "./common.ts";
import { Progress } from "./progress.ts";
import { oneLine } from "./quote.ts";
import { Exit, help, UsageError } from "./usage.ts";

/** Runs `onecopy send`; returns the exit code. */
export async function send(
  args: string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { values, positionals } = parse({
    args,
    allowPositionals: true,
    options: {
      to: { type: "string", multiple: true },
      append: { type: "boolean", short: "a" },
      method: { type: "string" },
      checksum: { type: "string" },
      progress: { type: "boolean" },
      json: { type: "boolean" },
      "connect-timeout": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    out(help.send);
    return Exit.ok;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length ? "send takes one input (FILE or -)" : "send needs an input (FILE or -)",
    );
  }
  const [input] = positionals;
  target(input, "source");
  const to = destinations(values.to ?? []);
  if (to.length === 0) throw new UsageError("send needs at least one --to DEST");
  const options = {
    append: values.append,
    checksum: checksum(values.checksum),
    method: method(values.method),
    connectTimeout: seconds("--connect-timeout", values["connect-timeout"]),
  };
  const interrupt = interruptSignal();
  const progress = new Progress({ force: values.progress === true, total: fileSize(input) });
  let report: FanoutReport;
  try {
    report = await reportOf(fanout(input, to, {
      ...options,
      signal: interrupt.signal,
      onProgress: progress.visible ? (n) => progress.update(n) : undefined,
    }));
  } catch (e) {
    if (values.json && !isAbort(e)) out(jsonFailure(e, to));
    throw e;
  } finally {
    progress.done();
    interrupt.release();
  }
  if (report.error) err(`onecopy: ${oneLine(report.error.message)}`);
  const failed = report.destinations.filter((d) => d.error);
  for (const d of failed) err(`onecopy: ${oneLine(describeFailure(d.target, d.error))}`);
  if (values.json) out(jsonReport(report));
  // The line sha256sum prints (`HEX  FILE`), so that `sha256sum -c` can check it; none
  // for a source that failed part way: that checksum is not the source's.
  else if (report.checksum && !report.error) out(checksumLine(report.checksum.hex, input));
  return report.error || failed.length ? Exit.failed : Exit.ok;
}
