//! The mirror engine: one epoll loop that owns a listener and every connection
//! it accepts, run in batches by TypeScript (one FFI call per batch, like the
//! fan-out loop). TypeScript sets the policy in `Loop` (targets, max lag, what
//! a full backlog does, sampling, timeouts) and receives one `Report` per
//! finished connection; nothing here crosses FFI per chunk or per connection.
//!
//! A connection is a set of endpoints joined by directed flows, so that a
//! broadcast hub can reuse it (one source flow, many sinks):
//!   endpoint 0  the client               source of flow 0, sink of flow 1
//!   endpoint 1  the primary              sink of flow 0, source of flow 1
//!   endpoint 2… the shadows              sinks of flow 0; their replies are read and dropped
//! A flow owns a ring buffer: the source is read() into it once (the one
//! stable copy) and each sink is write()n from it at its own pace. Positions
//! are absolute stream offsets (`tail` for the source, `done` per sink), so a
//! partial count is just a smaller step. The ring lives only while it holds
//! bytes: an idle connection owns no buffer (1000 idle connections cost their
//! sockets and ~1 KiB of table each).
//!
//! Isolation: essential sinks (the primary, the client) bound how far the
//! source may run ahead (`window`): they are back-pressure. A shadow never is:
//! its lag (`tail - done`) may grow to `max_lag`, then the shadow is dropped
//! for this connection (`on_lag = disconnect`), or, with `on_lag = block`, it
//! bounds the source like an essential sink. Bytes are never skipped.
//!
//! Half-close: the source's EOF becomes shutdown(SHUT_WR) on each sink once it
//! has every byte. A reset (ECONNRESET, EPIPE) is propagated as a reset
//! (SO_LINGER 0 then close). The client and primary are closed when both
//! flows have ended; shadows then get `grace_ns` to take their backlog.
const std = @import("std");
const linux = std.os.linux;
const sys = @import("sys.zig");
const Xxh64 = std.hash.XxHash64;

pub const max_shadows = 8;
const max_eps = 2 + max_shadows;
const client = 0;
const primary = 1;
const first_shadow = 2;

/// What `oc_mirror_run` returned.
pub const Status = enum(i32) {
    /// The time budget passed with nothing to report.
    again = 0,
    /// TypeScript wrote to the wake eventfd.
    woken = 1,
    /// Reports are waiting in the report array (`Loop.nreports`).
    events = 2,
    /// `abort` was asked and every connection is closed and reported.
    done = 3,
    /// epoll itself failed (`Loop.err`); nothing else can go on.
    failed = 4,
};

/// What a full shadow backlog does.
pub const OnLag = enum(u32) { disconnect = 0, block = 1 };

/// How an endpoint's part of a connection ended (reported per endpoint).
pub const Outcome = enum(u32) {
    /// Not used for this connection (sampled out) or still going.
    none = 0,
    /// Every byte delivered, ended by a clean close.
    complete = 1,
    /// A shadow whose backlog passed max_lag (or that had not taken it when the grace ran out).
    lagged_out = 2,
    /// connect() was refused (or failed at once).
    refused = 3,
    /// connect() did not finish within the connect timeout.
    timeout = 4,
    /// Reset by the peer, or by us to propagate a reset.
    reset = 5,
    /// Another error (errno in the report).
    failed = 6,
    /// Closed by `abort` (drain timeout).
    aborted = 7,
};

/// Where to connect: a sockaddr (in, in6 or un) and whether it is TCP.
pub const Target = extern struct {
    addr: [112]u8,
    len: u32,
    tcp: u32,
};

/// Shared with TypeScript (ffi/layout.ts). TypeScript writes the settings
/// before `oc_mirror_init` and `accepting`/`abort` at any time (then wakes the
/// loop); the engine writes the counters and `nreports`.
pub const Loop = extern struct {
    epoll_fd: i32,
    listen_fd: i32,
    wake_fd: i32,
    capture_dir: i32,
    ntargets: u32,
    on_lag: u32,
    sample_bp: u32,
    max_conns: u32,
    accepting: u32,
    abort: u32,
    nreports: u32,
    report_cap: u32,
    err: i32,
    err_call: u32,
    listen_tcp: u32,
    /// Clients accepted per listener event. 1 when loops share the listener:
    /// each arrival then wakes a loop that is waiting, so the load spreads.
    accept_batch: u32,
    max_lag: u64,
    window: u64,
    connect_timeout_ns: u64,
    grace_ns: u64,
    budget_ns: u64,
    state: u64,
    accepted: u64,
    active: u64,
    closed: u64,
    primary_failed: u64,
    shadow_dropped: u64,
    shadow_failed: u64,
    bytes_in: u64,
    bytes_out: u64,
    accept_errors: u64,
    targets: [1 + max_shadows]Target,
    /// Connection ids are id_base, id_base + id_step, …: loops that share a
    /// listener (one per core) number their connections apart.
    id_base: u64,
    id_step: u64,
    /// The loops sharing the listener (`group_len` Peers, this one at
    /// `group_index`): each publishes how many connections it holds, and the
    /// least loaded takes the next client (see `acceptSome`).
    group: u64,
    group_len: u32,
    group_index: u32,
    /// `Method`: how bytes move.
    method: u32,
    /// A bulk flow's read window grows from `window` up to this (a power of two).
    window_max: u32,
};

/// The data paths (see `flowStep` and `spliceStep`).
pub const Method = enum(u32) {
    /// read() into the flow's ring, write() to each sink.
    copy = 0,
    /// splice() into a stage pipe, tee() to each shadow's pipe, splice() out.
    splice = 1,
    /// copy, and a flow that turns out to be bulk (its window grew to
    /// `window_max`) switches to splice once its ring is empty: small flows
    /// need no pipes, bulk flows move pages instead of copying them.
    auto = 2,
};

/// One loop of a group, as the others see it.
pub const Peer = extern struct {
    /// Connections it holds (written by it only, read by every loop).
    used: u64,
    /// An eventfd it watches: written to hand it the next client.
    kick_fd: i32,
    _pad: u32,
};

/// One finished connection, as TypeScript reads it.
pub const Report = extern struct {
    id: u64,
    start_ns: u64,
    end_ns: u64,
    bytes_in: u64,
    bytes_out: u64,
    to_primary: u64,
    from_primary: u64,
    hash_in: u64,
    hash_out: u64,
    client_outcome: u32,
    client_errno: i32,
    primary_outcome: u32,
    primary_errno: i32,
    mirrored: u32,
    captured: u32,
    capture_errno: i32,
    addr_len: u32,
    addr: [32]u8,
    shadow_bytes: [max_shadows]u64,
    shadow_outcome: [max_shadows]u32,
    shadow_errno: [max_shadows]i32,
};

/// The life of one endpoint.
const EpState = enum(u8) {
    /// No socket: not used for this connection (sampled out, no such shadow).
    unused,
    /// A non-blocking connect() is in flight; its bytes wait in the ring.
    connecting,
    /// Connected: bytes flow both ways (until shut down).
    open,
    /// Closed; `outcome` says how.
    closed,
};

const Endpoint = struct {
    fd: i32 = -1,
    state: EpState = .unused,
    /// Edge-triggered readiness: set by epoll, cleared by EAGAIN.
    readable: bool = false,
    writable: bool = false,
    /// The peer sent its FIN (read returned 0).
    rd_eof: bool = false,
    /// We sent ours (shutdown(SHUT_WR) after the last byte).
    wr_shut: bool = false,
    outcome: Outcome = .none,
    err: i32 = 0,
    /// Bytes written into this endpoint (it is a sink of exactly one flow).
    done: u64 = 0,
    /// connect() deadline (monotonic ns).
    deadline: u64 = 0,
    /// splice path, shadows only: the shadow's own pipe (its backlog), its
    /// capacity, and the bytes tee()d into it.
    pipe_r: i32 = -1,
    pipe_w: i32 = -1,
    pipe_cap: u64 = 0,
    fed: u64 = 0,
};

/// Bytes from one source endpoint to a set of sinks, through a ring.
const Flow = struct {
    src: u8,
    sinks: u16,
    buf: usize = 0,
    cap: usize = 0,
    /// Bytes read from the source.
    tail: u64 = 0,
    eof: bool = false,
    /// Capture file of this direction (written from the ring) and its checksum.
    cap_fd: i32 = -1,
    cap_done: u64 = 0,
    hash: Xxh64 = Xxh64.init(0),
    /// splice path: the stage pipe that holds the current round.
    pipe_r: i32 = -1,
    pipe_w: i32 = -1,
    /// This flow moves bytes by the splice path (`spliceStep`).
    spliced: bool = false,
    /// auto: this flow stays on the copy path (see `trySplice`).
    no_splice: bool = false,
    /// copy path: how far the source may run ahead of an essential sink (0:
    /// `window`). Doubled, up to `window_max`, each time a read fills it: a
    /// bulk flow then moves more per syscall; idle, it is reset (see `sweep`).
    win: u64 = 0,
    /// Read from since the last sweep: a busy flow keeps its grown ring (a
    /// fresh one costs a page fault per page here, more than the copy).
    busy: bool = false,
};

