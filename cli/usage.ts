/**
 * Help texts, exit codes and the usage error of the onecopy command.
 *
 * @module
 */

import manifest from "../deno.json" with { type: "json" };
import { checksumAlgorithms, methods } from "../mod.ts";

/** Exit codes, as documented in `onecopy --help` and the README. */
export const Exit = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The package version: deno.json's, the one place it is written. */
export const version: string = manifest.version;

const methodList = methods.join(", ");
const checksumList = checksumAlgorithms.join(", ");

export const help = {
  main:
    `onecopy ${version}: send one stream to many places with one copy (Linux splice/tee/vmsplice)

Usage:
  onecopy tee [OPTIONS] [DEST...]        stdin to stdout and to every DEST
  onecopy send FILE|- --to DEST [--to DEST...]
  onecopy recv --listen tcp://HOST:PORT|unix:PATH [--connections N] [--out PATH|-]
  onecopy --help | --version | CMD --help

DEST is a file path, tcp://HOST:PORT or unix:PATH ('-' is stdout).

Exit codes: 0 success; 1 a destination or the source failed (the others still
got every byte); 2 usage error; 130 interrupted (SIGINT).`,

  tee: `Usage: onecopy tee [OPTIONS] [DEST...]

Copies standard input to standard output and to every DEST (file path,
tcp://HOST:PORT, unix:PATH). When stdin is a pipe its bytes are already
stable: they are tee(2)'d to every output, with no copy in user space.

Options:
  -a, --append               append to files instead of truncating them
  -p                         same as --output-error=warn-nopipe
      --output-error[=MODE]  what to do on a write error (as in coreutils tee):
                               warn         report it, go on with the others
                               warn-nopipe  the same, but say nothing of EPIPE (default MODE)
                               exit         report it and stop
                               exit-nopipe  stop on errors other than EPIPE
                             Without this option EPIPE ends onecopy quietly (as
                             SIGPIPE ends coreutils tee) and other errors are reported.
      --checksum ALG         print "ALG HEX" of the bytes on stderr at the end
                             (${checksumList})
      --method M             ${methodList} (default auto)
      --progress             a live progress line on stderr (terminals only)
      --json                 print a JSON report on stderr at the end
  -h, --help                 this help`,

  send: `Usage: onecopy send FILE|- --to DEST [--to DEST...] [OPTIONS]

Sends FILE (or stdin) to every DEST (file path, tcp://HOST:PORT, unix:PATH, -),
reading it once.

Options:
      --to DEST         a destination; repeat for more (at least one)
  -a, --append          append to files instead of truncating them
      --method M        ${methodList} (default auto)
      --checksum ALG    print "ALG HEX" of the bytes sent (${checksumList})
      --progress        a live progress line on stderr (terminals only)
      --json            print a JSON report on stdout instead
      --connect-timeout S
                        give up on a tcp:// or unix: DEST that has not answered
                        after S seconds (default 30); the others go on
  -h, --help            this help`,

  recv: `Usage: onecopy recv --listen tcp://HOST:PORT|unix:PATH [OPTIONS]

Accepts connections and writes each to its own file (splice: socket -> pipe ->
file), then prints one line per connection: "N BYTES [ALG HEX] PATH".

Options:
      --listen ADDR       where to listen (tcp://HOST:PORT, port 0 picks one; unix:PATH)
      --connections N     how many connections to accept, all served at once (default 1)
      --out PATH|-        where to write: PATH for one connection, PATH.1, PATH.2...
                          for several; a device such as /dev/null takes them all;
                          - is stdout (one connection only). Default -.
      --checksum ALG      add "ALG HEX" of each connection's bytes to its line
      --json              print a JSON report instead of the lines
  -h, --help              this help

The line "listening on ADDR" goes to stderr once the socket is ready.`,
};
