/** A long-running process stays lean: buffers are reused across fan-outs (issue 11). */

import assert from "node:assert/strict";
import { fanout } from "../mod.ts";
import { decoder, patternBytes, runDeno, sha256, tempDir } from "./helpers.ts";

const probe = new URL("../bench/rss_probe.ts", import.meta.url).pathname;

Deno.test("300 fanouts of a 4 MiB file keep the process under 96 MiB RSS", async () => {
  const out = await runDeno(["run", "-A", probe, "300"]);
  assert.ok(out.success, decoder.decode(out.stderr));
  const peak = Number(decoder.decode(out.stdout));
  assert.ok(peak > 0 && peak < 96, `peak RSS ${peak} MiB`);
});

Deno.test("small files take the synchronous path with the same guarantees and report", async () => {
  using dir = tempDir();
  for (const size of [0, 1, 4096, 256 * 1024, 256 * 1024 + 1]) {
    const data = patternBytes(size, size + 3);
    Deno.writeFileSync(`${dir.path}/src`, data);
    const outs = [0, 1, 2, 3].map((i) => `${dir.path}/out${i}`);
    Deno.writeFileSync(outs[0], patternBytes(300_000, 9)); // longer: must be truncated
    let progress = -1;
    const report = await fanout(`${dir.path}/src`, outs, {
      checksum: "sha256",
      onProgress: (n) => (progress = n),
    });
    assert.equal(report.bytes, size);
    assert.equal(report.method, "copy");
    assert.ok(report.stable);
    assert.equal(report.checksum?.hex, sha256(data));
    assert.equal(progress, size);
    for (const [i, out] of outs.entries()) {
      assert.equal(sha256(Deno.readFileSync(out)), sha256(data), `${out}, ${size} bytes`);
      assert.deepEqual(report.destinations[i], { target: out, bytes: size, error: undefined });
    }
  }
});

Deno.test("the small path appends with append, and reports a failing destination", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/src`, "abc");
  Deno.writeTextFileSync(`${dir.path}/log`, "123");
  await fanout(`${dir.path}/src`, [`${dir.path}/log`], { append: true });
  assert.equal(Deno.readTextFileSync(`${dir.path}/log`), "123abc");
  const err = await fanout(`${dir.path}/src`, [`${dir.path}/x`, `${dir.path}/no/such/dir`])
    .catch((e) => e);
  assert.equal(err.report.destinations[0].bytes, 3);
  assert.match(err.report.destinations[1].error.message, /no such file/);
});

Deno.test("small path: files are cut to what they got; a 'stop' at an open failure writes nothing", async () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/src`, "new");
  const [a, b, c] = ["a", "b", "c"].map((n) => `${dir.path}/${n}`);
  for (const p of [a, c]) Deno.writeTextFileSync(p, "old and longer");
  Deno.mkdirSync(b); // a directory: fails to open, so it is reported, not written
  const stopped = await fanout(`${dir.path}/src`, [a, b, c], { onDestinationError: () => "stop" })
    .catch((e) => e);
  assert.ok(stopped.report.destinations[1].error);
  for (const [i, p] of [[0, a], [2, c]] as const) {
    assert.equal(stopped.report.destinations[i].error?.message, "stopped");
    assert.equal(Deno.readTextFileSync(p), "old and longer", "stopped before the start");
  }
  const err = await fanout(`${dir.path}/src`, [a, b, c]).catch((e) => e);
  assert.ok(err.report.destinations[1].error);
  assert.equal(Deno.readTextFileSync(a), "new");
  assert.equal(Deno.readTextFileSync(c), "new", "an open failure is not a write failure");
  const big = patternBytes(256 * 1024 + 1, 4); // too big for the small path: the engine's
  Deno.writeFileSync(`${dir.path}/src`, big);
  await fanout(`${dir.path}/src`, [a]);
  Deno.writeTextFileSync(`${dir.path}/src`, "x");
  await fanout(`${dir.path}/src`, [a]);
  assert.equal(Deno.readTextFileSync(a), "x");
});
