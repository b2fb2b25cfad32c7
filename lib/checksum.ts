/**
 * Checksums computed by the shim (Zig's std implementations), so that hashing
 * a tap never crosses FFI per chunk. sha256 runs at ~0.3 GB/s on a small VM and
 * would cap a fan-out; xxh64/xxh3 run at several GB/s.
 *
 * @module
 */

import { shim } from "../ffi/load.ts";
import { check } from "../ffi/errors.ts";

/** The checksum algorithms onecopy can compute. */
export type ChecksumAlgorithm = "sha256" | "xxh64" | "xxh3" | "crc32c";

const codes: Record<ChecksumAlgorithm, number> = { sha256: 1, xxh64: 2, xxh3: 3, crc32c: 4 };

/** The algorithm names, for argument checking. */
export const checksumAlgorithms = Object.keys(codes) as ChecksumAlgorithm[];

/** The shim's code for an algorithm; throws a TypeError for an unknown one. */
export function checksumCode(algorithm: string): number {
  const code = codes[algorithm as ChecksumAlgorithm];
  if (!code) {
    throw new TypeError(
      `unknown checksum ${JSON.stringify(algorithm)} (use ${checksumAlgorithms.join(", ")})`,
    );
  }
  return code;
}

/** Lowercase hex of bytes. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A streaming checksum. Digests are big-endian hex, as `sha256sum`,
 * `xxh64sum` and `xxh3sum`/`xxhsum -H3` print them.
 *
 * @example
 * ```ts
 * import { Checksum } from "@onecopy/onecopy";
 * const sum = new Checksum("xxh64");
 * sum.update(new TextEncoder().encode("hello"));
 * console.log(sum.digest()); // 26c7827d889f6da3
 * ```
 */
export class Checksum {
  readonly #code: number;
  readonly #state = new Uint8Array(1024 + 64);
  /** The algorithm. */
  readonly algorithm: ChecksumAlgorithm;

  /** Starts a checksum. */
  constructor(algorithm: ChecksumAlgorithm) {
    this.#code = checksumCode(algorithm);
    this.algorithm = algorithm;
    check(shim().oc_hash_begin(this.#code, this.#state), "hash");
  }

  /** Adds bytes. */
  update(bytes: Uint8Array): this {
    check(shim().oc_hash_update(this.#code, this.#state, bytes, BigInt(bytes.length)), "hash");
    return this;
  }

  /** Finishes and returns the hex digest. */
  digest(): string {
    const out = new Uint8Array(32);
    const n = check(shim().oc_hash_end(this.#code, this.#state, out), "hash");
    return hex(out.subarray(0, n));
  }
}
