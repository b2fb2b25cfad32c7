/**
 * `onecopy recv --listen ADDR`: accepts connections and writes each to its
 * own file, spliced socket -> pipe -> file. The far end for demos and tests.
 *
 * @module
 */

import { fanout, FanoutError, Fd } from "../mod.ts";
import { printable, statx } from "../lib/internal.ts";
import { checksum, interruptSignal, parse, target } from "./common.ts";
import { Exit, help, UsageError } from "./usage.ts";
import { oneLine, quote } from "./quote.ts";

function isDevice(path: string): boolean {
  try {
    return statx(path).type === "char";
  } catch {
    return false; // not there yet: it will be a file
  }
}

/**
 * Fd.listen, its errors naming the address (a failed name lookup does not).
 * The backlog holds every expected connection: a sender that opens them all at
 * once must not see some reset before recv accepts them.
 */
async function listen(address: string, connections: number) {
  try {
    return await Fd.listen(address, Math.max(128, connections));
  } catch (e) {
    if (!(e instanceof Error) || e.message.startsWith(`${printable(address)}: `)) throw e;
    throw new Error(`${printable(address)}: ${e.message}`, { cause: e });
  }
}

/** Runs `onecopy recv`; returns the exit code. */
export async function recv(
  args: string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { values } = parse({
    args,
    allowPositionals: false,
    options: {
      listen: { type: "string" },
      connections: { type: "string" },
      out: { type: "string" },
      checksum: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    out(help.recv);
    return Exit.ok;
  }
  if (!values.listen) throw new UsageError("recv needs --listen tcp://HOST:PORT or unix:PATH");
  const kind = target(values.listen, "listen").kind;
  if (kind !== "tcp" && kind !== "unix") {
    throw new UsageError(
      `--listen wants tcp://HOST:PORT or unix:PATH, not ${quote(values.listen)}`,
    );
  }
  const count = Number(values.connections ?? 1);
  if (!Number.isInteger(count) || count < 1) {
    throw new UsageError(
      `--connections wants a whole number from 1 up, not ${quote(values.connections ?? "")}`,
    );
  }
  const base = values.out ?? "-";
  // A device (/dev/null, say) takes every connection: PATH.N would be a new file beside it.
  const shared = base !== "-" && isDevice(base);
  if (base === "-" && count > 1) throw new UsageError("--out - (stdout) takes one connection only");
  const algorithm = checksum(values.checksum);
  // Lines go to stderr when stdout carries the data.
  const say = base === "-" ? err : out;
  const interrupt = interruptSignal();
  const listener = await listen(values.listen, count);
  /** One line of `--json`: a connection that failed (reset, say) has its `error`. */
  const results: {
    connection: number;
    bytes: number;
    checksum?: unknown;
    out: string;
    error?: string;
  }[] = [];
  let code: number = Exit.ok;
  const receive = async (conn: Fd, n: number) => {
    const path = count === 1 || shared ? base : `${base}.${n}`;
    try {
      const report = await fanout(conn, [path], {
        method: "pipe-tee",
        checksum: algorithm,
        signal: interrupt.signal,
      });
      results.push({ connection: n, bytes: report.bytes, checksum: report.checksum, out: path });
      if (!values.json) {
        const sum = report.checksum ? ` ${report.checksum.algorithm} ${report.checksum.hex}` : "";
        say(`${n} ${report.bytes}${sum} ${printable(path)}`);
      }
    } catch (e) {
      if (interrupt.signal.aborted) throw e;
      code = Exit.failed;
      const message = e instanceof Error ? e.message : String(e);
      // No checksum: it would be of a partial stream.
      const bytes = e instanceof FanoutError ? e.report.bytes : 0;
      results.push({ connection: n, bytes, out: path, error: message });
      err(`onecopy: connection ${n}: ${oneLine(message)}`);
    } finally {
      conn.close();
    }
  };
  try {
    err(`listening on ${listener.url}`);
    const aborted = new Promise<never>((_, reject) =>
      interrupt.signal.addEventListener("abort", () => reject(interrupt.signal.reason), {
        once: true,
      })
    );
    // Connections are served at once, not one after another: a sender fanning
    // out to several of them moves at the pace of the slowest, so serving them
    // in turn would deadlock.
    const serving = [];
    for (let n = 1; n <= count; n++) {
      const conn = await Promise.race([listener.accept(), aborted]);
      serving.push(receive(conn, n));
    }
    await Promise.all(serving);
  } finally {
    listener.close();
    interrupt.release();
  }
  results.sort((a, b) => a.connection - b.connection);
  if (values.json) say(JSON.stringify({ listen: values.listen, connections: results }));
  return code;
}
