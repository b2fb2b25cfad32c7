//! The mirror engine: an epoll loop that accepts clients from a listener and
//! owns every connection it accepted, run in batches by TypeScript (one FFI
//! call per batch, like the fan-out loop). Several loops, one per thread, may
//! share one listener (EPOLLEXCLUSIVE): they form a `Group`, which holds the
//! connection limit they share and each loop's load, so that the least loaded
//! loop takes the next client (`acceptSome`).
//!
//! The shared `Loop` is split by owner: `config` is written by TypeScript
//! before `oc_mirror_init` (after `oc_mirror_defaults`) and only read here;
//! `control` is written by TypeScript while the loop runs (then it wakes the
//! loop); `state` is the loop's own, only read by TypeScript. Finished
//! connections come back as `Report`s; nothing crosses FFI per chunk or per
//! connection.
//!
//! Unlike the fan-out loop, some policy lives here, because it acts on every
//! event: dropping a lagging shadow, `auto`'s switch to splice, sampling, the
//! shadows' grace and the hand-off to a less loaded loop. TypeScript sets the
//! knobs (`LoopConfig`).
//!
//! A connection is a set of endpoints joined by directed flows, so that a
//! broadcast hub can reuse it (one source flow, many sinks):
//!   endpoint 0  the client               source of flow 0, sink of flow 1
//!   endpoint 1  the primary              sink of flow 0, source of flow 1
//!   endpoint 2… the shadows              sinks of flow 0; their replies are read and dropped
//! A flow owns a ring buffer: the source is read() into it once (the one
//! stable copy) and each sink is write()n from it at its own pace. Positions
//! are absolute stream offsets, so a partial count is just a smaller step:
//!   tail      bytes read from the source
//!   done      per sink: bytes written into it            done <= tail
//!   fed       per spliced shadow: bytes tee()d into its pipe   done <= fed <= tail
//!   cap_done  bytes written to the capture file          cap_done <= tail
//! and the ring holds [flowLow, tail), so tail - flowLow <= cap (`assertFlow`).
//! The ring lives only while it holds bytes: an idle connection owns no buffer
//! (1000 idle connections cost their sockets and ~1 KiB of table each).
//!
//! Isolation: essential sinks (the primary, the client) bound how far the
//! source may run ahead (`window`): they are back-pressure. A shadow never is:
//! its lag, the bytes kept for it alone (what the primary already has and it
//! has not: `shadowLag`), may grow to `max_lag`, then the shadow is dropped
//! for this connection (`on_lag = disconnect`). With `on_lag = block` it
//! bounds the source like an essential sink instead: the client is never read
//! more than `max_lag` ahead of it (`readRoom`), so neither is the primary.
//! Bytes are never skipped.
//!
//! The life of a connection: accepted (it takes a place under the group's
//! limit) → connected → bytes flow → half-closes: the source's EOF becomes
//! shutdown(SHUT_WR) on each sink once it has every byte; a reset (ECONNRESET,
//! EPIPE) is propagated as a reset (SO_LINGER 0 then close) → the client and
//! primary are closed once both flows have ended (the connection gives its
//! place back: only the shadows are left) → each shadow that has its whole
//! stream is read until its own EOF (its replies are dropped, but closing with
//! them unread would reset it and cut what it has not read yet), each for at
//! most `grace_ns` → finished: every fd closed → reported: its slot is free.
const std = @import("std");
const linux = std.os.linux;
const sys = @import("sys.zig");
const E = sys.E;
const Xxh64 = std.hash.XxHash64;

pub const max_shadows = 8;
/// Loops in one group (TypeScript's `threads` is at most this).
pub const max_loops = 64;
/// The largest `max_lag`, 1 TiB: a backlog beyond any memory, and ring sizes
/// (`max_lag + window`, rounded up to a power of two) stay far from overflow.
pub const max_lag_max: u64 = 1 << 40;
/// The most connection slots of one loop: a slot is 24 bits of an epoll tag,
/// and the table (mapped, touched only as far as it is used) stays modest.
pub const slots_max: u32 = 1 << 20;
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
    /// Reports are waiting in the report array (`state.nreports`).
    events = 2,
    /// `abort` was asked and every connection is closed and reported.
    done = 3,
    /// epoll itself failed (`state.err`), or the loop was never initialised:
    /// nothing else can go on.
    failed = 4,
};

/// What a full shadow backlog does.
pub const OnLag = enum(u32) {
    /// Drop that shadow for this connection (with a reset).
    disconnect = 0,
    /// The source is not read until the shadow has room again.
    block = 1,
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
    /// Another error (errno in the report), e.g. socket() out of fds.
    failed = 6,
    /// Closed by `abort` (drain timeout).
    aborted = 7,
};

/// How a connection's capture ended.
pub const Capture = enum(u32) {
    /// Not captured: no capture directory, or the connection was not sampled.
    off = 0,
    /// Both files hold every byte of their direction.
    complete = 1,
    /// open() or write() failed (`capture_errno`): a file stopped there.
    failed = 2,
    /// write() accepted no bytes and gave no errno: a file stopped there.
    wrote_nothing = 3,
};

/// Where to connect: a sockaddr (in, in6 or un) and whether it is TCP.
pub const Target = extern struct {
    addr: [112]u8 = [_]u8{0} ** 112,
    len: u32 = 0,
    tcp: u32 = 0,
};

/// What TypeScript asks for; the loop only reads it.
pub const LoopConfig = extern struct {
    listen_fd: i32 = -1,
    /// An eventfd TypeScript writes to end a batch at once.
    wake_fd: i32 = -1,
    /// The capture directory (this run's), or -1.
    capture_dir: i32 = -1,
    /// The primary and the shadows in `targets`.
    ntargets: u32 = 0,
    on_lag: OnLag = .disconnect,
    method: Method = .auto,
    /// The mirrored share of clients, in basis points (10000: all).
    sample_bp: u32 = 10_000,
    /// Connection slots: room for the connections that count against the
    /// group's limit and for those whose shadows are still being drained.
    slots: u32 = 0,
    report_cap: u32 = 0,
    listen_tcp: u32 = 0,
    /// Clients accepted per listener event. 1 when loops share the listener:
    /// each arrival then wakes a loop that is waiting, so the load spreads.
    accept_batch: u32 = 1,
    /// A bulk flow's read window grows from `window` up to this (a power of two).
    window_max: u32 = 1 << 20,
    max_lag: u64 = 1 << 20,
    window: u64 = 256 * 1024,
    connect_timeout_ns: u64 = 5_000_000_000,
    /// How long shadows may take to finish once the client and primary have.
    grace_ns: u64 = 5_000_000_000,
    budget_ns: u64 = 50_000_000,
    /// Connection ids are id_base, id_base + id_step, …: loops that share a
    /// listener number their connections apart.
    id_base: u64 = 1,
    id_step: u64 = 1,
    /// The `Group` of the loops sharing the listener (TypeScript's memory).
    group: u64 = 0,
    /// This loop's `Peer` in the group.
    group_index: u32 = 0,
    _pad: u32 = 0,
    targets: [1 + max_shadows]Target = [_]Target{.{}} ** (1 + max_shadows),
};

/// What TypeScript changes while the loop runs (then it writes the wake fd).
pub const LoopControl = extern struct {
    /// 0: take no new clients (the drain).
    accepting: u32 = 1,
    /// 1: close every connection now, report them, and return `done`.
    abort: u32 = 0,
};

/// The loop's own: TypeScript only reads it.
pub const LoopState = extern struct {
    epoll_fd: i32 = -1,
    /// 1 while the listener is in this loop's epoll set. TypeScript shuts the
    /// listener down (new clients are refused) once every loop shows 0.
    listening: u32 = 0,
    /// Reports written into the report array by this `oc_mirror_run`.
    nreports: u32 = 0,
    /// `Status.failed`: epoll_pwait's errno.
    err: i32 = 0,
    /// The engine's memory (`State`), 0 before init and after release.
    mem: u64 = 0,
    accepted: u64 = 0,
    /// Connections not yet finished (their shadows may still be drained).
    active: u64 = 0,
    closed: u64 = 0,
    primary_failed: u64 = 0,
    shadow_dropped: u64 = 0,
    shadow_failed: u64 = 0,
    bytes_in: u64 = 0,
    bytes_out: u64 = 0,
    accept_errors: u64 = 0,
};

/// Shared with TypeScript (ffi/mirror_layout.ts, checked against abi.zig).
pub const Loop = extern struct {
    config: LoopConfig = .{},
    control: LoopControl = .{},
    state: LoopState = .{},
};

/// One loop of a group, as the others see it.
pub const Peer = extern struct {
    /// Connections it holds (written by it only, read by every loop).
    used: u64 = 0,
    /// An eventfd it watches: written to hand it the next client.
    kick_fd: i32 = -1,
    _pad: u32 = 0,
};

/// The loops sharing one listener (TypeScript's memory; every loop reads and
/// writes it atomically).
pub const Group = extern struct {
    /// Connections counting against `limit` now, over every loop: those whose
    /// client or primary is still open. A place is reserved before accept4.
    counted: u64 = 0,
    /// `--max-connections`.
    limit: u64 = 0,
    npeers: u32 = 0,
    _pad: u32 = 0,
    peers: [max_loops]Peer = [_]Peer{.{}} ** max_loops,
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
    client_outcome: Outcome,
    client_errno: i32,
    primary_outcome: Outcome,
    primary_errno: i32,
    mirrored: u32,
    capture: Capture,
    capture_errno: i32,
    addr_len: u32,
    addr: [32]u8,
    shadow_bytes: [max_shadows]u64,
    shadow_outcome: [max_shadows]Outcome,
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
    /// This flow stays on the copy path for good: its pipes could not be had
    /// (out of fds or pipe pages; see `trySplice`).
    no_splice: bool = false,
    /// The live shadows (a sink mask) that keep this flow on the copy path
    /// (under `block`, or pipes too small for max_lag). Decided once for them,
    /// never per read; decided again once that set changes: a dropped shadow
    /// must not leave the primary copying for the rest of the connection.
    kept_by: u16 = 0,
    /// copy path: how far the source may run ahead of an essential sink (0:
    /// `window`). Doubled, up to `window_max`, each time a read fills it: a
    /// bulk flow then moves more per syscall; idle, it is reset (see `sweep`).
    win: u64 = 0,
    /// Read from since the last sweep: a busy flow keeps its grown ring (a
    /// fresh one costs a page fault per page here, more than the copy).
    busy: bool = false,
};

fn hasSink(f: *const Flow, i: usize) bool {
    return f.sinks & (@as(u16, 1) << @intCast(i)) != 0;
}

const Conn = struct {
    gen: u32 = 0,
    /// Next slot in the free list or the report queue.
    next: u32 = nil,
    in_use: bool = false,
    /// On the ready list. Kept when the slot is reused, so that a slot has at
    /// most one entry there in its whole life: the list never outgrows `nslots`.
    queued: bool = false,
    /// Every fd closed; waiting to be reported.
    finished: bool = false,
    /// Holds a place under the group's limit (its client or primary is open).
    counted: bool = false,
    mirrored: bool = false,
    capture: Capture = .off,
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

/// The engine's own memory (one mmap), found through `state.mem`.
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

const EPOLL = linux.EPOLL;
/// Every socket of a connection: edge-triggered both ways, and the peer's FIN.
const conn_events: u32 = EPOLL.IN | EPOLL.OUT | EPOLL.RDHUP | EPOLL.ET;
const MAP_PRIVATE_ANON_NORESERVE: u32 = @bitCast(linux.MAP{ .TYPE = .PRIVATE, .ANONYMOUS = true, .NORESERVE = true });
const scratch_size = 64 * 1024;
const sweep_ns: u64 = 50_000_000;
const report_delay_ns: u64 = 2_000_000;
/// Bytes one connection may read per turn before the others get theirs.
const pump_quota: u64 = 1 << 20;
/// accept4 out of fds or memory: clients wait in the backlog this long.
const accept_pause_ns: u64 = 100_000_000;
/// A shadow pipe's least useful size, and the most reads of replies before a close.
const min_shadow_pipe: u64 = 64 * 1024;
const drain_reads_max = 16;
const tag_listener: u64 = 0xfe;
const tag_kick: u64 = 0xfd;
const tag_wake: u64 = 0xff;

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
    return sys.call(.epoll_ctl, .{ sys.arg(epfd), EPOLL.CTL_ADD, sys.arg(fd), @intFromPtr(&ev) });
}

