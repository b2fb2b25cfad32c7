/**
 * `deno task bench:compare [--size 1GiB] [--consumers 4] [--rounds 3]`
 *
 * One page-cached file on stdin to N consumer processes (`cat > /dev/null`)
 * through `onecopy tee`, coreutils `tee`, and where installed `pee`,
 * `mbuffer`, `dcfldd`, plus a C reference built here with `cc` that makes the
 * same syscalls as onecopy and nothing else. Rounds are interleaved; medians
 * are reported as ratios side by side: absolute numbers drift on a noisy VM.
 * Writes bench/results/compare.md and compare.svg.
 *
 * @module
 */

import { parseArgs } from "node:util";

const here = new URL(".", import.meta.url).pathname;
const cli = new URL("../cli/main.ts", import.meta.url).pathname;

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]i?B?)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size ${text} (e.g. 512MiB, 1GiB)`);
  const unit = (m[2] ?? "").toUpperCase()[0];
  return Math.round(Number(m[1]) * ({ K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[unit ?? ""] ?? 1));
}

async function has(cmd: string): Promise<boolean> {
  const out = await new Deno.Command("bash", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output();
  return out.success;
}

interface Sample {
  seconds: number;
  cpu: number;
  rssKiB: number;
}

/** Runs a bash line under /usr/bin/time; returns wall, CPU (user+sys, children included) and peak RSS. */
async function measure(line: string): Promise<Sample> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%e %U %S %M", "bash", "-c", line],
    stdout: "null",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim().split("\n");
  const [e, u, s, m] = err[err.length - 1].split(" ").map(Number);
  if (!out.success || [e, u, s, m].some(Number.isNaN)) {
    throw new Error(`failed: ${line}\n${err.join("\n")}`);
  }
  return { seconds: e, cpu: u + s, rssKiB: m };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function svgChart(rows: { name: string; gbps: number }[]): string {
  const max = Math.max(...rows.map((r) => r.gbps));
  const bar = (r: { name: string; gbps: number }, i: number) => {
    const w = Math.max(1, (r.gbps / max) * 420);
    const y = 30 + i * 28;
    return `<text x="150" y="${y + 14}" text-anchor="end">${r.name}</text>` +
      `<rect x="160" y="${y}" width="${w.toFixed(1)}" height="20" fill="#3b7dd8"/>` +
      `<text x="${(165 + w).toFixed(1)}" y="${y + 14}">${r.gbps.toFixed(2)} GB/s</text>`;
  };
  const h = 40 + rows.length * 28;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="680" height="${h}" font-family="sans-serif" font-size="13">` +
    `<text x="10" y="18" font-weight="bold">One stream to consumer processes (median GB/s)</text>` +
    rows.map(bar).join("") + `</svg>\n`;
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      size: { type: "string", default: "1GiB" },
      consumers: { type: "string", default: "4" },
      rounds: { type: "string", default: "3" },
    },
  });
  const size = parseSize(values.size);
  const n = Number(values.consumers);
  const rounds = Number(values.rounds);
  const dir = await Deno.makeTempDir({ prefix: "onecopy-bench-" });
  try {
    const input = `${dir}/input.bin`;
    await new Deno.Command("bash", {
      args: ["-c", `head -c ${size} /dev/urandom > '${input}' && cat '${input}' > /dev/null`],
    }).output();
    const sink = "cat > /dev/null";
    const subs = Array.from({ length: n - 1 }, () => `>(${sink})`).join(" ");
    const tools: { name: string; line: string }[] = [
      {
        name: "onecopy tee",
        line: `'${Deno.execPath()}' run -A '${cli}' tee ${subs} < '${input}' | ${sink}`,
      },
      { name: "coreutils tee", line: `tee ${subs} < '${input}' | ${sink}` },
    ];
    const notes: string[] = [];
    if (await has("cc")) {
      const bin = `${dir}/reference`;
      const cc = await new Deno.Command("cc", { args: ["-O2", "-o", bin, `${here}reference.c`] })
        .output();
      if (cc.success) {
        tools.push({ name: "C reference", line: `'${bin}' ${subs} < '${input}' | ${sink}` });
      }
    } else notes.push("C reference skipped: no cc");
    const optional = [
      {
        cmd: "pee",
        name: "pee (moreutils)",
        line: `pee ${Array(n).fill(`'${sink}'`).join(" ")} < '${input}'`,
      },
      {
        cmd: "mbuffer",
        name: "mbuffer",
        line: `mbuffer -q -m 64M -i '${input}' ${
          Array(n).fill(0).map(() => `-o >(${sink})`).join(" ")
        }`,
      },
      {
        cmd: "dcfldd",
        name: "dcfldd",
        line: `dcfldd status=off if='${input}' ${
          Array(n).fill(0).map(() => `of=>(${sink})`).join(" ")
        }`,
      },
    ];
    for (const t of optional) {
      if (await has(t.cmd)) tools.push(t);
      else {notes.push(
          `${t.name} skipped: not installed (Debian package ${
            t.cmd === "pee" ? "moreutils" : t.cmd
          })`,
        );}
    }
    const samples = new Map<string, Sample[]>(tools.map((t) => [t.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const t of tools) samples.get(t.name)!.push(await measure(t.line)); // interleaved
    }
    const gb = size / 1e9;
    const rows = tools.map((t) => {
      const s = samples.get(t.name)!;
      return {
        name: t.name,
        gbps: gb / median(s.map((x) => x.seconds)),
        cpuPerGB: median(s.map((x) => x.cpu)) / gb,
        rssMiB: median(s.map((x) => x.rssKiB)) / 1024,
      };
    });
    const base = (name: string) => rows.find((r) => r.name === name)?.gbps;
    const kernel = Deno.osRelease();
    const table = [
      `One ${values.size} page-cached file on stdin to ${n} consumer processes (\`${sink}\`),` +
      ` median of ${rounds} interleaved rounds. Linux ${kernel}, ${navigator.hardwareConcurrency} cores.`,
      "",
      "| tool | GB/s | × coreutils tee | × C reference | CPU s/GB | peak RSS MiB |",
      "| --- | --- | --- | --- | --- | --- |",
      ...rows.map((r) =>
        `| ${r.name} | ${r.gbps.toFixed(2)} | ${(r.gbps / base("coreutils tee")!).toFixed(2)} | ${
          base("C reference") ? (r.gbps / base("C reference")!).toFixed(2) : "n/a"
        } | ${r.cpuPerGB.toFixed(2)} | ${r.rssMiB.toFixed(0)} |`
      ),
      "",
      "Peak RSS is the largest process of the pipeline (for onecopy, the Deno runtime itself).",
      ...notes.map((x) => `- ${x}`),
      "",
    ].join("\n");
    await Deno.mkdir(`${here}results`, { recursive: true });
    await Deno.writeTextFile(`${here}results/compare.md`, table);
    await Deno.writeTextFile(`${here}results/compare.svg`, svgChart(rows));
    console.log(table);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench:compare: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
