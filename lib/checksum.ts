/**
 * Checksums computed by the shim (Zig's std implementations), so that hashing
 * a tap never crosses FFI per chunk. sha256 runs at ~0.3 GB/s on a small VM and
 * would cap a fan-out; xxh64/xxh3 run at several GB/s.
 *
 * @module
 */

import { hashBegin, hashEnd, hashUpdate } from "../ffi/engine.ts";
import { HASH_STATE_SIZE, HashAlg } from "../ffi/layout.ts";

/** The checksum algorithms onecopy can compute, for argument checking and help texts. */
export const checksumAlgorithms = ["sha256", "xxh64", "xxh3", "crc32c"] as const;

/** A checksum algorithm onecopy can compute. */
export type ChecksumAlgorithm = (typeof checksumAlgorithms)[number];

/** The shim's code for an algorithm; throws a TypeError for an unknown one. */
export function checksumCode(algorithm: string): number {
  if (!checksumAlgorithms.includes(algorithm as ChecksumAlgorithm)) {
    throw new TypeError(
      `unknown checksum ${JSON.stringify(algorithm)} (use ${checksumAlgorithms.join(", ")})`,
    );
  }
  return HashAlg[algorithm as ChecksumAlgorithm];
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
  readonly #state = new Uint8Array(HASH_STATE_SIZE);
  /** The algorithm. */
  readonly algorithm: ChecksumAlgorithm;

  /** Starts a checksum. */
  constructor(algorithm: ChecksumAlgorithm) {
    this.#code = checksumCode(algorithm);
    this.algorithm = algorithm;
    hashBegin(this.#code, this.#state);
  }

  /** Adds bytes. */
  update(bytes: Uint8Array): this {
    hashUpdate(this.#code, this.#state, bytes);
    return this;
  }

  /**
   * The hex digest of the bytes added so far. Repeatable: it finalises a copy
   * of the state, so calling it again (or adding more bytes first) is fine.
   */
  digest(): string {
    return hex(hashEnd(this.#code, this.#state));
  }
}