fn setInt(fd: i32, level: usize, name: usize, value: i32) void {
    var v = value;
    _ = sys.call(.setsockopt, .{ sys.arg(fd), level, name, @intFromPtr(&v), @sizeOf(i32) });
}

/// `struct linger` (SO_LINGER), which std.os.linux does not define.
const Linger = extern struct { onoff: i32, seconds: i32 };

/// Closes with SO_LINGER 0: a TCP peer gets a reset instead of a FIN. (A Unix
/// peer cannot: it gets ECONNRESET only if it had sent bytes we had not read,
/// else EOF; see the README.)
fn closeReset(fd: i32) void {
    const linger = Linger{ .onoff = 1, .seconds = 0 };
    _ = sys.call(.setsockopt, .{ sys.arg(fd), linux.SOL.SOCKET, linux.SO.LINGER, @intFromPtr(&linger), @sizeOf(Linger) });
    _ = sys.close(fd);
}

fn mmapAnon(len: usize) usize {
    const r = sys.mmap(len, sys.PROT_RW, MAP_PRIVATE_ANON_NORESERVE, -1, 0);
    return if (r < 0) 0 else @intCast(r);
}

fn stateOf(L: *Loop) *State {
    return @ptrFromInt(L.state.mem);
}

fn groupOf(L: *const Loop) *Group {
    return @ptrFromInt(L.config.group);
}

