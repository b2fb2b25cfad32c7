/**
 * Where bytes go or come from, as users write it: a path, `-`,
 * `tcp://host:port` or `unix:/path`; and the sockaddr bytes the kernel wants.
 *
 * @module
 */

import { AF_INET, AF_INET6, AF_UNIX } from "../ffi/raw.ts";
import { printable } from "../ffi/errors.ts";

/** A parsed source or destination. */
export type Target =
  | { kind: "stdio"; fd: 0 | 1 | 2; text: string }
  | { kind: "file"; path: string; text: string }
  | { kind: "tcp"; host: string; port: number; text: string }
  | { kind: "unix"; path: string; text: string };

/**
 * Parses `-`, `tcp://host:port`, `unix:/path` or a file path; throws a
 * TypeError on a bad URL. Only a `listen` address may have port 0 (any port).
 * Messages quote what the user wrote (`printable`): they stay one line.
 */
export function parseTarget(text: string, role: "source" | "destination" | "listen"): Target {
  const shown = printable(text);
  if (text === "-") return { kind: "stdio", fd: role === "source" ? 0 : 1, text };
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length).replace(/^\/\/(?=\/)/, "");
    if (!path) throw new TypeError(`${shown}: a unix socket needs a path (unix:/path)`);
    return { kind: "unix", path, text };
  }
  if (text.startsWith("tcp://")) {
    // An IPv6 literal may carry a zone: [fe80::1%eth0] (RFC 6874 writes the % as %25).
    // A host name holds no space or control character (a newline would reach DNS).
    const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+(?:%(?:25)?[\w.-]+)?\]|[^:/[\]%\s\p{Cc}]+):(\d+)$/u.exec(
      text,
    );
    const port = m ? Number(m[2]) : NaN;
    const low = role === "listen" ? 0 : 1;
    if (!m || !(port >= low && port <= 65535)) {
      throw new TypeError(`${shown}: expected tcp://HOST:PORT with a port from ${low} to 65535`);
    }
    return { kind: "tcp", host: m[1].replace(/^\[|\]$/g, "").replace("%25", "%"), port, text };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new TypeError(
      `${shown}: unsupported address (use a path, -, tcp://HOST:PORT or unix:PATH)`,
    );
  }
  if (text === "") throw new TypeError("empty path");
  return { kind: "file", path: text, text };
}

/** Parses a dotted IPv4 address into 4 bytes, or returns undefined. */
export function parseIPv4(host: string): Uint8Array | undefined {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) < 256)) {
    return undefined;
  }
  return Uint8Array.from(parts.map(Number));
}

/** Parses an IPv6 address in hex groups, with at most one `::`, into 16 bytes. */
export function parseIPv6(host: string): Uint8Array | undefined {
  const halves = host.split("::");
  if (!host.includes(":") || halves.length > 2) return undefined;
  const groups = (s: string) => (s ? s.split(":") : []);
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  if (![...head, ...rest].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const zeros = 8 - head.length - rest.length;
  if (halves.length === 1 ? zeros !== 0 : zeros < 1) return undefined;
  const words = [...head, ...Array(halves.length === 2 ? zeros : 0).fill("0"), ...rest];
  const out = new Uint8Array(16);
  words.forEach((g, i) => new DataView(out.buffer).setUint16(i * 2, parseInt(g, 16), false));
  return out;
}

/** A resolved IP address; `scope` is an IPv6 zone's interface index. */
export interface IpAddress {
  family: typeof AF_INET | typeof AF_INET6;
  bytes: Uint8Array;
  scope?: number;
}

/**
 * Resolves a host: IP literals (IPv6 with an optional `%zone`) directly,
 * `localhost` to 127.0.0.1, others through DNS, which `signal` interrupts.
 */
export async function resolveHost(host: string, signal?: AbortSignal): Promise<IpAddress> {
  const [addr, zone] = host.split("%");
  const v6 = parseIPv6(addr);
  if (zone !== undefined) {
    if (!v6) {
      throw new TypeError(`a %zone is only valid on an IPv6 address, not ${printable(addr)}`);
    }
    return { family: AF_INET6, bytes: v6, scope: interfaceIndex(zone, host) };
  }
  const v4 = parseIPv4(host);
  if (v4) return { family: AF_INET, bytes: v4 };
  if (v6 && isLinkLocal(v6)) {
    // The kernel's answer would be a bare EINVAL from connect() or bind().
    throw new TypeError(`${host} is link-local: give its interface as a zone, as [${host}%eth0]`);
  }
  if (v6) return { family: AF_INET6, bytes: v6 };
  if (host === "localhost") return { family: AF_INET, bytes: Uint8Array.of(127, 0, 0, 1) };
  for (const type of ["A", "AAAA"] as const) {
    try {
      const [first] = await Deno.resolveDns(host, type, { signal });
      if (first) return resolveHost(first);
    } catch (err) {
      signal?.throwIfAborted();
      if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
        throw new Error(
          `cannot resolve host ${
            printable(host)
          }: name lookups need --allow-net (or give an IP address)`,
          { cause: err },
        );
      }
      /* not found: try the next record type */
    }
  }
  throw new Error(`cannot resolve host ${printable(host)}`);
}

/** Whether an IPv6 address is link-local (fe80::/10): usable only with a zone. */
function isLinkLocal(v6: Uint8Array): boolean {
  return v6[0] === 0xfe && (v6[1] & 0xc0) === 0x80;
}

/** The index of a network interface named in an IPv6 zone: a number, or a name from sysfs. */
function interfaceIndex(zone: string, host: string): number {
  if (/^\d+$/.test(zone)) return Number(zone);
  try {
    if (/^[\w.-]+$/.test(zone)) {
      return Number(Deno.readTextFileSync(`/sys/class/net/${zone}/ifindex`).trim());
    }
  } catch { /* no such interface (or no --allow-read): said below */ }
  throw new TypeError(
    `no network interface named '${printable(zone)}' (the zone of ${printable(host)})`,
  );
}

/** A `struct sockaddr_in` or `sockaddr_in6` for an address and port. */
export function sockaddrIp(ip: IpAddress, port: number): Uint8Array {
  const out = new Uint8Array(ip.family === AF_INET ? 16 : 28);
  const view = new DataView(out.buffer);
  view.setUint16(0, ip.family, true);
  view.setUint16(2, port, false);
  out.set(ip.bytes, ip.family === AF_INET ? 4 : 8);
  if (ip.scope) view.setUint32(24, ip.scope, true); // sin6_scope_id
  return out;
}

/** A `struct sockaddr_un` for a path (at most 107 bytes). */
export function sockaddrUnix(path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > 107) throw new TypeError(`unix socket path too long: ${printable(path)}`);
  const out = new Uint8Array(2 + bytes.length + 1);
  new DataView(out.buffer).setUint16(0, AF_UNIX, true);
  out.set(bytes, 2);
  return out;
}

/** The port of a `sockaddr_in`/`sockaddr_in6`, or undefined for other families. */
export function sockaddrPort(addr: Uint8Array): number | undefined {
  const view = new DataView(addr.buffer, addr.byteOffset, addr.byteLength);
  const family = view.getUint16(0, true);
  return family === AF_INET || family === AF_INET6 ? view.getUint16(2, false) : undefined;
}

/** The address family of a sockaddr. */
export function sockaddrFamily(addr: Uint8Array): number {
  return new DataView(addr.buffer, addr.byteOffset, addr.byteLength).getUint16(0, true);
}
