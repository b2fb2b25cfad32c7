//! C-ABI exports of the raw syscalls, one each, for ffi/raw.ts. No policy: each
//! returns the kernel's result or `-errno`, with EINTR already retried (but
//! for connect, and a poll that waits forever: see each).
const std = @import("std");
const sys = @import("sys.zig");
const arg = sys.arg;

pub export fn oc_pipe2(fds: *[2]i32, flags: u32) isize {
    return sys.pipe2(fds, flags);
}
pub export fn oc_close(fd: i32) isize {
    return sys.close(fd);
}
pub export fn oc_openat(dirfd: i32, path: [*:0]const u8, flags: u32, mode: u32) isize {
    return sys.call(.openat, .{ arg(dirfd), @intFromPtr(path), flags, mode });
}
/// `flags` 0 removes a file (never a directory: that needs AT_REMOVEDIR).
pub export fn oc_unlinkat(dirfd: i32, path: [*:0]const u8, flags: u32) isize {
    return sys.call(.unlinkat, .{ arg(dirfd), @intFromPtr(path), flags });
}
pub export fn oc_read(fd: i32, buf: [*]u8, len: usize) isize {
    return sys.read(fd, buf, len);
}
pub export fn oc_write(fd: i32, buf: [*]const u8, len: usize) isize {
    return sys.write(fd, buf, len);
}
pub export fn oc_pread(fd: i32, buf: [*]u8, len: usize, off: u64) isize {
    return sys.pread(fd, buf, len, off);
}
pub export fn oc_ftruncate(fd: i32, len: u64) isize {
    return sys.call(.ftruncate, .{ arg(fd), len });
}
/// `off_in`/`off_out` may be null (pipe ends); otherwise a pointer to an i64 the kernel advances.
pub export fn oc_splice(fd_in: i32, off_in: ?*i64, fd_out: i32, off_out: ?*i64, len: usize, flags: u32) isize {
    return sys.call(.splice, .{ arg(fd_in), @intFromPtr(off_in), arg(fd_out), @intFromPtr(off_out), len, flags });
}
pub export fn oc_tee(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return sys.tee(fd_in, fd_out, len, flags);
}
/// One iovec: the common case, and no iovec layout to share with TypeScript.
pub export fn oc_vmsplice(fd: i32, buf: [*]const u8, len: usize, flags: u32) isize {
    return sys.vmsplice(fd, buf, len, flags);
}
pub export fn oc_fcntl(fd: i32, cmd: i32, value: i64) isize {
    return sys.call(.fcntl, .{ arg(fd), arg(cmd), @as(usize, @bitCast(@as(isize, value))) });
}
/// ioctl whose argument is an `int` the kernel fills in (FIONREAD, SIOCOUTQ): returns that int.
pub export fn oc_ioctl_int(fd: i32, req: u32) isize {
    return sys.ioctl_int(fd, req);
}
pub export fn oc_mmap(len: usize, prot: u32, flags: u32, fd: i32, off: u64) isize {
    return sys.mmap(len, prot, flags, fd, off);
}
pub export fn oc_munmap(addr: usize, len: usize) isize {
    return sys.munmap(addr, len);
}
pub export fn oc_socket(domain: u32, kind: u32, protocol: u32) isize {
    return sys.call(.socket, .{ domain, kind, protocol });
}
/// Not retried on EINTR (see `sys.callOnce`): the caller treats -EINTR as
/// EINPROGRESS, waits for the socket to be writable, then reads SO_ERROR.
pub export fn oc_connect(fd: i32, addr: [*]const u8, len: u32) isize {
    return sys.callOnce(.connect, .{ arg(fd), @intFromPtr(addr), len });
}
pub export fn oc_bind(fd: i32, addr: [*]const u8, len: u32) isize {
    return sys.call(.bind, .{ arg(fd), @intFromPtr(addr), len });
}
pub export fn oc_listen(fd: i32, backlog: u32) isize {
    return sys.call(.listen, .{ arg(fd), backlog });
}
pub export fn oc_accept4(fd: i32, addr: ?[*]u8, len: ?*u32, flags: u32) isize {
    return sys.call(.accept4, .{ arg(fd), @intFromPtr(addr), @intFromPtr(len), flags });
}
pub export fn oc_getsockname(fd: i32, addr: [*]u8, len: *u32) isize {
    return sys.call(.getsockname, .{ arg(fd), @intFromPtr(addr), @intFromPtr(len) });
}
pub export fn oc_setsockopt(fd: i32, level: i32, name: i32, value: [*]const u8, len: u32) isize {
    return sys.call(.setsockopt, .{ arg(fd), arg(level), arg(name), @intFromPtr(value), len });
}
pub export fn oc_getsockopt(fd: i32, level: i32, name: i32, value: [*]u8, len: *u32) isize {
    return sys.call(.getsockopt, .{ arg(fd), arg(level), arg(name), @intFromPtr(value), @intFromPtr(len) });
}
pub export fn oc_shutdown(fd: i32, how: i32) isize {
    return sys.call(.shutdown, .{ arg(fd), arg(how) });
}
/// `fds` is an array of `struct pollfd` (8 bytes each); timeout < 0 waits
/// forever, and then a signal ends it with -EINTR (with a timeout, as 0 ready).
pub export fn oc_poll(fds: [*]sys.PollFd, n: usize, timeout_ms: i32) isize {
    return sys.poll(fds, n, timeout_ms);
}
pub export fn oc_eventfd(initval: u32, flags: u32) isize {
    return sys.call(.eventfd2, .{ initval, flags });
}
/// Whether two of this process's fds share one open file description (dup(),
/// `4>&3`): 1 yes, 0 no, or -errno (ENOSYS without CONFIG_KCMP, EPERM under a
/// ptrace policy). Such fds share one offset, so writing both doubles data.
pub export fn oc_same_description(fd1: i32, fd2: i32) isize {
    const pid: usize = @intCast(std.os.linux.getpid());
    const kcmp_file: usize = 0;
    const r = sys.call(.kcmp, .{ pid, pid, kcmp_file, arg(fd1), arg(fd2) });
    return if (r < 0) r else @intFromBool(r == 0);
}
/// statx has one layout on every architecture, unlike struct stat.
pub export fn oc_statx(dirfd: i32, path: [*:0]const u8, flags: u32, mask: u32, buf: [*]u8) isize {
    return sys.call(.statx, .{ arg(dirfd), @intFromPtr(path), flags, mask, @intFromPtr(buf) });
}
/// rt_sigaction with the kernel's own `struct sigaction` (32 bytes on x86_64 and
/// aarch64: handler, flags, restorer, mask); `act` or `old` may be null.
pub export fn oc_sigaction(signo: u32, act: ?*const [32]u8, old: ?*[32]u8) isize {
    return sys.call(.rt_sigaction, .{ signo, @intFromPtr(act), @intFromPtr(old), sys.sigset_bytes });
}
/// Sends `signo` to this process (kill(getpid(), signo)): with its default
/// action put back, the way to end as a C program killed by it would.
pub export fn oc_kill_self(signo: u32) isize {
    const pid: usize = @intCast(std.os.linux.getpid());
    return sys.call(.kill, .{ pid, signo });
}
