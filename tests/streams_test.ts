/** Web streams in and out of fanout(), and clear errors for what cannot work (issue 11). */

import assert from "node:assert/strict";
import { fanout, FanoutError, Fd, methods } from "../mod.ts";
import { openFds, patternBytes, pipeConsumer, sha256, tempDir } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** `data` cut into chunks of varied sizes (empty ones included). */
function chunksOf(data: Uint8Array): Uint8Array[] {
  const sizes = [0, 1, 4095, 65536, 1, 300_000, MiB + 3, 0, 7];
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - off);
    out.push(data.slice(off, off + n));
    off += n;
  }
  return out;
}

/** A WritableStream that collects what it is given, hashing it at the end. */
function collector(delayMs = 0) {
  const got: Uint8Array[] = [];
  let written = 0;
  const stream = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      got.push(chunk);
      written += chunk.length;
    },
  });
  const bytes = () => {
    const all = new Uint8Array(written);
    let off = 0;
    for (const c of got) (all.set(c, off), off += c.length);
    return all;
  };
  return { stream, bytes, written: () => written };
}

Deno.test("a ReadableStream source reaches files, pipes and WritableStreams byte for byte, by every method", async () => {
  using dir = tempDir();
  const data = patternBytes(4 * MiB + 12345, 11);
  const want = sha256(data);
  for (const method of methods) {
    const before = openFds();
    const pipe = pipeConsumer();
    const sink = collector();
    const report = await fanout(
      ReadableStream.from(chunksOf(data)),
      [`${dir.path}/a`, pipe.dest, sink.stream],
      { method, checksum: "sha256" },
    );
    pipe.dest.close();
    const what = `method ${method}`;
    assert.equal(report.bytes, data.length, what);
    assert.equal(report.checksum?.hex, want, what);
    assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), want, what);
    assert.equal((await pipe.result).sha256, want, what);
    assert.equal(sha256(sink.bytes()), want, what);
    assert.deepEqual(report.destinations.map((d) => d.bytes), [
      data.length,
      data.length,
      data.length,
    ]);
    assert.equal(report.destinations[2].target, "WritableStream (destination 3)");
    assert.ok(report.stable, what);
    assert.equal(openFds(), before, `no fd left open (${what})`);
  }
});

Deno.test("an async iterable source; an empty stream gives empty destinations", async () => {
  using dir = tempDir();
  const data = patternBytes(3 * MiB + 1, 12);
  async function* generate() {
    for (const chunk of chunksOf(data)) yield chunk;
  }
  const report = await fanout(generate(), [`${dir.path}/a`]);
  assert.equal(report.bytes, data.length);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
  const source = ReadableStream.from([new Uint8Array(3)]);
  const used = collector();
  await fanout(source, [used.stream]);
  assert.ok(!source.locked && !used.stream.locked, "both streams are released at the end");
  const sink = collector();
  const empty = await fanout(ReadableStream.from([]), [`${dir.path}/b`, sink.stream]);
  assert.equal(empty.bytes, 0);
  assert.equal(Deno.readFileSync(`${dir.path}/b`).length, 0);
  assert.equal(sink.written(), 0);
});