fn errnoValue(e: E) i32 {
    return @intFromEnum(e);
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

/// The flow positions only move forward, in this order (see the top of the
/// file). Checked in Debug builds (the Zig tests), compiled out of releases.
fn assertFlow(c: *const Conn, f: *const Flow) void {
    for (0..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const e = &c.ep[i];
        std.debug.assert(e.done <= f.tail);
        if (f.spliced and isShadow(i) and alive(e)) std.debug.assert(e.done <= e.fed and e.fed <= f.tail);
    }
    if (f.buf != 0) std.debug.assert(f.tail - flowLow(c, f) <= f.cap);
    if (f.cap_fd >= 0) std.debug.assert(f.cap_done <= f.tail);
}

// ---- the group's limit ---------------------------------------------------------

/// Takes a place under the group's connection limit; false when it is full.
fn reservePlace(g: *Group) bool {
    var n = @atomicLoad(u64, &g.counted, .monotonic);
    while (n < g.limit) {
        n = @cmpxchgWeak(u64, &g.counted, n, n + 1, .monotonic, .monotonic) orelse return true;
    }
    return false;
}

fn releasePlace(g: *Group) void {
    const before = @atomicRmw(u64, &g.counted, .Sub, 1, .monotonic);
    std.debug.assert(before > 0);
}

fn groupHasRoom(g: *const Group) bool {
    return @atomicLoad(u64, &g.counted, .monotonic) < g.limit;
}

/// The connection stops counting against the limit (once).
fn uncount(L: *const Loop, c: *Conn) void {
    if (!c.counted) return;
    c.counted = false;
    releasePlace(groupOf(L));
}

// ---- buffers ---------------------------------------------------------------

/// A ring buffer of `cap` bytes: `window`-sized ones come from a small pool.
fn bufAcquire(L: *const Loop, st: *State, cap: usize) usize {
    if (cap == L.config.window and st.pool_len > 0) {
        st.pool_len -= 1;
        return st.pool[st.pool_len];
    }
    return mmapAnon(cap);
}

fn bufRelease(L: *const Loop, st: *State, buf: usize, cap: usize) void {
    if (cap == L.config.window and st.pool_len < pool_max) {
        st.pool[st.pool_len] = buf;
        st.pool_len += 1;
    } else _ = sys.munmap(buf, cap);
}

/// The lowest position any live sink (or the capture) still needs.
fn flowLow(c: *const Conn, f: *const Flow) u64 {
    var lo = f.tail;
    for (0..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const e = &c.ep[i];
        if (alive(e)) lo = @min(lo, e.done);
    }
    if (f.cap_fd >= 0) lo = @min(lo, f.cap_done);
    return lo;
}

fn windowOf(L: *const Loop, f: *const Flow) u64 {
    return if (f.win == 0) L.config.window else f.win;
}

/// The largest read window: a bulk flow's.
fn windowMax(L: *const Loop) u64 {
    return @max(L.config.window, L.config.window_max);
}

/// How many bytes the source may be read ahead by now: essential sinks allow
/// `window` of lag, shadows under `block` allow `max_lag`, other shadows no
/// limit here (they are dropped past max_lag after the writes: `dropLagging`).
fn readRoom(L: *const Loop, c: *const Conn, f: *const Flow) u64 {
    const window = windowOf(L, f);
    var room: u64 = window;
    for (0..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const e = &c.ep[i];
        if (!alive(e)) continue;
        const lag = f.tail - e.done;
        if (!isShadow(i)) {
            room = @min(room, window -| lag);
        } else switch (L.config.on_lag) {
            .block => room = @min(room, L.config.max_lag -| lag),
            .disconnect => {},
        }
    }
    return room;
}

/// Makes the ring big enough for `room` more bytes (growing it up to
/// max_lag + window); returns how many fit. 0 when memory ran out.
fn ensureRoom(L: *const Loop, st: *State, c: *const Conn, f: *Flow, room: u64) u64 {
    const used = f.tail - flowLow(c, f);
    const limit = pow2(L.config.max_lag + windowMax(L));
    const need = @min(used + room, limit);
    if (f.buf != 0 and need <= f.cap) return @min(room, f.cap - used);
    const cap: usize = @intCast(@max(L.config.window, pow2(need)));
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
fn releaseIfEmpty(L: *const Loop, st: *State, c: *const Conn, f: *Flow) void {
    releaseEmpty(L, st, c, f, false);
}

fn releaseEmpty(L: *const Loop, st: *State, c: *const Conn, f: *Flow, idle: bool) void {
    if (f.buf != 0 and flowLow(c, f) == f.tail and (f.cap == L.config.window or idle)) {
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
    if (alive(e)) {
        e.outcome = outcome;
        e.err = err;
        if (isShadow(i)) switch (outcome) {
            .lagged_out => L.state.shadow_dropped += 1,
            .refused, .timeout, .reset, .failed => L.state.shadow_failed += 1,
            .none, .complete, .aborted => {},
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
    if (sys.pipe2(&fds, sys.O_NONBLOCK | sys.O_CLOEXEC) < 0) return 0;
    r.* = fds[0];
    w.* = fds[1];
    // Past pipe-max-size the kernel refuses (EPERM): then take 1 MiB, its default.
    if (sys.call(.fcntl, .{ sys.arg(fds[1]), sys.F_SETPIPE_SZ, @as(usize, @intCast(@min(size, 1 << 30))) }) < 0) {
        _ = sys.call(.fcntl, .{ sys.arg(fds[1]), sys.F_SETPIPE_SZ, @as(usize, 1 << 20) });
    }
    const cap = sys.call(.fcntl, .{ sys.arg(fds[1]), sys.F_GETPIPE_SZ, 0 });
    return if (cap > 0) @intCast(cap) else 0;
}

/// The splice path's pipes: a stage per flow, one pipe per shadow sized to
/// max_lag. On any failure (out of fds or pipe pages) the connection uses the
/// copy path instead.
fn openPipes(L: *const Loop, c: *Conn, f: *Flow) bool {
    if (openPipe(&f.pipe_r, &f.pipe_w, windowMax(L)) == 0) return false;
    for (first_shadow..max_eps) |i| {
        if (!hasSink(f, i) or !alive(&c.ep[i])) continue;
        const e = &c.ep[i];
        // Room for max_lag beside a round (a quarter), and slots for a fragmented stream.
        const lag = L.config.max_lag;
        e.pipe_cap = openPipe(&e.pipe_r, &e.pipe_w, @max(lag + lag / 3, min_shadow_pipe));
        if (e.pipe_cap == 0) return false;
    }
    return true;
}

fn closeFlowPipes(c: *Conn, f: *Flow) void {
    closePipe(&f.pipe_r, &f.pipe_w);
    for (first_shadow..max_eps) |i| {
        if (hasSink(f, i)) closePipe(&c.ep[i].pipe_r, &c.ep[i].pipe_w);
    }
}

/// The sink mask of this flow's shadows that are still connecting or open.
fn liveShadows(c: *const Conn, f: *const Flow) u16 {
    var live: u16 = 0;
    for (first_shadow..max_eps) |i| {
        if (hasSink(f, i) and alive(&c.ep[i])) live |= @as(u16, 1) << @intCast(i);
    }
    return live;
}

/// Moves a flow to the splice path: at the start (`--method splice`) or, under
/// `auto`, once it is bulk and its ring is empty (every live sink has every
/// byte, so the positions carry over). Without pipes (out of fds or pipe
/// pages) it stays on the copy path.
fn trySplice(L: *const Loop, st: *State, c: *Conn, f: *Flow) void {
    if (f.no_splice or f.cap_fd >= 0 or flowLow(c, f) != f.tail) return;
    const live = liveShadows(c, f);
    if (f.kept_by != 0 and f.kept_by == live) return; // decided for these shadows
    f.kept_by = 0;
    // Under block a shadow must get every byte, and a short tee() (a pipe out
    // of slots) cannot be continued: such flows keep copying, whatever the method.
    if (live != 0 and L.config.on_lag == .block) {
        f.kept_by = live;
        return;
    }
    f.no_splice = !openPipes(L, c, f);
    if (f.no_splice) return closeFlowPipes(c, f);
    if (L.config.method == .auto and live != 0) {
        // A spliced shadow's backlog is its pipe less a round (3/4 of it):
        // switch only if that honours max_lag (pipe-max-size, 1 MiB for an
        // unprivileged user, often does not: those flows keep copying).
        for (first_shadow..max_eps) |i| {
            if (!hasSink(f, i) or !alive(&c.ep[i])) continue;
            const cap = c.ep[i].pipe_cap;
            if (cap - cap / 4 < L.config.max_lag or cap < min_shadow_pipe) {
                f.kept_by = live;
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
fn clientFailed(L: *Loop, c: *Conn, err: E) void {
    closeEp(L, c, client, .reset, errnoValue(err), true);
    closeEp(L, c, primary, .reset, 0, true);
    for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .reset, 0, true);
    c.flows[0].eof = true;
    c.flows[1].eof = true;
}

/// The primary is gone: reset the client. A shadow whose client stream was
/// still coming is reset too (`aborted`): a FIN would pass the cut stream
/// off as whole. One that has the whole stream or is taking the rest of it
/// goes on to its end.
fn primaryFailed(L: *Loop, c: *Conn, outcome: Outcome, err: E) void {
    const connecting = c.ep[primary].state == .connecting;
    closeEp(L, c, primary, outcome, errnoValue(err), outcome == .reset);
    if (connecting) {
        // Never connected: close the client at once; shadows have nothing to mirror.
        L.state.primary_failed += 1;
        closeEp(L, c, client, .aborted, 0, false);
        for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .aborted, 0, true);
    } else {
        closeEp(L, c, client, .reset, 0, true);
        if (!c.flows[0].eof) {
            for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) closeEp(L, c, i, .aborted, 0, true);
        }
    }
    c.flows[0].eof = true;
    c.flows[1].eof = true;
}

/// A read or write on endpoint `i` failed with `err`.
fn epFailed(L: *Loop, c: *Conn, i: usize, err: E) void {
    if (i == client) {
        clientFailed(L, c, err);
    } else if (i == primary) {
        primaryFailed(L, c, .reset, err);
    } else {
        const outcome: Outcome = switch (err) {
            .CONNRESET, .PIPE => .reset,
            else => .failed,
        };
        closeEp(L, c, i, outcome, errnoValue(err), true);
    }
}

/// Opens a non-blocking socket to target `t` for endpoint `i` and starts connect().
fn startConnect(L: *Loop, c: *Conn, slot: u32, i: usize, t: *const Target) void {
    const e = &c.ep[i];
    e.state = .connecting;
    const family = std.mem.readInt(u16, t.addr[0..2], .little);
    const fd = sys.call(.socket, .{ family, linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC, 0 });
    // Out of fds or memory is no refusal by the target.
    if (fd < 0) return connectFailed(L, c, i, .failed, sys.errno(fd));
    e.fd = @intCast(fd);
    if (t.tcp != 0) setInt(e.fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1);
    const add = epollAdd(L.state.epoll_fd, e.fd, conn_events, tag(c.gen, slot, @intCast(i)));
    if (add < 0) return connectFailed(L, c, i, .failed, sys.errno(add));
    const r = sys.call(.connect, .{ sys.arg(e.fd), @intFromPtr(&t.addr), t.len });
    if (r == 0) {
        e.state = .open;
        e.writable = true;
    } else if (sys.is(r, .INPROGRESS)) {
        e.deadline = sys.nowNs() + L.config.connect_timeout_ns;
    } else connectFailed(L, c, i, .refused, sys.errno(r));
}

/// connect() to endpoint `i` ended without a connection.
fn connectFailed(L: *Loop, c: *Conn, i: usize, outcome: Outcome, err: E) void {
    const how: Outcome = if (err == .TIMEDOUT) .timeout else outcome;
    if (i == primary) primaryFailed(L, c, how, err) else closeEp(L, c, i, how, errnoValue(err), false);
}

/// The socket's pending error (SO_ERROR, which reading clears), or null.
fn socketError(fd: i32) ?E {
    var err: i32 = 0;
    var len: u32 = @sizeOf(i32);
    const r = sys.call(.getsockopt, .{ sys.arg(fd), linux.SOL.SOCKET, linux.SO.ERROR, @intFromPtr(&err), @intFromPtr(&len) });
    if (r < 0) return sys.errno(r);
    return if (err == 0) null else @enumFromInt(err);
}

/// EPOLLOUT (or an error) on a connecting socket: connect() has finished.
fn connectDone(L: *Loop, c: *Conn, i: usize) void {
    const e = &c.ep[i];
    if (socketError(e.fd)) |err| return connectFailed(L, c, i, .refused, err);
    e.state = .open;
    e.writable = true;
}

/// Our FIN to endpoint `e`, once it has every byte of an ended flow.
fn shutWrite(e: *Endpoint, progress: *bool) void {
    _ = sys.call(.shutdown, .{ sys.arg(e.fd), linux.SHUT.WR });
    e.wr_shut = true;
    progress.* = true;
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
                f.win = @min(windowOf(L, f) * 2, windowMax(L));
            }
            if (r > 0) {
                f.busy = true;
                const got: usize = @intCast(r);
                if (f.cap_fd >= 0) f.hash.update(@as([*]const u8, @ptrFromInt(f.buf + off))[0..got]);
                f.tail += got;
                moved.* += got;
                if (f.src == client) L.state.bytes_in += got;
                progress.* = true;
            } else if (r == 0) {
                // After a reset read() may say EOF (the FIN came first); SO_ERROR tells.
                progress.* = true;
                if (socketError(s.fd)) |err| return epFailed(L, c, f.src, err);
                f.eof = true;
                s.rd_eof = true;
            } else if (sys.is(r, .AGAIN)) {
                s.readable = false;
            } else {
                epFailed(L, c, f.src, sys.errno(r));
                progress.* = true;
                return;
            }
        }
    }
    for (0..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        writeSink(L, c, f, i, progress);
    }
    // After the writes: the primary's progress is what a shadow falls behind.
    dropLagging(L, c, f, progress);
    captureStep(c, f);
    // A bulk flow under auto switches; one the shadows kept copying (either
    // method) is looked at again, which is cheap until that set of shadows changes.
    if (L.config.method != .copy and f.win >= L.config.window_max and !f.eof) trySplice(L, st, c, f);
    if (!f.spliced) releaseIfEmpty(L, st, c, f);
}

/// The splice path of a flow. A round is what the stage pipe holds: the
/// source is splice()d into it only once the essential sink (the primary, or
/// the client for replies) has taken the last round, because tee() always
/// copies from the head of the stage. Each shadow gets the whole round by one
/// tee() into its own pipe, or none of it: with too little room it is dropped
/// (`disconnect`; `block` flows never splice, see `trySplice`). Then the
/// essential sink gets the round by splice(), and each shadow's pipe is
/// spliced to its socket. SPLICE_F_NONBLOCK everywhere: a blocking splice
/// from a socket waits to fill the whole length.
fn spliceStep(L: *Loop, c: *Conn, f: *Flow, progress: *bool, moved: *u64) void {
    const s = &c.ep[f.src];
    const ess: usize = if (f.src == client) primary else client;
    const e = &c.ep[ess];
    const flags = sys.SPLICE_F_MOVE | sys.SPLICE_F_NONBLOCK;
    if (!f.eof and s.state == .open and s.readable and alive(e) and e.done == f.tail) {
        // A round is at most a quarter of any shadow's pipe: the other three
        // quarters are that shadow's room to lag (its backlog bound).
        var len: u64 = windowMax(L);
        for (first_shadow..max_eps) |i| {
            if (hasSink(f, i) and alive(&c.ep[i])) len = @min(len, c.ep[i].pipe_cap / 4);
        }
        const r = sys.splice(s.fd, f.pipe_w, @intCast(len), flags);
        if (r > 0) {
            f.tail += @intCast(r);
            moved.* += @intCast(r);
            if (f.src == client) L.state.bytes_in += @intCast(r);
            progress.* = true;
        } else if (r == 0) {
            // A failure is progress too: the other flow must be looked at again (its sinks may have ended).
            progress.* = true;
            if (socketError(s.fd)) |err| return epFailed(L, c, f.src, err);
            f.eof = true;
            s.rd_eof = true;
        } else if (sys.is(r, .AGAIN)) {
            s.readable = false;
        } else {
            progress.* = true;
            return epFailed(L, c, f.src, sys.errno(r));
        }
    }
    for (first_shadow..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const sh = &c.ep[i];
        if (!alive(sh) or sh.fed == f.tail) continue;
        const need = f.tail - sh.fed;
        var room = pipeRoom(sh);
        if (room < need and sh.state == .open and !sh.writable) {
            // Its EAGAIN may be stale (no EPOLLOUT dispatched yet): empty its pipe once more.
            sh.writable = true;
            spliceShadowOut(L, c, i, progress);
            if (!alive(sh)) continue;
            room = pipeRoom(sh);
        }
        const r = if (room >= need) sys.tee(f.pipe_r, sh.pipe_w, @intCast(need), sys.SPLICE_F_NONBLOCK) else 0;
        if (r > 0 and r == need) {
            sh.fed = f.tail;
            progress.* = true;
        } else {
            // A short tee cannot be continued (it would copy the head again): dropped.
            closeEp(L, c, i, .lagged_out, 0, true);
            progress.* = true;
        }
    }
    if (e.state == .open and e.writable and e.done < f.tail) {
        const r = sys.splice(f.pipe_r, e.fd, @intCast(f.tail - e.done), flags);
        if (r > 0) {
            e.done += @intCast(r);
            if (ess == client) L.state.bytes_out += @intCast(r);
            progress.* = true;
        } else if (sys.is(r, .AGAIN) or r == 0) {
            e.writable = false;
        } else {
            epFailed(L, c, ess, sys.errno(r));
            progress.* = true;
        }
    }
    for (0..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const sh = &c.ep[i];
        if (sh.state != .open) continue;
        if (isShadow(i)) {
            spliceShadowOut(L, c, i, progress);
            if (sh.state != .open) continue;
        }
        if (f.eof and sh.done == f.tail and !sh.wr_shut) shutWrite(sh, progress);
    }
}

/// What shadow `sh`'s pipe can take now (0 if FIONREAD fails).
fn pipeRoom(sh: *const Endpoint) u64 {
    const queued = sys.ioctl_int(sh.pipe_w, sys.FIONREAD);
    return if (queued < 0) 0 else sh.pipe_cap -| @as(u64, @intCast(queued));
}

/// Splices what shadow `i`'s pipe holds to its socket, once, if it is writable.
fn spliceShadowOut(L: *Loop, c: *Conn, i: usize, progress: *bool) void {
    const sh = &c.ep[i];
    if (sh.state != .open or !sh.writable or sh.done >= sh.fed) return;
    const flags = sys.SPLICE_F_MOVE | sys.SPLICE_F_NONBLOCK;
    const r = sys.splice(sh.pipe_r, sh.fd, @intCast(sh.fed - sh.done), flags);
    if (r > 0) {
        sh.done += @intCast(r);
        progress.* = true;
    } else if (sys.is(r, .AGAIN) or r == 0) {
        sh.writable = false;
    } else {
        epFailed(L, c, i, sys.errno(r));
        progress.* = true;
    }
}

/// How far shadow `e` is behind: the bytes kept for it alone, which the
/// primary already has. What neither has yet is the primary's backlog (its
/// read window, up to 1 MiB for a bulk flow), not the shadow's: a shadow that
/// keeps pace with the primary is never behind, however far the client runs
/// ahead of both. Without a live primary, everything read counts.
fn shadowLag(c: *const Conn, f: *const Flow, e: *const Endpoint) u64 {
    const pr = &c.ep[primary];
    const base = if (hasSink(f, primary) and alive(pr)) pr.done else f.tail;
    return base -| e.done;
}

/// Shadows past max_lag are dropped (`disconnect`): reset, so that a TCP
/// shadow cannot mistake a cut stream for a complete one. The ring holds a
/// dropped shadow's bytes no longer: what it keeps is bounded by the
/// primary's window plus max_lag (`ensureRoom`).
///
/// Its `writable` can be stale: an EAGAIN seen before its peer read, whose
/// EPOLLOUT this batch has not dispatched yet, while the primary ran ahead
/// (seen on a healthy shadow with an empty send queue). So before the drop
/// the shadow is written once more; only what it still cannot take is lag.
fn dropLagging(L: *Loop, c: *Conn, f: *const Flow, progress: *bool) void {
    switch (L.config.on_lag) {
        .block => return,
        .disconnect => {},
    }
    for (first_shadow..max_eps) |i| {
        if (!hasSink(f, i)) continue;
        const e = &c.ep[i];
        if (!alive(e) or shadowLag(c, f, e) <= L.config.max_lag) continue;
        if (e.state == .open and !e.writable) {
            e.writable = true;
            writeSink(L, c, f, i, progress);
        }
        if (alive(e) and shadowLag(c, f, e) > L.config.max_lag) closeEp(L, c, i, .lagged_out, 0, true);
    }
}

/// Writes sink `i` from the ring while it takes bytes; shuts its write side
/// once it has the whole of an ended flow.
fn writeSink(L: *Loop, c: *Conn, f: *const Flow, i: usize, progress: *bool) void {
    const e = &c.ep[i];
    if (e.state != .open or e.wr_shut) return;
    while (e.writable and e.done < f.tail) {
        const off = e.done & (f.cap - 1);
        const len: usize = @intCast(@min(f.tail - e.done, f.cap - off));
        const r = sys.write(e.fd, @ptrFromInt(f.buf + off), len);
        if (r > 0) {
            e.done += @intCast(r);
            if (i == client) L.state.bytes_out += @intCast(r);
            progress.* = true;
        } else if (sys.is(r, .AGAIN) or r == 0) {
            e.writable = false;
        } else {
            epFailed(L, c, i, sys.errno(r));
            progress.* = true;
            return;
        }
    }
    if (e.state == .open and f.eof and e.done == f.tail and !e.wr_shut) shutWrite(e, progress);
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
            if (r == 0) captureStopped(c, .wrote_nothing, 0) else captureStopped(c, .failed, errnoValue(sys.errno(r)));
            _ = sys.close(f.cap_fd);
            f.cap_fd = -1;
        }
    }
}

/// The first failure of a connection's capture is the one reported.
fn captureStopped(c: *Conn, how: Capture, err: i32) void {
    if (c.capture != .complete) return;
    c.capture = how;
    c.capture_errno = err;
}

/// Reads and drops what shadow `e` has sent, until EAGAIN, its EOF, an error,
/// or `max_reads` reads. Returns the read error, if one ended it.
fn readReplies(st: *State, e: *Endpoint, max_reads: usize, progress: *bool, moved: *u64) ?E {
    var n: usize = 0;
    while (n < max_reads and e.state == .open and e.readable and !e.rd_eof) : (n += 1) {
        const r = sys.read(e.fd, @ptrFromInt(st.scratch), scratch_size);
        if (r > 0) {
            moved.* += @intCast(r);
            progress.* = true;
        } else if (r == 0) {
            e.rd_eof = true;
            progress.* = true;
        } else if (sys.is(r, .AGAIN)) {
            e.readable = false;
        } else return sys.errno(r);
    }
    return null;
}

/// Whether shadow endpoint `e` has its whole stream and our FIN.
fn delivered(c: *const Conn, e: *const Endpoint) bool {
    const f = &c.flows[0];
    return f.eof and e.done == f.tail and e.wr_shut;
}

/// Reads and drops whatever the shadows answer, at most a pump quota's worth
/// a turn (counted in `moved`): a chatty shadow must not hold the loop from
/// the other connections.
fn drainShadows(L: *Loop, st: *State, c: *Conn, progress: *bool, moved: *u64) void {
    const reads_max = pump_quota / scratch_size;
    for (first_shadow..max_eps) |i| {
        const e = &c.ep[i];
        const err = readReplies(st, e, reads_max, progress, moved) orelse continue;
        // A reset means the shadow closed with our bytes unread in its socket
        // (or they came after it closed): it did not take the stream, even
        // if all of it was written. Any other error after the whole stream
        // and our FIN is no failure of the stream.
        if (delivered(c, e) and err != .CONNRESET) closeEp(L, c, i, .complete, 0, false) else epFailed(L, c, i, err);
        progress.* = true;
    }
}

/// Moves bytes on one connection until nothing moves or its quota is used.
fn pump(L: *Loop, st: *State, slot: u32) void {
    const c = &st.conns[slot];
    std.debug.assert(c.in_use and !c.finished);
    var moved: u64 = 0;
    while (!c.finished) {
        var progress = false;
        for (&c.flows) |*f| {
            if (f.spliced) spliceStep(L, c, f, &progress, &moved) else flowStep(L, st, c, f, &progress, &moved);
            if (std.debug.runtime_safety) assertFlow(c, f);
        }
        drainShadows(L, st, c, &progress, &moved);
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
    if (main_done and c.main_done_at == 0) {
        c.main_done_at = now;
        uncount(L, c); // only shadows are left: no place under the limit for them
    }
    var left = false;
    for (first_shadow..max_eps) |i| {
        const e = &c.ep[i];
        if (!alive(e)) continue;
        const whole = delivered(c, e);
        if (whole and e.rd_eof) {
            closeEp(L, c, i, .complete, 0, false);
        } else if (main_done and now >= c.main_done_at + L.config.grace_ns) {
            endLingering(L, st, c, i);
        } else left = true;
    }
    if (main_done and !left) finish(L, st, slot);
}

/// Ends shadow `i` of a connection whose client and primary are done, before
/// its own FIN: `complete` if it has its whole stream (its replies are read
/// first: unread ones would turn our FIN into a reset; edge-triggered, what
/// came since the last event has no event yet, so try), else `lagged-out`.
fn endLingering(L: *Loop, st: *State, c: *Conn, i: usize) void {
    const e = &c.ep[i];
    const whole = delivered(c, e);
    var ignored = false;
    var ignored_bytes: u64 = 0;
    e.readable = true;
    const err = if (whole) readReplies(st, e, drain_reads_max, &ignored, &ignored_bytes) else null;
    if (err == .CONNRESET) return epFailed(L, c, i, .CONNRESET); // it left our bytes unread
    closeEp(L, c, i, if (whole) .complete else .lagged_out, 0, !whole);
}

/// A client waits in the backlog, the limit has room, but every loop's table
/// is full: of connections whose shadows linger (each table holds twice the
/// limit, so at least half are). The one whose client and primary ended first
/// gives its shadows up now, its grace cut short: a lingering shadow must not
/// keep a client out. Its slot comes free with its report.
fn makeRoom(L: *Loop, st: *State) void {
    if (st.used < st.nslots or !groupHasRoom(groupOf(L))) return;
    if (@atomicLoad(u32, &L.control.accepting, .monotonic) == 0) return;
    for (peers(L)) |*p| if (@atomicLoad(u64, &p.used, .monotonic) < st.nslots) return;
    var waiting = [1]sys.PollFd{.{ .fd = L.config.listen_fd, .events = linux.POLL.IN, .revents = 0 }};
    if (sys.poll(&waiting, 1, 0) <= 0) return;
    var oldest: ?u32 = null;
    var since: u64 = std.math.maxInt(u64);
    for (0..st.high) |s| {
        const c = &st.conns[s];
        if (c.in_use and !c.finished and c.main_done_at != 0 and c.main_done_at < since) {
            since = c.main_done_at;
            oldest = @intCast(s);
        }
    }
    const slot = oldest orelse return;
    const c = &st.conns[slot];
    for (first_shadow..max_eps) |i| if (alive(&c.ep[i])) endLingering(L, st, c, i);
    finish(L, st, slot);
}

/// Closes what the connection still holds and queues its report. Once per
/// connection: a finished slot is skipped everywhere until it is reported.
fn finish(L: *Loop, st: *State, slot: u32) void {
    const c = &st.conns[slot];
    if (c.finished or !c.in_use) return;
    uncount(L, c);
    for (&c.flows) |*f| {
        if (f.cap_fd >= 0) _ = sys.close(f.cap_fd);
        f.cap_fd = -1;
        if (f.buf != 0) bufRelease(L, st, f.buf, f.cap);
        f.buf = 0;
    }
    closePipes(c);
    c.finished = true;
    c.end_ns = sys.realtimeNs();
    c.next = nil;
    if (st.done_tail == nil) st.done_head = slot else st.conns[st.done_tail].next = slot;
    st.done_tail = slot;
    std.debug.assert(L.state.active > 0);
    L.state.active -|= 1;
}

/// Puts a connection on the ready list, unless it is there already.
fn enqueue(st: *State, slot: u32) void {
    const c = &st.conns[slot];
    if (c.queued or !c.in_use or c.finished) return;
    std.debug.assert(st.ready_len < st.nslots);
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
        const c = &st.conns[slot];
        c.queued = false;
        // Stale: finished (or reported and free) since it was queued.
        if (c.in_use and !c.finished) pump(L, st, slot);
    }
}

// ---- accepting -----------------------------------------------------------------

/// Whether this client is mirrored: a hash of its address and port (or, for
/// a Unix client, which has none, of the connection id) against the sample.
fn sampled(L: *const Loop, c: *const Conn) bool {
    if (L.config.sample_bp >= 10_000) return true;
    const h = if (c.addr_len > 2) Xxh64.hash(0, c.addr[0..c.addr_len]) else Xxh64.hash(0, std.mem.asBytes(&c.id));
    return h % 10_000 < L.config.sample_bp;
}

/// Creates `ID.suffix` in the capture directory (a fresh one per run, so it
/// never exists: O_EXCL keeps an earlier file safe all the same).
fn openCapture(L: *const Loop, c: *Conn, f: *Flow, suffix: []const u8) void {
    var name: [40]u8 = undefined;
    const path = std.fmt.bufPrintZ(&name, "{d}.{s}", .{ c.id, suffix }) catch unreachable;
    const flags: u32 = @bitCast(linux.O{ .ACCMODE = .WRONLY, .CREAT = true, .EXCL = true, .CLOEXEC = true });
    const r = sys.call(.openat, .{ sys.arg(L.config.capture_dir), @intFromPtr(path.ptr), flags, 0o644 });
    if (r < 0) return captureStopped(c, .failed, errnoValue(sys.errno(r)));
    f.cap_fd = @intCast(r);
    f.hash = Xxh64.init(0);
}

/// Takes a free slot (the caller checked `used < nslots`).
fn takeSlot(st: *State) u32 {
    std.debug.assert(st.used < st.nslots);
    if (st.free_head != nil) {
        const slot = st.free_head;
        st.free_head = st.conns[slot].next;
        return slot;
    }
    st.high += 1;
    return st.high - 1;
}

/// A client `fd` was accepted (its place under the limit already taken).
fn newConn(L: *Loop, st: *State, fd: i32, addr: []const u8) void {
    const slot = takeSlot(st);
    const c = &st.conns[slot];
    const gen = c.gen +% 1;
    const queued = c.queued;
    c.* = .{ .gen = gen, .in_use = true, .queued = queued, .counted = true };
    st.used += 1;
    L.state.active += 1;
    L.state.accepted += 1;
    c.id = L.config.id_base + st.next_id * L.config.id_step;
    st.next_id += 1;
    c.start_ns = sys.realtimeNs();
    c.addr_len = @intCast(@min(addr.len, c.addr.len));
    @memcpy(c.addr[0..c.addr_len], addr[0..c.addr_len]);
    c.ep[client] = .{ .fd = fd, .state = .open, .writable = true };
    if (L.config.listen_tcp != 0) setInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1);
    const add = epollAdd(L.state.epoll_fd, fd, conn_events, tag(gen, slot, client));
    c.mirrored = (L.config.ntargets > 1 or L.config.capture_dir >= 0) and sampled(L, c);
    c.flows[0].sinks = 1 << primary;
    if (add < 0) {
        closeEp(L, c, client, .failed, errnoValue(sys.errno(add)), false);
        return finish(L, st, slot);
    }
    startConnect(L, c, slot, primary, &L.config.targets[0]);
    if (c.mirrored and c.ep[primary].state != .closed) {
        for (1..@as(usize, L.config.ntargets)) |k| {
            c.flows[0].sinks |= @as(u16, 1) << @intCast(first_shadow + k - 1);
            startConnect(L, c, slot, first_shadow + k - 1, &L.config.targets[k]);
        }
        if (L.config.capture_dir >= 0) {
            c.capture = .complete;
            openCapture(L, c, &c.flows[0], "c2s");
            openCapture(L, c, &c.flows[1], "s2c");
        }
    }
    // A capture is written and hashed from the ring: captured connections copy.
    switch (L.config.method) {
        .splice => for (&c.flows) |*f| trySplice(L, st, c, f),
        .copy, .auto => {},
    }
    enqueue(st, slot);
}

