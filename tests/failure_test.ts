/**
 * Nothing lost, nothing destroyed, nothing stuck (issue 9): each fault case
 * with real kernel objects (FIFOs, a listener with a full backlog, ulimit in a
 * child shell, procfs files).
 */

import assert from "node:assert/strict";
import { fanout, FanoutError, Fd } from "../mod.ts";
import * as raw from "../ffi/raw.ts";
import { sockaddrIp } from "../lib/addr.ts";
import { mkfifo, onecopySh, openFds, patternBytes, sha256, tempDir } from "./helpers.ts";

const deno = Deno.execPath();
const main = new URL("../cli/main.ts", import.meta.url).pathname;

function fixture(dir: string, size = 200_000): { path: string; data: Uint8Array } {
  const data = patternBytes(size, 9);
  Deno.writeFileSync(`${dir}/f`, data);
  return { path: `${dir}/f`, data };
}

function failures(err: unknown): Record<string, string> {
  assert.ok(err instanceof FanoutError, String(err));
  return Object.fromEntries(
    err.report.destinations.filter((d) => d.error).map((d) => [d.target, d.error!.message]),
  );
}

/**
 * A TCP listener that never accepts, its backlog (0: one connection) filled by
 * non-blocking connects: the kernel drops further SYNs, so a connect hangs.
 */
async function fullListener(): Promise<{ url: string; close(): void }> {
  const listener = await Fd.listen("tcp://127.0.0.1:0", 0);
  const addr = sockaddrIp(
    { family: raw.AF_INET, bytes: Uint8Array.of(127, 0, 0, 1) },
    listener.port!,
  );
  const fillers: Fd[] = [];
  for (let i = 0; i < 3; i++) {
    const fd = new Fd(raw.socket(raw.AF_INET, raw.SOCK_STREAM | raw.SOCK_NONBLOCK), {
      owned: true,
    });
    fillers.push(fd);
    try {
      raw.connect(fd.fd, addr);
    } catch { /* EINPROGRESS: left hanging on purpose */ }
  }
  return {
    url: listener.url,
    close() {
      for (const f of fillers) f.close();
      listener.close();
    },
  };
}

// 1. The destination is the source.

Deno.test("source == destination (path, symlink, hard link, -a, stdout): refused, nothing truncated, others complete", async () => {
  using dir = tempDir();
  const { data } = fixture(dir.path);
  Deno.symlinkSync("f", `${dir.path}/link`);
  Deno.linkSync(`${dir.path}/f`, `${dir.path}/hard`);
  const r = await onecopySh("onecopy send f --to link --to out --to hard --to f", dir.path);
  assert.equal(r.code, 1, r.err);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/f`)), sha256(data));
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/out`)), sha256(data));
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 3, r.err);
  for (const [i, name] of ["link", "hard", "f"].entries()) {
    assert.match(lines[i], new RegExp(`^onecopy: ${name}: is the source file`));
  }
  const appended = await onecopySh("onecopy send f -a --to f --to out2", dir.path);
  assert.equal(appended.code, 1);
  assert.equal(Deno.statSync(`${dir.path}/f`).size, data.length);
  assert.equal(Deno.statSync(`${dir.path}/out2`).size, data.length);
  const stdout = await onecopySh("onecopy send f --to - --to out3 >> f", dir.path);
  assert.equal(stdout.code, 1);
  assert.match(stdout.err, /stdout: is the source file/);
  assert.equal(Deno.statSync(`${dir.path}/f`).size, data.length);
  assert.equal(Deno.statSync(`${dir.path}/out3`).size, data.length);
});

Deno.test("fanout(): a destination that is the source (as an Fd source) fails alone", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  for (const method of ["auto", "pipe-tee", "mmap-write", "copy"] as const) {
    using src = Fd.open(path); // a fresh offset each time
    const err = await fanout(src, [path, `${dir.path}/a`], { method }).catch((e) => e);
    assert.deepEqual(Object.keys(failures(err)), [path]);
    assert.equal(err.report.destinations[1].bytes, data.length, method);
    assert.equal(sha256(Deno.readFileSync(path)), sha256(data), method);
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data), method);
  }
});

// 4. Stuck in open() or connect().

