//! The fan-out loop: moves a whole transfer, or a batch of it, in one FFI call.
//!
//! Everything is counted as absolute stream positions, so that a partial count
//! anywhere is just a smaller step, never a special case:
//!   taken  bytes read (or mapped) from the source
//!   tail   bytes put into the stage pipe (the one stable copy)
//!   head   bytes consumed from the stage pipe
//!   fed    per destination: bytes tee'd into its pipe or branch
//!   done   per destination: bytes delivered into the destination itself
//! tee() copies from the stage's head and never consumes, so a destination may
//! be tee'd only when its `fed == head`; the stage is consumed (spliced into
//! /dev/null) up to the smallest `fed`. A short tee therefore never duplicates.
//!
//! No policy lives here: on an error the loop records errno and the syscall,
//! returns, and TypeScript decides (fall back, drop the destination, abort).
const std = @import("std");
const sys = @import("sys.zig");
const hash = @import("hash.zig");

/// Where the one stable copy comes from.
pub const Source = enum(u32) {
    /// The source fd is a pipe: it is the stage itself (no copy at all).
    pipe = 0,
    /// read() into `buf`, write() that into the stage (pipe-tee); buffer feeds
    /// read `buf`. (Writing into the stage from a mapping of the file instead
    /// measured slower here: first-touch page faults cost more than a copy.)
    read_pipe = 1,
    /// read() into fresh anonymous pages per chunk, vmsplice() them into the stage.
    vmsplice = 2,
    /// read() into `buf`; destinations are written from it (the copy baseline).
    read_buf = 3,
    /// Destinations are written straight from a mapped window of the source (mmap-write).
    mmap_buf = 4,
    /// splice() the source into the stage: no copy. Stable only for sources whose
    /// bytes cannot change once queued (sockets), never for files.
    splice_in = 5,
};

/// How one destination is fed.
pub const Feed = enum(u32) {
    dead = 0,
    /// tee() from the stage straight into the destination, which is a pipe.
    tee = 1,
    /// tee() into a private branch pipe, splice() from it into the destination.
    branch_splice = 2,
    /// tee() into a branch pipe, read() it into scratch, write() that out.
    branch_copy = 3,
    /// tee() into a branch pipe, read() it into scratch and hash it.
    branch_hash = 4,
    /// write() from the stable buffer (or the mapping, for mmap_buf).
    write = 5,
    /// hash the stable buffer (pread() of the source for mmap_buf).
    hash = 6,
};

pub const Status = enum(i32) { done = 0, again = 1, woken = 2, dest_error = 3, source_error = 4 };

/// Which syscall failed, for the error message TypeScript builds.
pub const Call = enum(u32) { none = 0, read = 1, write = 2, splice = 3, tee = 4, vmsplice = 5, mmap = 6, pread = 7, poll = 8, ioctl = 9 };

/// Destination flag: a pipe we may not make non-blocking (borrowed), so each
/// write() is capped to its free room and never blocks the loop.
pub const dest_blocking_pipe: u32 = 1;
/// Source flag: a borrowed fd that may block; poll() before read().
pub const src_may_block: u32 = 1;

pub const Job = extern struct {
    src_fd: i32,
    source: u32,
    stage_r: i32,
    stage_w: i32,
    null_fd: i32,
    wake_fd: i32,
    ndest: u32,
    src_flags: u32,
    src_size: u64,
    chunk: u64,
    stage_size: u64,
    map: u64,
    map_off: u64,
    map_len: u64,
    buf: u64,
    budget_ns: u64,
    taken: u64,
    tail: u64,
    head: u64,
    round_start: u64,
    round_end: u64,
    round_ptr: u64,
    eof: u32,
    err_dest: i32,
    err: i32,
    err_call: u32,
    hash_alg: u32,
    _pad: u32,
    hash_state: [hash.state_size]u8,
};

pub const Dest = extern struct {
    fd: i32,
    feed: u32,
    branch_r: i32,
    branch_w: i32,
    flags: u32,
    pipe_size: u32,
    fed: u64,
    done: u64,
    scratch: u64,
    scratch_cap: u64,
    scratch_len: u64,
    scratch_off: u64,
    err: i32,
    err_call: u32,
};

const POLLIN: i16 = 1;
const POLLOUT: i16 = 4;
const SPLICE_F_MOVE: u32 = 1;
const SPLICE_F_NONBLOCK: u32 = 2;
const FIONREAD: u32 = 0x541B;
const EFAULT: isize = 14;
const ENODATA: i32 = 61;
const PROT_RW: u32 = 3;
const PROT_READ: u32 = 1;
const MAP_SHARED_POPULATE: u32 = 0x01 | 0x8000;
const MAP_PRIVATE_ANON_POPULATE: u32 = 0x02 | 0x20 | 0x8000;
const max_dests = 64;
const tee_all: usize = 1 << 30;

