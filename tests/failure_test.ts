/**
 * Nothing lost, nothing destroyed, nothing stuck (issue 9): each fault case
 * with real kernel objects (FIFOs, a listener with a full backlog, ulimit in a
 * child shell, procfs files).
 */

import assert from "node:assert/strict";
import { fanout, FanoutError, Fd, type OnecopyError } from "../mod.ts";
import * as raw from "../ffi/raw.ts";
import { sockaddrIp } from "../lib/addr.ts";
import { checkDistinctFds } from "../lib/endpoints.ts";
import { mkfifo, openFds, patternBytes, sh, sha256, startRecv, tempDir } from "./helpers.ts";

const deno = Deno.execPath();
const main = new URL("../cli/main.ts", import.meta.url).pathname;

function fixture(dir: string, size = 200_000): { path: string; data: Uint8Array } {
  const data = patternBytes(size, 9);
  Deno.writeFileSync(`${dir}/f`, data);
  return { path: `${dir}/f`, data };
}

function sizeOf(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0; // not there yet
  }
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
  const r = await sh("onecopy send f --to link --to out --to hard --to f", dir.path);
  assert.equal(r.code, 1, r.err);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/f`)), sha256(data));
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/out`)), sha256(data));
  const lines = r.err.trim().split("\n");
  assert.equal(lines.length, 3, r.err);
  for (const [i, name] of ["link", "hard", "f"].entries()) {
    assert.match(lines[i], new RegExp(`^onecopy: ${name}: is the source file`));
  }
  const appended = await sh("onecopy send f -a --to f --to out2", dir.path);
  assert.equal(appended.code, 1);
  assert.equal(Deno.statSync(`${dir.path}/f`).size, data.length);
  assert.equal(Deno.statSync(`${dir.path}/out2`).size, data.length);
  const stdout = await sh("onecopy send f --to - --to out3 >> f", dir.path);
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

Deno.test("a FIFO that is both source and destination is refused (it would loop forever); the others complete", async () => {
  using dir = tempDir();
  await mkfifo(`${dir.path}/ff`);
  const writer = new Deno.Command("sh", {
    args: ["-c", `sleep 0.3; printf hello > '${dir.path}/ff'`],
  }).spawn();
  const err = await fanout(`${dir.path}/ff`, [`${dir.path}/ff`, `${dir.path}/got`], {
    signal: AbortSignal.timeout(10_000), // the loop would never end
  }).catch((e) => e);
  await writer.status;
  assert.match(failures(err)[`${dir.path}/ff`], /is the source pipe; refusing to write it/);
  assert.equal(Deno.readTextFileSync(`${dir.path}/got`), "hello");
  const cli = await sh(
    "(sleep 0.3; printf hello > ff) & timeout 10 onecopy send ff --to ff --to got2; echo rc=$?",
    dir.path,
  );
  assert.match(cli.out, /rc=1/, cli.err);
  assert.match(cli.err, /^onecopy: ff: is the source pipe/m);
  assert.equal(Deno.readTextFileSync(`${dir.path}/got2`), "hello");
  // A terminal or socket read and written at once is not refused: /dev/null here.
  const report = await fanout("/dev/null", ["/dev/null", `${dir.path}/e`]);
  assert.equal(report.bytes, 0);
});

