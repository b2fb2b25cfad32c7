/**
 * `deno task bench:compare [--size 1GiB] [--consumers 4] [--wide 16] [--rounds 3] [--rss-size 8GiB]`
 *
 * Whole processes, side by side, rounds interleaved, medians reported as
 * ratios (absolute numbers drift on a noisy VM):
 * - tee: one page-cached file on stdin to N consumer processes
 *   (`cat > /dev/null`) through `onecopy tee`, coreutils `tee`, and where
 *   installed `pee`, `mbuffer`, `dcfldd`, plus a C reference built here with
 *   `cc` that makes the same syscalls as onecopy and nothing else; then the
 *   same file through `cat |` (a pipe on stdin, tee's usual case), and both
 *   again with `--wide` consumers (onecopy, coreutils tee, the C reference);
 * - send: the file to N loopback TCP receivers (forked C readers, the same
 *   for every sender) through `onecopy send`, a Deno-native sender, and C
 *   senders doing plain write() and pipe-tee + splice();
 * - memory: peak RSS of `onecopy tee` and `onecopy send` for a sparse
 *   `--rss-size` input, against the 1 GiB runs.
 * `ONECOPY_BENCH_BASELINE=/other/checkout/cli/main.ts` adds rows for another
 * onecopy (an older commit, say), interleaved with this one's: a before/after
 * measured side by side.
 * Writes bench/results/compare.md and compare.svg. Then the mirror scenario
 * (bench/mirror_compare.ts, bench/results/mirror.md); ONECOPY_BENCH_MIRROR=skip
 * leaves it out, ONECOPY_BENCH_MIRROR=only runs nothing else.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { mirrorCompare } from "./mirror_compare.ts";

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

interface Tool {
  name: string;
  line: string;
}

interface Row {
  name: string;
  gbps: number;
  cpuPerGB: number;
  rssMiB: number;
}

/** One comparison: its tools, the row the ratios are against, and which rows are C. */
interface Scenario {
  title: string;
  baseline: string;
  tools: Tool[];
  notes: string[];
}

/** Runs every tool of every scenario `rounds` times, interleaved; returns median rows. */
async function run(scenarios: Scenario[], rounds: number, size: number): Promise<Row[][]> {
  const samples = new Map<Tool, Sample[]>();
  for (let r = 0; r < rounds; r++) {
    for (const t of scenarios.flatMap((s) => s.tools)) {
      samples.set(t, [...(samples.get(t) ?? []), await measure(t.line)]);
    }
  }
  const gb = size / 1e9;
  return scenarios.map((s) =>
    s.tools.map((t) => {
      const xs = samples.get(t)!;
      return {
        name: t.name,
        gbps: gb / median(xs.map((x) => x.seconds)),
        cpuPerGB: median(xs.map((x) => x.cpu)) / gb,
        rssMiB: median(xs.map((x) => x.rssKiB)) / 1024,
      };
    })
  );
}

function table(s: Scenario, rows: Row[]): string {
  const base = rows.find((r) => r.name === s.baseline)!.gbps;
  const c = rows.filter((r) => r.name.startsWith("C "));
  const best = c.length ? Math.max(...c.map((r) => r.gbps)) : undefined;
  return [
    s.title,
    "",
    `| tool | GB/s | × ${s.baseline} | × best C | CPU s/GB | peak RSS MiB |`,
    "| --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) =>
      `| ${r.name} | ${r.gbps.toFixed(2)} | ${(r.gbps / base).toFixed(2)} | ${
        best ? (r.gbps / best).toFixed(2) : "n/a"
      } | ${r.cpuPerGB.toFixed(2)} | ${r.rssMiB.toFixed(0)} |`
    ),
    ...s.notes.map((x) => `- ${x}`),
    "",
  ].join("\n");
}