Deno.test("Deno.stdin.readable-like and fetch()-like bodies: a file's .readable as source", async () => {
  using dir = tempDir();
  const data = patternBytes(2 * MiB + 5, 13);
  Deno.writeFileSync(`${dir.path}/src`, data);
  const file = await Deno.open(`${dir.path}/src`);
  const report = await fanout(file.readable, [`${dir.path}/a`]); // .readable closes the file
  assert.equal(report.bytes, data.length);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
  const out = await Deno.open(`${dir.path}/b`, { write: true, create: true });
  const back = await fanout(`${dir.path}/src`, [out.writable]); // .writable closes it at the end
  assert.equal(back.destinations[0].bytes, data.length);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/b`)), sha256(data));
});

Deno.test("backpressure: the source is read only as fast as the slowest WritableStream drains", async () => {
  const chunk = 64 * KiB;
  const total = 16 * MiB;
  let pulled = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= total) return controller.close();
      controller.enqueue(new Uint8Array(chunk).fill(pulled / chunk));
      pulled += chunk;
    },
  }, { highWaterMark: 0 });
  let ahead = 0;
  let written = 0;
  const slow = new WritableStream<Uint8Array>({
    async write(c) {
      ahead = Math.max(ahead, pulled - written);
      if (written % MiB === 0) await new Promise((r) => setTimeout(r, 5));
      written += c.length;
    },
  });
  const fast = collector();
  const report = await fanout(source, [slow, fast.stream], { pipeSize: 64 * KiB });
  assert.equal(report.bytes, total);
  assert.equal(written, total);
  assert.equal(fast.written(), total);
  // Stage pipe + the slow one's pipe + a chunk in the pump and one in the writer, with slack.
  assert.ok(ahead <= 8 * chunk, `the source ran ${ahead} bytes ahead of the slow destination`);
});

Deno.test("a WritableStream that throws fails alone; the others get every byte", async () => {
  using dir = tempDir();
  const data = patternBytes(3 * MiB, 14);
  let seen = 0;
  const failing = new WritableStream<Uint8Array>({
    write(c) {
      seen += c.length;
      if (seen > MiB) throw new Error("upload rejected");
    },
  });
  const before = openFds();
  const good = collector();
  const pipe = pipeConsumer();
  const errors: string[] = [];
  const err = await fanout(ReadableStream.from(chunksOf(data)), [
    `${dir.path}/a`,
    failing,
    good.stream,
    pipe.dest,
  ], { onDestinationError: (target, e) => (errors.push(`${target}: ${e.message}`), "continue") })
    .catch((e) => e);
  pipe.dest.close();
  assert.ok(err instanceof FanoutError, String(err));
  const [a, bad, ok, p] = err.report.destinations;
  assert.match(bad.error!.message, /upload rejected/);
  assert.ok(bad.bytes <= MiB, `failed one counts what it accepted: ${bad.bytes}`);
  for (const d of [a, ok, p]) assert.equal(d.error, undefined, d.target);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/a`)), sha256(data));
  assert.equal(sha256(good.bytes()), sha256(data));
  assert.equal((await pipe.result).sha256, sha256(data));
  assert.deepEqual(errors, ["WritableStream (destination 2): upload rejected"]);
  assert.equal(openFds(), before);
});

Deno.test("a source stream that errors rejects fanout(), aborting the WritableStreams", async () => {
  using dir = tempDir();
  let reason: unknown;
  const sink = new WritableStream<Uint8Array>({ abort: (r) => void (reason = r) });
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array(MiB));
      setTimeout(() => c.error(new Error("connection reset")), 20);
    },
  });
  const before = openFds();
  const err = await fanout(source, [`${dir.path}/a`, sink]).catch((e) => e);
  assert.ok(err instanceof FanoutError, String(err));
  assert.match(err.message, /source stream: connection reset/);
  assert.equal(err.report.bytes, MiB, "the report says how far the source got");
  assert.equal(err.report.destinations[0].bytes, MiB);
  assert.match(String(reason), /connection reset/, "the WritableStream was aborted, not closed");
  assert.equal(openFds(), before);
  const bad = ReadableStream.from(["not bytes"] as unknown as Uint8Array[]);
  await assert.rejects(
    fanout(bad, [`${dir.path}/b`]),
    /a chunk is the string "not bytes", not a Uint8Array/,
  );
});

Deno.test("abort while the source stream is silent: rejects at once and cancels the stream", async () => {
  using dir = tempDir();
  let cancelled: unknown;
  const silent = new ReadableStream<Uint8Array>({ cancel: (r) => void (cancelled = r ?? "yes") });
  const controller = new AbortController();
  const run = fanout(silent, [`${dir.path}/a`], { signal: controller.signal });
  await new Promise((r) => setTimeout(r, 100));
  const t0 = performance.now();
  controller.abort();
  await assert.rejects(run, (e: Error) => e.name === "AbortError");
  assert.ok(performance.now() - t0 < 1000, "abort took too long");
  assert.ok(cancelled, "the source stream was cancelled");
});