fn peers(L: *const Loop) []Peer {
    const g = groupOf(L);
    return g.peers[0..g.npeers];
}

fn publishLoad(L: *const Loop, st: *const State) void {
    @atomicStore(u64, &peers(L)[L.config.group_index].used, st.used, .monotonic);
}

/// The loop that should take the next client: this one unless another holds
/// at least two connections fewer (a slack of one, so that loops with equal
/// loads do not hand clients back and forth).
fn takerOf(L: *const Loop, st: *const State) ?usize {
    var best: ?usize = null;
    var low: u64 = st.used;
    for (peers(L), 0..) |*p, i| {
        if (i == L.config.group_index) continue;
        const used = @atomicLoad(u64, &p.used, .monotonic);
        if (used + 1 < low) {
            low = used + 1;
            best = i;
        }
    }
    return best;
}

fn acceptSome(L: *Loop, st: *State, now: u64) void {
    const g = groupOf(L);
    var n: u32 = 0;
    while (st.listening and st.used < st.nslots and n < @max(1, L.config.accept_batch)) : (n += 1) {
        if (takerOf(L, st)) |i| {
            // Hand this client to a less loaded loop: wake it, it accepts.
            const one: u64 = 1;
            _ = sys.write(peers(L)[i].kick_fd, @ptrCast(&one), @sizeOf(u64));
            return;
        }
        if (!reservePlace(g)) return;
        var addr: [128]u8 = undefined;
        var len: u32 = addr.len;
        const flags = linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
        const r = sys.call(.accept4, .{ sys.arg(L.config.listen_fd), @intFromPtr(&addr), @intFromPtr(&len), flags });
        if (r < 0) {
            releasePlace(g);
            if (sys.is(r, .AGAIN)) return;
            L.state.accept_errors += 1;
            // Out of fds or memory: leave clients in the backlog for a while.
            switch (sys.errno(r)) {
                .MFILE, .NFILE, .NOBUFS, .NOMEM => st.accept_pause_until = now + accept_pause_ns,
                // ECONNABORTED and the like: that client is gone; the next event brings the next.
                else => {},
            }
            return;
        }
        newConn(L, st, @intCast(r), addr[0..@min(len, addr.len)]);
        publishLoad(L, st);
    }
}