function svgChart(sections: { title: string; rows: Row[] }[]): string {
  const max = Math.max(...sections.flatMap((s) => s.rows.map((r) => r.gbps)));
  let y = 10;
  const parts: string[] = [];
  for (const s of sections) {
    parts.push(`<text x="10" y="${y + 14}" font-weight="bold">${s.title} (median GB/s)</text>`);
    y += 26;
    for (const r of s.rows) {
      const w = Math.max(1, (r.gbps / max) * 420);
      parts.push(
        `<text x="170" y="${y + 14}" text-anchor="end">${r.name}</text>` +
          `<rect x="180" y="${y}" width="${w.toFixed(1)}" height="20" fill="#3b7dd8"/>` +
          `<text x="${(185 + w).toFixed(1)}" y="${y + 14}">${r.gbps.toFixed(2)} GB/s</text>`,
      );
      y += 28;
    }
    y += 10;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="700" height="${y}" font-family="sans-serif" font-size="13">` +
    parts.join("") + `</svg>\n`;
}

/** Builds a C program from bench/ with the system cc; undefined (and a note) without one. */
async function buildC(dir: string, source: string, notes: string[]): Promise<string | undefined> {
  if (!(await has("cc"))) {
    notes.push(`${source} skipped: no cc`);
    return undefined;
  }
  const bin = `${dir}/${source.replace(/\.c$/, "")}`;
  const cc = await new Deno.Command("cc", { args: ["-O2", "-o", bin, `${here}${source}`] })
    .output();
  if (!cc.success) throw new Error(`cc ${source}: ${new TextDecoder().decode(cc.stderr)}`);
  return bin;
}

const sink = "cat > /dev/null";
/** `>(cat > /dev/null)` for every consumer but the one on stdout. */
const consumers = (n: number) => Array.from({ length: n - 1 }, () => `>(${sink})`).join(" ");
/** How the input reaches tee's stdin: the file itself, or a pipe from `cat`. */
type Stdin = "file" | "pipe";
/** `TOOL ARGS` with the input on stdin, the way `stdin` says, and stdout into a consumer. */
const withInput = (input: string, stdin: Stdin, command: string) =>
  stdin === "file" ? `${command} < '${input}' | ${sink}` : `cat '${input}' | ${command} | ${sink}`;
const onecopyTee = (input: string, n: number, stdin: Stdin = "file", command = onecopy) =>
  withInput(input, stdin, `${command} tee ${consumers(n)}`);
const onecopySend = (input: string, n: number, tcp: string, command = onecopy) =>
  withReceivers(
    tcp,
    n,
    `${command} send '${input}' ${Array(n).fill("--to tcp://127.0.0.1:$PORT").join(" ")}`,
  );
/** The same rows for the baseline checkout, when ONECOPY_BENCH_BASELINE names one. */
const baseline = (make: (command: string) => Tool): Tool[] =>
  baselineCli ? [make(`${deno} run -A '${baselineCli}'`)] : [];

async function teeScenario(
  input: string,
  n: number,
  reference?: string,
  stdin: Stdin = "file",
  optionalTools = true,
): Promise<Scenario> {
  const subs = consumers(n);
  const tools: Tool[] = [
    { name: "onecopy tee", line: onecopyTee(input, n, stdin) },
    ...baseline((cmd) => ({
      name: "onecopy tee (baseline)",
      line: onecopyTee(input, n, stdin, cmd),
    })),
    { name: "coreutils tee", line: withInput(input, stdin, `tee ${subs}`) },
  ];
  if (reference) {
    tools.push({ name: "C reference", line: withInput(input, stdin, `'${reference}' ${subs}`) });
  }
  const optional = optionalTools
    ? await withOptionalTools(tools, [
      {
        cmd: "pee",
        pkg: "moreutils",
        name: "pee (moreutils)",
        line: `pee ${Array(n).fill(`'${sink}'`).join(" ")} < '${input}'`,
      },
      {
        cmd: "mbuffer",
        name: "mbuffer",
        line: `mbuffer -q -m 64M -i '${input}' ${Array(n).fill(`-o >(${sink})`).join(" ")}`,
      },
      {
        cmd: "dcfldd",
        name: "dcfldd",
        line: `dcfldd status=off if='${input}' ${Array(n).fill(`of=>(${sink})`).join(" ")}`,
      },
    ])
    : { tools, notes: [] };
  const how = stdin === "file"
    ? "one page-cached file on stdin"
    : "the same file through `cat |` (a pipe on stdin)";
  return {
    title: `tee: ${how} to ${n} consumer processes (\`${sink}\`)`,
    baseline: "coreutils tee",
    tools: optional.tools,
    notes: [
      ...optional.notes,
      stdin === "file"
        ? "C reference: read(), write() into a stage pipe, tee() to every consumer (bench/reference.c)."
        : "C reference: stdin grown to 1 MiB, tee() of what it holds to every consumer, splice() into the last (bench/reference.c).",
    ],
  };
}

async function withOptionalTools(
  tools: Tool[],
  optional: (Tool & { cmd: string; pkg?: string })[],
): Promise<{ tools: Tool[]; notes: string[] }> {
  const notes: string[] = [];
  for (const t of optional) {
    if (await has(t.cmd)) tools.push(t);
    else notes.push(`${t.name} skipped: not installed (Debian package ${t.pkg ?? t.cmd})`);
  }
  return { tools, notes };
}

/** A bash line: start the C receivers, run `sender` with $PORT set, wait for the receivers. */
function withReceivers(tcp: string, n: number, sender: string): string {
  return `coproc SINK { '${tcp}' sink ${n}; }; read -r PORT <&"\${SINK[0]}"; ` +
    `if ${sender}; then wait $SINK_PID; else kill $SINK_PID; exit 1; fi`;
}

function sendScenario(input: string, n: number, tcp: string): Scenario {
  const native = `${deno} run -A '${here}native_send.ts'`;
  return {
    title: `send: the same file to ${n} loopback TCP receivers (forked C readers)`,
    baseline: "Deno native sender",
    tools: [
      { name: "onecopy send", line: onecopySend(input, n, tcp) },
      ...baseline((cmd) => ({
        name: "onecopy send (baseline)",
        line: onecopySend(input, n, tcp, cmd),
      })),
      {
        name: "Deno native sender",
        line: withReceivers(tcp, n, `${native} '${input}' $PORT ${n}`),
      },
      { name: "C write", line: withReceivers(tcp, n, `'${tcp}' write $PORT ${n} < '${input}'`) },
      {
        name: "C pipe-tee",
        line: withReceivers(tcp, n, `'${tcp}' splice $PORT ${n} < '${input}'`),
      },
    ],
    notes: [
      "Deno native sender: Deno.FsFile reads, 1 MiB chunks written to every Deno.Conn (bench/native_send.ts).",
      "C write: read() then write() per socket; C pipe-tee: write() into a stage pipe, tee(), splice() to each socket (bench/tcp_reference.c).",
    ],
  };
}

const deno = `'${Deno.execPath()}'`;
const onecopy = `${deno} run -A '${cli}'`;
const baselineCli = Deno.env.get("ONECOPY_BENCH_BASELINE");

async function main() {
  const mirror = Deno.env.get("ONECOPY_BENCH_MIRROR") ?? "";
  if (mirror !== "only") await fileScenarios();
  if (mirror !== "skip") console.log(await mirrorCompare());
}

async function fileScenarios() {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    options: {
      size: { type: "string", default: "1GiB" },
      consumers: { type: "string", default: "4" },
      wide: { type: "string", default: "16" },
      rounds: { type: "string", default: "3" },
      "rss-size": { type: "string", default: "8GiB" },
    },
  });
  const size = parseSize(values.size);
  const rssSize = parseSize(values["rss-size"]);
  const n = Number(values.consumers);
  const wide = Number(values.wide);
  if (!Number.isInteger(wide) || wide < 0) throw new Error(`--wide wants a whole number (0: none)`);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--consumers wants a whole number from 1 up`);
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error(`--rounds wants a whole number from 1 up`);
  }
  const dir = await Deno.makeTempDir({ prefix: "onecopy-bench-" });
  try {
    const input = `${dir}/input.bin`;
    await new Deno.Command("bash", {
      args: ["-c", `head -c ${size} /dev/urandom > '${input}' && cat '${input}' > /dev/null`],
    }).output();
    const cNotes: string[] = [];
    const reference = await buildC(dir, "reference.c", cNotes);
    const tcp = await buildC(dir, "tcp_reference.c", cNotes);
    const scenarios = [await teeScenario(input, n, reference)];
    if (tcp) scenarios.push(sendScenario(input, n, tcp));
    scenarios.push(await teeScenario(input, n, reference, "pipe", false));
    if (wide > 0 && wide !== n) {
      scenarios.push(await teeScenario(input, wide, reference, "file", false));
      scenarios.push(await teeScenario(input, wide, reference, "pipe", false));
    }
    const results = await run(scenarios, rounds, size);

    const lines = [
      `One ${values.size} file, median of ${rounds} interleaved rounds, Linux ${Deno.osRelease()}, ` +
      `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}. CPU s/GB counts every ` +
      "process of the pipeline (consumers and receivers included); peak RSS is the largest one " +
      "(for onecopy, the Deno runtime itself).",
      ...cNotes.map((x) => `- ${x}`),
      ...(baselineCli
        ? [`- onecopy (baseline): ${baselineCli} (${await commitOf(baselineCli)})`]
        : []),
      "",
      ...scenarios.map((s, i) => table(s, results[i])),
    ];
    if (rssSize > 0) lines.push(await memory(dir, values, rssSize, n, tcp, results));
    const text = lines.join("\n");
    await Deno.mkdir(`${here}results`, { recursive: true });
    await Deno.writeTextFile(`${here}results/compare.md`, text);
    await Deno.writeTextFile(
      `${here}results/compare.svg`,
      svgChart(
        scenarios.map((s, i) => ({ title: s.title.replace(/ \(`.*$/, ""), rows: results[i] })),
      ),
    );
    console.log(text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The commit a checkout's file belongs to, for naming a baseline. */
async function commitOf(path: string): Promise<string> {
  const dir = path.replace(/\/[^/]*$/, "");
  const out = await new Deno.Command("git", {
    args: ["-C", dir, "log", "-1", "--format=commit %h %cs"],
    stderr: "null",
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout).trim() : "not a git checkout";
}

/** Peak RSS of onecopy tee/send on a sparse input of `rssSize`, next to the 1 GiB runs. */
async function memory(
  dir: string,
  values: { size: string; "rss-size": string },
  rssSize: number,
  n: number,
  tcp: string | undefined,
  results: Row[][],
): Promise<string> {
  const sparse = `${dir}/sparse.bin`;
  // Sparse, then read once so that it is page-cached like the main input.
  await new Deno.Command("bash", {
    args: ["-c", `truncate -s ${rssSize} '${sparse}' && cat '${sparse}' > /dev/null`],
  }).output();
  const rows = [
    { name: "onecopy tee", small: results[0], line: onecopyTee(sparse, n) },
    ...(tcp
      ? [{ name: "onecopy send", small: results[1], line: onecopySend(sparse, n, tcp) }]
      : []),
  ];
  const out = [
    `Memory: peak RSS of the onecopy process for the ${values.size} runs above (median) and one run ` +
    `on a sparse, page-cached ${values["rss-size"]} file.`,
    "",
    `| command | ${values.size} MiB | ${values["rss-size"]} MiB | ${values["rss-size"]} GB/s |`,
    "| --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const big = await measure(r.line);
    const small = r.small.find((x) => x.name === r.name)!;
    out.push(
      `| ${r.name} | ${small.rssMiB.toFixed(0)} | ${(big.rssKiB / 1024).toFixed(0)} | ${
        (rssSize / 1e9 / big.seconds).toFixed(2)
      } |`,
    );
  }
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`bench:compare: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