Deno.test("abort while a fast source stream fills its pipe: rejects in a few ms, not after the pump's poll", async () => {
  const chunk = new Uint8Array(MiB);
  const latencies: number[] = [];
  for (let i = 0; i < 5; i++) {
    const endless = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(chunk) });
    const controller = new AbortController();
    let abortedAt = 0;
    const run = fanout(endless, ["/dev/null"], {
      signal: controller.signal,
      onProgress: (n) => {
        if (n < 64 * MiB || abortedAt) return;
        abortedAt = performance.now();
        controller.abort();
      },
    });
    await assert.rejects(run, (e: Error) => e.name === "AbortError");
    latencies.push(performance.now() - abortedAt);
  }
  latencies.sort((a, b) => a - b);
  // /dev/null, not a file: a file's dirty-page throttling can hold a write ~70 ms, which no abort interrupts.
  assert.ok(latencies[3] < 50, `4th of 5 ${latencies[3].toFixed(0)} ms after the abort`);
});

Deno.test("what cannot work is a TypeError naming it and what to pass, before any file is touched", async () => {
  using dir = tempDir();
  const kept = `${dir.path}/kept`;
  Deno.writeTextFileSync(kept, "precious");
  const file = await Deno.open(kept);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  try {
    const cases: [unknown, RegExp, RegExp][] = [
      [
        file,
        /is a FsFile.*its path, or file\.readable/,
        /is a FsFile.*its path, or file\.writable/,
      ],
      [conn, /is a TcpConn.*conn\.readable/, /is a TcpConn.*"tcp:\/\/host:port".*conn\.writable/],
      [new URL(`file://${kept}`), /a URL \(file:.*url\.pathname/, /a URL \(file:.*url\.pathname/],
      [new URL("https://example.com/x"), /fetch\(url\)\)\.body/, /"tcp:\/\/host:port"/],
      [
        new Uint8Array(4),
        /Uint8Array of 4 bytes.*ReadableStream\.from/,
        /Uint8Array.*WritableStream/,
      ],
      [3, /the number 3.*Fd\.adopt/, /the number 3.*Fd\.adopt/],
      [{}, /a plain object.*a path/, /a plain object.*a path/],
      [null, /is null/, /is null/],
      [Deno.stdin, /pass "-".*Deno\.stdin\.readable/, /a path/],
      [Deno.stdout, /\.readable|a path/, /pass "-".*Deno\.stdout\.writable/],
      [new Response("x"), /a Response.*its \.body/, /a Response.*a path/],
      [new WritableStream(), /is a WritableStream.*a destination, not a source/, /.^/],
      [new ReadableStream(), /.^/, /is a ReadableStream.*a source, not a destination/],
    ];
    for (const [value, asSource, asDestination] of cases) {
      if (!(value instanceof ReadableStream)) {
        await assert.rejects(fanout(value as string, [kept]), (e: Error) => {
          assert.ok(e instanceof TypeError, e.message);
          assert.match(e.message, /^fanout\(\): the source is /);
          assert.match(e.message, asSource);
          return true;
        });
      }
      if (!(value instanceof WritableStream)) {
        await assert.rejects(fanout("/etc/hostname", [kept, value as string]), (e: Error) => {
          assert.ok(e instanceof TypeError, e.message);
          assert.match(e.message, /^fanout\(\): destination 2 is /);
          assert.match(e.message, asDestination);
          return true;
        });
      }
      assert.equal(
        Deno.readTextFileSync(kept),
        "precious",
        "the good destination was not truncated",
      );
    }
    await assert.rejects(fanout("/etc/hostname", "x" as unknown as string[]), /must be an array/);
    const locked = new WritableStream();
    locked.getWriter();
    await assert.rejects(fanout("/etc/hostname", [kept, locked]), /locked WritableStream/);
    const twice = new WritableStream();
    await assert.rejects(fanout("/etc/hostname", [twice, twice]), /given twice/);
    const busy = ReadableStream.from([new Uint8Array(1)]);
    busy.getReader();
    await assert.rejects(fanout(busy, [kept]), /source ReadableStream is locked/);
    assert.equal(Deno.readTextFileSync(kept), "precious");
    assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), ["kept"]);
  } finally {
    file.close();
    conn.close();
    (await client).close();
    listener.close();
  }
});

