/**
 * The cases of the lean benchmarks, each a function that times one run:
 * shared by `deno task bench:lean` (deno bench groups) and
 * `deno task bench:lean:compare` (medians of interleaved rounds, ratios).
 *
 * @module
 */

import { fanout } from "../mod.ts";
import { pipeConsumers } from "./consumers.ts";

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
