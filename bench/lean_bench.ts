/**
 * `deno task bench:lean`: onecopy in a long-running Deno process, against what
 * a Deno user writes without it (cases in bench/lean_cases.ts). Compare within
 * a group: ratios, not times. `deno task bench:lean:compare` gives medians of
 * interleaved rounds instead, better on a loaded machine.
 * - small: 200 fan-outs of a 4 KiB file to 4 files vs Deno.readFile + 4 Deno.writeFile
 *   (target: onecopy ≤ 1.0× the time).
 * - stream: a ReadableStream of 64 x 1 MiB chunks to 4 pipe consumers vs
 *   `for await (c of stream) await Promise.all(writers.map((w) => w.write(c)))`
 *   (target: onecopy ≥ 2× as fast).
 * - memory: 300 fan-outs of a 4 MiB file in a child process; fails past 96 MiB RSS.
 *
 * @module
 */

import { leanFixture, smallFanout, smallNative, streamFanout, streamNative } from "./lean_cases.ts";

const fixture = leanFixture();
const runs = { n: 10, warmup: 2 };
const small = "small: 4 KiB to 4 files, x200";
const stream = "stream: 64 x 1 MiB chunks to 4 pipes";

// async functions: deno bench awaits only those, not a plain function returning a promise.
Deno.bench(
  "Deno.readFile + 4 Deno.writeFile, x200",
  { group: small, baseline: true, ...runs },
  async () => await smallNative(fixture),
);
Deno.bench("fanout, x200", { group: small, ...runs }, async () => await smallFanout(fixture));
Deno.bench(
  "deno native (for await + Promise.all(writer.write))",
  { group: stream, baseline: true, ...runs },
  async (b) => {
    await streamNative(fixture, () => b.start());
    b.end();
  },
);
Deno.bench("fanout (stream source)", { group: stream, ...runs }, async (b) => {
  await streamFanout(fixture, () => b.start());
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

globalThis.addEventListener("unload", () => fixture[Symbol.dispose]());