Deno.test("a FIFO destination with no reader: AbortSignal ends the wait, nothing truncated, no fd left", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path);
  await mkfifo(`${dir.path}/fifo`);
  Deno.writeTextFileSync(`${dir.path}/keep`, "keep me");
  const before = openFds();
  const t0 = performance.now();
  const err = await fanout(path, [`${dir.path}/keep`, `${dir.path}/fifo`], {
    signal: AbortSignal.timeout(200),
  }).catch((e) => e);
  assert.equal(err.name, "TimeoutError");
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(Deno.readTextFileSync(`${dir.path}/keep`), "keep me");
  assert.equal(openFds(), before);
});

Deno.test("FIFO destination and source: served once the peer comes", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  await mkfifo(`${dir.path}/out.fifo`);
  const reader = new Deno.Command("sh", {
    args: ["-c", `sleep 0.3; cat '${dir.path}/out.fifo' > '${dir.path}/read'`],
  }).spawn();
  await fanout(path, [`${dir.path}/out.fifo`, `${dir.path}/a`]);
  assert.equal((await reader.status).code, 0);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/read`)), sha256(data));
  await mkfifo(`${dir.path}/in.fifo`);
  const writer = new Deno.Command("sh", {
    args: ["-c", `sleep 0.3; cat '${path}' > '${dir.path}/in.fifo'`],
  }).spawn();
  const report = await fanout(`${dir.path}/in.fifo`, [`${dir.path}/b`]);
  assert.equal((await writer.status).code, 0);
  assert.equal(report.bytes, data.length);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/b`)), sha256(data));
});

Deno.test("a FIFO source with no writer: AbortSignal ends the wait", async () => {
  using dir = tempDir();
  await mkfifo(`${dir.path}/fifo`);
  const before = openFds();
  const t0 = performance.now();
  const err = await fanout(`${dir.path}/fifo`, [`${dir.path}/out`], {
    signal: AbortSignal.timeout(200),
  }).catch((e) => e);
  assert.equal(err.name, "TimeoutError");
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(openFds(), before);
});

Deno.test("CLI: SIGINT while a FIFO destination has no reader: exit 130 at once, nothing truncated", async () => {
  using dir = tempDir();
  fixture(dir.path);
  await mkfifo(`${dir.path}/fifo`);
  Deno.writeTextFileSync(`${dir.path}/keep`, "keep me");
  const child = new Deno.Command(deno, {
    args: ["run", "-A", main, "send", "f", "--to", "keep", "--to", "fifo"],
    cwd: dir.path,
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 2000)); // past Deno's start-up, into the wait
  const t0 = performance.now();
  child.kill("SIGINT");
  const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const status = await child.status;
  clearTimeout(kill);
  assert.equal(status.code, 130);
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(Deno.readTextFileSync(`${dir.path}/keep`), "keep me");
});

Deno.test("a connect that gets no answer: connectTimeout fails that destination only, AbortSignal ends it", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  const server = await fullListener();
  try {
    const err = await fanout(path, [server.url, `${dir.path}/a`], { connectTimeout: 300 })
      .catch((e) => e);
    const failed = failures(err);
    assert.deepEqual(Object.keys(failed), [server.url]);
    assert.match(failed[server.url], /timed out \(connect: ETIMEDOUT\)/);
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
    const t0 = performance.now();
    const aborted = await fanout(path, [server.url], { signal: AbortSignal.timeout(300) })
      .catch((e) => e);
    assert.equal(aborted.name, "TimeoutError");
    assert.ok(performance.now() - t0 < 5000);
    const cli = await onecopySh(
      `onecopy send f --to ${server.url} --to b --connect-timeout 0.3`,
      dir.path,
    );
    assert.equal(cli.code, 1);
    assert.match(cli.err, new RegExp(`^onecopy: ${server.url}: connection timed out`));
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/b`)), sha256(data));
    const bad = await onecopySh(`onecopy send f --to b --connect-timeout -1`, dir.path);
    assert.equal(bad.code, 2);
  } finally {
    server.close();
  }
});

// 6. The same Fd twice.

Deno.test("the same Fd (or - ) twice is a TypeError before anything is opened; the same path twice works", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  Deno.writeTextFileSync(`${dir.path}/a`, "keep me");
  using out = Fd.create(`${dir.path}/b`);
  await assert.rejects(fanout(path, [`${dir.path}/a`, out, out]), TypeError);
  await assert.rejects(fanout(path, ["-", "-"]), TypeError);
  assert.equal(Deno.readTextFileSync(`${dir.path}/a`), "keep me");
  assert.equal(Deno.statSync(`${dir.path}/b`).size, 0);
  await fanout(path, [`${dir.path}/a`, `${dir.path}/a`]);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
});