Deno.test("onDestinationError hears about destinations that fail before any byte moves", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  const closed = await Fd.listen("tcp://127.0.0.1:0");
  const refused = closed.url;
  closed.close();
  const failing = [`${dir.path}/nodir/x`, path, refused];
  const heard: string[] = [];
  const err = await fanout(path, [...failing, `${dir.path}/a`], {
    onDestinationError: (target) => (heard.push(target), "continue"),
  }).catch((e) => e);
  assert.deepEqual(heard, failing);
  assert.deepEqual(Object.keys(failures(err)), failing);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
  // "stop" before the start: nothing is transferred, nothing truncated, the others say stopped.
  for (const bad of failing) {
    Deno.writeTextFileSync(`${dir.path}/keep`, "keep me");
    let aborted: unknown;
    const stream = new WritableStream<Uint8Array>({
      write() {
        throw new Error("no byte should come");
      },
      abort(reason) {
        aborted = reason;
      },
    });
    using sink = await Fd.listen("tcp://127.0.0.1:0");
    const accepted = sink.accept();
    const stopped = await fanout(path, [`${dir.path}/keep`, bad, stream, sink.url], {
      onDestinationError: () => "stop",
    }).catch((e) => e);
    assert.ok(stopped instanceof FanoutError, String(stopped));
    const [keep, failed, writable, socket] = stopped.report.destinations;
    assert.equal(Deno.readTextFileSync(`${dir.path}/keep`), "keep me", bad);
    assert.notEqual(failed.error?.message, "stopped");
    for (const d of [keep, writable, socket]) {
      assert.equal(d.error?.message, "stopped", `${bad}: ${d.target}`);
      assert.equal(d.bytes, 0);
    }
    assert.equal(stopped.report.bytes, 0);
    assert.equal((aborted as Error)?.message, "stopped", "the WritableStream is aborted");
    using conn = await accepted;
    const got = await conn.readable().getReader().read().catch((e) => e);
    assert.equal(got.code, "ECONNRESET", "the socket is reset, not closed");
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
    const cli = await sh(
      `onecopy send f --to ${server.url} --to b --connect-timeout 0.3`,
      dir.path,
    );
    assert.equal(cli.code, 1);
    assert.match(cli.err, new RegExp(`^onecopy: ${server.url}: connection timed out`));
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/b`)), sha256(data));
    const bad = await sh(`onecopy send f --to b --connect-timeout -1`, dir.path);
    assert.equal(bad.code, 2);
  } finally {
    server.close();
  }
});

Deno.test("a unix socket whose backlog is full: connectTimeout fails it alone", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  using listener = await Fd.listen(`unix:${dir.path}/sock`, 0);
  using filler = await Fd.connect(listener.url); // the one slot a backlog of 0 has
  const err = await fanout(path, [listener.url, `${dir.path}/a`], { connectTimeout: 300 })
    .catch((e) => e);
  assert.match(failures(err)[listener.url], /ETIMEDOUT/);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
  assert.ok(!filler.closed);
});

Deno.test("Fd.listen on a unix path left by a dead listener reclaims it; a live one or a file is EADDRINUSE", async () => {
  using dir = tempDir();
  const url = `unix:${dir.path}/sock`;
  const dead = await Fd.listen(url);
  dead.close(); // as after kill -9: the socket file stays, nobody listens on it
  assert.equal(Deno.statSync(`${dir.path}/sock`).isSocket, true);
  using again = await Fd.listen(url);
  const client = Fd.connect(url);
  using accepted = await again.accept();
  (await client).close();
  assert.ok(!accepted.closed);
  await assert.rejects(Fd.listen(url), (e: Error) => (e as OnecopyError).code === "EADDRINUSE");
  // Live but busy: its backlog (0: one slot) full, a connect answers EAGAIN, not refused.
  using busy = await Fd.listen(`unix:${dir.path}/busy`, 0);
  using filler = await Fd.connect(busy.url);
  await assert.rejects(
    Fd.listen(busy.url),
    (e: Error) => (e as OnecopyError).code === "EADDRINUSE",
  );
  assert.ok(!filler.closed);
  Deno.writeTextFileSync(`${dir.path}/file`, "keep me");
  await assert.rejects(
    Fd.listen(`unix:${dir.path}/file`),
    (e: Error) => (e as OnecopyError).code === "EADDRINUSE",
  );
  assert.equal(Deno.readTextFileSync(`${dir.path}/file`), "keep me");
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

Deno.test("two fds sharing one open file description (dup, 4>&3) are a TypeError before anything opens", async () => {
  using dir = tempDir();
  const { data } = fixture(dir.path, 100_000);
  const mod = new URL("../mod.ts", import.meta.url).href;
  Deno.writeTextFileSync(
    `${dir.path}/dup.ts`,
    `import { fanout, Fd } from "${mod}";
    const [mode, src, ...fds] = Deno.args;
    const source = mode === "fd-source" ? Fd.adopt(Number(src)) : src;
    const err = await fanout(source, fds.map((n) => Fd.adopt(Number(n)))).then(() => "ok", (e) => e);
    console.log(err === "ok" ? "ok" : \`\${err.name}: \${err.message}\`);`,
  );
  const run = (line: string) => sh(`'${deno}' run -A dup.ts ${line}`, dir.path);
  const dests = await run("path f 3 4 3>o1 4>&3");
  assert.match(dests.out, /^TypeError: fd 4: shares one open file \(and its offset\) with fd 3/);
  assert.equal(Deno.statSync(`${dir.path}/o1`).size, 0);
  const source = await run("fd-source 3 4 3<>f 4>&3");
  assert.match(source.out, /^TypeError: fd 4: shares one open file/, source.err);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/f`)), sha256(data));
  await mkfifo(`${dir.path}/fifo`);
  const fifo = await run("path f 3 4 3<>fifo 4>&3");
  assert.match(fifo.out, /^TypeError: fd 4: shares one open file/);
  // Two opens of one file are two descriptions, two offsets: that works.
  const twice = await run("path f 3 4 3>o2 4>o2");
  assert.equal(twice.out.trim(), "ok", twice.err);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/o2`)), sha256(data));
});