const Conn = struct {
    gen: u32 = 0,
    /// Next slot in the free list or the report queue.
    next: u32 = nil,
    in_use: bool = false,
    /// On the ready list (to be pumped).
    queued: bool = false,
    /// Every fd closed; waiting to be reported.
    finished: bool = false,
    mirrored: bool = false,
    capture_errno: i32 = 0,
    id: u64 = 0,
    start_ns: u64 = 0,
    end_ns: u64 = 0,
    /// When the client and primary were closed (shadows' grace starts).
    main_done_at: u64 = 0,
    addr_len: u32 = 0,
    addr: [32]u8 = undefined,
    ep: [max_eps]Endpoint = [_]Endpoint{.{}} ** max_eps,
    flows: [2]Flow = .{ .{ .src = client, .sinks = 0 }, .{ .src = primary, .sinks = 1 << client } },
};

const nil: u32 = std.math.maxInt(u32);
const pool_max = 32;

/// The engine's own memory (one mmap), found through `Loop.state`.
const State = struct {
    conns: [*]Conn,
    ready: [*]u32,
    nslots: u32,
    free_head: u32 = nil,
    /// Slots ever used (the sweep looks at these only).
    high: u32 = 0,
    ready_head: u32 = 0,
    ready_len: u32 = 0,
    /// Finished connections waiting for room in the report array.
    done_head: u32 = nil,
    done_tail: u32 = nil,
    /// Connections in use, finished ones included (a slot is taken until reported).
    used: u32 = 0,
    listening: bool = false,
    next_id: u64 = 0,
    next_sweep: u64 = 0,
    first_report_at: u64 = 0,
    accept_pause_until: u64 = 0,
    pool: [pool_max]usize = undefined,
    pool_len: u32 = 0,
    scratch: usize = 0,
    mem_len: usize = 0,
};

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;
const EPOLLERR: u32 = 0x8;
const EPOLLHUP: u32 = 0x10;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLET: u32 = 1 << 31;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLL_CTL_ADD: usize = 1;
const EPOLL_CTL_DEL: usize = 2;
const O_CLOEXEC: u32 = 0o2000000;
const SOCK_STREAM: u32 = 1;
const SOCK_NONBLOCK: u32 = 0o4000;
const SOL_SOCKET: usize = 1;
const SO_ERROR: usize = 4;
const SO_LINGER: usize = 13;
const IPPROTO_TCP: usize = 6;
const TCP_NODELAY: usize = 1;
const SHUT_WR: usize = 1;
const F_SETPIPE_SZ: usize = 1031;
const F_GETPIPE_SZ: usize = 1032;
const FIONREAD: u32 = 0x541B;
const SPLICE_F_MOVE: u32 = 1;
const SPLICE_F_NONBLOCK: u32 = 2;
const ETIMEDOUT: i32 = 110;
const PROT_RW: u32 = 3;
const MAP_PRIVATE_ANON_NORESERVE: u32 = 0x02 | 0x20 | 0x4000;
const scratch_size = 64 * 1024;
const sweep_ns: u64 = 50_000_000;
const report_delay_ns: u64 = 2_000_000;
/// Bytes one connection may read per turn before the others get theirs.
const pump_quota: u64 = 1 << 20;
const tag_listener: u64 = 0xfe;
const tag_kick: u64 = 0xfd;
const tag_wake: u64 = 0xff;

fn realtimeNs() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.syscall2(.clock_gettime, @intFromEnum(linux.CLOCK.REALTIME), @intFromPtr(&ts));
    return @as(u64, @intCast(ts.sec)) * 1_000_000_000 + @as(u64, @intCast(ts.nsec));
}

/// epoll's user data: which endpoint of which slot, and the slot's
/// generation, so that an event queued for a slot's previous connection
/// (closed and reused in the same batch) is recognised and dropped.
fn tag(gen: u32, slot: u32, ep: u32) u64 {
    return (@as(u64, gen) << 32) | (@as(u64, slot) << 8) | ep;
}
fn tagGen(t: u64) u32 {
    return @truncate(t >> 32);
}
fn tagSlot(t: u64) u32 {
    return @truncate((t >> 8) & 0xff_ffff);
}
fn tagEp(t: u64) u32 {
    return @truncate(t & 0xff);
}

fn epollAdd(epfd: i32, fd: i32, events: u32, data: u64) isize {
    var ev = linux.epoll_event{ .events = events, .data = .{ .u64 = data } };
    return sys.call(.epoll_ctl, .{ sys.arg(epfd), EPOLL_CTL_ADD, sys.arg(fd), @intFromPtr(&ev) });
}

fn setInt(fd: i32, level: usize, name: usize, value: i32) void {
    var v = value;
    _ = sys.call(.setsockopt, .{ sys.arg(fd), level, name, @intFromPtr(&v), 4 });
}

/// Closes with SO_LINGER 0: the kernel sends a reset instead of a FIN.
fn closeReset(fd: i32) void {
    const linger = extern struct { onoff: i32, secs: i32 }{ .onoff = 1, .secs = 0 };
    _ = sys.call(.setsockopt, .{ sys.arg(fd), SOL_SOCKET, SO_LINGER, @intFromPtr(&linger), 8 });
    _ = sys.close(fd);
}

fn mmapAnon(len: usize) usize {
    const r = sys.mmap(len, PROT_RW, MAP_PRIVATE_ANON_NORESERVE, -1, 0);
    return if (r < 0) 0 else @intCast(r);
}

fn stateOf(L: *Loop) *State {
    return @ptrFromInt(L.state);
}

fn isShadow(i: usize) bool {
    return i >= first_shadow;
}

fn alive(e: *const Endpoint) bool {
    return e.state == .connecting or e.state == .open;
}

/// The smallest power of two >= n.
fn pow2(n: u64) u64 {
    var p: u64 = 1;
    while (p < n) p <<= 1;
    return p;
}

// ---- buffers ---------------------------------------------------------------

/// A ring buffer of `cap` bytes: `window`-sized ones come from a small pool.
fn bufAcquire(L: *Loop, st: *State, cap: usize) usize {
    if (cap == L.window and st.pool_len > 0) {
        st.pool_len -= 1;
        return st.pool[st.pool_len];
    }
    return mmapAnon(cap);
}

fn bufRelease(L: *Loop, st: *State, buf: usize, cap: usize) void {
    if (cap == L.window and st.pool_len < pool_max) {
        st.pool[st.pool_len] = buf;
        st.pool_len += 1;
    } else _ = sys.munmap(buf, cap);
}

/// The lowest position any live sink (or the capture) still needs.
fn flowLow(c: *const Conn, f: *const Flow) u64 {
    var lo = f.tail;
    for (0..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const e = &c.ep[i];
        if (alive(e)) lo = @min(lo, e.done);
    }
    if (f.cap_fd >= 0) lo = @min(lo, f.cap_done);
    return lo;
}

/// How many bytes the source may be read ahead by now: essential sinks allow
/// `window` of lag, shadows under `block` allow `max_lag`, other shadows no
/// limit here (they are dropped past max_lag after the read).
fn windowOf(L: *const Loop, f: *const Flow) u64 {
    return if (f.win == 0) L.window else f.win;
}

fn readRoom(L: *const Loop, c: *const Conn, f: *const Flow) u64 {
    const window = windowOf(L, f);
    var room: u64 = window;
    for (0..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const e = &c.ep[i];
        if (!alive(e)) continue;
        const lag = f.tail - e.done;
        if (!isShadow(i)) {
            room = @min(room, window -| lag);
        } else if (L.on_lag == @intFromEnum(OnLag.block)) {
            room = @min(room, L.max_lag -| lag);
        }
    }
    return room;
}

