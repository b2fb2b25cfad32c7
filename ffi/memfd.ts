/**
 * Opens a shared library from bytes in memory, never from a file: the bytes
 * go into a memfd (an anonymous file that lives only while an fd or a mapping
 * holds it), sealed against any change, then `dlopen("/proc/self/fd/N")`.
 * Nothing is ever written to a directory, so nothing can be left behind,
 * not even by a SIGKILL, and nobody else can swap the library before it is
 * opened. Creating the memfd takes libc's `memfd_create` (through
 * `Deno.dlopen`: the shim that could make the syscall is what is being
 * loaded). Any step the system refuses (no glibc, no /proc, exec-sealed
 * memfds under `vm.memfd_noexec = 2`, a security policy) returns undefined,
 * and the caller falls back to a private temp directory.
 *
 * @module
 */

/** libc's signatures, C prototypes beside them. */
const libcSymbols = {
  /** int memfd_create(const char *name, unsigned int flags); */
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t count); */
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int fcntl(int fd, int cmd, ...): variadic, but an int argument passes as a fixed one on x86_64 and aarch64. */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const MFD_CLOEXEC = 0x1;
const MFD_ALLOW_SEALING = 0x2;
/** Linux 6.3+: executable even where `vm.memfd_noexec = 1` makes memfds non-executable by default. */
const MFD_EXEC = 0x10;
const F_ADD_SEALS = 1033;
/** No more seals, no shrinking, no growing, no writing: the bytes are final. */
const SEAL_ALL = 0x1 | 0x2 | 0x4 | 0x8;

/** Whether `Deno.dlopen` of libc by name is allowed: only with an unscoped `--allow-ffi`. */
function mayOpenLibc(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

/** A memfd holding `bytes`, sealed, or -1 when the system refuses a step. */
function sealedMemfd(
  libc: Deno.DynamicLibrary<typeof libcSymbols>,
  name: string,
  bytes: Uint8Array,
) {
  const c = libc.symbols;
  const cName = new TextEncoder().encode(`${name}\0`);
  let fd = c.memfd_create(cName, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0) fd = c.memfd_create(cName, MFD_CLOEXEC | MFD_ALLOW_SEALING); // before 6.3: EINVAL
  if (fd < 0) return -1;
  for (let off = 0; off < bytes.length;) {
    const n = Number(c.write(fd, bytes.subarray(off), BigInt(bytes.length - off)));
    if (n <= 0) {
      c.close(fd);
      return -1;
    }
    off += n;
  }
  if (c.fcntl(fd, F_ADD_SEALS, SEAL_ALL) < 0) {
    c.close(fd);
    return -1;
  }
  return fd;
}

/**
 * `Deno.dlopen` of `bytes` through a sealed memfd named `name` (it shows in
 * /proc/self/maps as `/memfd:name (deleted)`); undefined if the system
 * cannot. The memfd's fd is closed before returning: the mapping keeps it.
 */
export function dlopenFromMemory<S extends Deno.ForeignLibraryInterface>(
  name: string,
  bytes: Uint8Array,
  symbols: S,
): Deno.DynamicLibrary<S> | undefined {
  if (!mayOpenLibc()) return undefined;
  let libc;
  try {
    libc = Deno.dlopen("libc.so.6", libcSymbols);
  } catch {
    return undefined; // not glibc
  }
  let fd = -1;
  try {
    fd = sealedMemfd(libc, name, bytes);
    return fd < 0 ? undefined : Deno.dlopen(`/proc/self/fd/${fd}`, symbols);
  } catch {
    return undefined; // no /proc, or mapping it executable is refused
  } finally {
    if (fd >= 0) libc.symbols.close(fd);
    libc.close();
  }
}
