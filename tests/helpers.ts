/** Shared test helpers: generated data, independent hashes, in-process consumers. */

import { createHash } from "node:crypto";
import { Fd } from "../mod.ts";

/** Independent SHA-256 (node:crypto, not the shim), hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function patternBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  const words = new Uint32Array(out.buffer, 0, size >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** A temporary directory removed by `using`. */
export function tempDir(): { path: string; [Symbol.dispose](): void } {
  const path = Deno.makeTempDirSync({ prefix: "onecopy-test-" });
  return { path, [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }) };
}

/** Open fds of this process. */
export function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Reads a stream to the end and returns its length and SHA-256. */
export async function drain(
  stream: ReadableStream<Uint8Array>,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** A pipe destination whose read end is drained (and hashed) in this process. */
export function pipeConsumer(
  size?: number,
): { dest: Fd; result: Promise<{ bytes: number; sha256: string }> } {
  const [r, w] = Fd.pipe({ size });
  return { dest: w, result: drain(r.readable()) };
}

/** A TCP or Unix listener that drains (and hashes) one connection. */
export async function socketConsumer(
  url: string,
): Promise<{ url: string; result: Promise<{ bytes: number; sha256: string }> }> {
  const listener = await Fd.listen(url);
  const result = (async () => {
    try {
      return await drain((await listener.accept()).readable());
    } finally {
      listener.close();
    }
  })();
  return { url: listener.url, result };
}

/** Runs a Deno script in a subprocess with all permissions. */
export async function runDeno(
  args: string[],
  options: Deno.CommandOptions = {},
): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options,
  }).output();
}

export const decoder = new TextDecoder();

/** What a shell line run by `sh()` did. */
export interface Run {
  code: number;
  stdout: Uint8Array;
  out: string;
  err: string;
}

const cliMain = new URL("../cli/main.ts", import.meta.url).pathname;
let binDir: string | undefined;

/** A directory with an `onecopy` script in it, for PATH (so `timeout 10 onecopy` works). */
function onecopyBin(): string {
  if (binDir) return binDir;
  binDir = Deno.makeTempDirSync({ prefix: "onecopy-bin-" });
  const script = `#!/bin/sh\nexec '${Deno.execPath()}' run -A '${cliMain}' "$@"\n`;
  Deno.writeTextFileSync(`${binDir}/onecopy`, script, { mode: 0o755 });
  globalThis.addEventListener("unload", () => Deno.removeSync(binDir!, { recursive: true }));
  return binDir;
}

/** Runs a bash line in which `onecopy` is the CLI (found on PATH). */
export async function sh(line: string, cwd?: string, env?: Record<string, string>): Promise<Run> {
  const path = `${onecopyBin()}:${Deno.env.get("PATH")}`;
  const cmd = new Deno.Command("bash", {
    args: ["-c", line],
    cwd,
    env: { ...env, PATH: path },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  return { code, stdout, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

/** Makes a FIFO (named pipe) at `path`. */
export async function mkfifo(path: string): Promise<void> {
  const { code } = await new Deno.Command("mkfifo", { args: [path] }).output();
  if (code !== 0) throw new Error(`mkfifo ${path} failed`);
}

/**
 * Starts `onecopy recv ARGS` (in `cwd`); resolves once it listens, with its
 * URL and `finished()`: its exit code, stdout (also as sorted lines) and the
 * rest of stderr; killed (SIGKILL) if still running after `deadlineMs`.
 */
export async function startRecv(args: string[], cwd?: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cliMain, "recv", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errLines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await errLines.read()).value ?? "";
  const url = /listening on (\S+)/.exec(first)?.[1];
  if (!url) throw new Error(`onecopy recv did not listen: ${first}`);
  const finished = async (deadlineMs = 60_000) => {
    const deadline = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
    const [status, out] = await Promise.all([child.status, new Response(child.stdout).text()]);
    clearTimeout(deadline);
    let err = "";
    for (let c = await errLines.read(); !c.done; c = await errLines.read()) err += c.value;
    return { code: status.code, out, err, lines: out.trim().split("\n").sort() };
  };
  return { url, finished };
}
