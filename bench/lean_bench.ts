/**
 * `deno task bench:lean`: onecopy in a long-running Deno process, against what
 * a Deno user writes without it. Compare within a group: ratios, not times.
 * - small: 200 fan-outs of a 4 KiB file to 4 files vs Deno.readFile + 4 Deno.writeFile
 *   (target: onecopy ≤ 1.0×).
 * - stream: a ReadableStream of 1 MiB chunks to 4 pipe consumers vs
 *   `for await (c of stream) await Promise.all(writers.map((w) => w.write(c)))`
 *   (target: onecopy ≥ 2× as fast).
 * - memory: 300 fan-outs of a 4 MiB file in this process; the bench fails if
 *   RSS passes 96 MiB, and prints it.
 *
 * @module
 */

import { fanout } from "../mod.ts";

const MiB = 1 << 20;
const dir = Deno.makeTempDirSync({ prefix: "onecopy-bench-lean-" });
const small = `${dir}/small.bin`;
Deno.writeFileSync(small, crypto.getRandomValues(new Uint8Array(4096)));
const medium = `${dir}/medium.bin`;
Deno.writeFileSync(medium, new Uint8Array(4 * MiB).map((_, i) => (i * 2654435761) >>> 24));
const outs = [0, 1, 2, 3].map((i) => `${dir}/out${i}`);
const runs = { n: 10, warmup: 2 };

Deno.bench("Deno.readFile + 4 Deno.writeFile, x200", {
  group: "small: 4 KiB to 4 files, x200",
  baseline: true,
  ...runs,
}, async () => {
  for (let i = 0; i < 200; i++) {
    const bytes = await Deno.readFile(small);
    await Promise.all(outs.map((o) => Deno.writeFile(o, bytes)));
  }
});
Deno.bench("fanout, x200", { group: "small: 4 KiB to 4 files, x200", ...runs }, async () => {
  for (let i = 0; i < 200; i++) await fanout(small, outs);
});

const chunks = Array.from({ length: 64 }, (_, k) => new Uint8Array(MiB).fill(k));

/** N `cat` processes reading FIFOs into /dev/null, each blocked opening its FIFO already. */
async function pipeConsumers(n: number) {
  const paths = Array.from({ length: n }, (_, i) => `${dir}/fifo${i}`);
  const children = [];
  for (const p of paths) {
    try {
      Deno.removeSync(p);
    } catch { /* first use */ }
    await new Deno.Command("mkfifo", { args: [p] }).output();
    children.push(new Deno.Command("cat", { args: [p], stdout: "null" }).spawn());
  }
  for (const c of children) {
    while (Deno.readTextFileSync(`/proc/${c.pid}/wchan`) !== "wait_for_partner") {
      await new Promise((r) => setTimeout(r, 1));
    }
  }
  return { paths, done: Promise.all(children.map((c) => c.status)) };
}

const streamGroup = "stream: 64 x 1 MiB chunks to 4 pipes";
Deno.bench("deno native (for await + Promise.all(writer.write))", {
  group: streamGroup,
  baseline: true,
  ...runs,
}, async (b) => {
  const sinks = await pipeConsumers(4);
  b.start();
  const files = await Promise.all(sinks.paths.map((p) => Deno.open(p, { write: true })));
  const writers = files.map((f) => f.writable.getWriter());
  for await (const c of ReadableStream.from(chunks)) {
    await Promise.all(writers.map((w) => w.write(c)));
  }
  await Promise.all(writers.map((w) => w.close()));
  await sinks.done;
  b.end();
});
Deno.bench("fanout (stream source)", { group: streamGroup, ...runs }, async (b) => {
  const sinks = await pipeConsumers(4);
  b.start();
  await fanout(ReadableStream.from(chunks), sinks.paths);
  await sinks.done;
  b.end();
});

// In a fresh process: this one holds the stream group's 64 MiB of chunks.
Deno.bench("300 fanouts of a 4 MiB file, in a child (fails past 96 MiB RSS)", {
  group: "memory",
  n: 1,
  warmup: 0,
}, async () => {
  const probe = new URL("rss_probe.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", probe, "300"] })
    .output();
  const peak = Number(new TextDecoder().decode(out.stdout));
  console.log(`memory: peak RSS over 300 fanouts of 4 MiB: ${peak} MiB`);
  if (!out.success || !(peak <= 96)) throw new Error(`peak RSS ${peak} MiB (limit 96)`);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
