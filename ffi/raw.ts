/**
 * Typed wrappers over the shim's raw syscalls: one call each, numbers in and
 * out, `OnecopyError` on failure. Semantics shared by all of them:
 * - EINTR is retried inside the shim; callers never see it, except from
 *   `connect` (never retried: see there) and from a `poll` without a timeout.
 * - Counts may be partial (read, write, splice, tee, vmsplice): loop yourself,
 *   or use the full-transfer helpers in mod.ts.
 * - EAGAIN on a non-blocking fd is thrown as an `OnecopyError` with code "EAGAIN".
 * Constants are Linux's asm-generic values, which x86_64 and aarch64 share.
 *
 * @module
 */

import { library, shim } from "./load.ts";
import { check, Errno, hasCode } from "./errors.ts";

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const AT_FDCWD = -100;
export const AT_EMPTY_PATH = 0x1000;

export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const FIONREAD = 0x541b;
export const SIOCOUTQ = 0x5411;

export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_F_MORE = 4;
export const SPLICE_F_GIFT = 8;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_POPULATE = 0x8000;

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_LINGER = 13;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

export const POLLIN = 1;
export const POLLOUT = 4;
export const POLLERR = 8;
export const POLLHUP = 16;

export const EFD_NONBLOCK = O_NONBLOCK;
export const EFD_CLOEXEC = O_CLOEXEC;

/** statx(2) mask: every basic field (type, mode, size, …). */
export const STATX_BASIC_STATS = 0x7ff;
/** `struct statx` (linux/stat.h): its size, and the offsets of the fields read here. */
const statxSize = 256;
const stx_mode = 28; // __u16, after mask, blksize, attributes, nlink, uid, gid
const stx_ino = 32; // __u64, after mode and a pad
const stx_size = 40; // __u64, after ino
const stx_rdev_major = 128; // __u32 pair, after the four timestamps
const stx_dev_major = 136; // __u32 pair, after rdev
const stx_dev_minor = 140;

const S_IFMT = 0o170000;
const fileTypes: Record<number, FileType> = {
  0o010000: "fifo",
  0o020000: "char",
  0o040000: "dir",
  0o060000: "block",
  0o100000: "file",
  0o120000: "symlink",
  0o140000: "socket",
};

/** What kind of object an fd refers to. */
export type FileType = "fifo" | "char" | "dir" | "block" | "file" | "symlink" | "socket";

