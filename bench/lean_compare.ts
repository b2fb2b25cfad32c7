/**
 * `deno task bench:lean:compare [rounds=9]`: the lean cases (bench/lean_cases.ts)
 * run in interleaved rounds, so machine load hits both sides alike; prints the
 * median of each, the ratios against their targets, the load average and the
 * peak RSS of 300 fan-outs of a 4 MiB file.
 *
 * @module
 */

import { leanFixture, smallFanout, smallNative, streamFanout, streamNative } from "./lean_cases.ts";

type Case = (f: ReturnType<typeof leanFixture>, start?: () => void) => Promise<void>;

/** Times one run of a case, from its `start` (after set-up) if it has one. */
async function time(run: Case, f: ReturnType<typeof leanFixture>): Promise<number> {
  let t0 = performance.now();
  await run(f, () => (t0 = performance.now()));
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const load = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");

if (import.meta.main) {
  const rounds = Number(Deno.args[0] ?? 9);
  using fixture = leanFixture();
  const cases: Record<string, Case> = { smallNative, smallFanout, streamNative, streamFanout };
  const times: Record<string, number[]> = {};
  const loadBefore = load();
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(cases)) {
      (times[name] ??= []).push(await time(run, fixture));
    }
  }
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  for (const [k, v] of Object.entries(m)) {
    console.log(`${k}: ${v.toFixed(1)} ms (median of ${rounds})`);
  }
  console.log(
    `small: fanout takes ${(m.smallFanout / m.smallNative).toFixed(2)}x the time of ` +
      `Deno.readFile + 4 Deno.writeFile (target <= 1.0x)`,
  );
  console.log(
    `stream: fanout is ${(m.streamNative / m.streamFanout).toFixed(2)}x as fast as the ` +
      `Deno-native loop (target >= 2x)`,
  );
  const probe = new URL("rss_probe.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", probe, "300"] })
    .output();
  console.log(
    `memory: peak RSS over 300 fanouts of 4 MiB: ${
      new TextDecoder().decode(out.stdout).trim()
    } MiB (target < 96)`,
  );
  console.log(`load average: ${loadBefore} before, ${load()} after`);
}
