/** The onecopy command, black-box through Deno.Command (issue 4). */

import assert from "node:assert/strict";
import { decoder, patternBytes, sh, sha256, startRecv, tempDir } from "./helpers.ts";
import { methods } from "../mod.ts";
import manifest from "../deno.json" with { type: "json" };

const main = new URL("../cli/main.ts", import.meta.url).pathname;
const deno = Deno.execPath();

function fixture(dir: string, size = 3 * 1024 * 1024 + 17): { path: string; sha: string } {
  const data = patternBytes(size, 11);
  Deno.writeFileSync(`${dir}/in.bin`, data);
  return { path: `${dir}/in.bin`, sha: sha256(data) };
}

Deno.test("tee: a pipe on stdin to stdout and files, with a checksum on stderr", async () => {
  using dir = tempDir();
  const { path, sha } = fixture(dir.path);
  const r = await sh(`cat '${path}' | onecopy tee --checksum sha256 a.bin b.bin`, dir.path);
  assert.equal(r.code, 0, r.err);
  assert.equal(sha256(r.stdout), sha);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a.bin`)), sha);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/b.bin`)), sha);
  assert.equal(r.err, `${sha}  -\n`);
});

Deno.test("tee: consumers that are other processes, through >(cmd)", async () => {
  using dir = tempDir();
  const { path, sha } = fixture(dir.path);
  const r = await sh(
    `onecopy tee >(sha256sum > s1) >(sha256sum > s2) < '${path}' | sha256sum > s3; sleep 0.3`,
    dir.path,
  );
  assert.equal(r.code, 0, r.err);
  for (const f of ["s1", "s2", "s3"]) {
    assert.equal(Deno.readTextFileSync(`${dir.path}/${f}`).split(" ")[0], sha, f);
  }
});

Deno.test("tee -a appends; --json reports on stderr", async () => {
  using dir = tempDir();
  const { path, sha } = fixture(dir.path, 5000);
  Deno.writeTextFileSync(`${dir.path}/log`, "first\n");
  const r = await sh(`onecopy tee -a --json log < '${path}' > /dev/null`, dir.path);
  assert.equal(r.code, 0, r.err);
  const log = Deno.readFileSync(`${dir.path}/log`);
  assert.equal(decoder.decode(log.subarray(0, 6)), "first\n");
  assert.equal(sha256(log.subarray(6)), sha);
  const report = JSON.parse(r.err);
  assert.equal(report.bytes, 5000);
  assert.deepEqual(report.destinations.map((d: { bytes: number }) => d.bytes), [5000, 5000]);
});

Deno.test("tee: a reader that goes away (| head) ends it as SIGPIPE would; --output-error=warn reports it", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path, 20 * 1024 * 1024);
  const quiet = await sh(`onecopy tee < '${path}' | head -c 10 | wc -c; exit \${PIPESTATUS[0]}`);
  assert.equal(quiet.code, 141, quiet.err);
  assert.equal(quiet.out.trim(), "10");
  assert.equal(quiet.err, "");
  const warn = await sh(
    `onecopy tee --output-error=warn < '${path}' | head -c 10 > /dev/null; exit \${PIPESTATUS[0]}`,
  );
  assert.equal(warn.code, 1);
  assert.equal(warn.err, "onecopy: standard output: Broken pipe\n");
});

Deno.test("send to recv over TCP and a Unix socket, checksums matching", async () => {
  using dir = tempDir();
  const { path, sha } = fixture(dir.path);
  for (const addr of ["tcp://127.0.0.1:0", `unix:${dir.path}/sock`]) {
    const recv = await startRecv(
      ["--listen", addr, "--connections", "2", "--out", `${dir.path}/got`, "--checksum", "sha256"],
    );
    const s = await sh(
      `onecopy send '${path}' --to '${recv.url}' --to '${recv.url}' --to copy.bin --checksum sha256`,
      dir.path,
    );
    assert.equal(s.code, 0, s.err);
    assert.equal(s.out, `${sha}  ${path}\n`);
    const { code, lines } = await recv.finished();
    assert.equal(code, 0);
    assert.deepEqual(
      lines,
      [1, 2].map((n) => `${n} ${3 * 1024 * 1024 + 17} sha256 ${sha} ${dir.path}/got.${n}`),
    );
    for (const n of [1, 2]) assert.equal(sha256(Deno.readFileSync(`${dir.path}/got.${n}`)), sha);
  }
});

Deno.test("recv --out /dev/null takes every connection (no /dev/null.N files)", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path, 100_000);
  const strays = () => [...Deno.readDirSync("/dev")].filter((e) => /^null\.\d+$/.test(e.name));
  const before = strays().length;
  const recv = await startRecv(
    ["--listen", `unix:${dir.path}/sock`, "--connections", "2", "--out", "/dev/null"],
  );
  const s = await sh(`onecopy send '${path}' --to '${recv.url}' --to '${recv.url}'`, dir.path);
  assert.equal(s.code, 0, s.err);
  const { code, lines } = await recv.finished();
  assert.equal(code, 0);
  assert.deepEqual(lines, ["1 100000 /dev/null", "2 100000 /dev/null"]);
  assert.equal(strays().length, before);
});

Deno.test("send --json, every method", async () => {
  using dir = tempDir();
  const { path, sha } = fixture(dir.path);
  for (const method of methods) {
    const r = await sh(
      `onecopy send '${path}' --to a --to - --method ${method} --json > out.json`,
      dir.path,
    );
    assert.equal(r.code, 0, r.err);
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha);
  }
  const json = await sh(`onecopy send '${path}' --to a --checksum xxh64 --json`, dir.path);
  const report = JSON.parse(json.out);
  assert.equal(report.bytes, 3 * 1024 * 1024 + 17);
  assert.equal(report.checksum.algorithm, "xxh64");
  assert.equal(report.destinations[0].target, "a");
});

