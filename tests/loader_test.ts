/** Loading the shim: env override, cache reuse and repair, concurrency, platforms (issue 2). */

import assert from "node:assert/strict";
import { cachedLibraryPath, supportedArch } from "../ffi/load.ts";
import { decoder, runDeno, tempDir } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
// A child that loads the shim and makes one syscall.
const probe = `import * as raw from "${root}ffi/raw.ts";
const [r, w] = raw.pipe2(); raw.write(w, new Uint8Array([7])); console.log("ok", raw.fionread(r));`;

function probeEnv(env: Record<string, string>) {
  return runDeno(["eval", "--quiet", probe], { env, cwd: root });
}

Deno.test("the embedded shim is cached once and reused", () => {
  using dir = tempDir();
  const path = cachedLibraryPath(dir.path);
  const first = Deno.statSync(path);
  assert.equal(cachedLibraryPath(dir.path), path);
  assert.equal(Deno.statSync(path).mtime?.getTime(), first.mtime?.getTime(), "not rewritten");
  assert.equal([...Deno.readDirSync(dir.path)].length, 1, "no temp files left behind");
});

Deno.test("a corrupt or truncated cache file is replaced", async () => {
  using dir = tempDir(); // plays $XDG_CACHE_HOME
  const path = cachedLibraryPath(`${dir.path}/onecopy`);
  const good = Deno.readFileSync(path);
  Deno.writeFileSync(path, good.subarray(0, 100));
  assert.equal(cachedLibraryPath(`${dir.path}/onecopy`), path);
  assert.deepEqual(Deno.readFileSync(path), good);
  Deno.writeFileSync(path, new TextEncoder().encode("garbage"));
  const out = await probeEnv({ XDG_CACHE_HOME: dir.path });
  assert.equal(decoder.decode(out.stdout).trim(), "ok 1", decoder.decode(out.stderr));
  assert.deepEqual(Deno.readFileSync(path), good);
});

Deno.test("ONECOPY_SHIM overrides the embedded library; a bad path fails with its cause", async () => {
  using dir = tempDir();
  const copy = `${dir.path}/custom.so`;
  Deno.copyFileSync(cachedLibraryPath(dir.path), copy);
  const ok = await probeEnv({ ONECOPY_SHIM: copy, XDG_CACHE_HOME: `${dir.path}/unused` });
  assert.equal(decoder.decode(ok.stdout).trim(), "ok 1");
  assert.throws(() => Deno.statSync(`${dir.path}/unused/onecopy`), "the cache was not touched");
  const bad = await probeEnv({ ONECOPY_SHIM: `${dir.path}/missing.so` });
  assert.notEqual(bad.code, 0);
  assert.match(decoder.decode(bad.stderr), /cannot load the native shim from .*missing\.so/);
});

Deno.test("four processes loading into an empty cache at once all succeed", async () => {
  using dir = tempDir();
  const runs = await Promise.all([1, 2, 3, 4].map(() => probeEnv({ XDG_CACHE_HOME: dir.path })));
  for (const out of runs) {
    assert.equal(decoder.decode(out.stdout).trim(), "ok 1", decoder.decode(out.stderr));
  }
  const files = [...Deno.readDirSync(`${dir.path}/onecopy`)].map((e) => e.name);
  assert.equal(files.length, 1, `one cache file, no temp files: ${files}`);
});

Deno.test("an unsupported platform gets one clear error naming it", () => {
  assert.equal(supportedArch("linux", "x86_64"), "x86_64");
  assert.equal(supportedArch("linux", "aarch64"), "aarch64");
  assert.throws(
    () => supportedArch("darwin", "aarch64"),
    /needs Linux on x86_64 or aarch64.*this is darwin\/aarch64/,
  );
  assert.throws(() => supportedArch("linux", "riscv64"), /this is linux\/riscv64/);
});
