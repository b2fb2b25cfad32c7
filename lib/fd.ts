/**
 * Owned file descriptors. Deno exposes no OS fd for its own files and
 * connections, so onecopy opens its own: files, pipes, TCP and Unix sockets,
 * plus the borrowed stdio fds (never closed by onecopy).
 *
 * @module
 */

import * as raw from "../ffi/raw.ts";
import { Errno, hasCode, OnecopyError } from "../ffi/errors.ts";
import {
  parseTarget,
  resolveHost,
  sockaddrFamily,
  sockaddrIp,
  sockaddrPort,
  sockaddrUnix,
} from "./addr.ts";

/** Options of `Fd.connect()`. */
export interface ConnectOptions {
  /** Interrupts the name lookup and the connect (the promise rejects with its reason). */
  signal?: AbortSignal;
  /**
   * Gives up on a connect that has no answer after this long; default 30 000
   * ms; `Infinity` waits as long as the kernel does.
   */
  timeoutMs?: number;
}

/**
 * Throws a TypeError unless `value` is a timeout in ms: a number >= 0
 * (`Infinity`: none), or undefined (the default).
 */
export function checkTimeoutMs(value: unknown, what: string): void {
  if (value === undefined || (typeof value === "number" && value >= 0)) return;
  const shown = typeof value === "number" ? String(value) : typeof value;
  throw new TypeError(`${what} must be a number of ms >= 0 (Infinity: no timeout), not ${shown}`);
}

/** How long `Fd.connect()` waits for an answer by default. */
export const defaultConnectTimeoutMs = 30_000;

/** What an fd is, as far as choosing syscalls goes. */
export type FdKind = "file" | "pipe" | "tcp" | "unix" | "char" | "dir" | "other";

// Last resort for Fds that were never closed: close them when collected.
const finalizer = new FinalizationRegistry<number>((fd) => {
  try {
    raw.close(fd);
  } catch { /* already gone */ }
});

/**
 * An OS file descriptor that onecopy owns (and closes) or borrows (and never
 * closes). `close()` is safe to call twice; `using` closes it at scope end.
 *
 * @example
 * ```ts
 * import { Fd } from "@onecopy/onecopy";
 * using file = Fd.open("/etc/hostname");
 * console.log(file.fd, file.kind);
 * ```
 */
export class Fd {
  #fd: number;
  #kind?: FdKind;
  /** Whether onecopy closes this fd (false for stdio and adopted borrowed fds). */
  readonly owned: boolean;
  /** What this fd is, for messages: a path, a URL, `stdout`. */
  readonly label: string;

  /** Wraps a raw fd; prefer the static constructors. */
  constructor(fd: number, options: { owned: boolean; label?: string; kind?: FdKind }) {
    this.#fd = fd;
    this.owned = options.owned;
    this.label = options.label ?? `fd ${fd}`;
    this.#kind = options.kind;
    if (this.owned) finalizer.register(this, fd, this);
  }