Deno.test("an adopted fd number that is not open fails alone; the others complete", async () => {
  using dir = tempDir();
  const { path, data } = fixture(dir.path);
  // A number far above every open fd: onecopy's own opens (lowest free first) cannot take it.
  const unused = Math.max(...[...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name))) +
    500;
  const err = await fanout(path, [Fd.adopt(unused), `${dir.path}/a`]).catch((e) => e);
  assert.match(failures(err)[`fd ${unused}`], /bad file descriptor/);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
});

Deno.test("when kcmp cannot say, two Fd destinations naming one regular file are refused", () => {
  using dir = tempDir();
  using a = Fd.create(`${dir.path}/o`);
  using b = Fd.open(`${dir.path}/o`, raw.O_WRONLY);
  using c = Fd.create(`${dir.path}/other`);
  const unknown = () => undefined;
  assert.throws(() => checkDistinctFds("/etc/hostname", [a, b], unknown), /cannot tell/);
  checkDistinctFds("/etc/hostname", [a, c], unknown);
  checkDistinctFds("/etc/hostname", [a, b]); // kcmp works here: two descriptions
});

Deno.test("connectTimeout: NaN, negative or not a number is a TypeError before anything opens; Infinity waits", async () => {
  using dir = tempDir();
  const { path } = fixture(dir.path);
  for (const bad of [NaN, -1, "5"]) {
    await assert.rejects(
      fanout(path, [`${dir.path}/a`, "tcp://127.0.0.1:9"], { connectTimeout: bad as number }),
      (e: Error) =>
        e instanceof TypeError && /connectTimeout must be a number of ms >= 0/.test(e.message),
    );
    await assert.rejects(Fd.connect("tcp://127.0.0.1:9", { timeoutMs: bad as number }), TypeError);
  }
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["f"]);
  const closed = await Fd.listen("tcp://127.0.0.1:0");
  const refused = closed.url;
  closed.close();
  const err = await fanout(path, [refused, `${dir.path}/a`], { connectTimeout: Infinity })
    .catch((e) => e);
  assert.match(failures(err)[refused], /connection refused \(connect: ECONNREFUSED\)/);
});

// 2. Many destinations.

Deno.test("300 destinations: every one gets every byte (CLI send, and tee from a pipe)", async () => {
  using dir = tempDir();
  const { data } = fixture(dir.path, 70_000);
  const names = Array.from({ length: 300 }, (_, i) => `d${i}`);
  const raise = "ulimit -Sn 4096 2>/dev/null;"; // 300 files + 300 branch pipes
  const send = await sh(
    `${raise} onecopy send f ${names.map((n) => `--to ${n}`).join(" ")}`,
    dir.path,
  );
  assert.equal(send.code, 0, send.err);
  for (const n of names) {
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/${n}`)), sha256(data), n);
  }
  const tee = await sh(`${raise} cat f | onecopy tee ${names.join(" ")} > copy`, dir.path);
  assert.equal(tee.code, 0, tee.err);
  for (const n of [...names, "copy"]) {
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/${n}`)), sha256(data), n);
  }
});

// 3. Running out of fds.

