/**
 * The `onecopy` command: `tee`, `send` and `recv`.
 *
 * ```sh
 * deno run -A jsr:@onecopy/onecopy/cli tee out.bin < in.bin > copy.bin
 * ```
 *
 * @module
 */

import { Exit, help, UsageError, version } from "./usage.ts";
import { tee } from "./tee.ts";
import { send } from "./send.ts";
import { recv } from "./recv.ts";

const encoder = new TextEncoder();
const line = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
  try {
    stream.writeSync(encoder.encode(`${text}\n`));
  } catch { /* a closed stdout/stderr must not turn into a stack trace */ }
};
const out = line(Deno.stdout);
const err = line(Deno.stderr);

/** Runs the command line `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    if (command === undefined || command === "--help" || command === "-h") {
      (command ? out : err)(help.main);
      return command ? Exit.ok : Exit.usage;
    }
    if (command === "--version" || command === "-V") {
      out(`onecopy ${version}`);
      return Exit.ok;
    }
    const commands = { tee, send, recv } as const;
    if (!(command in commands)) throw new UsageError(`unknown command '${command}'`);
    const name = command as keyof typeof commands;
    if (rest.includes("--help") || rest.includes("-h")) {
      out(help[name]);
      return Exit.ok;
    }
    if (name === "tee") return await tee(rest, err);
    return await commands[name](rest, out, err);
  } catch (e) {
    if (e instanceof UsageError) {
      err(
        `onecopy: ${e.message}\nTry 'onecopy ${
          command && command in help ? `${command} ` : ""
        }--help'.`,
      );
      return Exit.usage;
    }
    if (e instanceof DOMException && e.name === "AbortError") return Exit.interrupted;
    err(`onecopy: ${e instanceof Error ? e.message : String(e)}`);
    return Exit.failed;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
