/**
 * mirror(): a byte-level TCP/Unix mirroring proxy. Every accepted client is
 * connected to the primary, and its bytes go to the primary and, identical,
 * to each shadow; the primary's replies go back to the client; the shadows'
 * replies are read and dropped. A shadow can never slow the primary: each has
 * its own bounded backlog (`maxLag`), past which it is dropped for that
 * connection (or, with `onLag: "block"`, the primary waits).
 *
 * The engine is an epoll loop in the shim (shim/mirror.zig), one per thread,
 * the loops sharing the listener and each owning the connections it accepted;
 * this module sets their knobs, drives each in batches (one FFI call each, on
 * Deno's blocking threads), stops and drains them, and turns their reports
 * into `ConnectionReport`s, the capture index, and stats.
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { asError, errnoName, OnecopyError } from "../ffi/errors.ts";
import { addressOf, mirrorDefaults, mirrorInit, mirrorRelease, mirrorRun } from "../ffi/mirror.ts";
import { StructView } from "../ffi/layout.ts";
import {
  CAPTURES,
  GROUP,
  LOOP,
  type LoopView,
  MAX_LAG_MAX,
  MAX_LOOPS,
  MAX_SHADOWS,
  MirrorMethodCode,
  MirrorStatus,
  OnLagCode,
  OUTCOMES,
  type RawReport,
  readReport,
  REPORT,
  setGroup,
  setTarget,
  SLOTS_MAX,
} from "../ffi/mirror_layout.ts";
import { Fd, type Listener } from "./fd.ts";
import { parseTarget, resolveHost, sockaddrIp, sockaddrUnix } from "./addr.ts";

/** What a full shadow backlog does: drop that shadow for the connection, or make the primary wait. */
export type OnLag = "disconnect" | "block";

/** How the mirror moves bytes. See `MIRROR_METHODS` for the measurements behind `auto`. */
export type MirrorMethod = "auto" | "copy" | "splice";