/// Makes the ring big enough for `room` more bytes (growing it up to
/// max_lag + window); returns how many fit. 0 when memory ran out.
fn ensureRoom(L: *Loop, st: *State, c: *const Conn, f: *Flow, room: u64) u64 {
    const used = f.tail - flowLow(c, f);
    const limit = pow2(L.max_lag + @max(L.window, L.window_max));
    const need = @min(used + room, limit);
    if (f.buf != 0 and need <= f.cap) return @min(room, f.cap - used);
    const cap: usize = @intCast(@max(L.window, pow2(need)));
    const buf = bufAcquire(L, st, cap);
    if (buf == 0) return 0;
    if (f.buf != 0) {
        // Copy the live bytes to the same positions modulo the new size.
        var pos = f.tail - used;
        while (pos < f.tail) {
            const from = pos & (f.cap - 1);
            const to = pos & (cap - 1);
            const n: usize = @intCast(@min(f.tail - pos, f.cap - from, cap - to));
            @memcpy(@as([*]u8, @ptrFromInt(buf + to))[0..n], @as([*]const u8, @ptrFromInt(f.buf + from))[0..n]);
            pos += n;
        }
        bufRelease(L, st, f.buf, f.cap);
    }
    f.buf = buf;
    f.cap = cap;
    return @min(room, cap - used);
}

/// An empty ring goes back to the pool; a grown one (a bulk flow's) is kept
/// while the flow is busy, and released when a sweep finds it empty and not
/// read from since the last sweep (`idle`).
fn releaseIfEmpty(L: *Loop, st: *State, c: *const Conn, f: *Flow) void {
    releaseEmpty(L, st, c, f, false);
}

fn releaseEmpty(L: *Loop, st: *State, c: *const Conn, f: *Flow, idle: bool) void {
    if (f.buf != 0 and flowLow(c, f) == f.tail and (f.cap == L.window or idle)) {
        if (idle) f.win = 0;
        bufRelease(L, st, f.buf, f.cap);
        f.buf = 0;
        f.cap = 0;
    }
}

// ---- endpoints -------------------------------------------------------------

fn closeEp(L: *Loop, c: *Conn, i: usize, outcome: Outcome, err: i32, reset: bool) void {
    const e = &c.ep[i];
    if (e.fd >= 0) {
        if (reset) closeReset(e.fd) else _ = sys.close(e.fd);
    }
    e.fd = -1;
    closePipe(&e.pipe_r, &e.pipe_w);
    if (e.state == .connecting or e.state == .open) {
        e.outcome = outcome;
        e.err = err;
        if (isShadow(i)) switch (outcome) {
            .lagged_out => L.shadow_dropped += 1,
            .refused, .timeout, .reset, .failed => L.shadow_failed += 1,
            else => {},
        };
    }
    e.state = .closed;
    e.readable = false;
    e.writable = false;
}

fn closePipe(r: *i32, w: *i32) void {
    if (r.* >= 0) _ = sys.close(r.*);
    if (w.* >= 0) _ = sys.close(w.*);
    r.* = -1;
    w.* = -1;
}

/// A non-blocking pipe grown towards `size` (the kernel may refuse: EPERM past
/// pipe-max-size or the user's pipe pages); returns its capacity, 0 on failure.
fn openPipe(r: *i32, w: *i32, size: u64) u64 {
    var fds: [2]i32 = undefined;
    if (sys.pipe2(&fds, SOCK_NONBLOCK | O_CLOEXEC) < 0) return 0;
    r.* = fds[0];
    w.* = fds[1];
    // Past pipe-max-size the kernel refuses (EPERM): then take 1 MiB, its default.
    if (sys.call(.fcntl, .{ sys.arg(fds[1]), F_SETPIPE_SZ, @as(usize, @intCast(@min(size, 1 << 30))) }) < 0) {
        _ = sys.call(.fcntl, .{ sys.arg(fds[1]), F_SETPIPE_SZ, @as(usize, 1 << 20) });
    }
    const cap = sys.call(.fcntl, .{ sys.arg(fds[1]), F_GETPIPE_SZ, 0 });
    return if (cap > 0) @intCast(cap) else 0;
}

/// The splice path's pipes: a stage per flow, one pipe per shadow sized to
/// max_lag. On any failure (out of fds or pipe pages) the connection uses the
/// copy path instead.
fn openPipes(L: *const Loop, c: *Conn, f: *Flow) bool {
    if (openPipe(&f.pipe_r, &f.pipe_w, @max(L.window, L.window_max)) == 0) return false;
    for (first_shadow..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0 or !alive(&c.ep[i])) continue;
        const e = &c.ep[i];
        // Room for max_lag beside a round (a quarter), and slots for a fragmented stream.
        e.pipe_cap = openPipe(&e.pipe_r, &e.pipe_w, @max(L.max_lag + L.max_lag / 3, 64 * 1024));
        if (e.pipe_cap == 0) return false;
    }
    return true;
}

fn closeFlowPipes(c: *Conn, f: *Flow) void {
    closePipe(&f.pipe_r, &f.pipe_w);
    for (first_shadow..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) != 0) closePipe(&c.ep[i].pipe_r, &c.ep[i].pipe_w);
    }
}

/// Moves a flow to the splice path: at the start (`--method splice`) or, under
/// `auto`, once it is bulk and its ring is empty (every live sink has every
/// byte, so the positions carry over). Without pipes (out of fds or pipe
/// pages) it stays on the copy path.
fn trySplice(L: *Loop, st: *State, c: *Conn, f: *Flow) void {
    if (f.no_splice or f.cap_fd >= 0 or flowLow(c, f) != f.tail) return;
    const shadowed = f.sinks & ~@as(u16, (1 << client) | (1 << primary)) != 0;
    // Under block a shadow must get every byte, and a short tee() (a pipe out
    // of slots) cannot be continued: such flows keep copying.
    f.no_splice = L.method == @intFromEnum(Method.auto) and shadowed and L.on_lag == @intFromEnum(OnLag.block);
    if (f.no_splice) return;
    f.no_splice = !openPipes(L, c, f);
    if (f.no_splice) return closeFlowPipes(c, f);
    if (L.method == @intFromEnum(Method.auto) and shadowed) {
        // A spliced shadow's backlog is its pipe less a round (3/4 of it):
        // switch only if that honours max_lag (pipe-max-size, 1 MiB for an
        // unprivileged user, often does not: those flows keep copying).
        for (first_shadow..max_eps) |i| {
            if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0 or !alive(&c.ep[i])) continue;
            const cap = c.ep[i].pipe_cap;
            if (cap - cap / 4 < L.max_lag or cap < 64 * 1024) {
                f.no_splice = true;
                return closeFlowPipes(c, f);
            }
        }
    }
    for (first_shadow..max_eps) |i| c.ep[i].fed = c.ep[i].done;
    if (f.buf != 0) bufRelease(L, st, f.buf, f.cap);
    f.buf = 0;
    f.cap = 0;
    f.spliced = true;
}

fn closePipes(c: *Conn) void {
    for (&c.flows) |*f| closePipe(&f.pipe_r, &f.pipe_w);
    for (&c.ep) |*e| closePipe(&e.pipe_r, &e.pipe_w);
}

/// The client is gone (reset, or a write to it failed): reset everyone.
fn clientFailed(L: *Loop, c: *Conn, err: i32) void {
    closeEp(L, c, client, .reset, err, true);
    closeEp(L, c, primary, .reset, 0, true);
    for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .reset, 0, true);
    c.flows[0].eof = true;
    c.flows[1].eof = true;
}

/// The primary is gone: reset the client; shadows still get what was read
/// (as if the client had ended there).
fn primaryFailed(L: *Loop, c: *Conn, outcome: Outcome, err: i32) void {
    const connecting = c.ep[primary].state == .connecting;
    closeEp(L, c, primary, outcome, err, outcome == .reset);
    if (connecting) {
        // Never connected: close the client at once; shadows have nothing to mirror.
        L.primary_failed += 1;
        closeEp(L, c, client, .aborted, 0, false);
        for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .aborted, 0, true);
    } else {
        closeEp(L, c, client, .reset, 0, true);
    }
    c.flows[0].eof = true;
    c.flows[1].eof = true;
}

fn epFailed(L: *Loop, c: *Conn, i: usize, r: isize) void {
    const err: i32 = @intCast(-r);
    if (i == client) {
        clientFailed(L, c, err);
    } else if (i == primary) {
        primaryFailed(L, c, .reset, err);
    } else {
        closeEp(L, c, i, if (err == 104 or err == 32) .reset else .failed, err, true);
    }
}