/// The fds to wait on when a pass made no progress.
const Waits = struct {
    fds: [2 * max_dests + 4]sys.PollFd = undefined,
    n: usize = 0,
    fn add(self: *Waits, fd: i32, events: i16) void {
        for (self.fds[0..self.n]) |*p| if (p.fd == fd) {
            p.events |= events;
            return;
        };
        self.fds[self.n] = .{ .fd = fd, .events = events, .revents = 0 };
        self.n += 1;
    }
};

fn usesStage(feed: u32) bool {
    return feed >= @intFromEnum(Feed.tee) and feed <= @intFromEnum(Feed.branch_hash);
}
fn usesBuffer(feed: u32) bool {
    return feed == @intFromEnum(Feed.write) or feed == @intFromEnum(Feed.hash);
}
fn hasRounds(src: Source) bool {
    return src == .read_pipe or src == .vmsplice or src == .read_buf;
}

fn fail(job: *Job, who: i32, call: Call, r: isize) Status {
    job.err_dest = who;
    job.err = @intCast(-r);
    job.err_call = @intFromEnum(call);
    return if (who < 0) .source_error else .dest_error;
}
fn failDest(job: *Job, d: *Dest, i: usize, call: Call, r: isize) Status {
    d.err = @intCast(-r);
    d.err_call = @intFromEnum(call);
    return fail(job, @intCast(i), call, r);
}

/// The stage is in use while any live destination is fed from it.
fn stageActive(job: *const Job, ds: []const Dest) bool {
    if (job.stage_r < 0) return false;
    for (ds) |d| if (usesStage(d.feed)) return true;
    return false;
}

/// A round (the chunk now in the buffer) is finished when it is all in the
/// stage and every live buffer-fed destination has taken all of it.
fn roundFinished(job: *const Job, ds: []const Dest, stage: bool) bool {
    if (stage and job.tail < job.round_end) return false;
    for (ds) |d| if (usesBuffer(d.feed) and d.done < job.round_end) return false;
    return true;
}

/// write() to a destination; a borrowed blocking pipe gets at most its free room.
fn writeDest(d: *Dest, p: [*]const u8, n: usize) isize {
    var len = n;
    if (d.flags & dest_blocking_pipe != 0) {
        const queued = sys.ioctl_int(d.fd, FIONREAD);
        if (queued < 0) return queued;
        const room = @as(isize, d.pipe_size) - queued;
        if (room <= 0) return -sys.EAGAIN;
        len = @min(len, @as(usize, @intCast(room)));
    }
    return sys.write(d.fd, p, len);
}

fn ready(fd: i32, events: i16) bool {
    var p = [1]sys.PollFd{.{ .fd = fd, .events = events, .revents = 0 }};
    return sys.poll(&p, 1, 0) > 0;
}

/// Maps the window of the source that starts at `pos` (a multiple of the
/// window size, so of any page size). Only a window is mapped, never the whole
/// file: pages the kernel reads through a mapping count in our RSS. Nothing
/// here touches the mapping: only the kernel does, inside write(), where a
/// page past a shrunken EOF is an EFAULT instead of a SIGBUS.
fn mapWindow(job: *Job, pos: u64) ?Status {
    if (job.map != 0) _ = sys.munmap(job.map, job.map_len);
    job.map = 0;
    // Populated in one go: faulting pages in one at a time measured ~15% slower.
    const m = sys.mmap(job.map_len, PROT_READ, MAP_SHARED_POPULATE, job.src_fd, pos);
    if (m < 0) return fail(job, -1, .mmap, m);
    job.map = @intCast(m);
    job.map_off = pos;
    return null;
}

