/**
 * The TypeScript side of the shim's boundary: the memory shared with the
 * fan-out loop (shim/engine.zig: one `Job` and an array of `Dest`), the enums
 * and constants that cross it. The shim describes its side from its own types
 * at compile time (shim/abi.zig, `oc_layout`); a test compares that with
 * `expectedLayout()` here, symbol signatures included, so the two cannot drift.
 *
 * @module
 */

import { symbols } from "./symbols.ts";

type Kind = "u8" | "i32" | "u32" | "u64";
type Fields = Record<string, readonly [offset: number, kind: Kind]>;

/**
 * `struct Job` in shim/engine.zig: its `config` (written here, after
 * `oc_job_init` set the defaults) and its `state` (the loop's: only read here).
 */
export const JOB = {
  size: 1208,
  fields: {
    // config
    src_fd: [0, "i32"],
    source: [4, "u32"],
    stage_r: [8, "i32"],
    stage_w: [12, "i32"],
    null_fd: [16, "i32"],
    wake_fd: [20, "i32"],
    ndest: [24, "u32"],
    src_flags: [28, "u32"],
    hash_alg: [32, "u32"],
    src_size: [40, "u64"],
    chunk: [48, "u64"],
    stage_size: [56, "u64"],
    map_len: [64, "u64"],
    buf: [72, "u64"],
    budget_ns: [80, "u64"],
    poll_fds: [88, "u64"],
    poll_cap: [96, "u64"],
    // state
    taken: [104, "u64"],
    tail: [112, "u64"],
    head: [120, "u64"],
    round_start: [128, "u64"],
    round_end: [136, "u64"],
    round_ptr: [144, "u64"],
    map: [152, "u64"],
    map_off: [160, "u64"],
    eof: [168, "u8"],
    err_dest: [172, "i32"],
    err: [176, "i32"],
    err_call: [180, "u32"],
    hash_state: [184, "u8"],
  },
} as const satisfies { size: number; fields: Fields };

/** `struct Dest` in shim/engine.zig: `config` (written here; `feed` also between batches), then `state`. */
export const DEST = {
  size: 80,
  fields: {
    // config
    fd: [0, "i32"],
    feed: [4, "u32"],
    branch_r: [8, "i32"],
    branch_w: [12, "i32"],
    flags: [16, "u32"],
    pipe_size: [20, "u32"],
    scratch: [24, "u64"],
    scratch_cap: [32, "u64"],
    // state
    fed: [40, "u64"],
    done: [48, "u64"],
    scratch_len: [56, "u64"],
    scratch_off: [64, "u64"],
    err: [72, "i32"],
    err_call: [76, "u32"],
  },
} as const satisfies { size: number; fields: Fields };

/** Where the stable copy comes from (`enum Source`). */
export const Source = {
  pipe: 0,
  read_pipe: 1,
  vmsplice: 2,
  read_buf: 3,
  mmap_buf: 4,
  splice_in: 5,
} as const;

/** How a destination is fed (`enum Feed`). */
export const Feed = {
  dead: 0,
  tee: 1,
  branch_splice: 2,
  branch_copy: 3,
  branch_hash: 4,
  write: 5,
  hash: 6,
} as const;

/** What `oc_run` returned (`enum Status`). */
export const Status = {
  done: 0,
  again: 1,
  woken: 2,
  dest_error: 3,
  source_error: 4,
  dest_wrote_nothing: 5,
  source_shrank: 6,
  invalid_job: 7,
} as const;

/** Syscall names by `enum Call`. */
export const CALLS = [
  "none",
  "read",
  "write",
  "splice",
  "tee",
  "vmsplice",
  "mmap",
  "pread",
  "poll",
  "ioctl",
] as const;

/**
 * `Job.poll_fds` needs room for this many `struct pollfd`s (`POLLFD_SIZE`
 * bytes each) for `ndest` destinations, the checksum tap included
 * (`pollSlots` in the shim).
 */
export function pollSlots(ndest: number): number {
  return POLL_SLOTS_PER_DEST * ndest + POLL_SLOTS_BASE;
}
const POLL_SLOTS_PER_DEST = 2;
const POLL_SLOTS_BASE = 4;
/** `sizeof(struct pollfd)`: { int fd; short events; short revents; }. */
export const POLLFD_SIZE = 8;

/** Checksum algorithms by `enum Alg` (shim/hash.zig). */
export const HashAlg = { none: 0, sha256: 1, xxh64: 2, xxh3: 3, crc32c: 4 } as const;
/** Bytes of checksum state (`hash.state_size`): the largest state plus its alignment. */
export const HASH_STATE_SIZE = 1024;
/** Bytes of the longest digest (sha256). */
export const DIGEST_MAX = 32;

