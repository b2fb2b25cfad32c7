/**
 * mirror() and `onecopy mirror` (issue 13), with real sockets: backends are
 * separate processes (tests/mirror_peer.ts), clients are Deno connections.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Checksum, type ConnectionReport, Fd, mirror, type MirrorOptions } from "../mod.ts";
import * as raw from "../ffi/raw.ts";
import { ipv6Text, parseBytes } from "../lib/mirror.ts";
import { expectedMirrorLayout } from "../ffi/mirror_layout.ts";
import { parseLayout } from "../ffi/layout.ts";
import { mirrorLayoutText } from "../ffi/mirror.ts";
import { shim } from "../ffi/load.ts";
import { decoder, openFds, patternBytes, sha256, tempDir } from "./helpers.ts";

const peerScript = new URL("./mirror_peer.ts", import.meta.url).pathname;
const main = new URL("../cli/main.ts", import.meta.url).pathname;
const MiB = 1 << 20;
const methods = ["copy", "splice", "auto"] as const;

/** Reads a child's stdout into lines as they come. */
class Lines {
  readonly lines: string[] = [];
  readonly #done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#done = (async () => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
      if (rest) this.lines.push(rest);
    })();
  }
  /** Waits until there are `n` lines (or the stream ends); throws after `ms`. */
  async wait(n: number, ms = 20_000): Promise<string[]> {
    const deadline = Date.now() + ms;
    let ended = false;
    this.#done.then(() => (ended = true));
    while (this.lines.length < n && !ended) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} lines: ${this.lines}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.lines;
  }
  get done(): Promise<void> {
    return this.#done;
  }
}

/** A backend process (see mirror_peer.ts). */
async function peer(modes: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", peerScript, "tcp://127.0.0.1:0", modes],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new Lines(child.stdout);
  const [first] = await out.wait(1);
  const port = Number(/^listening (\d+)$/.exec(first ?? "")?.[1]);
  assert.ok(port > 0, `peer did not start: ${first}`);
  return {
    url: `tcp://127.0.0.1:${port}`,
    child,
    /** The per-connection result lines, as {bytes, sha, end}, once `n` are in. */
    async results(n: number) {
      const lines = (await out.wait(n + 1)).slice(1, n + 1);
      return lines.map((l) => {
        const [, bytes, sha, end] = l.split(" ");
        return { bytes: Number(bytes), sha, end };
      });
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.done;
    },
  };
}

/** A backend process on a Unix socket. */
async function unixPeer(path: string, modes: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", peerScript, `unix:${path}`, modes],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new Lines(child.stdout);
  await out.wait(1);
  return {
    async results(n: number) {
      return (await out.wait(n + 1)).slice(1, n + 1).map((l) => {
        const [, bytes, sha, end] = l.split(" ");
        return { bytes: Number(bytes), sha, end };
      });
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.done;
    },
  };
}

function portOf(url: string): number {
  return Number(url.split(":").pop());
}

/** Sends `data`, half-closes, and reads the reply to EOF (concurrently). */
async function exchange(url: string, data: Uint8Array) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(url) });
  try {
    const reading = (async () => {
      const hash = createHash("sha256");
      let bytes = 0;
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        hash.update(buf.subarray(0, n));
        bytes += n;
      }
      return { bytes, sha: hash.digest("hex") };
    })();
    for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    await conn.closeWrite();
    return await reading;
  } finally {
    conn.close();
  }
}

