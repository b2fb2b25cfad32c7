/**
 * `deno task bench:summary`: runs the fanout bench suite (`deno bench --json`)
 * and writes bench/results/fanout.md, one row per group: the Deno-native
 * baseline's p75 time and each fanout method's speed-up over it (p75 / p75), all from
 * the same run. ONECOPY_BENCH_KINDS=pipe,tcp narrows it, as for `deno task bench`.
 *
 * @module
 */

import { inputBytes, runs } from "./fanout_params.ts";

const here = new URL(".", import.meta.url).pathname;

interface Bench {
  group?: string;
  name: string;
  baseline: boolean;
  results: { ok?: { p75: number; n: number } }[];
}

/** One Markdown table row per group: baseline ms, then baseline/method for each method. */
export function summarize(benches: Bench[]): string {
  const groups = new Map<string, Bench[]>();
  for (const b of benches) groups.set(b.group ?? "", [...(groups.get(b.group ?? "") ?? []), b]);
  // p75, not the mean: one stalled run on a noisy 2-core VM moves a mean of 8 by 10%+.
  const p75 = (b: Bench | undefined) => b?.results[0]?.ok?.p75;
  const methods = [...new Set(benches.filter((b) => !b.baseline).map((b) => b.name))]
    .filter((name) => name.startsWith("fanout "));
  const lines = [
    `| group | baseline p75 ms | ${methods.map((m) => `${m} ×`).join(" | ")} |`,
    `| --- | --- | ${methods.map(() => "---").join(" | ")} |`,
  ];
  for (const [group, list] of groups) {
    const base = p75(list.find((b) => b.baseline));
    if (!base) continue;
    const cells = methods.map((m) => {
      const t = p75(list.find((b) => b.name === m));
      return t ? (base / t).toFixed(2) : "";
    });
    lines.push(`| ${group} | ${(base / 1e6).toFixed(1)} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

async function main() {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "--allow-all", "--json", `${here}fanout_bench.ts`],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`deno bench failed (exit ${out.code})`);
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  const text = [
    `fanout() of a ${
      inputBytes >> 20
    } MiB page-cached file, ${runs.n} runs after ${runs.warmup} warm-ups; each cell is how many`,
    `times faster (75th-percentile times) than the group's baseline (what Deno code does without onecopy:`,
    `Deno.FsFile reads, one write per destination; for "streams", ReadableStream.tee()).`,
    `${report.runtime}, ${report.cpu}, ${navigator.hardwareConcurrency} cores, Linux ${Deno.osRelease()}.`,
    "",
    summarize(report.benches),
    "",
  ].join("\n");
  await Deno.mkdir(`${here}results`, { recursive: true });
  await Deno.writeTextFile(`${here}results/fanout.md`, text);
  console.log(text);
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench:summary: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
