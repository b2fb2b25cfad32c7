/**
 * `onecopy mirror`: a thin layer over `mirror()`: flags in, one line per
 * connection (`--json`) and a summary out, SIGINT/SIGTERM drain.
 *
 * @module
 */

import {
  type ConnectionReport,
  mirror,
  type MirrorOptions,
  type MirrorServer,
  type MirrorStats,
} from "../mod.ts";
import {
  MIRROR_LIMITS,
  MIRROR_METHODS,
  ON_LAG,
  parseBytes,
  parseTarget,
  raiseFileLimit,
} from "../lib/internal.ts";
import { parse } from "./common.ts";
import { Exit, UsageError } from "./usage.ts";

/** The one value of a flag that may be given once. */
function once(flag: string, values: string[] | undefined): string | undefined {
  if (values && values.length > 1) throw new UsageError(`--${flag} given ${values.length} times`);
  return values?.[0];
}

function address(flag: string, value: string | undefined, role: "listen" | "destination") {
  if (value === undefined) {
    throw new UsageError(`mirror needs --${flag} tcp://HOST:PORT or unix:PATH`);
  }
  let kind: string;
  try {
    kind = parseTarget(value, role).kind;
  } catch (e) {
    throw new UsageError(`--${flag}: ${e instanceof Error ? e.message : e}`);
  }
  if (kind !== "tcp" && kind !== "unix") {
    throw new UsageError(`--${flag}: '${value}' is not a tcp://HOST:PORT or unix:PATH address`);
  }
  return value;
}

function seconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const max = MIRROR_LIMITS.seconds;
  if (value.trim() === "" || !(n >= 0 && n <= max)) {
    throw new UsageError(`--${flag} wants seconds (a number from 0 to ${max}), not '${value}'`);
  }
  return n;
}

function whole(flag: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > max) {
    throw new UsageError(`--${flag} wants a whole number from 1 to ${max}, not '${value}'`);
  }
  return n;
}

function maxLag(value: string): number {
  let n: number;
  try {
    n = parseBytes(value);
  } catch (e) {
    throw new UsageError(`--max-lag: ${e instanceof Error ? e.message : e}`);
  }
  if (!(n >= 1 && n <= MIRROR_LIMITS.maxLag)) {
    throw new UsageError(
      `--max-lag must be from 1 byte to 1T (${MIRROR_LIMITS.maxLag}), not '${value}'`,
    );
  }
  return n;
}

/** One of `choices`, or a usage error listing them. */
function choice<T extends string>(flag: string, value: string | undefined, choices: readonly T[]) {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag} wants ${choices.join(", ")}, not '${value}'`);
  }
  return value as T;
}

/** Checks the flags and turns them into `MirrorOptions` (without callbacks). */
export function mirrorOptions(args: string[]): MirrorOptions & { json: boolean } {
  const single = { type: "string", multiple: true } as const;
  const { values } = parse({
    args,
    allowPositionals: false,
    options: {
      listen: single,
      to: single,
      shadow: { type: "string", multiple: true },
      "max-lag": single,
      "on-lag": single,
      sample: single,
      capture: single,
      method: single,
      "connect-timeout": single,
      "drain-timeout": single,
      "max-connections": single,
      threads: single,
      json: { type: "boolean" },
    },
  });
  const one = (flag: keyof typeof values & string) => once(flag, values[flag] as string[]);
  const options: MirrorOptions & { json: boolean } = {
    listen: address("listen", one("listen"), "listen"),
    to: address("to", one("to"), "destination"),
    shadows: (values.shadow ?? []).map((s) => address("shadow", s, "destination")),
    json: values.json ?? false,
  };
  if (options.shadows!.length > MIRROR_LIMITS.shadows) {
    throw new UsageError(`at most ${MIRROR_LIMITS.shadows} --shadow`);
  }
  const lag = one("max-lag");
  if (lag !== undefined) options.maxLag = maxLag(lag);
  options.onLag = choice("on-lag", one("on-lag"), ON_LAG);
  const sample = one("sample");
  if (sample !== undefined) {
    const p = Number(sample.replace(/%$/, ""));
    if (sample.trim() === "" || !(p >= 0 && p <= 100)) {
      throw new UsageError(`--sample wants a percentage from 0 to 100, not '${sample}'`);
    }
    options.sample = p;
  }
  const capture = one("capture");
  if (capture !== undefined) {
    if (capture === "") throw new UsageError("--capture needs a directory");
    options.capture = capture;
  }
  options.method = choice("method", one("method"), MIRROR_METHODS);
  options.connectTimeout = seconds("connect-timeout", one("connect-timeout"));
  options.drainTimeout = seconds("drain-timeout", one("drain-timeout"));
  options.maxConnections = whole(
    "max-connections",
    one("max-connections"),
    MIRROR_LIMITS.maxConnections,
  );
  options.threads = whole("threads", one("threads"), MIRROR_LIMITS.threads);
  return options;
}

/** The `--json` line of one connection. */
export function connectionLine(r: ConnectionReport): string {
  return JSON.stringify({
    id: r.id,
    client: r.client,
    start: new Date(r.start).toISOString(),
    end: new Date(r.end).toISOString(),
    bytes_in: r.bytesIn,
    bytes_out: r.bytesOut,
    primary: r.primary.outcome,
    ...(r.primary.error ? { primary_error: r.primary.error } : {}),
    mirrored: r.mirrored,
    shadows: r.shadows.map((s) => ({
      target: s.target,
      bytes: s.bytes,
      outcome: s.outcome,
      ...(s.error ? { error: s.error } : {}),
    })),
  });
}

function summaryLine(listen: string, method: string, stats: MirrorStats): string {
  return JSON.stringify({ summary: true, listen, method, ...stats });
}

/**
 * Runs `onecopy mirror` until SIGINT/SIGTERM has drained it (exit 0), a
 * second signal has cut the drain short (exit 130), or a loop failed (the
 * error is thrown: one line, exit 1).
 */
export async function mirrorCommand(
  args: string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { json, ...options } = mirrorOptions(args);
  try {
    raiseFileLimit(); // two or more fds per connection
  } catch { /* keep the limit we have */ }
  if (json) options.onConnection = (r) => out(connectionLine(r));
  const stop = Promise.withResolvers<void>();
  let server: MirrorServer | undefined;
  let signals = 0;
  let draining = false;
  let cut = false;
  const onSignal = () => {
    signals++;
    if (signals === 1) return stop.resolve();
    // Again while draining: the operator wants out now.
    if (draining && server) {
      cut = true;
      server.close({ drainTimeout: 0 }).catch(() => {/* reported by the first close() */});
    }
  };
  const names = ["SIGINT", "SIGTERM"] as const;
  for (const s of names) Deno.addSignalListener(s, onSignal);
  try {
    server = await mirror(options);
    err(`onecopy mirror: listening on ${server.url}`);
    await Promise.race([stop.promise, server.closed]); // `closed` rejects if a loop failed
    draining = true;
    const stats = await server.close();
    draining = false;
    if (json) out(summaryLine(server.url, server.method, stats));
    else {
      err(
        `onecopy mirror: ${stats.closed} connections, ${stats.bytesIn} bytes in, ` +
          `${stats.bytesOut} bytes out, ${stats.primaryFailed} primary failures, ` +
          `${stats.shadowsDropped} shadows dropped, ${stats.shadowsFailed} shadow failures`,
      );
    }
    return cut ? Exit.interrupted : Exit.ok;
  } finally {
    for (const s of names) Deno.removeSignalListener(s, onSignal);
  }
}