const encoder = new TextEncoder();
/** A NUL-terminated copy of a path, as the kernel wants it. */
export function cString(s: string): Uint8Array {
  const bytes = encoder.encode(s);
  if (bytes.includes(0)) throw new TypeError(`path contains a NUL byte: ${JSON.stringify(s)}`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Loads the shim now rather than at the first call: a missing permission surfaces here. */
export function loadShim(): void {
  library();
}

/** pipe2(2): returns `[readFd, writeFd]`. */
export function pipe2(flags = O_CLOEXEC): [number, number] {
  const fds = new Int32Array(2);
  check(shim().oc_pipe2(bytesOf(fds), flags), "pipe2");
  return [fds[0], fds[1]];
}

/** close(2). Never retried: on Linux the fd is released even on EINTR. */
export function close(fd: number): void {
  check(shim().oc_close(fd), "close");
}

/** openat(2) relative to the working directory (or `dirfd`); returns the fd. */
export function open(path: string, flags: number, mode = 0o666, dirfd = AT_FDCWD): number {
  return check(shim().oc_openat(dirfd, cString(path), flags | O_CLOEXEC, mode), "open", path);
}

/** unlinkat(2) of a file (not a directory) relative to the working directory. */
export function unlink(path: string): void {
  check(shim().oc_unlinkat(AT_FDCWD, cString(path), 0), "unlink", path);
}

/** read(2): up to `buf.length` bytes; 0 at end of file. */
export function read(fd: number, buf: Uint8Array): number {
  return check(shim().oc_read(fd, buf, BigInt(buf.length)), "read");
}

/** write(2): may write fewer than `buf.length` bytes. */
export function write(fd: number, buf: Uint8Array): number {
  return check(shim().oc_write(fd, buf, BigInt(buf.length)), "write");
}

/** pread(2) at `offset`, which the fd's own offset does not follow. */
export function pread(fd: number, buf: Uint8Array, offset: number): number {
  return check(shim().oc_pread(fd, buf, BigInt(buf.length), BigInt(offset)), "pread");
}

/** ftruncate(2). */
export function ftruncate(fd: number, length: number): void {
  check(shim().oc_ftruncate(fd, BigInt(length)), "ftruncate");
}

/**
 * splice(2): moves up to `len` bytes between `fdIn` and `fdOut`, one of which
 * is a pipe. Returns the bytes moved (0: input at EOF, or its pipe has no writer).
 * `offIn`/`offOut`, when given, are one-element arrays the kernel advances.
 */
export function splice(
  fdIn: number,
  fdOut: number,
  len: number,
  flags = 0,
  offIn: BigInt64Array | null = null,
  offOut: BigInt64Array | null = null,
): number {
  const a = offIn && bytesOf(offIn);
  const b = offOut && bytesOf(offOut);
  return check(shim().oc_splice(fdIn, a, fdOut, b, BigInt(len), flags), "splice");
}

/**
 * tee(2): duplicates up to `len` bytes from the head of pipe `fdIn` into pipe
 * `fdOut` without consuming them. Returns 0 when `fdIn` is empty and has no writer.
 */
export function tee(fdIn: number, fdOut: number, len: number, flags = 0): number {
  return check(shim().oc_tee(fdIn, fdOut, BigInt(len), flags), "tee");
}

/**
 * vmsplice(2) of one buffer into pipe `fd`. The kernel keeps referencing the
 * buffer's pages after this returns: do not change `buf` until the pipe (and
 * anything it was spliced into) has been drained.
 */
export function vmsplice(fd: number, buf: Uint8Array, flags = 0): number {
  return check(shim().oc_vmsplice(fd, buf, BigInt(buf.length), flags), "vmsplice");
}

/** fcntl(2) with an integer argument. */
export function fcntl(fd: number, cmd: number, arg = 0): number {
  return check(shim().oc_fcntl(fd, cmd, BigInt(arg)), "fcntl");
}

/** The capacity of a pipe in bytes (F_GETPIPE_SZ). */
export function getPipeSize(fd: number): number {
  return fcntl(fd, F_GETPIPE_SZ);
}

/**
 * Sets a pipe's capacity (F_SETPIPE_SZ); the kernel rounds up to a power-of-two
 * number of pages and returns what it set. EPERM past /proc/sys/fs/pipe-max-size
 * (for unprivileged users) or when the user's pipe-user-pages limit is reached.
 */
export function setPipeSize(fd: number, size: number): number {
  return fcntl(fd, F_SETPIPE_SZ, size);
}

/** Sets or clears O_NONBLOCK; returns the previous flags. */
export function setNonBlocking(fd: number, on: boolean): number {
  const flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
  return flags;
}

/** Bytes waiting to be read (FIONREAD): works on either end of a pipe. */
export function fionread(fd: number): number {
  return check(shim().oc_ioctl_int(fd, FIONREAD), "ioctl", "FIONREAD");
}

/** Bytes in a socket's send queue not yet acknowledged (SIOCOUTQ). */
export function siocoutq(fd: number): number {
  return check(shim().oc_ioctl_int(fd, SIOCOUTQ), "ioctl", "SIOCOUTQ");
}

/** mmap(2); returns the address. */
export function mmap(len: number, prot: number, flags: number, fd = -1, offset = 0): number {
  return check(shim().oc_mmap(BigInt(len), prot, flags, fd, BigInt(offset)), "mmap");
}

/** munmap(2). */
export function munmap(addr: number, len: number): void {
  check(shim().oc_munmap(BigInt(addr), BigInt(len)), "munmap");
}

/** A Uint8Array over `len` bytes of native memory at `addr` (e.g. from mmap). */
export function memoryAt(addr: number, len: number): Uint8Array {
  const ptr = Deno.UnsafePointer.create(BigInt(addr));
  if (ptr === null) throw new TypeError("null address");
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, len));
}

/** socket(2). */
export function socket(domain: number, type: number, protocol = 0): number {
  return check(shim().oc_socket(domain, type | SOCK_CLOEXEC, protocol), "socket");
}

