/**
 * What `fanout()` accepts as a source and as destinations, checked all
 * together before anything is opened or truncated: whatever cannot work is a
 * TypeError that names what was passed and what to pass instead.
 *
 * @module
 */

import { printable } from "../ffi/errors.ts";
import { checkTimeoutMs, Fd } from "./fd.ts";

/** A source: a file path, `"-"` (stdin), an `Fd`, or a stream of bytes. */
export type SourceSpec = string | Fd | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
/**
 * A destination: a file path, `"tcp://host:port"`, `"unix:/path"`, `"-"`
 * (stdout), an `Fd`, or a `WritableStream` of bytes.
 */
export type DestinationSpec = string | Fd | WritableStream<Uint8Array>;

/**
 * Whether `value` is a web stream of the given kind. Strings and Fds are told
 * without reading the global: the first read of `ReadableStream` or
 * `WritableStream` makes Deno load its whole streams implementation (~3 ms of
 * every start, measured), which a path or an fd never needs.
 */
export function isReadableStream(value: unknown): value is ReadableStream<Uint8Array> {
  return typeof value === "object" && value !== null && !(value instanceof Fd) &&
    value instanceof ReadableStream;
}

/** Like `isReadableStream`, for a `WritableStream`. */
export function isWritableStream(value: unknown): value is WritableStream<Uint8Array> {
  return typeof value === "object" && value !== null && !(value instanceof Fd) &&
    value instanceof WritableStream;
}

/** Whether a source is a stream of chunks (rather than something with an fd). */
export function isStreamSource(
  spec: SourceSpec,
): spec is ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> {
  return isReadableStream(spec) || isAsyncIterable(spec);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === "object" && value !== null &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function";
}

/** How a value reads in a message: its class, or its type, with a short preview. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "number" || typeof value === "bigint") return `the ${typeof value} ${value}`;
  if (value === undefined) return "undefined";
  if (typeof value === "symbol") return `a symbol (${String(value)})`;
  if (typeof value === "boolean") return `the boolean ${value}`;
  const name = (value as { constructor?: { name?: string } }).constructor?.name;
  if (value instanceof URL) return `a URL (${value.href})`;
  if (ArrayBuffer.isView(value)) return `a ${name ?? "typed array"} of ${value.byteLength} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (Object.prototype.toString.call(value) === "[object Generator]") return "a generator";
  if (typeof value === "function") return `a function`;
  if (!name || name === "Object") return "a plain object";
  return `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
}

function isSyncIterable(value: unknown): boolean {
  return typeof value === "object" && value !== null &&
    typeof (value as Iterable<unknown>)[Symbol.iterator] === "function";
}

function isFsFile(value: unknown): boolean {
  return typeof Deno.FsFile === "function" && value instanceof Deno.FsFile;
}

/** A Deno.Conn (TcpConn, UnixConn, TlsConn…): it has both streams and addresses. */
function isConn(value: unknown): boolean {
  return typeof value === "object" && value !== null && "readable" in value &&
    "writable" in value && "remoteAddr" in value;
}

/** What to pass instead of a value that is no source. */
function sourceAdvice(value: unknown): string {
  if (value === Deno.stdin) return 'pass "-" (onecopy reads fd 0 itself), or Deno.stdin.readable';
  if (isFsFile(value)) {
    return "Deno gives no fd for a Deno.FsFile: pass its path, or file.readable";
  }
  if (isConn(value)) return "Deno gives no fd for a Deno.Conn: pass conn.readable";
  if (value instanceof URL) {
    return value.protocol === "file:"
      ? "pass the path (url.pathname), not the URL object"
      : "pass (await fetch(url)).body";
  }
  if (value instanceof Response || value instanceof Request) return "pass its .body";
  if (isWritableStream(value)) return "a WritableStream is a destination, not a source";
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return "wrap bytes in a stream: ReadableStream.from([bytes])";
  }
  if (typeof value === "number") return "wrap an fd from node:fs with Fd.adopt(fd)";
  if (value instanceof Blob) return "pass blob.stream()";
  if (typeof value === "object" && value !== null && "readable" in value) {
    return "pass its .readable";
  }
  if (isSyncIterable(value)) {
    return "a sync iterable is read all at once: pass ReadableStream.from(it)";
  }
  return 'pass a path, "-" (stdin), an Fd, a ReadableStream<Uint8Array> or an AsyncIterable<Uint8Array>';
}