/** A mirror in this process whose reports are collected. */
async function startMirror(options: Omit<MirrorOptions, "listen"> & { listen?: string }) {
  const reports: ConnectionReport[] = [];
  const server = await mirror({
    listen: "tcp://127.0.0.1:0",
    ...options,
    onConnection: (r) => reports.push(r),
  });
  return {
    server,
    reports,
    async waitReports(n: number, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (reports.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${reports.length} of ${n} reports`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return reports;
    },
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
}

Deno.test("mirror: the shim's layouts match ffi/mirror_layout.ts", () => {
  assert.deepEqual(parseLayout(mirrorLayoutText()), expectedMirrorLayout());
});

Deno.test("mirror: IPv6 client addresses print in RFC 5952 form", () => {
  assert.equal(ipv6Text([0, 0, 0, 0, 0, 0, 0, 1]), "::1");
  assert.equal(ipv6Text([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), "2001:db8::1:0:0:1");
  assert.equal(ipv6Text([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]), "2001:db8:0:1:1:1:1:1");
  assert.equal(ipv6Text([0, 0, 0, 0, 0, 0, 0, 0]), "::");
  assert.equal(ipv6Text([0xfe80, 0, 0, 0, 0, 0, 0, 0]), "fe80::");
});

Deno.test("mirror: byte counts take K/M/G suffixes", () => {
  assert.equal(parseBytes("65536"), 65536);
  assert.equal(parseBytes("64K"), 65536);
  assert.equal(parseBytes("1M"), MiB);
  assert.equal(parseBytes("2MiB"), 2 * MiB);
  assert.throws(() => parseBytes("1.5M"), /not a byte count/);
  assert.throws(() => parseBytes("lots"), /not a byte count/);
});

for (const method of methods) {
  Deno.test(`mirror: primary and shadows get exactly the client's bytes, the client the primary's reply (${method})`, async () => {
    await using primary = await peer("echo");
    await using s1 = await peer("sink");
    await using s2 = await peer("sink");
    await using m = await startMirror({
      method,
      to: primary.url,
      shadows: [s1.url, s2.url],
      maxLag: 64 * MiB, // fidelity here, not isolation: a loaded box may be slow to read
    });
    const inputs = [1, 2, 3, 4].map((seed) => patternBytes(2 * MiB + seed * 1001, seed));
    const want = inputs.map(sha256).sort();
    const replies = await Promise.all(inputs.map((d) => exchange(m.server.url, d)));
    assert.deepEqual(replies.map((r) => r.sha).sort(), want, "echoed back to the clients");
    for (const backend of [primary, s1, s2]) {
      const got = await backend.results(4);
      assert.deepEqual(got.map((r) => r.sha).sort(), want);
      assert.ok(got.every((r) => r.end === "eof"), JSON.stringify(got));
    }
    const reports = await m.waitReports(4);
    for (const r of reports) {
      assert.equal(r.primary.outcome, "complete");
      assert.equal(r.clientOutcome, "complete");
      assert.equal(r.bytesIn, r.toPrimary);
      assert.equal(r.bytesOut, r.bytesIn);
      assert.deepEqual(r.shadows.map((s) => [s.outcome, s.bytes]), [
        ["complete", r.bytesIn],
        ["complete", r.bytesIn],
      ]);
    }
    const stats = m.server.stats();
    assert.equal(stats.closed, 4);
    assert.equal(stats.active, 0);
    assert.equal(stats.bytesIn, inputs.reduce((a, d) => a + d.length, 0));
  });
}

for (const method of methods) {
  Deno.test(`mirror: a shadow that never reads or is stopped costs the primary nothing (${method})`, async () => {
    await using primary = await peer("sink");
    await using stalled = await peer("stall");
    await using stopped = await peer("sink");
    await using m = await startMirror({
      method,
      to: primary.url,
      shadows: [stalled.url, stopped.url],
      maxLag: 256 * 1024,
    });
    Deno.kill(stopped.child.pid, "SIGSTOP");
    try {
      const data = patternBytes(24 * MiB, 7);
      await exchange(m.server.url, data);
      const [got] = await primary.results(1);
      assert.equal(got.sha, sha256(data));
      const [r] = await m.waitReports(1);
      assert.equal(r.primary.outcome, "complete");
      assert.deepEqual(r.shadows.map((s) => s.outcome), ["lagged-out", "lagged-out"]);
      for (const s of r.shadows) assert.ok(s.bytes < data.length, `${s.bytes}`);
      assert.equal(m.server.stats().shadowsDropped, 2);
    } finally {
      Deno.kill(stopped.child.pid, "SIGCONT");
    }
  });
}

for (const method of methods) {
  Deno.test(`mirror: with --on-lag block the primary waits for a slow shadow, which gets every byte (${method})`, async () => {
    await using primary = await peer("sink");
    await using shadow = await peer("sink");
    await using m = await startMirror({
      method,
      to: primary.url,
      shadows: [shadow.url],
      maxLag: 64 * 1024,
      onLag: "block",
    });
    Deno.kill(shadow.child.pid, "SIGSTOP");
    const data = patternBytes(8 * MiB, 8);
    const sending = exchange(m.server.url, data);
    await new Promise((r) => setTimeout(r, 300));
    const midway = m.server.stats().bytesIn;
    assert.ok(midway < data.length, `the primary did not wait: ${midway}`);
    Deno.kill(shadow.child.pid, "SIGCONT");
    await sending;
    const [[p], [s]] = await Promise.all([primary.results(1), shadow.results(1)]);
    assert.equal(p.sha, sha256(data));
    assert.equal(s.sha, sha256(data));
  });
}

for (const method of methods) {
  Deno.test(`mirror: shadows that die, reset or refuse cost the primary nothing (${method})`, async () => {
    await using primary = await peer("sink");
    await using dies = await peer("die:100000");
    await using resets = await peer("close:100000");
    const refused = await peer("sink");
    const refusedUrl = refused.url;
    await refused[Symbol.asyncDispose](); // nothing listens there now
    await using m = await startMirror({
      method,
      to: primary.url,
      shadows: [dies.url, resets.url, refusedUrl],
      maxLag: 64 * MiB,
    });
    const data = patternBytes(6 * MiB, 9);
    await exchange(m.server.url, data);
    const [got] = await primary.results(1);
    assert.equal(got.sha, sha256(data));
    const [r] = await m.waitReports(1);
    assert.equal(r.primary.outcome, "complete");
    // Splice bounds a backlog by pipe slots, not bytes: a shadow that stopped reading
    // before its reset arrived may have been dropped as lagging first.
    const dead = method === "copy" ? ["reset"] : ["reset", "lagged-out"];
    assert.ok(dead.includes(r.shadows[0].outcome), r.shadows[0].outcome);
    assert.ok(dead.includes(r.shadows[1].outcome), r.shadows[1].outcome);
    assert.equal(r.shadows[2].outcome, "refused");
    assert.equal(r.shadows[2].error, "ECONNREFUSED");
  });
}

Deno.test("mirror: a dead primary closes the client at once; the mirror keeps serving", async () => {
  await using primary = await peer("close:1000,echo");
  await using m = await startMirror({ to: primary.url });
  // The primary goes away mid-stream: the client sees its connection end (a reset).
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(m.server.url) });
  const big = patternBytes(8 * MiB, 3);
  const ended = (async () => {
    try {
      for (let off = 0; off < big.length;) off += await conn.write(big.subarray(off));
      await conn.read(new Uint8Array(10));
      return "eof";
    } catch (e) {
      return (e as { code?: string }).code;
    } finally {
      conn.close();
    }
  })();
  assert.equal(await ended, "ECONNRESET");
  const [first] = await m.waitReports(1);
  assert.equal(first.primary.outcome, "reset");
  // The next client is served as usual.
  const data = patternBytes(100_000, 4);
  assert.equal((await exchange(m.server.url, data)).sha, sha256(data));
  // A primary that refuses: the client is closed at once and counted.
  await using dead = await startMirror({ to: "tcp://127.0.0.1:1" });
  const c = await Deno.connect({ hostname: "127.0.0.1", port: portOf(dead.server.url) });
  const closed = await c.read(new Uint8Array(10)).catch((e) => e.code);
  assert.ok(closed === null || closed === "ECONNRESET", String(closed));
  c.close();
  const [r] = await dead.waitReports(1);
  assert.equal(r.primary.outcome, "refused");
  assert.equal(dead.server.stats().primaryFailed, 1);
});

for (const method of methods) {
  Deno.test(`mirror: half-close both ways (${method})`, async () => {
    // The primary says hello and half-closes first; the client reads that EOF, then sends.
    await using primary = await peer("greet");
    await using m = await startMirror({ method, to: primary.url });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(m.server.url) });
    const buf = new Uint8Array(100);
    let text = "";
    for (let n; (n = await conn.read(buf)) !== null;) text += decoder.decode(buf.subarray(0, n));
    assert.equal(text, "hello\n");
    const data = patternBytes(300_000, 5);
    for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    await conn.closeWrite(); // and now the client's half: the primary sees EOF, not a reset
    const [got] = await primary.results(1);
    assert.deepEqual([got.sha, got.end], [sha256(data), "eof"]);
    const [r] = await m.waitReports(1);
    assert.deepEqual([r.clientOutcome, r.primary.outcome, r.bytesIn, r.bytesOut], [
      "complete",
      "complete",
      data.length,
      6,
    ]);
    conn.close();
  });
}

for (const method of methods) {
  Deno.test(`mirror: a client reset reaches the primary as a reset (${method})`, async () => {
    await using primary = await peer("sink");
    await using m = await startMirror({ method, to: primary.url });
    const client = await Fd.connect(m.server.url);
    raw.write(client.fd, new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 200));
    // SO_LINGER 0: close() sends a reset.
    const linger = new Int32Array([1, 0]);
    shim().oc_setsockopt(client.fd, raw.SOL_SOCKET, 13, new Uint8Array(linger.buffer), 8);
    client.close();
    const [got] = await primary.results(1);
    assert.deepEqual([got.bytes, got.end], [1000, "ECONNRESET"]);
    const [r] = await m.waitReports(1);
    assert.equal(r.clientOutcome, "reset");
    assert.equal(r.primary.outcome, "reset");
  });
}

Deno.test("mirror: --sample mirrors a deterministic share of clients", async () => {
  await using primary = await peer("sink");
  await using shadow = await peer("sink");
  await using m = await startMirror({ to: primary.url, shadows: [shadow.url], sample: 50 });
  const n = 24;
  for (let i = 0; i < n; i++) await exchange(m.server.url, new TextEncoder().encode(`c${i}`));
  const reports = await m.waitReports(n);
  const mirrored = reports.filter((r) => r.mirrored).length;
  assert.ok(mirrored > 0 && mirrored < n, `${mirrored} of ${n} mirrored`);
  assert.equal((await shadow.results(mirrored)).length, mirrored);
  for (const r of reports) {
    assert.equal(r.shadows[0].outcome, r.mirrored ? "complete" : "skipped");
  }
  await using none = await startMirror({ to: primary.url, shadows: [shadow.url], sample: 0 });
  await exchange(none.server.url, new Uint8Array(5));
  assert.equal((await none.waitReports(1))[0].mirrored, false);
});

Deno.test("mirror: --capture writes both directions and an index with checksums", async () => {
  using dir = tempDir();
  await using primary = await peer("echo");
  await using m = await startMirror({ to: primary.url, capture: `${dir.path}/cap` });
  const inputs = [patternBytes(1 * MiB + 5, 21), patternBytes(70_000, 22)];
  await Promise.all(inputs.map((d) => exchange(m.server.url, d)));
  await m.waitReports(2);
  const index = Deno.readTextFileSync(`${dir.path}/cap/index.jsonl`).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.equal(index.length, 2);
  const want = inputs.map(sha256).sort();
  assert.deepEqual(
    index.map((e) => sha256(Deno.readFileSync(`${dir.path}/cap/${e.c2s.file}`))).sort(),
    want,
  );
  for (const e of index) {
    for (const side of [e.c2s, e.s2c]) {
      const bytes = Deno.readFileSync(`${dir.path}/cap/${side.file}`);
      assert.equal(bytes.length, side.bytes);
      const sum = new Checksum("xxh64");
      sum.update(bytes);
      assert.equal(sum.digest(), side.xxh64);
    }
    assert.ok(Date.parse(e.start) <= Date.parse(e.end));
    assert.match(e.client, /^127\.0\.0\.1:\d+$/);
  }
});

for (const method of methods) {
  Deno.test(`mirror: no fd outlives its connection over 1000 connections (${method})`, async () => {
    await using primary = await peer("echo");
    await using shadow = await peer("sink");
    await using m = await startMirror({ method, to: primary.url, shadows: [shadow.url] });
    await exchange(m.server.url, new Uint8Array(10)); // warm up: pools, lazily opened fds
    await m.waitReports(1);
    const before = openFds();
    const total = 1000;
    for (let i = 0; i < total; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, k) => exchange(m.server.url, new Uint8Array(100 + k))),
      );
    }
    await m.waitReports(total + 1);
    assert.equal(m.server.stats().active, 0);
    assert.equal(openFds(), before);
  });
}

Deno.test("mirror: connects that hang time out: the primary's closes the client, a shadow's is skipped", async () => {
  // A listener whose accept queue (backlog 0: one entry) is full drops further SYNs.
  using full = await Fd.listen("tcp://127.0.0.1:0", 0);
  using filler = await Fd.connect(full.url);
  await using primary = await peer("sink");
  await using m = await startMirror({ to: primary.url, shadows: [full.url], connectTimeout: 0.3 });
  const data = patternBytes(100_000, 12);
  await exchange(m.server.url, data);
  assert.equal((await primary.results(1))[0].sha, sha256(data));
  const [r] = await m.waitReports(1);
  assert.equal(r.primary.outcome, "complete");
  assert.deepEqual([r.shadows[0].outcome, r.shadows[0].error], ["timeout", "ETIMEDOUT"]);
  await using dead = await startMirror({ to: full.url, connectTimeout: 0.3 });
  const c = await Deno.connect({ hostname: "127.0.0.1", port: portOf(dead.server.url) });
  const t0 = Date.now();
  assert.equal(await c.read(new Uint8Array(1)).catch((e) => e.code), null);
  assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
  c.close();
  assert.equal((await dead.waitReports(1))[0].primary.outcome, "timeout");
  void filler;
});

Deno.test("mirror: Unix sockets on every side", async () => {
  using dir = tempDir();
  const primary = await unixPeer(`${dir.path}/p.sock`, "echo");
  const shadow = await unixPeer(`${dir.path}/s.sock`, "sink");
  try {
    await using m = await startMirror({
      listen: `unix:${dir.path}/m.sock`,
      to: `unix:${dir.path}/p.sock`,
      shadows: [`unix:${dir.path}/s.sock`],
      maxLag: 64 * MiB,
    });
    assert.equal(m.server.url, `unix:${dir.path}/m.sock`);
    const data = patternBytes(3 * MiB, 13);
    const conn = await Deno.connect({ transport: "unix", path: `${dir.path}/m.sock` });
    const reply = (async () =>
      sha256(new Uint8Array(await new Response(conn.readable).arrayBuffer())))();
    for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    await conn.closeWrite();
    assert.equal(await reply, sha256(data));
    assert.equal((await shadow.results(1))[0].sha, sha256(data));
    const [r] = await m.waitReports(1);
    assert.equal(r.client, "unix");
    assert.equal(r.shadows[0].outcome, "complete");
  } finally {
    await primary[Symbol.asyncDispose]();
    await shadow[Symbol.asyncDispose]();
  }
  // close() removed the listening socket's file, so the address can be used again.
  assert.throws(() => Deno.statSync(`${dir.path}/m.sock`), Deno.errors.NotFound);
});

Deno.test("mirror: past --max-connections clients wait in the backlog, then are served", async () => {
  await using primary = await peer("echo");
  await using m = await startMirror({ to: primary.url, maxConnections: 2, threads: 1 });
  const port = portOf(m.server.url);
  const held = await Promise.all([1, 2].map(() => Deno.connect({ hostname: "127.0.0.1", port })));
  for (const c of held) await c.write(new Uint8Array([1]));
  for (const c of held) await c.read(new Uint8Array(1));
  // A third client connects (the kernel completes it) but is not served yet.
  const third = await Deno.connect({ hostname: "127.0.0.1", port });
  await third.write(new Uint8Array([3]));
  const echoed = third.read(new Uint8Array(1));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(m.server.stats().accepted, 2);
  held[0].close();
  assert.equal(await echoed, 1);
  assert.equal(m.server.stats().accepted, 3);
  held[1].close();
  third.close();
});

// ---- the command ---------------------------------------------------------------------

/** Starts `onecopy mirror ARGS`; resolves once it listens. */
async function startCli(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "mirror", ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = new Lines(child.stderr);
  const out = new Lines(child.stdout);
  const [first] = await err.wait(1);
  const url = /^onecopy mirror: listening on (\S+)$/.exec(first ?? "")?.[1];
  assert.ok(url, `mirror did not start: ${first}`);
  return {
    url,
    child,
    out,
    err,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await Promise.all([out.done, err.done]);
    },
  };
}

Deno.test("onecopy mirror: bad arguments are one-line errors with exit 2", async () => {
  const cases = [
    [],
    ["--listen", "tcp://127.0.0.1:0"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "nowhere"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:0"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--max-lag", "lots"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--on-lag", "skip"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--sample", "150"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--method", "fast"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--drain-timeout", "-1"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--max-connections", "0"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--threads", "0"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--frobnicate"],
    ["--listen", "unix:", "--to", "tcp://127.0.0.1:9"],
    ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9", "--shadow", "/tmp/file"],
  ];
  await Promise.all(cases.map(async (args) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", main, "mirror", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(out.stderr);
    assert.equal(out.code, 2, `${args.join(" ")}: ${text}`);
    assert.match(text, /^onecopy: [^\n]+\nTry 'onecopy mirror --help'[^\n]*\n$/, args.join(" "));
  }));
});

Deno.test("onecopy mirror: SIGTERM stops accepting, drains open connections, prints --json, exits 0", async () => {
  await using primary = await peer("echo");
  await using cli = await startCli([
    "--listen",
    "tcp://127.0.0.1:0",
    "--to",
    primary.url,
    "--json",
  ]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(cli.url) });
  await conn.write(new TextEncoder().encode("first half "));
  await new Promise((r) => setTimeout(r, 200));
  cli.child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  // No longer accepting: a new client is refused (the listener is closed only at exit, so
  // it may also wait in the backlog; either way it gets no reply).
  await conn.write(new TextEncoder().encode("second half"));
  await conn.closeWrite();
  const reply = await new Response(conn.readable).text();
  assert.equal(reply, "first half second half");
  const status = await cli.child.status;
  assert.equal(status.code, 0);
  const lines = (await cli.out.wait(2)).map((l) => JSON.parse(l));
  assert.equal(lines[0].bytes_in, 22);
  assert.equal(lines[0].primary, "complete");
  assert.equal(lines.at(-1).summary, true);
  assert.equal(lines.at(-1).closed, 1);
});

Deno.test("onecopy mirror: --drain-timeout closes connections that do not finish", async () => {
  await using primary = await peer("sink");
  await using cli = await startCli([
    "--listen",
    "tcp://127.0.0.1:0",
    "--to",
    primary.url,
    "--drain-timeout",
    "0.5",
  ]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(cli.url) });
  await conn.write(new Uint8Array(10));
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  cli.child.kill("SIGINT");
  assert.equal((await cli.child.status).code, 0);
  assert.ok(Date.now() - t0 < 8000);
  assert.equal(await conn.read(new Uint8Array(1)).catch(() => null), null);
  conn.close();
});

Deno.test("onecopy mirror: 1000 concurrent connections, idle ones cheap", async () => {
  await using primary = await peer("echo");
  await using shadow = await peer("sink");
  await using cli = await startCli([
    "--listen",
    "tcp://127.0.0.1:0",
    "--to",
    primary.url,
    "--shadow",
    shadow.url,
  ]);
  const rss = () =>
    Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${cli.child.pid}/status`))![1]);
  const rssBefore = rss();
  const n = 1000;
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i += 100) {
    conns.push(
      ...await Promise.all(
        Array.from(
          { length: 100 },
          () => Deno.connect({ hostname: "127.0.0.1", port: portOf(cli.url) }),
        ),
      ),
    );
  }
  // Every connection is open at once: each says its number and gets it echoed.
  await Promise.all(conns.map(async (c, i) => {
    const msg = new TextEncoder().encode(`${i}\n`);
    await c.write(msg);
    const buf = new Uint8Array(16);
    let got = 0;
    while (got < msg.length) got += (await c.read(buf.subarray(got))) ?? Infinity;
    assert.equal(decoder.decode(buf.subarray(0, msg.length)), `${i}\n`);
  }));
  const grown = rss() - rssBefore;
  assert.ok(grown < 64 * 1024, `RSS grew by ${grown} KiB for ${n} idle connections`);
  await Promise.all(conns.map(async (c) => {
    await c.closeWrite();
    await c.read(new Uint8Array(1));
    c.close();
  }));
  assert.equal((await shadow.results(n)).length, n);
});
