//! The fan-out loop: moves a whole transfer, or a batch of it, in one FFI call.
//!
//! Everything is counted as absolute stream positions, so that a partial count
//! anywhere is just a smaller step, never a special case:
//!   taken  bytes read (or mapped) from the source
//!   tail   bytes put into the stage pipe (the one stable copy)
//!   head   bytes consumed from the stage pipe
//!   fed    per destination: bytes tee'd into its pipe or branch
//!   done   per destination: bytes delivered into the destination itself
//! so that head <= fed <= tail and done <= fed for every destination fed from
//! the stage (`assertPositions`). tee() copies from the stage's head and never
//! consumes, so a destination may be tee'd only when its `fed == head`; the
//! stage is consumed up to the smallest `fed`: spliced into /dev/null, or, from
//! a source pipe, into the "mover" (the last destination pipe fed by tee, which
//! then gets its bytes by that splice instead). A short tee therefore never
//! duplicates.
//!
//! The shared structs are split by owner: each `config` is written by
//! TypeScript (after `oc_job_init` set the defaults) and only read here; each
//! `state` is owned by the loop and only read by TypeScript, between batches.
//!
//! No policy lives here: on an error the loop records errno and the syscall,
//! returns, and TypeScript decides (fall back, drop the destination, abort).
const std = @import("std");
const linux = std.os.linux;
const sys = @import("sys.zig");
const hash = @import("hash.zig");
const E = sys.E;

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

    /// Whether the source is read in rounds: a chunk into a buffer, which every
    /// buffer feed and the stage take in full before the next read.
    fn hasRounds(src: Source) bool {
        return switch (src) {
            .read_pipe, .vmsplice, .read_buf => true,
            .pipe, .mmap_buf, .splice_in => false,
        };
    }
};

/// How one destination is fed.
pub const Feed = enum(u32) {
    /// Not fed: failed, or dropped by TypeScript. `oc_job_init`'s default.
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

    /// Fed by tee() from the stage: holds the stage's head back until it has the bytes.
    fn usesStage(f: Feed) bool {
        return switch (f) {
            .tee, .branch_splice, .branch_copy, .branch_hash => true,
            .dead, .write, .hash => false,
        };
    }
    /// Fed from the stable buffer (or mapping): holds the next round back.
    fn usesBuffer(f: Feed) bool {
        return switch (f) {
            .write, .hash => true,
            .dead, .tee, .branch_splice, .branch_copy, .branch_hash => false,
        };
    }
};

/// What one `oc_run` call ended with.
pub const Status = enum(i32) {
    /// Every live destination has every byte.
    done = 0,
    /// The time budget ran out: call again.
    again = 1,
    /// The wake fd was signalled (TypeScript's abort).
    woken = 2,
    /// A destination's syscall failed: `state.err_dest`, and that Dest's `err`, `err_call`.
    dest_error = 3,
    /// The source's syscall failed (or poll()): `state.err`, `state.err_call`.
    source_error = 4,
    /// write() into a destination (`state.err_dest`) accepted no bytes, with no errno.
    dest_wrote_nothing = 5,
    /// mmap_buf: the source file became shorter than `src_size` during the transfer.
    source_shrank = 6,
    /// The job is malformed (`validJob`: no room for `pollSlots(ndest)`, a value
    /// outside its enum, a missing fd, buffer or size): a bug in the caller, nothing ran.
    invalid_job = 7,
};

/// Which syscall failed, for the error message TypeScript builds.
pub const Call = enum(u32) { none = 0, read = 1, write = 2, splice = 3, tee = 4, vmsplice = 5, mmap = 6, pread = 7, poll = 8, ioctl = 9 };

/// Destination flag: a pipe we may not make non-blocking (borrowed), so each
/// write() is capped to its free room and never blocks the loop.
pub const dest_blocking_pipe: u32 = 1;
/// Destination flag: a pipe whose reader going away is reported (EPIPE) even
/// while the loop waits on something else, such as an idle source.
pub const dest_watch_reader: u32 = 2;
/// Destination flag: from a source pipe, consume the stage into this
/// destination pipe (splice) rather than tee() into it (`isMover`).
pub const dest_mover: u32 = 4;
/// Destination flag: a socket. It is written by send(MSG_DONTWAIT), which
/// never blocks whatever its O_NONBLOCK says: a borrowed blocking socket whose
/// peer stops reading then leaves the loop free to see an abort.
pub const dest_socket: u32 = 8;
/// Source flag: a borrowed fd that may block; poll() before read().
pub const src_may_block: u32 = 1;

/// Poll slots a job needs per destination (its fd and its branch pipe) and
/// for the job itself (source, the stage's two ends, the wake fd): the wait set
/// lives in `JobConfig.poll_fds`, sized by TypeScript, so the loop never
/// allocates and the number of destinations has no fixed limit.
pub const poll_slots_per_dest = 2;
pub const poll_slots_base = 4;

pub fn pollSlots(ndest: usize) usize {
    return poll_slots_per_dest * ndest + poll_slots_base;
}

/// What TypeScript asks for; the loop only reads it.
pub const JobConfig = extern struct {
    src_fd: i32 = -1,
    source: Source = .read_buf,
    /// The stage pipe's ends (the source itself for Source.pipe), or -1.
    stage_r: i32 = -1,
    stage_w: i32 = -1,
    /// /dev/null, where the stage is consumed.
    null_fd: i32 = -1,
    /// An eventfd that ends a batch early (abort), or -1.
    wake_fd: i32 = -1,
    ndest: u32 = 0,
    src_flags: u32 = 0,
    hash_alg: hash.Alg = .none,
    _pad: u32 = 0,
    /// A file source's size (the end for mmap_buf).
    src_size: u64 = 0,
    chunk: u64 = 0,
    stage_size: u64 = 0,
    /// The mmap_buf window's size.
    map_len: u64 = 0,
    /// The stable buffer (`chunk` bytes) for read_pipe and read_buf.
    buf: u64 = 0,
    /// How long one batch may run.
    budget_ns: u64 = 0,
    /// Room for `pollSlots(ndest)` `struct pollfd`s (TypeScript's memory).
    poll_fds: u64 = 0,
    poll_cap: u64 = 0,
};

/// Where the loop is; TypeScript only reads it.
pub const JobState = extern struct {
    taken: u64 = 0,
    tail: u64 = 0,
    head: u64 = 0,
    /// The round (chunk) in the buffer: [round_start, round_end) of the stream, at round_ptr.
    round_start: u64 = 0,
    round_end: u64 = 0,
    round_ptr: u64 = 0,
    /// The mmap_buf window: `map_len` bytes of the source from `map_off`, at `map`.
    map: u64 = 0,
    map_off: u64 = 0,
    eof: bool = false,
    /// Which destination a dest_error or dest_wrote_nothing is about.
    err_dest: i32 = -1,
    /// source_error: the errno and the syscall.
    err: i32 = 0,
    err_call: Call = .none,
    hash_state: [hash.state_size]u8 = [_]u8{0} ** hash.state_size,
};

pub const Job = extern struct {
    config: JobConfig = .{},
    state: JobState = .{},
};

/// How to feed one destination; written by TypeScript (which may change
/// `feed` between batches: fall back to copying, or drop it).
pub const DestConfig = extern struct {
    /// The destination's fd; -1 for the checksum tap.
    fd: i32 = -1,
    feed: Feed = .dead,
    /// The private branch pipe for branch feeds, or -1.
    branch_r: i32 = -1,
    branch_w: i32 = -1,
    flags: u32 = 0,
    /// A borrowed blocking pipe's capacity, for `dest_blocking_pipe`.
    pipe_size: u32 = 0,
    /// A chunk of memory for branch_copy, branch_hash and hash.
    scratch: u64 = 0,
    scratch_cap: u64 = 0,
};

/// How far one destination is.
pub const DestState = extern struct {
    fed: u64 = 0,
    done: u64 = 0,
    /// The bytes in `scratch` not yet written: [scratch_off, scratch_len).
    scratch_len: u64 = 0,
    scratch_off: u64 = 0,
    err: i32 = 0,
    err_call: Call = .none,
};

pub const Dest = extern struct {
    config: DestConfig = .{},
    state: DestState = .{},
};

