/**
 * mirror(): a byte-level TCP/Unix mirroring proxy. Every accepted client is
 * connected to the primary, and its bytes go to the primary and, identical,
 * to each shadow; the primary's replies go back to the client; the shadows'
 * replies are read and dropped. A shadow can never slow the primary: each has
 * its own bounded backlog (`maxLag`), past which it is dropped for that
 * connection (or, with `onLag: "block"`, the primary waits).
 *
 * The engine is one epoll loop in the shim (shim/mirror.zig) that owns the
 * listener and every connection; this module drives it in batches (one FFI
 * call each, on Deno's blocking threads), keeps the policy, and turns its
 * reports into `ConnectionReport`s, the capture index, and stats.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { errnoName, OnecopyError } from "../ffi/errors.ts";
import { addressOf, mirrorInit, mirrorRelease, mirrorRun } from "../ffi/mirror.ts";
import { StructView } from "../ffi/layout.ts";
import {
  LOOP,
  MAX_SHADOWS,
  MirrorStatus,
  OnLagCode,
  OUTCOMES,
  PEER,
  REPORT,
  TARGET,
} from "../ffi/mirror_layout.ts";
import { Fd, type Listener } from "./fd.ts";
import { parseTarget, resolveHost, sockaddrIp, sockaddrUnix } from "./addr.ts";

/** What a full shadow backlog does: drop that shadow for the connection, or make the primary wait. */
export type OnLag = "disconnect" | "block";

/** How the mirror moves bytes. See `MIRROR_METHODS` for the measurements behind `auto`. */
export type MirrorMethod = "auto" | "copy" | "splice";

/** How one endpoint's part of a connection ended. */
export type EndpointOutcome =
  | "complete"
  | "lagged-out"
  | "refused"
  | "timeout"
  | "reset"
  | "failed"
  | "aborted"
  | "skipped";

/** Options of `mirror()`. */
export interface MirrorOptions {
  /** Where to listen: `tcp://HOST:PORT` (port 0: any free port) or `unix:PATH`. */
  listen: string;
  /** The primary: `tcp://HOST:PORT` or `unix:PATH`. Its replies go back to the client. */
  to: string;
  /** Shadows that get the same client bytes (at most 8); their replies are dropped. */
  shadows?: string[];
  /** A shadow's backlog limit in bytes; default 1 MiB. */
  maxLag?: number;
  /** What a shadow past `maxLag` does; default `"disconnect"`. */
  onLag?: OnLag;
  /** Mirror (shadows and capture) only this percentage of connections, by a hash of the client address; default 100. */
  sample?: number;
  /** A directory for per-connection capture files and `index.jsonl` (see README). */
  capture?: string;
  /** Data path; default `"auto"`. */
  method?: MirrorMethod;
  /** Seconds a connect() to the primary or a shadow may take; default 5. */
  connectTimeout?: number;
  /** Seconds `close()` lets open connections finish before closing them; default 10. */
  drainTimeout?: number;
  /** Seconds a shadow may take to receive its backlog once the client is done; default 5. */
  shadowGrace?: number;
  /** Connections served at once; more clients wait in the listen backlog. Default 10000. */
  maxConnections?: number;
  /**
   * Event loops, each on its own thread, sharing the listener (a connection
   * stays on the loop that accepted it). Default: the number of CPUs, at most 4.
   */
  threads?: number;
  /** Called for each finished connection. */
  onConnection?: (report: ConnectionReport) => void;
}

/** What happened to one shadow on one connection. */
export interface ShadowReport {
  /** The shadow's address. */
  target: string;
  /** Client bytes it received. */
  bytes: number;
  /** How it ended (`skipped` when the connection was not sampled). */
  outcome: EndpointOutcome;
  /** The errno name, when an error ended it. */
  error?: string;
}

