/**
 * `deno task demo`: onecopy's main job on generated data. One generated file
 * is fanned out to files, a TCP receiver and consumer processes (cat reading
 * FIFOs), once per method; every copy is verified afterwards, off the clock.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Checksum, fanout, Fd, type Method } from "../mod.ts";

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
    for (const method of ["auto", "pipe-tee", "vmsplice", "mmap-write", "copy"] as Method[]) {
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
        "\nreceiver's own xxh64 against the checksum onecopy computed on its tap.",
    );
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