const POLLIN: i16 = 1;
const POLLOUT: i16 = 4;
const POLLHUP: i16 = 16;
const SPLICE_F_MOVE: u32 = 1;
const SPLICE_F_NONBLOCK: u32 = 2;
const FIONREAD: u32 = 0x541B;
const PROT_RW: u32 = 3;
const PROT_READ: u32 = 1;
const MAP_SHARED_POPULATE: u32 = 0x01 | 0x8000;
const MAP_PRIVATE_ANON_POPULATE: u32 = 0x02 | 0x20 | 0x8000;
/// A tee() from a source pipe asks for everything: the kernel gives what is
/// queued and fits, and the length must stay below 2^31.
const tee_all: usize = 1 << 30;

/// The fds to wait on when a pass made no progress (at most `pollSlots(ndest)`
/// distinct ones, as `add` merges repeats).
const Waits = struct {
    fds: [*]sys.PollFd,
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

/// The source's syscall failed with result `r` (< 0).
fn sourceFailed(job: *Job, call: Call, r: isize) Status {
    job.state.err = @intFromEnum(sys.errno(r));
    job.state.err_call = call;
    return .source_error;
}
/// Destination `i`'s syscall failed with result `r` (< 0).
fn destFailed(job: *Job, d: *Dest, i: usize, call: Call, r: isize) Status {
    d.state.err = @intFromEnum(sys.errno(r));
    d.state.err_call = call;
    job.state.err_dest = @intCast(i);
    return .dest_error;
}
/// write() into destination `i` returned 0 for a non-empty buffer.
fn wroteNothing(job: *Job, d: *Dest, i: usize) Status {
    d.state.err = 0;
    d.state.err_call = .write;
    job.state.err_dest = @intCast(i);
    return .dest_wrote_nothing;
}

/// The stage is in use while any live destination is fed from it.
fn stageActive(job: *const Job, ds: []const Dest) bool {
    if (job.config.stage_r < 0) return false;
    for (ds) |d| if (d.config.feed.usesStage()) return true;
    return false;
}

/// A round (the chunk now in the buffer) is finished when it is all in the
/// stage and every live buffer-fed destination has taken all of it.
fn roundFinished(job: *const Job, ds: []const Dest, stage: bool) bool {
    if (stage and job.state.tail < job.state.round_end) return false;
    for (ds) |d| if (d.config.feed.usesBuffer() and d.state.done < job.state.round_end) return false;
    return true;
}

/// write() to a destination, never blocking: a borrowed blocking pipe gets
/// at most its free room (none left is EAGAIN), a socket is sent to with
/// MSG_DONTWAIT (and MSG_NOSIGNAL: a gone peer is EPIPE, not a signal).
fn writeDest(d: *const Dest, p: [*]const u8, n: usize) isize {
    var len = n;
    if (d.config.flags & dest_socket != 0) {
        const flags: u32 = linux.MSG.DONTWAIT | linux.MSG.NOSIGNAL;
        return sys.call(.sendto, .{ sys.arg(d.config.fd), @intFromPtr(p), len, flags, 0, 0 });
    }
    if (d.config.flags & dest_blocking_pipe != 0) {
        const queued = sys.ioctl_int(d.config.fd, FIONREAD);
        if (queued < 0) return queued;
        const room = @as(isize, d.config.pipe_size) - queued;
        if (room <= 0) return sys.fail(.AGAIN);
        len = @min(len, @as(usize, @intCast(room)));
    }
    return sys.write(d.config.fd, p, len);
}

/// An empty pipe whose writers are all gone (poll() says POLLHUP).
fn endOfPipe(fd: i32) bool {
    var p = [1]sys.PollFd{.{ .fd = fd, .events = POLLIN, .revents = 0 }};
    return sys.poll(&p, 1, 0) > 0 and p[0].revents & POLLHUP != 0 and sys.ioctl_int(fd, FIONREAD) == 0;
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
    const s = &job.state;
    if (s.map != 0) _ = sys.munmap(s.map, job.config.map_len);
    s.map = 0;
    // Populated in one go: faulting pages in one at a time measured ~15% slower.
    const m = sys.mmap(job.config.map_len, PROT_READ, MAP_SHARED_POPULATE, job.config.src_fd, pos);
    if (m < 0) return sourceFailed(job, .mmap, m);
    s.map = @intCast(m);
    s.map_off = pos;
    return null;
}

/// Starts the next round for vmsplice: fresh pages each round. The pipes keep
/// the old ones alive after munmap(), and nobody can ever write into them again.
fn freshRoundPages(job: *Job) ?Status {
    const s = &job.state;
    if (s.round_ptr != 0 and s.round_end > s.round_start) {
        _ = sys.munmap(s.round_ptr, job.config.chunk);
        s.round_ptr = 0;
        s.round_start = s.round_end;
    }
    if (s.round_ptr == 0) {
        const m = sys.mmap(job.config.chunk, PROT_RW, MAP_PRIVATE_ANON_POPULATE, -1, 0);
        if (m < 0) return sourceFailed(job, .mmap, m);
        s.round_ptr = @intCast(m);
    }
    return null;
}

/// Takes bytes from the source into the stage and/or the buffer.
fn sourceStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const c = &job.config;
    const s = &job.state;
    const stage = stageActive(job, ds);
    switch (c.source) {
        .pipe, .mmap_buf => {},
        .splice_in => if (!s.eof and s.tail - s.head < c.stage_size) {
            // There is room, so EAGAIN can only mean the source has nothing yet.
            const n = @min(c.chunk, c.stage_size - (s.tail - s.head));
            const r = sys.splice(c.src_fd, c.stage_w, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (r > 0) {
                s.tail += @intCast(r);
                s.taken = s.tail;
                progress.* = true;
            } else if (r == 0) {
                s.eof = true;
            } else if (sys.is(r, .AGAIN)) {
                w.add(c.src_fd, POLLIN);
            } else return sourceFailed(job, .splice, r);
        },
        .read_pipe, .vmsplice, .read_buf => {
            if (!s.eof and roundFinished(job, ds, stage)) {
                if (c.source == .vmsplice) {
                    if (freshRoundPages(job)) |st| return st;
                } else s.round_ptr = c.buf;
                if (c.src_flags & src_may_block != 0 and !ready(c.src_fd, POLLIN)) {
                    w.add(c.src_fd, POLLIN);
                } else {
                    const r = sys.read(c.src_fd, @ptrFromInt(s.round_ptr), c.chunk);
                    if (r > 0) {
                        s.round_start = s.taken;
                        s.taken += @intCast(r);
                        s.round_end = s.taken;
                        progress.* = true;
                    } else if (r == 0) {
                        s.eof = true;
                    } else if (sys.is(r, .AGAIN)) {
                        w.add(c.src_fd, POLLIN);
                    } else return sourceFailed(job, .read, r);
                }
            }
            if (stage and s.tail < s.round_end) {
                const p: [*]const u8 = @ptrFromInt(s.round_ptr + (s.tail - s.round_start));
                const n = s.round_end - s.tail;
                const vm = c.source == .vmsplice;
                const r = if (vm) sys.vmsplice(c.stage_w, p, n, SPLICE_F_NONBLOCK) else sys.write(c.stage_w, p, n);
                if (r > 0) {
                    s.tail += @intCast(r);
                    progress.* = true;
                } else if (sys.is(r, .AGAIN)) {
                    w.add(c.stage_w, POLLOUT);
                } else if (r < 0) return sourceFailed(job, if (vm) .vmsplice else .write, r);
            }
        },
    }
    return null;
}

/// tee()s the stage into every destination that is level with its head.
fn teeStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const c = &job.config;
    const s = &job.state;
    const from_pipe = c.source == .pipe;
    for (ds, 0..) |*d, i| {
        if (!d.config.feed.usesStage() or d.state.fed != s.head) continue;
        if (!from_pipe and s.tail == s.head) continue;
        if (isMover(job, d)) continue; // consumeStep moves the bytes into it
        const direct = d.config.feed == .tee;
        const target = if (direct) d.config.fd else d.config.branch_w;
        const n: usize = if (from_pipe) tee_all else @intCast(s.tail - s.head);
        const r = sys.tee(c.stage_r, target, n, SPLICE_F_NONBLOCK);
        if (r > 0) {
            d.state.fed += @intCast(r);
            if (direct) d.state.done = d.state.fed;
            if (d.state.fed > s.tail) s.tail = d.state.fed;
            // From a source pipe, bytes are taken as the first destination gets them.
            if (from_pipe) s.taken = s.tail;
            progress.* = true;
        } else if (r == 0) {
            // Only a source pipe can be empty here: empty with no writer left is EOF.
            if (from_pipe) {
                s.eof = true;
                s.taken = s.head;
            }
        } else if (sys.is(r, .AGAIN)) {
            // Either the stage is empty (wait for the source) or the target is full.
            if (from_pipe and sys.ioctl_int(c.stage_r, FIONREAD) == 0) {
                w.add(c.stage_r, POLLIN);
            } else w.add(target, POLLOUT);
        } else if (from_pipe and sys.is(r, .PIPE) and sys.ioctl_int(c.stage_r, FIONREAD) == 0) {
            // tee() reports a reader-less target before it looks at its input;
            // with nothing queued, nothing is lost yet: wait for bytes or the end.
            if (endOfPipe(c.stage_r)) {
                s.eof = true;
                s.taken = s.head;
            } else w.add(c.stage_r, POLLIN);
        } else return destFailed(job, d, i, .tee, r);
    }
    return null;
}