/** One finished connection. */
export interface ConnectionReport {
  /** Connection number, from 1. */
  id: number;
  /** The client's address (`HOST:PORT`, or `unix`). */
  client: string;
  /** Start, milliseconds since the epoch. */
  start: number;
  /** End, milliseconds since the epoch. */
  end: number;
  /** Bytes read from the client. */
  bytesIn: number;
  /** Bytes delivered to the client (the primary's replies). */
  bytesOut: number;
  /** Bytes delivered to the primary. */
  toPrimary: number;
  /** How the client side ended. */
  clientOutcome: EndpointOutcome;
  /** How the primary side ended, and why if not cleanly. */
  primary: { target: string; outcome: EndpointOutcome; error?: string };
  /** Whether this connection was sampled for shadows and capture. */
  mirrored: boolean;
  /** One entry per shadow, in the order given. */
  shadows: ShadowReport[];
  /** The capture files, if capturing: names inside the capture directory, with xxh64 of each. */
  capture?: {
    c2s: { file: string; bytes: number; xxh64: string };
    s2c: { file: string; bytes: number; xxh64: string };
    error?: string;
  };
}

/** Counters of a running mirror. */
export interface MirrorStats {
  /** Connections accepted. */
  accepted: number;
  /** Connections open now. */
  active: number;
  /** Connections finished and reported. */
  closed: number;
  /** Connections whose primary could not be reached (the client was closed at once). */
  primaryFailed: number;
  /** Shadows dropped for lagging past `maxLag`. */
  shadowsDropped: number;
  /** Shadows that refused, timed out, reset or failed. */
  shadowsFailed: number;
  /** Bytes read from clients. */
  bytesIn: number;
  /** Bytes delivered to clients. */
  bytesOut: number;
  /** accept() failures (out of fds or memory: clients then wait in the backlog). */
  acceptErrors: number;
}

/**
 * The data paths. A socket's bytes are stable once read, so the choice is
 * speed and bounds:
 * - `copy`: read() into the flow's ring, write() to each sink. A shadow's
 *   backlog is bounded in bytes (`maxLag`); no pipes.
 * - `splice`: splice() into a stage pipe, tee() each round into every
 *   shadow's own pipe, splice() out: no user-space copy. A shadow's backlog is
 *   its pipe less a round (3/4 of a pipe of at most /proc/sys/fs/pipe-max-size,
 *   1 MiB unless privileged), whatever `maxLag` says.
 * - `auto` (default): copy; a flow that turns out bulk (its read window grew
 *   to 1 MiB) switches to splice once its ring is empty, unless a shadow's
 *   pipe could not hold `maxLag` (then it keeps copying). Small flows never
 *   need pipes; captured connections always copy.
 *
 * Measured side by side (bench/mirror_compare.ts, 2026-11-25, loopback, 2
 * cores, 3 interleaved rounds, load average 25-28 from other work: read the
 * CPU, not the GB/s), proxy CPU seconds per GB, copy vs splice:
 *
 * | case                               | copy | splice |
 * | ---------------------------------- | ---- | ------ |
 * | one 512 MiB upload                 | 0.20 | 0.24   |
 * | + one shadow                       | 0.20 | 0.24   |
 * | 8 parallel 32 MiB uploads          | 0.34 | 0.19   |
 * | + one shadow                       | 0.48 | 0.22   |
 *
 * (C relay, read()+write(): 0.20 single, 0.34 parallel.) Parallel bulk flows
 * are where copying through user space costs most, and where splice wins; a
 * 1-byte ping is the same either way (29 µs p50).
 */
export const MIRROR_METHODS: readonly MirrorMethod[] = ["auto", "copy", "splice"];

const methodCodes = { copy: 0, splice: 1, auto: 2 } as const;

/** One loop per CPU, at most 4: each loop is one thread moving bytes. */
function defaultThreads(): number {
  return Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}

const MiB = 1 << 20;
/** A flow's read window: where every flow starts, and how far a bulk flow's grows. */
const window = 256 * 1024;
const windowMax = MiB;
const reportCap = 256;
const budgetNs = 50_000_000;

