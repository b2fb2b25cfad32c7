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

/** A child that touches one symbol of every group bound later, after a chdir. */
const everyGroup = `import { boundLater } from "${root}ffi/symbols.ts";
import { shim } from "${root}ffi/load.ts";
import * as raw from "${root}ffi/raw.ts";
raw.loadShim();
Deno.chdir("/");
const table = shim() as unknown as Record<string, unknown>;
const bound = Object.values(boundLater).flat().filter((n) => typeof table[n] === "function");
const fd = raw.socket(raw.AF_INET, raw.SOCK_STREAM); // the sockets group, in use
raw.close(fd);
console.log("bound", bound.length, Object.values(boundLater).flat().length);`;

Deno.test("every group of symbols bound later binds on first use, from the file first loaded", async () => {
  using dir = tempDir();
  // A relative ONECOPY_SHIM, then a chdir: later groups must not be looked for elsewhere.
  Deno.copyFileSync(cachedLibraryPath(dir.path), `${dir.path}/custom.so`);
  for (
    const [env, cwd] of [
      [{ XDG_CACHE_HOME: `${dir.path}/cache` }, root],
      [{ ONECOPY_SHIM: "./custom.so" }, dir.path],
      [{ ONECOPY_SHIM: `${dir.path}/custom.so` }, root],
    ] as const
  ) {
    const out = await runDeno(["eval", "--quiet", everyGroup], { env, cwd });
    const text = decoder.decode(out.stdout).trim();
    const [, got, all] = /^bound (\d+) (\d+)$/.exec(text) ?? [];
    assert.ok(
      got !== undefined && got === all,
      `${JSON.stringify(env)}: ${text} ${decoder.decode(out.stderr)}`,
    );
  }
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

/** A child that loads the shim and prints the path the library is mapped from. */
const whereLoaded = `import { library } from "${root}ffi/load.ts";
import * as raw from "${root}ffi/raw.ts";
library();
const fd = raw.open("/proc/self/maps", raw.O_RDONLY); // the shim's open: no --allow-read needed
const buf = new Uint8Array(1 << 20);
let text = "";
for (let n; (n = raw.read(fd, buf)) > 0;) text += new TextDecoder().decode(buf.subarray(0, n));
raw.close(fd);
console.log(text.split("\\n").find((l) => l.includes("libonecopy"))?.split(/\\s+/).slice(5).join(" "));
`;

async function loadWith(flags: string[], env: Record<string, string>) {
  using dir = tempDir();
  const script = `${dir.path}/where.ts`;
  Deno.writeTextFileSync(script, whereLoaded);
  const out = await runDeno(["run", "--quiet", "--no-prompt", ...flags, script], { env });
  return { ...out, stdout: decoder.decode(out.stdout).trim(), stderr: decoder.decode(out.stderr) };
}

/** The flags a PermissionError message asks for. */
function askedFlags(stderr: string): string[] {
  const m = stderr.match(/run again with (.*?) \(or -A\)/);
  assert.ok(m, `no permission message in: ${stderr}`);
  return m[1].split(" ");
}

Deno.test("every missing permission is named in one message; with those flags it runs, leaving nothing", async () => {
  using tmp = tempDir(); // TMPDIR: where a private copy would go
  const env = { TMPDIR: tmp.path };
  const none = await loadWith([], env);
  assert.notEqual(none.code, 0);
  assert.deepEqual(askedFlags(none.stderr), ["--allow-ffi"]);
  assert.match(none.stderr, /--allow-env=HOME,XDG_CACHE_HOME the shim is cached/);
  assert.equal(none.stderr.match(/needs permissions/g)?.length, 1, "one message");
  // Without a cache, from memory: a sealed memfd, no file anywhere (a SIGKILL leaves nothing).
  const ok = await loadWith(askedFlags(none.stderr), env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, "/memfd:libonecopy (deleted)");
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("where libc cannot be opened (--allow-ffi for one path only), a private temp directory, removed at once", async () => {
  using tmp = tempDir();
  const env = { TMPDIR: tmp.path };
  const scoped = [`--allow-ffi=${tmp.path}`, "--allow-env=TMPDIR"];
  const first = await loadWith(scoped, env);
  const flags = askedFlags(first.stderr);
  assert.deepEqual(flags, [`--allow-write=${tmp.path}`]);
  const ok = await loadWith([...scoped, ...flags], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    new RegExp(`^${tmp.path}/onecopy-\\w+/libonecopy-\\w+\\.so \\(deleted\\)$`),
  );
  assert.deepEqual([...Deno.readDirSync(tmp.path)], [], "the private directory is gone");
});

Deno.test("with --allow-env the cache's read/write flags are asked for; the cache dir is 0700", async () => {
  using cache = tempDir();
  using tmp = tempDir();
  const env = { XDG_CACHE_HOME: cache.path, TMPDIR: tmp.path };
  const first = await loadWith(["--allow-env"], env);
  const dir = `${cache.path}/onecopy`;
  const flags = askedFlags(first.stderr);
  assert.deepEqual(flags, ["--allow-ffi", `--allow-read=${dir}`, `--allow-write=${dir}`]);
  const ok = await loadWith(["--allow-env", ...flags], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`^${dir}/libonecopy-\\w+\\.so$`));
  assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name.replace(/-\w+\.so$/, "")), [
    "libonecopy",
  ]);
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("a cache dir writable by others, or someone else's, is not loaded from", async () => {
  using cache = tempDir();
  using tmp = tempDir();
  const dir = `${cache.path}/onecopy`;
  Deno.mkdirSync(dir);
  const planted = cachedLibraryPath(dir); // the genuine bytes: only the place is wrong
  const env = { XDG_CACHE_HOME: cache.path, TMPDIR: tmp.path };
  const cases: [string, () => void][] = [["writable by others", () => Deno.chmodSync(dir, 0o777)]];
  if (Deno.uid() === 0) {
    cases.push(["owned by nobody", () => {
      Deno.chmodSync(dir, 0o755);
      Deno.chownSync(dir, 65534, 65534);
    }]);
  }
  for (const [what, make] of cases) {
    make();
    const out = await loadWith(["--allow-all"], env);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, "/memfd:libonecopy (deleted)", `${what}: a private copy`);
    assert.ok(!out.stdout.startsWith(planted), what);
    assert.deepEqual([...Deno.readDirSync(tmp.path)], [], `${what}: nothing left`);
  }
});

Deno.test("the CLI without permissions: one line naming the flags, exit 1, no file touched", async () => {
  using dir = tempDir();
  const out = await runDeno(
    ["run", "--quiet", "--no-prompt", `${root}cli/main.ts`, "tee", `${dir.path}/out`],
    { stdin: "null" },
  );
  const stderr = decoder.decode(out.stderr);
  assert.equal(out.code, 1);
  assert.match(stderr, /^onecopy needs permissions it was not given: run again with --allow-ffi /);
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
  assert.deepEqual([...Deno.readDirSync(dir.path)], [], "the output file was not created");
});