/// A destination pipe the stage is consumed into (splice() moves the bytes)
/// instead of being tee()d to and consumed into /dev/null: one tee() fewer per
/// round. Only from a source pipe, only while it is fed by tee.
fn isMover(job: *const Job, d: *const Dest) bool {
    return job.config.source == .pipe and d.config.feed == .tee and d.config.flags & dest_mover != 0;
}

/// Consumes the stage up to the smallest `fed`: every live destination has
/// those bytes. Into the mover, if there is one (it moves with the head, so
/// its `fed` is always `head`), else into /dev/null.
fn consumeStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const c = &job.config;
    const s = &job.state;
    var mover: ?usize = null;
    var others = false;
    var lim: u64 = s.tail;
    for (ds, 0..) |*d, i| if (d.config.feed.usesStage()) {
        if (mover == null and isMover(job, d)) {
            mover = i;
            continue;
        }
        others = true;
        lim = @min(lim, d.state.fed);
    };
    if (mover != null and !others and !s.eof) {
        // Nobody tee()s, so nobody sees the source's bytes or its end: look here.
        const queued = sys.ioctl_int(c.stage_r, FIONREAD);
        if (queued < 0) return sourceFailed(job, .ioctl, queued);
        if (queued == 0) {
            if (endOfPipe(c.stage_r)) {
                s.eof = true;
                s.taken = s.head;
            } else w.add(c.stage_r, POLLIN);
            return null;
        }
        lim = s.head + @as(u64, @intCast(queued));
    }
    if (lim <= s.head) return null;
    const n: usize = @intCast(lim - s.head);
    if (mover) |i| {
        const d = &ds[i];
        const r = sys.splice(c.stage_r, d.config.fd, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
            s.head += @intCast(r);
            d.state.fed = s.head;
            d.state.done = s.head;
            if (s.head > s.tail) s.tail = s.head;
            s.taken = s.tail;
            progress.* = true;
        } else if (sys.is(r, .AGAIN)) {
            w.add(d.config.fd, POLLOUT);
        } else if (r < 0) return destFailed(job, d, i, .splice, r);
        return null;
    }
    const r = sys.splice(c.stage_r, c.null_fd, n, SPLICE_F_NONBLOCK);
    if (r > 0) {
        s.head += @intCast(r);
        progress.* = true;
    } else if (r < 0 and !sys.is(r, .AGAIN)) return sourceFailed(job, .splice, r);
    return null;
}

/// Moves bytes from each branch pipe into its destination (or the hash).
fn branchStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    for (ds, 0..) |*d, i| {
        const c = &d.config;
        const s = &d.state;
        switch (c.feed) {
            .branch_splice => if (s.done < s.fed) {
                const r = sys.splice(c.branch_r, c.fd, @intCast(s.fed - s.done), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (r > 0) {
                    s.done += @intCast(r);
                    progress.* = true;
                } else if (sys.is(r, .AGAIN)) {
                    w.add(c.fd, POLLOUT);
                } else if (r < 0) return destFailed(job, d, i, .splice, r);
            },
            .branch_copy => {
                if (s.scratch_off == s.scratch_len and s.done < s.fed) {
                    const r = sys.read(c.branch_r, @ptrFromInt(c.scratch), @min(c.scratch_cap, s.fed - s.done));
                    if (r > 0) {
                        s.scratch_len = @intCast(r);
                        s.scratch_off = 0;
                    } else if (r < 0 and !sys.is(r, .AGAIN)) return destFailed(job, d, i, .read, r);
                }
                if (s.scratch_off < s.scratch_len) {
                    const r = writeDest(d, @ptrFromInt(c.scratch + s.scratch_off), @intCast(s.scratch_len - s.scratch_off));
                    if (r > 0) {
                        s.scratch_off += @intCast(r);
                        s.done += @intCast(r);
                        progress.* = true;
                    } else if (sys.is(r, .AGAIN)) {
                        w.add(c.fd, POLLOUT);
                    } else if (r == 0) {
                        return wroteNothing(job, d, i);
                    } else return destFailed(job, d, i, .write, r);
                }
            },
            .branch_hash => if (s.done < s.fed) {
                const r = sys.read(c.branch_r, @ptrFromInt(c.scratch), @min(c.scratch_cap, s.fed - s.done));
                if (r > 0) {
                    const p: [*]const u8 = @ptrFromInt(c.scratch);
                    hash.update(job.config.hash_alg, &job.state.hash_state, p[0..@intCast(r)]);
                    s.done += @intCast(r);
                    progress.* = true;
                } else if (r < 0 and !sys.is(r, .AGAIN)) return destFailed(job, d, i, .read, r);
            },
            .dead, .tee, .write, .hash => {},
        }
    }
    return null;
}

/// Hashes the stable buffer, or for mmap_buf the file itself: hashing the
/// mapping would SIGBUS if the file shrank, and pread() cannot.
fn hashStep(job: *Job, d: *Dest, end: u64, base: u64, start: u64) ?Status {
    const c = &job.config;
    const s = &d.state;
    if (c.source == .mmap_buf) {
        const left = c.src_size - s.done;
        const r = sys.pread(c.src_fd, @ptrFromInt(d.config.scratch), @min(left, d.config.scratch_cap), s.done);
        if (r == 0) return .source_shrank; // end of file before src_size
        if (r < 0) return sourceFailed(job, .pread, r);
        const p: [*]const u8 = @ptrFromInt(d.config.scratch);
        hash.update(c.hash_alg, &job.state.hash_state, p[0..@intCast(r)]);
        s.done += @intCast(r);
    } else {
        const p: [*]const u8 = @ptrFromInt(base + (s.done - start));
        hash.update(c.hash_alg, &job.state.hash_state, p[0..@intCast(end - s.done)]);
        s.done = end;
    }
    return null;
}

/// Slides the mmap_buf window once every live writer has finished it.
fn slideWindow(job: *Job, ds: []const Dest, progress: *bool) ?Status {
    const size = job.config.src_size;
    const s = &job.state;
    var low: u64 = size;
    for (ds) |d| if (d.config.feed == .write) {
        low = @min(low, d.state.done);
    };
    if (low < size and (s.map == 0 or low == s.map_off + job.config.map_len)) {
        if (mapWindow(job, low)) |st| return st;
        progress.* = true;
    }
    return null;
}