Deno.test("ulimit -n 40 with 30 destinations: each one that fails is named, the others complete, nothing truncated", async () => {
  using dir = tempDir();
  const { data } = fixture(dir.path);
  const names = Array.from({ length: 30 }, (_, i) => `d${i}`); // more than 40 fds allow
  for (
    const [command, line] of [
      ["send", `onecopy send f ${names.map((n) => `--to ${n}`).join(" ")}`],
      [
        "send pipe-tee",
        `onecopy send f --method pipe-tee ${names.map((n) => `--to ${n}`).join(" ")}`,
      ],
      ["tee", `cat f | onecopy tee ${names.join(" ")} > /dev/null`],
    ]
  ) {
    for (const n of names) Deno.writeTextFileSync(`${dir.path}/${n}`, "old");
    const r = await sh(`ulimit -n 40; ${line}`, dir.path);
    assert.equal(r.code, 1, `${command}: ${r.err}`);
    const errors = r.err.split("\n").filter((l) => l.startsWith("onecopy: "));
    assert.ok(!/\/dev\/null|eventfd|pipe:/.test(r.err), r.err);
    let complete = 0;
    for (const n of names) {
      const got = Deno.readFileSync(`${dir.path}/${n}`);
      const failed = errors.some((l) =>
        l.toLowerCase().startsWith(`onecopy: ${n}: too many open files`)
      );
      if (sha256(got) === sha256(data)) complete++;
      else {
        assert.ok(failed, `${command}: ${n} is short but not reported\n${r.err}`);
        assert.ok(got.length === 0 || new TextDecoder().decode(got) === "old", `${command}: ${n}`);
      }
    }
    assert.ok(complete > 0, `${command}: none complete\n${r.err}`);
    for (const line of errors) {
      assert.match(line, /^onecopy: d\d+: too many open files/i);
    }
  }
});

// 5. mmap-write of a file whose size reads 0.