/** `Dest.flags`: a borrowed blocking pipe; writes are capped to its free room. */
export const DEST_BLOCKING_PIPE = 1;
/** `Dest.flags`: a pipe whose reader going away is reported even while the source is idle. */
export const DEST_WATCH_READER = 2;
/** `Dest.flags`: from a source pipe, the stage is consumed into this pipe (splice) instead of tee()d. */
export const DEST_MOVER = 4;
/** `Dest.flags`: a socket, written with send(MSG_DONTWAIT): never blocks, whatever its O_NONBLOCK. */
export const DEST_SOCKET = 8;
/** `Job.src_flags`: a borrowed source that may block; poll before read. */
export const SRC_MAY_BLOCK = 1;

/** Typed access to one struct inside a byte array. */
export class StructView<F extends Fields> {
  readonly #view: DataView;
  readonly #fields: F;

  constructor(bytes: Uint8Array, offset: number, layout: { size: number; fields: F }) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset + offset, layout.size);
    this.#fields = layout.fields;
  }

  /** Reads a field (u64 as a number: positions and sizes stay below 2^53). */
  get(name: keyof F & string): number {
    const [off, kind] = this.#fields[name];
    if (kind === "u8") return this.#view.getUint8(off);
    if (kind === "i32") return this.#view.getInt32(off, true);
    if (kind === "u32") return this.#view.getUint32(off, true);
    return Number(this.#view.getBigUint64(off, true));
  }

  /** Writes a field. */
  set(name: keyof F & string, value: number): void {
    const [off, kind] = this.#fields[name];
    if (kind === "u8") this.#view.setUint8(off, value);
    else if (kind === "i32") this.#view.setInt32(off, value, true);
    else if (kind === "u32") this.#view.setUint32(off, value, true);
    else this.#view.setBigUint64(off, BigInt(value), true);
  }

  /**
   * Points a u64 pointer field at `buf`. The shim follows that pointer on
   * later calls: the caller keeps `buf` referenced (so the GC cannot move or
   * free it) until the shim is done with the struct.
   */
  point(name: keyof F & string, buf: Uint8Array): void {
    if (this.#fields[name][1] !== "u64") throw new TypeError(`${name} is not a pointer field`);
    this.set(name, addressOf(buf));
  }
}

/** The address of a buffer's first byte, for a pointer field the shim follows. */
export function addressOf(buf: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** A view of the shared `Job`. */
export type JobView = StructView<typeof JOB.fields>;
/** A view of one shared `Dest`. */
export type DestView = StructView<typeof DEST.fields>;

/** Parses the shim's `key=value;…` description (see shim/abi.zig). */
export function parseLayout(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(";")) {
    if (!part) continue;
    const at = part.indexOf("=");
    out.set(part.slice(0, at), part.slice(at + 1));
  }
  return out;
}

/** What TypeScript expects the shim to describe, in the same form. */
export function expectedLayout(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, layout] of [["Job", JOB], ["Dest", DEST]] as const) {
    out.set(name, `${layout.size}`);
    for (const [field, [off]] of Object.entries(layout.fields)) {
      out.set(`${name}.${field}`, `${off}`);
    }
  }
  const calls = Object.fromEntries(CALLS.map((name, i) => [name, i]));
  const enums = { Source, Feed, Status, Call: calls, HashAlg };
  for (const [name, values] of Object.entries(enums)) {
    for (const [key, value] of Object.entries(values)) out.set(`enum.${name}.${key}`, `${value}`);
  }
  const constants = {
    poll_slots_per_dest: POLL_SLOTS_PER_DEST,
    poll_slots_base: POLL_SLOTS_BASE,
    dest_blocking_pipe: DEST_BLOCKING_PIPE,
    dest_watch_reader: DEST_WATCH_READER,
    dest_mover: DEST_MOVER,
    dest_socket: DEST_SOCKET,
    src_may_block: SRC_MAY_BLOCK,
    pollfd_size: POLLFD_SIZE,
    hash_state_size: HASH_STATE_SIZE,
    digest_max: DIGEST_MAX,
  };
  for (const [key, value] of Object.entries(constants)) out.set(`const.${key}`, `${value}`);
  for (const [key, def] of Object.entries(symbols)) {
    const name = "name" in def ? def.name : key;
    out.set(`fn.${name}`, `${def.parameters.join(",")}>${def.result}`);
  }
  return out;
}
