/**
 * The symbol table of libonecopy: every export of shim/*.zig, with its C
 * signature. Each returns the kernel's result or `-errno` (EINTR retried).
 *
 * @module
 */

const fd = "i32" as const;

/** The symbols of libonecopy, for `Deno.dlopen`. */
export const symbols = {
  oc_pipe2: { parameters: ["buffer", "u32"], result: "isize" },
  oc_close: { parameters: [fd], result: "isize" },
  oc_openat: { parameters: [fd, "buffer", "u32", "u32"], result: "isize" },
  oc_read: { parameters: [fd, "buffer", "usize"], result: "isize" },
  oc_write: { parameters: [fd, "buffer", "usize"], result: "isize" },
  oc_pread: { parameters: [fd, "buffer", "usize", "u64"], result: "isize" },
  oc_ftruncate: { parameters: [fd, "u64"], result: "isize" },
  oc_splice: { parameters: [fd, "buffer", fd, "buffer", "usize", "u32"], result: "isize" },
  oc_tee: { parameters: [fd, fd, "usize", "u32"], result: "isize" },
  oc_vmsplice: { parameters: [fd, "buffer", "usize", "u32"], result: "isize" },
  oc_fcntl: { parameters: [fd, "i32", "i64"], result: "isize" },
  oc_ioctl_int: { parameters: [fd, "u32"], result: "isize" },
  oc_mmap: { parameters: ["usize", "u32", "u32", fd, "u64"], result: "isize" },
  oc_munmap: { parameters: ["usize", "usize"], result: "isize" },
  oc_socket: { parameters: ["u32", "u32", "u32"], result: "isize" },
  oc_connect: { parameters: [fd, "buffer", "u32"], result: "isize" },
  oc_bind: { parameters: [fd, "buffer", "u32"], result: "isize" },
  oc_listen: { parameters: [fd, "u32"], result: "isize" },
  oc_accept4: { parameters: [fd, "buffer", "buffer", "u32"], result: "isize" },
  /** accept4() on a worker thread; shutdown() of the listener wakes it. */
  oc_accept4_async: {
    name: "oc_accept4",
    parameters: [fd, "buffer", "buffer", "u32"],
    result: "isize",
    nonblocking: true,
  },
  oc_getsockname: { parameters: [fd, "buffer", "buffer"], result: "isize" },
  oc_setsockopt: { parameters: [fd, "i32", "i32", "buffer", "u32"], result: "isize" },
  oc_getsockopt: { parameters: [fd, "i32", "i32", "buffer", "buffer"], result: "isize" },
  oc_shutdown: { parameters: [fd, "i32"], result: "isize" },
  oc_poll: { parameters: ["buffer", "usize", "i32"], result: "isize" },
  /** poll() on a worker thread, for waiting without blocking the event loop. */
  oc_poll_async: {
    name: "oc_poll",
    parameters: ["buffer", "usize", "i32"],
    result: "isize",
    nonblocking: true,
  },
  oc_eventfd: { parameters: ["u32", "u32"], result: "isize" },
  oc_sigaction: { parameters: ["u32", "buffer", "buffer"], result: "isize" },
  /** int oc_same_description(int fd1, int fd2): kcmp(KCMP_FILE); 1 shared, 0 not. */
  oc_same_description: { parameters: [fd, fd], result: "isize" },
  oc_statx: { parameters: [fd, "buffer", "u32", "u32", "buffer"], result: "isize" },
  oc_hash_begin: { parameters: ["u32", "buffer"], result: "isize" },
  oc_hash_update: { parameters: ["u32", "buffer", "buffer", "usize"], result: "isize" },
  oc_hash_end: { parameters: ["u32", "buffer", "buffer"], result: "isize" },
  /** Sets a job and its destinations to their defaults (fds -1, feeds dead). */
  oc_job_init: { parameters: ["buffer", "buffer", "u32"], result: "void" },
  /** The fan-out loop: one call moves a batch (up to the job's time budget). */
  oc_run: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  oc_run_release: { parameters: ["buffer"], result: "isize" },
  oc_hash_job_begin: { parameters: ["buffer"], result: "isize" },
  oc_hash_job_end: { parameters: ["buffer", "buffer"], result: "isize" },
  oc_layout: { parameters: ["buffer", "usize"], result: "isize" },
  /** void oc_mirror_defaults(Loop *loop): every fd -1, the default knobs, no state. */
  oc_mirror_defaults: { parameters: ["buffer"], result: "void" },
  /** isize oc_mirror_init(Loop *loop): checks the config, allocates the state and epoll set. */
  oc_mirror_init: { parameters: ["buffer"], result: "isize" },
  /** i32 oc_mirror_run(Loop *loop, Report *reports): one batch of the mirror loop. */
  oc_mirror_run: { parameters: ["buffer", "buffer"], result: "i32", nonblocking: true },
  /** isize oc_mirror_release(Loop *loop): closes every connection and frees the state. */
  oc_mirror_release: { parameters: ["buffer"], result: "isize" },
  /** isize oc_raise_nofile(void): soft RLIMIT_NOFILE up to the hard limit; returns it. */
  oc_raise_nofile: { parameters: [], result: "isize" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's symbols, typed. */
export type ShimSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