Deno.test("mmap-write of procfs/sysfs files reads them to the end, and the report says copy ran", async () => {
  using dir = tempDir();
  const files = ["/proc/version", "/proc/self/status", "/sys/class/net/lo/mtu"].filter((f) => {
    try {
      return Deno.readFileSync(f).length > 0;
    } catch {
      return false;
    }
  });
  for (const file of files) {
    const report = await fanout(file, [`${dir.path}/a`], { method: "mmap-write" });
    assert.equal(report.method, "copy", file);
    assert.ok(report.bytes > 0, file);
    const got = Deno.readTextFileSync(`${dir.path}/a`);
    if (file !== "/proc/self/status") assert.equal(got, Deno.readTextFileSync(file), file);
    else assert.match(got, /^Name:/);
  }
  const { path, data } = fixture(dir.path);
  const normal = await fanout(path, [`${dir.path}/b`], { method: "mmap-write" });
  assert.equal(normal.method, "mmap-write");
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/b`)), sha256(data));
});

// 8. An interrupted send must not look complete.

Deno.test("SIGINT on send: recv sees a reset, exits 1, prints no checksum", async () => {
  using dir = tempDir();
  const recv = await startRecv(
    ["--listen", "tcp://127.0.0.1:0", "--out", "got", "--checksum", "xxh64"],
    dir.path,
  );
  const url = recv.url;
  const send = new Deno.Command(deno, {
    args: ["run", "-A", main, "send", "-", "--to", url],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = send.stdin.getWriter();
  await writer.write(new Uint8Array(1 << 20));
  for (let i = 0; i < 100; i++) { // until recv has some of it
    await new Promise((r) => setTimeout(r, 100));
    if (sizeOf(`${dir.path}/got`) > 0) break;
  }
  send.kill("SIGINT");
  assert.equal((await send.status).code, 130);
  await writer.close().catch(() => {});
  const { code, out, err } = await recv.finished();
  assert.equal(code, 1, err);
  assert.equal(out, "");
  assert.match(err, /connection 1: .*reset/);
});

Deno.test("a source that fails part way: recv sees a reset, not a complete transfer", async () => {
  using dir = tempDir();
  const recv = await startRecv(["--listen", "tcp://127.0.0.1:0", "--out", "got"], dir.path);
  const url = recv.url;
  // /proc/self/mem fails its first read (EIO: nothing is mapped at offset 0).
  const send = await sh(`onecopy send /proc/self/mem --to ${url}`, dir.path);
  assert.equal(send.code, 1, send.err);
  const { code, out, err } = await recv.finished();
  assert.equal(code, 1, err);
  assert.equal(out, "");
});

// 9. A file-size limit.

Deno.test("ulimit -f: EFBIG on the file destination only; the others complete (CLI and library)", async () => {
  using dir = tempDir();
  const { data } = fixture(dir.path, 1_000_000);
  // Deno itself is killed by SIGXFSZ if it writes its module cache under the
  // limit: each program runs once without it first, so its cache is warm.
  await sh("onecopy --version");
  const cli = await sh(
    "ulimit -f 100; onecopy send f --to big --to - | sha256sum; exit ${PIPESTATUS[0]}",
    dir.path,
  );
  assert.equal(cli.code, 1, cli.err);
  assert.equal(cli.out.split(" ")[0], sha256(data));
  assert.match(cli.err, /^onecopy: big: file too large \(write: EFBIG\)$/m);
  assert.equal(Deno.statSync(`${dir.path}/big`).size, 100 * 1024);
  const mod = new URL("../mod.ts", import.meta.url).href;
  Deno.writeTextFileSync(
    `${dir.path}/lib.ts`,
    `import { fanout, Fd } from "${mod}";
    const err = await fanout("f", ["big2", Fd.stdout()]).catch((e) => e);
    console.error(err.report?.destinations.map((d) => d.error?.code ?? "ok").join(","));`,
  );
  await sh(`'${deno}' run --no-code-cache -A lib.ts > /dev/null 2>&1`, dir.path);
  const lib = await sh(
    `ulimit -f 100; '${deno}' run --no-code-cache -A lib.ts | sha256sum; exit \${PIPESTATUS[0]}`,
    dir.path,
  );
  assert.equal(lib.code, 0, lib.err);
  assert.equal(lib.out.split(" ")[0], sha256(data));
  assert.equal(lib.err.trim(), "EFBIG,ok");
});

// 10. The smaller ones.

Deno.test('onDestinationError "stop": the destinations cut short carry the error "stopped"', async () => {
  using dir = tempDir();
  const data = patternBytes(32 << 20, 4);
  Deno.writeFileSync(`${dir.path}/src`, data);
  const [r, w] = Fd.pipe();
  r.close(); // EPIPE at the first write
  const err = await fanout(`${dir.path}/src`, [w, `${dir.path}/a`, `${dir.path}/b`], {
    onDestinationError: () => "stop",
  }).catch((e) => e);
  w.close();
  const [broken, a, b] = err.report.destinations;
  assert.equal(broken.error.code, "EPIPE");
  for (const d of [a, b]) {
    assert.equal(d.error?.message, "stopped");
    assert.ok(d.bytes < data.length);
  }
});

Deno.test("--json prints its report when the source fails (to open, or part way)", async () => {
  using dir = tempDir();
  const missing = await sh("onecopy send missing --to a --json", dir.path);
  assert.equal(missing.code, 1);
  const m = JSON.parse(missing.out);
  assert.match(m.error, /missing: no such file or directory/);
  assert.deepEqual(m.destinations, [{ target: "a", bytes: 0 }]);
  // /proc/self/mem fails its first read (EIO: nothing is mapped at offset 0).
  const broken = await sh(
    "onecopy send /proc/self/mem --to a --json --checksum xxh64",
    dir.path,
  );
  assert.equal(broken.code, 1, broken.err);
  const b = JSON.parse(broken.out);
  assert.match(b.error, /input\/output error \(p?read: EIO\)/);
  assert.equal(b.destinations[0].bytes, 0);
  assert.match(broken.err, /^onecopy: \/proc\/self\/mem: input\/output error/m);
});

Deno.test("messages: a path with a newline stays on one line; IPv6 zones; a missing --allow-net", async () => {
  using dir = tempDir();
  fixture(dir.path);
  const nl = await sh(`onecopy send f --to $'no\\ndir/x' --to ok`, dir.path);
  assert.equal(nl.code, 1);
  assert.equal(nl.err, `onecopy: "no\\ndir/x": no such file or directory (open: ENOENT)\n`);
  const teeNl = await sh(`echo hi | onecopy tee $'no\\ndir/x' > /dev/null`, dir.path);
  assert.equal(teeNl.code, 1);
  assert.match(teeNl.err, /^onecopy: "no\\ndir\/x": no such file or directory\n$/i);
  const zone = await sh(`onecopy send f --to 'tcp://[fe80::1%nosuchif]:9'`, dir.path);
  assert.equal(zone.code, 1);
  assert.match(zone.err, /no network interface named 'nosuchif'/);
  const lo = await sh(`onecopy send f --to 'tcp://[::1%lo]:1' --to ok2`, dir.path);
  assert.equal(lo.code, 1);
  assert.match(lo.err.trim(), /^onecopy: tcp:\/\/\[::1%lo\]:1: [a-z ]+ \(connect: E[A-Z]+\)$/);
  const noNet = await sh(
    `'${deno}' run --allow-ffi --allow-read --allow-write --allow-env '${main}' send f --to tcp://example.invalid:9`,
    dir.path,
  );
  assert.equal(noNet.code, 1);
  assert.match(noNet.err, /needs? --allow-net/);
});

