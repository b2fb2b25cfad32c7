/**
 * mirror() and `onecopy mirror` (issue 13), with real sockets: backends are
 * separate processes (tests/mirror_peer.ts), clients are Deno connections.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  Checksum,
  type ConnectionReport,
  Fd,
  mirror,
  type MirrorOptions,
  type MirrorServer,
} from "../mod.ts";
import * as raw from "../ffi/raw.ts";
import { ipv6Text, parseBytes } from "../lib/mirror.ts";
import { mirrorCommand } from "../cli/mirror.ts";
import { shim } from "../ffi/load.ts";
import { decoder, openFds, patternBytes, runDeno, sha256, tempDir } from "./helpers.ts";

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

/** A backend process (see mirror_peer.ts) listening on `listen` (TCP: any free port). */
async function peer(modes: string, listen = "tcp://127.0.0.1:0") {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", peerScript, listen, modes],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new Lines(child.stdout);
  const [first] = await out.wait(1);
  const port = Number(/^listening (\d+)$/.exec(first ?? "")?.[1]);
  const unix = listen.startsWith("unix:");
  assert.ok(unix || port > 0, `peer did not start: ${first}`);
  return {
    url: unix ? listen : `tcp://127.0.0.1:${port}`,
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

/** Each `onecopy mirror` command line is a usage error: status 2, one line and the Try line. */
async function assertUsageErrors(cases: string[][]): Promise<void> {
  await Promise.all(cases.map(async (args) => {
    const out = await runDeno(["run", "-A", main, "mirror", ...args]);
    const text = decoder.decode(out.stderr);
    assert.equal(out.code, 2, `${args.join(" ")}: ${text}`);
    assert.match(text, /^onecopy: [^\n]+\nTry 'onecopy mirror --help'[^\n]*\n$/, args.join(" "));
  }));
}

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
  assert.equal(parseBytes("3G"), 3 * 2 ** 30);
  assert.equal(parseBytes("1T"), 2 ** 40);
  assert.equal(parseBytes("17B"), 17);
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

/**
 * A shadow that accepts one connection, lets the stream arrive unread and
 * closes after `ms`: its kernel resets the connection (Python: Deno's close
 * came out as a FIN here).
 */
async function unreadShadow(ms: number) {
  const script = `
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); time.sleep(${ms / 1000}); c.close()
time.sleep(30)
`;
  const child = new Deno.Command("python3", { args: ["-c", script], stdout: "piped" }).spawn();
  const [first] = await new Lines(child.stdout).wait(1);
  return {
    url: `tcp://127.0.0.1:${Number(first)}`,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    },
  };
}

for (const method of methods) {
  Deno.test(`mirror: a shadow that closes with the whole stream unread is reset, not complete (${method})`, async () => {
    await using primary = await peer("sink");
    await using unread = await unreadShadow(700); // within the shadows' grace (5 s)
    await using m = await startMirror({ method, to: primary.url, shadows: [unread.url] });
    const data = patternBytes(256 * 1024, 4); // fits its socket buffers: all of it is written
    await exchange(m.server.url, data);
    const [r] = await m.waitReports(1);
    assert.equal(r.primary.outcome, "complete");
    assert.equal(r.shadows[0].bytes, data.length);
    assert.equal(r.shadows[0].outcome, "reset");
  });
}

for (const method of methods) {
  Deno.test(`mirror: a primary that resets mid-upload: the shadow is reset too, never sent a FIN for a cut stream (${method})`, async () => {
    await using primary = await peer("close:100000");
    await using shadow = await peer("sink");
    await using m = await startMirror({ method, to: primary.url, shadows: [shadow.url] });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(m.server.url) });
    const data = patternBytes(16 * MiB, 6);
    try {
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    } catch { /* the mirror resets the client once the primary is gone */ }
    conn.close();
    const [r] = await m.waitReports(1);
    assert.equal(r.primary.outcome, "reset");
    assert.equal(r.shadows[0].outcome, "aborted");
    const [got] = await shadow.results(1);
    assert.notEqual(got.end, "eof", `the shadow took ${got.bytes} bytes for a whole stream`);
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
  // EPIPE when the primary's FIN (propagated to the client) came before its reset:
  // the kernel reports a reset in CLOSE_WAIT so.
  assert.ok(["ECONNRESET", "EPIPE"].includes(String(await ended)), String(await ended));
  const [first] = await m.waitReports(1);
  assert.equal(first.primary.outcome, "reset");
  await settled(m.server, 1);
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `n` connections are accepted, closed and reported once each, and none is open. */
async function settled(server: MirrorServer, n: number) {
  const deadline = Date.now() + 5000;
  const ok = () => {
    const s = server.stats();
    return s.accepted === n && s.closed === n && s.active === 0;
  };
  while (!ok() && Date.now() < deadline) await sleep(10);
  await sleep(50); // a second report of the same connection would come now
  assert.deepEqual(
    [server.stats().accepted, server.stats().closed, server.stats().active],
    [n, n, 0],
  );
}

Deno.test("mirror: a primary that dies mid-upload, again and again: each connection is finished and reported once", async () => {
  // The primary resets while a pump turn is moving bulk bytes: the connection
  // is finished in the same turn that queued it again. That stale entry must
  // not finish it twice (counters wrapping, the loop no longer accepting).
  await using primary = await peer("close:1000");
  await using m = await startMirror({ to: primary.url, threads: 1 });
  const big = patternBytes(8 * MiB, 3);
  const rounds = 16;
  for (let i = 1; i <= rounds; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(m.server.url) });
    try {
      for (let off = 0; off < big.length;) off += await conn.write(big.subarray(off));
      await conn.read(new Uint8Array(10));
    } catch {
      /* reset, as it should */
    } finally {
      conn.close();
    }
    await m.waitReports(i);
    await settled(m.server, i);
  }
  assert.equal(m.reports.length, rounds);
  assert.equal(new Set(m.reports.map((r) => r.id)).size, rounds);
  const t0 = Date.now();
  await m.server.close();
  assert.ok(Date.now() - t0 < 3000, `close() took ${Date.now() - t0} ms`);
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
  const primary = await peer("echo", `unix:${dir.path}/p.sock`);
  const shadow = await peer("sink", `unix:${dir.path}/s.sock`);
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
  await assertUsageErrors(cases);
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

// ---- what the reviews of issues 12 and 13 found ------------------------------------

for (const kind of ["tcp", "unix"] as const) {
  Deno.test(`mirror: a shadow that answers gets its whole stream and our FIN, and is read to its end (${kind})`, async () => {
    // An echo shadow is still writing back when the client and primary are
    // done: closing it with its replies unread would reset it mid-stream.
    using dir = tempDir();
    await using primary = await peer("sink");
    await using shadow = await peer(
      "echo",
      kind === "tcp" ? "tcp://127.0.0.1:0" : `unix:${dir.path}/s.sock`,
    );
    await using m = await startMirror({ to: primary.url, shadows: [shadow.url], maxLag: 64 * MiB });
    const inputs = [1, 2, 3, 4].map((seed) => patternBytes(4 * MiB + seed, 40 + seed));
    await Promise.all(inputs.map((d) => exchange(m.server.url, d)));
    const got = await shadow.results(inputs.length);
    assert.deepEqual(got.map((r) => r.end), ["eof", "eof", "eof", "eof"], JSON.stringify(got));
    assert.deepEqual(got.map((r) => r.sha).sort(), inputs.map(sha256).sort());
    const reports = await m.waitReports(inputs.length);
    for (const r of reports) {
      assert.deepEqual([r.shadows[0].outcome, r.shadows[0].bytes], ["complete", r.bytesIn]);
    }
  });
}

Deno.test("mirror: --max-connections counts over every thread", async () => {
  await using primary = await peer("echo");
  await using m = await startMirror({ to: primary.url, maxConnections: 3, threads: 2 });
  const port = portOf(m.server.url);
  const conns = await Promise.all(
    Array.from({ length: 7 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  try {
    for (const c of conns) await c.write(new Uint8Array([1]));
    const served = await Promise.all(conns.map((c) =>
      Promise.race([
        c.read(new Uint8Array(1)).then((n) => n === 1, () => false),
        sleep(1500).then(() => false),
      ])
    ));
    assert.equal(served.filter(Boolean).length, 3, `${served}`);
    assert.equal(m.server.stats().accepted, 3);
  } finally {
    for (const c of conns) c.close();
  }
});

Deno.test("mirror: a capture directory collects several runs, each in its own RUN/ directory", async () => {
  using dir = tempDir();
  const cap = `${dir.path}/cap`;
  await using primary = await peer("echo");
  const inputs = [patternBytes(50_001, 31), patternBytes(70_002, 32)];
  for (const data of inputs) {
    const m = await startMirror({ to: primary.url, capture: cap, threads: 1 });
    await exchange(m.server.url, data);
    await m.waitReports(1);
    await m.server.close();
  }
  const index = Deno.readTextFileSync(`${cap}/index.jsonl`).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.equal(index.length, 2);
  assert.notEqual(index[0].run, index[1].run);
  index.forEach((e, k) => {
    assert.match(e.run, /^\d{8}T\d{6}Z-\d+(-\d+)?$/);
    assert.equal(e.c2s.file, `${e.run}/${e.id}.c2s`);
    assert.equal(e.s2c.file, `${e.run}/${e.id}.s2c`);
    assert.equal(sha256(Deno.readFileSync(`${cap}/${e.c2s.file}`)), sha256(inputs[k]));
    assert.equal(sha256(Deno.readFileSync(`${cap}/${e.s2c.file}`)), sha256(inputs[k]));
  });
});

Deno.test("mirror(): bad options are a TypeError or RangeError naming the option", async () => {
  const base = { listen: "tcp://127.0.0.1:0", to: "tcp://127.0.0.1:9" };
  const cases: [Record<string, unknown>, ErrorConstructor, RegExp][] = [
    [{}, TypeError, /listen/],
    [{ listen: base.listen }, TypeError, /\bto\b/],
    [{ ...base, maxLag: 2 ** 64 }, RangeError, /maxLag/],
    [{ ...base, maxLag: 2 ** 40 + 1 }, RangeError, /maxLag/],
    [{ ...base, maxLag: 1.5 }, RangeError, /maxLag/],
    [{ ...base, maxLag: NaN }, TypeError, /maxLag/],
    [{ ...base, connectTimeout: Infinity }, RangeError, /connectTimeout/],
    [{ ...base, shadowGrace: NaN }, TypeError, /shadowGrace/],
    [{ ...base, drainTimeout: -1 }, RangeError, /drainTimeout/],
    [{ ...base, sample: NaN }, TypeError, /sample/],
    [{ ...base, sample: "50" }, TypeError, /sample/],
    [{ ...base, threads: 65 }, RangeError, /threads/],
    [{ ...base, maxConnections: 0 }, RangeError, /maxConnections/],
    [{ ...base, onLag: "toString" }, TypeError, /onLag/],
    [{ ...base, method: "fast" }, TypeError, /method/],
    [{ ...base, shadows: "tcp://127.0.0.1:1" }, TypeError, /shadows/],
  ];
  for (const [options, type, name] of cases) {
    await assert.rejects(
      () => mirror(options as unknown as MirrorOptions),
      (e: Error) => e instanceof type && name.test(e.message),
      JSON.stringify(options),
    );
  }
});

for (const listen of ["tcp", "unix"] as const) {
  Deno.test(`mirror: while close() drains, new clients are refused at once (${listen})`, async () => {
    using dir = tempDir();
    const url = listen === "tcp" ? "tcp://127.0.0.1:0" : `unix:${dir.path}/m.sock`;
    await using primary = await peer("echo");
    // One place: a second client waits in the listen backlog.
    await using m = await startMirror({
      listen: url,
      to: primary.url,
      drainTimeout: 30,
      maxConnections: 1,
    });
    const connect = () =>
      listen === "tcp"
        ? Deno.connect({ hostname: "127.0.0.1", port: portOf(m.server.url) })
        : Deno.connect({ transport: "unix", path: `${dir.path}/m.sock` });
    const held = await connect();
    await held.write(new Uint8Array([7]));
    assert.equal(await held.read(new Uint8Array(1)), 1);
    const queued = await connect();
    await sleep(100);
    assert.equal(m.server.stats().accepted, 1);
    const closing = m.server.close();
    // The client left in the backlog is ended, not kept waiting for the drain.
    const end = await Promise.race([
      queued.read(new Uint8Array(1)).catch(() => null),
      sleep(2000).then(() => "waiting"),
    ]);
    assert.equal(end, null);
    queued.close();
    const t0 = Date.now();
    let refused = false;
    while (!refused && Date.now() - t0 < 3000) {
      try {
        const c = await connect();
        // Connected in the moment before the shutdown: it must end at once, not wait.
        const got = await Promise.race([
          c.read(new Uint8Array(1)).catch(() => null),
          sleep(2000).then(() => "waiting"),
        ]);
        c.close();
        assert.notEqual(got, "waiting", "a new client was left waiting");
      } catch (e) {
        refused = e instanceof Deno.errors.ConnectionRefused;
        if (!refused) throw e;
      }
      await sleep(10);
    }
    assert.ok(refused, "new clients are still accepted into the backlog");
    // The open connection is still served, then the drain ends with it.
    await held.write(new Uint8Array([8]));
    assert.equal(await held.read(new Uint8Array(1)), 1);
    held.close();
    assert.equal((await closing).closed, 1);
  });
}

/** The epoll fds this process holds. */
function epollFds(): number[] {
  return [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name)).filter((fd) => {
    try {
      return Deno.readLinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[eventpoll]";
    } catch {
      return false;
    }
  });
}

/** Waits for a new epoll fd (a mirror loop's) beside `before`. */
async function newEpollFd(before: number[]): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const fresh = epollFds().filter((fd) => !before.includes(fd));
    if (fresh.length === 1) return fresh[0];
    assert.ok(fresh.length === 0 && Date.now() < deadline, `new epoll fds: ${fresh}`);
    await sleep(10);
  }
}

Deno.test("mirror: a loop that fails closes the mirror, and `closed` rejects with the error", async () => {
  await using primary = await peer("echo");
  const before = epollFds();
  const server = await mirror({ listen: "tcp://127.0.0.1:0", to: primary.url, threads: 1 });
  raw.close(await newEpollFd(before)); // its epoll set is gone: epoll_wait fails (EBADF)
  await assert.rejects(server.closed, /epoll_wait: EBADF/);
  await assert.rejects(server.close(), /epoll_wait: EBADF/);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: portOf(server.url) }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("onecopy mirror: a loop that fails is a one-line error and exit 1", async () => {
  await using primary = await peer("echo");
  const before = epollFds();
  const lines: string[] = [];
  const running = mirrorCommand(
    ["--listen", "tcp://127.0.0.1:0", "--to", primary.url, "--threads", "1"],
    (l) => lines.push(l),
    (l) => lines.push(l),
  );
  raw.close(await newEpollFd(before));
  await assert.rejects(running, /^OnecopyError: mirror: .*\(epoll_wait: EBADF\)$/m);
});

Deno.test("mirror(): with no fd left for an eventfd, nothing is left open", async () => {
  using dir = tempDir();
  const script = `${dir.path}/child.ts`;
  Deno.writeTextFileSync(
    script,
    `
import { mirror } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
import * as raw from ${JSON.stringify(new URL("../ffi/raw.ts", import.meta.url).href)};
const fds = () => [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name));
const options = { listen: "tcp://127.0.0.1:0", to: "tcp://127.0.0.1:9", threads: 1 };
await (await mirror(options)).close(); // warm up: whatever is opened once
const before = fds();
const held: number[] = [];
for (;;) {
  try {
    held.push(raw.open("/dev/null", raw.O_RDONLY));
  } catch {
    break;
  }
}
for (const fd of held.splice(-2)) raw.close(fd); // room for the listener and one eventfd
let error = "none";
try {
  await mirror(options);
} catch (e) {
  error = String(e);
}
for (const fd of held) raw.close(fd);
console.log(JSON.stringify({ error, leaked: fds().filter((fd) => !before.includes(fd)) }));
`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const { error, leaked } = JSON.parse(decoder.decode(out.stdout));
  assert.match(error, /EMFILE/);
  assert.deepEqual(leaked, []);
});

Deno.test("onecopy mirror: --max-lag, --listen, --to and timeouts out of range are usage errors", async () => {
  const base = ["--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:9"];
  const cases = [
    [...base, "--max-lag", "17179869184G"],
    [...base, "--max-lag", "99999999999999999999"],
    [...base, "--max-lag", "1025G"],
    [...base, "--listen", "tcp://127.0.0.1:0"],
    [...base, "--to", "tcp://127.0.0.1:8"],
    [...base, "--connect-timeout", "1e300"],
    [...base, "--method", "splice", "--method", "copy"],
  ];
  await assertUsageErrors(cases);
});

Deno.test("onecopy mirror: a second SIGTERM during the drain closes the rest now and exits 130", async () => {
  await using primary = await peer("sink");
  await using cli = await startCli([
    "--listen",
    "tcp://127.0.0.1:0",
    "--to",
    primary.url,
    "--drain-timeout",
    "60",
  ]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(cli.url) });
  await conn.write(new Uint8Array(10));
  await sleep(200);
  cli.child.kill("SIGTERM");
  await sleep(300);
  const t0 = Date.now();
  cli.child.kill("SIGTERM");
  assert.equal((await cli.child.status).code, 130);
  assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
  assert.equal(await conn.read(new Uint8Array(1)).catch(() => null), null);
  conn.close();
});

Deno.test("onecopy mirror: capture index lines that cannot be written are said once on stderr", async () => {
  using dir = tempDir();
  Deno.mkdirSync(`${dir.path}/cap`);
  Deno.symlinkSync("/dev/full", `${dir.path}/cap/index.jsonl`); // every write: ENOSPC
  await using primary = await peer("echo");
  await using cli = await startCli([
    "--listen",
    "tcp://127.0.0.1:0",
    "--to",
    primary.url,
    "--capture",
    `${dir.path}/cap`,
    "--json",
  ]);
  for (let i = 0; i < 3; i++) await exchange(cli.url, patternBytes(1000, i));
  await cli.out.wait(3);
  cli.child.kill("SIGTERM");
  assert.equal((await cli.child.status).code, 0);
  await cli.err.done;
  const lost = cli.err.lines.filter((l) => l.includes("index lines are being lost"));
  assert.equal(lost.length, 1, cli.err.lines.join("\n"));
  assert.match(lost[0], /ENOSPC/);
});

Deno.test("mirror: shadows that linger after their client never keep the next client waiting", async () => {
  // One place, one loop: its table holds two connections. A shadow that has
  // its whole stream but never closes lingers for its grace (5 s); a full
  // table of those must give way to the next client at once.
  await using primary = await peer("echo");
  await using shadow = await peer("hold");
  await using m = await startMirror({
    to: primary.url,
    shadows: [shadow.url],
    maxConnections: 1,
    threads: 1,
  });
  const data = patternBytes(1000, 3);
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    const got = await exchange(m.server.url, data);
    const ms = performance.now() - t0;
    assert.equal(got.sha, sha256(data), `client ${k + 1}`);
    // Waiting out a lingering shadow's grace would take 5 s.
    assert.ok(ms < 2500, `client ${k + 1} waited ${ms.toFixed(0)} ms`);
  }
  // The ones given up early had their whole stream: complete, not lagged-out.
  const reports = await m.waitReports(3);
  for (const r of reports) assert.equal(r.shadows[0].outcome, "complete", JSON.stringify(r));
});