Deno.test("errors: one line, the documented exit code, no stack trace", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path, 1000);
  const cases: [string, number, RegExp][] = [
    ["onecopy bogus", 2, /^onecopy: unknown command 'bogus'\nTry 'onecopy --help' for more/],
    ["onecopy tee --frob", 1, /^onecopy: unrecognized option '--frob'\n/],
    ["onecopy send x --frob", 2, /^onecopy: unrecognized option '--frob'\n/],
    [`onecopy send '${path}'`, 2, /^onecopy: send needs at least one --to DEST\n/],
    ["onecopy send --to x", 2, /^onecopy: send needs an input \(FILE or -\)\n/],
    [`onecopy send '${path}' --to tcp://x`, 2, /^onecopy: tcp:\/\/x: expected tcp:\/\/HOST:PORT/],
    [`onecopy send '${path}' --to a --method fast`, 2, /^onecopy: unknown method 'fast'/],
    [`onecopy send '${path}' --to a --checksum md5`, 2, /^onecopy: unknown checksum 'md5'/],
    ["onecopy recv", 2, /^onecopy: recv needs --listen/],
    [
      "onecopy send missing.bin --to a",
      1,
      /^onecopy: missing\.bin: no such file or directory \(open: ENOENT\)$/,
    ],
    [`onecopy send '${dir.path}' --to a`, 1, /: is a directory/],
    [
      `onecopy send '${path}' --to /proc/no/such --to ok`,
      1,
      /^onecopy: \/proc\/no\/such: no such file/,
    ],
    [
      `onecopy send '${path}' --to tcp://127.0.0.1:1 --to ok2`,
      1,
      /^onecopy: tcp:\/\/127\.0\.0\.1:1: connection refused/,
    ],
  ];
  for (const [line, code, message] of cases) {
    const r = await sh(line, dir.path);
    assert.equal(r.code, code, `${line}: ${r.err}`);
    assert.match(r.err.trimEnd(), message, line);
    assert.doesNotMatch(r.err, /^\s+at .*:\d+:\d+\)?$/m, "no stack trace");
  }
  assert.equal(
    Deno.readFileSync(`${dir.path}/ok`).length,
    1000,
    "the other destination still got every byte",
  );
  assert.equal(Deno.readFileSync(`${dir.path}/ok2`).length, 1000);
});

Deno.test("--help, CMD --help and --version", async () => {
  const help = await sh("onecopy --help");
  assert.equal(help.code, 0);
  assert.match(help.out, /Exit codes: 0 success; 1/);
  for (const cmd of ["tee", "send", "recv"]) {
    const r = await sh(`onecopy ${cmd} --help`);
    assert.equal(r.code, 0);
    // tee's first line is GNU tee's (a drop-in); the others name onecopy.
    assert.match(r.out, new RegExp(`^Usage: ${cmd === "tee" ? "" : "onecopy "}${cmd} `));
  }
  assert.equal((await sh("onecopy --version")).out.trim(), `onecopy ${manifest.version}`);
  assert.equal((await sh("onecopy")).code, 2);
});

Deno.test("SIGINT: a death by SIGINT (a shell sees 130 and stops its script), nothing left behind", async () => {
  const child = new Deno.Command(deno, {
    args: ["run", "-A", main, "tee"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new Uint8Array(1000));
  const reader = child.stdout.getReader();
  assert.equal((await reader.read()).value?.length, 1000);
  child.kill("SIGINT");
  const status = await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  await child.stderr.cancel();
  await writer.close().catch(() => {});
  assert.equal(status.code, 130);
  assert.equal(
    status.signal,
    "SIGINT",
    "not killed by the signal: a script running it would go on",
  );
});

Deno.test("Ctrl-C in a script: tee dies of SIGINT, so bash stops the script (as with GNU tee)", async () => {
  // bash waits for its foreground job; if that died of SIGINT it stops too,
  // if it merely exited 130 it runs the next line.
  const script = `
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "-c", sys.argv[1] + "; echo AFTER"])
time.sleep(2)
os.write(fd, b"\x03")
out = b""
while True:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    out += d
_, st = os.waitpid(pid, 0)
print("AFTER" in out.decode(errors="replace"), os.WIFSIGNALED(st) and os.WTERMSIG(st))
`;
  const line = `sleep 30 | '${deno}' run -A '${main}' tee`;
  const out = await new Deno.Command("python3", { args: ["-c", script, line], stdout: "piped" })
    .output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "False 2");
});

Deno.test("recv --connections 300: a sender opening all 300 at once loses none (the backlog holds them)", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path, 100_000);
  const recv = await startRecv([
    "--listen",
    "tcp://127.0.0.1:0",
    "--connections",
    "300",
    "--out",
    "/dev/null",
  ]);
  const to = Array.from({ length: 300 }, () => `--to ${recv.url}`).join(" ");
  const s = await sh(`timeout 60 onecopy send '${path}' ${to}`, dir.path);
  assert.equal(s.code, 0, s.err);
  const { code, lines } = await recv.finished(10_000);
  assert.equal(code, 0, "recv still waiting for connections reset before it accepted them");
  assert.equal(lines.length, 300);
  assert.ok(lines.every((l) => / 100000 \/dev\/null$/.test(l)), lines.join("\n"));
});
