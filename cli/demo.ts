/**
 * `deno task demo`: onecopy's main job on generated data. One generated file
 * is fanned out with the library to files, a TCP receiver and consumer
 * processes (cat reading FIFOs), once per method; then with the CLI,
 * `onecopy send` to two `onecopy recv` processes and two files; and
 * `onecopy mirror` between `onecopy send` and a primary and a shadow (two
 * `onecopy recv`). Every copy is verified afterwards, off the clock.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Checksum, fanout, Fd, methods } from "../mod.ts";

const MiB = 1 << 20;
const size = 128 * MiB;

function generate(path: string): string {
  const bytes = new Uint8Array(size);
  const words = new Uint32Array(bytes.buffer);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  Deno.writeFileSync(path, bytes);
  return createHash("sha256").update(bytes).digest("hex");
}

function sha256File(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

/** A `cat` process reading a FIFO into a file: a real consumer process on a real pipe. */
async function consumerProcess(fifo: string, out: string) {
  await new Deno.Command("mkfifo", { args: [fifo] }).output();
  const child = new Deno.Command("sh", { args: ["-c", `cat < '${fifo}' > '${out}'`] }).spawn();
  return async () => (await child.status, sha256File(out));
}

/** A TCP receiver in this process that checksums what it gets (natively, xxh64). */
async function tcpReceiver() {
  const listener = await Fd.listen("tcp://127.0.0.1:0");
  const result = (async () => {
    const sum = new Checksum("xxh64");
    for await (const chunk of (await listener.accept()).readable(MiB)) sum.update(chunk);
    listener.close();
    return sum.digest();
  })();
  return { url: listener.url, result };
}

const cli = new URL("main.ts", import.meta.url).pathname;

/** Starts `onecopy recv` and returns the address it listens on and its result lines. */
async function recvProcess(out: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli,
      "recv",
      "--listen",
      "tcp://127.0.0.1:0",
      "--out",
      out,
      "--checksum",
      "xxh64",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await err.read()).value ?? "";
  const url = /listening on (\S+)/.exec(first)?.[1];
  if (!url) throw new Error(`recv did not start: ${first}`);
  const done = Promise.all([child.status, new Response(child.stdout).text()]).finally(() =>
    err.cancel()
  );
  return { url, done };
}

/** The CLI part: `onecopy send` to two `onecopy recv` processes and two files. */
async function cliDemo(dir: string, want: string) {
  const receivers = [await recvProcess(`${dir}/recv1.bin`), await recvProcess(`${dir}/recv2.bin`)];
  const args = ["run", "-A", cli, "send", `${dir}/input.bin`, "--checksum", "xxh64", "--json"];
  for (const to of [...receivers.map((r) => r.url), `${dir}/send1.bin`, `${dir}/send2.bin`]) {
    args.push("--to", to);
  }
  console.log(`$ onecopy send input.bin --to ${receivers[0].url} --to ${receivers[1].url} \\
    --to send1.bin --to send2.bin --checksum xxh64 --json`);
  const sent = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
  const report = JSON.parse(new TextDecoder().decode(sent.stdout));
  const lines = await Promise.all(receivers.map(async (r) => (await r.done)[1].trim()));
  console.log(
    `  sent ${report.bytes} bytes by ${report.method} in ${report.seconds.toFixed(3)} s` +
      ` (${(report.bytes / report.seconds / 1e9).toFixed(2)} GB/s), xxh64 ${report.checksum.hex}`,
  );
  for (const line of lines) console.log(`  onecopy recv: ${line.replace(dir + "/", "")}`);
  const recvSums = lines.map((l) => l.split(" ")[3]);
  const fileSums = ["recv1.bin", "recv2.bin", "send1.bin", "send2.bin"].map((f) =>
    sha256File(`${dir}/${f}`)
  );
  const ok = sent.code === 0 && recvSums.every((s) => s === report.checksum.hex) &&
    fileSums.every((s) => s === want);
  console.log(
    ok ? "  checksums match: both receivers' xxh64, and sha256 of all 4 files" : "  MISMATCH",
  );
  if (!ok) throw new Error("the CLI fan-out delivered different bytes");
}

/**
 * The mirror: `onecopy send` (the client) -> `onecopy mirror` -> two `onecopy recv`
 * processes, one the primary and one the shadow. Both must hold the input, byte for byte.
 */
