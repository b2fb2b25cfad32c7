/**
 * Runs `calls` fan-outs of a 4 MiB file to 2 files in a fresh process and
 * prints the peak RSS in MiB: a long-running process must stay lean. Used by
 * bench/lean_bench.ts and tests/lean_test.ts.
 *
 *   deno run -A bench/rss_probe.ts [calls=300]
 *
 * @module
 */

import { fanout } from "../mod.ts";

const MiB = 1 << 20;
const calls = Number(Deno.args[0] ?? 300);
const dir = Deno.makeTempDirSync({ prefix: "onecopy-rss-" });
try {
  const src = `${dir}/src`;
  Deno.writeFileSync(src, new Uint8Array(4 * MiB).map((_, i) => (i * 2654435761) >>> 24));
  let peak = 0;
  for (let i = 0; i < calls; i++) {
    await fanout(src, [`${dir}/a`, `${dir}/b`]);
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  console.log((peak / MiB).toFixed(1));
} finally {
  Deno.removeSync(dir, { recursive: true });
}
