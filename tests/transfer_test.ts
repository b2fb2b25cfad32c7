/** The exported splice()/tee()/vmsplice() helpers: results, and waiting without spinning (issue 11). */

import assert from "node:assert/strict";
import { Fd, splice, tee, vmsplice } from "../mod.ts";
import * as raw from "../ffi/raw.ts";
import { patternBytes, sha256, tempDir } from "./helpers.ts";

const enc = new TextEncoder();

/** CPU seconds this process has used (all threads), from /proc/self/stat. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

/**
 * Runs `helper` while `unblock` is scheduled `ms` later; returns its result and
 * the CPU it used per second of waiting. A busy wait uses most of a core.
 */
async function whileWaiting<T>(
  ms: number,
  unblock: () => void,
  helper: () => Promise<T>,
): Promise<{ result: T; cpuPerSecond: number }> {
  const timer = setTimeout(unblock, ms);
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  try {
    const result = await helper();
    const wall = (performance.now() - t0) / 1000;
    assert.ok(wall >= ms / 1000 * 0.9, `returned before it was unblocked (${wall} s)`);
    return { result, cpuPerSecond: (cpuSeconds() - cpu0) / wall };
  } finally {
    clearTimeout(timer);
  }
}

function pipes(n: number): [Fd, Fd][] & Disposable {
  const list = Array.from({ length: n }, () => Fd.pipe()) as [Fd, Fd][] & Disposable;
  list[Symbol.dispose] = () => list.flat().forEach((fd) => fd.close());
  return list;
}

/** Fills a pipe to the brim (its write end made non-blocking for that). */
function fill(w: Fd): number {
  raw.setNonBlocking(w.fd, true);
  const block = new Uint8Array(65536);
  let total = 0;
  try {
    for (;;) total += raw.write(w.fd, block);
  } catch { /* EAGAIN: full */ }
  raw.setNonBlocking(w.fd, false);
  return total;
}

function drainAll(r: Fd, n: number): void {
  const buf = new Uint8Array(65536);
  for (let left = n; left > 0;) left -= raw.read(r.fd, buf.subarray(0, Math.min(left, buf.length)));
}

// Generous: a busy wait measured 0.87 s of CPU per second of waiting.
const idle = 0.3;

Deno.test("splice() waits on an empty source without spinning, then moves exactly len", async () => {
  using p = pipes(2);
  const [[ar, aw], [br, bw]] = p;
  const { result, cpuPerSecond } = await whileWaiting(
    400,
    () => raw.write(aw.fd, enc.encode("hello world")),
    () => splice(ar, bw, 11),
  );
  assert.equal(result, 11);
  assert.ok(cpuPerSecond < idle, `used ${cpuPerSecond.toFixed(2)} s CPU per second waiting`);
  const buf = new Uint8Array(32);
  assert.equal(new TextDecoder().decode(buf.subarray(0, raw.read(br.fd, buf))), "hello world");
});

Deno.test("splice() waits on a full destination without spinning", async () => {
  using p = pipes(2);
  const [[ar, aw], [br, bw]] = p;
  raw.write(aw.fd, enc.encode("abc"));
  const full = fill(bw);
  const { result, cpuPerSecond } = await whileWaiting(
    400,
    () => drainAll(br, full),
    () => splice(ar, bw, 3),
  );
  assert.equal(result, 3);
  assert.ok(cpuPerSecond < idle, `used ${cpuPerSecond.toFixed(2)} s CPU per second waiting`);
});

Deno.test("splice() stops at the end of the input and moves a whole file", async () => {
  using dir = tempDir();
  const data = patternBytes(300_000, 5);
  Deno.writeFileSync(`${dir.path}/in`, data);
  using file = Fd.open(`${dir.path}/in`);
  using out = Fd.create(`${dir.path}/out`);
  const [r, w] = Fd.pipe({ size: 1 << 20 });
  using _ = { [Symbol.dispose]: () => (r.close(), w.close()) };
  const moved = splice(file, w, 1 << 20);
  const copied = splice(r, out, data.length);
  assert.equal(await moved, data.length, "fewer than len at end of file");
  assert.equal(await copied, data.length);
  assert.equal(sha256(Deno.readFileSync(`${dir.path}/out`)), sha256(data));
});

Deno.test("tee() waits on an empty source without spinning, and does not consume", async () => {
  using p = pipes(2);
  const [[ar, aw], [br, bw]] = p;
  const { result, cpuPerSecond } = await whileWaiting(
    400,
    () => raw.write(aw.fd, enc.encode("stable")),
    () => tee(ar, bw, 1024),
  );
  assert.equal(result, 6);
  assert.ok(cpuPerSecond < idle, `used ${cpuPerSecond.toFixed(2)} s CPU per second waiting`);
  assert.equal(raw.fionread(ar.fd), 6, "the source still holds its bytes");
  assert.equal(raw.fionread(br.fd), 6);
});

Deno.test("tee() waits on a full destination without spinning; 0 once the source is done", async () => {
  using p = pipes(2);
  const [[ar, aw], [br, bw]] = p;
  raw.write(aw.fd, enc.encode("abc"));
  const full = fill(bw);
  const { result, cpuPerSecond } = await whileWaiting(
    400,
    () => drainAll(br, full),
    () => tee(ar, bw, 3),
  );
  assert.equal(result, 3);
  assert.ok(cpuPerSecond < idle, `used ${cpuPerSecond.toFixed(2)} s CPU per second waiting`);
  drainAll(ar, 3);
  aw.close();
  assert.equal(await tee(ar, bw, 3), 0, "empty source with no writer");
});

Deno.test("vmsplice() delivers the whole buffer through a pipe smaller than it", async () => {
  const data = patternBytes(1 << 20, 9);
  const [r, w] = Fd.pipe();
  const sent = vmsplice(w, data).then(() => w.close());
  const [received] = await Promise.all([new Response(r.readable()).bytes(), sent]);
  assert.equal(sha256(received), sha256(data));
});
