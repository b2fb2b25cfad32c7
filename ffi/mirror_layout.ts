/**
 * The memory shared with the mirror loop (shim/mirror.zig): one `Loop` per
 * loop, the `Group` the loops of one listener share, and an array of
 * `Report`s, with the enums and limits that cross the boundary. The shim
 * describes its side from its own types (shim/abi.zig); a test compares that
 * with `expectedMirrorLayout()` here, so the two cannot drift.
 *
 * @module
 */

import { StructView } from "./layout.ts";

type Kind = "u8" | "i32" | "u32" | "u64";
type Fields = Record<string, readonly [offset: number, kind: Kind]>;

/** How many shadows one mirror may have (`max_shadows`). */
export const MAX_SHADOWS = 8;
/** How many loops (threads) one group may have (`max_loops`). */
export const MAX_LOOPS = 64;
/** The largest shadow backlog, 1 TiB (`max_lag_max`). */
export const MAX_LAG_MAX = 2 ** 40;
/** The most connection slots of one loop (`slots_max`). */
export const SLOTS_MAX = 2 ** 20;

/**
 * `struct Loop`: its `config` (written here after `oc_mirror_defaults`, before
 * `oc_mirror_init`), its `control` (written here while it runs), and its
 * `state` (the loop's own: only read here). Enum fields are u32.
 */
export const LOOP = {
  size: 1304,
  fields: {
    // config
    listen_fd: [0, "i32"],
    wake_fd: [4, "i32"],
    capture_dir: [8, "i32"],
    ntargets: [12, "u32"],
    on_lag: [16, "u32"],
    method: [20, "u32"],
    sample_bp: [24, "u32"],
    slots: [28, "u32"],
    report_cap: [32, "u32"],
    listen_tcp: [36, "u32"],
    accept_batch: [40, "u32"],
    window_max: [44, "u32"],
    max_lag: [48, "u64"],
    window: [56, "u64"],
    connect_timeout_ns: [64, "u64"],
    grace_ns: [72, "u64"],
    budget_ns: [80, "u64"],
    id_base: [88, "u64"],
    id_step: [96, "u64"],
    group: [104, "u64"],
    group_index: [112, "u32"],
    targets: [120, "u8"],
    // control
    accepting: [1200, "u32"],
    abort: [1204, "u32"],
    // state
    epoll_fd: [1208, "i32"],
    listening: [1212, "u32"],
    nreports: [1216, "u32"],
    err: [1220, "i32"],
    mem: [1224, "u64"],
    accepted: [1232, "u64"],
    active: [1240, "u64"],
    closed: [1248, "u64"],
    primary_failed: [1256, "u64"],
    shadow_dropped: [1264, "u64"],
    shadow_failed: [1272, "u64"],
    bytes_in: [1280, "u64"],
    bytes_out: [1288, "u64"],
    accept_errors: [1296, "u64"],
  },
} as const satisfies { size: number; fields: Fields };

/** `struct Target` (inside `Loop.targets`): a sockaddr and whether it is TCP. */
export const TARGET = {
  size: 120,
  fields: { addr: [0, "u8"], len: [112, "u32"], tcp: [116, "u32"] },
} as const satisfies { size: number; fields: Fields };

/** `struct Group`: the loops sharing a listener; their limit and `MAX_LOOPS` Peers. */
export const GROUP = {
  size: 1048,
  fields: {
    counted: [0, "u64"],
    limit: [8, "u64"],
    npeers: [16, "u32"],
    peers: [24, "u8"],
  },
} as const satisfies { size: number; fields: Fields };

/** `struct Peer`: one loop of a group, as the others see it. */
export const PEER = {
  size: 16,
  fields: { used: [0, "u64"], kick_fd: [8, "i32"] },
} as const satisfies { size: number; fields: Fields };

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
    capture: [92, "u32"],
    capture_errno: [96, "i32"],
    addr_len: [100, "u32"],
    addr: [104, "u8"],
    shadow_bytes: [136, "u64"],
    shadow_outcome: [200, "u32"],
    shadow_errno: [232, "i32"],
  },
} as const satisfies { size: number; fields: Fields };

/** What `oc_mirror_run` returned (`enum Status` of shim/mirror.zig). */
export const MirrorStatus = { again: 0, woken: 1, events: 2, done: 3, failed: 4 } as const;

/** What a full shadow backlog does (`enum OnLag`). */
export const OnLagCode = { disconnect: 0, block: 1 } as const;

/** The data paths (`enum Method`). */
export const MirrorMethodCode = { copy: 0, splice: 1, auto: 2 } as const;

/** How an endpoint's part of a connection ended (`enum Outcome`), by code. */
export const OUTCOMES = [
  "none",
  "complete",
  "lagged_out",
  "refused",
  "timeout",
  "reset",
  "failed",
  "aborted",
] as const;

/** How a connection's capture ended (`enum Capture`), by code. */
export const CAPTURES = ["off", "complete", "failed", "wrote_nothing"] as const;

/** A `Loop` in `bytes` (at offset 0). */
export type LoopView = StructView<typeof LOOP.fields>;