// The names are the shim's own (ffi/mirror_layout.ts, checked against shim/mirror.zig): no more, no fewer.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _onLagNames: Same<OnLag, keyof typeof OnLagCode> = true;
const _methodNames: Same<MirrorMethod, keyof typeof MirrorMethodCode> = true;

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
  /** A shadow's backlog limit in bytes, 1 to 2^40 (1 TiB); default 1 MiB. */
  maxLag?: number;
  /** What a shadow past `maxLag` does; default `"disconnect"`. */
  onLag?: OnLag;
  /** Mirror (shadows and capture) only this percentage of connections, by a hash of the client address; default 100. */
  sample?: number;
  /**
   * A directory for captures: each run writes its files into its own
   * subdirectory `RUN/` and appends one line per connection to `index.jsonl` (see README).
   */
  capture?: string;
  /** Data path; default `"auto"`. */
  method?: MirrorMethod;
  /** Seconds a connect() to the primary or a shadow may take; default 5. */
  connectTimeout?: number;
  /** Seconds `close()` lets open connections finish before closing them; default 10. */
  drainTimeout?: number;
  /**
   * Seconds shadows get once the client and primary are done: to take the
   * rest of their backlog, and to send their end (their replies are read
   * meanwhile, so that closing does not reset them); default 5.
   */
  shadowGrace?: number;
  /**
   * Connections served at once (over all threads), counting those whose
   * client or primary is still open; more clients wait in the listen backlog. Default 10000.
   */
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
  /**
   * The capture files, if this connection was captured: names relative to the
   * capture directory (`RUN/ID.c2s`), with the bytes and xxh64 of what was read
   * from each side; `error` when a file stopped early (an errno name, or
   * `wrote-nothing`).
   */
  capture?: {
    run: string;
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
export const MIRROR_METHODS: readonly MirrorMethod[] =
  (Object.keys(MirrorMethodCode) as MirrorMethod[])
    .sort();

/** What a full shadow backlog may do (`onLag`). */
export const ON_LAG: readonly OnLag[] = Object.keys(OnLagCode) as OnLag[];

/** The ranges of `MirrorOptions` (the CLI checks its flags against these too). */
export const MIRROR_LIMITS = {
  shadows: MAX_SHADOWS,
  /** Bytes: 1 TiB, far beyond any memory, and far from wrapping the shim's sizes. */
  maxLag: MAX_LAG_MAX,
  /** Seconds of the timeouts: a year (their nanoseconds stay far below 2^64). */
  seconds: 365 * 24 * 3600,
  maxConnections: 1e9,
  threads: MAX_LOOPS,
} as const;

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
/** How long close() waits for the loops to stop accepting before it shuts the listener down. */
const stopAcceptingMs = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Parses a byte count with an optional K/M/G/T suffix (powers of 1024), e.g. `64K`, `1M`. */
export function parseBytes(text: string): number {
  const m = /^(\d+)([KMGT]i?B?|B)?$/i.exec(text.trim());
  if (!m) throw new TypeError(`not a byte count: '${text}' (e.g. 65536, 64K, 1M)`);
  const unit = (m[2] ?? "").charAt(0).toUpperCase();
  const scale = 1024 ** Math.max(0, "_KMGT".indexOf(unit));
  return Number(m[1]) * scale;
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

/** A number option in [min, max] (a whole number if `whole`), or undefined. */
function checkNumber(name: string, v: unknown, min: number, max: number, whole = false): void {
  if (v === undefined) return;
  if (typeof v !== "number" || Number.isNaN(v)) {
    throw new TypeError(`mirror(): ${name} must be a number, not ${String(v)}`);
  }
  if (!(v >= min && v <= max) || (whole && !Number.isInteger(v))) {
    const what = whole ? "a whole number" : "a number";
    throw new RangeError(`mirror(): ${name} must be ${what} from ${min} to ${max}, not ${v}`);
  }
}

function checkChoice(name: string, v: unknown, codes: object): void {
  if (v === undefined) return;
  if (typeof v !== "string" || !Object.hasOwn(codes, v)) {
    const names = Object.keys(codes).map((k) => `"${k}"`).join(", ");
    throw new TypeError(`mirror(): ${name} must be one of ${names}, not ${JSON.stringify(v)}`);
  }
}

function checkOptions(o: MirrorOptions): void {
  if (o === null || typeof o !== "object") throw new TypeError("mirror() needs an options object");
  for (const name of ["listen", "to"] as const) {
    if (typeof o[name] !== "string" || o[name] === "") {
      throw new TypeError(`mirror(): options.${name} is required (tcp://HOST:PORT or unix:PATH)`);
    }
  }
  const shadows: unknown = o.shadows ?? [];
  if (!Array.isArray(shadows) || !shadows.every((s) => typeof s === "string")) {
    throw new TypeError("mirror(): shadows must be an array of addresses (strings)");
  }
  const L = MIRROR_LIMITS;
  if (shadows.length > L.shadows) {
    throw new RangeError(`mirror(): at most ${L.shadows} shadows, not ${shadows.length}`);
  }
  checkNumber("maxLag", o.maxLag, 1, L.maxLag, true);
  checkNumber("connectTimeout", o.connectTimeout, 0, L.seconds);
  checkNumber("drainTimeout", o.drainTimeout, 0, L.seconds);
  checkNumber("shadowGrace", o.shadowGrace, 0, L.seconds);
  checkNumber("maxConnections", o.maxConnections, 1, L.maxConnections, true);
  checkNumber("threads", o.threads, 1, L.threads, true);
  checkNumber("sample", o.sample, 0, 100);
  checkChoice("onLag", o.onLag, OnLagCode);
  checkChoice("method", o.method, MirrorMethodCode);
  if (o.capture !== undefined && (typeof o.capture !== "string" || o.capture === "")) {
    throw new TypeError("mirror(): capture must be a directory path");
  }
}

/** The sockaddr of a `tcp://` or `unix:` address, and whether it is TCP. */
async function targetAddress(url: string): Promise<{ addr: Uint8Array; tcp: boolean }> {
  const t = parseTarget(url, "destination");
  if (t.kind === "unix") return { addr: sockaddrUnix(t.path), tcp: false };
  if (t.kind === "tcp") return { addr: sockaddrIp(await resolveHost(t.host), t.port), tcp: true };
  throw new TypeError(`${url}: not a tcp:// or unix: address`);
}

/** Where a run captures: its own directory (`RUN`) inside the capture directory, and the index. */
interface CaptureFiles {
  run: string;
  dir: Fd;
  index: Fd;
  indexPath: string;
}

/** `DIR/RUN/`: RUN is the UTC start time and the pid, e.g. `20261129T231500Z-4242` (`-2`… if taken). */
function makeRunDir(dir: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  for (let n = 1;; n++) {
    const run = `${stamp}-${Deno.pid}${n > 1 ? `-${n}` : ""}`;
    try {
      Deno.mkdirSync(`${dir}/${run}`);
      return run;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists) || n >= 1000) throw err;
    }
  }
}