// 7. A path that is not UTF-8.

Deno.test("a path that is not valid UTF-8 is refused (exit 2), nothing written elsewhere", async () => {
  using dir = tempDir();
  fixture(dir.path);
  const r = await sh(`onecopy send f --to $'out\\xfe' --to ok`, dir.path);
  assert.equal(r.code, 2);
  assert.match(r.err, /not valid UTF-8/);
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["f"]);
});

Deno.test("abort reaches a borrowed blocking socket whose peer never reads", async () => {
  // A blocking socket (no O_NONBLOCK), adopted: a write() into it would block
  // the loop where the abort cannot reach it once the peer's buffers are full.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = raw.socket(raw.AF_INET, raw.SOCK_STREAM); // blocking
  raw.connect(
    fd,
    sockaddrIp({ family: raw.AF_INET, bytes: Uint8Array.of(127, 0, 0, 1) }, listener.addr.port),
  );
  const peer = await listener.accept(); // and never reads
  try {
    const controller = new AbortController();
    const running = fanout("/dev/zero", [Fd.adopt(fd)], { signal: controller.signal });
    await new Promise((ok) => setTimeout(ok, 300)); // its buffers are full by now
    const t0 = performance.now();
    controller.abort();
    const settled = running.catch((e) => e);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hung = new Promise((ok) => timer = setTimeout(() => ok("still running 3 s later"), 3000));
    const err = await Promise.race([settled, hung]);
    clearTimeout(timer);
    const ms = performance.now() - t0;
    peer.close(); // unblocks a write still held, so that a failure here ends the test
    await settled;
    assert.equal(err?.name, "AbortError", String(err));
    assert.ok(ms < 1000, `aborted after ${ms.toFixed(0)} ms`);
  } finally {
    raw.close(fd);
    try {
      peer.close();
    } catch { /* closed above */ }
    listener.close();
  }
});

Deno.test("SIGINT reaches tee writing to a terminal nobody reads (as for GNU tee)", async () => {
  // stdout: a pseudo-terminal whose other end is never read; stdin: yes(1).
  const script = `
import os, pty, signal, subprocess, sys, time
m, s = pty.openpty()
yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
p = subprocess.Popen(sys.argv[1:], stdin=yes.stdout, stdout=s, stderr=subprocess.DEVNULL,
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
yes.stdout.close()
time.sleep(1.5)
t = time.monotonic(); p.send_signal(signal.SIGINT)
try:
    p.wait(timeout=8); print(p.returncode, round(1000 * (time.monotonic() - t)))
except subprocess.TimeoutExpired:
    print("hung"); p.kill(); p.wait()
yes.kill()
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", script, Deno.execPath(), "run", "-A", main, "tee"],
    stdout: "piped",
  }).output();
  const [code, ms] = new TextDecoder().decode(out.stdout).trim().split(" ");
  assert.equal(code, "-2", `tee did not die of SIGINT: ${code} ${ms ?? ""}`);
});