/// Opens a non-blocking socket to target `t` for endpoint `i` and starts connect().
fn startConnect(L: *Loop, c: *Conn, slot: u32, i: usize, t: *const Target) void {
    const e = &c.ep[i];
    const family = std.mem.readInt(u16, t.addr[0..2], .little);
    const fd = sys.call(.socket, .{ family, SOCK_STREAM | SOCK_NONBLOCK | O_CLOEXEC, 0 });
    if (fd < 0) {
        e.state = .connecting;
        return connectFailed(L, c, i, @intCast(-fd));
    }
    e.fd = @intCast(fd);
    e.state = .connecting;
    if (t.tcp != 0) setInt(e.fd, IPPROTO_TCP, TCP_NODELAY, 1);
    const add = epollAdd(L.epoll_fd, e.fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, tag(c.gen, slot, @intCast(i)));
    if (add < 0) return connectFailed(L, c, i, @intCast(-add));
    const r = sys.call(.connect, .{ sys.arg(e.fd), @intFromPtr(&t.addr), t.len });
    if (r == 0) {
        e.state = .open;
        e.writable = true;
    } else if (sys.is(r, .INPROGRESS)) {
        e.deadline = sys.nowNs() + L.connect_timeout_ns;
    } else connectFailed(L, c, i, @intCast(-r));
}

fn connectFailed(L: *Loop, c: *Conn, i: usize, err: i32) void {
    const outcome: Outcome = if (err == ETIMEDOUT) .timeout else .refused;
    if (i == primary) primaryFailed(L, c, outcome, err) else closeEp(L, c, i, outcome, err, false);
}

/// The socket's pending error (SO_ERROR), which reading it clears.
fn socketError(fd: i32) i32 {
    var err: i32 = 0;
    var len: u32 = 4;
    const r = sys.call(.getsockopt, .{ sys.arg(fd), SOL_SOCKET, SO_ERROR, @intFromPtr(&err), @intFromPtr(&len) });
    return if (r < 0) @intCast(-r) else err;
}

/// EPOLLOUT (or an error) on a connecting socket: connect() has finished.
fn connectDone(L: *Loop, c: *Conn, i: usize) void {
    const e = &c.ep[i];
    const err = socketError(e.fd);
    if (err != 0) return connectFailed(L, c, i, err);
    e.state = .open;
    e.writable = true;
}

// ---- the data path -----------------------------------------------------------

/// One step of a flow: read the source once if there is room, write every
/// sink (the primary first: a shadow is never served before it), capture,
/// propagate EOF. Sets `progress` when anything moved.
fn flowStep(L: *Loop, st: *State, c: *Conn, f: *Flow, progress: *bool, moved: *u64) void {
    const s = &c.ep[f.src];
    if (!f.eof and s.state == .open and s.readable) {
        const room = readRoom(L, c, f);
        const n = if (room > 0) ensureRoom(L, st, c, f, room) else 0;
        if (n > 0) {
            const off = f.tail & (f.cap - 1);
            const len: usize = @intCast(@min(n, f.cap - off));
            const r = sys.read(s.fd, @ptrFromInt(f.buf + off), len);
            if (r > 0 and r == len and len == n and n == room) {
                // It filled all we allowed: a bulk flow; let it run further ahead.
                f.win = @min(windowOf(L, f) * 2, @max(L.window, L.window_max));
            }
            if (r > 0) {
                f.busy = true;
                const got: usize = @intCast(r);
                if (f.cap_fd >= 0) f.hash.update(@as([*]const u8, @ptrFromInt(f.buf + off))[0..got]);
                f.tail += got;
                moved.* += got;
                if (f.src == client) L.bytes_in += got;
                progress.* = true;
                dropLagging(L, c, f);
            } else if (r == 0) {
                // After a reset read() may say EOF (the FIN came first); SO_ERROR tells.
                const err = socketError(s.fd);
                if (err != 0) return epFailed(L, c, f.src, -@as(isize, err));
                f.eof = true;
                s.rd_eof = true;
                progress.* = true;
            } else if (sys.is(r, .AGAIN)) {
                s.readable = false;
            } else {
                epFailed(L, c, f.src, r);
                progress.* = true;
                return;
            }
        }
    }
    for (0..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const e = &c.ep[i];
        if (e.state != .open or e.wr_shut) continue;
        while (e.writable and e.done < f.tail) {
            const off = e.done & (f.cap - 1);
            const len: usize = @intCast(@min(f.tail - e.done, f.cap - off));
            const r = sys.write(e.fd, @ptrFromInt(f.buf + off), len);
            if (r > 0) {
                e.done += @intCast(r);
                if (i == client) L.bytes_out += @intCast(r);
                progress.* = true;
            } else if (sys.is(r, .AGAIN) or r == 0) {
                e.writable = false;
            } else {
                epFailed(L, c, i, r);
                progress.* = true;
                break;
            }
        }
        if (e.state == .open and f.eof and e.done == f.tail and !e.wr_shut) {
            _ = sys.call(.shutdown, .{ sys.arg(e.fd), SHUT_WR });
            e.wr_shut = true;
            progress.* = true;
        }
    }
    captureStep(c, f);
    if (L.method == @intFromEnum(Method.auto) and f.win >= L.window_max and !f.eof) trySplice(L, st, c, f);
    if (!f.spliced) releaseIfEmpty(L, st, c, f);
}