  /** The OS fd number; throws once closed. */
  get fd(): number {
    if (this.#fd < 0) throw new Error(`${this.label}: already closed`);
    return this.#fd;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** What the fd refers to (from statx, and getsockname for sockets). */
  get kind(): FdKind {
    this.#kind ??= detectKind(this.fd);
    return this.#kind;
  }

  /** Closes the fd if onecopy owns it; does nothing the second time. */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    if (!this.owned) return;
    finalizer.unregister(this);
    raw.close(fd);
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * A web ReadableStream over this fd (reads on demand, never blocking the event
   * loop). It closes the Fd when the stream ends or is cancelled.
   *
   * @example
   * ```ts
   * import { Fd } from "@onecopy/onecopy";
   * const text = await new Response(Fd.open("/etc/hostname").readable()).text();
   * ```
   */
  readable(chunkSize = 64 * 1024): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const buf = new Uint8Array(chunkSize);
        for (;;) {
          const n = await readWhenReady(this, buf);
          if (n === 0) {
            this.close();
            controller.close();
          } else if (n > 0) controller.enqueue(buf.subarray(0, n));
          if (n >= 0) return;
        }
      },
      cancel: () => this.close(),
    }, { highWaterMark: 0 });
  }

  /**
   * A web WritableStream into this fd. It closes the Fd when the stream is
   * closed or aborted.
   *
   * @example
   * ```ts
   * import { Fd } from "@onecopy/onecopy";
   * const dir = await Deno.makeTempDir();
   * const out = Fd.create(`${dir}/hi.txt`);
   * await ReadableStream.from([new TextEncoder().encode("hi\n")]).pipeTo(out.writable());
   * console.log(await Deno.readTextFile(`${dir}/hi.txt`)); // hi
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  writable(): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({
      write: async (chunk) => {
        for (let off = 0; off < chunk.length;) {
          off += await writeWhenReady(this, chunk.subarray(off));
        }
      },
      close: () => this.close(),
      abort: () => this.close(),
    });
  }

  /** Opens a file for reading (`flags` are added to O_RDONLY, e.g. O_NONBLOCK). */
  static open(path: string, flags = 0): Fd {
    const fd = raw.open(path, raw.O_RDONLY | raw.O_NOCTTY | flags);
    return new Fd(fd, { owned: true, label: path });
  }

  /** Creates (or truncates, or with `append` appends to) a file for writing. */
  static create(path: string, options: { append?: boolean; mode?: number } = {}): Fd {
    const flags = raw.O_WRONLY | raw.O_CREAT | raw.O_NOCTTY |
      (options.append ? raw.O_APPEND : raw.O_TRUNC);
    return new Fd(raw.open(path, flags, options.mode ?? 0o666), { owned: true, label: path });
  }

  /**
   * Creates a pipe, `[readEnd, writeEnd]`, blocking (so either end can be
   * handed to a child process), grown to `size` bytes where the kernel allows.
   */
  static pipe(options: { size?: number } = {}): [Fd, Fd] {
    const [r, w] = raw.pipe2();
    const ends: [Fd, Fd] = [
      new Fd(r, { owned: true, label: "pipe (read end)", kind: "pipe" }),
      new Fd(w, { owned: true, label: "pipe (write end)", kind: "pipe" }),
    ];
    if (options.size) growPipe(w, options.size);
    return ends;
  }

  /**
   * Connects to `tcp://host:port` or `unix:/path`; the socket is non-blocking.
   * `signal` interrupts the name lookup and the connect; when the two together
   * take longer than `timeoutMs` (default 30 s), it fails with ETIMEDOUT.
   */
  static async connect(url: string, options: ConnectOptions = {}): Promise<Fd> {
    checkTimeoutMs(options.timeoutMs, "Fd.connect(): timeoutMs");
    const timeoutMs = options.timeoutMs ?? defaultConnectTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    const { sock, addr, kind } = await lookUp(url, timeoutMs, options.signal);
    return await settingUp(sock, async () => {
      await connectBy(sock.fd, addr, url, deadline, options.signal);
      if (kind === "tcp") raw.setsockoptInt(sock.fd, raw.IPPROTO_TCP, raw.TCP_NODELAY, 1);
    });
  }

  /**
   * Listens on `tcp://host:port` (port 0: any free port) or `unix:/path`. A
   * unix path holding a stale socket (its listener is gone, e.g. killed by
   * SIGKILL: a connect is refused) is removed and bound again, once; a live
   * listener's path still fails with EADDRINUSE, and nothing but a socket is
   * ever removed.
   */
  static async listen(url: string, backlog = 128): Promise<Listener> {
    const { sock, addr, kind } = await newSocket(url, "listen");
    await settingUp(sock, () => {
      if (kind === "tcp") raw.setsockoptInt(sock.fd, raw.SOL_SOCKET, raw.SO_REUSEADDR, 1);
      try {
        raw.bind(sock.fd, addr, url);
      } catch (err) {
        const stale = hasCode(err, "EADDRINUSE") ? staleSocket(url, addr) : undefined;
        if (stale === undefined) throw err;
        raw.unlink(stale);
        raw.bind(sock.fd, addr, url);
      }
      raw.listen(sock.fd, backlog);
    });
    return new Listener(sock, kind);
  }

  /** Borrows fd 0; never closed by onecopy. */
  static stdin(): Fd {
    return new Fd(0, { owned: false, label: "stdin" });
  }
  /** Borrows fd 1; never closed by onecopy. */
  static stdout(): Fd {
    return new Fd(1, { owned: false, label: "stdout" });
  }
  /** Borrows fd 2; never closed by onecopy. */
  static stderr(): Fd {
    return new Fd(2, { owned: false, label: "stderr" });
  }

  /**
   * Wraps an fd obtained elsewhere, e.g. from `node:fs` `openSync`. With
   * `owned: true` onecopy closes it; by default it is borrowed.
   *
   * @example
   * ```ts
   * import { openSync, closeSync } from "node:fs";
   * import { Fd } from "@onecopy/onecopy";
   * const n = openSync("/etc/hostname", "r");
   * const fd = Fd.adopt(n);
   * console.log(fd.kind); // "file"
   * closeSync(n);
   * ```
   */
  static adopt(fd: number, options: { owned?: boolean; label?: string } = {}): Fd {
    return new Fd(fd, { owned: options.owned ?? false, label: options.label ?? `fd ${fd}` });
  }
}