/// Takes bytes from the source into the stage and/or the buffer.
fn sourceStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const src: Source = @enumFromInt(job.source);
    const stage = stageActive(job, ds);
    switch (src) {
        .pipe, .mmap_buf => {},
        .splice_in => if (job.eof == 0 and job.tail - job.head < job.stage_size) {
            // There is room, so EAGAIN can only mean the source has nothing yet.
            const n = @min(job.chunk, job.stage_size - (job.tail - job.head));
            const r = sys.splice(job.src_fd, job.stage_w, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (r > 0) {
                job.tail += @intCast(r);
                job.taken = job.tail;
                progress.* = true;
            } else if (r == 0) {
                job.eof = 1;
            } else if (r == -sys.EAGAIN) {
                w.add(job.src_fd, POLLIN);
            } else return fail(job, -1, .splice, r);
        },
        .read_pipe, .vmsplice, .read_buf => {
            if (job.eof == 0 and roundFinished(job, ds, stage)) {
                if (src == .vmsplice) {
                    // Fresh pages each round: the pipes keep the old ones alive
                    // after munmap(), and nobody can ever write into them again.
                    if (job.round_ptr != 0 and job.round_end > job.round_start) {
                        _ = sys.munmap(job.round_ptr, job.chunk);
                        job.round_ptr = 0;
                        job.round_start = job.round_end;
                    }
                    if (job.round_ptr == 0) {
                        const m = sys.mmap(job.chunk, PROT_RW, MAP_PRIVATE_ANON_POPULATE, -1, 0);
                        if (m < 0) return fail(job, -1, .mmap, m);
                        job.round_ptr = @intCast(m);
                    }
                } else job.round_ptr = job.buf;
                if (job.src_flags & src_may_block != 0 and !ready(job.src_fd, POLLIN)) {
                    w.add(job.src_fd, POLLIN);
                } else {
                    const r = sys.read(job.src_fd, @ptrFromInt(job.round_ptr), job.chunk);
                    if (r > 0) {
                        job.round_start = job.taken;
                        job.taken += @intCast(r);
                        job.round_end = job.taken;
                        progress.* = true;
                    } else if (r == 0) {
                        job.eof = 1;
                    } else if (r == -sys.EAGAIN) {
                        w.add(job.src_fd, POLLIN);
                    } else return fail(job, -1, .read, r);
                }
            }
            if (stage and job.tail < job.round_end) {
                const p: [*]const u8 = @ptrFromInt(job.round_ptr + (job.tail - job.round_start));
                const n = job.round_end - job.tail;
                const r = if (src == .vmsplice)
                    sys.vmsplice(job.stage_w, p, n, SPLICE_F_NONBLOCK)
                else
                    sys.write(job.stage_w, p, n);
                if (r > 0) {
                    job.tail += @intCast(r);
                    progress.* = true;
                } else if (r == -sys.EAGAIN) {
                    w.add(job.stage_w, POLLOUT);
                } else if (r < 0) return fail(job, -1, if (src == .vmsplice) .vmsplice else .write, r);
            }
        },
    }
    return null;
}

/// tee()s the stage into every destination that is level with its head.
fn teeStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const from_pipe = job.source == @intFromEnum(Source.pipe);
    for (ds, 0..) |*d, i| {
        if (!usesStage(d.feed) or d.fed != job.head) continue;
        if (!from_pipe and job.tail == job.head) continue;
        const direct = d.feed == @intFromEnum(Feed.tee);
        const target = if (direct) d.fd else d.branch_w;
        const n: usize = if (from_pipe) tee_all else @intCast(job.tail - job.head);
        const r = sys.tee(job.stage_r, target, n, SPLICE_F_NONBLOCK);
        if (r > 0) {
            d.fed += @intCast(r);
            if (direct) d.done = d.fed;
            if (d.fed > job.tail) job.tail = d.fed;
            progress.* = true;
        } else if (r == 0) {
            // Only a source pipe can be empty here: empty with no writer left is EOF.
            if (from_pipe) {
                job.eof = 1;
                job.taken = job.head;
            }
        } else if (r == -sys.EAGAIN) {
            // Either the stage is empty (wait for the source) or the target is full.
            if (from_pipe and sys.ioctl_int(job.stage_r, FIONREAD) == 0) {
                w.add(job.stage_r, POLLIN);
            } else w.add(target, POLLOUT);
        } else return failDest(job, d, i, .tee, r);
    }
    return null;
}

/// Consumes the stage up to the smallest `fed`: every live destination has those bytes.
fn consumeStep(job: *Job, ds: []Dest, progress: *bool) ?Status {
    var lim: u64 = job.tail;
    for (ds) |d| if (usesStage(d.feed)) {
        lim = @min(lim, d.fed);
    };
    if (lim <= job.head) return null;
    const r = sys.splice(job.stage_r, job.null_fd, @intCast(lim - job.head), SPLICE_F_NONBLOCK);
    if (r > 0) {
        job.head += @intCast(r);
        progress.* = true;
    } else if (r < 0 and r != -sys.EAGAIN) return fail(job, -1, .splice, r);
    return null;
}