/// The splice path of a flow. A round is what the stage pipe holds: the
/// source is splice()d into it only once the essential sink (the primary, or
/// the client for replies) has taken the last round, because tee() always
/// copies from the head of the stage. Each shadow gets the whole round by one
/// tee() into its own pipe, or none of it: with too little room it is dropped
/// (`disconnect`) or the round waits (`block`). Then the essential sink gets
/// the round by splice(), and each shadow's pipe is spliced to its socket.
/// SPLICE_F_NONBLOCK everywhere: a blocking splice from a socket waits to
/// fill the whole length.
fn spliceStep(L: *Loop, c: *Conn, f: *Flow, progress: *bool, moved: *u64) void {
    const s = &c.ep[f.src];
    const ess: usize = if (f.src == client) primary else client;
    const e = &c.ep[ess];
    if (!f.eof and s.state == .open and s.readable and alive(e) and e.done == f.tail) {
        // A round is at most a quarter of any shadow's pipe: the other three
        // quarters are that shadow's room to lag (its backlog bound).
        var len: u64 = @max(L.window, L.window_max);
        for (first_shadow..max_eps) |i| {
            if (f.sinks & (@as(u16, 1) << @intCast(i)) != 0 and alive(&c.ep[i])) len = @min(len, c.ep[i].pipe_cap / 4);
        }
        const r = sys.splice(s.fd, f.pipe_w, @intCast(len), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
            f.tail += @intCast(r);
            moved.* += @intCast(r);
            if (f.src == client) L.bytes_in += @intCast(r);
            progress.* = true;
        } else if (r == 0) {
            const err = socketError(s.fd);
            if (err != 0) return epFailed(L, c, f.src, -@as(isize, err));
            f.eof = true;
            s.rd_eof = true;
            progress.* = true;
        } else if (sys.is(r, .AGAIN)) {
            s.readable = false;
        } else return epFailed(L, c, f.src, r);
    }
    var all_fed = true;
    for (first_shadow..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const sh = &c.ep[i];
        if (!alive(sh) or sh.fed == f.tail) continue;
        const need = f.tail - sh.fed;
        const queued = sys.ioctl_int(sh.pipe_w, FIONREAD);
        const room = if (queued < 0) 0 else sh.pipe_cap -| @as(u64, @intCast(queued));
        const r = if (room >= need) sys.tee(f.pipe_r, sh.pipe_w, @intCast(need), SPLICE_F_NONBLOCK) else 0;
        if (r > 0 and r == need) {
            sh.fed = f.tail;
            progress.* = true;
        } else if (L.on_lag == @intFromEnum(OnLag.block) and r <= 0) {
            all_fed = false; // the round waits for this shadow's pipe to drain
        } else {
            // A short tee cannot be continued (it would copy the head again): dropped.
            closeEp(L, c, i, .lagged_out, 0, true);
            progress.* = true;
        }
    }
    if (all_fed and e.state == .open and e.writable and e.done < f.tail) {
        const r = sys.splice(f.pipe_r, e.fd, @intCast(f.tail - e.done), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0) {
            e.done += @intCast(r);
            if (ess == client) L.bytes_out += @intCast(r);
            progress.* = true;
        } else if (sys.is(r, .AGAIN) or r == 0) {
            e.writable = false;
        } else epFailed(L, c, ess, r);
    }
    for (0..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const sh = &c.ep[i];
        if (sh.state != .open) continue;
        if (isShadow(i) and sh.writable and sh.done < sh.fed) {
            const r = sys.splice(sh.pipe_r, sh.fd, @intCast(sh.fed - sh.done), SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (r > 0) {
                sh.done += @intCast(r);
                progress.* = true;
            } else if (sys.is(r, .AGAIN) or r == 0) {
                sh.writable = false;
            } else {
                epFailed(L, c, i, r);
                continue;
            }
        }
        if (sh.state == .open and f.eof and sh.done == f.tail and !sh.wr_shut) {
            _ = sys.call(.shutdown, .{ sys.arg(sh.fd), SHUT_WR });
            sh.wr_shut = true;
            progress.* = true;
        }
    }
}

/// Shadows past max_lag are dropped (`disconnect`): reset, so that the shadow
/// cannot mistake a cut stream for a complete one.
fn dropLagging(L: *Loop, c: *Conn, f: *const Flow) void {
    if (L.on_lag != @intFromEnum(OnLag.disconnect)) return;
    for (first_shadow..max_eps) |i| {
        if (f.sinks & (@as(u16, 1) << @intCast(i)) == 0) continue;
        const e = &c.ep[i];
        if (alive(e) and f.tail - e.done > L.max_lag) closeEp(L, c, i, .lagged_out, 0, true);
    }
}

/// Writes the ring to the capture file (a regular file: it never says EAGAIN).
fn captureStep(c: *Conn, f: *Flow) void {
    while (f.cap_fd >= 0 and f.cap_done < f.tail) {
        const off = f.cap_done & (f.cap - 1);
        const len: usize = @intCast(@min(f.tail - f.cap_done, f.cap - off));
        const r = sys.write(f.cap_fd, @ptrFromInt(f.buf + off), len);
        if (r > 0) {
            f.cap_done += @intCast(r);
        } else {
            c.capture_errno = if (r == 0) 28 else @intCast(-r);
            _ = sys.close(f.cap_fd);
            f.cap_fd = -1;
        }
    }
}

/// Reads and drops whatever the shadows answer.
fn drainShadows(L: *Loop, st: *State, c: *Conn, progress: *bool) void {
    for (first_shadow..max_eps) |i| {
        const e = &c.ep[i];
        while (e.state == .open and e.readable and !e.rd_eof) {
            const r = sys.read(e.fd, @ptrFromInt(st.scratch), scratch_size);
            if (r > 0) {
                progress.* = true;
            } else if (r == 0) {
                e.rd_eof = true;
                progress.* = true;
            } else if (sys.is(r, .AGAIN)) {
                e.readable = false;
            } else {
                // An error after the shadow took its whole stream is no failure of the stream.
                const f = &c.flows[0];
                if (f.eof and e.done == f.tail and e.wr_shut) {
                    closeEp(L, c, i, .complete, 0, false);
                } else epFailed(L, c, i, r);
                progress.* = true;
            }
        }
    }
}

/// Moves bytes on one connection until nothing moves or its quota is used.
fn pump(L: *Loop, st: *State, slot: u32) void {
    const c = &st.conns[slot];
    var moved: u64 = 0;
    while (!c.finished) {
        var progress = false;
        for (&c.flows) |*f| {
            if (f.spliced) spliceStep(L, c, f, &progress, &moved) else flowStep(L, st, c, f, &progress, &moved);
        }
        drainShadows(L, st, c, &progress);
        if (!progress) break;
        if (moved >= pump_quota) {
            enqueue(st, slot);
            break;
        }
    }
    settle(L, st, slot, sys.nowNs());
}

/// Closes what has ended: the client and primary once both flows have; each
/// shadow once it has its stream and the shadow's own FIN (or the grace ran
/// out); the connection once nothing is left.
fn settle(L: *Loop, st: *State, slot: u32, now: u64) void {
    const c = &st.conns[slot];
    if (c.finished) return;
    const f0 = &c.flows[0];
    const f1 = &c.flows[1];
    const cl = &c.ep[client];
    const pr = &c.ep[primary];
    if (cl.state == .open and pr.state == .open and f0.eof and f1.eof and pr.wr_shut and cl.wr_shut) {
        closeEp(L, c, client, .complete, 0, false);
        closeEp(L, c, primary, .complete, 0, false);
    }
    const main_done = !alive(cl) and !alive(pr);
    if (main_done and c.main_done_at == 0) c.main_done_at = now;
    var left = false;
    for (first_shadow..max_eps) |i| {
        const e = &c.ep[i];
        if (!alive(e)) continue;
        const delivered = f0.eof and e.done == f0.tail and e.wr_shut;
        // Once the client is served, a shadow that has its whole stream is
        // done: its replies are dropped anyway, so its FIN is not waited for.
        if (delivered and (e.rd_eof or main_done)) {
            closeEp(L, c, i, .complete, 0, false);
        } else if (main_done and now >= c.main_done_at + L.grace_ns) {
            closeEp(L, c, i, if (delivered) .complete else .lagged_out, 0, !delivered);
        } else left = true;
    }
    if (main_done and !left) finish(L, st, slot);
}

fn finish(L: *Loop, st: *State, slot: u32) void {
    const c = &st.conns[slot];
    for (&c.flows) |*f| {
        if (f.cap_fd >= 0) _ = sys.close(f.cap_fd);
        f.cap_fd = -1;
        if (f.buf != 0) bufRelease(L, st, f.buf, f.cap);
        f.buf = 0;
    }
    closePipes(c);
    c.finished = true;
    c.end_ns = realtimeNs();
    c.next = nil;
    if (st.done_tail == nil) st.done_head = slot else st.conns[st.done_tail].next = slot;
    st.done_tail = slot;
    L.active -= 1;
}

fn enqueue(st: *State, slot: u32) void {
    const c = &st.conns[slot];
    if (c.queued or c.finished) return;
    c.queued = true;
    st.ready[(st.ready_head + st.ready_len) % st.nslots] = slot;
    st.ready_len += 1;
}

/// Pumps the connections that were ready when the pass began.
fn runReady(L: *Loop, st: *State) void {
    var n = st.ready_len;
    while (n > 0) : (n -= 1) {
        const slot = st.ready[st.ready_head];
        st.ready_head = (st.ready_head + 1) % st.nslots;
        st.ready_len -= 1;
        st.conns[slot].queued = false;
        pump(L, st, slot);
    }
}

// ---- accepting -----------------------------------------------------------------

/// Whether this client is mirrored: a hash of its address and port (or, for
/// a Unix client, which has none, of the connection id) against the sample.
fn sampled(L: *const Loop, c: *const Conn) bool {
    if (L.sample_bp >= 10_000) return true;
    const h = if (c.addr_len > 2) Xxh64.hash(0, c.addr[0..c.addr_len]) else Xxh64.hash(0, std.mem.asBytes(&c.id));
    return h % 10_000 < L.sample_bp;
}

fn openCapture(L: *Loop, c: *Conn, f: *Flow, suffix: []const u8) void {
    var name: [40]u8 = undefined;
    const path = std.fmt.bufPrintZ(&name, "{d}.{s}", .{ c.id, suffix }) catch unreachable;
    const flags: u32 = 1 | 0o100 | 0o1000 | O_CLOEXEC; // O_WRONLY|O_CREAT|O_TRUNC
    const r = sys.call(.openat, .{ sys.arg(L.capture_dir), @intFromPtr(path.ptr), flags, 0o644 });
    if (r < 0) {
        c.capture_errno = @intCast(-r);
        return;
    }
    f.cap_fd = @intCast(r);
    f.hash = Xxh64.init(0);
}

fn newConn(L: *Loop, st: *State, fd: i32, addr: []const u8) void {
    const slot = if (st.free_head != nil) st.free_head else blk: {
        st.high += 1;
        break :blk st.high - 1;
    };
    const c = &st.conns[slot];
    if (slot == st.free_head) st.free_head = c.next;
    const gen = c.gen +% 1;
    c.* = .{ .gen = gen, .in_use = true };
    st.used += 1;
    L.active += 1;
    L.accepted += 1;
    c.id = L.id_base + st.next_id * L.id_step;
    st.next_id += 1;
    c.start_ns = realtimeNs();
    c.addr_len = @intCast(@min(addr.len, c.addr.len));
    @memcpy(c.addr[0..c.addr_len], addr[0..c.addr_len]);
    c.ep[client] = .{ .fd = fd, .state = .open, .writable = true };
    if (L.listen_tcp != 0) setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    const add = epollAdd(L.epoll_fd, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, tag(gen, slot, client));
    c.mirrored = (L.ntargets > 1 or L.capture_dir >= 0) and sampled(L, c);
    c.flows[0].sinks = 1 << primary;
    if (add < 0) {
        closeEp(L, c, client, .failed, @intCast(-add), false);
        return finish(L, st, slot);
    }
    startConnect(L, c, slot, primary, &L.targets[0]);
    if (c.mirrored and c.ep[primary].state != .closed) {
        for (1..@as(usize, L.ntargets)) |k| {
            c.flows[0].sinks |= @as(u16, 1) << @intCast(first_shadow + k - 1);
            startConnect(L, c, slot, first_shadow + k - 1, &L.targets[k]);
        }
        if (L.capture_dir >= 0) {
            openCapture(L, c, &c.flows[0], "c2s");
            openCapture(L, c, &c.flows[1], "s2c");
        }
    }
    // A capture is written and hashed from the ring: captured connections copy.
    if (L.method == @intFromEnum(Method.splice)) {
        for (&c.flows) |*f| trySplice(L, st, c, f);
    }
    enqueue(st, slot);
}

fn peers(L: *const Loop) []Peer {
    if (L.group == 0) return &.{};
    return @as([*]Peer, @ptrFromInt(L.group))[0..L.group_len];
}

fn publishLoad(L: *Loop, st: *const State) void {
    const ps = peers(L);
    if (ps.len > 0) @atomicStore(u64, &ps[L.group_index].used, st.used, .monotonic);
}

/// The loop that should take the next client: this one unless another holds
/// at least two connections fewer (a slack of one, so that loops with equal
/// loads do not hand clients back and forth).
fn takerOf(L: *const Loop, st: *const State) ?usize {
    var best: ?usize = null;
    var low: u64 = st.used;
    for (peers(L), 0..) |*p, i| {
        if (i == L.group_index) continue;
        const used = @atomicLoad(u64, &p.used, .monotonic);
        if (used + 1 < low) {
            low = used + 1;
            best = i;
        }
    }
    return best;
}

fn acceptSome(L: *Loop, st: *State, now: u64) void {
    var n: u32 = 0;
    while (st.listening and st.used < L.max_conns and n < @max(1, L.accept_batch)) : (n += 1) {
        if (takerOf(L, st)) |i| {
            // Hand this client to a less loaded loop: wake it, it accepts.
            const one: u64 = 1;
            _ = sys.write(peers(L)[i].kick_fd, @ptrCast(&one), 8);
            return;
        }
        var addr: [128]u8 = undefined;
        var len: u32 = addr.len;
        const r = sys.call(.accept4, .{ sys.arg(L.listen_fd), @intFromPtr(&addr), @intFromPtr(&len), SOCK_NONBLOCK | O_CLOEXEC });
        if (sys.is(r, .AGAIN)) return;
        if (r < 0) {
            L.accept_errors += 1;
            // Out of fds or memory: leave clients in the backlog for a while.
            if (sys.is(r, .MFILE) or sys.is(r, .NFILE) or sys.is(r, .NOBUFS) or sys.is(r, .NOMEM)) {
                st.accept_pause_until = now + 100_000_000;
            }
            // ECONNABORTED and the like: that client is gone; the next event brings the next.
            return;
        }
        newConn(L, st, @intCast(r), addr[0..@min(len, addr.len)]);
        publishLoad(L, st);
    }
}

/// Registers the listener while accepting is wanted and there is room.
fn updateListener(L: *Loop, st: *State, now: u64) void {
    const want = L.accepting != 0 and L.abort == 0 and st.used < L.max_conns and now >= st.accept_pause_until;
    if (want == st.listening) return;
    if (want) {
        // Exclusive: of the loops that share this listener, one is woken per client.
        if (epollAdd(L.epoll_fd, L.listen_fd, EPOLLIN | EPOLLEXCLUSIVE, tag_listener) < 0) return;
    } else {
        _ = sys.call(.epoll_ctl, .{ sys.arg(L.epoll_fd), EPOLL_CTL_DEL, sys.arg(L.listen_fd), 0 });
    }
    st.listening = want;
}

/// Connect timeouts and the shadows' grace, checked every `sweep_ns`.
fn sweep(L: *Loop, st: *State, now: u64) void {
    for (0..st.high) |s| {
        const slot: u32 = @intCast(s);
        const c = &st.conns[slot];
        if (!c.in_use or c.finished) continue;
        for (1..max_eps) |i| {
            const e = &c.ep[i];
            if (e.state == .connecting and now >= e.deadline) connectFailed(L, c, i, ETIMEDOUT);
        }
        for (&c.flows) |*f| {
            if (!f.busy) releaseEmpty(L, st, c, f, true);
            f.busy = false;
        }
        settle(L, st, slot, now);
    }
}

/// Moves finished connections into the report array while there is room.
fn flushReports(L: *Loop, st: *State, reports: [*]Report, now: u64) void {
    while (st.done_head != nil and L.nreports < L.report_cap) {
        const slot = st.done_head;
        const c = &st.conns[slot];
        st.done_head = c.next;
        if (st.done_head == nil) st.done_tail = nil;
        if (L.nreports == 0) st.first_report_at = now;
        fillReport(&reports[L.nreports], c);
        L.nreports += 1;
        L.closed += 1;
        c.in_use = false;
        c.finished = false;
        c.next = st.free_head;
        st.free_head = slot;
        st.used -= 1;
        publishLoad(L, st);
    }
}

fn fillReport(r: *Report, c: *const Conn) void {
    r.* = std.mem.zeroes(Report);
    r.id = c.id;
    r.start_ns = c.start_ns;
    r.end_ns = c.end_ns;
    r.bytes_in = c.flows[0].tail;
    r.bytes_out = c.ep[client].done;
    r.to_primary = c.ep[primary].done;
    r.from_primary = c.flows[1].tail;
    var h_in = c.flows[0].hash;
    var h_out = c.flows[1].hash;
    r.hash_in = h_in.final();
    r.hash_out = h_out.final();
    r.client_outcome = @intFromEnum(c.ep[client].outcome);
    r.client_errno = c.ep[client].err;
    r.primary_outcome = @intFromEnum(c.ep[primary].outcome);
    r.primary_errno = c.ep[primary].err;
    r.mirrored = @intFromBool(c.mirrored);
    r.captured = @intFromBool(c.mirrored and c.capture_errno == 0);
    r.capture_errno = c.capture_errno;
    r.addr_len = c.addr_len;
    @memcpy(r.addr[0..c.addr_len], c.addr[0..c.addr_len]);
    for (0..max_shadows) |k| {
        const e = &c.ep[first_shadow + k];
        r.shadow_bytes[k] = e.done;
        r.shadow_outcome[k] = @intFromEnum(e.outcome);
        r.shadow_errno[k] = e.err;
    }
}

fn closeAll(L: *Loop, st: *State) void {
    for (0..st.high) |s| {
        const c = &st.conns[s];
        if (!c.in_use or c.finished) continue;
        for (0..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .aborted, 0, false);
        finish(L, st, @intCast(s));
    }
}

// ---- exports ---------------------------------------------------------------------

/// Allocates the engine's state and its epoll set. TypeScript has filled in
/// the settings, `listen_fd` and `wake_fd`. Returns 0 or -errno.
pub export fn oc_mirror_init(L: *Loop) isize {
    if (L.ntargets < 1 or L.ntargets > 1 + max_shadows or L.max_conns == 0) return sys.fail(.INVAL);
    if (L.window == 0 or L.window & (L.window - 1) != 0 or L.report_cap == 0) return sys.fail(.INVAL);
    if (L.id_step == 0) return sys.fail(.INVAL);
    if (L.group != 0 and L.group_index >= L.group_len) return sys.fail(.INVAL);
    const n: usize = L.max_conns;
    const len = std.mem.alignForward(usize, @sizeOf(State) + n * @sizeOf(Conn) + n * 4 + scratch_size + 64, 4096);
    const mem = mmapAnon(len);
    if (mem == 0) return sys.fail(.NOMEM);
    const conns_at = std.mem.alignForward(usize, mem + @sizeOf(State), @alignOf(Conn));
    const ready_at = conns_at + n * @sizeOf(Conn);
    const st: *State = @ptrFromInt(mem);
    st.* = .{
        .conns = @ptrFromInt(conns_at),
        .ready = @ptrFromInt(ready_at),
        .nslots = L.max_conns,
        .scratch = std.mem.alignForward(usize, ready_at + n * 4, 16),
        .mem_len = len,
    };
    const ep = sys.call(.epoll_create1, .{ O_CLOEXEC });
    if (ep < 0) {
        _ = sys.munmap(mem, len);
        return ep;
    }
    L.epoll_fd = @intCast(ep);
    const w = epollAdd(L.epoll_fd, L.wake_fd, EPOLLIN, tag_wake);
    if (w < 0) {
        _ = sys.close(L.epoll_fd);
        _ = sys.munmap(mem, len);
        return w;
    }
    const ps = peers(L);
    if (ps.len > 0) {
        const k = epollAdd(L.epoll_fd, ps[L.group_index].kick_fd, EPOLLIN, tag_kick);
        if (k < 0) {
            _ = sys.close(L.epoll_fd);
            _ = sys.munmap(mem, len);
            return k;
        }
    }
    L.state = mem;
    return 0;
}

/// Runs the loop until the budget passes, reports are waiting, the wake fd
/// is written, or (with `abort`) everything is closed. Returns a `Status`.
pub export fn oc_mirror_run(L: *Loop, reports: [*]Report) i32 {
    if (L.state == 0) return @intFromEnum(Status.failed);
    const st = stateOf(L);
    const start = sys.nowNs();
    var events: [256]linux.epoll_event = undefined;
    while (true) {
        const now = sys.nowNs();
        if (L.abort != 0) {
            updateListener(L, st, now);
            closeAll(L, st);
            flushReports(L, st, reports, now);
            return @intFromEnum(if (st.done_head == nil and L.nreports == 0) Status.done else Status.events);
        }
        flushReports(L, st, reports, now);
        if (L.nreports > 0 and (L.nreports >= L.report_cap / 2 or now >= st.first_report_at + report_delay_ns)) {
            return @intFromEnum(Status.events);
        }
        const end = start + L.budget_ns;
        if (now >= end) return @intFromEnum(if (L.nreports > 0) Status.events else Status.again);
        if (now >= st.next_sweep) {
            sweep(L, st, now);
            st.next_sweep = now + sweep_ns;
            continue;
        }
        updateListener(L, st, now);
        var until = @min(end, st.next_sweep);
        if (L.nreports > 0) until = @min(until, st.first_report_at + report_delay_ns);
        const timeout: usize = if (st.ready_len > 0) 0 else @intCast((until - now + 999_999) / 1_000_000);
        const n = sys.call(.epoll_pwait, .{ sys.arg(L.epoll_fd), @intFromPtr(&events), events.len, timeout, 0, 8 });
        if (n < 0) {
            L.err = @intCast(-n);
            L.err_call = 1;
            return @intFromEnum(Status.failed);
        }
        var woken = false;
        for (events[0..@intCast(n)]) |ev| {
            const t = ev.data.u64;
            if (t == tag_wake) {
                var v: u64 = 0;
                _ = sys.read(L.wake_fd, @ptrCast(&v), 8);
                woken = true;
            } else if (t == tag_listener) {
                acceptSome(L, st, now);
            } else if (t == tag_kick) {
                var v: u64 = 0;
                _ = sys.read(peers(L)[L.group_index].kick_fd, @ptrCast(&v), 8);
                acceptSome(L, st, now);
            } else dispatch(L, st, t, ev.events);
        }
        runReady(L, st);
        if (woken) {
            flushReports(L, st, reports, sys.nowNs());
            return @intFromEnum(Status.woken);
        }
    }
}

fn dispatch(L: *Loop, st: *State, t: u64, events: u32) void {
    const slot = tagSlot(t);
    const i = tagEp(t);
    if (slot >= st.high or i >= max_eps) return;
    const c = &st.conns[slot];
    if (!c.in_use or c.finished or c.gen != tagGen(t)) return;
    const e = &c.ep[i];
    if (e.state == .connecting and events & (EPOLLOUT | EPOLLERR | EPOLLHUP) != 0) connectDone(L, c, i);
    if (e.state == .open) {
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) != 0) e.readable = true;
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR) != 0) e.writable = true;
    }
    enqueue(st, slot);
}

