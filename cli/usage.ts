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
  onecopy tee [OPTION]... [FILE]...      stdin to stdout and to every FILE (GNU tee)
  onecopy send FILE|- --to DEST [--to DEST...]
  onecopy recv --listen tcp://HOST:PORT|unix:PATH [--connections N] [--out PATH|-]
  onecopy mirror --listen ADDR --to ADDR [--shadow ADDR]...   a mirroring proxy
  onecopy --help | --version | CMD --help | help CMD

DEST is a file path, tcp://HOST:PORT or unix:PATH ('-' is stdout, except for
tee, where as in GNU tee it is a file named '-').

Exit codes: 0 success; 1 a destination or the source failed (the others still
got every byte); 2 usage error (1 for tee, as GNU tee); 130 interrupted
(SIGINT: tee, send and recv clean up, then die of it, as C tools do, so that
a script running them stops too); 141 tee only: an output pipe lost its
reader (as SIGPIPE would).
mirror exits 0 after SIGINT/SIGTERM has drained it, 130 if a second signal cut
the drain short.

onecopy help CMD shows the help of CMD.`,

  tee: `Usage: tee [OPTION]... [FILE]...
Copy standard input to each FILE, and also to standard output.
(This is onecopy tee: run as \`onecopy tee\`, a drop-in for GNU tee.)

  -a, --append              append to the given FILEs, do not overwrite
  -i, --ignore-interrupts   ignore interrupt signals
  -p                        operate in a more appropriate MODE with pipes
      --output-error[=MODE]   set behavior on write error.  See MODE below
      --checksum ALG        print "HEX  -" of the bytes on stderr at the end, as
                              sha256sum does (${checksumList})
      --method M            ${methodList} (default auto)
      --progress            a progress line on stderr (terminals only), and a
                              one-line summary at the end
      --json                print a JSON report on stderr at the end
      --help        display this help and exit
      --version     output version information and exit

The options GNU tee has may be abbreviated (--app); the others are given whole.

MODE determines behavior with write errors on the outputs:
  warn           diagnose errors writing to any output
  warn-nopipe    diagnose errors writing to any output not a pipe
  exit           exit on error writing to any output
  exit-nopipe    exit on error writing to any output not a pipe
The default MODE for the -p option is 'warn-nopipe'.
With "nopipe" modes, exit immediately if all outputs become broken pipes.
The default operation when --output-error is not specified, is to
exit immediately on error writing to a pipe (by SIGPIPE, status 141),
and diagnose errors writing to non pipe outputs.

Every FILE is a file, as in GNU tee; to send to sockets too, use
onecopy send - --to tcp://HOST:PORT --to FILE. When stdin is a pipe its bytes
are tee(2)'d to every output, with no copy in user space.

Exit status: 0 success; 1 an output or the input failed, or a usage error;
141 an output pipe lost its reader (without -p); 130 interrupted (a death by
SIGINT, as GNU tee's).`,

  send: `Usage: onecopy send FILE|- --to DEST [--to DEST...] [OPTIONS]

Sends FILE (or stdin) to every DEST (file path, tcp://HOST:PORT, unix:PATH, -),
reading it once.

Options:
      --to DEST         a destination; repeat for more (at least one)
  -a, --append          append to files instead of truncating them
      --method M        ${methodList} (default auto)
      --checksum ALG    print "HEX  FILE" of the bytes sent, as sha256sum does
                        (sha256, xxh64, xxh3, crc32c)
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

  mirror: `Usage: onecopy mirror --listen ADDR --to ADDR [--shadow ADDR]... [OPTIONS]

A byte-level TCP/Unix mirroring proxy. Each client that connects to --listen is
proxied to the primary (--to); its bytes also go, identical, to every shadow,
whose replies are read and dropped. A shadow never slows the primary: each has
its own backlog of at most --max-lag bytes. ADDR is tcp://HOST:PORT (port 0 on
--listen picks one) or unix:PATH.

Options:
      --listen ADDR          where clients connect
      --to ADDR              the primary; its replies go back to the client
      --shadow ADDR          a shadow; repeat for more (at most 8)
      --max-lag BYTES        a shadow's backlog limit, 1 byte to 1T (default 1M;
                             K, M, G, T suffixes)
      --on-lag MODE          disconnect: drop a shadow past --max-lag for that
                             connection (default); block: the primary waits
      --sample PERCENT       mirror (shadows, capture) only this share of
                             connections, by a hash of the client address and port
      --capture DIR          per mirrored connection, DIR/RUN/ID.c2s and
                             DIR/RUN/ID.s2c (RUN: this run's own directory), plus
                             a line in DIR/index.jsonl (see README)
      --method M             copy (read+write), splice (splice+tee) or auto: copy,
                             bulk flows switching to splice (default auto)
      --connect-timeout S    seconds a connect() may take (default 5)
      --drain-timeout S      on SIGINT/SIGTERM, seconds open connections get to
                             finish before they are closed (default 10)
      --max-connections N    served at once, over all threads (default 10000);
                             more wait in the listen backlog
      --threads N            event loops (threads) sharing the listener (default:
                             the number of CPUs, at most 4)
      --json                 one JSON line per finished connection on stdout, and
                             a summary line at exit
  -h, --help                 this help

"onecopy mirror: listening on ADDR" goes to stderr once it accepts (the real
port when 0 was asked). SIGINT/SIGTERM: refuse new clients, drain, exit 0; a
second signal closes the open connections at once, exit 130.`,
};
