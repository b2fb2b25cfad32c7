/**
 * `deno task bench`: fanout() of a page-cached file to N destinations of each
 * kind, per method, in groups whose baseline is what a Deno user writes today
 * without onecopy (read with Deno.FsFile, write to each destination; for
 * streams, ReadableStream.tee()). Compare within a group: ratios, not times.
 *
 * @module
 */

import { fanout, methods } from "../mod.ts";
import { inputBytes, runs } from "./fanout_params.ts";
import { pipeConsumers } from "./consumers.ts";

const MiB = 1 << 20;
const cli = new URL("../cli/main.ts", import.meta.url).pathname;
const dir = Deno.makeTempDirSync({ prefix: "onecopy-bench-" });
const input = `${dir}/input.bin`;
Deno.writeFileSync(input, new Uint8Array(inputBytes).map((_, i) => (i * 2654435761) >>> 24));
const options = runs;

/** Where a bench iteration writes, and when its consumers have finished. */
interface Sinks {
  paths: string[];
  done: Promise<unknown>;
}

/** N `cat` processes reading FIFOs into /dev/null: pipes drained by other processes. */
function pipeSinks(n: number): Promise<Sinks> {
  return pipeConsumers(dir, n);
}

/**
 * N socket receivers (`onecopy recv` into /dev/null) in a child process, so
 * their reading does not share our thread. `listen` is tcp://127.0.0.1:0 or unix:PATH.
 */
async function socketSinks(listen: string, n: number): Promise<Sinks> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "recv", "--listen", listen, "--connections", String(n)]
      .concat(["--out", "/dev/null"]),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const url = /listening on (\S+)/.exec((await reader.read()).value ?? "")![1];
  return { paths: Array(n).fill(url), done: child.status.finally(() => reader.cancel()) };
}

/** Opens a destination the way Deno code does without onecopy. */
function openNative(p: string): Promise<Deno.FsFile | Deno.Conn> {
  if (p.startsWith("tcp://")) {
    return Deno.connect({ hostname: "127.0.0.1", port: Number(p.split(":")[2]) });
  }
  if (p.startsWith("unix:")) return Deno.connect({ transport: "unix", path: p.slice(5) });
  return Deno.open(p, { write: true, create: true, truncate: !p.includes("fifo") });
}

/** Baseline: Deno.FsFile reads, one write per destination per chunk, all destinations at once. */
async function denoNative(paths: string[]) {
  using src = await Deno.open(input);
  const outs = await Promise.all(paths.map(openNative));
  const buf = new Uint8Array(MiB);
  for (let n; (n = await src.read(buf)) !== null;) {
    await Promise.all(outs.map(async (o) => {
      for (let off = 0; off < n;) off += await o.write(buf.subarray(off, n));
    }));
  }
  outs.forEach((o) => o.close());
}

let sockets = 0;
const kinds = {
  pipe: pipeSinks,
  file: (n: number) =>
    Promise.resolve<Sinks>({
      paths: Array.from({ length: n }, (_, i) => `${dir}/out${i}`),
      done: Promise.resolve(),
    }),
  tcp: (n: number) => socketSinks("tcp://127.0.0.1:0", n),
  // A fresh path each time: a closed listener leaves its socket file behind.
  unix: (n: number) => socketSinks(`unix:${dir}/sock${sockets++}`, n),
};

// ONECOPY_BENCH_KINDS=pipe,tcp runs only those groups.
const only = Deno.env.get("ONECOPY_BENCH_KINDS")?.split(",");
for (const [kind, sinks] of Object.entries(kinds)) {
  if (only && !only.includes(kind)) continue;
  for (const n of [1, 2, 4, 8]) {
    const group = `${kind} x${n}`;
    Deno.bench(
      `deno native (FsFile read + ${n} writes)`,
      { group, baseline: true, ...options },
      async (b) => {
        const s = await sinks(n);
        b.start();
        await denoNative(s.paths);
        await s.done;
        b.end();
      },
    );
    for (const method of methods) {
      Deno.bench(`fanout ${method}`, { group, ...options }, async (b) => {
        const s = await sinks(n);
        b.start();
        await fanout(input, s.paths, { method });
        await s.done;
        b.end();
      });
    }
  }
}

Deno.bench(
  "ReadableStream.tee() to 2 files",
  { group: "streams", baseline: true, ...options },
  async () => {
    const [a, b] = (await Deno.open(input)).readable.tee();
    await Promise.all([
      a.pipeTo(
        (await Deno.open(`${dir}/s1`, { write: true, create: true, truncate: true })).writable,
      ),
      b.pipeTo(
        (await Deno.open(`${dir}/s2`, { write: true, create: true, truncate: true })).writable,
      ),
    ]);
  },
);
Deno.bench("fanout auto", { group: "streams", ...options }, async () => {
  await fanout(input, [`${dir}/s1`, `${dir}/s2`]);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