/// Closes every connection (without reports), the epoll set and the state.
/// The listener and wake fd are TypeScript's. Safe to call twice.
pub export fn oc_mirror_release(L: *Loop) isize {
    if (L.state == 0) return 0;
    const st = stateOf(L);
    closeAll(L, st);
    for (st.pool[0..st.pool_len]) |b| _ = sys.munmap(b, L.window);
    _ = sys.close(L.epoll_fd);
    L.epoll_fd = -1;
    _ = sys.munmap(L.state, st.mem_len);
    L.state = 0;
    return 0;
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Go does at start-up):
/// a proxy holds two or more fds per connection. Returns the new soft limit.
pub export fn oc_raise_nofile() isize {
    var lim: [2]u64 = undefined;
    const RLIMIT_NOFILE: usize = 7;
    const r = sys.call(.prlimit64, .{ 0, RLIMIT_NOFILE, 0, @intFromPtr(&lim) });
    if (r < 0) return r;
    if (lim[0] < lim[1]) {
        lim[0] = lim[1];
        const s = sys.call(.prlimit64, .{ 0, RLIMIT_NOFILE, @intFromPtr(&lim), 0 });
        if (s < 0) return s;
    }
    return @intCast(@min(lim[0], std.math.maxInt(i32)));
}

fn layoutOf(comptime T: type, comptime name: []const u8) []const u8 {
    var s: []const u8 = std.fmt.comptimePrint("{s}={d};", .{ name, @sizeOf(T) });
    for (std.meta.fields(T)) |f| {
        if (f.name[0] == '_') continue;
        s = s ++ std.fmt.comptimePrint("{s}.{s}={d};", .{ name, f.name, @offsetOf(T, f.name) });
    }
    return s;
}
const layout = layoutOf(Loop, "Loop") ++ layoutOf(Report, "Report") ++ layoutOf(Target, "Target") ++
    layoutOf(Peer, "Peer");