/** Parses a byte count with an optional K/M/G suffix (powers of 1024), e.g. `64K`, `1M`. */
export function parseBytes(text: string): number {
  const m = /^(\d+)([KMG]i?B?|B)?$/i.exec(text.trim());
  if (!m) throw new TypeError(`not a byte count: '${text}' (e.g. 65536, 64K, 1M)`);
  const unit = (m[2] ?? "").charAt(0).toUpperCase();
  const scale = unit === "K" ? 1024 : unit === "M" ? MiB : unit === "G" ? 1 << 30 : 1;
  return Number(m[1]) * scale;
}

function u64(view: DataView, off: number): number {
  return Number(view.getBigUint64(off, true));
}

/** RFC 5952 text of 8 groups: the longest run of two or more zero groups becomes `::`. */
export function ipv6Text(groups: number[]): string {
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(":");
  if (best.at < 0) return hex(groups);
  return `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.len))}`;
}

/** `HOST:PORT` of a sockaddr_in/in6, `unix` for anything else. */
export function formatSockaddr(addr: Uint8Array): string {
  if (addr.length < 2) return "unix";
  const view = new DataView(addr.buffer, addr.byteOffset, addr.byteLength);
  const family = view.getUint16(0, true);
  if (family === raw.AF_INET && addr.length >= 8) {
    return `${addr.subarray(4, 8).join(".")}:${view.getUint16(2, false)}`;
  }
  if (family === raw.AF_INET6 && addr.length >= 24) {
    const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i, false));
    return `[${ipv6Text(groups)}]:${view.getUint16(2, false)}`;
  }
  return "unix";
}

function checkOptions(o: MirrorOptions): void {
  const shadows = o.shadows ?? [];
  if (shadows.length > MAX_SHADOWS) throw new TypeError(`at most ${MAX_SHADOWS} shadows`);
  const positive = (name: string, v: number | undefined, min = 0) => {
    if (v !== undefined && !(Number.isFinite(v) && v >= min)) {
      throw new TypeError(`${name} must be a number >= ${min}, not ${v}`);
    }
  };
  positive("maxLag", o.maxLag, 1);
  positive("connectTimeout", o.connectTimeout);
  positive("drainTimeout", o.drainTimeout);
  positive("shadowGrace", o.shadowGrace);
  positive("maxConnections", o.maxConnections, 1);
  if (
    o.threads !== undefined && !(Number.isInteger(o.threads) && o.threads >= 1 && o.threads <= 64)
  ) {
    throw new TypeError(`threads must be a whole number from 1 to 64, not ${o.threads}`);
  }
  if (o.maxConnections !== undefined && !Number.isInteger(o.maxConnections)) {
    throw new TypeError(`maxConnections must be a whole number, not ${o.maxConnections}`);
  }
  if (o.sample !== undefined && !(o.sample >= 0 && o.sample <= 100)) {
    throw new TypeError(`sample must be a percentage from 0 to 100, not ${o.sample}`);
  }
  if (o.onLag !== undefined && !(o.onLag in OnLagCode)) {
    throw new TypeError(`onLag must be "disconnect" or "block", not ${JSON.stringify(o.onLag)}`);
  }
  if (o.method !== undefined && !MIRROR_METHODS.includes(o.method)) {
    throw new TypeError(
      `method must be "auto", "copy" or "splice", not ${JSON.stringify(o.method)}`,
    );
  }
}

/** The sockaddr of a `tcp://` or `unix:` address, and whether it is TCP. */
async function targetAddress(url: string): Promise<{ addr: Uint8Array; tcp: boolean }> {
  const t = parseTarget(url, "destination");
  if (t.kind === "unix") return { addr: sockaddrUnix(t.path), tcp: false };
  if (t.kind === "tcp") return { addr: sockaddrIp(await resolveHost(t.host), t.port), tcp: true };
  throw new TypeError(`${url}: not a tcp:// or unix: address`);
}

/** One event loop of the engine: its shared structs, wake fd and batch driver. */
class EventLoop {
  readonly bytes = new Uint8Array(LOOP.size);
  readonly reports = new Uint8Array(REPORT.size * reportCap);
  readonly view = new StructView(this.bytes, 0, LOOP);
  readonly wake = new Fd(raw.eventfd(), { owned: true, label: "mirror wake eventfd" });
  /** Written by another loop of the group to hand this one the next client. */
  readonly kick = new Fd(raw.eventfd(), { owned: true, label: "mirror kick eventfd" });
  running?: Promise<void>;
  released = false;

