//! Raw Linux syscalls without libc. Every function returns the kernel's own
//! result: a non-negative value, or `-errno`. EINTR is retried here, in one
//! place (`call`), because no caller ever wants to see it.
const std = @import("std");
const linux = std.os.linux;

/// Linux errno values, as an enum: results are compared with `is(r, .AGAIN)`,
/// never with a number.
pub const E = linux.E;

/// `-e` as a syscall result: for an error the shim reports itself.
pub fn fail(e: E) isize {
    return -@as(isize, @intFromEnum(e));
}

/// Whether the result `r` is the error `e`.
pub fn is(r: isize, e: E) bool {
    return r == fail(e);
}

/// The errno of a failed result (`r < 0`).
pub fn errno(r: isize) E {
    std.debug.assert(r < 0);
    return @enumFromInt(-r);
}

/// Reinterprets a raw syscall return (`usize`) as `isize` (`-errno` on failure).
inline fn ret(rc: usize) isize {
    return @bitCast(rc);
}

/// Sign-extends an fd (or any `i32`) into a syscall argument.
pub inline fn arg(v: i32) usize {
    return @bitCast(@as(isize, v));
}

/// One raw syscall, without retrying (`callOnce` for its `isize` result).
fn once(n: linux.SYS, args: anytype) usize {
    return switch (args.len) {
        1 => linux.syscall1(n, args[0]),
        2 => linux.syscall2(n, args[0], args[1]),
        3 => linux.syscall3(n, args[0], args[1], args[2]),
        4 => linux.syscall4(n, args[0], args[1], args[2], args[3]),
        5 => linux.syscall5(n, args[0], args[1], args[2], args[3], args[4]),
        6 => linux.syscall6(n, args[0], args[1], args[2], args[3], args[4], args[5]),
        else => @compileError("a syscall takes 1 to 6 arguments"),
    };
}

/// A syscall, retried while a signal interrupts it (EINTR): the one retry loop.
/// `args` is a tuple of `usize`.
pub fn call(n: linux.SYS, args: anytype) isize {
    while (true) {
        const r = ret(once(n, args));
        if (!is(r, .INTR)) return r;
    }
}

/// A syscall that must not be retried on EINTR: the caller sees -EINTR. For
/// connect(): a blocking connect interrupted by a signal goes on in the
/// kernel, and calling it again answers EALREADY (Go's net package waits for
/// writability instead, as onecopy's connect does).
pub fn callOnce(n: linux.SYS, args: anytype) isize {
    return ret(once(n, args));
}

/// close() is never retried: on Linux the fd is gone even when it reports EINTR.
pub fn close(fd: i32) isize {
    return ret(once(.close, .{arg(fd)}));
}

pub fn read(fd: i32, buf: [*]u8, len: usize) isize {
    return call(.read, .{ arg(fd), @intFromPtr(buf), len });
}
pub fn write(fd: i32, buf: [*]const u8, len: usize) isize {
    return call(.write, .{ arg(fd), @intFromPtr(buf), len });
}
pub fn pread(fd: i32, buf: [*]u8, len: usize, off: u64) isize {
    return call(.pread64, .{ arg(fd), @intFromPtr(buf), len, off });
}
pub fn splice(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return call(.splice, .{ arg(fd_in), 0, arg(fd_out), 0, len, flags });
}
pub fn tee(fd_in: i32, fd_out: i32, len: usize, flags: u32) isize {
    return call(.tee, .{ arg(fd_in), arg(fd_out), len, flags });
}
pub fn ioctl(fd: i32, req: u32, argp: usize) isize {
    return call(.ioctl, .{ arg(fd), req, argp });
}
pub fn mmap(len: usize, prot: u32, flags: u32, fd: i32, off: u64) isize {
    return call(.mmap, .{ 0, len, prot, flags, arg(fd), off });
}
pub fn munmap(addr: usize, len: usize) isize {
    return call(.munmap, .{ addr, len });
}
pub fn pipe2(fds: *[2]i32, flags: u32) isize {
    return call(.pipe2, .{ @intFromPtr(fds), flags });
}

/// Monotonic clock in nanoseconds (a raw syscall: no vDSO without libc; called
/// once per batch step, so its cost does not matter).
pub fn nowNs() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.syscall2(.clock_gettime, @intFromEnum(linux.CLOCK.MONOTONIC), @intFromPtr(&ts));
    return @as(u64, @intCast(ts.sec)) * 1_000_000_000 + @as(u64, @intCast(ts.nsec));
}

/// Wall-clock time in nanoseconds since the epoch (timestamps in reports).
pub fn realtimeNs() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.syscall2(.clock_gettime, @intFromEnum(linux.CLOCK.REALTIME), @intFromPtr(&ts));
    return @as(u64, @intCast(ts.sec)) * 1_000_000_000 + @as(u64, @intCast(ts.nsec));
}