/// The mirror's struct layouts as `Name=size;Name.field=offset;…`, for the
/// test that checks ffi/layout.ts. Returns the length, or -ERANGE if `cap` is short.
pub export fn oc_mirror_layout(out: [*]u8, cap: usize) isize {
    if (cap < layout.len) return sys.fail(.RANGE);
    @memcpy(out[0..layout.len], layout);
    return @intCast(layout.len);
}

// ---- tests (zig test shim/mirror.zig) -------------------------------------------

fn testLoop() Loop {
    var L = std.mem.zeroes(Loop);
    L.window = 1024;
    L.max_lag = 4096;
    L.ntargets = 2;
    return L;
}

test "tags round-trip and keep the generation" {
    const t = tag(0xdead_beef, 0x12_3456, 9);
    try std.testing.expectEqual(@as(u32, 0xdead_beef), tagGen(t));
    try std.testing.expectEqual(@as(u32, 0x12_3456), tagSlot(t));
    try std.testing.expectEqual(@as(u32, 9), tagEp(t));
    try std.testing.expect(t != tag_listener and t != tag_wake);
}

test "the primary bounds the read window; a shadow does not, unless on_lag is block" {
    var L = testLoop();
    var c = Conn{};
    c.ep[primary] = .{ .state = .open, .done = 0 };
    c.ep[first_shadow] = .{ .state = .open, .done = 0 };
    c.flows[0].sinks = (1 << primary) | (1 << first_shadow);
    c.flows[0].tail = 1000;
    c.ep[primary].done = 1000;
    // The shadow is 1000 behind; the primary is level: a full window may be read.
    try std.testing.expectEqual(@as(u64, 1024), readRoom(&L, &c, &c.flows[0]));
    c.ep[primary].done = 900;
    try std.testing.expectEqual(@as(u64, 924), readRoom(&L, &c, &c.flows[0]));
    L.on_lag = @intFromEnum(OnLag.block);
    c.ep[primary].done = 1000;
    c.flows[0].tail = 4000;
    c.ep[primary].done = 4000;
    try std.testing.expectEqual(@as(u64, 96), readRoom(&L, &c, &c.flows[0]));
    // A closed shadow no longer counts.
    c.ep[first_shadow].state = .closed;
    try std.testing.expectEqual(@as(u64, 1024), readRoom(&L, &c, &c.flows[0]));
}

test "a shadow past max_lag is dropped under disconnect, kept under block" {
    var L = testLoop();
    var c = Conn{};
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .connecting };
    c.flows[0].sinks = (1 << primary) | (1 << first_shadow);
    c.flows[0].tail = 4096;
    dropLagging(&L, &c, &c.flows[0]);
    try std.testing.expectEqual(EpState.connecting, c.ep[first_shadow].state);
    c.flows[0].tail = 4097;
    L.on_lag = @intFromEnum(OnLag.block);
    dropLagging(&L, &c, &c.flows[0]);
    try std.testing.expectEqual(EpState.connecting, c.ep[first_shadow].state);
    L.on_lag = @intFromEnum(OnLag.disconnect);
    dropLagging(&L, &c, &c.flows[0]);
    try std.testing.expectEqual(EpState.closed, c.ep[first_shadow].state);
    try std.testing.expectEqual(Outcome.lagged_out, c.ep[first_shadow].outcome);
    try std.testing.expectEqual(@as(u64, 1), L.shadow_dropped);
}