/// Registers the listener while accepting is wanted and there is room.
fn updateListener(L: *Loop, st: *State, now: u64) void {
    const want = @atomicLoad(u32, &L.control.accepting, .monotonic) != 0 and
        @atomicLoad(u32, &L.control.abort, .monotonic) == 0 and
        st.used < st.nslots and groupHasRoom(groupOf(L)) and now >= st.accept_pause_until;
    if (want != st.listening) {
        const epfd = sys.arg(L.state.epoll_fd);
        if (want) {
            // Exclusive: of the loops that share this listener, one is woken per client.
            if (epollAdd(L.state.epoll_fd, L.config.listen_fd, EPOLL.IN | EPOLL.EXCLUSIVE, tag_listener) < 0) return;
        } else {
            _ = sys.call(.epoll_ctl, .{ epfd, EPOLL.CTL_DEL, sys.arg(L.config.listen_fd), 0 });
        }
        st.listening = want;
    }
    @atomicStore(u32, &L.state.listening, @intFromBool(st.listening), .monotonic);
}

/// Connect timeouts and the shadows' grace, checked every `sweep_ns`.
fn sweep(L: *Loop, st: *State, now: u64) void {
    for (0..st.high) |s| {
        const slot: u32 = @intCast(s);
        const c = &st.conns[slot];
        if (!c.in_use or c.finished) continue;
        for (1..max_eps) |i| {
            const e = &c.ep[i];
            if (e.state == .connecting and now >= e.deadline) connectFailed(L, c, i, .timeout, .TIMEDOUT);
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
    while (st.done_head != nil and L.state.nreports < L.config.report_cap) {
        const slot = st.done_head;
        const c = &st.conns[slot];
        std.debug.assert(c.in_use and c.finished);
        st.done_head = c.next;
        if (st.done_head == nil) st.done_tail = nil;
        if (L.state.nreports == 0) st.first_report_at = now;
        fillReport(&reports[L.state.nreports], c);
        L.state.nreports += 1;
        L.state.closed += 1;
        c.in_use = false;
        c.finished = false;
        c.next = st.free_head;
        st.free_head = slot;
        std.debug.assert(st.used > 0);
        st.used -|= 1;
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
    r.client_outcome = c.ep[client].outcome;
    r.client_errno = c.ep[client].err;
    r.primary_outcome = c.ep[primary].outcome;
    r.primary_errno = c.ep[primary].err;
    r.mirrored = @intFromBool(c.mirrored);
    r.capture = c.capture;
    r.capture_errno = c.capture_errno;
    r.addr_len = c.addr_len;
    @memcpy(r.addr[0..c.addr_len], c.addr[0..c.addr_len]);
    for (0..max_shadows) |k| {
        const e = &c.ep[first_shadow + k];
        r.shadow_bytes[k] = e.done;
        r.shadow_outcome[k] = e.outcome;
        r.shadow_errno[k] = e.err;
    }
}

/// Closes every connection now (the drain timeout). An endpoint that has its
/// whole stream and our FIN is closed as usual; any other gets a reset, so
/// that a cut stream never looks whole to a TCP peer.
fn closeAll(L: *Loop, st: *State) void {
    for (0..st.high) |s| {
        const c = &st.conns[s];
        if (!c.in_use or c.finished) continue;
        for (0..max_eps) |i| {
            const e = &c.ep[i];
            if (!alive(e)) continue;
            const whole = isShadow(i) and delivered(c, e);
            closeEp(L, c, i, if (whole) .complete else .aborted, 0, !e.wr_shut);
        }
        finish(L, st, @intCast(s));
    }
}

// ---- exports ---------------------------------------------------------------------

/// Sets a loop to its defaults (every fd -1, the default knobs, no state);
/// TypeScript then fills in the config.
pub export fn oc_mirror_defaults(L: *Loop) void {
    L.* = .{};
}

fn validConfig(cfg: *const LoopConfig) bool {
    if (!sys.validTag(OnLag, &cfg.on_lag) or !sys.validTag(Method, &cfg.method)) return false;
    if (cfg.ntargets < 1 or cfg.ntargets > 1 + max_shadows) return false;
    if (cfg.slots == 0 or cfg.slots > slots_max or cfg.report_cap == 0 or cfg.id_step == 0) return false;
    if (!std.math.isPowerOfTwo(cfg.window) or !std.math.isPowerOfTwo(@max(1, cfg.window_max))) return false;
    if (cfg.max_lag == 0 or cfg.max_lag > max_lag_max or cfg.budget_ns == 0) return false;
    if (cfg.group == 0) return false;
    const g: *const Group = @ptrFromInt(cfg.group);
    return g.npeers >= 1 and g.npeers <= max_loops and cfg.group_index < g.npeers and g.limit >= 1;
}

/// Allocates the engine's state and its epoll set. TypeScript has filled in
/// the config, its group, `listen_fd` and `wake_fd`. Returns 0, -EINVAL for a
/// config outside its ranges (an enum value it does not have, no group), or
/// the errno of mmap/epoll.
pub export fn oc_mirror_init(L: *Loop) isize {
    if (L.state.mem != 0 or !validConfig(&L.config)) return sys.fail(.INVAL);
    const n: usize = L.config.slots;
    const len = std.mem.alignForward(usize, @sizeOf(State) + n * @sizeOf(Conn) + n * 4 + scratch_size + 64, 4096);
    const mem = mmapAnon(len);
    if (mem == 0) return sys.fail(.NOMEM);
    const conns_at = std.mem.alignForward(usize, mem + @sizeOf(State), @alignOf(Conn));
    const ready_at = conns_at + n * @sizeOf(Conn);
    const st: *State = @ptrFromInt(mem);
    st.* = .{
        .conns = @ptrFromInt(conns_at),
        .ready = @ptrFromInt(ready_at),
        .nslots = L.config.slots,
        .scratch = std.mem.alignForward(usize, ready_at + n * 4, 16),
        .mem_len = len,
    };
    L.state = .{};
    const ep = sys.call(.epoll_create1, .{linux.EPOLL.CLOEXEC});
    if (ep < 0) {
        _ = sys.munmap(mem, len);
        return ep;
    }
    L.state.epoll_fd = @intCast(ep);
    var r = epollAdd(L.state.epoll_fd, L.config.wake_fd, EPOLL.IN, tag_wake);
    if (r >= 0) r = epollAdd(L.state.epoll_fd, peers(L)[L.config.group_index].kick_fd, EPOLL.IN, tag_kick);
    if (r < 0) {
        _ = sys.close(L.state.epoll_fd);
        L.state.epoll_fd = -1;
        _ = sys.munmap(mem, len);
        return r;
    }
    L.state.mem = mem;
    return 0;
}

/// Runs the loop until the budget passes, reports are waiting, the wake fd
/// is written, or (with `abort`) everything is closed. The reports of the
/// last call must have been read: `nreports` starts at 0.
pub export fn oc_mirror_run(L: *Loop, reports: [*]Report) Status {
    if (L.state.mem == 0 or L.state.epoll_fd < 0) return .failed;
    const st = stateOf(L);
    L.state.nreports = 0;
    const start = sys.nowNs();
    var events: [256]linux.epoll_event = undefined;
    while (true) {
        const now = sys.nowNs();
        if (@atomicLoad(u32, &L.control.abort, .monotonic) != 0) {
            updateListener(L, st, now);
            closeAll(L, st);
            flushReports(L, st, reports, now);
            return if (st.done_head == nil and L.state.nreports == 0) .done else .events;
        }
        flushReports(L, st, reports, now);
        const n_rep = L.state.nreports;
        if (n_rep > 0 and (n_rep >= L.config.report_cap / 2 or now >= st.first_report_at + report_delay_ns)) {
            return .events;
        }
        const end = start + L.config.budget_ns;
        if (now >= end) return if (n_rep > 0) .events else .again;
        if (now >= st.next_sweep) {
            sweep(L, st, now);
            st.next_sweep = now + sweep_ns;
            continue;
        }
        makeRoom(L, st);
        updateListener(L, st, now);
        var until = @min(end, st.next_sweep);
        if (n_rep > 0) until = @min(until, st.first_report_at + report_delay_ns);
        const timeout: usize = if (st.ready_len > 0) 0 else @intCast((until - now + 999_999) / 1_000_000);
        const n = sys.call(.epoll_pwait, .{ sys.arg(L.state.epoll_fd), @intFromPtr(&events), events.len, timeout, 0, sys.sigset_bytes });
        if (n < 0) {
            const err = sys.errno(n);
            L.state.err = errnoValue(err);
            // Not our epoll set any more: release must not close whatever has that number now.
            if (err == .BADF) L.state.epoll_fd = -1;
            return .failed;
        }
        var woken = false;
        for (events[0..@intCast(n)]) |ev| {
            const t = ev.data.u64;
            if (t == tag_wake) {
                var v: u64 = 0;
                _ = sys.read(L.config.wake_fd, @ptrCast(&v), @sizeOf(u64));
                woken = true;
            } else if (t == tag_listener) {
                acceptSome(L, st, now);
            } else if (t == tag_kick) {
                var v: u64 = 0;
                _ = sys.read(peers(L)[L.config.group_index].kick_fd, @ptrCast(&v), @sizeOf(u64));
                updateListener(L, st, now);
                acceptSome(L, st, now);
            } else dispatch(L, st, t, ev.events);
        }
        runReady(L, st);
        if (woken) {
            const later = sys.nowNs();
            flushReports(L, st, reports, later);
            // What TypeScript changed (accepting) is in effect when it sees `woken`.
            updateListener(L, st, later);
            return .woken;
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
    if (e.state == .connecting and events & (EPOLL.OUT | EPOLL.ERR | EPOLL.HUP) != 0) connectDone(L, c, i);
    if (e.state == .open) {
        if (events & (EPOLL.IN | EPOLL.RDHUP | EPOLL.HUP | EPOLL.ERR) != 0) e.readable = true;
        if (events & (EPOLL.OUT | EPOLL.HUP | EPOLL.ERR) != 0) e.writable = true;
    }
    enqueue(st, slot);
}

/// Closes every connection (without reports), the epoll set and the state.
/// The listener and wake fd are TypeScript's. Safe to call twice.
pub export fn oc_mirror_release(L: *Loop) isize {
    if (L.state.mem == 0) return 0;
    const st = stateOf(L);
    closeAll(L, st);
    for (st.pool[0..st.pool_len]) |b| _ = sys.munmap(b, L.config.window);
    if (L.state.epoll_fd >= 0) _ = sys.close(L.state.epoll_fd);
    L.state.epoll_fd = -1;
    L.state.listening = 0;
    _ = sys.munmap(L.state.mem, st.mem_len);
    L.state.mem = 0;
    return 0;
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Go does at start-up):
/// a proxy holds two or more fds per connection. Returns the new soft limit.
pub export fn oc_raise_nofile() isize {
    var lim: linux.rlimit = undefined;
    const nofile: usize = @intCast(@intFromEnum(linux.rlimit_resource.NOFILE));
    const r = sys.call(.prlimit64, .{ 0, nofile, 0, @intFromPtr(&lim) });
    if (r < 0) return r;
    if (lim.cur < lim.max) {
        lim.cur = lim.max;
        const s = sys.call(.prlimit64, .{ 0, nofile, @intFromPtr(&lim), 0 });
        if (s < 0) return s;
    }
    return @intCast(@min(lim.cur, std.math.maxInt(i32)));
}

// ---- Tests: the steps on socketpairs, the life of a connection on loopback
// sockets (run by tests/zig_test.ts through the pinned Zig).

const testing = std.testing;

fn testLoop() Loop {
    var L = Loop{};
    L.config.method = .copy;
    L.config.window = 1024;
    L.config.window_max = 1024;
    L.config.max_lag = 4096;
    L.config.ntargets = 2;
    return L;
}

fn testState() State {
    return .{ .conns = undefined, .ready = undefined, .nslots = 0 };
}

fn freePool(L: *const Loop, st: *State) void {
    for (st.pool[0..st.pool_len]) |b| _ = sys.munmap(b, L.config.window);
    st.pool_len = 0;
}

test "tags round-trip and keep the generation" {
    const t = tag(0xdead_beef, 0x12_3456, 9);
    try testing.expectEqual(@as(u32, 0xdead_beef), tagGen(t));
    try testing.expectEqual(@as(u32, 0x12_3456), tagSlot(t));
    try testing.expectEqual(@as(u32, 9), tagEp(t));
    try testing.expect(t != tag_listener and t != tag_wake and t != tag_kick);
    try testing.expect(slots_max - 1 <= 0xff_ffff);
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
    try testing.expectEqual(@as(u64, 1024), readRoom(&L, &c, &c.flows[0]));
    c.ep[primary].done = 900;
    try testing.expectEqual(@as(u64, 924), readRoom(&L, &c, &c.flows[0]));
    L.config.on_lag = .block;
    c.flows[0].tail = 4000;
    c.ep[primary].done = 4000;
    try testing.expectEqual(@as(u64, 96), readRoom(&L, &c, &c.flows[0]));
    // A closed shadow no longer counts.
    c.ep[first_shadow].state = .closed;
    try testing.expectEqual(@as(u64, 1024), readRoom(&L, &c, &c.flows[0]));
}

test "a shadow past max_lag is dropped under disconnect, kept under block" {
    var L = testLoop();
    var c = Conn{};
    var progress = false;
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .connecting };
    c.flows[0].sinks = (1 << primary) | (1 << first_shadow);
    c.flows[0].tail = 1 << 20;
    // The client ran far ahead, but of the primary too: the shadow is not behind it.
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.connecting, c.ep[first_shadow].state);
    c.ep[primary].done = 4096;
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.connecting, c.ep[first_shadow].state);
    c.ep[primary].done = 4097; // one byte more than max_lag kept for the shadow alone
    L.config.on_lag = .block;
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.connecting, c.ep[first_shadow].state);
    L.config.on_lag = .disconnect;
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.closed, c.ep[first_shadow].state);
    try testing.expectEqual(Outcome.lagged_out, c.ep[first_shadow].outcome);
    try testing.expectEqual(@as(u64, 1), L.state.shadow_dropped);
    // Without a live primary, every byte read and not taken counts.
    c.ep[primary].state = .closed;
    // (writable: just written, and it took no more; a stale flag is the next test's.)
    c.ep[first_shadow + 1] = .{ .state = .open, .writable = true, .done = (1 << 20) - 4096 };
    c.flows[0].sinks |= 1 << (first_shadow + 1);
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.open, c.ep[first_shadow + 1].state);
    c.ep[first_shadow + 1].done -= 1;
    dropLagging(&L, &c, &c.flows[0], &progress);
    try testing.expectEqual(EpState.closed, c.ep[first_shadow + 1].state);
}