Deno.test('a WritableStream failing with onDestinationError "stop" cuts the others short, saying so', async () => {
  using dir = tempDir();
  const data = patternBytes(8 * MiB, 15);
  const failing = new WritableStream<Uint8Array>({
    write() {
      throw new Error("quota");
    },
  });
  const err = await fanout(ReadableStream.from(chunksOf(data)), [`${dir.path}/a`, failing], {
    onDestinationError: () => "stop",
    pipeSize: 64 * KiB,
  }).catch((e) => e);
  assert.ok(err instanceof FanoutError, String(err));
  const [a, bad] = err.report.destinations;
  assert.match(String(bad.error?.message), /quota/);
  assert.equal(a.error?.message, "stopped");
  assert.ok(a.bytes < data.length, `cut short: ${a.bytes}`);
});

Deno.test('"stop" aborts a WritableStream cut short (with the error stopped), never closes it', async () => {
  using dir = tempDir();
  const data = patternBytes(16 * MiB, 16);
  Deno.writeFileSync(`${dir.path}/src`, data);
  for (const source of ["path", "stream"] as const) {
    const seen: string[] = [];
    let reason: unknown;
    let written = 0;
    const survivor = new WritableStream<Uint8Array>({
      async write(chunk) {
        written += chunk.length;
        await new Promise((r) => setTimeout(r, 2));
      },
      close: () => void seen.push("close"),
      abort: (why) => void (seen.push("abort"), reason = why),
    });
    let calls = 0;
    const breaking = new WritableStream<Uint8Array>({
      write() {
        if (++calls > 1) throw new Error("boom");
      },
    });
    const from = source === "path" ? `${dir.path}/src` : ReadableStream.from(chunksOf(data));
    const err = await fanout(from, [survivor, breaking], {
      onDestinationError: () => "stop",
      pipeSize: 64 * KiB,
    }).catch((e) => e);
    assert.ok(err instanceof FanoutError, String(err));
    const [cut] = err.report.destinations;
    assert.equal(cut.error?.message, "stopped");
    assert.ok(written < data.length, `${source}: cut short (${written})`);
    assert.deepEqual(seen, ["abort"], source);
    assert.equal((reason as Error).message, "stopped");
  }
});

Deno.test("type errors name any value: a Symbol, undefined, a boolean, a closed Fd, an empty path", async () => {
  using dir = tempDir();
  const kept = `${dir.path}/kept`;
  Deno.writeTextFileSync(kept, "precious");
  const closed = Fd.create(`${dir.path}/was-open`);
  closed.close();
  const [r, w] = Fd.pipe();
  r.close();
  w.close();
  const sources: [unknown, RegExp][] = [
    [Symbol("s"), /^fanout\(\): the source is a symbol \(Symbol\(s\)\), which/],
    [undefined, /^fanout\(\): the source is undefined, which/],
    [true, /^fanout\(\): the source is the boolean true, which/],
    [closed, /^fanout\(\): the source .*was-open is a closed Fd$/],
    [r, /^fanout\(\): the source pipe \(read end\) is a closed Fd$/],
    ["", /^fanout\(\): the source is an empty path$/],
    [(function* () {})(), /the source is a generator, .*ReadableStream\.from\(it\)/],
    [[new Uint8Array(1)], /the source is an array of 1, .*ReadableStream\.from\(it\)/],
    [new Blob(["x"]), /the source is a Blob, .*blob\.stream\(\)/],
  ];
  for (const [value, message] of sources) {
    await assert.rejects(fanout(value as string, [kept, `${dir.path}/new`]), (e: Error) => {
      assert.ok(e instanceof TypeError, String(e));
      assert.match(e.message, message);
      return true;
    });
  }
  const destinations: [unknown, RegExp][] = [
    [Symbol("d"), /^fanout\(\): destination 3 is a symbol \(Symbol\(d\)\), which/],
    [undefined, /^fanout\(\): destination 3 is undefined, which/],
    [closed, /^fanout\(\): destination 3 \(.*was-open\) is a closed Fd$/],
    [w, /^fanout\(\): destination 3 \(pipe \(write end\)\) is a closed Fd$/],
    ["", /^fanout\(\): destination 3 is an empty path$/],
  ];
  for (const [value, message] of destinations) {
    await assert.rejects(
      fanout("/etc/hostname", [kept, `${dir.path}/new`, value as string]),
      (e: Error) => {
        assert.ok(e instanceof TypeError, String(e));
        assert.match(e.message, message);
        return true;
      },
    );
  }
  assert.equal(Deno.readTextFileSync(kept), "precious");
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name).sort(), ["kept", "was-open"]);
});