/// Feeds destinations that are written (or hashed) from the stable buffer.
fn bufferStep(job: *Job, ds: []Dest, w: *Waits, progress: *bool) ?Status {
    const c = &job.config;
    const s = &job.state;
    const mapped = c.source == .mmap_buf;
    if (!mapped and !c.source.hasRounds()) return null;
    if (mapped) if (slideWindow(job, ds, progress)) |st| return st;
    const end = if (mapped) @min(c.src_size, s.map_off + c.map_len) else s.round_end;
    const base = if (mapped) s.map else s.round_ptr;
    const start = if (mapped) s.map_off else s.round_start;
    for (ds, 0..) |*d, i| {
        switch (d.config.feed) {
            .hash => if (d.state.done < (if (mapped) c.src_size else end)) {
                if (hashStep(job, d, end, base, start)) |st| return st;
                progress.* = true;
            },
            // At the end of the round (or window): waits for the slowest.
            .write => if (d.state.done < end) {
                const n: usize = @intCast(@min(c.chunk, end - d.state.done));
                const r = writeDest(d, @ptrFromInt(base + (d.state.done - start)), n);
                if (r > 0) {
                    d.state.done += @intCast(r);
                    progress.* = true;
                } else if (sys.is(r, .AGAIN)) {
                    w.add(d.config.fd, POLLOUT);
                } else if (mapped and (r == 0 or sys.is(r, .FAULT))) {
                    // The kernel could not read the mapping: the file ends before src_size.
                    return .source_shrank;
                } else if (r == 0) {
                    return wroteNothing(job, d, i);
                } else return destFailed(job, d, i, .write, r);
            },
            .dead, .tee, .branch_splice, .branch_copy, .branch_hash => {},
        }
    }
    return null;
}

const POLLERR: i16 = 8;

fn watchesReader(d: *const Dest) bool {
    return d.config.feed != .dead and d.config.flags & dest_watch_reader != 0;
}

/// Adds every live `dest_watch_reader` pipe to the wait set with no events:
/// poll() still reports POLLERR on a pipe's write end once its last reader is
/// gone. So a lost reader is noticed while the loop waits on something else
/// (an idle source), not only at the next write (coreutils 9.2 tee's iopoll).
fn watchReaders(ds: []const Dest, w: *Waits) void {
    for (ds) |*d| if (watchesReader(d)) w.add(d.config.fd, 0);
}

/// The first live pipe destination whose reader poll() said is gone: a
/// dest_error with EPIPE, as the next write into it would have been.
fn readerGone(job: *Job, ds: []Dest, w: *const Waits) ?Status {
    for (ds, 0..) |*d, i| {
        if (!watchesReader(d)) continue;
        for (w.fds[0..w.n]) |p| if (p.fd == d.config.fd and p.revents & POLLERR != 0) {
            return destFailed(job, d, i, .poll, sys.fail(.PIPE));
        };
    }
    return null;
}

fn finished(job: *const Job, ds: []const Dest) bool {
    if (!job.state.eof) return false;
    for (ds) |d| if (d.config.feed != .dead and d.state.done < job.state.taken) return false;
    return true;
}

/// The stream positions only move forward, in this order (see the top of the
/// file). Checked in Debug builds (the Zig tests), compiled out of releases.
fn assertPositions(job: *const Job, ds: []const Dest) void {
    const s = &job.state;
    std.debug.assert(s.head <= s.tail);
    for (ds) |d| switch (d.config.feed) {
        .tee, .branch_splice, .branch_copy, .branch_hash => {
            std.debug.assert(s.head <= d.state.fed and d.state.fed <= s.tail);
            std.debug.assert(d.state.done <= d.state.fed);
        },
        .write, .hash => std.debug.assert(d.state.done <= s.taken),
        .dead => {},
    };
}

/// Whether an enum field TypeScript wrote holds one of the enum's values; read
/// as its integer, since loading an invalid value as the enum is undefined.
fn validTag(comptime T: type, field: *const T) bool {
    const raw = @as(*const @typeInfo(T).@"enum".tag_type, @ptrCast(field)).*;
    _ = std.meta.intToEnum(T, raw) catch return false;
    return true;
}

/// The longest budget whose milliseconds still fit poll()'s i32 timeout.
const max_budget_ns: u64 = @as(u64, std.math.maxInt(i32)) * 1_000_000;

/// Whether the config can run as asked. A job that fails any of these would not
/// fail loudly: a 0 chunk reads 0 bytes, which looks like the end of the source
/// (every destination "done", nothing sent); a missing buffer or scratch is a
/// write through address 0; a feed its source never fills waits forever. So
/// `oc_run` refuses it (`invalid_job`) before anything runs.
fn validJob(job: *const Job, ds: []const Dest) bool {
    if (!validTag(Source, &job.config.source) or !validTag(hash.Alg, &job.config.hash_alg)) return false;
    for (ds) |*d| if (!validTag(Feed, &d.config.feed)) return false;
    const c = &job.config;
    if (c.src_fd < 0 or c.chunk == 0 or c.budget_ns > max_budget_ns) return false;
    const stage_source = switch (c.source) {
        .pipe, .read_pipe, .vmsplice, .splice_in => true,
        .read_buf, .mmap_buf => false,
    };
    if (stage_source and (c.stage_r < 0 or c.stage_size == 0 or c.null_fd < 0)) return false;
    if (stage_source and c.source != .pipe and c.stage_w < 0) return false;
    if ((c.source == .read_pipe or c.source == .read_buf) and c.buf == 0) return false;
    if (c.source == .mmap_buf and c.map_len == 0) return false;
    const buffer_source = c.source.hasRounds() or c.source == .mmap_buf;
    for (ds) |*d| {
        const f = d.config.feed;
        if (f.usesStage() and !stage_source) return false; // never fed: waits forever
        if (f.usesBuffer() and !buffer_source) return false;
        const scratch = switch (f) {
            .branch_copy, .branch_hash, .hash => true,
            .dead, .tee, .branch_splice, .write => false,
        };
        if (scratch and (d.config.scratch == 0 or d.config.scratch_cap == 0)) return false;
        if (f.usesStage() and f != .tee and (d.config.branch_r < 0 or d.config.branch_w < 0)) return false;
        if (f != .dead and f != .branch_hash and f != .hash and d.config.fd < 0) return false;
    }
    return true;
}

/// Sets a job and its `ndest` destinations to their defaults (every fd -1, every
/// destination dead, every position 0); TypeScript then fills in the config.
pub export fn oc_job_init(job: *Job, dests: [*]Dest, ndest: u32) void {
    job.* = .{};
    job.config.ndest = ndest;
    for (dests[0..ndest]) |*d| d.* = .{};
}

/// Runs the fan-out until it is done, an error needs a decision, the wake fd
/// is signalled, or `budget_ns` has passed.
pub export fn oc_run(job: *Job, dests: [*]Dest) Status {
    if (job.config.poll_fds == 0 or job.config.poll_cap < pollSlots(job.config.ndest)) return .invalid_job;
    const ds = dests[0..job.config.ndest];
    if (!validJob(job, ds)) return .invalid_job;
    const c = &job.config;
    const s = &job.state;
    s.err_dest = -1;
    s.err = 0;
    s.err_call = .none;
    if (c.source == .mmap_buf) {
        s.taken = c.src_size;
        s.eof = true;
    }
    const start = sys.nowNs();
    while (true) {
        var w = Waits{ .fds = @ptrFromInt(job.config.poll_fds) };
        var progress = false;
        if (sourceStep(job, ds, &w, &progress)) |st| return st;
        if (c.stage_r >= 0) {
            if (teeStep(job, ds, &w, &progress)) |st| return st;
            if (consumeStep(job, ds, &w, &progress)) |st| return st;
        }
        if (branchStep(job, ds, &w, &progress)) |st| return st;
        if (bufferStep(job, ds, &w, &progress)) |st| return st;
        if (std.debug.runtime_safety) assertPositions(job, ds);
        if (finished(job, ds)) return .done;
        const elapsed = sys.nowNs() - start;
        if (elapsed >= c.budget_ns) return .again;
        if (progress) {
            // A busy pass never reaches the poll() below: look at the wake fd
            // here (one ppoll per pass, ~1 µs per MiB moved), so an abort
            // lands now rather than when the batch's budget runs out.
            if (c.wake_fd >= 0 and ready(c.wake_fd, POLLIN)) return wokenBy(c.wake_fd);
            continue;
        }
        if (c.wake_fd >= 0) w.add(c.wake_fd, POLLIN);
        watchReaders(ds, &w);
        const left_ms: i32 = @intCast(@max(1, (c.budget_ns - elapsed) / 1_000_000));
        const r = sys.poll(w.fds, w.n, left_ms);
        if (r < 0) return sourceFailed(job, .poll, r);
        if (readerGone(job, ds, &w)) |st| return st;
        if (c.wake_fd >= 0) for (w.fds[0..w.n]) |p| {
            if (p.fd == c.wake_fd and p.revents != 0) return wokenBy(c.wake_fd);
        };
    }
}

