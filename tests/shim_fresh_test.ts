/**
 * The committed shim modules are what the Zig source builds (issue 2): each
 * target is compiled once and compared byte for byte with the committed
 * bytes, which came from an earlier build, so a match also shows the build is
 * reproducible. Only on a mismatch is x86_64 built a second time, to tell a
 * stale module from a build that is not reproducible.
 */

import assert from "node:assert/strict";
import { build, compile, findZig, zigUnavailable } from "../shim/build.ts";

const unavailable = zigUnavailable();
if (unavailable) console.warn(`skipping the shim freshness test: ${unavailable}`);

Deno.test({
  name: "the committed ffi/shim_*.generated.ts match a fresh build of shim/",
  ignore: unavailable !== undefined,
  async fn() {
    const zig = await findZig(); // says so when it installs the toolchain (once)
    console.log(`compiling libonecopy once for every target with ${zig}`);
    const stale = await build(true);
    if (stale.length > 0) {
      const [a, b] = [await compile(zig, "x86_64-linux"), await compile(zig, "x86_64-linux")];
      assert.deepEqual(a, b, "two builds of the same source differ: the build is not reproducible");
    }
    assert.deepEqual(stale, [], `stale: ${stale.join(", ")}; run deno task build:shim`);
  },
});