/** This process's CPU time so far, in seconds (utime + stime of /proc/self/stat). */
function cpuSeconds(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

Deno.test("a failed WritableStream does not make the loop spin while a slow destination goes on", async () => {
  using dir = tempDir();
  const src = `${dir.path}/src`;
  Deno.writeFileSync(src, new Uint8Array(8 << 20));
  const fifo = `${dir.path}/fifo`;
  await new Deno.Command("mkfifo", { args: [fifo] }).output();
  // A reader at ~8 MiB/s: the fan-out waits on it for about a second.
  const reader = new Deno.Command("sh", {
    args: [
      "-c",
      `exec 0<'${fifo}'; while [ "$(dd bs=256k count=1 iflag=fullblock 2>/dev/null | wc -c)" -gt 0 ]; do sleep 0.03; done`,
    ],
  }).spawn();
  const broken = new WritableStream<Uint8Array>({
    write() {
      throw new Error("refused");
    },
  });
  const t0 = performance.now();
  const cpu0 = cpuSeconds();
  await assert.rejects(fanout(src, [fifo, broken]), FanoutError);
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - cpu0;
  await reader.status;
  // Spinning on the wake fd burnt ~0.9 s of CPU per second of waiting; waiting takes next to none.
  assert.ok(cpu < 0.4 * wall, `${cpu.toFixed(2)} s of CPU in ${wall.toFixed(2)} s`);
});

Deno.test("40 stream fan-outs stalled at once hold no worker thread: async I/O goes on, every abort lands", async () => {
  // A stalled stream source must not park one of Deno's (32) blocking threads:
  // with all of them taken, every async op of the process waits for ever.
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/probe`, "alive");
  const chunk = new Uint8Array(1 << 20);
  const runs = Array.from({ length: 40 }, () => {
    const [r, w] = Fd.pipe(); // nobody reads r
    const controller = new AbortController();
    const stream = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(chunk) });
    const done = fanout(stream, [w], { signal: controller.signal }).catch((e) => e);
    return { r, w, controller, done };
  });
  await new Promise((ok) => setTimeout(ok, 1500)); // every pipe is full, every pump waiting
  const t0 = performance.now();
  const probe = Deno.readTextFile(`${dir.path}/probe`);
  const late = new Promise((ok) => setTimeout(() => ok("still waiting after 3 s"), 3000));
  assert.equal(await Promise.race([probe, late]), "alive");
  for (const run of runs) run.controller.abort();
  const errors = await Promise.all(runs.map((run) => run.done));
  const ms = performance.now() - t0;
  for (const e of errors) assert.equal(e?.name, "AbortError", String(e));
  assert.ok(ms < 5000, `40 aborts took ${ms.toFixed(0)} ms`);
  for (const run of runs) run.r.close(), run.w.close();
});

Deno.test("a chunk in a resizable ArrayBuffer is written exactly", async () => {
  using dir = tempDir();
  const buffer = new ArrayBuffer(8, { maxByteLength: 1 << 16 });
  buffer.resize(4096);
  const bytes = new Uint8Array(buffer); // over the resizable buffer itself (map() would copy)
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 251;
  await fanout(ReadableStream.from([bytes, new Uint8Array([1, 2, 3])]), [`${dir.path}/out`]);
  const got = Deno.readFileSync(`${dir.path}/out`);
  assert.equal(got.length, 4099);
  assert.deepEqual(got.subarray(0, 4096), new Uint8Array(4096).map((_, i) => i % 251));
});