/**
 * connect(2); on a non-blocking socket EINPROGRESS (TCP) or EAGAIN (unix)
 * means "wait". Not retried on EINTR (a retried connect answers EALREADY):
 * EINTR means "wait" too, for writability, then SO_ERROR says how it went.
 */
export function connect(fd: number, addr: Uint8Array): void {
  check(shim().oc_connect(fd, addr, addr.length), "connect");
}

/** bind(2). */
export function bind(fd: number, addr: Uint8Array, what?: string): void {
  check(shim().oc_bind(fd, addr, addr.length), "bind", what);
}

/** listen(2). */
export function listen(fd: number, backlog = 128): void {
  check(shim().oc_listen(fd, backlog), "listen");
}

/** accept4(2), blocking the calling thread; returns the new fd. */
export function accept4(fd: number, flags = SOCK_CLOEXEC): number {
  return check(shim().oc_accept4(fd, null, null, flags), "accept4");
}

/** accept4(2) on a worker thread; `shutdown(fd, SHUT_RDWR)` wakes it with EINVAL. */
export async function accept4Async(fd: number, flags = SOCK_CLOEXEC): Promise<number> {
  return check(await shim().oc_accept4_async(fd, null, null, flags), "accept4");
}

/** sizeof(struct sockaddr_storage): room for any address family. */
const sockaddrStorageSize = 128;

/** getsockname(2): the raw sockaddr bytes. */
export function getsockname(fd: number): Uint8Array {
  const addr = new Uint8Array(sockaddrStorageSize);
  const len = new Uint32Array([addr.length]);
  check(shim().oc_getsockname(fd, addr, bytesOf(len)), "getsockname");
  return addr.subarray(0, len[0]);
}

/** setsockopt(2) with an `int` value. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const v = new Int32Array([value]);
  check(shim().oc_setsockopt(fd, level, name, bytesOf(v), 4), "setsockopt");
}

/**
 * SO_LINGER {on, 0 s}: close() then drops what is queued and sends a reset, so
 * the peer sees a broken transfer instead of a clean end of stream.
 */
export function setResetOnClose(fd: number): void {
  const v = new Int32Array([1, 0]); // struct linger { l_onoff, l_linger }
  check(shim().oc_setsockopt(fd, SOL_SOCKET, SO_LINGER, bytesOf(v), 8), "setsockopt", "SO_LINGER");
}

/** getsockopt(2) of an `int` value. */
export function getsockoptInt(fd: number, level: number, name: number): number {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  check(shim().oc_getsockopt(fd, level, name, bytesOf(v), bytesOf(len)), "getsockopt");
  return v[0];
}

/** shutdown(2). */
export function shutdown(fd: number, how: number): void {
  check(shim().oc_shutdown(fd, how), "shutdown");
}

/** One entry of a poll set. */
export interface PollRequest {
  fd: number;
  events: number;
}

/** `struct pollfd` is { int fd; short events; short revents; }: 4 shorts, events at 2, revents at 3. */
function pollBuffer(fds: PollRequest[]): Int16Array {
  const buf = new Int16Array(fds.length * 4);
  const ints = new Int32Array(buf.buffer);
  fds.forEach((p, i) => {
    ints[i * 2] = p.fd;
    buf[i * 4 + 2] = p.events;
  });
  return buf;
}

/**
 * poll(2) (ppoll underneath); returns each fd's revents. `timeoutMs < 0`
 * waits forever, and a signal then ends it with EINTR (thrown); with a
 * timeout, a signal only ends it early (nothing ready).
 */
export function poll(fds: PollRequest[], timeoutMs: number): number[] {
  const buf = pollBuffer(fds);
  check(shim().oc_poll(bytesOf(buf), BigInt(fds.length), timeoutMs), "poll");
  return fds.map((_, i) => buf[i * 4 + 3]);
}

/** poll(2) on a worker thread: waits without blocking the event loop. */
export async function pollAsync(fds: PollRequest[], timeoutMs: number): Promise<number[]> {
  const buf = pollBuffer(fds);
  check(await shim().oc_poll_async(bytesOf(buf), BigInt(fds.length), timeoutMs), "poll");
  return fds.map((_, i) => buf[i * 4 + 3]);
}

const eventfdOne = new Uint8Array(new BigUint64Array([1n]).buffer);