/** Creates this run's capture directory and opens it and the index. */
function openCapture(dir: string): CaptureFiles {
  Deno.mkdirSync(dir, { recursive: true });
  const run = makeRunDir(dir);
  const path = `${dir}/${run}`;
  // O_DIRECTORY differs between architectures (it is O_DIRECT on aarch64): statx says instead.
  const fd = new Fd(raw.open(path, raw.O_RDONLY), { owned: true, label: path });
  try {
    if (raw.statx(fd.fd).type !== "dir") throw new Error(`${path}: not a directory`);
    const indexPath = `${dir}/index.jsonl`;
    return { run, dir: fd, index: Fd.create(indexPath, { append: true }), indexPath };
  } catch (err) {
    fd.close();
    throw err;
  }
}

/** The name an outcome has in reports (`skipped`: not used for this connection). */
function outcomeName(code: number): EndpointOutcome {
  const name = OUTCOMES[code];
  if (name === undefined) throw new Error(`the mirror reported an unknown outcome ${code}`);
  return code === 0 ? "skipped" : name.replace("_", "-") as EndpointOutcome;
}

/** One event loop of the engine: its shared structs, wake and kick fds, and batch driver. */
class EventLoop {
  readonly bytes = new Uint8Array(LOOP.size);
  readonly reports = new Uint8Array(REPORT.size * reportCap);
  readonly view: LoopView = new StructView(this.bytes, 0, LOOP);
  readonly wake: Fd;
  /** Written by another loop of the group to hand this one the next client. */
  readonly kick: Fd;
  running?: Promise<void>;
  /** Its batches have ended (done, or failed). */
  stopped = false;
  released = false;

  constructor() {
    const wake = new Fd(raw.eventfd(), { owned: true, label: "mirror wake eventfd" });
    try {
      this.kick = new Fd(raw.eventfd(), { owned: true, label: "mirror kick eventfd" });
    } catch (err) {
      wake.close();
      throw err;
    }
    this.wake = wake;
    mirrorDefaults(this.bytes);
  }

  /** Writes the wake eventfd: the loop returns from its batch at once. */
  poke(): void {
    try {
      raw.wake(this.wake.fd);
    } catch { /* released already: there is no loop to wake */ }
  }