/** Writes target `i` (0: the primary) of a `Loop`: a sockaddr and whether it is TCP. */
export function setTarget(loop: Uint8Array, i: number, addr: Uint8Array, tcp: boolean): void {
  if (addr.length > TARGET.fields.len[0]) {
    throw new RangeError("a sockaddr longer than Target.addr");
  }
  const at = LOOP.fields.targets[0] + i * TARGET.size;
  loop.set(addr, at);
  const view = new DataView(loop.buffer, loop.byteOffset);
  view.setUint32(at + TARGET.fields.len[0], addr.length, true);
  view.setUint32(at + TARGET.fields.tcp[0], tcp ? 1 : 0, true);
}

/** Sets the group's limit and its peers' kick fds. */
export function setGroup(group: Uint8Array, limit: number, kickFds: number[]): void {
  const view = new StructView(group, 0, GROUP);
  view.set("limit", limit);
  view.set("npeers", kickFds.length);
  kickFds.forEach((fd, k) => {
    new StructView(group, GROUP.fields.peers[0] + k * PEER.size, PEER).set("kick_fd", fd);
  });
}

/** One `Report` as numbers (u64 counts stay below 2^53; the hashes are bigint). */
export interface RawReport {
  id: number;
  startNs: number;
  endNs: number;
  bytesIn: number;
  bytesOut: number;
  toPrimary: number;
  fromPrimary: number;
  hashIn: bigint;
  hashOut: bigint;
  clientOutcome: number;
  clientErrno: number;
  primaryOutcome: number;
  primaryErrno: number;
  mirrored: boolean;
  capture: number;
  captureErrno: number;
  /** The client's sockaddr (empty for an unnamed Unix client). */
  addr: Uint8Array;
  /** Per shadow slot (MAX_SHADOWS of them). */
  shadows: { bytes: number; outcome: number; errno: number }[];
}

/** Reads report `k` of a report array. */
export function readReport(reports: Uint8Array, k: number): RawReport {
  const base = k * REPORT.size;
  const view = new DataView(reports.buffer, reports.byteOffset + base, REPORT.size);
  const f = REPORT.fields;
  const u64 = (off: number) => Number(view.getBigUint64(off, true));
  const u32 = (off: number) => view.getUint32(off, true);
  const i32 = (off: number) => view.getInt32(off, true);
  const addrLen = Math.min(u32(f.addr_len[0]), f.shadow_bytes[0] - f.addr[0]);
  return {
    id: u64(f.id[0]),
    startNs: u64(f.start_ns[0]),
    endNs: u64(f.end_ns[0]),
    bytesIn: u64(f.bytes_in[0]),
    bytesOut: u64(f.bytes_out[0]),
    toPrimary: u64(f.to_primary[0]),
    fromPrimary: u64(f.from_primary[0]),
    hashIn: view.getBigUint64(f.hash_in[0], true),
    hashOut: view.getBigUint64(f.hash_out[0], true),
    clientOutcome: u32(f.client_outcome[0]),
    clientErrno: i32(f.client_errno[0]),
    primaryOutcome: u32(f.primary_outcome[0]),
    primaryErrno: i32(f.primary_errno[0]),
    mirrored: u32(f.mirrored[0]) === 1,
    capture: u32(f.capture[0]),
    captureErrno: i32(f.capture_errno[0]),
    addr: reports.slice(base + f.addr[0], base + f.addr[0] + addrLen),
    shadows: Array.from({ length: MAX_SHADOWS }, (_, s) => ({
      bytes: u64(f.shadow_bytes[0] + 8 * s),
      outcome: u32(f.shadow_outcome[0] + 4 * s),
      errno: i32(f.shadow_errno[0] + 4 * s),
    })),
  };
}

/** The mirror's part of the shim's ABI description (shim/abi.zig), as TypeScript expects it. */
export function expectedMirrorLayout(): Map<string, string> {
  const out = new Map<string, string>();
  const structs = { Loop: LOOP, Target: TARGET, Group: GROUP, Peer: PEER, Report: REPORT };
  for (const [name, layout] of Object.entries(structs)) {
    out.set(name, `${layout.size}`);
    for (const [field, [off]] of Object.entries(layout.fields)) {
      out.set(`${name}.${field}`, `${off}`);
    }
  }
  const byCode = (names: readonly string[]) => Object.fromEntries(names.map((n, i) => [n, i]));
  const enums = {
    MirrorStatus,
    OnLag: OnLagCode,
    MirrorMethod: MirrorMethodCode,
    Outcome: byCode(OUTCOMES),
    Capture: byCode(CAPTURES),
  };
  for (const [name, values] of Object.entries(enums)) {
    for (const [key, value] of Object.entries(values)) out.set(`enum.${name}.${key}`, `${value}`);
  }
  out.set("const.max_shadows", `${MAX_SHADOWS}`);
  out.set("const.max_loops", `${MAX_LOOPS}`);
  out.set("const.max_lag_max", `${MAX_LAG_MAX}`);
  out.set("const.slots_max", `${SLOTS_MAX}`);
  return out;
}