/**
 * A listening socket. `accept()` waits on a worker thread; `close()` wakes it.
 *
 * @example
 * ```ts
 * import { Fd } from "@onecopy/onecopy";
 * using server = await Fd.listen("tcp://127.0.0.1:0");
 * console.log(server.url); // tcp://127.0.0.1:PORT
 * ```
 */
export class Listener {
  readonly #sock: Fd;
  readonly #kind: "tcp" | "unix";

  /** Prefer `Fd.listen()`. */
  constructor(sock: Fd, kind: "tcp" | "unix") {
    this.#sock = sock;
    this.#kind = kind;
  }

  /** The bound port (TCP), useful after listening on port 0. */
  get port(): number | undefined {
    return sockaddrPort(raw.getsockname(this.#sock.fd));
  }

  /** The address to connect to, with the real port. */
  get url(): string {
    const label = this.#sock.label;
    return this.#kind === "tcp" ? label.replace(/:\d+$/, `:${this.port}`) : label;
  }

  /** The listening socket's fd. */
  get fd(): Fd {
    return this.#sock;
  }

  /** Waits for and returns the next connection (non-blocking socket). */
  async accept(): Promise<Fd> {
    const fd = await raw.accept4Async(this.#sock.fd, raw.SOCK_CLOEXEC | raw.SOCK_NONBLOCK);
    return new Fd(fd, { owned: true, label: `${this.url} (accepted)`, kind: this.#kind });
  }

  /** Stops listening; a pending `accept()` rejects. Safe twice. */
  close(): void {
    if (this.#sock.closed) return;
    try {
      raw.shutdown(this.#sock.fd, raw.SHUT_RDWR); // wakes a blocked accept4()
    } catch { /* not connected is fine */ }
    this.#sock.close();
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** `newSocket` for a destination, its name lookup bounded by the connect timeout too. */
async function lookUp(url: string, timeoutMs: number, signal?: AbortSignal) {
  if (timeoutMs === Infinity) return await newSocket(url, "destination", signal);
  const timer = AbortSignal.timeout(timeoutMs);
  try {
    return await newSocket(url, "destination", signal ? AbortSignal.any([signal, timer]) : timer);
  } catch (err) {
    signal?.throwIfAborted();
    if (timer.aborted) throw new OnecopyError("connect", Errno.ETIMEDOUT, url, { cause: err });
    throw err;
  }
}

/** A new socket for a `tcp://` or `unix:` address, and the sockaddr to connect or bind to. */
async function newSocket(url: string, role: "destination" | "listen", signal?: AbortSignal) {
  const target = parseTarget(url, role);
  if (target.kind !== "tcp" && target.kind !== "unix") {
    throw new TypeError(`${url}: not a tcp:// or unix: address`);
  }
  const addr = target.kind === "unix"
    ? sockaddrUnix(target.path)
    : sockaddrIp(await resolveHost(target.host, signal), target.port);
  // A listener blocks (accept4 waits on a worker thread); a connection does not.
  const nonBlocking = role === "destination" ? raw.SOCK_NONBLOCK : 0;
  const fd = raw.socket(sockaddrFamily(addr), raw.SOCK_STREAM | nonBlocking);
  return {
    sock: new Fd(fd, { owned: true, label: url, kind: target.kind }),
    addr,
    kind: target.kind,
  };
}

// How often a wait that no fd can signal (a FIFO's reader, a full unix
// backlog) looks again; waits on an fd poll for at most `waitMs`, so an abort
// is seen within that time.
const retryMs = 20;

/** Resolves after `ms`, or rejects at once with the signal's reason when it aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A non-blocking connect, waited for in short polls so that `signal` and the
 * deadline are seen within ~100 ms. TCP answers EINPROGRESS and reports the
 * outcome in SO_ERROR once writable; a unix socket whose backlog is full
 * answers EAGAIN and is simply asked again.
 */
async function connectBy(
  fd: number,
  addr: Uint8Array,
  url: string,
  deadline: number,
  signal?: AbortSignal,
): Promise<void> {
  const timedOut = () => new OnecopyError("connect", Errno.ETIMEDOUT, url);
  for (;;) {
    try {
      raw.connect(fd, addr);
      return;
    } catch (err) {
      if (!hasCode(err, "EAGAIN")) {
        // EINTR (a signal during connect: never retried, see raw.connect) is a connect under way too.
        if (hasCode(err, "EINPROGRESS") || hasCode(err, "EINTR")) break;
        throw err instanceof OnecopyError ? new OnecopyError("connect", err.errno, url) : err;
      }
    }
    if (performance.now() >= deadline) throw timedOut();
    await sleep(retryMs, signal);
  }
  for (;;) {
    signal?.throwIfAborted();
    const left = deadline - performance.now();
    if (left <= 0) throw timedOut();
    const [revents] = await raw.pollAsync(
      [{ fd, events: raw.POLLOUT }],
      Math.ceil(Math.min(waitMs, left)),
    );
    signal?.throwIfAborted();
    if (revents === 0) continue;
    const error = raw.getsockoptInt(fd, raw.SOL_SOCKET, raw.SO_ERROR);
    if (error) throw new OnecopyError("connect", error, url);
    return;
  }
}

/**
 * Opens a path to read from without ever blocking in open(): a FIFO is opened
 * non-blocking (that never waits), then waited on in short polls until a
 * writer has come (bytes, or a writer that came and went) so that `signal`
 * interrupts the wait. A FIFO stays non-blocking; anything else is made
 * blocking again, as a plain open() would leave it.
 */
export async function openReader(path: string, signal?: AbortSignal): Promise<Fd> {
  const file = Fd.open(path, raw.O_NONBLOCK);
  try {
    if (file.kind !== "pipe") {
      raw.setNonBlocking(file.fd, false);
      return file;
    }
    // Before any writer has opened it, a FIFO reads as empty-with-no-writer (EOF),
    // but poll() only reports it once a writer has been there.
    for (;;) {
      signal?.throwIfAborted();
      const [revents] = await raw.pollAsync([{ fd: file.fd, events: raw.POLLIN }], waitMs);
      if (revents !== 0) return file;
    }
  } catch (err) {
    file.close();
    throw err;
  }
}

/**
 * Truncates a regular file to 0 bytes, unless it already is empty, as O_TRUNC
 * leaves a file it just created: on ext4, truncating to 0 marks a file as
 * rewritten in place, and its close() then first pushes every dirty page to
 * disk (auto_da_alloc): ~1.4 s behind a gigabyte, measured, which an abort
 * would wait for. Anything but a regular file is left alone.
 */
export function truncateToEmpty(file: Fd): void {
  if (file.kind === "file" && raw.statx(file.fd).size > 0) raw.ftruncate(file.fd, 0);
}

/**
 * Opens a path to write to as `openWriter` does, then truncates it if it is a
 * regular file (unless `append`): an output opened the way tee(1) does, which
 * still never blocks in open().
 */
export async function createWriter(
  path: string,
  options: { append?: boolean; signal?: AbortSignal } = {},
): Promise<Fd> {
  const file = await openWriter(path, options);
  try {
    if (!options.append) truncateToEmpty(file);
    return file;
  } catch (err) {
    file.close();
    throw err;
  }
}

/**
 * Opens a path to write to, creating it, WITHOUT truncating it (the caller
 * truncates once it knows the file is not the source), and without blocking in
 * open(): a FIFO with no reader yet answers ENXIO to a non-blocking open and is
 * asked again every few ms until a reader comes or `signal` aborts. A FIFO stays
 * non-blocking; anything else is made blocking again.
 */
export async function openWriter(
  path: string,
  options: { append?: boolean; signal?: AbortSignal } = {},
): Promise<Fd> {
  const flags = raw.O_WRONLY | raw.O_CREAT | raw.O_NOCTTY | raw.O_NONBLOCK |
    (options.append ? raw.O_APPEND : 0);
  for (;;) {
    options.signal?.throwIfAborted();
    let fd: number;
    try {
      fd = raw.open(path, flags, 0o666);
    } catch (err) {
      // ENXIO is also what a unix socket's path answers: only a FIFO is waited for.
      if (!hasCode(err, "ENXIO") || raw.statx(path).type !== "fifo") throw err;
      await sleep(retryMs, options.signal);
      continue;
    }
    const file = new Fd(fd, { owned: true, label: path });
    try {
      if (file.kind !== "pipe") raw.setNonBlocking(fd, false);
      return file;
    } catch (err) {
      file.close();
      throw err;
    }
  }
}

/**
 * The path of a unix socket `url` that is left over from a listener that is
 * gone (a socket file, and a connect to it is refused), or undefined. A live
 * listener accepts (or, its backlog full, answers EAGAIN).
 */
function staleSocket(url: string, addr: Uint8Array): string | undefined {
  const target = parseTarget(url, "listen");
  if (target.kind !== "unix") return undefined;
  try {
    if (raw.statx(target.path).type !== "socket") return undefined;
  } catch {
    return undefined; // abstract, or gone meanwhile
  }
  using probe = new Fd(raw.socket(raw.AF_UNIX, raw.SOCK_STREAM | raw.SOCK_NONBLOCK), {
    owned: true,
  });
  try {
    raw.connect(probe.fd, addr);
    return undefined;
  } catch (err) {
    return hasCode(err, "ECONNREFUSED") ? target.path : undefined;
  }
}

/** Runs `setup` on a fresh socket; closes the socket if it fails. */
async function settingUp(sock: Fd, setup: () => void | Promise<void>): Promise<Fd> {
  try {
    await setup();
    return sock;
  } catch (err) {
    sock.close();
    throw err;
  }
}

/**
 * A private pipe for onecopy's own use (a stage, a branch, a stream's end),
 * non-blocking and close-on-exec, grown towards `size` bytes (0: left at the
 * kernel's default): `[read end, write end]`, both owned.
 */
export function ownPipe(size: number, label: string): [Fd, Fd] {
  const [r, w] = raw.pipe2(raw.O_CLOEXEC | raw.O_NONBLOCK);
  const ends: [Fd, Fd] = [
    new Fd(r, { owned: true, label, kind: "pipe" }),
    new Fd(w, { owned: true, label, kind: "pipe" }),
  ];
  try {
    if (size > 0) growPipe(w, size);
    return ends;
  } catch (err) {
    ends.forEach((end) => end.close());
    throw err;
  }
}

/** Whether an fd is in blocking mode (O_NONBLOCK clear). */
export function isBlocking(fd: number): boolean {
  return (raw.fcntl(fd, raw.F_GETFL) & raw.O_NONBLOCK) === 0;
}

/** Grows a pipe towards `size` bytes; the kernel may refuse (EPERM): then it keeps its size. */
export function growPipe(fd: number, size: number): number {
  try {
    return raw.setPipeSize(fd, size);
  } catch (err) {
    if (hasCode(err, "EPERM")) return raw.getPipeSize(fd);
    throw err;
  }
}

function detectKind(fd: number): FdKind {
  const { type } = raw.statx(fd);
  switch (type) {
    case "file":
      return "file";
    case "fifo":
      return "pipe";
    case "char":
      return "char";
    case "dir":
      return "dir";
    case "socket":
      return sockaddrFamily(raw.getsockname(fd)) === raw.AF_UNIX ? "unix" : "tcp";
    default:
      return "other";
  }
}

/**
 * The longest one worker-thread poll() waits. Bounded so that no poll outlives
 * a cancelled stream (a pending FFI call would keep the process alive).
 */
export const waitMs = 100;

/** One read without blocking the event loop: -1 means "try again". */
async function readWhenReady(fd: Fd, buf: Uint8Array): Promise<number> {
  if (fd.kind !== "file") {
    const [revents] = await raw.pollAsync([{ fd: fd.fd, events: raw.POLLIN }], waitMs);
    if (revents === 0) return -1;
  }
  try {
    return raw.read(fd.fd, buf);
  } catch (err) {
    if (hasCode(err, "EAGAIN")) return -1;
    throw err;
  }
}

/** One write without blocking the event loop (a blocking pipe gets at most its free room). */
async function writeWhenReady(fd: Fd, chunk: Uint8Array): Promise<number> {
  if (fd.kind === "file") return raw.write(fd.fd, chunk);
  const [revents] = await raw.pollAsync([{ fd: fd.fd, events: raw.POLLOUT }], waitMs);
  if (revents === 0) return 0;
  let len = chunk.length;
  if (fd.kind === "pipe") len = Math.min(len, raw.getPipeSize(fd.fd) - raw.fionread(fd.fd));
  if (len <= 0) return 0;
  try {
    return raw.write(fd.fd, chunk.subarray(0, len));
  } catch (err) {
    if (hasCode(err, "EAGAIN")) return 0;
    throw err;
  }
}
