//! Root of libonecopy: raw syscalls (syscalls.zig), checksums (hash.zig), the
//! fan-out loop (engine.zig), the mirror loop (mirror.zig) and the description of its ABI (abi.zig). No
//! libc; every export is C ABI.

/// Every file whose `pub export fn oc_*` make the library: abi.zig describes
/// their signatures, and the TypeScript symbol table is tested against that.
pub const modules = .{
    @import("syscalls.zig"),
    @import("hash.zig"),
    @import("engine.zig"),
    @import("mirror.zig"),
    @import("abi.zig"),
};

comptime {
    for (modules) |m| _ = m;
}