  /** Closes what this loop holds; the engine's state first. Safe twice. */
  release(): void {
    if (!this.released && this.view.get("mem") !== 0) mirrorRelease(this.bytes);
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
 * A running mirror. `close()` stops accepting (new clients are refused at
 * once), lets open connections finish for up to `drainTimeout` seconds, then
 * closes the rest.
 */
export class MirrorServer {
  /** The listening address, with the real port when 0 was asked. */
  readonly url: string;
  /** The data path (see `MIRROR_METHODS`). */
  readonly method: MirrorMethod;
  /** How many event loops (threads) serve connections. */
  readonly threads: number;
  /**
   * Settles once the mirror has stopped: with the final stats after `close()`,
   * or rejected with the error when a loop failed (the mirror then closes
   * itself at once). Rejections are handled: awaiting it is optional.
   */
  readonly closed: Promise<MirrorStats>;
  readonly #options: MirrorOptions;
  readonly #listener: Listener;
  readonly #loops: EventLoop[] = [];
  /** The loops' `Group` (shim/mirror.zig): their shared limit, loads and kick fds. */
  readonly #group: Uint8Array;
  readonly #capture?: CaptureFiles;
  readonly #settle: { resolve: (s: MirrorStats) => void; reject: (e: Error) => void };
  #closing?: Promise<MirrorStats>;
  #drainUntil = Infinity;
  #error?: Error;
  #indexLost = false;

  /** Prefer `mirror()`. */
  constructor(
    options: MirrorOptions,
    listener: Listener,
    targets: { addr: Uint8Array; tcp: boolean }[],
    capture?: CaptureFiles,
  ) {
    this.#options = options;
    this.#listener = listener;
    this.url = listener.url;
    this.method = options.method ?? "auto";
    this.threads = options.threads ?? defaultThreads();
    this.#capture = capture;
    const closed = Promise.withResolvers<MirrorStats>();
    this.closed = closed.promise;
    this.closed.catch(() => {});
    this.#settle = closed;
    const limit = options.maxConnections ?? 10000;
    this.#group = new Uint8Array(GROUP.size);
    try {
      for (let k = 0; k < this.threads; k++) this.#loops.push(new EventLoop());
      setGroup(this.#group, limit, this.#loops.map((l) => l.kick.fd));
      this.#loops.forEach((loop, k) => {
        this.#configure(loop, k, limit, targets);
        mirrorInit(loop.bytes);
      });
    } catch (err) {
      for (const loop of this.#loops) loop.release();
      throw err;
    }
    for (const loop of this.#loops) loop.running = this.#run(loop);
  }

  /** Writes loop `k`'s config (its defaults are set). */
  #configure(
    loop: EventLoop,
    k: number,
    limit: number,
    targets: { addr: Uint8Array; tcp: boolean }[],
  ): void {
    const o = this.#options;
    const L = loop.view;
    L.set("listen_fd", this.#listener.fd.fd);
    L.set("wake_fd", loop.wake.fd);
    L.set("capture_dir", this.#capture ? this.#capture.dir.fd : -1);
    L.set("ntargets", targets.length);
    targets.forEach((t, i) => setTarget(loop.bytes, i, t.addr, t.tcp));
    L.set("on_lag", OnLagCode[o.onLag ?? "disconnect"]);
    L.set("method", MirrorMethodCode[this.method]);
    L.set("sample_bp", Math.round((o.sample ?? 100) * 100));
    // Room for `limit` connections that count, and as many whose shadows are still drained.
    L.set("slots", Math.min(2 * limit, SLOTS_MAX));
    L.set("report_cap", reportCap);
    L.set("listen_tcp", this.#listener.url.startsWith("tcp:") ? 1 : 0);
    L.set("accept_batch", this.threads > 1 ? 4 : 64);
    L.set("max_lag", o.maxLag ?? MiB);
    L.set("window", window);
    L.set("window_max", windowMax);
    L.set("connect_timeout_ns", Math.round((o.connectTimeout ?? 5) * 1e9));
    L.set("grace_ns", Math.round((o.shadowGrace ?? 5) * 1e9));
    L.set("budget_ns", budgetNs);
    L.set("id_base", k + 1);
    L.set("id_step", this.threads);
    L.set("group", addressOf(this.#group));
    L.set("group_index", k);
  }

  /**
   * The counters so far, summed over the loops. A live view: each counter is
   * read on its own while the loops run, so two may be a connection apart
   * (`closed + active` one above `accepted`, rarely); what `close()` resolves
   * with agrees exactly.
   */
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
   * Stops accepting (new clients are refused from then on), waits up to
   * `drainTimeout` seconds (default: the option's) for open connections to
   * finish, closes the rest, and resolves with the final stats. Calling it
   * again while it drains, with a shorter `drainTimeout` (0: now), cuts the
   * drain short; every call returns the same promise.
   */
  close(options: { drainTimeout?: number } = {}): Promise<MirrorStats> {
    checkNumber("drainTimeout", options.drainTimeout, 0, MIRROR_LIMITS.seconds);
    const seconds = options.drainTimeout ?? this.#options.drainTimeout ?? 10;
    this.#drainUntil = Math.min(this.#drainUntil, Date.now() + seconds * 1000);
    this.#closing ??= this.#close().then(
      (stats) => (this.#settle.resolve(stats), stats),
      (err) => {
        this.#settle.reject(err);
        throw err;
      },
    );
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
    await this.#refuseNewClients();
    while (this.stats().active > 0 && !this.#error && Date.now() < this.#drainUntil) {
      await sleep(20);
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
    this.#capture?.index.close();
    this.#capture?.dir.close();
    if (this.#error) throw this.#error;
    return stats;
  }

  /**
   * Once no loop accepts any more, shuts the listener down: the kernel then
   * refuses new clients instead of queueing them until the drain ends (TCP
   * also resets the ones queued). The fd stays open until the loops are gone.
   */
  async #refuseNewClients(): Promise<void> {
    const deadline = Date.now() + stopAcceptingMs;
    const listening = () => this.#loops.some((l) => !l.stopped && l.view.get("listening") !== 0);
    while (listening() && Date.now() < deadline) await sleep(2);
    const fd = this.#listener.fd.fd;
    try {
      raw.shutdown(fd, raw.SHUT_RDWR);
    } catch { /* not supported: clients wait in the backlog until the end */ }
    // A Unix listener keeps the clients it had queued: close them (they see their end).
    for (;;) {
      try {
        raw.close(raw.accept4(fd, raw.SOCK_CLOEXEC | raw.SOCK_NONBLOCK));
      } catch {
        break; // EAGAIN (none left), or EINVAL (TCP: none kept)
      }
    }
  }

  async #run(loop: EventLoop): Promise<void> {
    try {
      for (;;) {
        const status = await mirrorRun(loop.bytes, loop.reports);
        this.#takeReports(loop);
        if (status === MirrorStatus.done) return;
        if (status === MirrorStatus.failed) {
          throw new OnecopyError("epoll_wait", loop.view.get("err"), "mirror");
        }
      }
    } catch (err) {
      this.#fail(asError(err));
    } finally {
      loop.stopped = true;
    }
  }

  /** A loop failed: the mirror cannot serve as configured, so it closes itself now. */
  #fail(err: Error): void {
    this.#error ??= err;
    this.close({ drainTimeout: 0 }).catch(() => {/* settled through `closed` */});
  }

  #takeReports(loop: EventLoop): void {
    const n = loop.view.get("nreports");
    for (let k = 0; k < n; k++) {
      const report = this.#report(readReport(loop.reports, k));
      if (report.capture) this.#writeIndex(report);
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

  #report(r: RawReport): ConnectionReport {
    const error = (errno: number) => (errno ? { error: errnoName(errno) } : {});
    const report: ConnectionReport = {
      id: r.id,
      client: formatSockaddr(r.addr),
      start: r.startNs / 1e6,
      end: r.endNs / 1e6,
      bytesIn: r.bytesIn,
      bytesOut: r.bytesOut,
      toPrimary: r.toPrimary,
      clientOutcome: outcomeName(r.clientOutcome),
      primary: {
        target: this.#options.to,
        outcome: outcomeName(r.primaryOutcome),
        ...error(r.primaryErrno),
      },
      mirrored: r.mirrored,
      shadows: (this.#options.shadows ?? []).map((target, s) => ({
        target,
        bytes: r.shadows[s].bytes,
        outcome: outcomeName(r.shadows[s].outcome),
        ...error(r.shadows[s].errno),
      })),
    };
    const capture = CAPTURES[r.capture];
    if (this.#capture && capture !== "off") {
      const hex = (h: bigint) => h.toString(16).padStart(16, "0");
      const run = this.#capture.run;
      report.capture = {
        run,
        c2s: { file: `${run}/${r.id}.c2s`, bytes: r.bytesIn, xxh64: hex(r.hashIn) },
        s2c: { file: `${run}/${r.id}.s2c`, bytes: r.fromPrimary, xxh64: hex(r.hashOut) },
        ...(capture === "failed" ? error(r.captureErrno) : {}),
        ...(capture === "wrote_nothing" ? { error: "wrote-nothing" } : {}),
      };
    }
    return report;
  }

  #writeIndex(report: ConnectionReport): void {
    const c = report.capture!;
    const line = JSON.stringify({
      id: report.id,
      run: c.run,
      client: report.client,
      start: new Date(report.start).toISOString(),
      end: new Date(report.end).toISOString(),
      c2s: c.c2s,
      s2c: c.s2c,
      ...(c.error ? { error: c.error } : {}),
    }) + "\n";
    const bytes = new TextEncoder().encode(line);
    try {
      for (let off = 0; off < bytes.length;) {
        const n = raw.write(this.#capture!.index.fd, bytes.subarray(off));
        if (n === 0) throw new Error("write() accepted no bytes"); // else: a loop for ever
        off += n;
      }
    } catch (err) {
      // A full disk loses index lines, never the proxy: say so once.
      if (!this.#indexLost) {
        this.#indexLost = true;
        const why = asError(err).message;
        console.error(
          `onecopy mirror: ${this.#capture!.indexPath}: index lines are being lost: ${why}`,
        );
      }
    }
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
  let capture: CaptureFiles | undefined;
  try {
    raw.setNonBlocking(listener.fd.fd, true); // the loop accepts until EAGAIN
    if (options.capture !== undefined) capture = openCapture(options.capture);
    return new MirrorServer(options, listener, targets, capture);
  } catch (err) {
    capture?.index.close();
    capture?.dir.close();
    listener.close();
    throw err;
  }
}