/// Reports a signal on the wake eventfd once: reading it resets the counter,
/// so the next batch runs (and waits) again instead of returning at once
/// for the same signal, which spun the loop after a WritableStream failed.
fn wokenBy(wake_fd: i32) Status {
    var count: u64 = 0;
    _ = sys.read(wake_fd, @ptrCast(&count), @sizeOf(u64)); // EAGAIN: read already
    return .woken;
}

/// Frees the vmsplice round's pages and the source window, if mapped (the
/// pipes keep their own references to whatever they still hold). Safe twice.
pub export fn oc_run_release(job: *Job) isize {
    const s = &job.state;
    if (job.config.source == .vmsplice and s.round_ptr != 0) {
        _ = sys.munmap(s.round_ptr, job.config.chunk);
        s.round_ptr = 0;
    }
    if (s.map != 0) {
        _ = sys.munmap(s.map, job.config.map_len);
        s.map = 0;
    }
    return 0;
}

pub export fn oc_hash_job_begin(job: *Job) isize {
    if (!validTag(hash.Alg, &job.config.hash_alg)) return sys.fail(.INVAL);
    hash.begin(job.config.hash_alg, &job.state.hash_state);
    return 0;
}
/// Writes the job's digest into `out`; returns its length.
pub export fn oc_hash_job_end(job: *Job, out: *[hash.digest_max]u8) isize {
    if (!validTag(hash.Alg, &job.config.hash_alg)) return sys.fail(.INVAL);
    return @intCast(hash.end(job.config.hash_alg, &job.state.hash_state, out));
}

// ---- Tests: each step on real pipes (run by tests/zig_test.ts through the pinned Zig).

const testing = std.testing;
const O_NONBLOCK: u32 = 0o4000;
const O_CLOEXEC: u32 = 0o2000000;
const F_SETPIPE_SZ: u32 = 1031;

/// A non-blocking pipe for a test, optionally shrunk to `size` bytes.
const TestPipe = struct {
    r: i32,
    w: i32,

    fn open(size: ?usize) !TestPipe {
        var fds: [2]i32 = undefined;
        if (sys.pipe2(&fds, O_NONBLOCK | O_CLOEXEC) != 0) return error.Pipe;
        if (size) |n| if (sys.call(.fcntl, .{ sys.arg(fds[1]), F_SETPIPE_SZ, n }) < 0) return error.PipeSize;
        return .{ .r = fds[0], .w = fds[1] };
    }
    fn close(p: TestPipe) void {
        _ = sys.close(p.r);
        if (p.w >= 0) _ = sys.close(p.w);
    }
    fn put(p: TestPipe, bytes: []const u8) !void {
        if (sys.write(p.w, bytes.ptr, bytes.len) != bytes.len) return error.ShortWrite;
    }
    /// Appends whatever the pipe holds to `out`.
    fn drainInto(p: TestPipe, out: *std.ArrayList(u8)) !void {
        var buf: [65536]u8 = undefined;
        while (true) {
            const r = sys.read(p.r, &buf, buf.len);
            if (r <= 0) return;
            try out.appendSlice(buf[0..@intCast(r)]);
        }
    }
};

fn testBytes(comptime n: usize) [n]u8 {
    var out: [n]u8 = undefined;
    for (&out, 0..) |*b, i| b.* = @truncate(i *% 131 +% i / 256);
    return out;
}

fn openDevNull() !i32 {
    const r = sys.call(.openat, .{ sys.arg(-100), @intFromPtr("/dev/null"), 1 | O_CLOEXEC, 0 });
    if (r < 0) return error.Open;
    return @intCast(r);
}

test "tee step: a short tee is never continued, and the stage is consumed only up to the slowest" {
    const data = testBytes(10000);
    const stage = try TestPipe.open(null);
    defer stage.close();
    const fast = try TestPipe.open(null);
    defer fast.close();
    const slow = try TestPipe.open(4096); // one page: a tee gives it one buffer at most
    defer slow.close();
    const devnull = try openDevNull();
    defer _ = sys.close(devnull);

    try stage.put(&data);
    var job = Job{ .config = .{ .source = .read_pipe, .stage_r = stage.r, .stage_w = stage.w, .null_fd = devnull, .ndest = 2 } };
    job.state.taken = data.len; // as if the source step had put it all in the stage
    job.state.tail = data.len;
    var ds = [2]Dest{
        .{ .config = .{ .fd = fast.w, .feed = .tee } },
        .{ .config = .{ .fd = slow.w, .feed = .tee } },
    };
    var polls: [pollSlots(2)]sys.PollFd = undefined;
    var w = Waits{ .fds = &polls };
    var progress = false;
    try testing.expectEqual(null, teeStep(&job, &ds, &w, &progress));
    try testing.expectEqual(@as(u64, data.len), ds[0].state.fed);
    const short = ds[1].state.fed;
    try testing.expect(short > 0 and short < data.len); // a partial count
    try testing.expectEqual(short, ds[1].state.done); // tee'd straight into it: delivered
    assertPositions(&job, &ds);

    // Nobody is level with the head now: another pass must tee nothing (no duplicates).
    try testing.expectEqual(null, teeStep(&job, &ds, &w, &progress));
    try testing.expectEqual(short, ds[1].state.fed);

    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    while (ds[1].state.fed < data.len) {
        try testing.expectEqual(null, consumeStep(&job, &ds, &w, &progress));
        try testing.expectEqual(ds[1].state.fed, job.state.head); // the slowest holds it back
        try slow.drainInto(&got);
        try testing.expectEqual(null, teeStep(&job, &ds, &w, &progress));
        assertPositions(&job, &ds);
    }
    try slow.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
    got.clearRetainingCapacity();
    try fast.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
    try testing.expectEqual(null, consumeStep(&job, &ds, &w, &progress));
    try testing.expectEqual(job.state.tail, job.state.head);
}

test "write step: a borrowed blocking pipe gets at most its free room, then waits" {
    var data = testBytes(10000);
    const out = try TestPipe.open(4096);
    defer out.close();
    try out.put(&[_]u8{0} ** 1000);
    var job = Job{ .config = .{ .source = .read_buf, .chunk = data.len, .ndest = 1 } };
    job.state = .{ .taken = data.len, .round_start = 0, .round_end = data.len, .round_ptr = @intFromPtr(&data) };
    var ds = [1]Dest{.{ .config = .{ .fd = out.w, .feed = .write, .flags = dest_blocking_pipe, .pipe_size = 4096 } }};
    var polls: [pollSlots(2)]sys.PollFd = undefined;
    var w = Waits{ .fds = &polls };
    var progress = false;
    try testing.expectEqual(null, bufferStep(&job, &ds, &w, &progress));
    try testing.expectEqual(@as(u64, 4096 - 1000), ds[0].state.done);
    try testing.expectEqual(null, bufferStep(&job, &ds, &w, &progress));
    try testing.expectEqual(@as(u64, 4096 - 1000), ds[0].state.done);
    try testing.expectEqual(@as(usize, 1), w.n); // full: waits for room instead of blocking
    try testing.expectEqual(out.w, w.fds[0].fd);

    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    while (ds[0].state.done < data.len) {
        try out.drainInto(&got);
        try testing.expectEqual(null, bufferStep(&job, &ds, &w, &progress));
        assertPositions(&job, &ds);
    }
    try out.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items[1000..]);
}

test "branch copy: a short write resumes from where it stopped in scratch" {
    const data = testBytes(10000);
    const branch = try TestPipe.open(null);
    defer branch.close();
    const out = try TestPipe.open(4096);
    defer out.close();
    try branch.put(&data);
    var scratch: [16384]u8 = undefined;
    var job = Job{ .config = .{ .source = .read_pipe, .ndest = 1 } };
    job.state = .{ .taken = data.len, .tail = data.len };
    var ds = [1]Dest{.{ .config = .{ .fd = out.w, .feed = .branch_copy, .branch_r = branch.r, .branch_w = branch.w, .scratch = @intFromPtr(&scratch), .scratch_cap = scratch.len } }};
    ds[0].state.fed = data.len;
    var polls: [pollSlots(2)]sys.PollFd = undefined;
    var w = Waits{ .fds = &polls };
    var progress = false;
    try testing.expectEqual(null, branchStep(&job, &ds, &w, &progress));
    try testing.expectEqual(@as(u64, 4096), ds[0].state.done); // the pipe took one page
    try testing.expectEqual(@as(u64, 4096), ds[0].state.scratch_off);
    try testing.expectEqual(@as(u64, data.len), ds[0].state.scratch_len);

    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    while (ds[0].state.done < data.len) {
        try out.drainInto(&got);
        try testing.expectEqual(null, branchStep(&job, &ds, &w, &progress));
        assertPositions(&job, &ds);
    }
    try out.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
}

