//! C-ABI exports of the raw syscalls, one each, for ffi/raw.ts. No policy: each
//! returns the kernel's result or `-errno`, with EINTR already retried.
const sys = @import("sys.zig");
const arg = sys.arg;

export fn oc_pipe2(fds: *[2]i32, flags: u32) isize {
    return sys.call2(.pipe2, @intFromPtr(fds), flags);
}
export fn oc_close(fd: i32) isize {
    return sys.close(fd);
}
export fn oc_openat(dirfd: i32, path: [*:0]const u8, flags: u32, mode: u32) isize {
    return sys.call4(.openat, arg(dirfd), @intFromPtr(path), flags, mode);
}
export fn oc_read(fd: i32, buf: [*]u8, len: usize) isize {
    return sys.read(fd, buf, len);
}
export fn oc_write(fd: i32, buf: [*]const u8, len: usize) isize {
    return sys.write(fd, buf, len);
}
export fn oc_pread(fd: i32, buf: [*]u8, len: usize, off: u64) isize {
    return sys.pread(fd, buf, len, off);
}
export fn oc_ftruncate(fd: i32, len: u64) isize {
    return sys.call2(.ftruncate, arg(fd), len);
}
/// `off_in`/`off_out` may be null (pipe ends); otherwise a pointer to an i64 the kernel advances.
export fn oc_splice(fd_in: i32, off_in: ?*i64, fd_out: i32, off_out: ?*i64, len: usize, flags: u32) isize {
    return sys.call6(.splice, arg(fd_in), @intFromPtr(off_in), arg(fd_out), @intFromPtr(off_out), len, flags);
}
export fn oc_tee(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return sys.tee(fd_in, fd_out, len, flags);
}
/// One iovec: the common case, and no iovec layout to share with TypeScript.
export fn oc_vmsplice(fd: i32, buf: [*]const u8, len: usize, flags: u32) isize {
    return sys.vmsplice(fd, buf, len, flags);
}
export fn oc_fcntl(fd: i32, cmd: i32, value: i64) isize {
    return sys.call3(.fcntl, arg(fd), arg(cmd), @bitCast(@as(isize, value)));
}
/// ioctl whose argument is an `int` the kernel fills in (FIONREAD, SIOCOUTQ): returns that int.
export fn oc_ioctl_int(fd: i32, req: u32) isize {
    return sys.ioctl_int(fd, req);
}
export fn oc_mmap(len: usize, prot: u32, flags: u32, fd: i32, off: u64) isize {
    return sys.mmap(len, prot, flags, fd, off);
}
export fn oc_munmap(addr: usize, len: usize) isize {
    return sys.munmap(addr, len);
}
export fn oc_socket(domain: u32, kind: u32, protocol: u32) isize {
    return sys.call3(.socket, domain, kind, protocol);
}
export fn oc_connect(fd: i32, addr: [*]const u8, len: u32) isize {
    return sys.call3(.connect, arg(fd), @intFromPtr(addr), len);
}
export fn oc_bind(fd: i32, addr: [*]const u8, len: u32) isize {
    return sys.call3(.bind, arg(fd), @intFromPtr(addr), len);
}
export fn oc_listen(fd: i32, backlog: u32) isize {
    return sys.call2(.listen, arg(fd), backlog);
}
export fn oc_accept4(fd: i32, addr: ?[*]u8, len: ?*u32, flags: u32) isize {
    return sys.call4(.accept4, arg(fd), @intFromPtr(addr), @intFromPtr(len), flags);
}
export fn oc_getsockname(fd: i32, addr: [*]u8, len: *u32) isize {
    return sys.call3(.getsockname, arg(fd), @intFromPtr(addr), @intFromPtr(len));
}
export fn oc_setsockopt(fd: i32, level: i32, name: i32, value: [*]const u8, len: u32) isize {
    return sys.call5(.setsockopt, arg(fd), arg(level), arg(name), @intFromPtr(value), len);
}
export fn oc_getsockopt(fd: i32, level: i32, name: i32, value: [*]u8, len: *u32) isize {
    return sys.call5(.getsockopt, arg(fd), arg(level), arg(name), @intFromPtr(value), @intFromPtr(len));
}
export fn oc_shutdown(fd: i32, how: i32) isize {
    return sys.call2(.shutdown, arg(fd), arg(how));
}
/// `fds` is an array of `struct pollfd` (8 bytes each); timeout < 0 waits forever.
export fn oc_poll(fds: [*]sys.PollFd, n: usize, timeout_ms: i32) isize {
    return sys.poll(fds, n, timeout_ms);
}
export fn oc_eventfd(initval: u32, flags: u32) isize {
    return sys.call2(.eventfd2, initval, flags);
}
/// statx has one layout on every architecture, unlike struct stat.
export fn oc_statx(dirfd: i32, path: [*:0]const u8, flags: u32, mask: u32, buf: [*]u8) isize {
    return sys.call5(.statx, arg(dirfd), @intFromPtr(path), flags, mask, @intFromPtr(buf));
}
/// rt_sigaction with the kernel's own `struct sigaction` (32 bytes on x86_64 and
/// aarch64: handler, flags, restorer, mask); `act` or `old` may be null.
export fn oc_sigaction(signo: u32, act: ?*const [32]u8, old: ?*[32]u8) isize {
    return sys.call4(.rt_sigaction, signo, @intFromPtr(act), @intFromPtr(old), 8);
}