test "a shadow with a stale EAGAIN is written once more before it counts as lagging; a full one is dropped" {
    for ([_]bool{ false, true }) |full| {
        var L = testLoop();
        var st = testState();
        var c = Conn{};
        // The shadow said EAGAIN once and its EPOLLOUT has not come yet: writable is false.
        const net = testConn(&c, false);
        defer closeAllFds(&net.fds);
        var junk: [4096]u8 = undefined;
        @memset(&junk, 'x');
        if (full) while (sys.write(c.ep[first_shadow].fd, &junk, junk.len) > 0) {};
        const f = &c.flows[0];
        var data: [16384]u8 = undefined;
        for (&data, 0..) |*b, k| b.* = @truncate(k);
        try testing.expectEqual(@as(isize, data.len), sys.write(net.client, &data, data.len));
        var progress = true;
        var moved: u64 = 0;
        while (progress) {
            progress = false;
            flowStep(&L, &st, &c, f, &progress, &moved);
            assertFlow(&c, f);
        }
        try testing.expectEqual(@as(u64, data.len), c.ep[primary].done);
        if (full) {
            try testing.expectEqual(Outcome.lagged_out, c.ep[first_shadow].outcome);
        } else {
            try testing.expectEqual(EpState.open, c.ep[first_shadow].state);
            try testing.expectEqual(@as(u64, data.len), c.ep[first_shadow].done);
            var got: [16384]u8 = undefined;
            try testing.expectEqual(@as(isize, got.len), sys.read(net.shadow, &got, got.len));
            try testing.expectEqualSlices(u8, &data, &got);
        }
        releaseIfEmpty(&L, &st, &c, f);
        freePool(&L, &st);
    }
}

test "the ring grows keeping its bytes at their positions, and is released when empty" {
    var L = testLoop();
    var st = testState();
    var c = Conn{};
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .open };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    try testing.expectEqual(@as(u64, 1024), ensureRoom(&L, &st, &c, f, 1024));
    try testing.expectEqual(@as(usize, 1024), f.cap);
    // Fill 1000 bytes starting at position 600 (wrapping), all unread by the shadow.
    f.tail = 600;
    c.ep[primary].done = 600;
    c.ep[first_shadow].done = 600;
    var pos: u64 = 600;
    while (pos < 1600) : (pos += 1) @as([*]u8, @ptrFromInt(f.buf))[pos & 1023] = @truncate(pos);
    f.tail = 1600;
    c.ep[primary].done = 1600;
    try testing.expectEqual(@as(u64, 1024), ensureRoom(&L, &st, &c, f, 1024));
    try testing.expectEqual(@as(usize, 2048), f.cap);
    pos = 600;
    while (pos < 1600) : (pos += 1) {
        try testing.expectEqual(@as(u8, @truncate(pos)), @as([*]u8, @ptrFromInt(f.buf))[pos & 2047]);
    }
    assertFlow(&c, f);
    // Never beyond max_lag + window.
    try testing.expect(ensureRoom(&L, &st, &c, f, 1 << 20) <= pow2(L.config.max_lag + L.config.window) - 1000);
    c.ep[first_shadow].done = f.tail;
    releaseIfEmpty(&L, &st, &c, f);
    try testing.expect(f.buf != 0); // grown: kept while the flow is busy
    releaseEmpty(&L, &st, &c, f, true);
    try testing.expectEqual(@as(usize, 0), f.buf);
    freePool(&L, &st);
}

test "sampling is deterministic per client address" {
    var L = testLoop();
    var c = Conn{};
    c.addr_len = 16;
    @memset(c.addr[0..16], 7);
    L.config.sample_bp = 5000;
    const first = sampled(&L, &c);
    try testing.expectEqual(first, sampled(&L, &c));
    L.config.sample_bp = 0;
    try testing.expect(!sampled(&L, &c));
    L.config.sample_bp = 10_000;
    try testing.expect(sampled(&L, &c));
}

fn socketPair() [2]i32 {
    var fds: [2]i32 = undefined;
    const kind = linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const r = sys.call(.socketpair, .{ linux.AF.UNIX, kind, 0, @intFromPtr(&fds) });
    std.debug.assert(r == 0);
    return fds;
}

fn closeAllFds(fds: []const i32) void {
    for (fds) |fd| _ = sys.close(fd);
}

/// The peers' ends of a test connection's socket pairs, and every fd to close.
const Peers = struct { client: i32, primary: i32, shadow: i32, fds: [6]i32 };

/// Sets `c` up as an open connection on socket pairs: client → primary and
/// one shadow (flow 0 sinks both), the shadow's `writable` as given (false:
/// an EAGAIN whose EPOLLOUT has not come). Returns the other ends.
fn testConn(c: *Conn, shadow_writable: bool) Peers {
    const cl = socketPair();
    const pr = socketPair();
    const sh = socketPair();
    c.ep[client] = .{ .fd = cl[0], .state = .open, .readable = true, .writable = true };
    c.ep[primary] = .{ .fd = pr[0], .state = .open, .writable = true };
    c.ep[first_shadow] = .{ .fd = sh[0], .state = .open, .writable = shadow_writable };
    c.flows[0].sinks = (1 << primary) | (1 << first_shadow);
    return .{ .client = cl[1], .primary = pr[1], .shadow = sh[1], .fds = .{ cl[0], cl[1], pr[0], pr[1], sh[0], sh[1] } };
}