test "oc_run: a pipe source to a pipe and a checksum tap, until done" {
    const data = testBytes(200_000);
    var src = try TestPipe.open(1 << 20);
    defer src.close();
    const out = try TestPipe.open(1 << 20);
    defer out.close();
    const branch = try TestPipe.open(1 << 20);
    defer branch.close();
    const devnull = try openDevNull();
    defer _ = sys.close(devnull);
    try src.put(&data);
    _ = sys.close(src.w); // end of input once drained
    src.w = -1;
    var scratch: [65536]u8 = undefined;

    var job: Job = undefined;
    var ds: [2]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    job.config.src_fd = src.r;
    job.config.source = .pipe;
    job.config.stage_r = src.r;
    job.config.null_fd = devnull;
    job.config.chunk = 65536;
    job.config.stage_size = 1 << 20;
    job.config.budget_ns = 5_000_000_000;
    job.config.hash_alg = .xxh64;
    var polls: [pollSlots(ds.len)]sys.PollFd = undefined;
    job.config.poll_fds = @intFromPtr(&polls);
    job.config.poll_cap = polls.len;
    ds[0].config.fd = out.w;
    ds[0].config.feed = .tee;
    ds[1].config = .{ .feed = .branch_hash, .branch_r = branch.r, .branch_w = branch.w, .scratch = @intFromPtr(&scratch), .scratch_cap = scratch.len };
    try testing.expectEqual(@as(isize, 0), oc_hash_job_begin(&job));

    try testing.expectEqual(Status.done, oc_run(&job, &ds));
    try testing.expectEqual(@as(u64, data.len), job.state.taken);
    try testing.expectEqual(@as(u64, data.len), ds[0].state.done);
    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    try out.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
    var digest: [hash.digest_max]u8 = undefined;
    try testing.expectEqual(@as(isize, 8), oc_hash_job_end(&job, &digest));
    try testing.expectEqual(std.hash.XxHash64.hash(0, &data), std.mem.readInt(u64, digest[0..8], .big));
    try testing.expectEqual(@as(isize, 0), oc_run_release(&job));
}

test "oc_run: a destination tee() cannot feed is a dest_error with EINVAL and the call" {
    const src = try TestPipe.open(null);
    defer src.close();
    const devnull = try openDevNull();
    defer _ = sys.close(devnull);
    try src.put("hello");
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(ds.len)]sys.PollFd = undefined;
    job.config = .{ .src_fd = src.r, .source = .pipe, .stage_r = src.r, .null_fd = devnull, .ndest = 1, .chunk = 4096, .stage_size = 65536, .budget_ns = 1_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config.fd = devnull; // a character device: tee() wants a pipe
    ds[0].config.feed = .tee;
    try testing.expectEqual(Status.dest_error, oc_run(&job, &ds));
    try testing.expectEqual(@as(i32, 0), job.state.err_dest);
    try testing.expectEqual(@as(i32, @intFromEnum(E.INVAL)), ds[0].state.err);
    try testing.expectEqual(Call.tee, ds[0].state.err_call);
}

test "oc_run: an output pipe whose reader left is an EPIPE dest_error while the source is idle" {
    var src = try TestPipe.open(null); // its writer stays open: the source is idle, not at EOF
    defer src.close();
    var out = try TestPipe.open(null);
    defer out.close();
    const devnull = try openDevNull();
    defer _ = sys.close(devnull);
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(ds.len)]sys.PollFd = undefined;
    job.config = .{ .src_fd = src.r, .source = .pipe, .stage_r = src.r, .null_fd = devnull, .ndest = 1, .chunk = 4096, .stage_size = 65536, .budget_ns = 20_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = out.w, .feed = .tee, .flags = dest_watch_reader };
    try testing.expectEqual(Status.again, oc_run(&job, &ds)); // idle: the budget runs out
    _ = sys.close(out.r);
    out.r = out.w;
    out.w = -1;
    job.config.budget_ns = 60_000_000_000; // would wait a minute if nobody noticed
    const t0 = sys.nowNs();
    try testing.expectEqual(Status.dest_error, oc_run(&job, &ds));
    try testing.expect(sys.nowNs() - t0 < 10_000_000_000);
    try testing.expectEqual(@as(i32, @intFromEnum(E.PIPE)), ds[0].state.err);
    try testing.expectEqual(Call.poll, ds[0].state.err_call);
}