async function mirrorDemo(dir: string, want: string) {
  const primary = await recvProcess(`${dir}/primary.bin`);
  const shadow = await recvProcess(`${dir}/shadow.bin`);
  const proxy = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli,
      "mirror",
      "--listen",
      "tcp://127.0.0.1:0",
      "--to",
      primary.url,
      "--shadow",
      shadow.url,
      // At loopback speed 1 MiB (the default) is ~1 ms of lag: room for a busy box.
      "--max-lag",
      "64M",
      "--json",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = proxy.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await err.read()).value ?? "";
  const url = /listening on (\S+)/.exec(first)?.[1];
  if (!url) throw new Error(`mirror did not start: ${first}`);
  console.log(
    `\n$ onecopy mirror --listen tcp://127.0.0.1:0 --to ${primary.url} --shadow ${shadow.url} --max-lag 64M --json`,
  );
  console.log(`$ onecopy send input.bin --to ${url} --checksum xxh64 --json`);
  const sent = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli,
      "send",
      `${dir}/input.bin`,
      "--to",
      url,
      "--checksum",
      "xxh64",
      "--json",
    ],
    stderr: "inherit",
  }).output();
  const sum = JSON.parse(new TextDecoder().decode(sent.stdout)).checksum.hex;
  const lines = await Promise.all([primary, shadow].map(async (r) => (await r.done)[1].trim()));
  proxy.kill("SIGTERM");
  const [status, out] = await Promise.all([proxy.status, new Response(proxy.stdout).text()]);
  await err.cancel();
  const [connection, summary] = out.trim().split("\n").map((l) => JSON.parse(l));
  console.log(
    `  connection ${connection.id} from ${connection.client}: ${connection.bytes_in} bytes in, ` +
      `primary ${connection.primary}, shadow ${connection.shadows[0].outcome} ` +
      `(${connection.shadows[0].bytes} bytes)`,
  );
  console.log(
    `  on SIGTERM: exit ${status.code}, ${summary.closed} connection(s), ${summary.shadowsDropped} shadows dropped`,
  );
  for (const [who, line] of [["primary", lines[0]], ["shadow", lines[1]]]) {
    console.log(`  ${who} (onecopy recv): ${line.replace(dir + "/", "")}`);
  }
  const files = ["primary.bin", "shadow.bin"].map((f) => sha256File(`${dir}/${f}`));
  const ok = sent.code === 0 && status.code === 0 && lines.every((l) => l.split(" ")[3] === sum) &&
    files.every((s) => s === want) && connection.shadows[0].outcome === "complete";
  console.log(
    ok
      ? "  the primary and the shadow both got the client's bytes: xxh64 and sha256 match"
      : "  MISMATCH",
  );
  if (!ok) throw new Error("the mirror delivered different bytes");
}

async function main() {
  // tmpfs when there is one, so that the disk's write speed is not what gets measured.
  const shm = (() => {
    try {
      return Deno.statSync("/dev/shm").isDirectory ? "/dev/shm" : undefined;
    } catch {
      return undefined;
    }
  })();
  const dir = Deno.makeTempDirSync({ prefix: "onecopy-demo-", dir: shm });
  try {
    console.log(`onecopy demo: one ${size / MiB} MiB generated file to 5 destinations\n`);
    const want = generate(`${dir}/input.bin`);
    console.log(`input sha256 ${want}\n`);
    const rows: string[][] = [];
    for (const method of methods) {
      const procs = [
        await consumerProcess(`${dir}/fifo1`, `${dir}/cat1.bin`),
        await consumerProcess(`${dir}/fifo2`, `${dir}/cat2.bin`),
      ];
      const tcp = await tcpReceiver();
      const files = [`${dir}/out1.bin`, `${dir}/out2.bin`];
      const report = await fanout(
        `${dir}/input.bin`,
        [`${dir}/fifo1`, `${dir}/fifo2`, tcp.url, ...files],
        { method, checksum: "xxh64" },
      );
      const sums = [...await Promise.all(procs.map((p) => p())), ...files.map(sha256File)];
      const tcpSum = await tcp.result;
      const ok = sums.every((s) => s === want) && tcpSum === report.checksum?.hex;
      await Deno.remove(`${dir}/fifo1`);
      await Deno.remove(`${dir}/fifo2`);
      rows.push([
        method,
        report.method,
        `${(report.bytes / report.seconds / 1e9).toFixed(2)} GB/s`,
        `xxh64 ${report.checksum?.hex}`,
        ok ? "all 5 copies match" : "MISMATCH",
      ]);
      if (!ok) {
        throw new Error(`${method}: a destination got different bytes: ${[...sums, tcpSum]}`);
      }
    }
    const width = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    console.log(
      ["asked", "ran", "throughput", "checksum of what was sent", "verified"]
        .map((h, c) => h.padEnd(width[c])).join("  "),
    );
    for (const r of rows) console.log(r.map((v, c) => v.padEnd(width[c])).join("  "));
    console.log(
      "\nthroughput: input bytes per second, each delivered to 2 cat processes (FIFOs), a TCP" +
        "\nreceiver and 2 files. Verified: the 4 files by sha256 against the input, the TCP" +
        "\nreceiver's own xxh64 against the checksum onecopy computed on its tap.\n",
    );
    await cliDemo(dir, want);
    await mirrorDemo(dir, want);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`demo: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
