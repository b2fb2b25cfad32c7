//! What TypeScript must agree with, described by the shim itself at compile
//! time: the shared structs' layouts, the enums and constants of the boundary,
//! and the C signature of every export. `oc_layout` hands the text to
//! tests/raw_test.ts, which compares it with ffi/layout.ts and ffi/symbols.ts,
//! so nothing on the TypeScript side is a copy that can drift unnoticed.
const std = @import("std");
const root = @import("onecopy.zig");
const sys = @import("sys.zig");
const hash = @import("hash.zig");
const engine = @import("engine.zig");
const mirror = @import("mirror.zig");

const print = std.fmt.comptimePrint;

/// `Name.field=offset;` for every field of an extern struct, nested structs
/// flattened (their field names are unique across the parts).
fn fieldsOf(comptime T: type, comptime name: []const u8, comptime base: usize) []const u8 {
    var s: []const u8 = "";
    for (std.meta.fields(T)) |f| {
        if (f.name[0] == '_') continue;
        const off = base + @offsetOf(T, f.name);
        s = s ++ if (@typeInfo(f.type) == .@"struct")
            fieldsOf(f.type, name, off)
        else
            print("{s}.{s}={d};", .{ name, f.name, off });
    }
    return s;
}

fn structOf(comptime T: type, comptime name: []const u8) []const u8 {
    return print("{s}={d};", .{ name, @sizeOf(T) }) ++ fieldsOf(T, name, 0);
}

/// `enum.Name.value=number;` for every value.
fn enumOf(comptime T: type, comptime name: []const u8) []const u8 {
    var s: []const u8 = "";
    for (std.meta.fields(T)) |f| s = s ++ print("enum.{s}.{s}={d};", .{ name, f.name, f.value });
    return s;
}

/// The Deno FFI type that carries a Zig parameter or result type.
fn ffiType(comptime T: type) []const u8 {
    return switch (@typeInfo(T)) {
        .void => "void",
        .pointer => "buffer",
        .optional => |o| if (@typeInfo(o.child) == .pointer) "buffer" else @compileError("optional non-pointer"),
        .@"enum" => |e| ffiType(e.tag_type),
        .int => |i| if (T == usize) "usize" else if (T == isize) "isize" else print("{c}{d}", .{ @as(u8, if (i.signedness == .signed) 'i' else 'u'), i.bits }),
        else => @compileError("no FFI type for " ++ @typeName(T)),
    };
}

/// `fn.oc_name=param,param>result;` for every `oc_` function of every module.
fn functionsOf(comptime module: type) []const u8 {
    var s: []const u8 = "";
    for (@typeInfo(module).@"struct".decls) |decl| {
        if (!std.mem.startsWith(u8, decl.name, "oc_")) continue;
        const info = @typeInfo(@TypeOf(@field(module, decl.name))).@"fn";
        var params: []const u8 = "";
        for (info.params, 0..) |p, i| params = params ++ (if (i == 0) "" else ",") ++ ffiType(p.type.?);
        s = s ++ print("fn.{s}={s}>{s};", .{ decl.name, params, ffiType(info.return_type.?) });
    }
    return s;
}

fn constants() []const u8 {
    return print("const.poll_slots_per_dest={d};const.poll_slots_base={d};" ++
        "const.dest_blocking_pipe={d};const.dest_watch_reader={d};const.dest_mover={d};" ++
        "const.dest_socket={d};const.src_may_block={d};const.pollfd_size={d};const.hash_state_size={d};const.digest_max={d};", .{
        engine.poll_slots_per_dest, engine.poll_slots_base,
        engine.dest_blocking_pipe,  engine.dest_watch_reader,
        engine.dest_mover,          engine.dest_socket,
        engine.src_may_block,
        @sizeOf(sys.PollFd),        hash.state_size,
        hash.digest_max,
    });
}

/// The mirror's side (shim/mirror.zig; ffi/mirror_layout.ts on the TypeScript side).
fn mirrorDescription() []const u8 {
    return structOf(mirror.Loop, "Loop") ++ structOf(mirror.Target, "Target") ++
        structOf(mirror.Group, "Group") ++ structOf(mirror.Peer, "Peer") ++
        structOf(mirror.Report, "Report") ++
        enumOf(mirror.Status, "MirrorStatus") ++ enumOf(mirror.OnLag, "OnLag") ++
        enumOf(mirror.Method, "MirrorMethod") ++ enumOf(mirror.Outcome, "Outcome") ++
        enumOf(mirror.Capture, "Capture") ++
        print("const.max_shadows={d};const.max_loops={d};const.max_lag_max={d};const.slots_max={d};", .{
        mirror.max_shadows, mirror.max_loops, mirror.max_lag_max, mirror.slots_max,
    });
}

const description = blk: {
    @setEvalBranchQuota(200_000);
    var s: []const u8 = structOf(engine.Job, "Job") ++ structOf(engine.Dest, "Dest") ++
        enumOf(engine.Source, "Source") ++ enumOf(engine.Feed, "Feed") ++
        enumOf(engine.Status, "Status") ++ enumOf(engine.Call, "Call") ++
        enumOf(hash.Alg, "HashAlg") ++ constants() ++ mirrorDescription();
    for (root.modules) |m| s = s ++ functionsOf(m);
    break :blk s;
};

/// The description as `key=value;…`, for the test that checks TypeScript's side
/// of the boundary. Returns the length, or -ERANGE if `cap` is short.
pub export fn oc_layout(out: [*]u8, cap: usize) isize {
    if (cap < description.len) return sys.fail(.RANGE);
    @memcpy(out[0..description.len], description);
    return @intCast(description.len);
}

test "every export is described, with the C types it takes" {
    try std.testing.expect(std.mem.indexOf(u8, description, "fn.oc_run=buffer,buffer>i32;") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "fn.oc_read=i32,buffer,usize>isize;") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "fn.oc_layout=buffer,usize>isize;") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "enum.Status.done=0;") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "fn.oc_mirror_run=buffer,buffer>i32;") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "Loop.on_lag=") != null);
    try std.testing.expect(std.mem.indexOf(u8, description, "enum.Outcome.lagged_out=2;") != null);
}