test "oc_run: from a source pipe, the mover gets the stage by splice(), the others by tee(), alone or not" {
    const data = testBytes(300_000);
    for ([_]usize{ 1, 3 }) |n| {
        var src = try TestPipe.open(1 << 20);
        defer src.close();
        var outs: [3]TestPipe = undefined;
        for (outs[0..n]) |*o| o.* = try TestPipe.open(1 << 20);
        defer for (outs[0..n]) |o| o.close();
        const devnull = try openDevNull();
        defer _ = sys.close(devnull);
        try src.put(&data);
        _ = sys.close(src.w);
        src.w = -1;
        var job: Job = undefined;
        var ds: [3]Dest = undefined;
        oc_job_init(&job, &ds, @intCast(n));
        var polls: [pollSlots(3)]sys.PollFd = undefined;
        job.config = .{ .src_fd = src.r, .source = .pipe, .stage_r = src.r, .null_fd = devnull, .ndest = @intCast(n), .chunk = 65536, .stage_size = 1 << 20, .budget_ns = 5_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
        for (ds[0..n], outs[0..n]) |*d, o| d.config = .{ .fd = o.w, .feed = .tee };
        ds[n - 1].config.flags = dest_mover;
        try testing.expectEqual(Status.done, oc_run(&job, ds[0..n].ptr));
        try testing.expectEqual(@as(u64, data.len), job.state.taken);
        for (ds[0..n], outs[0..n]) |d, o| {
            try testing.expectEqual(@as(u64, data.len), d.state.done);
            var got = std.ArrayList(u8).init(testing.allocator);
            defer got.deinit();
            try o.drainInto(&got);
            try testing.expectEqualSlices(u8, &data, got.items);
        }
    }
}

/// A job that runs (read_pipe from /dev/null, a stage pipe, one destination
/// pipe and a checksum tap), for the invalid-job tests to break one field at a time.
const ValidJob = struct {
    job: Job = undefined,
    ds: [2]Dest = undefined,
    polls: [pollSlots(2)]sys.PollFd = undefined,
    buf: [4096]u8 = undefined,
    scratch: [4096]u8 = undefined,
    src: i32,
    devnull: i32,
    stage: TestPipe,
    out: TestPipe,
    branch: TestPipe,

    fn open() !ValidJob {
        const src = sys.call(.openat, .{ sys.arg(-100), @intFromPtr("/dev/null"), O_CLOEXEC, 0 });
        if (src < 0) return error.Open;
        return .{ .src = @intCast(src), .devnull = try openDevNull(), .stage = try TestPipe.open(null), .out = try TestPipe.open(null), .branch = try TestPipe.open(null) };
    }
    fn close(v: *ValidJob) void {
        _ = sys.close(v.src);
        _ = sys.close(v.devnull);
        v.stage.close();
        v.out.close();
        v.branch.close();
    }
    /// Sets every field to what TypeScript would (the checksum is a tap with a branch).
    fn reset(v: *ValidJob) void {
        oc_job_init(&v.job, &v.ds, v.ds.len);
        v.job.config = .{ .src_fd = v.src, .source = .read_pipe, .stage_r = v.stage.r, .stage_w = v.stage.w, .null_fd = v.devnull, .ndest = 2, .chunk = v.buf.len, .stage_size = 65536, .buf = @intFromPtr(&v.buf), .budget_ns = 1_000_000_000, .poll_fds = @intFromPtr(&v.polls), .poll_cap = v.polls.len };
        v.ds[0].config = .{ .fd = v.out.w, .feed = .tee };
        v.ds[1].config = .{ .feed = .branch_hash, .branch_r = v.branch.r, .branch_w = v.branch.w, .scratch = @intFromPtr(&v.scratch), .scratch_cap = v.scratch.len };
    }
    /// oc_run on the job as it is: the status, and whether anything ran.
    fn run(v: *ValidJob) struct { Status, bool } {
        const status = oc_run(&v.job, &v.ds);
        return .{ status, v.job.state.eof or v.job.state.err_dest != -1 or v.job.state.err_call != .none };
    }
};

test "oc_run: a malformed job is invalid_job and nothing runs; the well-formed one runs" {
    var v = try ValidJob.open();
    defer v.close();
    v.reset();
    try testing.expectEqual(Status.done, v.run()[0]); // the control: /dev/null is empty

    const breakers = .{
        struct { // a value outside its enum: read as its integer, never as the enum
            fn f(j: *ValidJob) void {
                @as(*u32, @ptrCast(&j.ds[0].config.feed)).* = 99;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                @as(*u32, @ptrCast(&j.job.config.source)).* = 99;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                @as(*u32, @ptrCast(&j.job.config.hash_alg)).* = 99;
            }
        },
        struct { // no room to poll
            fn f(j: *ValidJob) void {
                j.job.config.poll_cap = pollSlots(2) - 1;
            }
        },
        struct { // 0 bytes a read: would look like the end of the source
            fn f(j: *ValidJob) void {
                j.job.config.chunk = 0;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.job.config.buf = 0;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.job.config.null_fd = -1;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.job.config.stage_size = 0;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.job.config.stage_w = -1;
            }
        },
        struct { // its milliseconds would not fit poll()'s i32
            fn f(j: *ValidJob) void {
                j.job.config.budget_ns = max_budget_ns + 1;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.ds[1].config.scratch = 0;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.ds[1].config.branch_w = -1;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.ds[0].config.fd = -1;
            }
        },
        struct { // fed from a buffer a pipe source does not have: would wait forever
            fn f(j: *ValidJob) void {
                j.job.config.source = .pipe;
                j.job.config.stage_r = j.src;
                j.ds[0].config.feed = .write;
            }
        },
        struct { // fed from a stage the copy source does not have
            fn f(j: *ValidJob) void {
                j.job.config.source = .read_buf;
            }
        },
        struct {
            fn f(j: *ValidJob) void {
                j.job.config.source = .mmap_buf;
                j.job.config.map_len = 0;
                j.ds[0].config.feed = .write;
                j.ds[1].config.feed = .hash;
            }
        },
    };
    inline for (breakers, 0..) |breaker, i| {
        v.reset();
        breaker.f(&v);
        const status, const ran = v.run();
        testing.expectEqual(Status.invalid_job, status) catch |err| {
            std.debug.print("breaker {d} was not refused\n", .{i});
            return err;
        };
        try testing.expect(!ran);
    }
}

test "oc_run: a budget at the largest that fits poll()'s i32 is still valid" {
    var v = try ValidJob.open();
    defer v.close();
    v.reset();
    v.job.config.budget_ns = max_budget_ns;
    try testing.expectEqual(Status.done, v.run()[0]);
}

test "oc_run: a busy batch (always progressing) still sees the wake fd, and returns woken at once" {
    const zero_r = sys.call(.openat, .{ sys.arg(-100), @intFromPtr("/dev/zero"), O_CLOEXEC, 0 });
    try testing.expect(zero_r >= 0);
    const zero: i32 = @intCast(zero_r);
    defer _ = sys.close(zero);
    const devnull = try openDevNull();
    defer _ = sys.close(devnull);
    const wake_r = sys.call(.eventfd2, .{ 1, O_NONBLOCK | O_CLOEXEC }); // already signalled
    try testing.expect(wake_r >= 0);
    const wake: i32 = @intCast(wake_r);
    defer _ = sys.close(wake);
    var buf: [65536]u8 = undefined;
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(ds.len)]sys.PollFd = undefined;
    job.config = .{ .src_fd = zero, .source = .read_buf, .wake_fd = wake, .ndest = 1, .chunk = buf.len, .buf = @intFromPtr(&buf), .budget_ns = 10_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = devnull, .feed = .write };
    const t0 = sys.nowNs();
    try testing.expectEqual(Status.woken, oc_run(&job, &ds));
    try testing.expect(sys.nowNs() - t0 < 5_000_000_000); // not the 10 s budget
    // The signal was taken: the next batch runs out its budget, not woken again at once.
    job.config.budget_ns = 50_000_000;
    try testing.expectEqual(Status.again, oc_run(&job, &ds));
}

test "oc_run: a blocking socket whose peer never reads does not hold the batch (dest_socket)" {
    const zero_r = sys.call(.openat, .{ sys.arg(-100), @intFromPtr("/dev/zero"), O_CLOEXEC, 0 });
    try testing.expect(zero_r >= 0);
    const zero: i32 = @intCast(zero_r);
    defer _ = sys.close(zero);
    var pair: [2]i32 = undefined;
    // Blocking (no SOCK_NONBLOCK), as a borrowed socket may be; nobody reads pair[1].
    try testing.expectEqual(@as(isize, 0), sys.call(.socketpair, .{ linux.AF.UNIX, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0, @intFromPtr(&pair) }));
    defer for (pair) |fd| {
        _ = sys.close(fd);
    };
    var buf: [65536]u8 = undefined;
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(ds.len)]sys.PollFd = undefined;
    job.config = .{ .src_fd = zero, .source = .read_buf, .ndest = 1, .chunk = buf.len, .buf = @intFromPtr(&buf), .budget_ns = 100_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = pair[0], .feed = .write, .flags = dest_socket };
    const t0 = sys.nowNs();
    // A write() would block once the socket's buffers are full; send(MSG_DONTWAIT) says EAGAIN.
    try testing.expectEqual(Status.again, oc_run(&job, &ds));
    try testing.expect(sys.nowNs() - t0 < 5_000_000_000);
    try testing.expect(ds[0].state.done > 0);
}

/// A memfd (a file in memory) holding `bytes`: a real regular file to map and truncate.
fn testFile(bytes: []const u8) !i32 {
    const r = sys.call(.memfd_create, .{ @intFromPtr("onecopy-test"), 1 }); // MFD_CLOEXEC
    if (r < 0) return error.Memfd;
    const fd: i32 = @intCast(r);
    var off: usize = 0;
    while (off < bytes.len) {
        const n = sys.write(fd, bytes[off..].ptr, bytes.len - off);
        if (n <= 0) return error.Write;
        off += @intCast(n);
    }
    if (sys.call(.lseek, .{ sys.arg(fd), 0, 0 }) != 0) return error.Seek;
    return fd;
}

test "source step, read_pipe: a chunk is read only once the stage has all of the last one" {
    const data = testBytes(100_000);
    const file = try testFile(&data);
    defer _ = sys.close(file);
    const stage = try TestPipe.open(16384); // smaller than a chunk: rounds wait for room
    defer stage.close();
    var buf: [32768]u8 = undefined;
    var job = Job{ .config = .{ .src_fd = file, .source = .read_pipe, .stage_r = stage.r, .stage_w = stage.w, .chunk = buf.len, .buf = @intFromPtr(&buf), .ndest = 1 } };
    var ds = [1]Dest{.{ .config = .{ .fd = -1, .feed = .tee } }}; // keeps the stage active
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    while (!job.state.eof or job.state.tail < job.state.taken) {
        var w = Waits{ .fds = &polls };
        var progress = false;
        try testing.expectEqual(null, sourceStep(&job, &ds, &w, &progress));
        const s = job.state;
        try testing.expect(s.tail <= s.taken and s.taken - s.round_start <= buf.len);
        try testing.expect(s.round_start <= s.tail); // never read past a round the stage lacks
        try stage.drainInto(&got);
        ds[0].state.fed = job.state.tail; // as if tee()d and consumed
        job.state.head = job.state.tail;
    }
    try testing.expectEqualSlices(u8, &data, got.items);
    try testing.expectEqual(@as(u64, data.len), job.state.taken);
}

