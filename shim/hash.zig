//! Checksums computed natively on a tap, so hashing never crosses FFI per chunk.
//! State lives in caller memory (`state_size` bytes, any alignment).
const std = @import("std");

pub const Alg = enum(u32) { none = 0, sha256 = 1, xxh64 = 2, xxh3 = 3, crc32c = 4 };

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

pub fn begin(alg: u32, area: [*]u8) isize {
    switch (@as(Alg, @enumFromInt(alg))) {
        .none => {},
        .sha256 => state(Sha256, area).* = Sha256.init(.{}),
        .xxh64 => state(Xxh64, area).* = Xxh64.init(0),
        .xxh3 => state(Xxh3, area).* = Xxh3.init(0),
        .crc32c => state(Crc32c, area).* = Crc32c.init(),
    }
    return 0;
}

pub fn update(alg: u32, area: [*]u8, bytes: []const u8) void {
    switch (@as(Alg, @enumFromInt(alg))) {
        .none => {},
        .sha256 => state(Sha256, area).update(bytes),
        .xxh64 => state(Xxh64, area).update(bytes),
        .xxh3 => state(Xxh3, area).update(bytes),
        .crc32c => state(Crc32c, area).update(bytes),
    }
}

/// Writes the digest big-endian (as the algorithms' reference tools print it); returns its length.
pub fn end(alg: u32, area: [*]u8, out: *[32]u8) isize {
    switch (@as(Alg, @enumFromInt(alg))) {
        .none => return 0,
        .sha256 => {
            state(Sha256, area).final(out);
            return 32;
        },
        .xxh64 => {
            std.mem.writeInt(u64, out[0..8], state(Xxh64, area).final(), .big);
            return 8;
        },
        .xxh3 => {
            std.mem.writeInt(u64, out[0..8], state(Xxh3, area).final(), .big);
            return 8;
        },
        .crc32c => {
            std.mem.writeInt(u32, out[0..4], state(Crc32c, area).final(), .big);
            return 4;
        },
    }
}

fn valid(alg: u32) bool {
    return alg <= @intFromEnum(Alg.crc32c);
}

export fn oc_hash_begin(alg: u32, area: [*]u8) isize {
    if (!valid(alg)) return -22; // EINVAL
    return begin(alg, area);
}
export fn oc_hash_update(alg: u32, area: [*]u8, bytes: [*]const u8, len: usize) isize {
    if (!valid(alg)) return -22;
    update(alg, area, bytes[0..len]);
    return 0;
}
export fn oc_hash_end(alg: u32, area: [*]u8, out: *[32]u8) isize {
    if (!valid(alg)) return -22;
    return end(alg, area, out);
}
