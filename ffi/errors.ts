/**
 * Typed errors for negative shim results. Linux errno numbers are the same on
 * x86_64 and aarch64 (asm-generic), so one table serves both.
 *
 * @module
 */

const errnos: Record<number, [string, string]> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  4: ["EINTR", "interrupted system call"],
  5: ["EIO", "input/output error"],
  6: ["ENXIO", "no such device or address"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "resource temporarily unavailable"],
  12: ["ENOMEM", "out of memory"],
  13: ["EACCES", "permission denied"],
  14: ["EFAULT", "bad address"],
  16: ["EBUSY", "device or resource busy"],
  17: ["EEXIST", "file exists"],
  18: ["EXDEV", "invalid cross-device link"],
  19: ["ENODEV", "no such device"],
  20: ["ENOTDIR", "not a directory"],
  21: ["EISDIR", "is a directory"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in system"],
  24: ["EMFILE", "too many open files"],
  25: ["ENOTTY", "inappropriate ioctl for device"],
  26: ["ETXTBSY", "text file busy"],
  27: ["EFBIG", "file too large"],
  28: ["ENOSPC", "no space left on device"],
  29: ["ESPIPE", "illegal seek"],
  30: ["EROFS", "read-only file system"],
  32: ["EPIPE", "broken pipe"],
  34: ["ERANGE", "result out of range"],
  36: ["ENAMETOOLONG", "file name too long"],
  38: ["ENOSYS", "function not implemented"],
  40: ["ELOOP", "too many levels of symbolic links"],
  61: ["ENODATA", "no data available"],
  88: ["ENOTSOCK", "not a socket"],
  95: ["EOPNOTSUPP", "operation not supported"],
  97: ["EAFNOSUPPORT", "address family not supported"],
  98: ["EADDRINUSE", "address already in use"],
  99: ["EADDRNOTAVAIL", "cannot assign requested address"],
  100: ["ENETDOWN", "network is down"],
  101: ["ENETUNREACH", "network is unreachable"],
  103: ["ECONNABORTED", "connection aborted"],
  104: ["ECONNRESET", "connection reset by peer"],
  105: ["ENOBUFS", "no buffer space available"],
  107: ["ENOTCONN", "not connected"],
  110: ["ETIMEDOUT", "connection timed out"],
  111: ["ECONNREFUSED", "connection refused"],
  113: ["EHOSTUNREACH", "no route to host"],
  115: ["EINPROGRESS", "operation now in progress"],
  122: ["EDQUOT", "disk quota exceeded"],
};

/** Symbolic name of an errno, e.g. `errnoName(32) === "EPIPE"`. */
export function errnoName(errno: number): string {
  return errnos[errno]?.[0] ?? `E${errno}`;
}

/** Readable text of an errno, e.g. `errnoText(111) === "connection refused"`. */
export function errnoText(errno: number): string {
  return errnos[errno]?.[1] ?? `error ${errno}`;
}

/** Errno numbers by name, for comparisons in policy code. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EFAULT: 14,
  EXDEV: 18,
  EINVAL: 22,
  EMFILE: 24,
  EFBIG: 27,
  ENOSPC: 28,
  EPIPE: 32,
  ENOSYS: 38,
  ENODATA: 61,
  EOPNOTSUPP: 95,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EINPROGRESS: 115,
} as const;

/**
 * A failed syscall: carries the native `errno`, its symbolic `code` and the
 * `syscall` that failed.
 *
 * @example
 * ```ts
 * import { OnecopyError } from "@onecopy/onecopy";
 * try {
 *   // ...
 * } catch (err) {
 *   if (err instanceof OnecopyError && err.code === "EPIPE") console.error("reader went away");
 * }
 * ```
 */
export class OnecopyError extends Error {
  /** Symbolic errno, e.g. `"EPIPE"`. */
  readonly code: string;
  /** The errno number. */
  readonly errno: number;
  /** The syscall that failed, e.g. `"splice"`. */
  readonly syscall: string;

  /** `what` says what was being done (a path, a destination); optional. */
  constructor(syscall: string, errno: number, what?: string, options?: ErrorOptions) {
    super(
      `${what ? `${printable(what)}: ` : ""}${errnoText(errno)} (${syscall}: ${errnoName(errno)})`,
      options,
    );
    this.name = "OnecopyError";
    this.code = errnoName(errno);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/**
 * `text` (a path, say) as it can stand in a one-line message: quoted with JSON
 * escapes when it holds a control character such as a newline, else as it is.
 */
export function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(text) ? JSON.stringify(text) : text;
}

/** `err` as an Error: itself, or an Error whose message is its text (a thrown string). */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Whether `err` is an `OnecopyError` with this symbolic code, e.g. `"EAGAIN"`. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof OnecopyError && err.code === code;
}

/** Returns `r` as a number, or throws an `OnecopyError` if it is `-errno`. */
export function check(r: number | bigint, syscall: string, what?: string): number {
  const n = Number(r);
  if (n < 0) throw new OnecopyError(syscall, -n, what);
  return n;
}
