/**
 * The Zig unit tests beside the code (shim/*.zig `test` blocks: the engine's
 * steps on real pipes, errno handling, checksums, the ABI description), run
 * through the pinned toolchain (issue 12).
 */

import assert from "node:assert/strict";
import { findZig, zigUnavailable } from "../shim/build.ts";
import { decoder } from "./helpers.ts";

const shim = new URL("../shim/", import.meta.url).pathname;

const unavailable = zigUnavailable();
if (unavailable) console.warn(`skipping the Zig unit tests: ${unavailable}`);

Deno.test({
  name: "zig test shim/onecopy.zig: every Zig test passes",
  ignore: unavailable !== undefined,
}, async () => {
  const zig = await findZig();
  const cache = await Deno.makeTempDir({ prefix: "onecopy-zig-test-" });
  try {
    const out = await new Deno.Command(zig, {
      args: ["test", "--cache-dir", cache, "onecopy.zig"],
      cwd: shim,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    assert.equal(out.code, 0, text);
    const passed = /All (\d+) tests passed/.exec(text);
    assert.ok(passed && Number(passed[1]) >= 10, `expected the engine's tests to run:\n${text}`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("the pinned Zig is asked for only where it runs; elsewhere ZIG is named", () => {
  assert.equal(zigUnavailable("linux/x86_64", ""), undefined);
  assert.match(
    zigUnavailable("linux/aarch64", "") ?? "",
    /runs on x86_64 Linux only, and this is linux\/aarch64: set ZIG=/,
  );
  assert.equal(zigUnavailable("linux/aarch64", "/opt/zig/zig"), undefined);
});