/// Moves bytes from each branch pipe into its destination (or the hash).
fn branchStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    for (ds, 0..) |*d, i| {
        const feed: Feed = @enumFromInt(d.feed);
        switch (feed) {
            .branch_splice => if (d.done < d.fed) {
                const r = sys.splice(d.branch_r, d.fd, @intCast(d.fed - d.done), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (r > 0) {
                    d.done += @intCast(r);
                    progress.* = true;
                } else if (r == -sys.EAGAIN) {
                    w.add(d.fd, POLLOUT);
                } else if (r < 0) return failDest(job, d, i, .splice, r);
            },
            .branch_copy => {
                if (d.scratch_off == d.scratch_len and d.done < d.fed) {
                    const r = sys.read(d.branch_r, @ptrFromInt(d.scratch), @min(d.scratch_cap, d.fed - d.done));
                    if (r > 0) {
                        d.scratch_len = @intCast(r);
                        d.scratch_off = 0;
                    } else if (r < 0 and r != -sys.EAGAIN) return failDest(job, d, i, .read, r);
                }
                if (d.scratch_off < d.scratch_len) {
                    const r = writeDest(d, @ptrFromInt(d.scratch + d.scratch_off), @intCast(d.scratch_len - d.scratch_off));
                    if (r > 0) {
                        d.scratch_off += @intCast(r);
                        d.done += @intCast(r);
                        progress.* = true;
                    } else if (r == -sys.EAGAIN) {
                        w.add(d.fd, POLLOUT);
                    } else return failDest(job, d, i, .write, if (r == 0) -EFAULT else r);
                }
            },
            .branch_hash => if (d.done < d.fed) {
                const r = sys.read(d.branch_r, @ptrFromInt(d.scratch), @min(d.scratch_cap, d.fed - d.done));
                if (r > 0) {
                    const p: [*]const u8 = @ptrFromInt(d.scratch);
                    hash.update(job.hash_alg, &job.hash_state, p[0..@intCast(r)]);
                    d.done += @intCast(r);
                    progress.* = true;
                } else if (r < 0 and r != -sys.EAGAIN) return failDest(job, d, i, .read, r);
            },
            else => {},
        }
    }
    return null;
}

/// Hashes the stable buffer, or for mmap_buf the file itself: hashing the
/// mapping would SIGBUS if the file shrank, and pread() cannot.
fn hashStep(job: *Job, d: *Dest, end: u64, base: u64, start: u64) ?Status {
    if (job.source == @intFromEnum(Source.mmap_buf)) {
        const left = job.src_size - d.done;
        const r = sys.pread(job.src_fd, @ptrFromInt(d.scratch), @min(left, d.scratch_cap), d.done);
        if (r <= 0) return fail(job, -1, .pread, if (r == 0) -ENODATA else r);
        const s: [*]const u8 = @ptrFromInt(d.scratch);
        hash.update(job.hash_alg, &job.hash_state, s[0..@intCast(r)]);
        d.done += @intCast(r);
    } else {
        const p: [*]const u8 = @ptrFromInt(base + (d.done - start));
        hash.update(job.hash_alg, &job.hash_state, p[0..@intCast(end - d.done)]);
        d.done = end;
    }
    return null;
}

/// Slides the mmap_buf window once every live writer has finished it.
fn slideWindow(job: *Job, ds: []Dest, progress: *bool) ?Status {
    var low: u64 = job.src_size;
    for (ds) |d| if (d.feed == @intFromEnum(Feed.write)) {
        low = @min(low, d.done);
    };
    if (low < job.src_size and (job.map == 0 or low == job.map_off + job.map_len)) {
        if (mapWindow(job, low)) |s| return s;
        progress.* = true;
    }
    return null;
}

/// Feeds destinations that are written (or hashed) from the stable buffer.
fn bufferStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const src: Source = @enumFromInt(job.source);
    const mapped = src == .mmap_buf;
    if (!mapped and !hasRounds(src)) return null;
    if (mapped) if (slideWindow(job, ds, progress)) |s| return s;
    const end = if (mapped) @min(job.src_size, job.map_off + job.map_len) else job.round_end;
    const base = if (mapped) job.map else job.round_ptr;
    const start = if (mapped) job.map_off else job.round_start;
    for (ds, 0..) |*d, i| {
        if (d.feed == @intFromEnum(Feed.hash)) {
            if (d.done < (if (mapped) job.src_size else end)) {
                if (hashStep(job, d, end, base, start)) |s| return s;
                progress.* = true;
            }
            continue;
        }
        // At the end of the round (or window): waits for the slowest.
        if (d.feed != @intFromEnum(Feed.write) or d.done >= end) continue;
        const n: usize = @intCast(@min(job.chunk, end - d.done));
        const r = writeDest(d, @ptrFromInt(base + (d.done - start)), n);
        if (r > 0) {
            d.done += @intCast(r);
            progress.* = true;
        } else if (r == -sys.EAGAIN) {
            w.add(d.fd, POLLOUT);
        } else if (mapped and (r == -EFAULT or r == 0)) {
            // The kernel could not read the mapping: the source shrank under us.
            return fail(job, -1, .write, -EFAULT);
        } else return failDest(job, d, i, .write, if (r == 0) -EFAULT else r);
    }
    return null;
}

