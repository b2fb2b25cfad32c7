//! Raw Linux syscalls without libc. Every function returns the kernel's own
//! result: a non-negative value, or `-errno`. EINTR is retried here, once place
//! for all callers, because no caller ever wants to see it.
const std = @import("std");
const linux = std.os.linux;

pub const EINTR: isize = 4;
pub const EAGAIN: isize = 11;

/// Reinterprets a raw syscall return (`usize`) as `isize` (`-errno` on failure).
inline fn ret(rc: usize) isize {
    return @bitCast(rc);
}

/// Sign-extends an fd (or any `i32`) into a syscall argument.
pub inline fn arg(v: i32) usize {
    return @bitCast(@as(isize, v));
}

pub fn call1(n: linux.SYS, a: usize) isize {
    while (true) {
        const r = ret(linux.syscall1(n, a));
        if (r != -EINTR) return r;
    }
}
pub fn call2(n: linux.SYS, a: usize, b: usize) isize {
    while (true) {
        const r = ret(linux.syscall2(n, a, b));
        if (r != -EINTR) return r;
    }
}
pub fn call3(n: linux.SYS, a: usize, b: usize, c: usize) isize {
    while (true) {
        const r = ret(linux.syscall3(n, a, b, c));
        if (r != -EINTR) return r;
    }
}
pub fn call4(n: linux.SYS, a: usize, b: usize, c: usize, d: usize) isize {
    while (true) {
        const r = ret(linux.syscall4(n, a, b, c, d));
        if (r != -EINTR) return r;
    }
}
pub fn call5(n: linux.SYS, a: usize, b: usize, c: usize, d: usize, e: usize) isize {
    while (true) {
        const r = ret(linux.syscall5(n, a, b, c, d, e));
        if (r != -EINTR) return r;
    }
}
pub fn call6(n: linux.SYS, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) isize {
    while (true) {
        const r = ret(linux.syscall6(n, a, b, c, d, e, f));
        if (r != -EINTR) return r;
    }
}

/// close() is never retried: on Linux the fd is gone even when it reports EINTR.
pub fn close(fd: i32) isize {
    return ret(linux.syscall1(.close, arg(fd)));
}

pub fn read(fd: i32, buf: [*]u8, len: usize) isize {
    return call3(.read, arg(fd), @intFromPtr(buf), len);
}
pub fn write(fd: i32, buf: [*]const u8, len: usize) isize {
    return call3(.write, arg(fd), @intFromPtr(buf), len);
}
pub fn pread(fd: i32, buf: [*]u8, len: usize, off: u64) isize {
    return call4(.pread64, arg(fd), @intFromPtr(buf), len, off);
}
pub fn splice(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return call6(.splice, arg(fd_in), 0, arg(fd_out), 0, len, flags);
}
pub fn tee(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return call4(.tee, arg(fd_in), arg(fd_out), len, flags);
}
pub fn ioctl(fd: i32, req: u32, argp: usize) isize {
    return call3(.ioctl, arg(fd), req, argp);
}
pub fn mmap(len: usize, prot: u32, flags: u32, fd: i32, off: u64) isize {
    return call6(.mmap, 0, len, prot, flags, arg(fd), off);
}
pub fn munmap(addr: usize, len: usize) isize {
    return call2(.munmap, addr, len);
}

/// Monotonic clock in nanoseconds (a raw syscall: no vDSO without libc; called
/// once per batch step, so its cost does not matter).
pub fn nowNs() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.syscall2(.clock_gettime, @intFromEnum(linux.CLOCK.MONOTONIC), @intFromPtr(&ts));
    return @as(u64, @intCast(ts.sec)) * 1_000_000_000 + @as(u64, @intCast(ts.nsec));
}

pub const PollFd = extern struct { fd: i32, events: i16, revents: i16 };

/// ppoll with a millisecond timeout (aarch64 has no poll(2)); EINTR counts as a wake-up.
pub fn poll(fds: [*]PollFd, n: usize, timeout_ms: i32) isize {
    if (timeout_ms < 0) return ret(linux.syscall5(.ppoll, @intFromPtr(fds), n, 0, 0, 8));
    var ts = linux.timespec{ .sec = @divTrunc(timeout_ms, 1000), .nsec = @rem(timeout_ms, 1000) * 1_000_000 };
    const r = ret(linux.syscall5(.ppoll, @intFromPtr(fds), n, @intFromPtr(&ts), 0, 8));
    return if (r == -EINTR) 0 else r;
}

/// ioctl whose argument is an `int` the kernel fills in (FIONREAD, SIOCOUTQ): returns it.
pub fn ioctl_int(fd: i32, req: u32) isize {
    var value: i32 = 0;
    const r = ioctl(fd, req, @intFromPtr(&value));
    return if (r < 0) r else value;
}

pub fn vmsplice(fd: i32, buf: [*]const u8, len: usize, flags: u32) isize {
    const iov = [1]extern struct { base: [*]const u8, len: usize }{.{ .base = buf, .len = len }};
    return call4(.vmsplice, arg(fd), @intFromPtr(&iov), 1, flags);
}
