/**
 * Consumers for the benches: `cat` processes draining FIFOs into /dev/null,
 * each already blocked opening its FIFO when returned, so that starting them
 * is never timed.
 *
 * @module
 */

/** Resolves once `pid` is blocked opening a FIFO: the consumer is up. */
async function waitForFifoOpen(pid: number): Promise<void> {
  while (Deno.readTextFileSync(`/proc/${pid}/wchan`) !== "wait_for_partner") {
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** N `cat` processes reading FIFOs in `dir` into /dev/null; `done` when they have all ended. */
export async function pipeConsumers(
  dir: string,
  n: number,
): Promise<{ paths: string[]; done: Promise<unknown> }> {
  const paths = Array.from({ length: n }, (_, i) => `${dir}/fifo${i}`);
  const children = [];
  for (const p of paths) {
    try {
      Deno.removeSync(p);
    } catch { /* first use */ }
    await new Deno.Command("mkfifo", { args: [p] }).output();
    children.push(new Deno.Command("cat", { args: [p], stdout: "null" }).spawn());
  }
  await Promise.all(children.map((c) => waitForFifoOpen(c.pid)));
  return { paths, done: Promise.all(children.map((c) => c.status)) };
}