/** What to pass instead of a value that is no destination. */
function destinationAdvice(value: unknown): string {
  if (value === Deno.stdout) {
    return 'pass "-" (onecopy writes fd 1 itself), or Deno.stdout.writable';
  }
  if (value === Deno.stderr) return "pass Fd.stderr(), or Deno.stderr.writable";
  if (isFsFile(value)) {
    return "Deno gives no fd for a Deno.FsFile: pass its path, or file.writable";
  }
  if (isConn(value)) {
    return 'Deno gives no fd for a Deno.Conn: pass "tcp://host:port" (onecopy connects), or conn.writable';
  }
  if (value instanceof URL) {
    return value.protocol === "file:"
      ? "pass the path (url.pathname), not the URL object"
      : 'pass "tcp://host:port" or "unix:/path"';
  }
  if (isReadableStream(value)) return "a ReadableStream is a source, not a destination";
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return "bytes cannot be written into; collect them with a WritableStream";
  }
  if (typeof value === "number") return "wrap an fd from node:fs with Fd.adopt(fd)";
  if (typeof value === "object" && value !== null && "writable" in value) {
    return "pass its .writable";
  }
  return 'pass a path, "tcp://host:port", "unix:/path", "-" (stdout), an Fd or a WritableStream<Uint8Array>';
}

/**
 * Throws a TypeError for a source or destination fanout() cannot use, for a
 * stream that another reader or writer holds (locked), or for one stream
 * given twice. Runs before anything is opened.
 */
export function checkSpecs(source: unknown, destinations: unknown): void {
  if (source instanceof Fd && source.closed) {
    throw new TypeError(`fanout(): the source ${printable(source.label)} is a closed Fd`);
  }
  if (source === "") throw new TypeError(`fanout(): the source is an empty path`);
  const ok = typeof source === "string" || source instanceof Fd ||
    (!isFsFile(source) && !isConn(source) && isStreamSource(source as SourceSpec));
  if (!ok) {
    throw new TypeError(
      `fanout(): the source is ${describeValue(source)}, which onecopy cannot read from; ${
        sourceAdvice(source)
      }`,
    );
  }
  if (isReadableStream(source) && source.locked) {
    throw new TypeError("fanout(): the source ReadableStream is locked (another reader has it)");
  }
  if (!Array.isArray(destinations)) {
    throw new TypeError(
      `fanout(): destinations must be an array, not ${describeValue(destinations)}`,
    );
  }
  const streams = new Set<WritableStream>();
  destinations.forEach((d: unknown, i) => {
    const where = `fanout(): destination ${i + 1}`;
    if (d === "") throw new TypeError(`${where} is an empty path`);
    if (d instanceof Fd && d.closed) {
      throw new TypeError(`${where} (${printable(d.label)}) is a closed Fd`);
    }
    if (typeof d === "string" || d instanceof Fd) return;
    if (isWritableStream(d)) {
      if (d.locked) throw new TypeError(`${where} is a locked WritableStream (a writer has it)`);
      if (streams.has(d)) throw new TypeError(`${where}: the same WritableStream is given twice`);
      streams.add(d);
      return;
    }
    throw new TypeError(
      `${where} is ${describeValue(d)}, which onecopy cannot write to; ${destinationAdvice(d)}`,
    );
  });
}

/** Throws a TypeError for an option fanout() cannot use, before anything is opened. */
export function checkOptions(options: { connectTimeout?: unknown }): void {
  checkTimeoutMs(options.connectTimeout, "fanout(): connectTimeout");
}
