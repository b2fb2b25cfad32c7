/**
 * The symbol table of libonecopy: every export of shim/*.zig, with its C
 * signature. Each returns the kernel's result or `-errno` (EINTR retried).
 *
 * @module
 */

const fd = "i32" as const;

/**
 * The symbols of libonecopy, for `Deno.dlopen`, each with its C prototype
 * (`ssize_t` results are the kernel's value or `-errno`). A test compares the
 * parameter types with the shim's own description (shim/abi.zig).
 */
export const symbols = {
  /** ssize_t oc_pipe2(int fds[2], unsigned flags); */
  oc_pipe2: { parameters: ["buffer", "u32"], result: "isize" },
  /** ssize_t oc_close(int fd); never retried on EINTR */
  oc_close: { parameters: [fd], result: "isize" },
  /** ssize_t oc_openat(int dirfd, const char *path, unsigned flags, unsigned mode); */
  oc_openat: { parameters: [fd, "buffer", "u32", "u32"], result: "isize" },
  /** ssize_t oc_unlinkat(int dirfd, const char *path, unsigned flags); */
  oc_unlinkat: { parameters: [fd, "buffer", "u32"], result: "isize" },
  /** ssize_t oc_read(int fd, void *buf, size_t len); */
  oc_read: { parameters: [fd, "buffer", "usize"], result: "isize" },
  /** ssize_t oc_write(int fd, const void *buf, size_t len); */
  oc_write: { parameters: [fd, "buffer", "usize"], result: "isize" },
  /** ssize_t oc_pread(int fd, void *buf, size_t len, uint64_t offset); */
  oc_pread: { parameters: [fd, "buffer", "usize", "u64"], result: "isize" },
  /** ssize_t oc_ftruncate(int fd, uint64_t length); */
  oc_ftruncate: { parameters: [fd, "u64"], result: "isize" },
  /** ssize_t oc_splice(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned flags); */
  oc_splice: { parameters: [fd, "buffer", fd, "buffer", "usize", "u32"], result: "isize" },
  /** ssize_t oc_tee(int fd_in, int fd_out, size_t len, unsigned flags); */
  oc_tee: { parameters: [fd, fd, "usize", "u32"], result: "isize" },
  /** ssize_t oc_vmsplice(int fd, const void *buf, size_t len, unsigned flags); one iovec */
  oc_vmsplice: { parameters: [fd, "buffer", "usize", "u32"], result: "isize" },
  /** ssize_t oc_fcntl(int fd, int cmd, int64_t arg); */
  oc_fcntl: { parameters: [fd, "i32", "i64"], result: "isize" },
  /** ssize_t oc_ioctl_int(int fd, unsigned request); the int the kernel fills in (FIONREAD) */
  oc_ioctl_int: { parameters: [fd, "u32"], result: "isize" },
  /** ssize_t oc_mmap(size_t len, unsigned prot, unsigned flags, int fd, uint64_t offset); the address */
  oc_mmap: { parameters: ["usize", "u32", "u32", fd, "u64"], result: "isize" },
  /** ssize_t oc_munmap(uintptr_t addr, size_t len); */
  oc_munmap: { parameters: ["usize", "usize"], result: "isize" },
  /** ssize_t oc_socket(unsigned domain, unsigned type, unsigned protocol); */
  oc_socket: { parameters: ["u32", "u32", "u32"], result: "isize" },
  /** ssize_t oc_connect(int fd, const struct sockaddr *addr, unsigned addrlen); */
  oc_connect: { parameters: [fd, "buffer", "u32"], result: "isize" },
  /** ssize_t oc_bind(int fd, const struct sockaddr *addr, unsigned addrlen); */
  oc_bind: { parameters: [fd, "buffer", "u32"], result: "isize" },
  /** ssize_t oc_listen(int fd, unsigned backlog); */
  oc_listen: { parameters: [fd, "u32"], result: "isize" },
  /** ssize_t oc_accept4(int fd, struct sockaddr *addr, unsigned *addrlen, unsigned flags); */
  oc_accept4: { parameters: [fd, "buffer", "buffer", "u32"], result: "isize" },
  /** oc_accept4 on a worker thread; shutdown() of the listener wakes it. */
  oc_accept4_async: {
    name: "oc_accept4",
    parameters: [fd, "buffer", "buffer", "u32"],
    result: "isize",
    nonblocking: true,
  },
  /** ssize_t oc_getsockname(int fd, struct sockaddr *addr, unsigned *addrlen); */
  oc_getsockname: { parameters: [fd, "buffer", "buffer"], result: "isize" },
  /** ssize_t oc_setsockopt(int fd, int level, int name, const void *value, unsigned len); */
  oc_setsockopt: { parameters: [fd, "i32", "i32", "buffer", "u32"], result: "isize" },
  /** ssize_t oc_getsockopt(int fd, int level, int name, void *value, unsigned *len); */
  oc_getsockopt: { parameters: [fd, "i32", "i32", "buffer", "buffer"], result: "isize" },
  /** ssize_t oc_shutdown(int fd, int how); */
  oc_shutdown: { parameters: [fd, "i32"], result: "isize" },
  /** ssize_t oc_poll(struct pollfd *fds, size_t n, int timeout_ms); ppoll underneath */
  oc_poll: { parameters: ["buffer", "usize", "i32"], result: "isize" },
  /** oc_poll on a worker thread, for waiting without blocking the event loop. */
  oc_poll_async: {
    name: "oc_poll",
    parameters: ["buffer", "usize", "i32"],
    result: "isize",
    nonblocking: true,
  },
  /** ssize_t oc_eventfd(unsigned initval, unsigned flags); */
  oc_eventfd: { parameters: ["u32", "u32"], result: "isize" },
  /** ssize_t oc_sigaction(unsigned signo, const struct k_sigaction *act, struct k_sigaction *old); */
  oc_sigaction: { parameters: ["u32", "buffer", "buffer"], result: "isize" },
  /** ssize_t oc_kill_self(unsigned signo); kill(getpid(), signo) */
  oc_kill_self: { parameters: ["u32"], result: "isize" },
  /** ssize_t oc_same_description(int fd1, int fd2); kcmp(KCMP_FILE): 1 shared, 0 not */
  oc_same_description: { parameters: [fd, fd], result: "isize" },
  /** ssize_t oc_statx(int dirfd, const char *path, unsigned flags, unsigned mask, struct statx *buf); */
  oc_statx: { parameters: [fd, "buffer", "u32", "u32", "buffer"], result: "isize" },
  /** ssize_t oc_hash_begin(unsigned alg, void *state); */
  oc_hash_begin: { parameters: ["u32", "buffer"], result: "isize" },
  /** ssize_t oc_hash_update(unsigned alg, void *state, const void *bytes, size_t len); */
  oc_hash_update: { parameters: ["u32", "buffer", "buffer", "usize"], result: "isize" },
  /** ssize_t oc_hash_end(unsigned alg, void *state, uint8_t out[32]); the digest's length */
  oc_hash_end: { parameters: ["u32", "buffer", "buffer"], result: "isize" },
  /** void oc_job_init(struct Job *job, struct Dest *dests, unsigned ndest); fds -1, feeds dead */
  oc_job_init: { parameters: ["buffer", "buffer", "u32"], result: "void" },
  /** enum Status oc_run(struct Job *job, struct Dest *dests); one batch, on a worker thread */
  oc_run: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  /** ssize_t oc_run_release(struct Job *job); unmaps what the loop mapped */
  oc_run_release: { parameters: ["buffer"], result: "isize" },
  /** ssize_t oc_hash_job_begin(struct Job *job); */
  oc_hash_job_begin: { parameters: ["buffer"], result: "isize" },
  /** ssize_t oc_hash_job_end(struct Job *job, uint8_t out[32]); the digest's length */
  oc_hash_job_end: { parameters: ["buffer", "buffer"], result: "isize" },
  /** ssize_t oc_layout(char *out, size_t cap); the ABI description's length */
  oc_layout: { parameters: ["buffer", "usize"], result: "isize" },
  /** void oc_mirror_defaults(struct Loop *loop); every fd -1, the default knobs, no state */
  oc_mirror_defaults: { parameters: ["buffer"], result: "void" },
  /** ssize_t oc_mirror_init(struct Loop *loop); checks the config, allocates the state and epoll set */
  oc_mirror_init: { parameters: ["buffer"], result: "isize" },
  /** int32_t oc_mirror_run(struct Loop *loop, struct Report *reports); one batch, on a worker thread */
  oc_mirror_run: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  /** ssize_t oc_mirror_release(struct Loop *loop); closes every connection, frees the state */
  oc_mirror_release: { parameters: ["buffer"], result: "isize" },
  /** ssize_t oc_raise_nofile(void); soft RLIMIT_NOFILE up to the hard limit; returns it */
  oc_raise_nofile: { parameters: [], result: "isize" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * Symbols bound only when first used, a group at a time: Deno compiles a call
 * stub for every bound symbol (~0.15 ms each, plus ~0.7 ms a dlopen), and a
 * plain `tee` uses a third of the table. Every symbol not named here is bound
 * when the library is opened.
 */
export const boundLater = {
  sockets: [
    "oc_socket",
    "oc_connect",
    "oc_bind",
    "oc_listen",
    "oc_accept4",
    "oc_accept4_async",
    "oc_getsockname",
    "oc_setsockopt",
    "oc_getsockopt",
    "oc_shutdown",
    "oc_unlinkat",
    "oc_poll_async",
  ],
  pages: ["oc_splice", "oc_tee", "oc_vmsplice", "oc_mmap", "oc_munmap"],
  hashes: ["oc_hash_begin", "oc_hash_update", "oc_hash_end"],
  mirror: [
    "oc_mirror_defaults",
    "oc_mirror_init",
    "oc_mirror_run",
    "oc_mirror_release",
    "oc_raise_nofile",
  ],
  rare: ["oc_layout", "oc_same_description", "oc_kill_self"],
} as const satisfies Record<string, readonly (keyof typeof symbols)[]>;

/** The loaded library's symbols, typed. */
export type ShimSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