test "the ring grows keeping its bytes at their positions, and is released when empty" {
    var L = testLoop();
    var st = State{ .conns = undefined, .ready = undefined, .nslots = 0 };
    var c = Conn{};
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .open };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    try std.testing.expectEqual(@as(u64, 1024), ensureRoom(&L, &st, &c, f, 1024));
    try std.testing.expectEqual(@as(usize, 1024), f.cap);
    // Fill 1000 bytes starting at position 600 (wrapping), all unread by the shadow.
    f.tail = 600;
    c.ep[primary].done = 600;
    c.ep[first_shadow].done = 600;
    var pos: u64 = 600;
    while (pos < 1600) : (pos += 1) @as([*]u8, @ptrFromInt(f.buf))[pos & 1023] = @truncate(pos);
    f.tail = 1600;
    c.ep[primary].done = 1600;
    try std.testing.expectEqual(@as(u64, 1024), ensureRoom(&L, &st, &c, f, 1024));
    try std.testing.expectEqual(@as(usize, 2048), f.cap);
    pos = 600;
    while (pos < 1600) : (pos += 1) {
        try std.testing.expectEqual(@as(u8, @truncate(pos)), @as([*]u8, @ptrFromInt(f.buf))[pos & 2047]);
    }
    // Never beyond max_lag + window.
    try std.testing.expect(ensureRoom(&L, &st, &c, f, 1 << 20) <= pow2(L.max_lag + L.window) - 1000);
    c.ep[first_shadow].done = f.tail;
    releaseIfEmpty(&L, &st, &c, f);
    try std.testing.expect(f.buf != 0); // grown: kept while the flow is busy
    releaseEmpty(&L, &st, &c, f, true);
    try std.testing.expectEqual(@as(usize, 0), f.buf);
    for (st.pool[0..st.pool_len]) |b| _ = sys.munmap(b, L.window);
}

test "sampling is deterministic per client address" {
    var L = testLoop();
    var c = Conn{};
    c.addr_len = 16;
    @memset(c.addr[0..16], 7);
    L.sample_bp = 5000;
    const first = sampled(&L, &c);
    try std.testing.expectEqual(first, sampled(&L, &c));
    L.sample_bp = 0;
    try std.testing.expect(!sampled(&L, &c));
    L.sample_bp = 10_000;
    try std.testing.expect(sampled(&L, &c));
}

fn socketPair() [2]i32 {
    var fds: [2]i32 = undefined;
    const r = sys.call(.socketpair, .{ 1, SOCK_STREAM | SOCK_NONBLOCK | O_CLOEXEC, 0, @intFromPtr(&fds) });
    std.debug.assert(r == 0);
    return fds;
}

test "one flow step: the client's bytes reach the primary and the shadow, EOF becomes a shutdown" {
    var L = testLoop();
    var st = State{ .conns = undefined, .ready = undefined, .nslots = 0 };
    var c = Conn{};
    const cl = socketPair();
    const pr = socketPair();
    const sh = socketPair();
    c.ep[client] = .{ .fd = cl[0], .state = .open, .readable = true, .writable = true };
    c.ep[primary] = .{ .fd = pr[0], .state = .open, .writable = true };
    c.ep[first_shadow] = .{ .fd = sh[0], .state = .open, .writable = true };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    try std.testing.expectEqual(@as(isize, 5), sys.write(cl[1], "hello", 5));
    _ = sys.call(.shutdown, .{ sys.arg(cl[1]), SHUT_WR });
    var progress = true;
    var moved: u64 = 0;
    while (progress) {
        progress = false;
        flowStep(&L, &st, &c, f, &progress, &moved);
    }
    try std.testing.expect(f.eof);
    for ([_]i32{ pr[1], sh[1] }) |fd| {
        var buf: [16]u8 = undefined;
        try std.testing.expectEqual(@as(isize, 5), sys.read(fd, &buf, buf.len));
        try std.testing.expectEqualStrings("hello", buf[0..5]);
        try std.testing.expectEqual(@as(isize, 0), sys.read(fd, &buf, buf.len));
    }
    try std.testing.expectEqual(@as(usize, 0), f.buf);
    for ([_]i32{ cl[0], cl[1], pr[0], pr[1], sh[0], sh[1] }) |fd| _ = sys.close(fd);
    for (st.pool[0..st.pool_len]) |b| _ = sys.munmap(b, L.window);
}

test "the next client goes to a loop holding at least two connections fewer" {
    var L = testLoop();
    var st = State{ .conns = undefined, .ready = undefined, .nslots = 0 };
    var group = [_]Peer{ .{ .used = 0, .kick_fd = -1, ._pad = 0 }, .{ .used = 0, .kick_fd = -1, ._pad = 0 } };
    L.group = @intFromPtr(&group);
    L.group_len = 2;
    L.group_index = 0;
    st.used = 1;
    try std.testing.expectEqual(@as(?usize, null), takerOf(&L, &st));
    st.used = 2;
    try std.testing.expectEqual(@as(?usize, 1), takerOf(&L, &st));
    group[1].used = 1;
    try std.testing.expectEqual(@as(?usize, null), takerOf(&L, &st));
    publishLoad(&L, &st);
    try std.testing.expectEqual(@as(u64, 2), group[0].used);
}

test "the splice path: one round tee()d to the shadow's pipe, spliced to the primary, EOF shut down" {
    var L = testLoop();
    L.method = @intFromEnum(Method.splice);
    L.window_max = 4096;
    var st = State{ .conns = undefined, .ready = undefined, .nslots = 0 };
    var c = Conn{};
    const cl = socketPair();
    const pr = socketPair();
    const sh = socketPair();
    c.ep[client] = .{ .fd = cl[0], .state = .open, .readable = true, .writable = true };
    c.ep[primary] = .{ .fd = pr[0], .state = .open, .writable = true };
    c.ep[first_shadow] = .{ .fd = sh[0], .state = .open, .writable = true };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    trySplice(&L, &st, &c, f);
    try std.testing.expect(f.spliced);
    try std.testing.expect(c.ep[first_shadow].pipe_w >= 0);
    try std.testing.expectEqual(@as(isize, 5), sys.write(cl[1], "hello", 5));
    _ = sys.call(.shutdown, .{ sys.arg(cl[1]), SHUT_WR });
    var progress = true;
    var moved: u64 = 0;
    while (progress) {
        progress = false;
        spliceStep(&L, &c, f, &progress, &moved);
    }
    try std.testing.expect(f.eof);
    for ([_]i32{ pr[1], sh[1] }) |fd| {
        var buf: [16]u8 = undefined;
        try std.testing.expectEqual(@as(isize, 5), sys.read(fd, &buf, buf.len));
        try std.testing.expectEqualStrings("hello", buf[0..5]);
        try std.testing.expectEqual(@as(isize, 0), sys.read(fd, &buf, buf.len));
    }
    closePipes(&c);
    for ([_]i32{ cl[0], cl[1], pr[0], pr[1], sh[0], sh[1] }) |fd| _ = sys.close(fd);
}

test "auto keeps a flow on copy when a shadow's pipe could not hold max_lag" {
    var L = testLoop();
    L.method = @intFromEnum(Method.auto);
    L.max_lag = 1 << 30; // far beyond any pipe an unprivileged process may have
    var st = State{ .conns = undefined, .ready = undefined, .nslots = 0 };
    var c = Conn{};
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .open };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    trySplice(&L, &st, &c, f);
    try std.testing.expect(!f.spliced);
    try std.testing.expectEqual(@as(i32, -1), f.pipe_r);
    try std.testing.expectEqual(@as(i32, -1), c.ep[first_shadow].pipe_r);
    try std.testing.expect(f.no_splice); // decided once, not retried per read
    f.no_splice = false;
    L.max_lag = 1024;
    L.on_lag = @intFromEnum(OnLag.block);
    trySplice(&L, &st, &c, f);
    try std.testing.expect(!f.spliced and f.no_splice);
    f.no_splice = false;
    L.on_lag = @intFromEnum(OnLag.disconnect);
    trySplice(&L, &st, &c, f);
    try std.testing.expect(f.spliced);
    closePipes(&c);
}