  /** Writes the wake eventfd: the loop returns from its batch at once. */
  poke(): void {
    try {
      raw.write(this.wake.fd, new Uint8Array(new BigUint64Array([1n]).buffer));
    } catch { /* the counter is full: the loop is being woken anyway */ }
  }

  /** Closes what this loop holds; the engine's state first. Safe twice. */
  release(): void {
    if (!this.released && this.view.get("state") !== 0) mirrorRelease(this.bytes);
    this.released = true;
    this.wake.close();
    this.kick.close();
  }
}

/** Sum of a counter over the loops. */
function total(loops: EventLoop[], field: keyof typeof LOOP.fields): number {
  return loops.reduce((sum, l) => sum + l.view.get(field), 0);
}

/**
 * A running mirror. `close()` stops accepting, lets open connections finish
 * for up to `drainTimeout` seconds, then closes the rest.
 */
export class MirrorServer {
  /** The listening address, with the real port when 0 was asked. */
  readonly url: string;
  /** The data path (see `MIRROR_METHODS`). */
  readonly method: MirrorMethod;
  /** How many event loops (threads) serve connections. */
  readonly threads: number;
  readonly #options: MirrorOptions;
  readonly #listener: Listener;
  readonly #loops: EventLoop[] = [];
  /** The loops' `Peer`s (shim/mirror.zig): their loads and kick fds, read by each other. */
  readonly #group: Uint8Array;
  readonly #captureDir?: Fd;
  readonly #index?: Fd;
  #closing?: Promise<MirrorStats>;
  #error?: Error;