test "one flow step: the client's bytes reach the primary and the shadow, EOF becomes a shutdown" {
    var L = testLoop();
    var st = testState();
    var c = Conn{};
    const net = testConn(&c, true);
    defer closeAllFds(&net.fds);
    const f = &c.flows[0];
    try testing.expectEqual(@as(isize, 5), sys.write(net.client, "hello", 5));
    _ = sys.call(.shutdown, .{ sys.arg(net.client), linux.SHUT.WR });
    var progress = true;
    var moved: u64 = 0;
    while (progress) {
        progress = false;
        flowStep(&L, &st, &c, f, &progress, &moved);
        assertFlow(&c, f);
    }
    try testing.expect(f.eof);
    for ([_]i32{ net.primary, net.shadow }) |fd| {
        var buf: [16]u8 = undefined;
        try testing.expectEqual(@as(isize, 5), sys.read(fd, &buf, buf.len));
        try testing.expectEqualStrings("hello", buf[0..5]);
        try testing.expectEqual(@as(isize, 0), sys.read(fd, &buf, buf.len));
    }
    try testing.expectEqual(@as(usize, 0), f.buf);
    freePool(&L, &st);
}

test "a group hands the next client to a loop holding at least two connections fewer" {
    var L = testLoop();
    var st = testState();
    var group = Group{ .limit = 10, .npeers = 2 };
    L.config.group = @intFromPtr(&group);
    L.config.group_index = 0;
    st.used = 1;
    try testing.expectEqual(@as(?usize, null), takerOf(&L, &st));
    st.used = 2;
    try testing.expectEqual(@as(?usize, 1), takerOf(&L, &st));
    group.peers[1].used = 1;
    try testing.expectEqual(@as(?usize, null), takerOf(&L, &st));
    publishLoad(&L, &st);
    try testing.expectEqual(@as(u64, 2), group.peers[0].used);
}

test "the group's limit: a place is taken while one is free, and given back once" {
    var group = Group{ .limit = 2, .npeers = 1 };
    try testing.expect(reservePlace(&group));
    try testing.expect(reservePlace(&group));
    try testing.expect(!reservePlace(&group));
    try testing.expect(!groupHasRoom(&group));
    releasePlace(&group);
    try testing.expect(groupHasRoom(&group));
    var L = testLoop();
    L.config.group = @intFromPtr(&group);
    var c = Conn{ .counted = true };
    uncount(&L, &c);
    uncount(&L, &c);
    try testing.expectEqual(@as(u64, 0), group.counted);
}

test "the splice path: one round tee()d to the shadow's pipe, spliced to the primary, EOF shut down" {
    var L = testLoop();
    L.config.method = .splice;
    L.config.window_max = 4096;
    var st = testState();
    var c = Conn{};
    const net = testConn(&c, true);
    defer closeAllFds(&net.fds);
    const f = &c.flows[0];
    trySplice(&L, &st, &c, f);
    defer closePipes(&c);
    try testing.expect(f.spliced);
    try testing.expect(c.ep[first_shadow].pipe_w >= 0);
    try testing.expectEqual(@as(isize, 5), sys.write(net.client, "hello", 5));
    _ = sys.call(.shutdown, .{ sys.arg(net.client), linux.SHUT.WR });
    var progress = true;
    var moved: u64 = 0;
    while (progress) {
        progress = false;
        spliceStep(&L, &c, f, &progress, &moved);
        assertFlow(&c, f);
    }
    try testing.expect(f.eof);
    for ([_]i32{ net.primary, net.shadow }) |fd| {
        var buf: [16]u8 = undefined;
        try testing.expectEqual(@as(isize, 5), sys.read(fd, &buf, buf.len));
        try testing.expectEqualStrings("hello", buf[0..5]);
        try testing.expectEqual(@as(isize, 0), sys.read(fd, &buf, buf.len));
    }
}

test "the splice path: a shadow with a stale EAGAIN has its pipe emptied once more before it is dropped" {
    var L = testLoop();
    L.config.method = .splice;
    L.config.window_max = 4096;
    var st = testState();
    var c = Conn{};
    // EAGAIN once, EPOLLOUT not dispatched yet (a test has no epoll): writable stays false.
    const net = testConn(&c, false);
    defer closeAllFds(&net.fds);
    const f = &c.flows[0];
    trySplice(&L, &st, &c, f);
    defer closePipes(&c);
    try testing.expect(f.spliced);
    // Twice the shadow's pipe (64 KiB), less than its socket takes.
    const total: usize = 128 * 1024;
    var chunk: [4096]u8 = undefined;
    @memset(&chunk, 'm');
    var sent: usize = 0;
    var got_primary: usize = 0;
    while (sent < total) {
        try testing.expectEqual(@as(isize, chunk.len), sys.write(net.client, &chunk, chunk.len));
        sent += chunk.len;
        c.ep[client].readable = true; // what EPOLLIN would say
        var progress = true;
        var moved: u64 = 0;
        while (progress) {
            progress = false;
            spliceStep(&L, &c, f, &progress, &moved);
            assertFlow(&c, f);
        }
        var buf: [8192]u8 = undefined;
        while (true) {
            const r = sys.read(net.primary, &buf, buf.len);
            if (r <= 0) break;
            got_primary += @intCast(r);
        }
    }
    try testing.expectEqual(total, got_primary);
    try testing.expectEqual(EpState.open, c.ep[first_shadow].state);
    try testing.expectEqual(@as(u64, total), c.ep[first_shadow].done);
    var got_shadow: usize = 0;
    var buf: [8192]u8 = undefined;
    while (true) {
        const r = sys.read(net.shadow, &buf, buf.len);
        if (r <= 0) break;
        got_shadow += @intCast(r);
    }
    try testing.expectEqual(total, got_shadow);
}

test "a shadowed flow under block never splices (a short tee could not wait), whatever the method" {
    var L = testLoop();
    L.config.on_lag = .block;
    var st = testState();
    for ([_]Method{ .splice, .auto }) |method| {
        L.config.method = method;
        var c = Conn{};
        c.ep[primary] = .{ .state = .open };
        c.ep[first_shadow] = .{ .state = .open };
        const f = &c.flows[0];
        f.sinks = (1 << primary) | (1 << first_shadow);
        trySplice(&L, &st, &c, f);
        try testing.expect(!f.spliced and f.kept_by != 0);
        try testing.expectEqual(@as(i32, -1), f.pipe_r);
        // Without shadows there is nothing to wait for: it splices.
        var lone = Conn{};
        lone.ep[client] = .{ .state = .open };
        trySplice(&L, &st, &lone, &lone.flows[1]);
        try testing.expect(lone.flows[1].spliced);
        closePipes(&lone);
    }
}

test "auto keeps a flow on copy when a shadow's pipe could not hold max_lag" {
    var L = testLoop();
    L.config.method = .auto;
    L.config.max_lag = 1 << 30; // far beyond any pipe an unprivileged process may have
    var st = testState();
    var c = Conn{};
    c.ep[primary] = .{ .state = .open };
    c.ep[first_shadow] = .{ .state = .open };
    const f = &c.flows[0];
    f.sinks = (1 << primary) | (1 << first_shadow);
    trySplice(&L, &st, &c, f);
    try testing.expect(!f.spliced);
    try testing.expectEqual(@as(i32, -1), f.pipe_r);
    try testing.expectEqual(@as(i32, -1), c.ep[first_shadow].pipe_r);
    try testing.expect(f.kept_by != 0 and !f.no_splice);
    // Decided once for this shadow, not retried per read: even with a max_lag
    // that would fit now, nothing is opened.
    L.config.max_lag = 1024;
    trySplice(&L, &st, &c, f);
    try testing.expect(!f.spliced);
    try testing.expectEqual(@as(i32, -1), f.pipe_r);
    f.kept_by = 0;
    trySplice(&L, &st, &c, f);
    try testing.expect(f.spliced);
    closePipes(&c);
}

test "a flow the shadows kept copying splices once they are gone (a dropped shadow must not slow the primary)" {
    for ([_]OnLag{ .disconnect, .block }) |on_lag| {
        var L = testLoop();
        L.config.method = .auto;
        L.config.on_lag = on_lag;
        L.config.max_lag = 1 << 30; // no shadow pipe can hold it: kept copying
        var st = testState();
        var c = Conn{};
        c.ep[primary] = .{ .state = .open };
        c.ep[first_shadow] = .{ .state = .open };
        c.ep[first_shadow + 1] = .{ .state = .open };
        const f = &c.flows[0];
        f.sinks = (1 << primary) | (1 << first_shadow) | (1 << (first_shadow + 1));
        trySplice(&L, &st, &c, f);
        try testing.expect(!f.spliced and f.kept_by != 0);
        c.ep[first_shadow].state = .closed; // one dropped: the other still keeps it copying
        trySplice(&L, &st, &c, f);
        try testing.expect(!f.spliced and f.kept_by != 0);
        c.ep[first_shadow + 1].state = .closed; // none left
        trySplice(&L, &st, &c, f);
        try testing.expect(f.spliced);
        try testing.expect(f.pipe_r >= 0);
        closePipes(&c);
    }
}

test "a Unix peer sees ECONNRESET only if we close with its bytes unread; else EOF" {
    var buf: [4]u8 = undefined;
    const a = socketPair();
    try testing.expectEqual(@as(isize, 1), sys.write(a[1], "x", 1));
    closeReset(a[0]);
    try testing.expect(sys.is(sys.read(a[1], &buf, buf.len), .CONNRESET));
    _ = sys.close(a[1]);
    const b = socketPair();
    closeReset(b[0]); // SO_LINGER 0 does nothing for AF_UNIX
    try testing.expectEqual(@as(isize, 0), sys.read(b[1], &buf, buf.len));
    _ = sys.close(b[1]);
}

test "a socket() that fails is the shadow's failure (with its errno), not a refusal" {
    var L = testLoop();
    var c = Conn{};
    var t = Target{ .len = 16, .tcp = 1 };
    std.mem.writeInt(u16, t.addr[0..2], 0xffff, .little); // no such address family
    c.flows[0].sinks = 1 << first_shadow;
    startConnect(&L, &c, 0, first_shadow, &t);
    const e = &c.ep[first_shadow];
    try testing.expectEqual(EpState.closed, e.state);
    try testing.expectEqual(Outcome.failed, e.outcome);
    try testing.expectEqual(errnoValue(.AFNOSUPPORT), e.err);
    try testing.expectEqual(@as(u64, 1), L.state.shadow_failed);
}

/// A loopback TCP listener; `t` gets its address.
fn testListener(t: *Target) !i32 {
    const fd = sys.call(.socket, .{ linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0 });
    if (fd < 0) return error.Socket;
    const s: i32 = @intCast(fd);
    var addr = linux.sockaddr.in{ .port = 0, .addr = std.mem.nativeToBig(u32, 0x7f00_0001) };
    var len: u32 = @sizeOf(linux.sockaddr.in);
    if (sys.call(.bind, .{ sys.arg(s), @intFromPtr(&addr), len }) < 0) return error.Bind;
    if (sys.call(.listen, .{ sys.arg(s), 16 }) < 0) return error.Listen;
    if (sys.call(.getsockname, .{ sys.arg(s), @intFromPtr(&addr), @intFromPtr(&len) }) < 0) return error.Name;
    t.* = .{ .len = len, .tcp = 1 };
    @memcpy(t.addr[0..len], std.mem.asBytes(&addr)[0..len]);
    return s;
}

/// A blocking client socket connected to `t` (a loopback listener takes it into its backlog).
fn testConnect(t: *const Target) !i32 {
    const fd = sys.call(.socket, .{ linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0 });
    if (fd < 0) return error.Socket;
    if (sys.call(.connect, .{ sys.arg(@intCast(fd)), @intFromPtr(&t.addr), t.len }) < 0) return error.Connect;
    return @intCast(fd);
}