/// Whether an enum field TypeScript wrote holds one of the enum's values; read
/// as its integer, since loading an invalid value as the enum is undefined.
pub fn validTag(comptime T: type, field: *const T) bool {
    const raw = @as(*const @typeInfo(T).@"enum".tag_type, @ptrCast(field)).*;
    _ = std.meta.intToEnum(T, raw) catch return false;
    return true;
}

// ---- Flags and requests the loops share (engine.zig, mirror.zig), named once.

pub const O_NONBLOCK: u32 = @bitCast(linux.O{ .NONBLOCK = true });
pub const O_CLOEXEC: u32 = @bitCast(linux.O{ .CLOEXEC = true });
/// A pipe's capacity (F_LINUX_SPECIFIC_BASE + 7 and + 8, the same on every
/// architecture; std.os.linux has no name for them).
pub const F_SETPIPE_SZ: u32 = 1031;
pub const F_GETPIPE_SZ: u32 = 1032;
/// Bytes queued in a pipe or a socket's receive queue.
pub const FIONREAD: u32 = linux.T.FIONREAD;
/// splice(2)/tee(2) flags (include/linux/splice.h, the same on every architecture).
pub const SPLICE_F_MOVE: u32 = 1;
pub const SPLICE_F_NONBLOCK: u32 = 2;
pub const PROT_RW: u32 = linux.PROT.READ | linux.PROT.WRITE;

pub const PollFd = extern struct { fd: i32, events: i16, revents: i16 };

/// The kernel's sigset size (ppoll, rt_sigaction): _NSIG / 8 bytes. Zig's
/// NSIG counts signal 0 too (65), which the division drops: 8 on every arch
/// but MIPS. (`sigset_t` is libc's 128-byte one, which the kernel refuses.)
pub const sigset_bytes = linux.NSIG / 8;

/// ppoll with a millisecond timeout (aarch64 has no poll(2)); timeout < 0 waits
/// forever. Not retried: EINTR counts as a wake-up (0 fds ready), so a signal
/// returns control to the caller, which re-checks its state anyway.
pub fn poll(fds: [*]PollFd, n: usize, timeout_ms: i32) isize {
    var ts = linux.timespec{ .sec = @divTrunc(timeout_ms, 1000), .nsec = @rem(timeout_ms, 1000) * 1_000_000 };
    const tp: usize = if (timeout_ms < 0) 0 else @intFromPtr(&ts);
    const r = ret(once(.ppoll, .{ @intFromPtr(fds), n, tp, 0, sigset_bytes }));
    return if (timeout_ms >= 0 and is(r, .INTR)) 0 else r;
}

/// ioctl whose argument is an `int` the kernel fills in (FIONREAD, SIOCOUTQ): returns it.
pub fn ioctl_int(fd: i32, req: u32) isize {
    var value: i32 = 0;
    const r = ioctl(fd, req, @intFromPtr(&value));
    return if (r < 0) r else value;
}

pub fn vmsplice(fd: i32, buf: [*]const u8, len: usize, flags: u32) isize {
    const iov = [1]extern struct { base: [*]const u8, len: usize }{.{ .base = buf, .len = len }};
    return call(.vmsplice, .{ arg(fd), @intFromPtr(&iov), 1, flags });
}

test "call retries nothing but EINTR, and reports errors as -errno" {
    try std.testing.expect(is(close(-1), .BADF));
    try std.testing.expectEqual(E.BADF, errno(read(-1, undefined, 0)));
    try std.testing.expectEqual(@as(isize, -22), fail(.INVAL));
}

test "the shared flags have the kernel's values on this architecture" {
    try std.testing.expectEqual(@as(u32, 0o4000), O_NONBLOCK);
    try std.testing.expectEqual(@as(u32, 0o2000000), O_CLOEXEC);
    try std.testing.expectEqual(@as(u32, 0x541B), FIONREAD);
    try std.testing.expect(realtimeNs() > 1_700_000_000 * 1_000_000_000);
}

test "ppoll's sigset size is the kernel's (8 bytes), and a timeout of 0 returns at once" {
    try std.testing.expectEqual(8, sigset_bytes);
    var fds: [2]i32 = undefined;
    try std.testing.expectEqual(@as(isize, 0), pipe2(&fds, O_NONBLOCK | O_CLOEXEC));
    defer for (fds) |fd| {
        _ = close(fd);
    };
    var p = [1]PollFd{.{ .fd = fds[0], .events = 1, .revents = 0 }};
    try std.testing.expectEqual(@as(isize, 0), poll(&p, 1, 0));
    var q = [1]PollFd{.{ .fd = fds[1], .events = 4, .revents = 0 }};
    try std.testing.expectEqual(@as(isize, 1), poll(&q, 1, -1));
}
