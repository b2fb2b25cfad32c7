//! Root of libonecopy: raw syscalls (syscalls.zig), checksums (hash.zig) and
//! the fan-out loop (engine.zig). No libc; every export is C ABI.
comptime {
    _ = @import("syscalls.zig");
    _ = @import("hash.zig");
    _ = @import("engine.zig");
}
