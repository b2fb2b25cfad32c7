/** Native checksums against published vectors and independent implementations. */

import assert from "node:assert/strict";
import { Checksum, checksumAlgorithms } from "../mod.ts";
import { patternBytes, sha256 } from "./helpers.ts";
import { xxh64 } from "./xxh64_reference.ts";

const enc = new TextEncoder();

Deno.test("published test vectors", () => {
  assert.equal(new Checksum("xxh64").digest(), "ef46db3751d8e999");
  assert.equal(new Checksum("xxh3").digest(), "2d06800538d394c2");
  assert.equal(new Checksum("crc32c").update(enc.encode("123456789")).digest(), "e3069283");
  assert.equal(
    new Checksum("sha256").update(enc.encode("abc")).digest(),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("sha256 and xxh64 agree with independent implementations, in any chunking", () => {
  for (const size of [0, 1, 31, 32, 33, 4096, 100_003]) {
    const data = patternBytes(size, size + 7);
    const split = Math.floor(size / 3);
    const chunked = (alg: "sha256" | "xxh64") =>
      new Checksum(alg).update(data.subarray(0, split)).update(data.subarray(split)).digest();
    assert.equal(chunked("sha256"), sha256(data), `sha256 of ${size} bytes`);
    assert.equal(chunked("xxh64"), xxh64(data), `xxh64 of ${size} bytes`);
  }
});

Deno.test("an unknown algorithm is a clear TypeError", () => {
  assert.throws(
    () => new Checksum("md5" as "sha256"),
    /unknown checksum "md5" \(use sha256, xxh64, xxh3, crc32c\)/,
  );
});

Deno.test("digest() is repeatable for every algorithm, and update() may go on after it", () => {
  const data = patternBytes(100_003, 3);
  for (const alg of checksumAlgorithms) {
    const sum = new Checksum(alg).update(data.subarray(0, 5000));
    const first = sum.digest();
    assert.equal(sum.digest(), first, `${alg}: second digest`);
    assert.equal(sum.digest(), first, `${alg}: third digest`);
    assert.equal(first, new Checksum(alg).update(data.subarray(0, 5000)).digest());
    sum.update(data.subarray(5000));
    assert.equal(sum.digest(), new Checksum(alg).update(data).digest(), `${alg}: after update`);
  }
  assert.equal(new Checksum("sha256").update(data).digest(), sha256(data));
});
