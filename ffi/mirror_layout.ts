/**
 * The memory shared with the mirror loop (shim/mirror.zig): one `Loop`, an
 * array of `Report`, and the `Target`s inside the Loop. A test compares this
 * with what the shim reports (`oc_mirror_layout`), so the two cannot drift.
 *
 * @module
 */

/** How many shadows one mirror may have (`max_shadows`). */
export const MAX_SHADOWS = 8;

/** `struct Loop`. */
export const LOOP = {
  size: 1304,
  fields: {
    epoll_fd: [0, "i32"],
    listen_fd: [4, "i32"],
    wake_fd: [8, "i32"],
    capture_dir: [12, "i32"],
    ntargets: [16, "u32"],
    on_lag: [20, "u32"],
    sample_bp: [24, "u32"],
    max_conns: [28, "u32"],
    accepting: [32, "u32"],
    abort: [36, "u32"],
    nreports: [40, "u32"],
    report_cap: [44, "u32"],
    err: [48, "i32"],
    err_call: [52, "u32"],
    listen_tcp: [56, "u32"],
    accept_batch: [60, "u32"],
    max_lag: [64, "u64"],
    window: [72, "u64"],
    connect_timeout_ns: [80, "u64"],
    grace_ns: [88, "u64"],
    budget_ns: [96, "u64"],
    state: [104, "u64"],
    accepted: [112, "u64"],
    active: [120, "u64"],
    closed: [128, "u64"],
    primary_failed: [136, "u64"],
    shadow_dropped: [144, "u64"],
    shadow_failed: [152, "u64"],
    bytes_in: [160, "u64"],
    bytes_out: [168, "u64"],
    accept_errors: [176, "u64"],
    targets: [184, "u32"],
    id_base: [1264, "u64"],
    id_step: [1272, "u64"],
    group: [1280, "u64"],
    group_len: [1288, "u32"],
    group_index: [1292, "u32"],
    method: [1296, "u32"],
    window_max: [1300, "u32"],
  },
} as const;

/** `struct Target` (inside Loop.targets): a sockaddr and whether it is TCP. */
export const TARGET = {
  size: 120,
  fields: { addr: [0, "u32"], len: [112, "u32"], tcp: [116, "u32"] },
} as const;

/** `struct Peer`: one loop of a group sharing a listener. */
export const PEER = { size: 16, fields: { used: [0, "u64"], kick_fd: [8, "i32"] } } as const;

/** `struct Report`: one finished connection. The arrays hold MAX_SHADOWS entries. */
export const REPORT = {
  size: 264,
  fields: {
    id: [0, "u64"],
    start_ns: [8, "u64"],
    end_ns: [16, "u64"],
    bytes_in: [24, "u64"],
    bytes_out: [32, "u64"],
    to_primary: [40, "u64"],
    from_primary: [48, "u64"],
    hash_in: [56, "u64"],
    hash_out: [64, "u64"],
    client_outcome: [72, "u32"],
    client_errno: [76, "i32"],
    primary_outcome: [80, "u32"],
    primary_errno: [84, "i32"],
    mirrored: [88, "u32"],
    captured: [92, "u32"],
    capture_errno: [96, "i32"],
    addr_len: [100, "u32"],
    addr: [104, "u32"],
    shadow_bytes: [136, "u64"],
    shadow_outcome: [200, "u32"],
    shadow_errno: [232, "i32"],
  },
} as const;

/** What `oc_mirror_run` returned (`enum Status`). */
export const MirrorStatus = { again: 0, woken: 1, events: 2, done: 3, failed: 4 } as const;

/** `enum OnLag`. */
export const OnLagCode = { disconnect: 0, block: 1 } as const;

/** `enum Outcome`, by code. */
export const OUTCOMES = [
  "none",
  "complete",
  "lagged-out",
  "refused",
  "timeout",
  "reset",
  "failed",
  "aborted",
] as const;

/** The layout TypeScript expects, in the shim's `Name=size;Name.field=offset;` form. */
export function expectedMirrorLayout(): Map<string, string> {
  const out = new Map<string, string>();
  for (
    const [name, layout] of [
      ["Loop", LOOP],
      ["Report", REPORT],
      ["Target", TARGET],
      ["Peer", PEER],
    ] as const
  ) {
    out.set(name, `${layout.size}`);
    for (const [field, [off]] of Object.entries(layout.fields)) {
      out.set(`${name}.${field}`, `${off}`);
    }
  }
  return out;
}
