/**
 * What the commands share: option checking, SIGINT, the JSON report.
 *
 * @module
 */

import { ArgsError, type OptionSpec, parseArgs, type Values } from "./args.ts";
import {
  type ChecksumAlgorithm,
  checksumAlgorithms,
  FanoutError,
  type FanoutReport,
  type Method,
  methods,
} from "../mod.ts";
import { parseTarget, printable, type Target } from "../lib/internal.ts";
import { UsageError } from "./usage.ts";
import { quote } from "./quote.ts";

/** parseArgs, with its errors turned into one-line usage errors. */
export function parse<const O extends Record<string, OptionSpec>>(
  config: { args: string[]; options: O; allowPositionals?: boolean; stopAtPositional?: boolean },
): { values: Values<O>; positionals: string[] } {
  try {
    return parseArgs(config);
  } catch (err) {
    if (err instanceof ArgsError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * Deno hands the arguments over already decoded from UTF-8, each invalid byte
 * replaced by U+FFFD: the real file name is gone, and writing to the replaced
 * one would write somewhere else. Such an argument is refused.
 */
export function checkEncoding(args: string[]): void {
  const bad = args.find((a) => a.includes("\uFFFD"));
  if (bad === undefined) return;
  throw new UsageError(
    `argument ${printable(bad)} is not valid UTF-8 (or holds U+FFFD): ` +
      "onecopy cannot name that file; rename it or go through a symlink",
  );
}

/** Checks `--method`. */
export function method(value: unknown): Method {
  if (value === undefined) return "auto";
  if (!methods.includes(value as Method)) {
    throw new UsageError(`unknown method ${quote(String(value))} (use ${methods.join(", ")})`);
  }
  return value as Method;
}

/** Checks a duration option given in seconds (`--connect-timeout 2.5`); returns ms. */
export function seconds(option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const s = Number(value);
  if (value.trim() === "" || !Number.isFinite(s) || s <= 0) {
    throw new UsageError(`${option} wants a number of seconds above 0, not ${quote(value)}`);
  }
  return s * 1000;
}

/** Checks `--checksum`. */
export function checksum(value: unknown): ChecksumAlgorithm | undefined {
  if (value === undefined) return undefined;
  if (!checksumAlgorithms.includes(value as ChecksumAlgorithm)) {
    throw new UsageError(
      `unknown checksum ${quote(String(value))} (use ${checksumAlgorithms.join(", ")})`,
    );
  }
  return value as ChecksumAlgorithm;
}

/**
 * The line `sha256sum` prints for `name`: `HEX  NAME`. As GNU does, a name
 * holding a backslash, newline or carriage return is escaped (`\\`, `\n`,
 * `\r`) and the line starts with a backslash, so `sha256sum -c` reads it back.
 */
export function checksumLine(hex: string, name: string): string {
  if (!/[\\\n\r]/.test(name)) return `${hex}  ${name}`;
  const escapes: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r" };
  return `\\${hex}  ${name.replace(/[\\\n\r]/g, (c) => escapes[c])}`;
}

/** An AbortSignal that fires on SIGINT; `release()` removes the handler. */
export function interruptSignal(): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const onInt = () => controller.abort();
  Deno.addSignalListener("SIGINT", onInt);
  return { signal: controller.signal, release: () => Deno.removeSignalListener("SIGINT", onInt) };
}

/** The `--json` report: plain data, errors as messages. */
export function jsonReport(report: FanoutReport): string {
  return JSON.stringify({
    bytes: report.bytes,
    method: report.method,
    stable: report.stable,
    // None for a source that failed part way: it would not be the source's checksum.
    checksum: report.error ? undefined : report.checksum,
    seconds: Number(report.seconds.toFixed(6)),
    ...(report.error ? { error: report.error.message } : {}),
    destinations: report.destinations.map((d) => ({
      target: d.target,
      bytes: d.bytes,
      ...(d.error ? { error: d.error.message } : {}),
    })),
  });
}

/** The `--json` report of a fan-out that failed before moving a byte (its source did not open, say). */
export function jsonFailure(error: unknown, targets: string[]): string {
  return JSON.stringify({
    bytes: 0,
    error: error instanceof Error ? error.message : String(error),
    destinations: targets.map((target) => ({ target, bytes: 0 })),
  });
}

/** What a Deno I/O error says, as C tools say it: "Is a directory", without " (os error 21)". */
export function osErrorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/ \(os error \d+\)$/, "");
}

/** Whether a fan-out ended because SIGINT (or another abort) interrupted it. */
export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

/** The size of a regular file, for percent and ETA; undefined otherwise. */
export function fileSize(path: string): number | undefined {
  try {
    const info = Deno.statSync(path);
    return info.isFile ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks an address up front (`-`, a path, `tcp://HOST:PORT`, `unix:PATH`), so
 * that an empty path, a bad URL or a port out of range is a usage error
 * before anything is opened.
 */
export function target(text: string, role: "source" | "destination" | "listen"): Target {
  try {
    return parseTarget(text, role);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** Checks destination addresses up front (see `target`); `-` (stdout) may be given once. */
export function destinations(targets: string[]): string[] {
  for (const t of targets) target(t, "destination");
  if (targets.filter((t) => t === "-").length > 1) {
    throw new UsageError("--to - (stdout) is given twice; give it once");
  }
  return targets;
}

/** Awaits a fan-out and returns its report, whether or not some destinations failed. */
export async function reportOf(run: Promise<FanoutReport>): Promise<FanoutReport> {
  try {
    return await run;
  } catch (e) {
    if (e instanceof FanoutError) return e.report;
    throw e;
  }
}
