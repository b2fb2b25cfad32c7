/**
 * The cases of the lean benchmarks, each a function that times one run:
 * shared by `deno task bench:lean` (deno bench groups) and
 * `deno task bench:lean:compare` (medians of interleaved rounds, ratios).
 *
 * @module
 */

import { fanout } from "../mod.ts";

const MiB = 1 << 20;

/** A scratch directory with a 4 KiB file, four output paths and 64 chunks of 1 MiB. */
export function leanFixture() {
  const dir = Deno.makeTempDirSync({ prefix: "onecopy-bench-lean-" });
  const small = `${dir}/small.bin`;
  Deno.writeFileSync(small, crypto.getRandomValues(new Uint8Array(4096)));
  const outs = [0, 1, 2, 3].map((i) => `${dir}/out${i}`);
  const chunks = Array.from({ length: 64 }, (_, k) => new Uint8Array(MiB).fill(k));
  return {
    dir,
    small,
    outs,
    chunks,
    [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }),
  };
}

/** N `cat` processes reading FIFOs into /dev/null, each already blocked opening its FIFO. */
export async function pipeConsumers(dir: string, n: number) {
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

type Fixture = ReturnType<typeof leanFixture>;

/** 200 x (Deno.readFile + 4 Deno.writeFile). */
export async function smallNative(f: Fixture): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const bytes = await Deno.readFile(f.small);
    await Promise.all(f.outs.map((o) => Deno.writeFile(o, bytes)));
  }
}

/** 200 x fanout(4 KiB file, 4 files). */
export async function smallFanout(f: Fixture): Promise<void> {
  for (let i = 0; i < 200; i++) await fanout(f.small, f.outs);
}

/** The stream to 4 pipe consumers with the Deno-native loop; `start` is called once they are up. */
export async function streamNative(f: Fixture, start = () => {}): Promise<void> {
  const sinks = await pipeConsumers(f.dir, 4);
  start();
  const files = await Promise.all(sinks.paths.map((p) => Deno.open(p, { write: true })));
  const writers = files.map((file) => file.writable.getWriter());
  for await (const c of ReadableStream.from(f.chunks)) {
    await Promise.all(writers.map((w) => w.write(c)));
  }
  await Promise.all(writers.map((w) => w.close()));
  await sinks.done;
}

/** The stream to 4 pipe consumers with fanout(). */
export async function streamFanout(f: Fixture, start = () => {}): Promise<void> {
  const sinks = await pipeConsumers(f.dir, 4);
  start();
  await fanout(ReadableStream.from(f.chunks), sinks.paths);
  await sinks.done;
}