  /** Prefer `mirror()`. */
  constructor(
    options: MirrorOptions,
    listener: Listener,
    targets: { addr: Uint8Array; tcp: boolean }[],
    capture?: { dir: Fd; index: Fd },
  ) {
    this.#options = options;
    this.#listener = listener;
    this.url = listener.url;
    this.method = options.method ?? "auto";
    this.threads = options.threads ?? defaultThreads();
    this.#captureDir = capture?.dir;
    this.#index = capture?.index;
    const maxConns = options.maxConnections ?? 10000;
    this.#group = new Uint8Array(PEER.size * this.threads);
    const groupAddress = addressOf(this.#group);
    try {
      for (let k = 0; k < this.threads; k++) {
        const loop = new EventLoop();
        this.#loops.push(loop);
        new StructView(this.#group, k * PEER.size, PEER).set("kick_fd", loop.kick.fd);
        loop.view.set("group", groupAddress);
        loop.view.set("group_len", this.threads);
        loop.view.set("group_index", k);
        const L = loop.view;
        L.set("epoll_fd", -1);
        L.set("listen_fd", listener.fd.fd);
        L.set("wake_fd", loop.wake.fd);
        L.set("capture_dir", capture ? capture.dir.fd : -1);
        L.set("ntargets", targets.length);
        L.set("on_lag", OnLagCode[options.onLag ?? "disconnect"]);
        L.set("sample_bp", Math.round((options.sample ?? 100) * 100));
        // The limit is split between the loops (each has its own table).
        L.set("max_conns", Math.max(1, Math.ceil(maxConns / this.threads)));
        L.set("accepting", 1);
        L.set("report_cap", reportCap);
        L.set("listen_tcp", listener.url.startsWith("tcp:") ? 1 : 0);
        L.set("accept_batch", this.threads > 1 ? 4 : 64);
        L.set("method", methodCodes[this.method]);
        L.set("max_lag", options.maxLag ?? MiB);
        L.set("window", window);
        L.set("window_max", windowMax);
        L.set("connect_timeout_ns", Math.round((options.connectTimeout ?? 5) * 1e9));
        L.set("grace_ns", Math.round((options.shadowGrace ?? 5) * 1e9));
        L.set("budget_ns", budgetNs);
        L.set("id_base", k + 1);
        L.set("id_step", this.threads);
        const view = new DataView(loop.bytes.buffer);
        targets.forEach((t, i) => {
          const at = LOOP.fields.targets[0] + i * TARGET.size;
          loop.bytes.set(t.addr, at);
          view.setUint32(at + TARGET.fields.len[0], t.addr.length, true);
          view.setUint32(at + TARGET.fields.tcp[0], t.tcp ? 1 : 0, true);
        });
        mirrorInit(loop.bytes);
      }
    } catch (err) {
      for (const loop of this.#loops) loop.release();
      throw err;
    }
    for (const loop of this.#loops) loop.running = this.#run(loop);
  }

  /** The counters so far, summed over the loops. */
  stats(): MirrorStats {
    const loops = this.#loops;
    return {
      accepted: total(loops, "accepted"),
      active: total(loops, "active"),
      closed: total(loops, "closed"),
      primaryFailed: total(loops, "primary_failed"),
      shadowsDropped: total(loops, "shadow_dropped"),
      shadowsFailed: total(loops, "shadow_failed"),
      bytesIn: total(loops, "bytes_in"),
      bytesOut: total(loops, "bytes_out"),
      acceptErrors: total(loops, "accept_errors"),
    };
  }

  /**
   * Stops accepting, waits up to `drainTimeout` seconds for open connections
   * to finish, closes the rest, and resolves with the final stats. Safe twice.
   */
  close(): Promise<MirrorStats> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<MirrorStats> {
    for (const loop of this.#loops) {
      loop.view.set("accepting", 0);
      loop.poke();
    }
    const deadline = Date.now() + (this.#options.drainTimeout ?? 10) * 1000;
    while (this.stats().active > 0 && !this.#error && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const loop of this.#loops) {
      loop.view.set("abort", 1);
      loop.poke();
    }
    await Promise.all(this.#loops.map((l) => l.running));
    const stats = this.stats();
    for (const loop of this.#loops) loop.release();
    const path = this.#listener.url.startsWith("unix:") ? this.#listener.url.slice(5) : undefined;
    this.#listener.close();
    if (path) {
      try {
        Deno.removeSync(path); // the socket file would make the next listen fail
      } catch { /* gone already, or no permission */ }
    }
    this.#index?.close();
    this.#captureDir?.close();
    if (this.#error) throw this.#error;
    return stats;
  }

  async #run(loop: EventLoop): Promise<void> {
    for (;;) {
      const status = await mirrorRun(loop.bytes, loop.reports);
      this.#takeReports(loop);
      if (status === MirrorStatus.done) return;
      if (status === MirrorStatus.failed) {
        this.#error = new OnecopyError("epoll_wait", loop.view.get("err"), "mirror");
        return;
      }
    }
  }

  #takeReports(loop: EventLoop): void {
    const n = loop.view.get("nreports");
    loop.view.set("nreports", 0);
    for (let k = 0; k < n; k++) {
      const report = this.#report(loop.reports, k);
      if (this.#index && report.capture) this.#writeIndex(report);
      try {
        this.#options.onConnection?.(report);
      } catch (err) {
        // Rethrowing would end the process under the running loops: say it, go on.
        console.error(
          `onecopy mirror: onConnection threw: ${err instanceof Error ? err.stack : err}`,
        );
      }
    }
  }

  #report(reports: Uint8Array, k: number): ConnectionReport {
    const base = k * REPORT.size;
    const view = new DataView(reports.buffer, base, REPORT.size);
    const f = REPORT.fields;
    const outcome = (code: number): EndpointOutcome =>
      code === 0 ? "skipped" : OUTCOMES[code] as EndpointOutcome;
    const error = (errno: number) => (errno ? { error: errnoName(errno) } : {});
    const id = u64(view, f.id[0]);
    const addrLen = view.getUint32(f.addr_len[0], true);
    const addr = reports.slice(base + f.addr[0], base + f.addr[0] + addrLen);
    const mirrored = view.getUint32(f.mirrored[0], true) === 1;
    const shadows = (this.#options.shadows ?? []).map((target, s) => ({
      target,
      bytes: u64(view, f.shadow_bytes[0] + 8 * s),
      outcome: outcome(view.getUint32(f.shadow_outcome[0] + 4 * s, true)),
      ...error(view.getInt32(f.shadow_errno[0] + 4 * s, true)),
    }));
    const report: ConnectionReport = {
      id,
      client: formatSockaddr(addr),
      start: u64(view, f.start_ns[0]) / 1e6,
      end: u64(view, f.end_ns[0]) / 1e6,
      bytesIn: u64(view, f.bytes_in[0]),
      bytesOut: u64(view, f.bytes_out[0]),
      toPrimary: u64(view, f.to_primary[0]),
      clientOutcome: outcome(view.getUint32(f.client_outcome[0], true)),
      primary: {
        target: this.#options.to,
        outcome: outcome(view.getUint32(f.primary_outcome[0], true)),
        ...error(view.getInt32(f.primary_errno[0], true)),
      },
      mirrored,
      shadows,
    };
    if (this.#captureDir && mirrored) {
      const hexOf = (off: number) => view.getBigUint64(off, true).toString(16).padStart(16, "0");
      const captureErrno = view.getInt32(f.capture_errno[0], true);
      report.capture = {
        c2s: { file: `${id}.c2s`, bytes: report.bytesIn, xxh64: hexOf(f.hash_in[0]) },
        s2c: {
          file: `${id}.s2c`,
          bytes: u64(view, f.from_primary[0]),
          xxh64: hexOf(f.hash_out[0]),
        },
        ...(captureErrno ? { error: errnoName(captureErrno) } : {}),
      };
    }
    return report;
  }

  #writeIndex(report: ConnectionReport): void {
    const line = JSON.stringify({
      id: report.id,
      client: report.client,
      start: new Date(report.start).toISOString(),
      end: new Date(report.end).toISOString(),
      c2s: report.capture!.c2s,
      s2c: report.capture!.s2c,
      ...(report.capture!.error ? { error: report.capture!.error } : {}),
    }) + "\n";
    const bytes = new TextEncoder().encode(line);
    try {
      for (let off = 0; off < bytes.length;) off += raw.write(this.#index!.fd, bytes.subarray(off));
    } catch { /* a full disk loses index lines, never the proxy */ }
  }
}

/**
 * Starts a mirroring proxy: clients connecting to `listen` are proxied to
 * `to`, and their bytes are also sent, identical, to every shadow. Resolves
 * once it is listening.
 *
 * @example
 * ```ts
 * import { mirror } from "@onecopy/onecopy";
 *
 * await using proxy = await mirror({
 *   listen: "tcp://127.0.0.1:0",
 *   to: "tcp://127.0.0.1:5432",
 *   shadows: ["tcp://127.0.0.1:5433"],
 *   onConnection: (r) => console.log(r.id, r.client, r.bytesIn, r.shadows[0].outcome),
 * });
 * console.log(`mirroring on ${proxy.url}`);
 * ```
 */
export async function mirror(options: MirrorOptions): Promise<MirrorServer> {
  checkOptions(options);
  const targets = await Promise.all([options.to, ...(options.shadows ?? [])].map(targetAddress));
  const listener = await Fd.listen(options.listen, 4096);
  let capture: { dir: Fd; index: Fd } | undefined;
  try {
    raw.setNonBlocking(listener.fd.fd, true); // the loop accepts until EAGAIN
    if (options.capture !== undefined) {
      Deno.mkdirSync(options.capture, { recursive: true });
      const dir = new Fd(raw.open(options.capture, raw.O_RDONLY | O_DIRECTORY), {
        owned: true,
        label: options.capture,
      });
      try {
        capture = { dir, index: Fd.create(`${options.capture}/index.jsonl`, { append: true }) };
      } catch (err) {
        dir.close();
        throw err;
      }
    }
    return new MirrorServer(options, listener, targets, capture);
  } catch (err) {
    capture?.index.close();
    capture?.dir.close();
    listener.close();
    throw err;
  }
}

const O_DIRECTORY = 0o200000;
