//! Checksums computed natively on a tap, so hashing never crosses FFI per chunk.
//! State lives in caller memory (`state_size` bytes, any alignment).
const std = @import("std");
const sys = @import("sys.zig");

/// The algorithms; `none` computes nothing (a job without a checksum).
pub const Alg = enum(u32) { none = 0, sha256 = 1, xxh64 = 2, xxh3 = 3, crc32c = 4 };

/// Bytes of the longest digest (sha256).
pub const digest_max = 32;

const Sha256 = std.crypto.hash.sha2.Sha256;
const Xxh64 = std.hash.XxHash64;
const Xxh3 = std.hash.XxHash3;
const Crc32c = std.hash.crc.Crc32Iscsi;

const max_align = 64;
pub const state_size = 1024;
comptime {
    for (.{ Sha256, Xxh64, Xxh3, Crc32c }) |T| {
        if (@sizeOf(T) + max_align > state_size) @compileError("hash state area too small");
        if (@alignOf(T) > max_align) @compileError("hash state alignment too large");
    }
}

fn state(comptime T: type, area: [*]u8) *T {
    const addr = std.mem.alignForward(usize, @intFromPtr(area), max_align);
    return @ptrFromInt(addr);
}

pub fn begin(alg: Alg, area: [*]u8) void {
    switch (alg) {
        .none => {},
        .sha256 => state(Sha256, area).* = Sha256.init(.{}),
        .xxh64 => state(Xxh64, area).* = Xxh64.init(0),
        .xxh3 => state(Xxh3, area).* = Xxh3.init(0),
        .crc32c => state(Crc32c, area).* = Crc32c.init(),
    }
}

pub fn update(alg: Alg, area: [*]u8, bytes: []const u8) void {
    switch (alg) {
        .none => {},
        .sha256 => state(Sha256, area).update(bytes),
        .xxh64 => state(Xxh64, area).update(bytes),
        .xxh3 => state(Xxh3, area).update(bytes),
        .crc32c => state(Crc32c, area).update(bytes),
    }
}

/// Writes the digest big-endian (as the algorithms' reference tools print it); returns its length.
/// Finalises a copy of the state, so the digest is repeatable and `update` may go on after it
/// (sha256's `final` pads the state in place: a second call would hash the padding too).
pub fn end(alg: Alg, area: [*]u8, out: *[digest_max]u8) usize {
    switch (alg) {
        .none => return 0,
        .sha256 => {
            var s = state(Sha256, area).*;
            s.final(out);
            return 32;
        },
        .xxh64 => {
            var s = state(Xxh64, area).*;
            std.mem.writeInt(u64, out[0..8], s.final(), .big);
            return 8;
        },
        .xxh3 => {
            var s = state(Xxh3, area).*;
            std.mem.writeInt(u64, out[0..8], s.final(), .big);
            return 8;
        },
        .crc32c => {
            var s = state(Crc32c, area).*;
            std.mem.writeInt(u32, out[0..4], s.final(), .big);
            return 4;
        },
    }
}

test "end is repeatable and update may go on after it" {
    var area: [state_size]u8 = undefined;
    var a: [digest_max]u8 = undefined;
    var b: [digest_max]u8 = undefined;
    for ([_]Alg{ .sha256, .xxh64, .xxh3, .crc32c }) |alg| {
        begin(alg, &area);
        update(alg, &area, "hello ");
        const n = end(alg, &area, &a);
        try std.testing.expectEqual(n, end(alg, &area, &b));
        try std.testing.expectEqualSlices(u8, a[0..n], b[0..n]);
        update(alg, &area, "world");
        _ = end(alg, &area, &a);
        begin(alg, &area);
        update(alg, &area, "hello world");
        _ = end(alg, &area, &b);
        try std.testing.expectEqualSlices(u8, b[0..n], a[0..n]);
    }
}

/// An algorithm number from TypeScript, checked before it becomes an `Alg`.
pub fn parse(alg: u32) ?Alg {
    return std.meta.intToEnum(Alg, alg) catch null;
}

pub export fn oc_hash_begin(alg: u32, area: [*]u8) isize {
    begin(parse(alg) orelse return sys.fail(.INVAL), area);
    return 0;
}
pub export fn oc_hash_update(alg: u32, area: [*]u8, bytes: [*]const u8, len: usize) isize {
    update(parse(alg) orelse return sys.fail(.INVAL), area, bytes[0..len]);
    return 0;
}
/// Writes the digest into `out`; returns its length.
pub export fn oc_hash_end(alg: u32, area: [*]u8, out: *[digest_max]u8) isize {
    return @intCast(end(parse(alg) orelse return sys.fail(.INVAL), area, out));
}

test "digests of published vectors, and an unknown algorithm is EINVAL" {
    var area: [state_size]u8 = undefined;
    var out: [digest_max]u8 = undefined;
    begin(.xxh64, &area);
    try std.testing.expectEqual(@as(usize, 8), end(.xxh64, &area, &out));
    try std.testing.expectEqualSlices(u8, &.{ 0xef, 0x46, 0xdb, 0x37, 0x51, 0xd8, 0xe9, 0x99 }, out[0..8]);
    begin(.crc32c, &area);
    update(.crc32c, &area, "123456789");
    try std.testing.expectEqual(@as(usize, 4), end(.crc32c, &area, &out));
    try std.testing.expectEqualSlices(u8, &.{ 0xe3, 0x06, 0x92, 0x83 }, out[0..4]);
    try std.testing.expect(sys.is(oc_hash_begin(99, &area), .INVAL));
}