/// Waits up to 2 s for `fd` to be readable.
fn testWait(fd: i32) !void {
    var p = [1]sys.PollFd{.{ .fd = fd, .events = linux.POLL.IN, .revents = 0 }};
    if (sys.poll(&p, 1, 2000) != 1) return error.Timeout;
}

fn testAccept(ln: i32) !i32 {
    try testWait(ln);
    const r = sys.call(.accept4, .{ sys.arg(ln), 0, 0, linux.SOCK.CLOEXEC });
    if (r < 0) return error.Accept;
    return @intCast(r);
}

/// Reads exactly `want` and then EOF from a blocking socket.
fn testExpect(fd: i32, want: []const u8) !void {
    var buf: [64]u8 = undefined;
    var got: usize = 0;
    while (true) {
        try testWait(fd);
        const r = sys.read(fd, buf[got..].ptr, buf.len - got);
        if (r < 0) return error.Read;
        if (r == 0) break;
        got += @intCast(r);
    }
    try testing.expectEqualStrings(want, buf[0..got]);
}

/// One loop on loopback sockets: its listener, a primary and `shadows`
/// shadows listening, a group of one. Lives in place (the loop points at its group).
const Rig = struct {
    L: Loop,
    group: Group,
    wake: i32,
    kick: i32,
    listener: Target,
    backends: [2]i32,
    reports: [4]Report,
    taken: u64 = 0,

    fn init(r: *Rig, shadows: u32, limit: u64) !void {
        r.* = .{ .L = .{}, .group = .{ .limit = limit, .npeers = 1 }, .wake = -1, .kick = -1, .listener = .{}, .backends = .{ -1, -1 }, .reports = undefined };
        oc_mirror_defaults(&r.L);
        const cfg = &r.L.config;
        cfg.listen_fd = try testListener(&r.listener);
        const efd = linux.EFD.NONBLOCK | linux.EFD.CLOEXEC;
        r.wake = @intCast(sys.call(.eventfd2, .{ 0, efd }));
        r.kick = @intCast(sys.call(.eventfd2, .{ 0, efd }));
        r.group.peers[0].kick_fd = r.kick;
        _ = sys.call(.fcntl, .{ sys.arg(cfg.listen_fd), linux.F.SETFL, sys.O_NONBLOCK });
        cfg.wake_fd = r.wake;
        cfg.group = @intFromPtr(&r.group);
        cfg.slots = 4;
        cfg.report_cap = r.reports.len;
        cfg.listen_tcp = 1;
        cfg.method = .copy;
        cfg.budget_ns = 20_000_000;
        cfg.ntargets = 1 + shadows;
        for (0..1 + shadows) |k| r.backends[k] = try testListener(&cfg.targets[k]);
        try testing.expectEqual(@as(isize, 0), oc_mirror_init(&r.L));
    }

    fn deinit(r: *Rig) void {
        _ = oc_mirror_release(&r.L);
        closeAllFds(&.{ r.L.config.listen_fd, r.wake, r.kick });
        for (r.backends) |fd| if (fd >= 0) {
            _ = sys.close(fd);
        };
    }

    /// Runs batches for `ms` milliseconds, counting the reports.
    fn run(r: *Rig, ms: u64) void {
        const end = sys.nowNs() + ms * 1_000_000;
        while (sys.nowNs() < end) {
            _ = oc_mirror_run(&r.L, &r.reports);
            r.taken += r.L.state.nreports;
        }
    }
};

test "the life of a connection on loopback: accept, connect, flow, half-close, linger, finish, report" {
    var rig: Rig = undefined;
    try rig.init(1, 8);
    defer rig.deinit();
    rig.L.config.grace_ns = 10_000_000_000;
    const cl = try testConnect(&rig.listener);
    defer _ = sys.close(cl);
    rig.run(40);
    try testing.expectEqual(@as(u64, 1), rig.L.state.accepted);
    try testing.expectEqual(@as(u64, 1), rig.group.counted);
    try testing.expectEqual(@as(u32, 1), rig.L.state.listening);
    const pr = try testAccept(rig.backends[0]);
    defer _ = sys.close(pr);
    const sh = try testAccept(rig.backends[1]);
    defer _ = sys.close(sh);
    // The client's half: the primary and the shadow get its bytes, then EOF.
    try testing.expectEqual(@as(isize, 5), sys.write(cl, "hello", 5));
    _ = sys.call(.shutdown, .{ sys.arg(cl), linux.SHUT.WR });
    rig.run(40);
    try testExpect(pr, "hello");
    try testExpect(sh, "hello");
    // The primary's half: the client gets it, then EOF; the client and primary are closed.
    try testing.expectEqual(@as(isize, 5), sys.write(pr, "world", 5));
    _ = sys.call(.shutdown, .{ sys.arg(pr), linux.SHUT.WR });
    rig.run(40);
    try testExpect(cl, "world");
    // The shadow has its stream but not said its end: it lingers, holding no place.
    try testing.expectEqual(@as(u64, 0), rig.taken);
    try testing.expectEqual(@as(u64, 1), rig.L.state.active);
    try testing.expectEqual(@as(u64, 0), rig.group.counted);
    // It answers, then ends: read to its EOF, the connection is finished and reported.
    try testing.expectEqual(@as(isize, 5), sys.write(sh, "reply", 5));
    _ = sys.call(.shutdown, .{ sys.arg(sh), linux.SHUT.WR });
    rig.run(40);
    try testing.expectEqual(@as(u64, 1), rig.taken);
    const r = rig.reports[0];
    try testing.expectEqual(@as(u64, 5), r.bytes_in);
    try testing.expectEqual(@as(u64, 5), r.bytes_out);
    try testing.expectEqual(@as(u64, 5), r.to_primary);
    try testing.expectEqual(Outcome.complete, r.client_outcome);
    try testing.expectEqual(Outcome.complete, r.primary_outcome);
    try testing.expectEqual(Outcome.complete, r.shadow_outcome[0]);
    try testing.expectEqual(@as(u64, 5), r.shadow_bytes[0]);
    try testing.expectEqual(Capture.off, r.capture);
    try testing.expectEqual(@as(u64, 0), rig.L.state.active);
    try testing.expectEqual(@as(u64, 1), rig.L.state.closed);
}

test "a shadow that never ends is closed when its grace runs out: complete if it had every byte" {
    var rig: Rig = undefined;
    try rig.init(1, 8);
    defer rig.deinit();
    rig.L.config.grace_ns = 100_000_000;
    const cl = try testConnect(&rig.listener);
    defer _ = sys.close(cl);
    rig.run(40);
    const pr = try testAccept(rig.backends[0]);
    defer _ = sys.close(pr);
    const sh = try testAccept(rig.backends[1]);
    defer _ = sys.close(sh);
    _ = sys.write(cl, "hi", 2);
    _ = sys.call(.shutdown, .{ sys.arg(cl), linux.SHUT.WR });
    _ = sys.call(.shutdown, .{ sys.arg(pr), linux.SHUT.WR });
    rig.run(40);
    try testing.expectEqual(@as(u64, 0), rig.taken);
    _ = sys.write(sh, "unread reply", 12);
    rig.run(200);
    try testing.expectEqual(@as(u64, 1), rig.taken);
    try testing.expectEqual(Outcome.complete, rig.reports[0].shadow_outcome[0]);
    // Its reply was read before the close, so it sees our FIN after its bytes, not a reset.
    try testExpect(sh, "hi");
}

test "a finished connection still on the ready list is not pumped again, and its slot is freed once" {
    var rig: Rig = undefined;
    try rig.init(0, 8);
    defer rig.deinit();
    const cl = try testConnect(&rig.listener);
    defer _ = sys.close(cl);
    rig.run(40);
    const pr = try testAccept(rig.backends[0]);
    defer _ = sys.close(pr);
    const L = &rig.L;
    const st = stateOf(L);
    try testing.expectEqual(@as(u32, 0), st.ready_len);
    // Queued (say, its pump quota was used), then finished in the same pump.
    enqueue(st, 0);
    primaryFailed(L, &st.conns[0], .reset, .CONNRESET);
    settle(L, st, 0, sys.nowNs());
    try testing.expect(st.conns[0].finished and st.conns[0].queued);
    flushReports(L, st, &rig.reports, sys.nowNs());
    try testing.expectEqual(@as(u64, 1), L.state.closed);
    try testing.expectEqual(@as(u32, 0), st.used);
    // The slot is reused while its old entry is still queued: still one entry.
    const pair = socketPair();
    defer _ = sys.close(pair[1]);
    try testing.expect(reservePlace(&rig.group));
    newConn(L, st, pair[0], &.{});
    try testing.expectEqual(@as(u32, 1), st.ready_len);
    try testing.expectEqual(@as(u32, 1), st.used);
    // Close the new one too, and report it: now the entry is stale.
    primaryFailed(L, &st.conns[0], .reset, .CONNRESET);
    settle(L, st, 0, sys.nowNs());
    L.state.nreports = 0;
    flushReports(L, st, &rig.reports, sys.nowNs());
    runReady(L, st);
    try testing.expectEqual(@as(u32, 0), st.ready_len);
    try testing.expectEqual(@as(u64, 0), L.state.active);
    try testing.expectEqual(@as(u64, 2), L.state.accepted);
    try testing.expectEqual(@as(u64, 2), L.state.closed);
    try testing.expectEqual(@as(u32, 0), st.used);
    try testing.expectEqual(@as(u64, 0), rig.group.counted);
    try testing.expectEqual(@as(u32, 0), st.free_head);
    try testing.expectEqual(nil, st.conns[0].next);
}

test "past the group's limit a client waits in the backlog; it is taken once a place is free" {
    var rig: Rig = undefined;
    try rig.init(0, 1);
    defer rig.deinit();
    const first = try testConnect(&rig.listener);
    const second = try testConnect(&rig.listener);
    defer _ = sys.close(second);
    rig.run(40);
    try testing.expectEqual(@as(u64, 1), rig.L.state.accepted);
    try testing.expectEqual(@as(u32, 0), rig.L.state.listening);
    const pr = try testAccept(rig.backends[0]);
    _ = sys.close(pr);
    _ = sys.close(first);
    rig.run(100);
    try testing.expectEqual(@as(u64, 2), rig.L.state.accepted);
    const pr2 = try testAccept(rig.backends[0]);
    _ = sys.close(pr2);
}

test "init refuses a config outside its ranges" {
    var group = Group{ .limit = 1, .npeers = 1 };
    var L = Loop{};
    oc_mirror_defaults(&L);
    L.config.ntargets = 1;
    L.config.slots = 2;
    L.config.report_cap = 1;
    L.config.group = @intFromPtr(&group);
    try testing.expect(validConfig(&L.config));
    @as(*u32, @ptrCast(&L.config.on_lag)).* = 7;
    try testing.expect(sys.is(oc_mirror_init(&L), .INVAL));
    L.config.on_lag = .block;
    @as(*u32, @ptrCast(&L.config.method)).* = 3;
    try testing.expect(sys.is(oc_mirror_init(&L), .INVAL));
    L.config.method = .splice;
    L.config.max_lag = max_lag_max + 1;
    try testing.expect(sys.is(oc_mirror_init(&L), .INVAL));
    L.config.max_lag = 1;
    L.config.group = 0;
    try testing.expect(sys.is(oc_mirror_init(&L), .INVAL));
    try testing.expectEqual(Status.failed, oc_mirror_run(&L, undefined));
}
