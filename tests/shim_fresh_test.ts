/** The committed shim modules are what the Zig source builds (issue 2). */

import assert from "node:assert/strict";
import { build, compile, findZig } from "../shim/build.ts";

Deno.test("the Zig build is byte-for-byte reproducible", async () => {
  const zig = await findZig(); // says so when it installs the toolchain (once)
  console.log(`compiling libonecopy for x86_64 twice with ${zig}`);
  const [a, b] = [await compile(zig, "x86_64-linux"), await compile(zig, "x86_64-linux")];
  assert.deepEqual(a, b);
});

Deno.test("the committed ffi/shim_*.generated.ts match a fresh build of shim/", async () => {
  console.log("rebuilding libonecopy for every target, comparing with ffi/shim_*.generated.ts");
  const stale = await build(true);
  assert.deepEqual(stale, [], `stale: ${stale.join(", ")}; run deno task build:shim`);
});