test "source step, vmsplice: fresh pages every round, never a page written twice" {
    const data = testBytes(3 * 65536 + 123);
    const file = try testFile(&data);
    defer _ = sys.close(file);
    const stage = try TestPipe.open(1 << 20);
    defer stage.close();
    var job = Job{ .config = .{ .src_fd = file, .source = .vmsplice, .stage_r = stage.r, .stage_w = stage.w, .chunk = 65536, .ndest = 1 } };
    var ds = [1]Dest{.{ .config = .{ .fd = -1, .feed = .tee } }};
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    var rounds: usize = 0;
    while (!job.state.eof) {
        var w = Waits{ .fds = &polls };
        var progress = false;
        const before = job.state.round_end;
        try testing.expectEqual(null, sourceStep(&job, &ds, &w, &progress));
        if (job.state.round_end != before) rounds += 1;
        ds[0].state.fed = job.state.tail;
        job.state.head = job.state.tail;
    }
    try testing.expectEqual(@as(usize, 4), rounds);
    // Nothing was drained until now: the pipe still references every round's
    // pages. Had a round reused the last one's, the stage would hold its bytes twice.
    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    try stage.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
    try testing.expectEqual(@as(isize, 0), oc_run_release(&job));
    try testing.expectEqual(@as(u64, 0), job.state.round_ptr);
}

test "source step, splice_in: a socket's bytes go into the stage up to its room, then EOF" {
    var pair: [2]i32 = undefined;
    try testing.expectEqual(@as(isize, 0), sys.call(.socketpair, .{ 1, 1 | O_NONBLOCK | O_CLOEXEC, 0, @intFromPtr(&pair) })); // AF_UNIX, SOCK_STREAM
    defer _ = sys.close(pair[0]);
    const data = testBytes(50_000);
    try testing.expectEqual(@as(isize, data.len), sys.write(pair[1], &data, data.len));
    _ = sys.close(pair[1]); // EOF once drained
    const stage = try TestPipe.open(null);
    defer stage.close();
    var job = Job{ .config = .{ .src_fd = pair[0], .source = .splice_in, .stage_r = stage.r, .stage_w = stage.w, .chunk = 65536, .stage_size = 16384, .ndest = 1 } };
    var ds = [1]Dest{.{ .config = .{ .fd = -1, .feed = .tee } }};
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    while (!job.state.eof) {
        var w = Waits{ .fds = &polls };
        var progress = false;
        try testing.expectEqual(null, sourceStep(&job, &ds, &w, &progress));
        try testing.expect(job.state.tail - job.state.head <= job.config.stage_size);
        try testing.expectEqual(job.state.tail, job.state.taken); // no buffer: taken is what the stage got
        try stage.drainInto(&got);
        job.state.head = job.state.tail;
    }
    try testing.expectEqualSlices(u8, &data, got.items);
}

test "mmap_buf: the window slides once every writer has finished it; a file cut short is source_shrank" {
    const data = testBytes(5 * 4096 + 100);
    const file = try testFile(&data);
    defer _ = sys.close(file);
    const out = try TestPipe.open(1 << 20);
    defer out.close();
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    job.config = .{ .src_fd = file, .source = .mmap_buf, .ndest = 1, .chunk = 4096, .src_size = data.len, .map_len = 8192, .budget_ns = 1_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = out.w, .feed = .write };
    try testing.expectEqual(Status.done, oc_run(&job, &ds));
    try testing.expectEqual(@as(u64, 4 * 4096), job.state.map_off); // windows at 0, 8192, 16384
    var got = std.ArrayList(u8).init(testing.allocator);
    defer got.deinit();
    try out.drainInto(&got);
    try testing.expectEqualSlices(u8, &data, got.items);
    try testing.expectEqual(@as(isize, 0), oc_run_release(&job));

    // The same file cut to one page after the first window: the next window
    // is past its end, and write() from it faults: source_shrank, no SIGBUS.
    const small = try TestPipe.open(4096);
    defer small.close();
    oc_job_init(&job, &ds, ds.len);
    job.config = .{ .src_fd = file, .source = .mmap_buf, .ndest = 1, .chunk = 4096, .src_size = data.len, .map_len = 8192, .budget_ns = 20_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = small.w, .feed = .write };
    try testing.expectEqual(Status.again, oc_run(&job, &ds)); // one page in, the pipe is full
    try testing.expectEqual(@as(isize, 0), sys.call(.ftruncate, .{ sys.arg(file), 4096 }));
    got.clearRetainingCapacity();
    var status = Status.again;
    while (status == .again) {
        try small.drainInto(&got);
        status = oc_run(&job, &ds);
    }
    try testing.expectEqual(Status.source_shrank, status);
    try testing.expect(ds[0].state.done < data.len);
    try testing.expectEqual(@as(isize, 0), oc_run_release(&job));
}

test "mmap_buf: the checksum reads the file with pread(), and a file cut short is source_shrank, not a SIGBUS" {
    const data = testBytes(3 * 4096);
    const file = try testFile(&data);
    defer _ = sys.close(file);
    try testing.expectEqual(@as(isize, 0), sys.call(.ftruncate, .{ sys.arg(file), 4096 }));
    var scratch: [4096]u8 = undefined;
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    job.config = .{ .src_fd = file, .source = .mmap_buf, .ndest = 1, .chunk = 4096, .src_size = data.len, .map_len = 8192, .budget_ns = 1_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len, .hash_alg = .xxh64 };
    ds[0].config = .{ .feed = .hash, .scratch = @intFromPtr(&scratch), .scratch_cap = scratch.len };
    try testing.expectEqual(@as(isize, 0), oc_hash_job_begin(&job));
    try testing.expectEqual(Status.source_shrank, oc_run(&job, &ds));
    try testing.expectEqual(@as(u64, 4096), ds[0].state.done);
    try testing.expectEqual(@as(isize, 0), oc_run_release(&job));
}

test "oc_run: a write() that accepts nothing is dest_wrote_nothing, not an errno" {
    // /proc/PID/mem, opened while the child lived, once its memory is gone: write() returns 0.
    var hold = try TestPipe.open(null);
    defer hold.close();
    const pid = std.os.linux.fork();
    if (pid == 0) { // waits for the parent to close its end, then exits
        _ = sys.close(hold.w);
        var p = [1]sys.PollFd{.{ .fd = hold.r, .events = POLLIN, .revents = 0 }};
        _ = sys.poll(&p, 1, -1);
        std.os.linux.exit(0);
    }
    const path = try std.fmt.allocPrintZ(testing.allocator, "/proc/{d}/mem", .{pid});
    defer testing.allocator.free(path);
    const mem_r = sys.call(.openat, .{ sys.arg(-100), @intFromPtr(path.ptr), 1 | O_CLOEXEC, 0 }); // O_WRONLY
    _ = sys.close(hold.w);
    hold.w = -1;
    var status: u32 = 0;
    _ = std.os.linux.waitpid(@intCast(pid), &status, 0);
    if (mem_r < 0) return error.SkipZigTest; // no access to another process's memory here
    const mem: i32 = @intCast(mem_r);
    defer _ = sys.close(mem);
    const zero_r = sys.call(.openat, .{ sys.arg(-100), @intFromPtr("/dev/zero"), O_CLOEXEC, 0 });
    const zero: i32 = @intCast(zero_r);
    defer _ = sys.close(zero);
    var buf: [4096]u8 = undefined;
    var job: Job = undefined;
    var ds: [1]Dest = undefined;
    oc_job_init(&job, &ds, ds.len);
    var polls: [pollSlots(1)]sys.PollFd = undefined;
    job.config = .{ .src_fd = zero, .source = .read_buf, .ndest = 1, .chunk = buf.len, .buf = @intFromPtr(&buf), .budget_ns = 1_000_000_000, .poll_fds = @intFromPtr(&polls), .poll_cap = polls.len };
    ds[0].config = .{ .fd = mem, .feed = .write };
    try testing.expectEqual(Status.dest_wrote_nothing, oc_run(&job, &ds));
    try testing.expectEqual(@as(i32, 0), job.state.err_dest);
    try testing.expectEqual(Call.write, ds[0].state.err_call);
    try testing.expectEqual(@as(i32, 0), ds[0].state.err);
}