/** Adds 1 to eventfd `fd`: whoever polls it wakes. A full counter (EAGAIN) is a wake already. */
export function wake(fd: number): void {
  try {
    write(fd, eventfdOne);
  } catch (err) {
    if (!hasCode(err, "EAGAIN")) throw err;
  }
}

/** eventfd2(2): a counter fd, used to wake a loop blocked in poll(). */
export function eventfd(initval = 0, flags = EFD_CLOEXEC | EFD_NONBLOCK): number {
  return check(shim().oc_eventfd(initval, flags), "eventfd");
}

export const SIGXFSZ = 25;
const SIG_IGN = 1n;

/**
 * Ignores a signal (rt_sigaction SIG_IGN) and returns the previous action, for
 * `restoreSignal()`. An ignored signal is inherited by child processes.
 */
export function ignoreSignal(signo: number): Uint8Array {
  const act = new Uint8Array(32); // struct sigaction: handler, flags, restorer, mask
  new DataView(act.buffer).setBigUint64(0, SIG_IGN, true);
  const old = new Uint8Array(32);
  check(shim().oc_sigaction(signo, act, old), "rt_sigaction");
  return old;
}

/** Puts back the action `ignoreSignal()` returned. */
export function restoreSignal(signo: number, old: Uint8Array): void {
  check(shim().oc_sigaction(signo, old, null), "rt_sigaction");
}

export const SIGINT = 2;
export const SIGPIPE = 13;

/**
 * Ends the process by `signo`, as a C program with the default action is
 * ended: the parent sees WIFSIGNALED. After Ctrl-C (SIGINT) a shell script
 * then stops too, where an exit status of 130 would let it go on; a broken
 * pipe (SIGPIPE, which Deno ignores) is status 141 to a shell, as GNU tee's.
 * The action Deno set is replaced by the default one (an all-zero sigaction
 * is SIG_DFL) first. Returns only if the signal did not end the process
 * (blocked, or kill refused).
 */
export function dieOfSignal(signo: number): void {
  try {
    restoreSignal(signo, new Uint8Array(32));
    shim().oc_kill_self(signo);
  } catch { /* no shim or no sigaction: the caller exits with its status */ }
}

/** What statx(2) tells about an fd or a path. */
export interface Stat {
  type: FileType;
  mode: number;
  size: number;
  /** Device and inode: together they name one file, whatever path or fd leads to it. */
  dev: number;
  ino: bigint;
  /** For a device file, the device's major number (136–143: a pseudo-terminal). */
  rdevMajor: number;
}

/** statx(2) of an open fd (AT_EMPTY_PATH) or of a path (following symlinks). */
export function statx(target: number | string): Stat {
  const buf = new Uint8Array(statxSize);
  const [dirfd, path, flags] = typeof target === "number"
    ? [target, cString(""), AT_EMPTY_PATH]
    : [AT_FDCWD, cString(target), 0];
  check(
    shim().oc_statx(dirfd, path, flags, STATX_BASIC_STATS, buf),
    "statx",
    typeof target === "string" ? target : undefined,
  );
  const view = new DataView(buf.buffer);
  const mode = view.getUint16(stx_mode, true);
  return {
    type: fileTypes[mode & S_IFMT] ?? "file",
    mode: mode & 0o7777,
    size: Number(view.getBigUint64(stx_size, true)),
    dev: view.getUint32(stx_dev_major, true) * 2 ** 32 + view.getUint32(stx_dev_minor, true),
    ino: view.getBigUint64(stx_ino, true),
    rdevMajor: view.getUint32(stx_rdev_major, true),
  };
}

/**
 * Whether fds `a` and `b` share one open file description (one was dup()ed
 * from the other, or both inherited as `4>&3`), by kcmp(KCMP_FILE). Such fds
 * share one offset and one set of flags. `undefined` when the kernel cannot
 * say (no CONFIG_KCMP, or a ptrace policy forbids it).
 */
export function sameDescription(a: number, b: number): boolean | undefined {
  const r = Number(shim().oc_same_description(a, b));
  if (r === -Errno.ENOSYS || r === -Errno.EPERM || r === -Errno.EACCES) return undefined;
  return check(r, "kcmp") === 1;
}