fn finished(job: *const Job, ds: []const Dest) bool {
    if (job.eof == 0) return false;
    for (ds) |d| if (d.feed != @intFromEnum(Feed.dead) and d.done < job.taken) return false;
    return true;
}

/// Runs the fan-out until it is done, an error needs a decision, the wake fd
/// is signalled, or `budget_ns` has passed. Returns a `Status`.
export fn oc_run(job: *Job, dests: [*]Dest) i32 {
    if (job.ndest > max_dests) return @intFromEnum(fail(job, -1, .none, -22));
    const ds = dests[0..job.ndest];
    job.err_dest = -1;
    job.err = 0;
    job.err_call = 0;
    if (job.source == @intFromEnum(Source.mmap_buf)) {
        job.taken = job.src_size;
        job.eof = 1;
    }
    const start = sys.nowNs();
    while (true) {
        var w = Waits{};
        var progress = false;
        if (sourceStep(job, ds, &w, &progress)) |s| return @intFromEnum(s);
        if (job.stage_r >= 0) {
            if (teeStep(job, ds, &w, &progress)) |s| return @intFromEnum(s);
            if (consumeStep(job, ds, &progress)) |s| return @intFromEnum(s);
        }
        if (branchStep(job, ds, &w, &progress)) |s| return @intFromEnum(s);
        if (bufferStep(job, ds, &w, &progress)) |s| return @intFromEnum(s);
        if (finished(job, ds)) return @intFromEnum(Status.done);
        const elapsed = sys.nowNs() - start;
        if (elapsed >= job.budget_ns) return @intFromEnum(Status.again);
        if (progress) continue;
        if (job.wake_fd >= 0) w.add(job.wake_fd, POLLIN);
        const left_ms: i32 = @intCast(@max(1, (job.budget_ns - elapsed) / 1_000_000));
        const r = sys.poll(&w.fds, w.n, left_ms);
        if (r < 0) return @intFromEnum(fail(job, -1, .poll, r));
        if (job.wake_fd >= 0) for (w.fds[0..w.n]) |p| {
            if (p.fd == job.wake_fd and p.revents != 0) return @intFromEnum(Status.woken);
        };
    }
}

/// Frees the vmsplice round's pages and the source window, if mapped (the
/// pipes keep their own references to whatever they still hold).
export fn oc_run_release(job: *Job) isize {
    if (job.source == @intFromEnum(Source.vmsplice) and job.round_ptr != 0) {
        _ = sys.munmap(job.round_ptr, job.chunk);
        job.round_ptr = 0;
    }
    if (job.map != 0) {
        _ = sys.munmap(job.map, job.map_len);
        job.map = 0;
    }
    return 0;
}

export fn oc_hash_job_begin(job: *Job) isize {
    return hash.begin(job.hash_alg, &job.hash_state);
}
export fn oc_hash_job_end(job: *Job, out: *[32]u8) isize {
    return hash.end(job.hash_alg, &job.hash_state, out);
}

fn layoutOf(comptime T: type, comptime name: []const u8) []const u8 {
    var s: []const u8 = std.fmt.comptimePrint("{s}={d};", .{ name, @sizeOf(T) });
    for (std.meta.fields(T)) |f| {
        if (f.name[0] == '_') continue;
        s = s ++ std.fmt.comptimePrint("{s}.{s}={d};", .{ name, f.name, @offsetOf(T, f.name) });
    }
    return s;
}
const layout = layoutOf(Job, "Job") ++ layoutOf(Dest, "Dest");

/// The struct layouts as `Name=size;Name.field=offset;…`, for the test that
/// checks TypeScript's copy of them. Returns the length, or -ERANGE if `cap` is short.
export fn oc_layout(out: [*]u8, cap: usize) isize {
    if (cap < layout.len) return -34;
    @memcpy(out[0..layout.len], layout);
    return @intCast(layout.len);
}
