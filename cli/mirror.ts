/**
 * `onecopy mirror`: a thin layer over `mirror()`: flags in, one line per
 * connection (`--json`) and a summary out, SIGINT/SIGTERM drain.
 *
 * @module
 */

import { type ConnectionReport, mirror, type MirrorOptions, type MirrorStats } from "../mod.ts";
import { parseBytes, parseTarget, raiseFileLimit } from "../lib/internal.ts";
import { parse } from "./common.ts";
import { Exit, UsageError } from "./usage.ts";

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
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`--${flag} wants seconds (a number >= 0), not '${value}'`);
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

/** Checks the flags and turns them into `MirrorOptions` (without callbacks). */
export function mirrorOptions(args: string[]): MirrorOptions & { json: boolean } {
  const { values } = parse({
    args,
    allowPositionals: false,
    options: {
      listen: { type: "string" },
      to: { type: "string" },
      shadow: { type: "string", multiple: true },
      "max-lag": { type: "string" },
      "on-lag": { type: "string" },
      sample: { type: "string" },
      capture: { type: "string" },
      method: { type: "string" },
      "connect-timeout": { type: "string" },
      "drain-timeout": { type: "string" },
      "max-connections": { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const options: MirrorOptions & { json: boolean } = {
    listen: address("listen", values.listen, "listen"),
    to: address("to", values.to, "destination"),
    shadows: (values.shadow ?? []).map((s) => address("shadow", s, "destination")),
    json: values.json ?? false,
  };
  if (options.shadows!.length > 8) throw new UsageError("at most 8 --shadow");
  if (values["max-lag"] !== undefined) {
    try {
      options.maxLag = parseBytes(values["max-lag"]);
    } catch (e) {
      throw new UsageError(`--max-lag: ${e instanceof Error ? e.message : e}`);
    }
    if (options.maxLag < 1) throw new UsageError("--max-lag must be at least 1 byte");
  }
  const onLag = values["on-lag"];
  if (onLag !== undefined) {
    if (onLag !== "disconnect" && onLag !== "block") {
      throw new UsageError(`--on-lag wants disconnect or block, not '${onLag}'`);
    }
    options.onLag = onLag;
  }
  if (values.sample !== undefined) {
    const p = Number(values.sample.replace(/%$/, ""));
    if (values.sample.trim() === "" || !(p >= 0 && p <= 100)) {
      throw new UsageError(`--sample wants a percentage from 0 to 100, not '${values.sample}'`);
    }
    options.sample = p;
  }
  if (values.capture !== undefined) {
    if (values.capture === "") throw new UsageError("--capture needs a directory");
    options.capture = values.capture;
  }
  const method = values.method;
  if (method !== undefined) {
    if (method !== "auto" && method !== "copy" && method !== "splice") {
      throw new UsageError(`unknown method '${method}' (use auto, copy, splice)`);
    }
    options.method = method;
  }
  options.connectTimeout = seconds("connect-timeout", values["connect-timeout"]);
  options.drainTimeout = seconds("drain-timeout", values["drain-timeout"]);
  options.maxConnections = whole("max-connections", values["max-connections"], 1e9);
  options.threads = whole("threads", values.threads, 64);
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

/** Runs `onecopy mirror`; returns the exit code once SIGINT/SIGTERM has drained it. */
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
  const onSignal = () => stop.resolve();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const server = await mirror(options);
    err(`onecopy mirror: listening on ${server.url}`);
    await stop.promise;
    const stats = await server.close();
    if (json) out(summaryLine(server.url, server.method, stats));
    else {
      err(
        `onecopy mirror: ${stats.closed} connections, ${stats.bytesIn} bytes in, ` +
          `${stats.bytesOut} bytes out, ${stats.primaryFailed} primary failures, ` +
          `${stats.shadowsDropped} shadows dropped, ${stats.shadowsFailed} shadow failures`,
      );
    }
    return Exit.ok;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}
